//! The process-wide registry of listeners: one [`Listener`] per address,
//! shared by every element that listens there, each holding a
//! [`Registration`] for its path. Binding, joining, the configuration all
//! elements on one address must agree on, and closing the socket as soon as
//! the last registration is gone (before the element's state change returns).

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::accept::accept_loop;
use super::admission::{NOBODY_SERVES, refuse};
use super::paths::{PathConfig, PathCounters, Shared};
use super::tls::{Tls, TlsFiles};
use crate::call::{CAT, slot::Claim};
use crate::lock::Locked;
use crate::runtime::RUNTIME;

static LISTENERS: LazyLock<Mutex<HashMap<SocketAddr, Weak<Listener>>>> =
    LazyLock::new(Default::default);

/// Signalled whenever a listener has closed its socket.
static LISTENER_CLOSED: Condvar = Condvar::new();
/// Longest wait for a closing listener on the same address.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

static NEXT_REGISTRATION: AtomicU64 = AtomicU64::new(1);

/// The path tables of fixed addresses, alive while a call, a handshake or
/// a waiting call of theirs is: a listener bound there again (a pipeline
/// cycled through READY or NULL between calls) with the same TLS settings
/// takes them over, so the calls waiting for an element are offered to its
/// elements. (With other ones, the calls that came in under the old are
/// refused.)
type Table = (Weak<Shared>, Option<TlsFiles>);
static TABLES: LazyLock<Mutex<HashMap<SocketAddr, Table>>> = LazyLock::new(Default::default);

/// What all elements on one address must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub tls: Option<TlsFiles>,
    pub handshake_timeout: Duration,
    pub max_connections: usize,
}

/// An element's place on a listener: keeps the listener open and receives
/// the calls for its path through its slot. Dropping it unregisters.
pub struct Registration {
    listener: Arc<Listener>,
    path: String,
    id: u64,
    counters: Arc<PathCounters>,
    /// Let go after the slot is unregistered.
    _claim: Claim,
}

impl Registration {
    /// The address the listener is bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.addr
    }

    /// Handshakes on this path refused for a missing or wrong signature.
    pub fn signature_failures(&self) -> u64 {
        self.counters.signature_failures.load(Ordering::Relaxed)
    }

    /// Connections on this path closed before they became a call.
    pub fn rejected_connections(&self) -> u64 {
        self.counters.rejected_connections.load(Ordering::Relaxed)
    }

    /// Calls on this path refused because no element was free.
    pub fn refused_calls(&self) -> u64 {
        self.counters.refused_calls.load(Ordering::Relaxed)
    }

    /// Calls on this path that ended while they waited for a free element.
    pub fn abandoned_calls(&self) -> u64 {
        self.counters.abandoned_calls.load(Ordering::Relaxed)
    }

    /// Opens `slot` (this registration's) to calls again after
    /// [`Slot::close`](crate::call::Slot::close); a call waiting for an
    /// element is delivered at once.
    pub fn reopen(&self, slot: &crate::call::Slot) {
        self.listener.shared.reopen(&self.path, slot);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let orphans = self
            .listener
            .shared
            .unregister(&self.path, self.id, self.listener.fixed);
        for call in orphans {
            refuse(&call, &self.counters, NOBODY_SERVES);
        }
    }
}

/// Registers the claimed slot for calls to `path` on `host:port`, binding the address
/// unless another element already listens there. Port 0 binds a free port.
pub fn register(
    host: &str,
    port: u16,
    path: &str,
    listener_config: ListenerConfig,
    path_config: PathConfig,
    claim: Claim,
) -> io::Result<Registration> {
    let slot = claim.slot().clone();
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("{host} has no address"),
        )
    })?;
    let listener = {
        let mut listeners = LISTENERS.locked();
        loop {
            match listeners.get(&addr).filter(|_| port != 0) {
                Some(weak) => match weak.upgrade() {
                    Some(listener) => break listener,
                    // Still closing (the last element just left): wait until
                    // its socket is gone rather than fail to bind.
                    None => {
                        let (guard, timeout) = LISTENER_CLOSED
                            .wait_timeout(listeners, CLOSE_WAIT)
                            .unwrap_or_else(PoisonError::into_inner);
                        listeners = guard;
                        if timeout.timed_out() {
                            listeners.remove(&addr);
                        }
                    }
                },
                None => {
                    let listener = Listener::bind(addr, port != 0, listener_config.clone())?;
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
        let (new, has) = (&listener_config, &listener.config);
        gst::warning!(
            CAT,
            "{addr}: an element joins the listener there with handshake-timeout {} s and \
             max-connections {}: ignored, the listener has {} s and {} (the first element's)",
            new.handshake_timeout.as_secs(),
            new.max_connections,
            has.handshake_timeout.as_secs(),
            has.max_connections
        );
    }
    let id = NEXT_REGISTRATION.fetch_add(1, Ordering::Relaxed);
    let (counters, stale) = listener.shared.register(path, id, path_config, slot)?;
    for call in stale {
        refuse(
            &call,
            &counters,
            "the path is served again with other auth settings",
        );
    }
    Ok(Registration {
        listener,
        path: path.to_owned(),
        id,
        counters,
        _claim: claim,
    })
}

struct Listener {
    addr: SocketAddr,
    /// Bound to the port asked for (not 0): its path table outlives it.
    fixed: bool,
    config: ListenerConfig,
    shared: Arc<Shared>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    fn bind(addr: SocketAddr, fixed: bool, config: ListenerConfig) -> io::Result<Arc<Listener>> {
        let tls = config.tls.clone().map(Tls::load).transpose()?;
        // std's bind sets SO_REUSEADDR, so a port just released binds again.
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let shared = if fixed {
            let mut tables = TABLES.locked();
            tables.retain(|_, (table, _)| table.strong_count() > 0);
            let old = tables
                .get(&addr)
                .and_then(|(table, tls)| Some((table.upgrade()?, tls == &config.tls)));
            let shared = match old {
                Some((shared, true)) => shared,
                Some((other, false)) => {
                    for (call, counters) in other.shutdown() {
                        refuse(
                            &call,
                            &counters,
                            "the address is listened on again with other TLS settings",
                        );
                    }
                    Arc::new(Shared::fixed())
                }
                None => Arc::new(Shared::fixed()),
            };
            tables.insert(addr, (Arc::downgrade(&shared), config.tls.clone()));
            shared
        } else {
            Arc::new(Shared::default())
        };
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
            fixed,
            config,
            shared,
            accept: Mutex::new(Some(accept)),
        }))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(accept) = self.accept.locked().take() {
            accept.abort();
            // Aborting drops the socket on a runtime thread; wait for that
            // so the port is free when the element's state change returns.
            if tokio::runtime::Handle::try_current().is_err() {
                let _ = futures::executor::block_on(accept);
            }
        }
        // On a fixed port, waiting calls wait on for a listener bound
        // there again (see `TABLES`).
        if !self.fixed {
            for (call, counters) in self.shared.shutdown() {
                refuse(&call, &counters, NOBODY_SERVES);
            }
        }
        let mut listeners = LISTENERS.locked();
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
