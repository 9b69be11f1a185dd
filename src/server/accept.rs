//! The accept loop of a listener and each connection's handshake: counting
//! connections against `max-connections` (evicting the oldest connection
//! that is not a call yet when full, or when the process is out of file
//! descriptors), TCP_NODELAY, TLS when configured (its files loaded again
//! when they change), the
//! upgrade, within `handshake-timeout`. What the upgrade checks is in
//! `upgrade`; what makes a connection a call, in `admission`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use super::admission::admit;
use super::paths::Shared;
use super::registry::ListenerConfig;
use super::tls::Tls;
use super::upgrade::upgrade;
use crate::call::CAT;
use crate::lock::Locked;

/// Counts a connection for as long as it lives (handshake, then call).
pub(super) struct ConnectionGuard(Arc<Shared>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        self.0.connection_ended.notify_waiters();
    }
}

/// Whether an accept failed for want of a file descriptor (EMFILE, ENFILE:
/// the same numbers on Linux, macOS and the BSDs).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24))
}

pub(super) async fn accept_loop(
    listener: TcpListener,
    mut tls: Option<Tls>,
    config: ListenerConfig,
    shared: Arc<Shared>,
) {
    // Handshakes are tasks of their own, not this one's: when the listener
    // stops (this task is aborted), each still ends with an answer, an HTTP
    // 404 or a close frame, or is made a call of a listener bound here again
    // (`registry::TABLES`), within its `handshake-timeout`; that listener
    // evicts them as its own (`Shared::handshakes`).
    loop {
        let ended = shared.connection_ended.notified();
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, each connection holding one: the
                // process's limit may be far below max-connections, so make
                // room as at max-connections (else idle sockets would keep
                // every call out until their handshake-timeout). Then wait
                // for a connection to end, or back off: never spin.
                let oldest = match out_of_descriptors(&e) {
                    true => shared.handshakes.locked().take_oldest(),
                    false => None,
                };
                match oldest {
                    Some(evict) => {
                        gst::info!(
                            CAT,
                            "accept failed: {e}: evicting the oldest connection that is not a call"
                        );
                        evict.notify_one();
                    }
                    None => gst::warning!(CAT, "accept failed: {e}"),
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), ended).await;
                continue;
            }
        };
        if shared.connections.load(Ordering::Relaxed) >= config.max_connections {
            let oldest = shared.handshakes.locked().take_oldest();
            match oldest {
                Some(evict) => {
                    gst::info!(
                        CAT,
                        "{peer}: at {} connections, evicting the oldest connection that is not a call",
                        config.max_connections
                    );
                    // A permit: the task sees it at its next wait.
                    evict.notify_one();
                }
                None => {
                    gst::warning!(
                        CAT,
                        "{peer}: refused, {} calls already",
                        config.max_connections
                    );
                    continue;
                }
            }
        }
        gst::debug!(CAT, "{peer}: accepted");
        shared.connections.fetch_add(1, Ordering::Relaxed);
        let guard = ConnectionGuard(shared.clone());
        // Only the task holds it: queued (as a `Weak`) before it can end.
        let evicted = Arc::new(Notify::new());
        shared.handshakes.locked().push(&evicted);
        let arriving = Arriving {
            peer,
            timeout: config.handshake_timeout,
            shared: shared.clone(),
            guard,
            evicted,
        };
        let acceptor = tls.as_mut().map(Tls::acceptor);
        tokio::spawn(handshake(stream, acceptor, arriving));
    }
}

/// A connection that is no call yet, on its way through the handshake
/// and the wait for `start`.
pub(super) struct Arriving {
    pub(super) peer: SocketAddr,
    /// For TLS and the upgrade together, then again for `start`.
    pub(super) timeout: Duration,
    pub(super) shared: Arc<Shared>,
    /// Counts it against max-connections; the call takes it over.
    pub(super) guard: ConnectionGuard,
    /// Notified when max-connections evicts it: dropped before the
    /// upgrade, closed with 1013 after it. Held until the handshake's task
    /// ends: `Shared::handshakes` tells those under way by it.
    pub(super) evicted: Arc<Notify>,
}

/// TLS (if configured) and the WebSocket upgrade, within the timeout; then,
/// within it again, the `start` that makes the connection a call. The
/// call then runs in a task of its own, holding the guard.
async fn handshake(stream: TcpStream, tls: Option<TlsAcceptor>, arriving: Arriving) {
    let _ = stream.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + arriving.timeout;
    let Some(acceptor) = tls else {
        return upgrade_then_admit(stream, deadline, arriving).await;
    };
    let accepted = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, acceptor.accept(stream)) => accepted,
        _ = arriving.evicted.notified() => return evicted_early(arriving.peer),
    };
    match accepted {
        Ok(Ok(stream)) => upgrade_then_admit(stream, deadline, arriving).await,
        Ok(Err(e)) => super::tls::handshake_failed(arriving.peer, &e),
        Err(_) => timed_out(&arriving),
    }
}

/// The upgrade, by `deadline`, on the (TLS or plain) stream; then `admit`.
async fn upgrade_then_admit<S>(stream: S, deadline: tokio::time::Instant, arriving: Arriving)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgraded = tokio::select! {
        upgraded = tokio::time::timeout_at(deadline, upgrade(stream, arriving.peer, &arriving.shared)) => upgraded,
        _ = arriving.evicted.notified() => return evicted_early(arriving.peer),
    };
    match upgraded {
        Ok(Some(up)) => admit(up, arriving).await,
        Ok(None) => {}
        Err(_) => timed_out(&arriving),
    }
}

fn timed_out(arriving: &Arriving) {
    let Arriving { peer, timeout, .. } = arriving;
    gst::info!(CAT, "{peer}: handshake timed out after {timeout:?}");
}

fn evicted_early(peer: SocketAddr) {
    gst::info!(CAT, "{peer}: evicted in its handshake (max-connections)");
}
