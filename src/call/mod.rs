//! One live call: the [`Call`] handle the server creates once a WebSocket
//! handshake succeeds, and the elements use (identity, sending, closing,
//! waiting for `start`, marks or the end).
//!
//! The rooms around it: [`session`] turns Twilio's text into validated
//! events (pure), the call's `task` reads and writes the socket, [`events`]
//! is the bounded queue to the consuming element, [`stats`] the counters,
//! [`slot`] how a src and a sink find the same call. Elements never touch
//! the socket, and the task never waits for GStreamer: the event queue is
//! bounded and an overflow is counted, not waited out. The one exception is
//! opt-in: a src with `shared-threads=true` registers a [`Consumer`], and the
//! task then runs that src's pushes (the pipeline downstream of it) itself,
//! right after queueing, to save two thread hand-offs per chunk; such a
//! pipeline must not block.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;

use crate::codec::{ByteOrder, WireFormat};
use crate::lock::Locked;
use crate::protocol::dialect::{Choice, Dialect};
use crate::protocol::{StartInfo, Track};
use crate::runtime::RUNTIME;
pub use outbox::{Cleared, Outgoing};
use session::{Handled, Session};

mod closing;
mod consumer;
pub mod events;
pub(crate) mod hot;
pub mod outbox;
mod playing;
pub mod session;
pub mod slot;
pub mod stats;
mod task;
#[cfg(test)]
pub(crate) use task::{PANIC_TEXT, PANIC_TWICE_TEXT};
mod writer;
pub(crate) use writer::Written;

pub(crate) use closing::{CLOSE_TOO_BIG, answer_close, close as close_websocket};
pub use events::{CallEvent, Consumer, DtmfDigit, Events, MediaChunk};
pub(crate) use hot::HotPart;
pub use slot::{Refused, Slot, Takes, named_slot};
pub use stats::{Counter, SINK_COUNTERS, SRC_COUNTERS, Stat, Stats, counter_pspecs, find_counter};

/// The debug category of the server and of a call not yet consumed by an
/// element (then the element's category is used).
pub(crate) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "twiliostream",
        gst::DebugColorFlags::empty(),
        Some("Twilio Media Streams server and calls"),
    )
});

/// Outbound text waiting to be written, beyond which sends are refused: a
/// peer that reads nothing must not grow our memory (~4 min of audio).
const MAX_OUTBOUND: usize = 4 << 20;
/// The mark sent before a stream is ended after playout.
pub const END_MARK: &str = "twiliostream-end";
/// The lead a call's writer keeps in Twilio's queue until an element sets
/// one (see [`outbox`]).
pub const DEFAULT_LEAD: Duration = Duration::from_millis(100);
/// How much longer than the audio not yet played a wait for playout may take.
pub const PLAYOUT_GRACE: Duration = Duration::from_secs(5);
/// How long [`Call::close`] waits for the task before aborting it.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Why a message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The call has ended.
    Closed,
    /// Too much is waiting to be written: the peer is not reading.
    Backlog,
    /// `end-stream` after the playout was asked for: what comes later is
    /// no part of the stream it ends (a mark there would be echoed as
    /// played, its audio never sent).
    Ending,
}

/// Where a call's log lines go: the category and object of the element that
/// consumes the call, once there is one.
struct LogTarget {
    cat: gst::DebugCategory,
    element: glib::WeakRef<gst::Element>,
}

static NEXT_CALL_ID: AtomicU64 = AtomicU64::new(1);

/// What the call's writer is asked to do (see [`outbox`]).
pub(crate) enum Request {
    Send(Outgoing),
    /// A `clear` (its message): `done` learns what it found, on the call's task.
    Clear(String, Box<dyn FnOnce(Cleared) + Send>),
    /// The writer is to look at what waits (a pause ended).
    Wake,
}

/// Per-call limits (from the path's element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallConfig {
    /// Larger text messages are counted as invalid and ignored.
    pub max_message_size: usize,
    /// No media for this long ends the call; zero: never.
    pub idle_timeout: Duration,
    /// The provider's dialect, or `auto`.
    pub dialect: Choice,
    /// L16's byte order (the provider does not say it).
    pub l16_order: ByteOrder,
}

/// One live call. See the module documentation.
pub struct Call {
    id: u64,
    peer: SocketAddr,
    path: String,
    /// The provider's spelling of the protocol, known at `start`.
    dialect: &'static dyn Dialect,
    /// The audio on the wire, both ways, from `start`.
    format: WireFormat,
    pub stats: Stats,
    start: watch::Sender<Option<Arc<StartInfo>>>,
    events: Mutex<Option<Events>>,
    /// Whether the consumer of `events` has read them all.
    backlog: events::Backlog,
    outbound: mpsc::UnboundedSender<Request>,
    /// Requests made on the call's own task while it runs its consumer
    /// (see [`Call::run_consumer`]): taken right after, with no wake-up.
    on_task: Mutex<Vec<Request>>,
    /// Requests sent through the channel and not taken by the writer yet:
    /// while there are any, the task's own go through the channel too, so
    /// that none overtakes an earlier one from another thread.
    in_channel: AtomicUsize,
    /// Bytes of outbound text not written yet.
    outbound_bytes: AtomicUsize,
    /// Audio (ns) handed to the writer and not written (nor dropped) yet,
    /// padding left out (see `Outbox::pending_audio`).
    queued_audio: AtomicU64,
    /// The lead the writer keeps in Twilio's queue (ns).
    lead: AtomicU64,
    /// Wakes senders waiting for the writer to take audio.
    room: Notify,
    /// Senders waiting in [`Call::room`].
    room_waiters: AtomicUsize,
    /// When (`now_ns() + 1`) the task began running its consumer, or 0:
    /// its writer does not run until the consumer returns, so nobody may
    /// wait long for the writer meanwhile (the consumer's push may be
    /// waiting for them: see [`Call::room`]).
    consumer_since: AtomicU64,
    closing: AtomicBool,
    /// `end-stream` asked to end after the playout: a second asks nothing.
    ending_after_playout: AtomicBool,
    close_requested: Notify,
    /// How our close frame says it, when not a plain normal close.
    close_frame: Mutex<Option<(u16, String)>>,
    /// Why an element ended the stream: told to the consumer as
    /// [`CallEvent::Ended`] once the socket is closed.
    ended: Mutex<Option<String>>,
    /// Twilio has sent `stop`.
    stopped: AtomicBool,
    /// `start` names the outbound track: a one-way `<Start><Stream>`
    /// (Twilio's `<Connect><Stream>` carries the inbound track only), on
    /// which Twilio takes nothing (error 31924) and echoes no mark.
    one_way: bool,
    /// When the call was created: the origin of the writer's times.
    created: Instant,
    /// Nanoseconds after `created` when Twilio will have played all the
    /// audio written, by the writer's model (see [`outbox`]).
    playout_end: AtomicU64,
    task: Mutex<Option<JoinHandle<()>>>,
    open: watch::Sender<bool>,
    /// Marks sent that Twilio's echoes account for so far
    /// ([`outbox::Outbox::marks_echoed`]).
    marks_echoed: watch::Sender<u64>,
    /// Marks asked for so far (not `marks-sent`, which counts them as they
    /// are written), numbered under this lock so that marks sent from
    /// several threads are numbered in the order the writer gets them.
    marks_asked: Mutex<u64>,
    log: Mutex<Option<LogTarget>>,
    consumer: Mutex<Option<Consumer>>,
    /// Where the elements keep the state each chunk touches (see [`hot`]).
    pub(crate) hot: hot::Hot,
    /// The one sink that plays into the call: an id of its own and its name.
    sender: Mutex<Option<(usize, String)>>,
    /// Its sink is paused: the writer holds the media.
    writer_paused: AtomicBool,
    /// How many times it was paused: a wait for the playout that a pause
    /// came into does not count the pause.
    writer_pauses: AtomicU64,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "call {} from {} on {}", self.id, self.peer, self.path)
    }
}

macro_rules! call_log {
    ($call:expr, $level:ident, $($args:tt)*) => {{
        let call: &$crate::call::Call = $call;
        let target = $crate::lock::Locked::locked(&call.log).as_ref().map(|t| (t.cat, t.element.upgrade()));
        match target {
            Some((cat, Some(element))) => gst::$level!(cat, obj = element, "call {}: {}", call.id, format_args!($($args)*)),
            _ => gst::$level!($crate::call::CAT, "call {}: {}", call.id, format_args!($($args)*)),
        }
    }};
}
pub(crate) use call_log;

impl Call {
    /// Takes over a WebSocket whose `start` the `session` has just handled
    /// (`start` is what it made of it): spawns the call's task on the
    /// current runtime. `guard` lives as long as the task.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn<S, G>(
        ws: WebSocketStream<S>,
        peer: SocketAddr,
        path: String,
        config: CallConfig,
        guard: G,
        session: Session,
        start: Handled,
    ) -> Arc<Call>
    where
        S: AsyncRead + AsyncWrite + Written + Unpin + Send + 'static,
        G: Send + 'static,
    {
        let (events, events_rx) = events::channel();
        let (outbound_tx, outbound_rx) = mpsc::unbounded_channel();
        // Known from the moment the call is: an element it is delivered to
        // (`connected`) has its streamSid before the task first runs.
        let start_info = match &start.event {
            Some(CallEvent::Start(info)) => Some(info.clone()),
            _ => None,
        };
        let call = Arc::new(Call {
            id: NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            path,
            dialect: session.dialect(),
            format: session.format(),
            stats: Stats::default(),
            // Before any element can see the start: a sink waiting for a
            // call takes it the moment it is dispatched.
            one_way: start_info.as_ref().is_some_and(|start| {
                session.dialect().outbound_track_is_one_way() && start.carries(Track::Outbound)
            }),
            start: watch::Sender::new(start_info),
            backlog: events_rx.backlog(),
            events: Mutex::new(Some(events_rx)),
            outbound: outbound_tx,
            on_task: Mutex::new(Vec::new()),
            in_channel: AtomicUsize::new(0),
            outbound_bytes: AtomicUsize::new(0),
            queued_audio: AtomicU64::new(0),
            lead: AtomicU64::new(DEFAULT_LEAD.as_nanos() as u64),
            room: Notify::new(),
            room_waiters: AtomicUsize::new(0),
            consumer_since: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            ending_after_playout: AtomicBool::new(false),
            close_requested: Notify::new(),
            close_frame: Mutex::new(None),
            ended: Mutex::new(None),
            stopped: AtomicBool::new(false),
            created: Instant::now(),
            playout_end: AtomicU64::new(0),
            task: Mutex::new(None),
            hot: hot::Hot::default(),
            open: watch::Sender::new(true),
            marks_echoed: watch::Sender::new(0),
            marks_asked: Mutex::new(0),
            log: Mutex::new(None),
            consumer: Mutex::new(None),
            sender: Mutex::new(None),
            writer_paused: AtomicBool::new(false),
            writer_pauses: AtomicU64::new(0),
        });
        gst::info!(CAT, "{call:?}: connected");
        let call_task = call.clone();
        let task = tokio::spawn(async move {
            task::serve(call_task, ws, outbound_rx, events, config, session, start).await;
            drop(guard);
        });
        *call.task.locked() = Some(task);
        call
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The provider's dialect: how messages to it are written.
    pub fn dialect(&self) -> &'static dyn Dialect {
        self.dialect
    }

    /// The call's audio on the wire (both directions).
    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// Whether the WebSocket is still open.
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// The `start` message, once it arrived.
    pub fn start_info(&self) -> Option<Arc<StartInfo>> {
        self.start.borrow().clone()
    }

    /// Waits for the `start` message; None if the call ends first.
    pub async fn started(&self) -> Option<Arc<StartInfo>> {
        let mut start = self.start.subscribe();
        let mut open = self.open.subscribe();
        tokio::select! {
            start = start.wait_for(Option::is_some) => start.ok().and_then(|s| s.clone()),
            _ = open.wait_for(|open| !open) => self.start_info(),
        }
    }

    /// Waits until Twilio has echoed the `n`th mark sent, or a later one
    /// (they come back in the order they were sent; echoes of names never
    /// sent do not count), or stopped the stream (it plays no more), or the
    /// call ended.
    pub async fn marks_echoed(&self, n: u64) {
        let mut echoed = self.marks_echoed.subscribe();
        let mut open = self.open.subscribe();
        tokio::select! {
            // `stop` notifies this watch too (see `task::apply`).
            _ = echoed.wait_for(|&count| count >= n || self.is_stopped()) => {}
            _ = open.wait_for(|open| !open) => {}
        }
    }

    /// Tells when the WebSocket closes (false then), without the call.
    pub(crate) fn open_watch(&self) -> watch::Receiver<bool> {
        self.open.subscribe()
    }

    /// Waits until the WebSocket is closed.
    pub async fn closed(&self) {
        let _ = self.open.subscribe().wait_for(|open| !open).await;
    }

    /// Asks for the call's own lines and the ranges its elements
    /// registered to be brought into the cache (see [`hot`]).
    pub(crate) fn prefetch(&self) {
        hot::prefetch(self as *const Call as usize, std::mem::size_of::<Call>());
        self.hot.fetch();
    }

    /// Takes the event queue; only the element that consumes the call does.
    pub fn take_events(&self) -> Option<Events> {
        self.events.locked().take()
    }

    /// Sends further log lines about this call to `element`'s category.
    pub fn log_to(&self, cat: gst::DebugCategory, element: &gst::Element) {
        *self.log.locked() = Some(LogTarget {
            cat,
            element: element.downgrade(),
        });
    }

    /// Queues a message for Twilio; media and marks wait their turn in the
    /// writer's pacing (see [`outbox`]).
    pub fn send(&self, item: Outgoing) -> Result<(), SendError> {
        if !self.is_open() || self.closing.load(Ordering::Relaxed) {
            return Err(SendError::Closed);
        }
        // `end-stream` after the playout has put its mark at the end of the
        // audio: what comes later is no part of the stream it ends.
        if matches!(item, Outgoing::Media { .. })
            && self.ending_after_playout.load(Ordering::SeqCst)
        {
            call_log!(self, debug, "media after end-stream dropped");
            return Ok(());
        }
        // Counted as the outbox counts what waits in it (its padding left
        // out), so that what a clear or `stop` drops is taken off in full.
        let (len, audio) = match &item {
            Outgoing::Media {
                text,
                duration,
                padding,
                ..
            } => (text.len(), duration - padding),
            Outgoing::Mark { text, .. } | Outgoing::ClearedMark(text) | Outgoing::Text(text) => {
                (text.len(), 0)
            }
        };
        if self.outbound_bytes.fetch_add(len, Ordering::Relaxed) + len > MAX_OUTBOUND {
            self.outbound_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(SendError::Backlog);
        }
        self.queued_audio.fetch_add(audio, Ordering::Relaxed);
        self.dispatch(Request::Send(item))
    }

    /// Queues a text message for Twilio, in order with the rest.
    pub fn send_text(&self, text: String) -> Result<(), SendError> {
        self.send(Outgoing::Text(text))
    }

    /// Sends a `mark` named `name` after everything sent so far; returns
    /// how many marks the call has sent, this one included (wait for that
    /// many echoes with [`Call::marks_echoed`]). Needs `start`; refused
    /// once Twilio has sent `stop` (it echoes nothing more), and on a
    /// one-way stream (it echoes nothing).
    pub fn send_mark(&self, name: &str) -> Result<u64, SendError> {
        self.mark(name, false)
    }

    /// [`send_mark`](Self::send_mark); `ours` for the plugin's own marks,
    /// sent while the stream ends too.
    pub(crate) fn mark(&self, name: &str, ours: bool) -> Result<u64, SendError> {
        let Some(start) = self.start_info() else {
            return Err(SendError::Closed);
        };
        if self.is_stopped() || self.is_one_way() {
            return Err(SendError::Closed);
        }
        let text = self.dialect.mark(&start.stream_sid, name);
        // A wait for this mark's echo must not be met by an earlier one's:
        // numbered in the writer's order (sending never blocks).
        let mut asked = self.marks_asked.locked();
        // Under the lock `end_stream` sets it under: no mark of the
        // application's goes out after the end mark.
        if !ours && self.ending_after_playout.load(Ordering::SeqCst) {
            return Err(SendError::Ending);
        }
        self.send(Outgoing::Mark {
            name: name.to_owned(),
            text,
        })?;
        *asked += 1;
        Ok(*asked)
    }

    /// How long one media `payload` of the call's format plays.
    pub fn audio_ns(&self, payload: &[u8]) -> u64 {
        self.format.payload_ns(payload)
    }

    /// Sends `clear`: the writer drops the media it has not written, Twilio
    /// what it has not played. `done` is told, on the call's task, what the
    /// caller heard and what was dropped. Needs `start`; refused once Twilio
    /// has sent `stop` (it plays nothing more, and nothing more is sent),
    /// on a one-way stream, and while 8 MiB wait unwritten (a peer that reads slowly: media and
    /// marks are refused from 4 MiB on).
    pub fn clear(&self, done: impl FnOnce(Cleared) + Send + 'static) -> Result<(), SendError> {
        let Some(start) = self.start_info() else {
            return Err(SendError::Closed);
        };
        if !self.is_open()
            || self.closing.load(Ordering::Relaxed)
            || self.is_stopped()
            || self.is_one_way()
        {
            return Err(SendError::Closed);
        }
        let text = self.dialect.clear(&start.stream_sid);
        // Bounded, so that clears asked for in a loop for a peer that reads
        // slowly do not pile up; above media's and marks' bound, so that a
        // barge-in finds room even when they filled theirs.
        let len = text.len();
        if self.outbound_bytes.fetch_add(len, Ordering::Relaxed) + len > 2 * MAX_OUTBOUND {
            self.outbound_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(SendError::Backlog);
        }
        self.dispatch(Request::Clear(text, Box::new(done)))?;
        self.stats.add(Stat::ClearsSent, 1);
        Ok(())
    }

    /// Nanoseconds since the call was created: the writer's clock.
    pub(crate) fn now_ns(&self) -> u64 {
        self.created.elapsed().as_nanos() as u64
    }

    /// An element took the call's events and has yet to read the call's
    /// end (`stop`, or the socket's end) and post it, before its EOS. A paired sink
    /// fed by that element does not answer its buffers with EOS meanwhile:
    /// the element would stop pushing, and never read (nor post) the end.
    pub fn end_unread(&self) -> bool {
        self.events.locked().is_none() && self.backlog.end_unread()
    }

    /// Whether Twilio has sent `stop` (the stream is over on its side).
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// Whether the stream is one-way (its `start` names the outbound
    /// track): nothing is sent on it, as nothing is after `stop`.
    pub fn is_one_way(&self) -> bool {
        self.one_way
    }

    /// Ends the stream from our side: closes the WebSocket normally (on
    /// `<Connect><Stream>` Twilio then goes on with the TwiML) and, once it
    /// is closed, tells the consuming element with [`CallEvent::Ended`]
    /// carrying `why`. Does not wait. False if the call had ended already.
    pub fn end(&self, why: &str) -> bool {
        if !self.is_open() || self.closing.load(Ordering::Relaxed) {
            return false;
        }
        self.ended.locked().get_or_insert_with(|| why.to_owned());
        self.request_close();
        true
    }

    /// Closes the WebSocket with `code` and `reason` in the close frame,
    /// without waiting (e.g. 1013 when no element is free for the call).
    pub fn refuse(&self, code: u16, reason: &str) {
        *self.close_frame.locked() = Some((code, reason.to_owned()));
        self.request_close();
    }

    /// Asks the task to close the WebSocket without waiting for it.
    pub fn request_close(&self) {
        // Before the notification: the task polls its waiter only once it
        // sees this (`task::serve`).
        self.closing.store(true, Ordering::SeqCst);
        self.close_requested.notify_one();
        self.room.notify_waiters();
    }

    /// Closes the WebSocket. Off the runtime's threads, returns once the
    /// socket is gone (the task closes politely within `CLOSE_TIMEOUT` or
    /// is aborted after `CLOSE_WAIT`), or after twice `CLOSE_WAIT` if the
    /// runtime cannot run the task (every thread of it held downstream):
    /// the task then ends whenever it runs again. On a runtime thread, it
    /// does not wait.
    pub fn close(&self) {
        self.request_close();
        let Some(task) = self.task.locked().take() else {
            return;
        };
        // The watchdog ends with the task, not after the full wait.
        let mut task = task;
        let (done, ended) = std::sync::mpsc::channel::<()>();
        RUNTIME.spawn(async move {
            if tokio::time::timeout(CLOSE_WAIT, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
            drop(done);
        });
        if tokio::runtime::Handle::try_current().is_err() {
            // Bounded without the runtime's help: a runtime whose every
            // thread is held by a downstream that blocks for good (see the
            // README's fallback rule) must not hang a state change too.
            let _ = ended.recv_timeout(CLOSE_WAIT + CLOSE_WAIT);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
