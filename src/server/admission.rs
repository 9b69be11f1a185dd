//! When a connection becomes a call: only at a valid `start`. Until then
//! (Twilio's `connected` may come first) it belongs to no element, posts
//! nothing on any bus and is closed, counted as a rejected connection, if it
//! closes, sends anything else or sends nothing within `handshake-timeout`.
//! A started call goes to the oldest free element of its path, or waits up
//! to `pending-timeout` for one, and is then refused with close code 1013.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::accept::Arriving;
use super::paths::{Dispatch, Expired, PathCounters, Unsuited};
use super::stream::{OverReadLimit, ReadLimit};
use super::upgrade::Upgraded;
use crate::call::session::{Handled, Level, Session};
use crate::call::{CAT, CLOSE_TOO_BIG, Call, CallEvent, Written, answer_close, close_websocket};
use crate::protocol::Inbound;
use crate::protocol::dialect::detect;

/// Close code for a connection that sent something other than `start`
/// first, or nothing in time (RFC 6455 policy violation).
const CLOSE_POLICY: u16 = 1008;
/// Close code for a binary frame: Twilio sends only text.
const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code for a call no element was free for (try again later).
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;

/// Waits for `start`, then makes the connection a call and hands it to an
/// element of its path. Runs in the connection's handshake task, so
/// `max-connections` may evict it until `start` arrives.
pub(super) async fn admit<S>(up: Upgraded<S>, arriving: Arriving)
where
    S: AsyncRead + AsyncWrite + Written + ReadLimit + Unpin + Send + 'static,
{
    let Arriving {
        peer,
        timeout,
        shared,
        guard,
        evicted,
    } = arriving;
    let Upgraded {
        mut ws,
        path,
        config,
        counters,
    } = up;
    let mut session = Session::new(config.call.max_message_size)
        .with_dialect(config.call.dialect, config.call.l16_order);
    // Counted before the connection is closed: a client that sees the close
    // then reads the counter that counts it.
    let rejected = || PathCounters::count(&counters.rejected_connections);
    let gone = shared.shut_down();
    let start = match await_start(
        &mut ws,
        &mut session,
        peer,
        timeout,
        &evicted,
        gone,
        rejected,
    )
    .await
    {
        Ok(start) => {
            ws.get_mut().unlimit_reads();
            start
        }
        Err(why) => {
            gst::info!(
                CAT,
                "{peer}: connection on {path} closed, not a call: {why}"
            );
            return;
        }
    };
    let call = Call::spawn(ws, peer, path.clone(), config.call, guard, session, start);
    match shared.dispatch(&path, &config, &counters, &call) {
        Dispatch::Delivered => {}
        Dispatch::NobodyListens => refuse(&call, &counters, NOBODY_SERVES),
        // Upgraded before its element stopped; an element on a fixed port
        // again takes it only with the same credentials asked for.
        Dispatch::OtherAuth(now) => refuse(
            &call,
            &now,
            "the path is served again with other auth settings",
        ),
        Dispatch::Unsuited(unsuited) => refuse_unsuited(&call, &counters, unsuited),
        // A task of its own: this one (the handshake's) must end now, so that
        // max-connections eviction never picks a call.
        Dispatch::Queued => {
            // A Weak: taken and ended before the timeout, the call is freed
            // then, not kept until the timeout.
            let waiting = Arc::downgrade(&call);
            let mut open = call.open_watch();
            drop(call);
            tokio::spawn(async move {
                let wait = config.pending_timeout;
                // Or until it ends: still waiting then, it is abandoned.
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = open.wait_for(|open| !open) => {}
                }
                let Some(call) = waiting.upgrade() else {
                    return;
                };
                match shared.expire(&path, &call) {
                    Expired::NotWaiting => {}
                    Expired::Busy => {
                        let why = format!(
                            "no element was free for the call within {} s, try again later",
                            wait.as_secs()
                        );
                        refuse(&call, &counters, &why);
                    }
                    Expired::Unsuited(unsuited) => refuse_unsuited(&call, &counters, unsuited),
                }
            });
        }
    }
}

/// Why a call or a connection is closed when its element stopped and none
/// took its place.
pub(super) const NOBODY_SERVES: &str = "no element serves this path any more";

/// Closes a started call no element took with 1013 and `why`, with a
/// WARNING, counted in `refused-calls`; one that had ended by itself meanwhile
/// is counted in `abandoned-calls`.
pub(super) fn refuse(call: &Call, counters: &PathCounters, why: &str) {
    if !call.is_open() {
        PathCounters::count(&counters.abandoned_calls);
        gst::info!(CAT, "{call:?}: ended while it waited for a free element");
        return;
    }
    PathCounters::count(&counters.refused_calls);
    gst::warning!(CAT, "{call:?}: refused with close code 1013: {why}");
    call.refuse(CLOSE_TRY_AGAIN_LATER, why);
}

/// Closes a call no element of its path takes the format of with 1003 and
/// why, counted in `refused-calls`, each element told (with its own
/// reason); one that had ended by itself meanwhile is abandoned.
fn refuse_unsuited(call: &Call, counters: &PathCounters, unsuited: Unsuited) {
    if !call.is_open() {
        PathCounters::count(&counters.abandoned_calls);
        return;
    }
    // Counted and told before the close: a client that sees it finds both
    // done.
    PathCounters::count(&counters.refused_calls);
    let why = unsuited.why;
    gst::warning!(CAT, "{call:?}: refused with close code 1003: {why}");
    for (notice, own) in unsuited.notices {
        notice(&own);
    }
    call.refuse(CLOSE_UNSUPPORTED, &why);
}

/// The close reason for a `start` spelled in another dialect than the
/// path's fixed one (else "expected a start message" would read as if no
/// `start` had been sent). Only a `start` that other dialect takes: a
/// malformed one merely looking like it (a UUID `streamSid` is all that
/// tells SignalWire from Twilio) gets the plain reason.
fn other_dialect(text: &str, session: &Session) -> Option<String> {
    let fixed = session.known_dialect()?;
    let spelled = detect(text)?;
    let theirs =
        spelled.name() != fixed.name() && matches!(spelled.parse(text), Ok(Inbound::Start { .. }));
    theirs.then(|| format!("a start message not in dialect {}", fixed.name()))
}

/// Reads until a valid `start`; Err says why the connection is no call
/// (after calling `rejected`, then closing it with a reason where it is
/// still open).
async fn await_start<S>(
    ws: &mut WebSocketStream<S>,
    session: &mut Session,
    peer: SocketAddr,
    timeout: Duration,
    evicted: &Notify,
    gone: impl Future<Output = ()>,
    rejected: impl Fn(),
) -> Result<Handled, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let evicted = evicted.notified();
    tokio::pin!(evicted);
    tokio::pin!(gone);
    loop {
        let next = tokio::select! {
            // The eviction first: the accept loop has already let in the
            // connection this one makes room for, so a `start` that came
            // meanwhile must not make it a call (one over max-connections).
            biased;
            _ = &mut evicted => {
                let why = "the listener is at max-connections, try again later";
                rejected();
                close_websocket(ws, CLOSE_TRY_AGAIN_LATER, why).await;
                return Err(format!("evicted: {why}"));
            }
            // The listener stopped on a port of the system's choosing: no
            // element can serve this connection any more.
            _ = &mut gone => {
                close_websocket(ws, CLOSE_TRY_AGAIN_LATER, NOBODY_SERVES).await;
                return Err(format!("its listener stopped: {NOBODY_SERVES}"));
            }
            next = tokio::time::timeout_at(deadline, ws.next()) => next,
        };
        let Ok(next) = next else {
            let why = format!("no start message within {} s", timeout.as_secs());
            rejected();
            close_websocket(ws, CLOSE_POLICY, &why).await;
            return Err(why);
        };
        match next {
            Some(Ok(Message::Text(text))) => {
                let handled = session.handle(&text, Vec::new);
                if matches!(handled.event, Some(CallEvent::Start(_))) {
                    return Ok(handled);
                }
                let invalid = handled.event.is_some() || handled.counts().next().is_some();
                for note in &handled.notes {
                    match note.level {
                        Level::Warning | Level::Info => gst::info!(CAT, "{peer}: {}", note.text),
                        Level::Debug | Level::Trace => gst::debug!(CAT, "{peer}: {}", note.text),
                    }
                }
                if let Some(unsupported) = handled.unsupported {
                    rejected();
                    close_websocket(ws, CLOSE_POLICY, &unsupported.to_string()).await;
                    return Err(format!("sent a start of an {unsupported}"));
                }
                if invalid {
                    rejected();
                    if let Some(why) = other_dialect(&text, session) {
                        close_websocket(ws, CLOSE_POLICY, &why).await;
                        return Err(format!("sent {why}"));
                    }
                    close_websocket(ws, CLOSE_POLICY, &not_a_start(&handled)).await;
                    let shown: String = text.chars().take(60).collect();
                    return Err(format!("sent {shown:?} before any start message"));
                }
            }
            Some(Ok(Message::Binary(data))) => {
                rejected();
                close_websocket(ws, CLOSE_UNSUPPORTED, "text messages only").await;
                return Err(format!("sent a binary frame of {} bytes", data.len()));
            }
            Some(Ok(Message::Close(_))) => {
                // Completes the closing handshake.
                rejected();
                answer_close(ws).await;
                return Err("closed before any start message".to_owned());
            }
            Some(Ok(_)) => {} // ping/pong
            Some(Err(WsError::Capacity(e))) => {
                rejected();
                close_websocket(ws, CLOSE_TOO_BIG, "message too big").await;
                return Err(format!(
                    "sent a message too big to read ({e}), closed with 1009"
                ));
            }
            Some(Err(WsError::Io(e))) if OverReadLimit::is(&e) => {
                rejected();
                close_websocket(ws, CLOSE_TOO_BIG, "message too big").await;
                return Err(format!("{e}, closed with 1009"));
            }
            Some(Err(e)) => {
                rejected();
                return Err(format!("connection error before start: {e}"));
            }
            None => {
                rejected();
                return Err("dropped before any start message".to_owned());
            }
        }
    }
}

/// The close reason for a first message that is no `start`: what was
/// wrong with it, when it could not be read (a field of the wrong type),
/// without the quote of the message.
fn not_a_start(handled: &Handled) -> String {
    const PREFIX: &str = "ignoring message: ";
    let why = handled
        .notes
        .iter()
        .find(|note| note.level == Level::Warning)
        .and_then(|note| note.text.strip_prefix(PREFIX));
    match why {
        Some(why) => {
            let why = why.rsplit_once(" in \"").map_or(why, |(why, _)| why);
            // (Where in the text: of little use, and a close reason is
            // short.)
            let why = why.rsplit_once(" at line ").map_or(why, |(why, _)| why);
            format!("expected a start message: {why}")
        }
        None => "expected a start message".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;
    use crate::runtime::RUNTIME;

    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

    /// Evicted while its `start` waits unread (it came as the accept loop
    /// chose it): the connection is closed with 1013, not made a call, as
    /// the connection it made room for is already in. Several times, as
    /// `select!` would otherwise pick either at random.
    #[test]
    fn an_evicted_connection_whose_start_came_meanwhile_is_no_call() {
        RUNTIME.block_on(async {
            for _ in 0..16 {
                let (ours, theirs) = tokio::io::duplex(1 << 16);
                let mut ws = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
                let mut twilio = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
                twilio.send(Message::text(START)).await.unwrap();
                let evicted = Notify::new();
                evicted.notify_one();
                let mut session = Session::new(1 << 16);
                let peer = "127.0.0.1:1".parse().unwrap();
                let timeout = Duration::from_secs(5);
                let got = await_start(
                    &mut ws,
                    &mut session,
                    peer,
                    timeout,
                    &evicted,
                    pending(),
                    || {},
                )
                .await;
                assert!(
                    matches!(&got, Err(why) if why.starts_with("evicted")),
                    "{:?}",
                    got.map(|_| "a call")
                );
            }
        });
    }

    /// A `start` of a format the plugin cannot carry is no call, and says
    /// so: in the close frame's reason (1008) and in what is logged.
    #[test]
    fn a_start_of_an_unsupported_format_is_closed_naming_it() {
        RUNTIME.block_on(async {
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            let mut ws = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
            let mut twilio = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
            let amr = START.replace("audio/x-mulaw", "AMR-WB");
            twilio.send(Message::text(amr)).await.unwrap();
            let mut session = Session::new(1 << 16);
            let peer = "127.0.0.1:1".parse().unwrap();
            let timeout = Duration::from_secs(5);
            let got = await_start(
                &mut ws,
                &mut session,
                peer,
                timeout,
                &Notify::new(),
                pending(),
                || {},
            )
            .await;
            assert_eq!(
                got.map(|_| "a call"),
                Err(r#"sent a start of an unsupported media format "AMR-WB" at 8000 Hz"#.into())
            );
            drop(ws);
            let Some(Ok(Message::Close(Some(frame)))) = twilio.next().await else {
                panic!("no close frame");
            };
            assert_eq!(u16::from(frame.code), 1008);
            assert_eq!(
                frame.reason.as_str(),
                r#"unsupported media format "AMR-WB" at 8000 Hz"#
            );
        });
    }

    /// A `start` that cannot be read, or another message first, is closed
    /// (1008) saying what was wrong with it.
    #[test]
    fn a_start_that_cannot_be_read_is_closed_saying_why() {
        let bad_rate = START.replace("8000", "\"fast\"");
        let cases = [
            (
                bad_rate.as_str(),
                "expected a start message: invalid value: string \"fast\", expected a \
                 non-negative integer, as a string or a number",
            ),
            (
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}{"#,
                "expected a start message: trailing characters",
            ),
            (
                r#"{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":"1"}}"#,
                "expected a start message: dtmf before start",
            ),
        ];
        for (first, reason) in cases {
            RUNTIME.block_on(async {
                let (ours, theirs) = tokio::io::duplex(1 << 16);
                let mut ws = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
                let mut twilio = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
                twilio.send(Message::text(first)).await.unwrap();
                let peer = "127.0.0.1:1".parse().unwrap();
                let got = await_start(
                    &mut ws,
                    &mut Session::new(1 << 16),
                    peer,
                    Duration::from_secs(5),
                    &Notify::new(),
                    pending(),
                    || {},
                )
                .await;
                assert!(got.is_err(), "{first}");
                drop(ws);
                let Some(Ok(Message::Close(Some(frame)))) = twilio.next().await else {
                    panic!("no close frame");
                };
                assert_eq!(u16::from(frame.code), 1008);
                assert_eq!(frame.reason.as_str(), reason, "{first}");
            });
        }
    }

    /// Our side of a test connection, noting when it first writes.
    struct Noted {
        inner: tokio::io::DuplexStream,
        log: std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>,
    }

    impl tokio::io::AsyncRead for Noted {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Noted {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            self.log.lock().unwrap().push("written");
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A connection that is no call is counted before its close frame goes
    /// out: a client that saw the close reads a counter that counts it.
    #[test]
    fn a_rejected_connection_is_counted_before_it_is_closed() {
        RUNTIME.block_on(async {
            let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            let ours = Noted { inner: ours, log: log.clone() };
            let mut ws = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
            let mut twilio = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
            let media = r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"/w=="}}"#;
            twilio.send(Message::text(media)).await.unwrap();
            let mut session = Session::new(1 << 16);
            let peer = "127.0.0.1:1".parse().unwrap();
            let timeout = Duration::from_secs(5);
            let counted = || log.lock().unwrap().push("counted");
            let got = await_start(&mut ws, &mut session, peer, timeout, &Notify::new(), pending(), counted).await;
            assert!(got.is_err(), "{:?}", got.map(|_| "a call"));
            let Some(Ok(Message::Close(Some(frame)))) = twilio.next().await else {
                panic!("no close frame");
            };
            assert_eq!(u16::from(frame.code), 1008);
            let log = log.lock().unwrap();
            assert_eq!(log.first(), Some(&"counted"), "{log:?}");
            assert_eq!(log.iter().filter(|&&e| e == "counted").count(), 1, "{log:?}");
        });
    }
}
