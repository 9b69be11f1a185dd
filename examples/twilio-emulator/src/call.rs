//! One emulated Twilio Media Stream: Twilio's side of the WebSocket.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use gsttwiliostream::protocol::{
    Counter, Dtmf, Inbound, InboundMedia, Mark, Outbound, StartInfo, StopInfo, Track,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub use tokio_tungstenite::tungstenite::Error as WsError;

use gsttwiliostream::codec::WireFormat;

use crate::dial::{Dialer, Stream};
use crate::playout::{FRAME, FRAME_SAMPLES, Playback, Player, Playout};
use crate::provider::Provider;

/// The WebSocket is gone; nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

impl std::fmt::Display for Disconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the WebSocket is closed")
    }
}

impl std::error::Error for Disconnected {}

/// What identifies an emulated stream, as Twilio puts it in `start`.
#[derive(Debug, Clone)]
pub struct CallParams {
    pub account_sid: String,
    pub call_sid: String,
    pub stream_sid: String,
    /// `start.tracks`: `["inbound"]` (the default; a `<Connect><Stream>`),
    /// `["outbound"]` or `["inbound","outbound"]` (a one-way `<Start><Stream>`
    /// with `track="outbound_track"` / `"both_tracks"`).
    pub tracks: Vec<String>,
    pub custom_parameters: BTreeMap<String, String>,
    /// `media.timestamp` of the first chunk; real calls rarely start at 0.
    pub first_timestamp_ms: u64,
    /// Number the chunks of both tracks with one `media.chunk` counter
    /// instead of one per track (Twilio's choice is unconfirmed).
    pub shared_chunk_counter: bool,
    /// Whose side is played (Twilio unless told).
    pub provider: Provider,
    /// The audio on the wire, both ways (8 kHz μ-law unless told).
    pub format: WireFormat,
}

static NEXT_SID: AtomicU64 = AtomicU64::new(1);

/// A Twilio-looking SID: two letters and 32 hex digits, unique in the process.
pub fn sid(prefix: &str) -> String {
    let n = NEXT_SID.fetch_add(1, Ordering::Relaxed);
    let salt = std::process::id() as u64;
    format!("{prefix}{:016x}{:016x}", salt, n)
}

impl CallParams {
    /// A stream of `tracks` (each as `media.track` names it), otherwise the default.
    pub fn with_tracks(tracks: &[Track]) -> CallParams {
        CallParams {
            tracks: tracks.iter().map(|t| t.as_str().to_owned()).collect(),
            ..CallParams::default()
        }
    }

    /// A Twilio-like stream of `provider` carrying `format`, with ids in
    /// its style.
    pub fn of(provider: Provider, format: WireFormat) -> CallParams {
        let params = CallParams::default();
        CallParams {
            stream_sid: crate::provider::stream_id(provider, &params.stream_sid),
            provider,
            format,
            ..params
        }
    }

    /// Whether `start.tracks` has `track`.
    pub fn carries(&self, track: Track) -> bool {
        self.tracks
            .iter()
            .any(|t| Track::from_wire(t) == Some(track))
    }

    /// A one-way `<Start><Stream>` with the outbound track: Twilio takes
    /// nothing back on it (error 31924). Not Telnyx's rule: its `start`
    /// names no tracks, and whether it takes media back is set apart from
    /// them (`stream_bidirectional_mode`), so the plugin sends and is heard.
    pub fn unidirectional(&self) -> bool {
        self.provider != Provider::Telnyx && self.carries(Track::Outbound)
    }
}

impl Default for CallParams {
    fn default() -> Self {
        CallParams {
            account_sid: sid("AC"),
            call_sid: sid("CA"),
            stream_sid: sid("MZ"),
            tracks: vec!["inbound".to_owned()],
            custom_parameters: BTreeMap::new(),
            first_timestamp_ms: 155,
            shared_chunk_counter: false,
            provider: Provider::Twilio,
            format: WireFormat::PCMU,
        }
    }
}

/// What the emulator got from the plugin.
#[derive(Debug, Clone, PartialEq)]
pub enum Received {
    /// A message of exactly a documented shape, with its JSON text.
    Message(Outbound, String),
    /// Something Twilio would reject (warning 31950/31951), with the reason.
    Invalid(String),
    /// The plugin closed the WebSocket (close code, if any).
    Closed(Option<u16>),
}

/// What the writer task sends: a message, or several in one write.
enum Outgoing {
    One(Message),
    Together(Vec<Message>),
}

/// Twilio's side of one Media Stream.
pub struct TwilioCall {
    pub params: CallParams,
    /// To the writer task, which owns the sending half of the socket.
    out: mpsc::UnboundedSender<Outgoing>,
    /// What is sent while held (see [`hold`](Self::hold)).
    held: Option<Vec<Message>>,
    received: mpsc::UnboundedReceiver<Received>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// Writes the writer task has done: whether it still makes progress.
    written: Arc<AtomicU64>,
    playback: Arc<Mutex<Playback>>,
    /// The reason in the plugin's close frame, if it gave one.
    close_reason: Arc<Mutex<Option<String>>>,
    /// Shared with the playout, which sends marks back.
    sequence: Arc<AtomicU64>,
    /// `media.chunk` of each track's next chunk (only the first is used
    /// with a shared counter).
    chunks: [u64; 2],
    /// Audio position of each track's next chunk, in 8 kHz samples.
    positions: [u64; 2],
}

impl TwilioCall {
    /// Opens the WebSocket (the handshake only; see [`begin`](Self::begin)).
    /// What the plugin sends is played out in real time.
    pub async fn connect(url: &str, params: CallParams) -> Result<TwilioCall, WsError> {
        Self::connect_with(url, params, Playout::RealTime).await
    }

    /// Like [`connect`](Self::connect), with a choice of playout.
    pub async fn connect_with(
        url: &str,
        params: CallParams,
        playout: Playout,
    ) -> Result<TwilioCall, WsError> {
        Self::connect_via(&Dialer::default(), url, params, playout).await
    }

    /// Like [`connect_with`](Self::connect_with), dialling with `dialer`
    /// (signature, TLS, Unix socket).
    pub async fn connect_via(
        dialer: &Dialer,
        url: &str,
        params: CallParams,
        playout: Playout,
    ) -> Result<TwilioCall, WsError> {
        let dialed = dialer.dial(url).await?;
        Ok(crate::with_ws!(dialed, ws => Self::run(ws, params, playout)))
    }

    fn run<S: Stream>(ws: WebSocketStream<S>, params: CallParams, playout: Playout) -> TwilioCall {
        let (mut write, mut read) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Outgoing>();
        let written = Arc::new(AtomicU64::new(0));
        let writes = written.clone();
        let writer = tokio::spawn(async move {
            while let Some(next) = outgoing.recv().await {
                let msgs = match next {
                    Outgoing::One(msg) => vec![msg],
                    Outgoing::Together(msgs) => msgs,
                };
                let close = msgs.iter().any(|m| matches!(m, Message::Close(_)));
                let mut sent = Ok(());
                for msg in msgs {
                    sent = sent.and(write.feed(msg).await);
                }
                if sent.and(write.flush().await).is_err() || close {
                    break;
                }
                writes.fetch_add(1, Ordering::Relaxed);
            }
            let _ = write.close().await;
        });

        let playback = Arc::new(Mutex::new(Playback::default()));
        let sequence = Arc::new(AtomicU64::new(1));
        let stream_sid = params.stream_sid.clone();
        let unidirectional = params.unidirectional();
        let provider = params.provider;
        let width = params.format.bytes_per_tick();
        let mut player = {
            let (out, sequence, stream_sid) = (out.clone(), sequence.clone(), stream_sid.clone());
            Player::new(playback.clone(), move |name: &str| {
                let echo = Inbound::Mark {
                    sequence_number: Some(Counter(sequence.fetch_add(1, Ordering::Relaxed))),
                    stream_sid: stream_sid.clone(),
                    mark: Mark {
                        name: name.to_owned(),
                    },
                };
                let _ = out.send(Outgoing::One(Message::text(provider.text(&echo))));
            })
        };
        let (tx, received) = mpsc::unbounded_channel();
        let (ack_out, ack_sequence) = (out.clone(), sequence.clone());
        let close_reason = Arc::new(Mutex::new(None));
        let reason = close_reason.clone();
        let reader = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FRAME);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                let msg = tokio::select! {
                    msg = read.next() => msg,
                    _ = ticks.tick(), if playout == Playout::RealTime => {
                        player.play(Some(FRAME_SAMPLES * width));
                        continue;
                    }
                };
                let item = match msg {
                    Some(Ok(Message::Text(text))) if unidirectional => Received::Invalid(format!(
                        "a message on a one-way stream (Twilio error 31924): {text}"
                    )),
                    Some(Ok(Message::Text(text))) => match provider.read(&text, &stream_sid) {
                        Ok(out) => {
                            player.take(&out);
                            if let Outbound::Clear { .. } = out {
                                let n = ack_sequence.fetch_add(1, Ordering::Relaxed);
                                if let Some(ack) = provider.clear_ack(&stream_sid, n) {
                                    let _ = ack_out.send(Outgoing::One(Message::text(ack)));
                                }
                            }
                            if playout == Playout::Instant {
                                player.play(None);
                            }
                            Received::Message(out, text.to_string())
                        }
                        Err(e) => Received::Invalid(e),
                    },
                    Some(Ok(Message::Binary(b))) => {
                        Received::Invalid(format!("binary frame of {} bytes", b.len()))
                    }
                    Some(Ok(Message::Close(frame))) => {
                        if let Some(f) = frame.as_ref().filter(|f| !f.reason.is_empty()) {
                            *reason.lock().unwrap() = Some(f.reason.to_string());
                        }
                        Received::Closed(frame.map(|f| f.code.into()))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => Received::Closed(None),
                };
                let closed = matches!(item, Received::Closed(_));
                if tx.send(item).is_err() || closed {
                    break;
                }
            }
        });
        TwilioCall {
            params,
            out,
            held: None,
            received,
            reader,
            writer,
            written,
            playback,
            close_reason,
            sequence,
            chunks: [1, 1],
            positions: [0, 0],
        }
    }

    /// What the caller heard so far.
    pub fn playback(&self) -> Playback {
        self.playback.lock().unwrap().clone()
    }

    /// The reason the plugin gave in its close frame (none if it gave
    /// none, or has not closed).
    pub fn close_reason(&self) -> Option<String> {
        self.close_reason.lock().unwrap().clone()
    }

    /// Writes the writer task has done so far.
    #[cfg(test)]
    pub(crate) fn writes(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Connects and sends `connected` and `start`, as Twilio does.
    pub async fn start(url: &str, params: CallParams) -> Result<TwilioCall, WsError> {
        let mut call = TwilioCall::connect(url, params).await?;
        call.begin().map_err(|_| WsError::ConnectionClosed)?;
        Ok(call)
    }

    /// Sends `connected` and `start`.
    pub fn begin(&mut self) -> Result<(), Disconnected> {
        self.send(&self.params.provider.connected())?;
        let start = Inbound::Start {
            sequence_number: Some(self.next_sequence()),
            stream_sid: self.params.stream_sid.clone(),
            start: StartInfo {
                account_sid: self.params.account_sid.clone(),
                stream_sid: self.params.stream_sid.clone(),
                call_sid: self.params.call_sid.clone(),
                tracks: self.params.tracks.clone(),
                custom_parameters: self.params.custom_parameters.clone(),
                media_format: Some(self.params.provider.media_format(self.params.format)),
                tracks_unannounced: false,
            },
        };
        self.send(&start)
    }

    fn next_sequence(&mut self) -> Counter {
        Counter(self.sequence.fetch_add(1, Ordering::Relaxed))
    }

    /// `media.timestamp` the next inbound chunk will carry.
    pub fn next_timestamp_ms(&self) -> u64 {
        self.next_timestamp_ms_on(Track::Inbound)
    }

    /// `media.timestamp` the next chunk of `track` will carry: both tracks
    /// count from the start of the stream.
    pub fn next_timestamp_ms_on(&self, track: Track) -> u64 {
        self.params.first_timestamp_ms + self.positions[track.index()] / 8
    }

    /// Seconds of audio sent (or skipped) so far, on the track furthest on.
    pub fn audio_seconds(&self) -> f64 {
        self.positions.iter().max().copied().unwrap_or(0) as f64 / 8000.0
    }

    /// Sends one chunk of the caller's audio (in the stream's format),
    /// numbered and timestamped in order.
    pub fn send_media(&mut self, ulaw: &[u8]) -> Result<(), Disconnected> {
        self.send_media_on(Track::Inbound, ulaw)
    }

    /// Sends one chunk of `track`, numbered and timestamped in its order.
    pub fn send_media_on(&mut self, track: Track, ulaw: &[u8]) -> Result<(), Disconnected> {
        let msg = self.media_message_on(track, ulaw);
        self.send(&msg)
    }

    /// The inbound `media` message the next chunk would be, advancing the counters.
    pub fn media_message(&mut self, ulaw: &[u8]) -> Inbound<'static> {
        self.media_message_on(Track::Inbound, ulaw)
    }

    /// The `media` message of `track` the next chunk would be, advancing
    /// the counters.
    pub fn media_message_on(&mut self, track: Track, ulaw: &[u8]) -> Inbound<'static> {
        use base64::Engine as _;
        let msg = Inbound::Media {
            sequence_number: Some(self.next_sequence()),
            stream_sid: self.params.stream_sid.clone().into(),
            media: InboundMedia {
                track: track.as_str().into(),
                chunk: Some(Counter(*self.chunk_counter(track))),
                timestamp: Counter(self.next_timestamp_ms_on(track)),
                payload: base64::engine::general_purpose::STANDARD
                    .encode(ulaw)
                    .into(),
            },
        };
        *self.chunk_counter(track) += 1;
        self.positions[track.index()] += self.params.format.payload_ticks(ulaw);
        msg
    }

    /// The `media.chunk` counter of `track`.
    fn chunk_counter(&mut self, track: Track) -> &mut u64 {
        let i = if self.params.shared_chunk_counter {
            0
        } else {
            track.index()
        };
        &mut self.chunks[i]
    }

    /// Advances the counters as if an inbound chunk of `samples` was sent,
    /// without sending it: a chunk lost on the way.
    pub fn lose_media(&mut self, samples: usize) {
        self.lose_media_on(Track::Inbound, samples)
    }

    /// [`lose_media`](Self::lose_media) for a chunk of `track`.
    pub fn lose_media_on(&mut self, track: Track, samples: usize) {
        self.sequence.fetch_add(1, Ordering::Relaxed);
        *self.chunk_counter(track) += 1;
        self.positions[track.index()] += samples as u64;
    }

    pub fn send_dtmf(&mut self, digit: &str) -> Result<(), Disconnected> {
        let msg = Inbound::Dtmf {
            sequence_number: Some(self.next_sequence()),
            stream_sid: self.params.stream_sid.clone(),
            dtmf: Dtmf {
                track: "inbound_track".to_owned(),
                digit: digit.to_owned(),
            },
        };
        self.send(&msg)
    }

    /// Sends a `mark` as Twilio does when playback reaches one.
    pub fn send_mark(&mut self, name: &str) -> Result<(), Disconnected> {
        let msg = Inbound::Mark {
            sequence_number: Some(self.next_sequence()),
            stream_sid: self.params.stream_sid.clone(),
            mark: Mark {
                name: name.to_owned(),
            },
        };
        self.send(&msg)
    }

    pub fn send_stop(&mut self) -> Result<(), Disconnected> {
        let msg = Inbound::Stop {
            sequence_number: Some(self.next_sequence()),
            stream_sid: self.params.stream_sid.clone(),
            stop: StopInfo {
                account_sid: self.params.account_sid.clone(),
                call_sid: self.params.call_sid.clone(),
            },
        };
        self.send(&msg)
    }

    /// Sends `msg` spelled as the stream's provider spells it.
    pub fn send(&mut self, msg: &Inbound<'_>) -> Result<(), Disconnected> {
        let text = self.params.provider.text(msg);
        self.send_text(&text)
    }

    /// Sends any text frame (for malformed-input tests).
    pub fn send_text(&mut self, text: &str) -> Result<(), Disconnected> {
        self.push(Message::text(text))
    }

    /// Sends a binary frame, which Twilio never does.
    pub fn send_binary(&mut self, data: &[u8]) -> Result<(), Disconnected> {
        self.push(Message::binary(data.to_vec()))
    }

    /// Holds what is sent from now on until [`release`](Self::release),
    /// as a network that stalls holds it back.
    pub fn hold(&mut self) {
        self.held.get_or_insert_with(Vec::new);
    }

    /// Sends what was held in one write, as a stalled network delivers it
    /// at once: the plugin finds it all there, not spread over the writer
    /// task's turns.
    pub fn release(&mut self) -> Result<(), Disconnected> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        self.out
            .send(Outgoing::Together(held))
            .map_err(|_| Disconnected)
    }

    fn push(&mut self, msg: Message) -> Result<(), Disconnected> {
        match &mut self.held {
            Some(held) => {
                held.push(msg);
                Ok(())
            }
            None => self.out.send(Outgoing::One(msg)).map_err(|_| Disconnected),
        }
    }

    /// The next thing received from the plugin, or None once the connection
    /// is gone.
    pub async fn recv(&mut self) -> Option<Received> {
        self.received.recv().await
    }

    /// Like [`recv`](Self::recv), giving up after `timeout`.
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Option<Received> {
        tokio::time::timeout(timeout, self.recv())
            .await
            .ok()
            .flatten()
    }

    /// Whatever has been received and not read yet.
    pub fn try_recv(&mut self) -> Option<Received> {
        self.received.try_recv().ok()
    }

    /// Ends the stream the way Twilio does: close frame, then the socket.
    /// What was queued before goes first, however long the plugin takes to
    /// read it (a `--fast` call queues all its audio at once); only a writer
    /// that gets nothing written for 2 s is given up on.
    pub async fn close(mut self) {
        let _ = self.release();
        let _ = self.out.send(Outgoing::One(Message::Close(None)));
        let mut seen = self.written.load(Ordering::Relaxed);
        while tokio::time::timeout(Duration::from_secs(2), &mut self.writer)
            .await
            .is_err()
        {
            let now = self.written.load(Ordering::Relaxed);
            if now == seen {
                self.writer.abort();
                break;
            }
            seen = now;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), &mut self.reader).await;
        self.reader.abort();
    }

    /// Drops the TCP connection with no close frame (a network failure).
    pub async fn abort(self) {
        self.writer.abort();
        self.reader.abort();
        let _ = self.writer.await;
        let _ = self.reader.await;
    }
}
