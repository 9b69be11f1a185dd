//! The process-wide tokio runtime and the WebSocket listeners.
//!
//! A listener is shared by every element that listens on the same address:
//! each element registers a [`Slot`] for a path, and every call that arrives
//! for that path goes to the oldest registered slot that has no call yet. A
//! call that finds no free slot waits (up to [`PENDING_TIMEOUT`]) for an
//! element to register, so an application can start a new pipeline per call.
//!
//! The handshake: TLS first when the listener has a certificate, then the
//! WebSocket upgrade, all within `handshake-timeout`. A path nobody listens
//! on gets HTTP 404; with an auth token, a missing or wrong
//! `X-Twilio-Signature` gets HTTP 403 and never becomes a call. At
//! `max-connections`, a new connection evicts the oldest one still in its
//! handshake (a real client finishes in milliseconds, a flood of idle or
//! half-open sockets does not), or is refused if all are calls.
//!
//! The listener closes its socket as soon as the last registration is gone,
//! before the element's state change returns, so the port can be bound again
//! at once.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::call::{CAT, Call, CallConfig, Slot};
use crate::signature;

/// How long an accepted call waits for an element to take it.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// tungstenite zero-fills its read buffer before every read: the default
/// (128 KiB) made that memset the largest cost of a call, and at 4 KiB it
/// still was 2 % of the load test's server. Media messages are ~300 bytes
/// (one read holds three); larger ones are still read, over several reads.
const READ_BUFFER_SIZE: usize = 1024;
/// The environment variable the auth token is read from when the
/// `auth-token` property is not set.
pub const AUTH_TOKEN_ENV: &str = "TWILIO_AUTH_TOKEN";

/// The runtime every listener and call runs on.
pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2),
        )
        .thread_name("twiliostream")
        .enable_all()
        .build()
        .expect("cannot create the twiliostream runtime")
});

static LISTENERS: LazyLock<Mutex<HashMap<SocketAddr, Weak<Listener>>>> =
    LazyLock::new(Default::default);

/// Signalled whenever a listener has closed its socket.
static LISTENER_CLOSED: Condvar = Condvar::new();
/// Longest wait for a closing listener on the same address.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

static NEXT_REGISTRATION: AtomicU64 = AtomicU64::new(1);

/// Limits on what a listener and its calls accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message handled; larger ones are counted and ignored (up to
    /// 16 times this, beyond which the connection is closed).
    pub max_message_size: usize,
    /// Time allowed for TLS and the WebSocket upgrade.
    pub handshake_timeout: Duration,
    /// A call with no media for this long ends; zero: never.
    pub idle_timeout: Duration,
    /// Connections (calls and handshakes) per listener.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// Where and how an element listens for Twilio: the properties shared by
/// the src and the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Always starts with `/`.
    pub path: String,
    /// `auth-token`: None reads [`AUTH_TOKEN_ENV`]; empty disables checks.
    pub auth_token: Option<String>,
    /// The URL Twilio signs; None derives `wss://<Host><path>`.
    pub public_url: Option<String>,
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub limits: Limits,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            host: Endpoint::DEFAULT_HOST.to_owned(),
            port: Endpoint::DEFAULT_PORT,
            path: Endpoint::DEFAULT_PATH.to_owned(),
            auth_token: None,
            public_url: None,
            tls_certificate: None,
            tls_key: None,
            limits: Limits::default(),
        }
    }
}

impl Endpoint {
    pub const DEFAULT_HOST: &str = "127.0.0.1";
    pub const DEFAULT_PORT: u16 = 8080;
    pub const DEFAULT_PATH: &str = "/";

    /// The listening properties; `when` ends each blurb (an element that
    /// listens only sometimes says when).
    pub fn pspecs(when: &str) -> Vec<glib::ParamSpec> {
        let limits = Limits::default();
        let string = |name: &str, nick: &str, blurb: String, default: Option<&str>| {
            glib::ParamSpecString::builder(name)
                .nick(nick)
                .blurb(&blurb)
                .default_value(default)
                .mutable_ready()
                .build()
        };
        let uint = |name: &str, nick: &str, blurb: String, min: u32, max: u32, default: u32| {
            glib::ParamSpecUInt::builder(name)
                .nick(nick)
                .blurb(&blurb)
                .minimum(min)
                .maximum(max)
                .default_value(default)
                .mutable_ready()
                .build()
        };
        vec![
            string(
                "host",
                "Host",
                format!(
                    "Address to listen on for Twilio's WebSocket (0.0.0.0: all IPv4 interfaces){when}"
                ),
                Some(Self::DEFAULT_HOST),
            ),
            uint(
                "port",
                "Port",
                format!(
                    "TCP port to listen on; 0 picks a free one (see bound-port). \
                     Elements listening on the same host and port share it{when}"
                ),
                0,
                u16::MAX as u32,
                Self::DEFAULT_PORT as u32,
            ),
            string(
                "path",
                "Path",
                format!(
                    "URL path of the stream, as in the TwiML <Stream url>; each element \
                     listening on it takes the next call for it{when}"
                ),
                Some(Self::DEFAULT_PATH),
            ),
            glib::ParamSpecString::builder("auth-token")
                .nick("Auth token")
                .blurb(&format!(
                    "Twilio auth token: the WebSocket upgrade must then carry a valid \
                     X-Twilio-Signature, or it gets HTTP 403. Unset: the {AUTH_TOKEN_ENV} \
                     environment variable, if set; empty: no check. Write-only{when}"
                ))
                .write_only()
                .mutable_ready()
                .build(),
            string(
                "public-url",
                "Public URL",
                format!(
                    "The wss:// URL Twilio dials, exactly as in the TwiML (the signature is \
                     over it). Unset: wss:// + the request's Host header + path, which is \
                     right unless a proxy changes the Host{when}"
                ),
                None,
            ),
            string(
                "tls-certificate",
                "TLS certificate",
                format!(
                    "PEM file of the certificate chain: with tls-key set, the listener \
                     speaks wss:// itself{when}"
                ),
                None,
            ),
            string(
                "tls-key",
                "TLS key",
                format!("PEM file of the private key for tls-certificate{when}"),
                None,
            ),
            uint(
                "max-message-size",
                "Maximum message size",
                format!(
                    "Largest message in bytes; larger ones are counted as invalid and \
                     ignored (beyond 16 times this the connection is closed){when}"
                ),
                1024,
                16 << 20,
                limits.max_message_size as u32,
            ),
            uint(
                "handshake-timeout",
                "Handshake timeout",
                format!("Seconds a client has to complete TLS and the WebSocket upgrade{when}"),
                1,
                3600,
                limits.handshake_timeout.as_secs() as u32,
            ),
            uint(
                "idle-timeout",
                "Idle timeout",
                format!(
                    "A call with no media for this many seconds ends (a warning, then \
                     EOS); 0: never{when}"
                ),
                0,
                86400,
                limits.idle_timeout.as_secs() as u32,
            ),
            uint(
                "max-connections",
                "Maximum connections",
                format!(
                    "Connections (calls and handshakes) per listener; past it a new one \
                     evicts the oldest unfinished handshake{when}"
                ),
                1,
                1 << 20,
                limits.max_connections as u32,
            ),
            glib::ParamSpecUInt64::builder("signature-failures")
                .nick("Signature failures")
                .blurb("Handshakes refused with HTTP 403 for a missing or wrong X-Twilio-Signature")
                .read_only()
                .build(),
        ]
    }

    /// Sets one of the properties; false if `name` is not one of them.
    pub fn set_property(&mut self, name: &str, value: &glib::Value) -> bool {
        let string = || value.get::<Option<String>>().unwrap();
        let uint = || value.get::<u32>().unwrap();
        match name {
            "host" => self.host = string().unwrap_or_else(|| Self::DEFAULT_HOST.to_owned()),
            "port" => self.port = uint() as u16,
            "path" => {
                let path = string().unwrap_or_else(|| Self::DEFAULT_PATH.to_owned());
                self.path = if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                };
            }
            "auth-token" => self.auth_token = string(),
            "public-url" => self.public_url = string().filter(|s| !s.is_empty()),
            "tls-certificate" => self.tls_certificate = string().map(PathBuf::from),
            "tls-key" => self.tls_key = string().map(PathBuf::from),
            "max-message-size" => self.limits.max_message_size = uint() as usize,
            "handshake-timeout" => self.limits.handshake_timeout = secs(uint()),
            "idle-timeout" => self.limits.idle_timeout = secs(uint()),
            "max-connections" => self.limits.max_connections = uint() as usize,
            _ => return false,
        }
        true
    }

    /// Reads one of the properties; None if `name` is not one of them (the
    /// auth token is never readable).
    pub fn property(&self, name: &str) -> Option<glib::Value> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Some(match name {
            "host" => self.host.to_value(),
            "port" => (self.port as u32).to_value(),
            "path" => self.path.to_value(),
            "public-url" => self.public_url.to_value(),
            "tls-certificate" => path(&self.tls_certificate).to_value(),
            "tls-key" => path(&self.tls_key).to_value(),
            "max-message-size" => (self.limits.max_message_size as u32).to_value(),
            "handshake-timeout" => (self.limits.handshake_timeout.as_secs() as u32).to_value(),
            "idle-timeout" => (self.limits.idle_timeout.as_secs() as u32).to_value(),
            "max-connections" => (self.limits.max_connections as u32).to_value(),
            _ => return None,
        })
    }

    /// The auth token in force: the property, else the environment.
    fn effective_auth_token(&self) -> Option<String> {
        self.auth_token
            .clone()
            .or_else(|| std::env::var(AUTH_TOKEN_ENV).ok())
            .filter(|t| !t.is_empty())
    }

    /// Listens (or joins the listener already there) for calls to the path.
    pub fn register(&self, slot: Arc<Slot>) -> Result<Registration, gst::ErrorMessage> {
        let fail = |e: String| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ["Could not listen on {}:{}: {}", self.host, self.port, e]
            )
        };
        let tls = match (&self.tls_certificate, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                certificate: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err(fail("tls-certificate and tls-key go together".into())),
        };
        let listener_config = ListenerConfig {
            tls,
            handshake_timeout: self.limits.handshake_timeout,
            max_connections: self.limits.max_connections,
        };
        let path_config = PathConfig {
            auth_token: self.effective_auth_token(),
            public_url: self.public_url.clone(),
            call: CallConfig {
                max_message_size: self.limits.max_message_size,
                idle_timeout: self.limits.idle_timeout,
            },
        };
        register(
            &self.host,
            self.port,
            &self.path,
            listener_config,
            path_config,
            slot,
        )
        .map_err(|e| fail(e.to_string()))
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(s as u64)
}

/// What all elements on one address must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListenerConfig {
    tls: Option<TlsFiles>,
    handshake_timeout: Duration,
    max_connections: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsFiles {
    certificate: PathBuf,
    key: PathBuf,
}

impl TlsFiles {
    fn acceptor(&self) -> io::Result<TlsAcceptor> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |what: &str, path: &PathBuf, e: &dyn std::fmt::Display| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} {}: {e}", path.display()),
            )
        };
        let certs = CertificateDer::pem_file_iter(&self.certificate)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid("certificate", &self.certificate, &e))?;
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| invalid("key", &self.key, &e))?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| invalid("TLS configuration with", &self.certificate, &e))?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// What all elements on one path must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PathConfig {
    auth_token: Option<String>,
    public_url: Option<String>,
    call: CallConfig,
}

/// An element's place on a listener: keeps the listener open and receives
/// the calls for its path through its slot. Dropping it unregisters.
pub struct Registration {
    listener: Arc<Listener>,
    path: String,
    id: u64,
    rejected: Arc<AtomicU64>,
}

impl Registration {
    /// The address the listener is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.addr
    }

    /// Handshakes on this path refused for a missing or wrong signature.
    pub fn signature_failures(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let orphans = self.listener.shared.unregister(&self.path, self.id);
        for call in orphans {
            call.request_close();
        }
    }
}

/// Registers `slot` for calls to `path` on `host:port`, binding the address
/// unless another element already listens there. Port 0 binds a free port.
fn register(
    host: &str,
    port: u16,
    path: &str,
    listener_config: ListenerConfig,
    path_config: PathConfig,
    slot: Arc<Slot>,
) -> io::Result<Registration> {
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{host} has no address"),
        )
    })?;
    let listener = {
        let mut listeners = LISTENERS.lock().unwrap();
        loop {
            match listeners.get(&addr).filter(|_| port != 0) {
                Some(weak) => match weak.upgrade() {
                    Some(listener) => break listener,
                    // Still closing (the last element just left): wait until
                    // its socket is gone rather than fail to bind.
                    None => {
                        let (guard, timeout) =
                            LISTENER_CLOSED.wait_timeout(listeners, CLOSE_WAIT).unwrap();
                        listeners = guard;
                        if timeout.timed_out() {
                            listeners.remove(&addr);
                        }
                    }
                },
                None => {
                    let listener = Listener::bind(addr, listener_config.clone())?;
                    listeners.insert(listener.addr, Arc::downgrade(&listener));
                    break listener;
                }
            }
        }
    };
    if listener.config != listener_config {
        if listener.config.tls != listener_config.tls {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "already listened on with other TLS settings",
            ));
        }
        gst::warning!(
            CAT,
            "{addr}: limits {listener_config:?} ignored, the listener has {:?}",
            listener.config
        );
    }
    let id = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
    let rejected = listener.shared.register(path, id, path_config, slot)?;
    Ok(Registration {
        listener,
        path: path.to_owned(),
        id,
        rejected,
    })
}

struct Listener {
    addr: SocketAddr,
    config: ListenerConfig,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    fn bind(addr: SocketAddr, config: ListenerConfig) -> io::Result<Arc<Listener>> {
        let tls = config.tls.as_ref().map(TlsFiles::acceptor).transpose()?;
        // std's bind sets SO_REUSEADDR, so a port just released binds again.
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept = {
            let _guard = RUNTIME.enter();
            let tcp = TcpListener::from_std(std_listener)?;
            RUNTIME.spawn(accept_loop(tcp, tls, config.clone(), shared.clone()))
        };
        gst::info!(
            CAT,
            "listening on {addr}{}",
            if config.tls.is_some() { " (TLS)" } else { "" }
        );
        Ok(Arc::new(Listener {
            addr,
            config,
            shared,
            accept: Mutex::new(Some(accept)),
        }))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.lock().unwrap().take() {
            accept.abort();
            // Aborting drops the socket on a runtime thread; wait for that
            // so the port is free when the element's state change returns.
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = futures::executor::block_on(accept);
            }
        }
        for call in self.shared.shutdown() {
            call.request_close();
        }
        let mut listeners = LISTENERS.lock().unwrap();
        if listeners
            .get(&self.addr)
            .is_some_and(|w| w.strong_count() == 0)
        {
            listeners.remove(&self.addr);
        }
        drop(listeners);
        LISTENER_CLOSED.notify_all();
        gst::info!(CAT, "stopped listening on {}", self.addr);
    }
}

enum Dispatch {
    Delivered,
    Queued,
    NobodyListens,
}

struct PathEntry {
    config: PathConfig,
    /// Registered slots, oldest first.
    waiters: Vec<(u64, Arc<Slot>)>,
    /// Accepted calls no slot was free for, oldest first.
    pending: VecDeque<Arc<Call>>,
    /// Handshakes refused for their signature.
    rejected: Arc<AtomicU64>,
}

/// What the accept loop and the registrations share.
#[derive(Default)]
struct Shared {
    paths: Mutex<HashMap<String, PathEntry>>,
    /// Open connections: calls and handshakes.
    connections: AtomicUsize,
}

impl Shared {
    fn path_config(&self, path: &str) -> Option<(PathConfig, Arc<AtomicU64>)> {
        let paths = self.paths.lock().unwrap();
        paths
            .get(path)
            .map(|e| (e.config.clone(), e.rejected.clone()))
    }

    /// Adds a registration (delivering a pending call at once if there is
    /// one); returns the path's counter of refused signatures.
    fn register(
        &self,
        path: &str,
        id: u64,
        config: PathConfig,
        slot: Arc<Slot>,
    ) -> io::Result<Arc<AtomicU64>> {
        let mut paths = self.paths.lock().unwrap();
        let entry = paths.entry(path.to_owned()).or_insert_with(|| PathEntry {
            config: config.clone(),
            waiters: Vec::new(),
            pending: VecDeque::new(),
            rejected: Arc::default(),
        });
        if entry.config.auth_token != config.auth_token
            || entry.config.public_url != config.public_url
        {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{path} is already listened on with another auth-token or public-url"),
            ));
        }
        while let Some(call) = entry.pending.pop_front() {
            if call.is_open() && slot.offer(&call) {
                gst::debug!(
                    CAT,
                    "{call:?}: was waiting, delivered to a new registration"
                );
                break;
            }
        }
        entry.waiters.push((id, slot));
        Ok(entry.rejected.clone())
    }

    /// Removes a registration; returns the pending calls nobody can take any more.
    fn unregister(&self, path: &str, id: u64) -> Vec<Arc<Call>> {
        let mut paths = self.paths.lock().unwrap();
        let Some(entry) = paths.get_mut(path) else {
            return Vec::new();
        };
        entry.waiters.retain(|(i, _)| *i != id);
        if entry.waiters.is_empty() {
            paths
                .remove(path)
                .map(|e| e.pending.into())
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// Hands `call` to the first free slot of its path, or queues it.
    fn dispatch(&self, path: &str, call: &Arc<Call>) -> Dispatch {
        let mut paths = self.paths.lock().unwrap();
        let Some(entry) = paths.get_mut(path) else {
            return Dispatch::NobodyListens;
        };
        if entry.waiters.iter().any(|(_, slot)| slot.offer(call)) {
            gst::debug!(CAT, "{call:?}: delivered");
            Dispatch::Delivered
        } else {
            gst::debug!(CAT, "{call:?}: no element free, waiting");
            entry.pending.push_back(call.clone());
            Dispatch::Queued
        }
    }

    /// Removes `call` from the pending queue; true if it was still there.
    fn expire(&self, path: &str, call: &Arc<Call>) -> bool {
        let mut paths = self.paths.lock().unwrap();
        let Some(entry) = paths.get_mut(path) else {
            return false;
        };
        let before = entry.pending.len();
        entry.pending.retain(|c| !Arc::ptr_eq(c, call));
        entry.pending.len() != before
    }

    fn shutdown(&self) -> Vec<Arc<Call>> {
        let mut paths = self.paths.lock().unwrap();
        paths.drain().flat_map(|(_, e)| e.pending).collect()
    }
}

/// Counts a connection for as long as it lives (handshake, then call).
struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    config: ListenerConfig,
    shared: Arc<Shared>,
) {
    // Handshakes in flight die with this task (and so with the listener).
    let mut handshakes = JoinSet::new();
    // Oldest first, for eviction when at max-connections.
    let mut in_handshake: VecDeque<AbortHandle> = VecDeque::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if shared.connections.load(Ordering::Relaxed) >= config.max_connections {
                        in_handshake.retain(|h| !h.is_finished());
                        match in_handshake.pop_front() {
                            Some(oldest) => {
                                gst::info!(CAT, "{peer}: at {} connections, dropping the oldest unfinished handshake", config.max_connections);
                                oldest.abort();
                            }
                            None => {
                                gst::warning!(CAT, "{peer}: refused, {} calls already", config.max_connections);
                                continue;
                            }
                        }
                    }
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let guard = ConnectionGuard(shared.clone());
                    let handle = handshakes.spawn(handshake(stream, peer, tls.clone(), config.handshake_timeout, shared.clone(), guard));
                    in_handshake.push_back(handle);
                    if in_handshake.len() > 2 * config.max_connections {
                        in_handshake.retain(|h| !h.is_finished());
                    }
                }
                Err(e) => {
                    // Typically out of file descriptors: back off instead of spinning.
                    gst::warning!(CAT, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = handshakes.join_next(), if !handshakes.is_empty() => {}
        }
    }
}

fn reject(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

/// TLS (if configured) and the WebSocket upgrade, within the timeout; the
/// call then runs in a task of its own, holding `guard`.
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    timeout: Duration,
    shared: Arc<Shared>,
    guard: ConnectionGuard,
) {
    let _ = stream.set_nodelay(true);
    let upgraded = tokio::time::timeout(timeout, async {
        match tls {
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(stream) => upgrade(stream, peer, shared, guard).await,
                Err(e) => gst::info!(CAT, "{peer}: TLS handshake failed: {e}"),
            },
            None => upgrade(stream, peer, shared, guard).await,
        }
    })
    .await;
    if upgraded.is_err() {
        gst::info!(CAT, "{peer}: handshake timed out after {timeout:?}");
    }
}

// tungstenite's callback signature fixes the (large) error type.
#[allow(clippy::result_large_err)]
async fn upgrade<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>, guard: ConnectionGuard)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted = Arc::new(OnceLock::new());
    let callback = {
        let accepted = accepted.clone();
        let shared = shared.clone();
        move |request: &Request, response: Response| {
            let path = request.uri().path();
            let Some((config, rejected)) = shared.path_config(path) else {
                gst::info!(CAT, "{peer}: nobody listens on {path}, answering 404");
                return Err(reject(
                    StatusCode::NOT_FOUND,
                    "no stream is served on this path\n",
                ));
            };
            if let Some(token) = &config.auth_token {
                let url = match &config.public_url {
                    Some(url) => url.clone(),
                    None => {
                        let host = request
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default();
                        let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
                        format!("wss://{host}{target}")
                    }
                };
                let signature = request
                    .headers()
                    .get("x-twilio-signature")
                    .and_then(|h| h.to_str().ok());
                let valid = signature.is_some_and(|s| signature::verify(token, &url, s));
                if !valid {
                    rejected.fetch_add(1, Ordering::Relaxed);
                    gst::warning!(
                        CAT,
                        "{peer}: {} X-Twilio-Signature for {url}, answering 403",
                        if signature.is_some() { "wrong" } else { "no" }
                    );
                    return Err(reject(
                        StatusCode::FORBIDDEN,
                        "invalid X-Twilio-Signature\n",
                    ));
                }
            }
            let _ = accepted.set((path.to_owned(), config.call));
            Ok(response)
        }
    };
    let hard_limit = Some(16 * accepted_limit(&shared));
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit);
    let ws =
        match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config))
            .await
        {
            Ok(ws) => ws,
            Err(e) => {
                gst::info!(CAT, "{peer}: handshake failed: {e}");
                return;
            }
        };
    let (path, config) = accepted
        .get()
        .cloned()
        .expect("set by the accepting callback");
    let call = Call::spawn(ws, peer, path.clone(), config, guard);
    match shared.dispatch(&path, &call) {
        Dispatch::Delivered => return,
        Dispatch::NobodyListens => {
            call.request_close();
            return;
        }
        Dispatch::Queued => {}
    }
    // Close the call if no element takes it in time.
    tokio::spawn(async move {
        tokio::time::sleep(PENDING_TIMEOUT).await;
        if shared.expire(&path, &call) {
            gst::warning!(
                CAT,
                "{call:?}: no element took the call in {PENDING_TIMEOUT:?}, closing"
            );
            call.request_close();
        }
    });
}

/// The largest max-message-size of the listener's paths (the frame limit
/// has to be set before the path is known).
fn accepted_limit(shared: &Shared) -> usize {
    shared
        .paths
        .lock()
        .unwrap()
        .values()
        .map(|e| e.config.call.max_message_size)
        .max()
        .unwrap_or(Limits::default().max_message_size)
        .max(64 * 1024)
}
