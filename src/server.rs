//! The process-wide tokio runtime and the WebSocket listeners.
//!
//! A listener is shared by every element that listens on the same address:
//! each element registers a [`Slot`] for a path, and every call that arrives
//! for that path goes to the oldest registered slot that has no call yet. A
//! call that finds no free slot waits (up to [`PENDING_TIMEOUT`]) for an
//! element to register, so an application can start a new pipeline per call.
//! A handshake for a path nobody listens on is answered with HTTP 404.
//!
//! The listener closes its socket as soon as the last registration is gone,
//! before the element's state change returns, so the port can be bound again
//! at once.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use gst::glib;
use gst::prelude::*;

use crate::call::{CAT, Call, Slot};

/// How long a client may take to complete the WebSocket handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an accepted call waits for an element to take it.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// tungstenite zero-fills its read buffer before every read: the default
/// (128 KiB) made that memset the largest cost of a call. Media messages are
/// ~300 bytes; larger ones are still read, over several reads.
const READ_BUFFER_SIZE: usize = 4096;
/// Largest WebSocket message accepted (a 20 ms media message is ~300 bytes).
pub const MAX_MESSAGE_SIZE: usize = 1 << 20;

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

/// Where an element listens for Twilio: its `host`, `port` and `path`
/// properties, shared by the src and the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Always starts with `/`.
    pub path: String,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            host: Endpoint::DEFAULT_HOST.to_owned(),
            port: Endpoint::DEFAULT_PORT,
            path: Endpoint::DEFAULT_PATH.to_owned(),
        }
    }
}

impl Endpoint {
    pub const DEFAULT_HOST: &str = "127.0.0.1";
    pub const DEFAULT_PORT: u16 = 8080;
    pub const DEFAULT_PATH: &str = "/";

    /// The `host`, `port` and `path` properties; `when` ends each blurb
    /// (an element that listens only sometimes says when).
    pub fn pspecs(when: &str) -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecString::builder("host")
                .nick("Host")
                .blurb(&format!(
                    "Address to listen on for Twilio's WebSocket (0.0.0.0: all IPv4 interfaces){when}"
                ))
                .default_value(Some(Self::DEFAULT_HOST))
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("port")
                .nick("Port")
                .blurb(&format!(
                    "TCP port to listen on; 0 picks a free one (see bound-port). \
                     Elements listening on the same host and port share it{when}"
                ))
                .maximum(u16::MAX as u32)
                .default_value(Self::DEFAULT_PORT as u32)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("path")
                .nick("Path")
                .blurb(&format!(
                    "URL path of the stream, as in the TwiML <Stream url>; each element \
                     listening on it takes the next call for it{when}"
                ))
                .default_value(Some(Self::DEFAULT_PATH))
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets one of the properties; false if `name` is not one of them.
    pub fn set_property(&mut self, name: &str, value: &glib::Value) -> bool {
        let string = || value.get::<Option<String>>().unwrap();
        match name {
            "host" => self.host = string().unwrap_or_else(|| Self::DEFAULT_HOST.to_owned()),
            "port" => self.port = value.get::<u32>().unwrap() as u16,
            "path" => {
                let path = string().unwrap_or_else(|| Self::DEFAULT_PATH.to_owned());
                self.path = if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                };
            }
            _ => return false,
        }
        true
    }

    /// Reads one of the properties; None if `name` is not one of them.
    pub fn property(&self, name: &str) -> Option<glib::Value> {
        match name {
            "host" => Some(self.host.to_value()),
            "port" => Some((self.port as u32).to_value()),
            "path" => Some(self.path.to_value()),
            _ => None,
        }
    }

    /// Listens (or joins the listener already there) for calls to the path.
    pub fn register(&self, slot: Arc<Slot>) -> Result<Registration, gst::ErrorMessage> {
        register(&self.host, self.port, &self.path, slot).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ["Could not listen on {}:{}: {}", self.host, self.port, e]
            )
        })
    }
}

/// An element's place on a listener: keeps the listener open and receives
/// the calls for its path through its slot. Dropping it unregisters.
pub struct Registration {
    listener: Arc<Listener>,
    path: String,
    id: u64,
}

impl Registration {
    /// The address the listener is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.addr
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
pub fn register(host: &str, port: u16, path: &str, slot: Arc<Slot>) -> io::Result<Registration> {
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
                    let listener = Listener::bind(addr)?;
                    listeners.insert(listener.addr, Arc::downgrade(&listener));
                    break listener;
                }
            }
        }
    };
    let id = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
    if let Some(call) = listener.shared.register(path, id, slot) {
        gst::debug!(
            CAT,
            "{call:?}: was waiting, delivered to a new registration"
        );
    }
    Ok(Registration {
        listener,
        path: path.to_owned(),
        id,
    })
}

struct Listener {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    fn bind(addr: SocketAddr) -> io::Result<Arc<Listener>> {
        // std's bind sets SO_REUSEADDR, so a port just released binds again.
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept = {
            let _guard = RUNTIME.enter();
            let tcp = TcpListener::from_std(std_listener)?;
            RUNTIME.spawn(accept_loop(tcp, shared.clone()))
        };
        gst::info!(CAT, "listening on {addr}");
        Ok(Arc::new(Listener {
            addr,
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

#[derive(Default)]
struct PathEntry {
    /// Registered slots, oldest first.
    waiters: Vec<(u64, Arc<Slot>)>,
    /// Accepted calls no slot was free for, oldest first.
    pending: VecDeque<Arc<Call>>,
}

/// What the accept loop and the registrations share.
#[derive(Default)]
struct Shared {
    paths: Mutex<HashMap<String, PathEntry>>,
}

impl Shared {
    fn has_path(&self, path: &str) -> bool {
        self.paths.lock().unwrap().contains_key(path)
    }

    /// Adds a registration; returns a pending call it took at once.
    fn register(&self, path: &str, id: u64, slot: Arc<Slot>) -> Option<Arc<Call>> {
        let mut paths = self.paths.lock().unwrap();
        let entry = paths.entry(path.to_owned()).or_default();
        let mut delivered = None;
        while let Some(call) = entry.pending.pop_front() {
            if call.is_open() && slot.offer(&call) {
                delivered = Some(call);
                break;
            }
        }
        entry.waiters.push((id, slot));
        delivered
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

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Handshakes in flight die with this task (and so with the listener).
    let mut handshakes = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    handshakes.spawn(handshake(stream, peer, shared.clone()));
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

// tungstenite's callback signature fixes the (large) error type.
#[allow(clippy::result_large_err)]
async fn handshake(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let path = Arc::new(OnceLock::new());
    let callback = {
        let path = path.clone();
        let shared = shared.clone();
        move |request: &Request, response: Response| {
            let requested = request.uri().path();
            if !shared.has_path(requested) {
                gst::info!(CAT, "{peer}: nobody listens on {requested}, answering 404");
                return Err(reject(
                    StatusCode::NOT_FOUND,
                    "no stream is served on this path\n",
                ));
            }
            let _ = path.set(requested.to_owned());
            Ok(response)
        }
    };
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(Some(MAX_MESSAGE_SIZE))
        .max_frame_size(Some(MAX_MESSAGE_SIZE));
    let accepted = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
    )
    .await;
    let ws = match accepted {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            gst::info!(CAT, "{peer}: handshake failed: {e}");
            return;
        }
        Err(_) => {
            gst::info!(CAT, "{peer}: handshake timed out");
            return;
        }
    };
    let path = path.get().cloned().expect("set by the accepting callback");
    let call = Call::spawn(ws, peer, path.clone());
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
