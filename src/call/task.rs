//! The one tokio task per connection: reads Twilio's messages and hands them
//! to the [`Session`], applies what it returns (counters, log lines, events
//! for the consuming element), writes what the elements send in batches,
//! paced by the `Outbox` (Twilio's queue is kept to the call's lead) and
//! written by the [`Writer`] without holding up the reads, and ends the
//! call on close, error, stalled writes or the idle timeout.
//! It never waits for GStreamer (but see `Consumer` for shared-threads).

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::closing::{
    CLOSE_INVALID_DATA, CLOSE_PROTOCOL_ERROR, CLOSE_TOO_BIG, answer_close, answer_end, close,
};
use super::events::{CallEvent, EventSender};
use super::session::{Handled, Level, Session};
use super::stats::Stat;
use super::writer::{Writer, Written};
use super::{Call, CallConfig, Request, call_log};

use crate::contain::CLOSE_PANICKED;
use crate::lock::Locked;

/// The per-call task: reads, validates and dispatches Twilio's messages,
/// writes ours, and ends when either side closes.
pub(super) async fn serve<S>(
    call: Arc<Call>,
    mut ws: WebSocketStream<S>,
    outbound: mpsc::UnboundedReceiver<Request>,
    events: EventSender,
    config: CallConfig,
    mut session: Session,
    start: Handled,
) where
    S: AsyncRead + AsyncWrite + Written + Unpin,
{
    let mut writer = Writer::new(call.lead.load(Ordering::Relaxed));
    let mut outbound = Outbound { rx: outbound };
    let turns = turns(
        &call,
        &mut ws,
        (&mut writer, &mut outbound),
        &events,
        &config,
        &mut session,
        start,
    );
    // A panic in the call's own code is caught here, not by tokio: left to
    // tokio, the socket would be dropped without a close frame, and the
    // call would still look open, its consumer never told of the end (a
    // shared-threads src would wait for it for good). It ends as an
    // internal error instead, as a panicked element's call does.
    let ended = match AssertUnwindSafe(turns).catch_unwind().await {
        Ok(ended) => ended,
        Err(panic) => {
            let cause = crate::contain::cause(panic.as_ref())
                .unwrap_or("?")
                .to_owned();
            Some(panicked(&call, &mut ws, cause).await)
        }
    };
    call.open.send_replace(false);
    // A sender waiting for the writer must not wait for a closed call.
    call.room.notify_waiters();
    // (After a panic the outbox may be half-updated: should it panic again,
    // the clears waiting go unanswered, the rest of the end goes on.)
    let settled = || writer.settle_clears(&call, &mut outbound);
    let _ = std::panic::catch_unwind(AssertUnwindSafe(settled));
    match ended {
        Some(reason) if !session.stopped() => {
            call_log!(&call, warning, "{reason} before any stop message");
            let reason = format!("{reason} before any stop message");
            queue(&call, &events, CallEvent::Closed(reason));
        }
        Some(reason) => call_log!(&call, info, "{reason} after stop"),
        None => {
            call_log!(&call, info, "closed by us");
            let ended = call.ended.locked().take();
            if let Some(why) = ended {
                queue(&call, &events, CallEvent::Ended(why));
            }
        }
    }
    // The consumer then sees the end of the queue.
    drop(events);
    call.notify_consumer();
    // It has no more to do: this also ends the reference cycle of a
    // consumer holding its element (whose state holds the call) should the
    // element never be stopped.
    call.set_consumer(None);
}

/// After a panic in the call's turns: the WebSocket closed as an internal
/// error (1011, as a panicked element's call), and why the call ended.
#[cold]
async fn panicked<S>(call: &Call, ws: &mut WebSocketStream<S>, cause: String) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    call_log!(call, error, "the call's task panicked: {cause}");
    // The socket's own code may be what panicked, and panic again: the
    // call then ends all the same, its socket dropped.
    let closing = async {
        #[cfg(test)]
        if cause == PANIC_TWICE_TEXT {
            panic!("closing after: {cause}");
        }
        close(ws, CLOSE_PANICKED, "internal error").await;
    };
    match AssertUnwindSafe(closing).catch_unwind().await {
        Ok(()) => format!("internal error (the call's task panicked: {cause}), closed with 1011"),
        Err(_) => format!("internal error (the call's task panicked: {cause}, its close too)"),
    }
}

/// Tests only: a text message from Twilio that makes the call's task panic
/// as it reads it.
#[cfg(test)]
pub(crate) const PANIC_TEXT: &str = "the call's task panics (test)";

/// Tests only: as [`PANIC_TEXT`], and closing the WebSocket then panics too.
#[cfg(test)]
pub(crate) const PANIC_TWICE_TEXT: &str = "the call's task panics, its close too (test)";

/// The call's turns until it ends: why, if not closed by us.
async fn turns<S>(
    call: &Arc<Call>,
    ws: &mut WebSocketStream<S>,
    (writer, outbound): (&mut Writer, &mut Outbound),
    events: &EventSender,
    config: &CallConfig,
    session: &mut Session,
    start: Handled,
) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Written + Unpin,
{
    let connected = Instant::now();
    let mut last_media: Option<Instant> = None;
    // The idle timer: re-armed from the last media whenever it fires.
    let idle = config.idle_timeout;
    let idle_timer = tokio::time::sleep(if idle.is_zero() {
        Duration::MAX / 4
    } else {
        idle
    });
    tokio::pin!(idle_timer);
    let mut idle_registered = false;
    // One waiter for the whole call: a new one per turn of the loop would
    // lock the Notify twice per message (see `close_asked` for polling it).
    let close_requested = call.close_requested.notified();
    tokio::pin!(close_requested);
    let mut close_registered = false;
    // Wakes the writer when a frame held back may go out.
    let pace = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(pace);
    // The deadline of a write in progress (see `Writer::poll_write`).
    let stall = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(stall);
    // What the consumer asked to send while the task ran it (scratch).
    let mut on_task = Vec::new();
    // An element may have claimed the call before its task began: tell a
    // consumer on the network threads (shared-threads) that `start` is queued.
    let mut failed = None;
    if apply(call, events, start) {
        call.run_consumer(&mut on_task);
        if writer.take(call, on_task.drain(..), outbound) {
            failed = writer.write(call, ws, &mut pace).err();
        }
    }
    match failed {
        Some(e) => Some(e),
        None => loop {
            tokio::select! {
                biased;
                _ = close_asked(call, close_requested.as_mut(), &mut close_registered) => {
                    let (code, reason) = call.close_frame.locked().take().unwrap_or((1000, String::new()));
                    close(ws, code, &reason).await;
                    break None;
                }
                _ = idle_due(idle_timer.as_mut(), &mut idle_registered), if !idle.is_zero() => {
                    let since = last_media.unwrap_or(connected).elapsed();
                    if since >= idle {
                        close(ws, 1000, "").await;
                        break Some(format!("no media from Twilio for {} s", idle.as_secs()));
                    }
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + (idle - since));
                    idle_registered = false;
                }
                request = outbound.recv() => match request {
                    Some(request) => {
                        call.taken_from_channel();
                        writer.take(call, Some(request), outbound);
                        if let Err(e) = writer.write(call, ws, &mut pace) {
                            break Some(e);
                        }
                    }
                    None => {
                        close(ws, 1000, "").await;
                        break None;
                    }
                },
                _ = &mut pace, if writer.next.is_some() && !writer.busy() => {
                    if let Err(e) = writer.write(call, ws, &mut pace) {
                        break Some(e);
                    }
                }
                // Reads go on while a write waits for the peer to read.
                io = read_or_write(call, ws, writer, stall.as_mut()) => match io {
                    Io::Wrote(Err(e)) => break Some(e),
                    // What fell due while it waited goes now.
                    Io::Wrote(Ok(())) => {
                        if let Err(e) = writer.write(call, ws, &mut pace) {
                            break Some(e);
                        }
                    }
                    Io::Read(Some(Ok(Message::Text(text)))) => {
                        #[cfg(test)]
                        if [PANIC_TEXT, PANIC_TWICE_TEXT].contains(&text.as_str()) {
                            panic!("{}", text.as_str());
                        }
                        // What handling it touches is fetched while the
                        // message is parsed (see `hot`).
                        call.prefetch();
                        events.prefetch();
                        writer.outbox.prefetch();
                        let handled = session.handle(&text, || events.payload_buffer());
                        if handled.media {
                            last_media = Some(Instant::now());
                        }
                        if let Some(CallEvent::Mark(name)) = &handled.event {
                            writer.outbox.mark_echoed(name, call.now_ns());
                            call.playout_end.store(writer.outbox.playout_end(), Ordering::Relaxed);
                            // Only an echo of a mark sent counts (a stranger's
                            // name, or a second echo, says nothing).
                            let echoed = writer.outbox.marks_echoed();
                            call.marks_echoed.send_if_modified(|n| {
                                let before = std::mem::replace(n, echoed);
                                call.stats.add(Stat::MarksPlayed, echoed - before);
                                before != echoed
                            });
                        }
                        if apply(call, events, handled) {
                            let began = Instant::now();
                            call.run_consumer(&mut on_task);
                            // Held there (a push downstream blocked), the task
                            // read nothing: what Twilio sent meanwhile waits
                            // in the socket, so the idle clock starts again.
                            if began.elapsed() >= HELD_IN_CONSUMER {
                                last_media = Some(Instant::now());
                            }
                            // A consumer on this task (shared-threads) may have
                            // answered already: write that now, not a turn later.
                            if writer.take(call, on_task.drain(..), outbound)
                                && let Err(e) = writer.write(call, ws, &mut pace)
                            {
                                break Some(e);
                            }
                        }
                    }
                    Io::Read(Some(Ok(Message::Binary(data)))) => {
                        apply(call, events, session.binary(data.len()));
                    }
                    Io::Read(Some(Ok(Message::Close(frame)))) => {
                        answer_close(ws).await;
                        break Some(match frame {
                            // What tungstenite makes of a code no endpoint may
                            // send (it answers 1002): the code itself is gone.
                            Some(f) if f.code == CloseCode::Protocol && f.reason == "Protocol violation" => {
                                "Twilio closed the WebSocket with a close code no endpoint may send \
                                 (answered with 1002; or with 1002 itself)".to_owned()
                            }
                            Some(f) => format!("Twilio closed the WebSocket (code {}{}{})", u16::from(f.code),
                                if f.reason.is_empty() { "" } else { ": " },
                                // Posted in a warning: GLib's strings end at a U+0000.
                                f.reason.replace('\0', "\u{FFFD}")),
                            None => "Twilio closed the WebSocket".to_owned(),
                        });
                    }
                    Io::Read(Some(Ok(_))) => {} // ping/pong are answered by tungstenite
                    Io::Read(Some(Err(WsError::Capacity(e)))) => {
                        close(ws, CLOSE_TOO_BIG, "message too big").await;
                        break Some(format!("Twilio sent a message too big to read ({e}), closed with 1009"));
                    }
                    Io::Read(Some(Err(WsError::Utf8(e)))) => {
                        // RFC 6455: a text frame that is not UTF-8 fails
                        // the connection, with 1007.
                        close(ws, CLOSE_INVALID_DATA, "text that is not UTF-8").await;
                        break Some(format!("Twilio sent text that is not UTF-8 ({e}), closed with 1007"));
                    }
                    // tungstenite's name for a TCP close (FIN) with no
                    // close frame: a drop, not a protocol error to answer.
                    Io::Read(Some(Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)))) => {
                        answer_end(ws).await;
                        break Some("the connection dropped without a close frame".to_owned());
                    }
                    // The same over TLS without close_notify first (a TCP
                    // close), which rustls reads as an unexpected EOF.
                    Io::Read(Some(Err(WsError::Io(e)))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                        break Some("the connection dropped without a close frame".to_owned());
                    }
                    Io::Read(Some(Err(WsError::Protocol(e)))) => {
                        close(ws, CLOSE_PROTOCOL_ERROR, "WebSocket protocol error").await;
                        break Some(format!("WebSocket protocol error ({e}), closed with 1002"));
                    }
                    Io::Read(Some(Err(e))) => break Some(format!("connection error: {e}")),
                    Io::Read(None) => break Some("the connection dropped".to_owned()),
                }
            }
        },
    }
}

/// What [`read_or_write`] did.
enum Io {
    /// The write in progress is done (or failed).
    Wrote(Result<(), String>),
    /// What the socket read.
    Read(Option<Result<Message, WsError>>),
}

/// Goes on with the writer's write in progress, if there is one, and reads
/// the socket meanwhile: a peer that reads slowly, or stopped reading,
/// does not keep its own messages (media, `stop`, marks) from being read.
fn read_or_write<'a, S: AsyncRead + AsyncWrite + Written + Unpin>(
    call: &'a Call,
    ws: &'a mut WebSocketStream<S>,
    writer: &'a mut Writer,
    mut stall: Pin<&'a mut tokio::time::Sleep>,
) -> impl Future<Output = Io> + 'a {
    std::future::poll_fn(move |cx| {
        if writer.busy()
            && let Poll::Ready(done) = writer.poll_write(call, ws, &mut stall, cx)
        {
            return Poll::Ready(Io::Wrote(done));
        }
        ws.poll_next_unpin(cx).map(Io::Read)
    })
}

/// `close_requested`, polled only when it can be ready: polling a waiting
/// `Notified` takes the Notify's lock, on every turn of the task. Once
/// polled (which registers the task's waker with the Notify), it is left
/// alone until `closing` says a close was asked for: the request sets
/// that, then notifies, which wakes the task through that registration.
fn close_asked<'a>(
    call: &'a Call,
    mut close_requested: std::pin::Pin<&'a mut tokio::sync::futures::Notified<'_>>,
    registered: &'a mut bool,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        if *registered && !call.closing.load(Ordering::SeqCst) {
            return std::task::Poll::Pending;
        }
        *registered = true;
        close_requested.as_mut().poll(cx)
    })
}

/// A consumer run this long held the call's task: the idle timeout does
/// not count it (nothing was read meanwhile).
const HELD_IN_CONSUMER: Duration = Duration::from_secs(1);

/// The idle timer, polled only once it fired: registered once per
/// deadline, as the task's waker stays the same, so the turns of the loop
/// in between cost a load instead of a poll and a waker's registration
/// (`close_asked` does the same for the close request).
fn idle_due<'a>(
    mut timer: std::pin::Pin<&'a mut tokio::time::Sleep>,
    registered: &'a mut bool,
) -> impl Future<Output = ()> + 'a {
    std::future::poll_fn(move |cx| {
        if *registered && !timer.is_elapsed() {
            return std::task::Poll::Pending;
        }
        *registered = true;
        // Unconstrained: a poll that the task's budget turned away would
        // register nothing, and a fired timer would wake nobody.
        std::pin::pin!(tokio::task::unconstrained(timer.as_mut())).poll(cx)
    })
}

/// Applies what the session made of a message to the call; true if it
/// made an event (queued, or dropped as an overrun).
fn apply(call: &Call, events: &EventSender, handled: Handled) -> bool {
    for (stat, n) in handled.counts() {
        call.stats.add(stat, n);
    }
    for note in &handled.notes {
        match note.level {
            Level::Trace => call_log!(call, trace, "{}", note.text),
            Level::Debug => call_log!(call, debug, "{}", note.text),
            Level::Info => call_log!(call, info, "{}", note.text),
            Level::Warning => call_log!(call, warning, "{}", note.text),
        }
    }
    let Some(event) = handled.event else {
        return false;
    };
    match &event {
        CallEvent::Start(start) => {
            call.start.send_replace(Some(start.clone()));
        }
        CallEvent::Stop(_) => {
            call.stopped.store(true, Ordering::Relaxed);
            // Twilio plays no more: whoever waits for a mark's echo stops.
            call.marks_echoed.send_modify(|_| {});
        }
        _ => {}
    }
    queue(call, events, event);
    true
}

/// Queues `event` for the consuming element, or counts an overrun.
fn queue(call: &Call, events: &EventSender, event: CallEvent) {
    if let Err(event) = events.send(event) {
        call.stats.add(Stat::Overruns, 1);
        call_log!(
            call,
            warning,
            "pipeline is not keeping up, dropping {event:?}"
        );
    }
}

/// The channel of requests from elements on other threads. Its count, in
/// a line the senders touch anyway, says when `try_recv` has something to
/// read. `recv` polls the channel on every turn of the task: it cannot know
/// that the task's waker is still registered there, since a send's wake
/// may land after its request was taken (by `try_recv`) and the waker
/// registered again, and take that registration with it; trusting a flag
/// then lost the next send's wake-up, and the call's audio stalled until
/// something else woke the task.
pub(super) struct Outbound {
    pub(super) rx: mpsc::UnboundedReceiver<Request>,
}

impl Outbound {
    /// The next request; pending while the channel is empty.
    fn recv(&mut self) -> impl Future<Output = Option<Request>> + '_ {
        std::future::poll_fn(move |cx| self.rx.poll_recv(cx))
    }

    /// A request waiting in the channel, if there is one.
    pub(super) fn try_recv(&mut self, call: &Call) -> Option<Request> {
        if call.in_channel.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let request = self.rx.try_recv().ok()?;
        call.taken_from_channel();
        Some(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::Cleared;
    use super::super::outbox::Outgoing;
    use super::*;
    use crate::runtime::RUNTIME;

    const MS: u64 = 1_000_000;

    /// A clear still in the channel when the call ends (Twilio hung up
    /// between the writer's last look and the end) learns what the caller
    /// heard: here nothing, and the one frame never written is dropped.
    #[test]
    fn a_clear_left_when_the_call_ends_still_says_what_was_heard() {
        RUNTIME.block_on(async {
            let (call, _twilio) = super::super::tests::call().await;
            let mut writer = Writer::new(100 * MS);
            let text = r#"{"event":"media"}"#.to_owned();
            let bytes = text.len();
            writer.outbox.push(Outgoing::Media {
                text,
                bytes: 160,
                duration: 20 * MS,
                padding: 0,
                running_time: 5000 * MS,
            });
            let (tx, rx) = mpsc::unbounded_channel();
            let got = Arc::new(Mutex::new(None));
            let g = got.clone();
            call.in_channel.fetch_add(1, Ordering::SeqCst);
            let clear = Request::Clear(
                "clear".into(),
                Box::new(move |cleared| *g.lock().unwrap() = Some(cleared)),
            );
            assert!(tx.send(clear).is_ok());
            let mut outbound = Outbound { rx };
            writer.settle_clears(&call, &mut outbound);
            assert_eq!(
                *got.lock().unwrap(),
                Some(Cleared {
                    played: None,
                    dropped: 20 * MS,
                    unwritten: 20 * MS,
                    unwritten_bytes: bytes,
                })
            );
            assert_eq!(call.in_channel.load(Ordering::SeqCst), 0);
            // Nothing is taken after the end: later requests fail to send.
            let late = Request::Send(Outgoing::Text("late".into()));
            assert!(tx.send(late).is_err());
            call.close();
        });
    }

    /// `try_recv` reads the channel only when its count says a request
    /// waits; `recv` reads it on every poll, and a send wakes the task that
    /// waits in it, even after a request was taken by `try_recv` meanwhile.
    #[test]
    fn the_channel_is_read_when_counted_and_a_send_wakes_the_task() {
        RUNTIME.block_on(async {
            let (call, _twilio) = super::super::tests::call().await;
            let (tx, rx) = mpsc::unbounded_channel();
            let mut outbound = Outbound { rx };
            let text = |t: &str| Request::Send(Outgoing::Text(t.into()));
            assert!(futures::poll!(outbound.recv()).is_pending());
            // Not counted: not read by try_recv, read by recv.
            assert!(tx.send(text("uncounted")).is_ok());
            assert!(outbound.try_recv(&call).is_none());
            match futures::poll!(outbound.recv()) {
                std::task::Poll::Ready(Some(Request::Send(Outgoing::Text(t)))) => {
                    assert_eq!(t, "uncounted")
                }
                _ => panic!("the request was not read"),
            }
            // Counted: taken by try_recv.
            call.in_channel.fetch_add(1, Ordering::SeqCst);
            assert!(tx.send(text("counted")).is_ok());
            assert!(outbound.try_recv(&call).is_some());

            // On a task of its own: registered, then woken by the send.
            let (polled_tx, polled) = tokio::sync::oneshot::channel();
            let waiter = {
                tokio::spawn(async move {
                    let mut polled_tx = Some(polled_tx);
                    let mut recv = std::pin::pin!(outbound.recv());
                    std::future::poll_fn(|cx| {
                        let poll = recv.as_mut().poll(cx);
                        if let Some(tx) = polled_tx.take() {
                            let _ = tx.send(poll.is_pending());
                        }
                        poll
                    })
                    .await
                    .map(|r| matches!(r, Request::Send(Outgoing::Text(t)) if t == "woken"))
                })
            };
            assert_eq!(polled.await, Ok(true), "the first poll was pending");
            call.in_channel.fetch_add(1, Ordering::SeqCst);
            assert!(tx.send(text("woken")).is_ok());
            // A lost wake-up fails here instead of hanging.
            let got = tokio::time::timeout(Duration::from_secs(10), waiter).await;
            assert_eq!(got.ok().and_then(Result::ok), Some(Some(true)));
            call.taken_from_channel();
            call.close();
        });
    }
}
