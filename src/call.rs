//! One live call: its identity, what Twilio sent (as events for the element
//! that consumes them), the way back to Twilio, and its counters.
//!
//! A [`Call`] is created by the server once a WebSocket handshake succeeds. A
//! single tokio task per call reads Twilio's messages, validates them and turns
//! them into [`CallEvent`]s; the same task writes whatever the elements send.
//! Elements never touch the socket, and the task never waits for GStreamer:
//! the event queue is bounded and an overflow is counted, not waited out.
//!
//! A [`Slot`] is where a call is delivered to: a src (or a sink that runs on
//! its own) registers one with a listener, and a sink paired with that src
//! waits on the same slot.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use gst::glib;
use gst::prelude::*;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
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

/// How many events may wait for the consuming element before further ones
/// are dropped and counted as overruns: about 20 s of 20 ms chunks.
const EVENT_QUEUE: usize = 1024;
/// How long closing our side of the WebSocket may take before the socket is
/// simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(250);

/// The counters of a call. Each is a read-only property of the element that
/// reports it, under [`Stat::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    BytesReceived,
    ChunksReceived,
    ChunksLost,
    /// Inbound payloads that could not be decoded (bad base64).
    InboundTranscodeErrors,
    InvalidMessages,
    Overruns,
    MarksReceived,
    DtmfReceived,
    BytesSent,
    ChunksSent,
    MarksSent,
    ClearsSent,
    /// Outbound audio that could not be encoded.
    OutboundTranscodeErrors,
}

impl Stat {
    const COUNT: usize = 13;

    /// Counters the src reports.
    pub const INBOUND: &'static [Stat] = &[
        Stat::BytesReceived,
        Stat::ChunksReceived,
        Stat::ChunksLost,
        Stat::InboundTranscodeErrors,
        Stat::InvalidMessages,
        Stat::Overruns,
        Stat::MarksReceived,
        Stat::DtmfReceived,
    ];

    /// Counters the sink reports.
    pub const OUTBOUND: &'static [Stat] = &[
        Stat::BytesSent,
        Stat::ChunksSent,
        Stat::MarksSent,
        Stat::ClearsSent,
        Stat::OutboundTranscodeErrors,
    ];

    /// The property (and stats field) name.
    pub fn name(self) -> &'static str {
        match self {
            Stat::BytesReceived => "bytes-received",
            Stat::ChunksReceived => "chunks-received",
            Stat::ChunksLost => "chunks-lost",
            Stat::InboundTranscodeErrors | Stat::OutboundTranscodeErrors => "transcode-errors",
            Stat::InvalidMessages => "invalid-messages",
            Stat::Overruns => "overruns",
            Stat::MarksReceived => "marks-received",
            Stat::DtmfReceived => "dtmf-received",
            Stat::BytesSent => "bytes-sent",
            Stat::ChunksSent => "chunks-sent",
            Stat::MarksSent => "marks-sent",
            Stat::ClearsSent => "clears-sent",
        }
    }

    pub fn nick(self) -> &'static str {
        match self {
            Stat::BytesReceived => "Bytes received",
            Stat::ChunksReceived => "Chunks received",
            Stat::ChunksLost => "Chunks lost",
            Stat::InboundTranscodeErrors | Stat::OutboundTranscodeErrors => "Transcode errors",
            Stat::InvalidMessages => "Invalid messages",
            Stat::Overruns => "Overruns",
            Stat::MarksReceived => "Marks received",
            Stat::DtmfReceived => "DTMF received",
            Stat::BytesSent => "Bytes sent",
            Stat::ChunksSent => "Chunks sent",
            Stat::MarksSent => "Marks sent",
            Stat::ClearsSent => "Clears sent",
        }
    }

    pub fn blurb(self) -> &'static str {
        match self {
            Stat::BytesReceived => "μ-law bytes received from Twilio (8000 per second of audio)",
            Stat::ChunksReceived => "Media messages received from Twilio",
            Stat::ChunksLost => {
                "Media chunks missing from the stream (by chunk number or timestamp); \
                 each gap is filled with silence and flagged DISCONT"
            }
            Stat::InboundTranscodeErrors => {
                "Media payloads that could not be decoded (bad base64); they are skipped"
            }
            Stat::InvalidMessages => {
                "Messages ignored as invalid: malformed JSON, unknown events, binary frames, \
                 media before start, a wrong streamSid, a duplicate start"
            }
            Stat::Overruns => {
                "Events dropped because the pipeline did not consume them fast enough \
                 (about 20 s of audio are queued before this happens)"
            }
            Stat::MarksReceived => "Mark messages received from Twilio (marks played back)",
            Stat::DtmfReceived => "DTMF digits received from Twilio",
            Stat::BytesSent => "μ-law bytes sent to Twilio",
            Stat::ChunksSent => "Media messages sent to Twilio",
            Stat::MarksSent => "Mark messages sent to Twilio",
            Stat::ClearsSent => "Clear messages sent to Twilio",
            Stat::OutboundTranscodeErrors => "Input that could not be encoded and was dropped",
        }
    }
}

/// Atomic counters, one per [`Stat`].
#[derive(Default)]
pub struct Stats([AtomicU64; Stat::COUNT]);

impl Stats {
    pub fn add(&self, stat: Stat, n: u64) {
        self.0[stat as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, stat: Stat) -> u64 {
        self.0[stat as usize].load(Ordering::Relaxed)
    }

    /// A structure named `name` holding `stats` as `u64` fields.
    pub fn structure(stats: Option<&Stats>, name: &str, which: &[Stat]) -> gst::Structure {
        let mut s = gst::Structure::new_empty(name);
        for &stat in which {
            s.set(stat.name(), stats.map_or(0, |st| st.get(stat)));
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

enum Command {
    Send(String),
    Close,
}

/// Where a call's log lines go: the category and object of the element that
/// consumes the call, once there is one.
struct LogTarget {
    cat: gst::DebugCategory,
    element: glib::WeakRef<gst::Element>,
}

static NEXT_CALL_ID: AtomicU64 = AtomicU64::new(1);

/// One live call. See the module documentation.
pub struct Call {
    id: u64,
    peer: SocketAddr,
    path: String,
    pub stats: Stats,
    start: watch::Sender<Option<Arc<StartInfo>>>,
    events: Mutex<Option<mpsc::Receiver<CallEvent>>>,
    commands: mpsc::UnboundedSender<Command>,
    task: Mutex<Option<JoinHandle<()>>>,
    open: AtomicBool,
    log: Mutex<Option<LogTarget>>,
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
    /// current runtime.
    pub(crate) fn spawn(
        ws: WebSocketStream<TcpStream>,
        peer: SocketAddr,
        path: String,
    ) -> Arc<Call> {
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let call = Arc::new(Call {
            id: NEXT_CALL_ID.fetch_add(1, Ordering::Relaxed),
            peer,
            path,
            stats: Stats::default(),
            start: watch::Sender::new(None),
            events: Mutex::new(Some(events_rx)),
            commands: commands_tx,
            task: Mutex::new(None),
            open: AtomicBool::new(true),
            log: Mutex::new(None),
        });
        gst::info!(CAT, "{call:?}: connected");
        let task = tokio::spawn(serve(call.clone(), ws, commands_rx, events_tx));
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
        self.open.load(Ordering::Acquire)
    }

    /// The `start` message, once it arrived.
    pub fn start_info(&self) -> Option<Arc<StartInfo>> {
        self.start.borrow().clone()
    }

    /// Takes the event queue; only the element that consumes the call does.
    pub fn take_events(&self) -> Option<mpsc::Receiver<CallEvent>> {
        self.events.lock().unwrap().take()
    }

    /// Sends further log lines about this call to `element`'s category.
    pub fn log_to(&self, cat: gst::DebugCategory, element: &gst::Element) {
        *self.log.lock().unwrap() = Some(LogTarget {
            cat,
            element: element.downgrade(),
        });
    }

    /// Queues a text message for Twilio. False once the call has ended.
    pub fn send_text(&self, text: String) -> bool {
        self.is_open() && self.commands.send(Command::Send(text)).is_ok()
    }

    /// Asks the task to close the WebSocket without waiting for it.
    pub fn request_close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// Closes the WebSocket and returns once the socket is gone (within
    /// [`CLOSE_TIMEOUT`] plus scheduling). Not for use on a runtime thread.
    pub fn close(&self) {
        self.request_close();
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            let _ = futures::executor::block_on(task);
        }
    }
}

/// The per-call task: reads, validates and dispatches Twilio's messages,
/// writes ours, and ends when either side closes.
async fn serve(
    call: Arc<Call>,
    mut ws: WebSocketStream<TcpStream>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<CallEvent>,
) {
    let mut session = Session::default();
    let ended = loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Send(text)) => match write_batch(&mut ws, text, &mut commands).await {
                    Ok(false) => {}
                    Ok(true) => break None,
                    Err(e) => break Some(format!("sending to Twilio failed: {e}")),
                },
                Some(Command::Close) | None => {
                    close(&mut ws).await;
                    break None;
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => session.handle(&call, &text, &events),
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
    call.open.store(false, Ordering::Release);
    match ended {
        Some(reason) if !session.stopped => {
            call_log!(&call, warning, "{reason} before any stop message");
            let reason = format!("{reason} before any stop message");
            let _ = events.try_send(CallEvent::Closed(reason));
        }
        Some(reason) => call_log!(&call, info, "{reason} after stop"),
        None => call_log!(&call, info, "closed by us"),
    }
}

/// Writes `first` and everything else already queued, then flushes once.
/// Returns whether a close request was among them (the socket is then closed).
async fn write_batch(
    ws: &mut WebSocketStream<TcpStream>,
    first: String,
    commands: &mut mpsc::UnboundedReceiver<Command>,
) -> Result<bool, tokio_tungstenite::tungstenite::Error> {
    ws.feed(Message::text(first)).await?;
    loop {
        match commands.try_recv() {
            Ok(Command::Send(text)) => ws.feed(Message::text(text)).await?,
            Ok(Command::Close) => {
                ws.flush().await?;
                close(ws).await;
                return Ok(true);
            }
            Err(_) => {
                ws.flush().await?;
                return Ok(false);
            }
        }
    }
}

async fn close(ws: &mut WebSocketStream<TcpStream>) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
}

/// What the call's task knows about the stream so far.
#[derive(Default)]
struct Session {
    stream_sid: Option<String>,
    stopped: bool,
    payload: Vec<u8>,
}

impl Session {
    fn invalid(&self, call: &Call, why: fmt::Arguments) {
        call.stats.add(Stat::InvalidMessages, 1);
        call_log!(call, warning, "ignoring message: {why}");
    }

    fn emit(&self, call: &Call, events: &mpsc::Sender<CallEvent>, event: CallEvent) {
        match events.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(ev)) => {
                call.stats.add(Stat::Overruns, 1);
                call_log!(call, warning, "pipeline is not keeping up, dropping {ev:?}");
            }
            // Nobody consumes this call any more; it is being torn down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
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

    fn handle(&mut self, call: &Call, text: &str, events: &mpsc::Sender<CallEvent>) {
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
                call.stats.add(Stat::ChunksReceived, 1);
                call.stats
                    .add(Stat::BytesReceived, self.payload.len() as u64);
                let chunk = MediaChunk {
                    timestamp_ms: media.timestamp.0,
                    chunk: media.chunk.map(|c| c.0),
                    ulaw: std::mem::take(&mut self.payload),
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
    fn stat_names_are_unique_per_element() {
        for list in [Stat::INBOUND, Stat::OUTBOUND] {
            let mut names: Vec<_> = list.iter().map(|s| s.name()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), list.len());
        }
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
