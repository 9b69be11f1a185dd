//! One live call: its identity, what Twilio sent (as events for the element
//! that consumes them), the way back to Twilio, and its counters.
//!
//! A [`Call`] is created by the server once a WebSocket handshake succeeds. A
//! single tokio task per call reads Twilio's messages, validates them and turns
//! them into [`CallEvent`]s; the same task writes whatever the elements send.
//! Elements never touch the socket, and the task never waits for GStreamer:
//! the event queue is bounded and an overflow is counted, not waited out.
//! The one exception is opt-in: a src with `shared-threads=true` registers a
//! [`Consumer`], and the task then runs that src's pushes (the pipeline
//! downstream of it) itself, right after queueing, to save two thread
//! hand-offs per chunk; such a pipeline must not block.
//!
//! A [`Slot`] is where a call is delivered to: a src (or a sink that runs on
//! its own) registers one with a listener, and a sink paired with that src
//! waits on the same slot.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use gst::glib;
use gst::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::protocol::{Inbound, StartInfo, StopInfo};

pub(crate) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "twiliostream",
        gst::DebugColorFlags::empty(),
        Some("Twilio Media Streams server and calls"),
    )
});

/// How many media chunks may wait for the consuming element before further
/// ones are dropped and counted as overruns: about 20 s of 20 ms chunks.
const MEDIA_QUEUE: usize = 1024;
/// The same for all events together: control events (start, marks, DTMF,
/// stop) are never dropped for media, only in a flood of them.
const EVENT_QUEUE: usize = 8 * MEDIA_QUEUE;
/// Outbound text waiting to be written, beyond which sends are refused: a
/// peer that reads nothing must not grow our memory (~4 min of audio).
const MAX_OUTBOUND: usize = 4 << 20;
/// A write that makes no progress for this long means the peer stopped
/// reading: the call is over.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long closing our side of the WebSocket may take before the socket is
/// simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(250);
/// How long [`Call::close`] waits for the task before aborting it.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// The counters of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    BytesReceived,
    ChunksReceived,
    ChunksLost,
    /// Inbound payloads that could not be decoded (bad base64).
    InboundTranscodeErrors,
    InvalidMessages,
    Overruns,
    /// Marks Twilio echoed back (audio played up to them).
    MarksReceived,
    DtmfReceived,
    BytesSent,
    ChunksSent,
    MarksSent,
    ClearsSent,
    /// Outbound input that could not be encoded.
    OutboundTranscodeErrors,
    /// Outbound frames dropped because the peer was not reading.
    ChunksDropped,
}

const STAT_COUNT: usize = 14;

/// A counter as an element shows it: a read-only `u64` property and a field
/// of the element's `stats` structure.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    pub stat: Stat,
    pub name: &'static str,
    pub nick: &'static str,
    pub blurb: &'static str,
}

const fn counter(
    stat: Stat,
    name: &'static str,
    nick: &'static str,
    blurb: &'static str,
) -> Counter {
    Counter {
        stat,
        name,
        nick,
        blurb,
    }
}

/// The counters twiliostreamsrc reports.
pub const SRC_COUNTERS: &[Counter] = &[
    counter(
        Stat::BytesReceived,
        "bytes-received",
        "Bytes received",
        "μ-law bytes received from Twilio (8000 per second of audio)",
    ),
    counter(
        Stat::ChunksReceived,
        "chunks-received",
        "Chunks received",
        "Media messages received from Twilio",
    ),
    counter(
        Stat::ChunksLost,
        "chunks-lost",
        "Chunks lost",
        "Media chunks missing from the stream (by chunk number or timestamp); \
         each gap is filled with silence and flagged DISCONT",
    ),
    counter(
        Stat::InboundTranscodeErrors,
        "transcode-errors",
        "Transcode errors",
        "Media payloads that could not be decoded (bad base64); they are skipped",
    ),
    counter(
        Stat::InvalidMessages,
        "invalid-messages",
        "Invalid messages",
        "Messages ignored as invalid: malformed JSON, unknown events, binary frames, \
         media before start, a wrong streamSid, a duplicate start",
    ),
    counter(
        Stat::Overruns,
        "overruns",
        "Overruns",
        "Events dropped because the pipeline did not consume them fast enough \
         (about 20 s of audio are queued before this happens)",
    ),
    counter(
        Stat::MarksReceived,
        "marks-received",
        "Marks received",
        "Mark messages received from Twilio (audio played up to a mark)",
    ),
    counter(
        Stat::DtmfReceived,
        "dtmf-received",
        "DTMF received",
        "DTMF digits received from Twilio",
    ),
];

/// The counters twiliostreamsink reports.
pub const SINK_COUNTERS: &[Counter] = &[
    counter(
        Stat::BytesSent,
        "bytes-sent",
        "Bytes sent",
        "μ-law bytes sent to Twilio (8000 per second of audio)",
    ),
    counter(
        Stat::ChunksSent,
        "chunks-sent",
        "Chunks sent",
        "Media messages sent to Twilio",
    ),
    counter(
        Stat::MarksSent,
        "marks-sent",
        "Marks sent",
        "Mark messages sent to Twilio",
    ),
    counter(
        Stat::MarksReceived,
        "marks-played",
        "Marks played",
        "Marks Twilio echoed back: the audio before them was played (or cleared)",
    ),
    counter(
        Stat::ClearsSent,
        "clears-sent",
        "Clears sent",
        "Clear messages sent to Twilio",
    ),
    counter(
        Stat::OutboundTranscodeErrors,
        "transcode-errors",
        "Transcode errors",
        "Input that could not be encoded (a dangling byte of a 16-bit sample) and was dropped",
    ),
    counter(
        Stat::ChunksDropped,
        "chunks-dropped",
        "Chunks dropped",
        "Media messages dropped because Twilio was not reading (4 MiB waiting to be sent)",
    ),
];

/// The read-only properties of `counters`.
pub fn counter_pspecs(counters: &[Counter]) -> impl Iterator<Item = glib::ParamSpec> + '_ {
    counters.iter().map(|c| {
        glib::ParamSpecUInt64::builder(c.name)
            .nick(c.nick)
            .blurb(c.blurb)
            .read_only()
            .build()
    })
}

/// The counter called `name`, if it is one of `counters`.
pub fn find_counter(counters: &[Counter], name: &str) -> Option<Stat> {
    counters.iter().find(|c| c.name == name).map(|c| c.stat)
}

/// Atomic counters, one per [`Stat`].
#[derive(Default)]
pub struct Stats([AtomicU64; STAT_COUNT]);

impl Stats {
    pub fn add(&self, stat: Stat, n: u64) {
        self.0[stat as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize].load(Ordering::Relaxed)
    }

    /// A structure named `name` holding `counters` as `u64` fields (zeros
    /// without a call).
    pub fn structure(stats: Option<&Stats>, name: &str, counters: &[Counter]) -> gst::Structure {
        let mut s = gst::Structure::new_empty(name);
        for c in counters {
            s.set(c.name, stats.map_or(0, |st| st.get(c.stat)));
        }
        s
    }
}

/// A DTMF digit as Twilio sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfDigit(pub String);

impl DtmfDigit {
    /// The event number of GStreamer's `dtmf-event` (RFC 4733): 0–9, * = 10,
    /// # = 11, A–D = 12–15.
    pub fn number(&self) -> Option<i32> {
        let mut chars = self.0.chars();
        let c = chars.next()?;
        if chars.next().is_some() {
            return None;
        }
        match c {
            '0'..='9' => Some(c as i32 - '0' as i32),
            '*' => Some(10),
            '#' => Some(11),
            'A'..='D' => Some(12 + c as i32 - 'A' as i32),
            'a'..='d' => Some(12 + c as i32 - 'a' as i32),
            _ => None,
        }
    }
}

/// One inbound media chunk, decoded from base64.
#[derive(Debug)]
pub struct MediaChunk {
    /// `media.timestamp`: milliseconds since the stream started.
    pub timestamp_ms: u64,
    /// `media.chunk`, when present.
    pub chunk: Option<u64>,
    /// Raw μ-law, 8 kHz mono.
    pub ulaw: Vec<u8>,
    /// When the message was read off the socket.
    pub arrival: Instant,
}

/// What the consuming element learns from Twilio, in arrival order.
#[derive(Debug)]
pub enum CallEvent {
    Start(Arc<StartInfo>),
    Media(MediaChunk),
    Dtmf(DtmfDigit),
    /// A mark echoed back by Twilio: audio up to it has been played.
    Mark(String),
    Stop(StopInfo),
    /// The connection ended without a `stop`; the reason is for a warning.
    Closed(String),
}

/// The events of a call, as its consuming element receives them.
pub struct Events {
    rx: mpsc::UnboundedReceiver<CallEvent>,
    queue: Arc<EventQueue>,
}

impl Events {
    /// The next event; None once the call's task has ended and all were read.
    pub async fn recv(&mut self) -> Option<CallEvent> {
        let event = self.rx.recv().await?;
        self.queue.taken(&event);
        Some(event)
    }

    /// Hands a media chunk's bytes back once used: the call's task decodes
    /// the next payload into them instead of allocating.
    pub fn recycle(&self, mut ulaw: Vec<u8>) {
        if ulaw.capacity() > SPARE_PAYLOAD_CAPACITY {
            // An odd, large chunk: not worth holding on to for the call.
            return;
        }
        ulaw.clear();
        let mut spare = self.queue.spare.lock().unwrap();
        if spare.len() < SPARE_PAYLOADS {
            spare.push(ulaw);
        }
    }

    /// The next event without waiting: Pending while the queue is empty,
    /// Ready(None) once the call's task has ended and all were read.
    pub fn try_recv(&mut self) -> Poll<Option<CallEvent>> {
        match self.rx.try_recv() {
            Ok(event) => {
                self.queue.taken(&event);
                Poll::Ready(Some(event))
            }
            Err(mpsc::error::TryRecvError::Empty) => Poll::Pending,
            Err(mpsc::error::TryRecvError::Disconnected) => Poll::Ready(None),
        }
    }
}

/// Called on the call's own task after it queued events (and once after
/// the last), by an element that consumes them there instead of waiting.
pub type Consumer = Arc<dyn Fn() + Send + Sync>;

/// How many used payload buffers are kept for reuse (see [`Events::recycle`]).
const SPARE_PAYLOADS: usize = 4;
/// Larger buffers are freed, not kept: Twilio's chunks are 160 bytes.
const SPARE_PAYLOAD_CAPACITY: usize = 4096;

/// What is waiting in an [`Events`] queue.
#[derive(Default)]
struct EventQueue {
    events: AtomicUsize,
    media: AtomicUsize,
    /// Payload buffers the consumer has finished with.
    spare: Mutex<Vec<Vec<u8>>>,
}

impl EventQueue {
    /// Whether `event` fits; counts it if so.
    fn admit(&self, event: &CallEvent) -> bool {
        let is_media = matches!(event, CallEvent::Media(_));
        if self.events.load(Ordering::Relaxed) >= EVENT_QUEUE
            || (is_media && self.media.load(Ordering::Relaxed) >= MEDIA_QUEUE)
        {
            return false;
        }
        self.events.fetch_add(1, Ordering::Relaxed);
        if is_media {
            self.media.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    fn taken(&self, event: &CallEvent) {
        self.events.fetch_sub(1, Ordering::Relaxed);
        if matches!(event, CallEvent::Media(_)) {
            self.media.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Why a message could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The call has ended.
    Closed,
    /// Too much is waiting to be written: the peer is not reading.
    Backlog,
}

/// Where a call's log lines go: the category and object of the element that
/// consumes the call, once there is one.
struct LogTarget {
    cat: gst::DebugCategory,
    element: glib::WeakRef<gst::Element>,
}

static NEXT_CALL_ID: AtomicU64 = AtomicU64::new(1);

/// Per-call limits (from the path's element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallConfig {
    /// Larger text messages are counted as invalid and ignored.
    pub max_message_size: usize,
    /// No media for this long ends the call; zero: never.
    pub idle_timeout: Duration,
}

/// One live call. See the module documentation.
pub struct Call {
    id: u64,
    peer: SocketAddr,
    path: String,
    pub stats: Stats,
    start: watch::Sender<Option<Arc<StartInfo>>>,
    events: Mutex<Option<Events>>,
    outbound: mpsc::UnboundedSender<String>,
    /// Bytes of outbound text not written yet.
    outbound_bytes: AtomicUsize,
    closing: AtomicBool,
    close_requested: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
    open: watch::Sender<bool>,
    /// Marks Twilio echoed so far.
    marks_echoed: watch::Sender<u64>,
    log: Mutex<Option<LogTarget>>,
    consumer: Mutex<Option<Consumer>>,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "call {} from {} on {}", self.id, self.peer, self.path)
    }
}

macro_rules! call_log {
    ($call:expr, $level:ident, $($args:tt)*) => {{
        let call: &Call = $call;
        let target = call.log.lock().unwrap().as_ref().map(|t| (t.cat, t.element.upgrade()));
        match target {
            Some((cat, Some(element))) => gst::$level!(cat, obj = element, "call {}: {}", call.id, format_args!($($args)*)),
            _ => gst::$level!(CAT, "call {}: {}", call.id, format_args!($($args)*)),
        }
    }};
}

impl Call {
    /// Takes over an accepted WebSocket: spawns the call's task on the
    /// current runtime. `guard` lives as long as the task.
    pub(crate) fn spawn<S, G>(
        ws: WebSocketStream<S>,
        peer: SocketAddr,
        path: String,
        config: CallConfig,
        guard: G,
    ) -> Arc<Call>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        G: Send + 'static,
    {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (outbound_tx, outbound_rx) = mpsc::unbounded_channel();
        let queue = Arc::new(EventQueue::default());
        let call = Arc::new(Call {
            id: NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            path,
            stats: Stats::default(),
            start: watch::Sender::new(None),
            events: Mutex::new(Some(Events {
                rx: events_rx,
                queue: queue.clone(),
            })),
            outbound: outbound_tx,
            outbound_bytes: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            close_requested: Notify::new(),
            task: Mutex::new(None),
            open: watch::Sender::new(true),
            marks_echoed: watch::Sender::new(0),
            log: Mutex::new(None),
            consumer: Mutex::new(None),
        });
        gst::info!(CAT, "{call:?}: connected");
        let events = EventSender {
            tx: events_tx,
            queue,
        };
        let call_task = call.clone();
        let task = tokio::spawn(async move {
            serve(call_task, ws, outbound_rx, events, config).await;
            drop(guard);
        });
        *call.task.lock().unwrap() = Some(task);
        call
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
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

    /// Waits until Twilio has echoed `n` marks in all (they come back in
    /// the order they were sent), or the call ended.
    pub async fn marks_echoed(&self, n: u64) {
        let mut echoed = self.marks_echoed.subscribe();
        let mut open = self.open.subscribe();
        tokio::select! {
            _ = echoed.wait_for(|&count| count >= n) => {}
            _ = open.wait_for(|open| !open) => {}
        }
    }

    /// Waits until the WebSocket is closed.
    pub async fn closed(&self) {
        let _ = self.open.subscribe().wait_for(|open| !open).await;
    }

    /// Takes the event queue; only the element that consumes the call does.
    pub fn take_events(&self) -> Option<Events> {
        self.events.lock().unwrap().take()
    }

    /// Has `consumer` called on the call's task whenever events were queued
    /// (see [`Consumer`]); None stops that.
    pub fn set_consumer(&self, consumer: Option<Consumer>) {
        *self.consumer.lock().unwrap() = consumer;
    }

    fn notify_consumer(&self) {
        let consumer = self.consumer.lock().unwrap().clone();
        if let Some(consumer) = consumer {
            consumer();
        }
    }

    /// Sends further log lines about this call to `element`'s category.
    pub fn log_to(&self, cat: gst::DebugCategory, element: &gst::Element) {
        *self.log.lock().unwrap() = Some(LogTarget {
            cat,
            element: element.downgrade(),
        });
    }

    /// Queues a text message for Twilio.
    pub fn send_text(&self, text: String) -> Result<(), SendError> {
        if !self.is_open() || self.closing.load(Ordering::Relaxed) {
            return Err(SendError::Closed);
        }
        let len = text.len();
        if self.outbound_bytes.fetch_add(len, Ordering::Relaxed) + len > MAX_OUTBOUND {
            self.outbound_bytes.fetch_sub(len, Ordering::Relaxed);
            return Err(SendError::Backlog);
        }
        self.outbound.send(text).map_err(|_| SendError::Closed)
    }

    /// Asks the task to close the WebSocket without waiting for it.
    pub fn request_close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.close_requested.notify_one();
    }

    /// Closes the WebSocket. Off the runtime's threads, returns once the
    /// socket is gone: the task closes politely within `CLOSE_TIMEOUT` or
    /// is aborted after `CLOSE_WAIT`. On a runtime thread, it does not wait.
    pub fn close(&self) {
        self.request_close();
        let Some(task) = self.task.lock().unwrap().take() else {
            return;
        };
        // The watchdog ends with the task, not after the full wait.
        let mut task = task;
        let watchdog = crate::server::RUNTIME.spawn(async move {
            if tokio::time::timeout(CLOSE_WAIT, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        });
        if tokio::runtime::Handle::try_current().is_err() {
            let _ = futures::executor::block_on(watchdog);
        }
    }
}

/// The sending side of [`Events`].
struct EventSender {
    tx: mpsc::UnboundedSender<CallEvent>,
    queue: Arc<EventQueue>,
}

impl EventSender {
    /// Queues `event` unless the queue is full (then counts an overrun).
    fn send(&self, call: &Call, event: CallEvent) {
        if !self.queue.admit(&event) {
            call.stats.add(Stat::Overruns, 1);
            call_log!(
                call,
                warning,
                "pipeline is not keeping up, dropping {event:?}"
            );
            return;
        }
        // An error means nobody consumes the call any more: it is being torn down.
        let _ = self.tx.send(event);
    }

    /// An empty buffer for the next payload: a recycled one if there is one.
    fn payload_buffer(&self) -> Vec<u8> {
        self.queue.spare.lock().unwrap().pop().unwrap_or_default()
    }
}

/// The per-call task: reads, validates and dispatches Twilio's messages,
/// writes ours, and ends when either side closes.
async fn serve<S>(
    call: Arc<Call>,
    mut ws: WebSocketStream<S>,
    mut outbound: mpsc::UnboundedReceiver<String>,
    events: EventSender,
    config: CallConfig,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut session = Session {
        max_message_size: config.max_message_size,
        ..Session::default()
    };
    // The idle timer: re-armed from the last media whenever it fires.
    let idle = config.idle_timeout;
    let idle_timer = tokio::time::sleep(if idle.is_zero() {
        Duration::MAX / 4
    } else {
        idle
    });
    tokio::pin!(idle_timer);
    // One waiter for the whole call: a new one per turn of the loop would
    // lock the Notify twice per message.
    let close_requested = call.close_requested.notified();
    tokio::pin!(close_requested);
    let ended = loop {
        tokio::select! {
            biased;
            _ = &mut close_requested => {
                close(&mut ws).await;
                break None;
            }
            _ = &mut idle_timer, if !idle.is_zero() => {
                let since = session.last_media.unwrap_or(session.connected).elapsed();
                if since >= idle {
                    close(&mut ws).await;
                    break Some(format!("no media from Twilio for {} s", idle.as_secs()));
                }
                idle_timer.as_mut().reset(tokio::time::Instant::now() + (idle - since));
            }
            text = outbound.recv() => match text {
                Some(text) => {
                    if let Err(e) = write_batch(&call, &mut ws, text, &mut outbound).await {
                        break Some(e);
                    }
                }
                None => {
                    close(&mut ws).await;
                    break None;
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if session.handle(&call, &text, &events) {
                        call.notify_consumer();
                        // A consumer on this task (shared-threads) may have
                        // answered already: write that now, not a turn later.
                        if let Ok(first) = outbound.try_recv()
                            && let Err(e) = write_batch(&call, &mut ws, first, &mut outbound).await
                        {
                            break Some(e);
                        }
                    }
                }
                Some(Ok(Message::Binary(data))) => {
                    call.stats.add(Stat::InvalidMessages, 1);
                    call_log!(&call, warning, "ignoring a binary frame of {} bytes (Twilio sends text)", data.len());
                }
                Some(Ok(Message::Close(frame))) => {
                    break Some(match frame {
                        Some(f) => format!("Twilio closed the WebSocket (code {}{}{})", u16::from(f.code),
                            if f.reason.is_empty() { "" } else { ": " }, f.reason),
                        None => "Twilio closed the WebSocket".to_owned(),
                    });
                }
                Some(Ok(_)) => {} // ping/pong are answered by tungstenite
                Some(Err(e)) => break Some(format!("connection error: {e}")),
                None => break Some("the connection dropped".to_owned()),
            }
        }
    };
    call.open.send_replace(false);
    match ended {
        Some(reason) if !session.stopped => {
            call_log!(&call, warning, "{reason} before any stop message");
            let reason = format!("{reason} before any stop message");
            events.send(&call, CallEvent::Closed(reason));
        }
        Some(reason) => call_log!(&call, info, "{reason} after stop"),
        None => call_log!(&call, info, "closed by us"),
    }
    // The consumer then sees the end of the queue.
    drop(events);
    call.notify_consumer();
}

/// Writes `first` and everything else already queued, then flushes once.
/// Every write must make progress within [`WRITE_TIMEOUT`].
async fn write_batch<S: AsyncRead + AsyncWrite + Unpin>(
    call: &Call,
    ws: &mut WebSocketStream<S>,
    first: String,
    outbound: &mut mpsc::UnboundedReceiver<String>,
) -> Result<(), String> {
    let stalled = || format!("Twilio has read nothing for {} s", WRITE_TIMEOUT.as_secs());
    let failed = |e| format!("sending to Twilio failed: {e}");
    let mut text = first;
    loop {
        let len = text.len();
        tokio::time::timeout(WRITE_TIMEOUT, ws.feed(Message::text(text)))
            .await
            .map_err(|_| stalled())?
            .map_err(failed)?;
        call.outbound_bytes.fetch_sub(len, Ordering::Relaxed);
        if call.closing.load(Ordering::Relaxed) {
            return Ok(());
        }
        match outbound.try_recv() {
            Ok(next) => text = next,
            Err(_) => break,
        }
    }
    tokio::time::timeout(WRITE_TIMEOUT, ws.flush())
        .await
        .map_err(|_| stalled())?
        .map_err(failed)
}

async fn close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
}

/// What the call's task knows about the stream so far.
struct Session {
    stream_sid: Option<String>,
    stopped: bool,
    payload: Vec<u8>,
    max_message_size: usize,
    connected: Instant,
    last_media: Option<Instant>,
    /// Whether the message being handled queued an event.
    emitted: bool,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            stream_sid: None,
            stopped: false,
            payload: Vec::new(),
            max_message_size: usize::MAX,
            connected: Instant::now(),
            last_media: None,
            emitted: false,
        }
    }
}

impl Session {
    fn invalid(&self, call: &Call, why: fmt::Arguments) {
        call.stats.add(Stat::InvalidMessages, 1);
        call_log!(call, warning, "ignoring message: {why}");
    }

    fn emit(&mut self, call: &Call, events: &EventSender, event: CallEvent) {
        events.send(call, event);
        self.emitted = true;
    }

    /// Checks the message belongs to the started stream.
    fn check_sid(&self, call: &Call, event: &str, sid: &str) -> bool {
        match &self.stream_sid {
            None => {
                self.invalid(call, format_args!("{event} before start"));
                false
            }
            Some(ours) if ours != sid => {
                self.invalid(
                    call,
                    format_args!("{event} for streamSid {sid:?}, this stream is {ours:?}"),
                );
                false
            }
            Some(_) => true,
        }
    }

    /// Handles one text message; true if it queued an event.
    fn handle(&mut self, call: &Call, text: &str, events: &EventSender) -> bool {
        self.emitted = false;
        self.handle_message(call, text, events);
        self.emitted
    }

    fn handle_message(&mut self, call: &Call, text: &str, events: &EventSender) {
        if text.len() > self.max_message_size {
            self.invalid(
                call,
                format_args!(
                    "{} bytes, more than max-message-size ({})",
                    text.len(),
                    self.max_message_size
                ),
            );
            return;
        }
        let msg = match Inbound::parse(text) {
            Ok(msg) => msg,
            Err(e) => {
                let shown: String = text.chars().take(120).collect();
                self.invalid(call, format_args!("{e} in {shown:?}"));
                return;
            }
        };
        match msg {
            Inbound::Connected { protocol, version } => {
                call_log!(
                    call,
                    debug,
                    "connected: protocol {protocol:?}, version {version:?}"
                );
            }
            Inbound::Start {
                stream_sid, start, ..
            } => {
                if let Some(ours) = &self.stream_sid {
                    self.invalid(
                        call,
                        format_args!(
                            "duplicate start (streamSid {stream_sid:?}, already {ours:?})"
                        ),
                    );
                    return;
                }
                if let Some(fmt) = start
                    .media_format
                    .as_ref()
                    .filter(|f| !f.is_mulaw_8k_mono())
                {
                    call_log!(
                        call,
                        warning,
                        "unexpected media format {fmt:?}, treating it as 8 kHz μ-law"
                    );
                }
                call_log!(
                    call,
                    info,
                    "start: streamSid {stream_sid}, callSid {}, tracks {:?}",
                    start.call_sid,
                    start.tracks
                );
                self.stream_sid = Some(stream_sid);
                let start = Arc::new(start);
                call.start.send_replace(Some(start.clone()));
                self.emit(call, events, CallEvent::Start(start));
            }
            Inbound::Media {
                stream_sid, media, ..
            } => {
                if !self.check_sid(call, "media", &stream_sid) {
                    return;
                }
                if media.track != "inbound" {
                    // With both_tracks Twilio also streams what it plays; not ours.
                    call_log!(call, trace, "skipping media of track {:?}", media.track);
                    return;
                }
                if let Err(e) = media.decode_payload(&mut self.payload) {
                    call.stats.add(Stat::InboundTranscodeErrors, 1);
                    call_log!(
                        call,
                        warning,
                        "skipping media chunk {:?}: bad base64 payload: {e}",
                        media.chunk
                    );
                    return;
                }
                self.last_media = Some(Instant::now());
                if self.payload.is_empty() {
                    call_log!(call, debug, "skipping an empty media chunk");
                    return;
                }
                call.stats.add(Stat::ChunksReceived, 1);
                call.stats
                    .add(Stat::BytesReceived, self.payload.len() as u64);
                let chunk = MediaChunk {
                    timestamp_ms: media.timestamp.0,
                    chunk: media.chunk.map(|c| c.0),
                    ulaw: std::mem::replace(&mut self.payload, events.payload_buffer()),
                    arrival: Instant::now(),
                };
                self.emit(call, events, CallEvent::Media(chunk));
            }
            Inbound::Dtmf {
                stream_sid, dtmf, ..
            } => {
                if self.check_sid(call, "dtmf", &stream_sid) {
                    call.stats.add(Stat::DtmfReceived, 1);
                    self.emit(call, events, CallEvent::Dtmf(DtmfDigit(dtmf.digit)));
                }
            }
            Inbound::Mark {
                stream_sid, mark, ..
            } => {
                if self.check_sid(call, "mark", &stream_sid) {
                    call.stats.add(Stat::MarksReceived, 1);
                    call.marks_echoed.send_modify(|n| *n += 1);
                    self.emit(call, events, CallEvent::Mark(mark.name));
                }
            }
            Inbound::Stop {
                stream_sid, stop, ..
            } => {
                if self.check_sid(call, "stop", &stream_sid) && !self.stopped {
                    call_log!(call, info, "stop");
                    self.stopped = true;
                    self.emit(call, events, CallEvent::Stop(stop));
                }
            }
            Inbound::Unknown { name } => {
                self.invalid(call, format_args!("unknown event {name:?}"));
            }
        }
    }
}

/// Where a call is delivered: see the module documentation.
#[derive(Debug)]
pub struct Slot {
    call: watch::Sender<Option<Arc<Call>>>,
}

impl Slot {
    pub fn new() -> Arc<Slot> {
        Arc::new(Slot {
            call: watch::Sender::new(None),
        })
    }

    /// Delivers `call` if the slot is free.
    pub(crate) fn offer(&self, call: &Arc<Call>) -> bool {
        self.call.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(call.clone());
                true
            } else {
                false
            }
        })
    }

    pub fn is_free(&self) -> bool {
        self.call.borrow().is_none()
    }

    pub fn current(&self) -> Option<Arc<Call>> {
        self.call.borrow().clone()
    }

    /// Empties the slot, returning the call it held.
    pub fn take(&self) -> Option<Arc<Call>> {
        let mut taken = None;
        self.call.send_if_modified(|current| {
            taken = current.take();
            taken.is_some()
        });
        taken
    }

    /// Waits until a call is delivered.
    pub async fn wait(&self) -> Arc<Call> {
        let mut rx = self.call.subscribe();
        let call = rx
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self");
        call.clone().expect("waited for Some")
    }
}

/// Slots shared by name, so that elements in different pipelines can pair.
static NAMED_SLOTS: LazyLock<Mutex<HashMap<String, Weak<Slot>>>> = LazyLock::new(Default::default);

/// The slot called `name`, created on first use; it lives as long as an
/// element holds it.
pub fn named_slot(name: &str) -> Arc<Slot> {
    let mut slots = NAMED_SLOTS.lock().unwrap();
    slots.retain(|_, slot| slot.strong_count() > 0);
    if let Some(slot) = slots.get(name).and_then(Weak::upgrade) {
        return slot;
    }
    let slot = Slot::new();
    slots.insert(name.to_owned(), Arc::downgrade(&slot));
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_numbers_follow_rfc4733() {
        let n = |d: &str| DtmfDigit(d.to_owned()).number();
        assert_eq!(n("0"), Some(0));
        assert_eq!(n("9"), Some(9));
        assert_eq!(n("*"), Some(10));
        assert_eq!(n("#"), Some(11));
        assert_eq!(n("A"), Some(12));
        assert_eq!(n("D"), Some(15));
        assert_eq!(n("E"), None);
        assert_eq!(n("12"), None);
        assert_eq!(n(""), None);
    }

    #[test]
    fn counter_names_are_unique_per_element() {
        for list in [SRC_COUNTERS, SINK_COUNTERS] {
            let mut names: Vec<_> = list.iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), list.len());
        }
    }

    #[test]
    fn used_payload_buffers_come_back_for_the_next_chunk() {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(EventQueue::default());
        let events = Events {
            rx,
            queue: queue.clone(),
        };
        let sender = EventSender { tx, queue };
        // Nothing handed back yet: a new, empty buffer.
        assert_eq!(sender.payload_buffer().capacity(), 0);

        let used = vec![0xffu8; 160];
        let ptr = used.as_ptr();
        events.recycle(used);
        let again = sender.payload_buffer();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation, reused");

        // A few are kept, large ones are not.
        for _ in 0..2 * SPARE_PAYLOADS {
            events.recycle(Vec::with_capacity(160));
        }
        events.recycle(Vec::with_capacity(SPARE_PAYLOAD_CAPACITY + 1));
        let kept: Vec<_> =
            std::iter::from_fn(|| Some(sender.payload_buffer()).filter(|b| b.capacity() > 0))
                .collect();
        assert_eq!(kept.len(), SPARE_PAYLOADS);
        assert!(kept.iter().all(|b| b.capacity() == 160));
    }

    #[test]
    fn named_slots_are_shared_while_held() {
        let a = named_slot("x");
        let b = named_slot("x");
        assert!(Arc::ptr_eq(&a, &b));
        let c = named_slot("y");
        assert!(!Arc::ptr_eq(&a, &c));
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none());
    }
}
