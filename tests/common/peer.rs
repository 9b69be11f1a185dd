//! A Twilio of the test's own, for the sink's call control: it plays what
//! it gets at exactly 8000 samples a second from when each frame arrives
//! (continuous time, no 20 ms steps), records what it heard up to each
//! `clear`, and echoes marks as the test says: on playout (maybe late),
//! never, or by hand (any name, any order). Everything received is kept
//! with its arrival time and its exact text.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use gsttwiliostream::codec::WireFormat;
use gsttwiliostream::protocol::{Inbound, Outbound};
use twilio_emulator::Provider;

use super::sink::pcm_buffer;
use super::*;

const PCM_8K: &str = "audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved";
const MS: u64 = 1_000_000;

/// When the peer echoes a mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// When playout reaches it (at once if nothing is queued; at a clear
    /// for the marks it flushes), `late` after that.
    OnPlayout { late: Duration },
    /// As `OnPlayout`, each echo held up a further 0 to `up_to` on its way
    /// (at random from `seed`), the later ones waiting behind it (one TCP
    /// stream).
    Jittered {
        late: Duration,
        up_to: Duration,
        seed: u64,
    },
    /// Never: the test echoes by hand ([`Peer::echo`]) if at all.
    Never,
}

/// One run of audio the peer played (or began to play) without a break.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub start: Instant,
    /// 8 kHz samples in it (cut to what was played at a clear).
    pub samples: usize,
}

/// What a `clear` found at the peer.
#[derive(Debug, Clone, Copy)]
pub struct ClearAt {
    pub at: Instant,
    /// Samples played in all when it came (fractional: exact time).
    pub played: f64,
    /// Samples it dropped.
    pub dropped: f64,
    /// μ-law bytes received before it.
    pub received: usize,
}

#[derive(Debug, Clone)]
pub struct Echoed {
    pub name: String,
    pub at: Instant,
    pub cleared: bool,
}

/// What the peer got and did so far.
#[derive(Debug, Clone)]
pub struct PeerState {
    pub connected_at: Instant,
    /// Every text message, with when it arrived.
    pub received: Vec<(Instant, String)>,
    /// Binary frames and other oddities (none expected).
    pub invalid: Vec<String>,
    pub closed: Option<(Instant, Option<u16>)>,
    pub segments: Vec<Segment>,
    pub clears: Vec<ClearAt>,
    pub echoes: Vec<Echoed>,
    /// Each mark received, with the media bytes received before it.
    pub marks: Vec<(String, usize)>,
    /// Audio bytes received (μ-law for Twilio), in order.
    pub media: Vec<u8>,
    /// Bytes of each `media` message, and when it arrived, in order.
    pub frames: Vec<(usize, Instant)>,
    /// Bytes per 8 kHz sample of the call's format.
    pub width: usize,
    /// The most the queue held unplayed, just after a frame arrived.
    pub most_queued: Duration,
    queue_end: Option<Instant>,
    /// Marks to echo: name, when, flushed by a clear.
    pending: VecDeque<(String, Instant, bool)>,
}

impl PeerState {
    fn new() -> Self {
        PeerState {
            connected_at: Instant::now(),
            received: Vec::new(),
            invalid: Vec::new(),
            closed: None,
            segments: Vec::new(),
            clears: Vec::new(),
            echoes: Vec::new(),
            marks: Vec::new(),
            media: Vec::new(),
            frames: Vec::new(),
            width: 1,
            most_queued: Duration::ZERO,
            queue_end: None,
            pending: VecDeque::new(),
        }
    }

    /// Samples played by `t`, exactly.
    pub fn played_at(&self, t: Instant) -> f64 {
        self.segments
            .iter()
            .map(|s| {
                let elapsed = t.saturating_duration_since(s.start).as_secs_f64() * 8000.0;
                elapsed.min(s.samples as f64)
            })
            .sum()
    }

    /// When playout of everything received ends.
    pub fn playout_end(&self) -> Option<Instant> {
        self.queue_end
    }

    /// Time the playout stood still between the first and the last
    /// segment (an underrun: what the caller heard as a gap).
    pub fn underruns(&self) -> Duration {
        self.segments
            .windows(2)
            .map(|w| {
                let end = w[0].start + Duration::from_nanos(w[0].samples as u64 * 125_000);
                w[1].start.saturating_duration_since(end)
            })
            .sum()
    }

    /// The texts received whose `event` is `kind`.
    pub fn texts_of(&self, kind: &str) -> Vec<String> {
        let tag = format!(r#"{{"event":"{kind}""#);
        self.received
            .iter()
            .filter(|(_, t)| t.starts_with(&tag))
            .map(|(_, t)| t.clone())
            .collect()
    }

    fn take_media(&mut self, now: Instant, samples: usize) {
        let start = self.queue_end.map_or(now, |end| end.max(now));
        let end = start + Duration::from_nanos(samples as u64 * 125_000);
        // A frame that follows on without a break extends its segment.
        match self.segments.last_mut() {
            Some(last)
                if last.start + Duration::from_nanos(last.samples as u64 * 125_000) == start =>
            {
                last.samples += samples
            }
            _ => self.segments.push(Segment { start, samples }),
        }
        self.queue_end = Some(end);
        self.most_queued = self.most_queued.max(end - now);
    }

    fn take_clear(&mut self, now: Instant, late: Duration) {
        let played = self.played_at(now);
        let total: usize = self.segments.iter().map(|s| s.samples).sum();
        for s in &mut self.segments {
            let heard = now.saturating_duration_since(s.start).as_nanos() / 125_000;
            s.samples = s.samples.min(heard as usize);
        }
        self.segments.retain(|s| s.samples > 0);
        self.clears.push(ClearAt {
            at: now,
            played,
            dropped: total as f64 - played,
            received: self.media.len(),
        });
        self.queue_end = Some(now);
        for (_, due, cleared) in &mut self.pending {
            if *due > now + late {
                *due = now + late;
                *cleared = true;
            }
        }
    }
}

/// See the module documentation.
pub struct Peer {
    pub sid: String,
    provider: Provider,
    out: mpsc::UnboundedSender<Message>,
    state: Arc<Mutex<PeerState>>,
}

impl Peer {
    /// Connects to `url` and sends `connected` and `start` (μ-law 8 kHz).
    pub fn dial(url: &str, echo: Echo) -> Peer {
        Peer::dial_as(url, echo, Provider::Twilio, WireFormat::PCMU)
    }

    /// Connects to `url` as `provider` and sends `connected` and a `start`
    /// announcing `format`, in its spelling. What the sink sends must have
    /// exactly that provider's shape (else it is `invalid`).
    pub fn dial_as(url: &str, echo: Echo, provider: Provider, format: WireFormat) -> Peer {
        let sid = twilio_emulator::provider::stream_id(provider, &twilio_emulator::call::sid("MZ"));
        let (ws, _) = rt()
            .block_on(tokio_tungstenite::connect_async(url))
            .unwrap();
        let (mut write, mut read) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        rt().spawn(async move {
            while let Some(msg) = outgoing.recv().await {
                let close = matches!(msg, Message::Close(_));
                if write.send(msg).await.is_err() || close {
                    break;
                }
            }
        });
        let mut st = PeerState::new();
        st.width = format.bytes_per_tick();
        let state = Arc::new(Mutex::new(st));
        {
            let (state, out, sid) = (state.clone(), out.clone(), sid.clone());
            rt().spawn(async move {
                let (late, up_to, seed) = match echo {
                    Echo::OnPlayout { late } => (late, Duration::ZERO, 0),
                    Echo::Jittered { late, up_to, seed } => (late, up_to, seed),
                    Echo::Never => (Duration::ZERO, Duration::ZERO, 0),
                };
                let mut rng = super::rng::Rng::new(seed);
                let mut held = move || {
                    let ms = up_to.as_millis() as usize;
                    Duration::from_millis(rng.between(0, ms) as u64)
                };
                loop {
                    let due = state.lock().unwrap().pending.front().map(|p| p.1);
                    let sleep = tokio::time::sleep_until(
                        due.unwrap_or_else(|| Instant::now() + PATIENCE).into(),
                    );
                    let msg = tokio::select! {
                        msg = read.next() => msg,
                        _ = sleep, if due.is_some() => {
                            let mut st = state.lock().unwrap();
                            let (name, _, cleared) = st.pending.pop_front().unwrap();
                            let _ = out.send(Message::text(echo_text(provider, &sid, &name)));
                            st.echoes.push(Echoed { name, at: Instant::now(), cleared });
                            continue;
                        }
                    };
                    let now = Instant::now();
                    let mut st = state.lock().unwrap();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            let text = text.to_string();
                            st.received.push((now, text.clone()));
                            let msg = match provider.read(&text, &sid) {
                                Ok(msg) => msg,
                                Err(e) => {
                                    st.invalid.push(e);
                                    continue;
                                }
                            };
                            match msg {
                                Outbound::Media { media, .. } => {
                                    let bytes = base64::engine::general_purpose::STANDARD
                                        .decode(&media.payload)
                                        .unwrap();
                                    let width = st.width;
                                    st.take_media(now, bytes.len() / width);
                                    st.frames.push((bytes.len(), now));
                                    st.media.extend(bytes);
                                }
                                Outbound::Mark { mark, .. } => {
                                    let name = mark.name;
                                    let before = st.media.len();
                                    st.marks.push((name.clone(), before));
                                    if echo != Echo::Never {
                                        let reach = st.queue_end.map_or(now, |e| e.max(now));
                                        let due = reach + late + held();
                                        st.pending.push_back((name, due, false));
                                    }
                                }
                                Outbound::Clear { .. } => st.take_clear(now, late),
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            st.closed = Some((now, frame.map(|f| f.code.into())));
                            break;
                        }
                        Some(Ok(Message::Binary(b))) => st
                            .invalid
                            .push(format!("binary frame of {} bytes", b.len())),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => {
                            st.closed = Some((now, None));
                            break;
                        }
                    }
                }
            });
        }
        let peer = Peer {
            sid,
            provider,
            out,
            state,
        };
        peer.send(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#);
        let f = provider.media_format(format);
        peer.send_spelled(&format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC0","streamSid":"{sid}","callSid":"CA0","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"{}","sampleRate":{},"channels":1}}}}}}"#,
            f.encoding,
            f.sample_rate,
            sid = peer.sid
        ));
        peer
    }

    pub fn send(&self, text: &str) {
        let _ = self.out.send(Message::text(text.to_owned()));
    }

    /// Sends Twilio's message `text` in the provider's spelling.
    fn send_spelled(&self, text: &str) {
        self.send(&spelled(self.provider, text));
    }

    /// Echoes the mark `name` now (whether it was sent or not).
    pub fn echo(&self, name: &str) {
        self.send(&echo_text(self.provider, &self.sid, name));
    }

    pub fn stop(&self) {
        self.send_spelled(&format!(
            r#"{{"event":"stop","sequenceNumber":"9","streamSid":"{}","stop":{{"accountSid":"AC0","callSid":"CA0"}}}}"#,
            self.sid
        ));
    }

    /// Sends a chunk of the caller's audio (in the call's format), chunk
    /// number `chunk` (from 1) at `timestamp_ms`: for a peer that dialled
    /// a src.
    pub fn send_media(&self, audio: &[u8], chunk: u64, timestamp_ms: u64) {
        let payload = base64::engine::general_purpose::STANDARD.encode(audio);
        self.send_spelled(&format!(
            r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp_ms}","payload":"{payload}"}}}}"#,
            chunk + 1,
            self.sid
        ));
    }

    /// Sends a DTMF key.
    pub fn send_dtmf(&self, digit: char) {
        self.send_spelled(&format!(
            r#"{{"event":"dtmf","streamSid":"{}","dtmf":{{"track":"inbound_track","digit":"{digit}"}}}}"#,
            self.sid
        ));
    }

    /// Closes the WebSocket (a normal close frame).
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }

    pub fn state(&self) -> PeerState {
        self.state.lock().unwrap().clone()
    }

    /// Waits until the sink's first frame arrived, then until `after` past it.
    pub fn sleep_past_the_first_frame(&self, after: Duration) {
        let first = self.wait_for("media", |st| !st.media.is_empty()).received[0].0;
        std::thread::sleep((first + after).saturating_duration_since(Instant::now()));
    }

    /// Waits for the first `clear`; the state then.
    pub fn wait_clear(&self) -> PeerState {
        self.wait_for("clear", |st| !st.clears.is_empty())
    }

    /// Waits until the socket closed; the state then.
    pub fn wait_closed(&self) -> PeerState {
        self.wait_for("close", |st| st.closed.is_some())
    }

    /// Waits (up to PATIENCE) until `done` holds; the state then.
    pub fn wait_for(&self, what: &str, done: impl Fn(&PeerState) -> bool) -> PeerState {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let st = self.state();
            if done(&st) {
                return st;
            }
            assert!(Instant::now() < deadline, "peer: no {what}; {st:?}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Twilio's message `text` in `provider`'s spelling.
fn spelled(provider: Provider, text: &str) -> String {
    provider.text(&Inbound::parse(text).unwrap())
}

fn echo_text(provider: Provider, sid: &str, name: &str) -> String {
    let text = serde_json::json!({
        "event": "mark",
        "sequenceNumber": "2",
        "streamSid": sid,
        "mark": { "name": name },
    })
    .to_string();
    spelled(provider, &text)
}

/// An application's pipeline: an appsrc (time) into a sink that listens
/// itself, PLAYING.
pub struct Bot {
    pub p: gst::Pipeline,
    pub app: gst::Element,
    pub sink: gst::Element,
    pub bus: gst::Bus,
}

impl Bot {
    pub fn new(props: &str) -> Bot {
        let p = pipeline(&format!(
            "appsrc name=app format=time caps={PCM_8K} ! \
             twiliostreamsink name=sink port=0 {props}"
        ));
        set_state(&p, gst::State::Playing);
        let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
        let bus = p.bus().unwrap();
        Bot { p, app, sink, bus }
    }

    pub fn dial(&self, echo: Echo) -> Peer {
        Peer::dial(&url_of(&self.sink), echo)
    }

    /// A Bot of `props` and a peer on its call that echoes each mark as
    /// its playout reaches it, at once.
    pub fn with_peer(props: &str) -> (Bot, Peer) {
        let bot = Bot::new(props);
        let peer = bot.dial(Echo::OnPlayout {
            late: Duration::ZERO,
        });
        (bot, peer)
    }

    /// Pushes `ms` of a tone in 20 ms buffers from running time `start_ms`.
    pub fn prompt(&self, start_ms: u64, ms: u64) {
        for i in 0..ms / 20 {
            let mut buffer = pcm_buffer(&sine(300.0, 8000.0, 6000.0, 160));
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds((start_ms + 20 * i) * MS));
            b.set_duration(gst::ClockTime::from_mseconds(20));
            let ret = self
                .app
                .emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
            assert_eq!(ret, gst::FlowReturn::Ok);
        }
    }

    /// Pushes a second of tone from running time 0 and waits until the
    /// sink took it and `bytes` of it reached `peer`.
    pub fn a_second_reaching(&self, peer: &Peer, bytes: usize) {
        self.prompt(0, 1000);
        self.taken();
        peer.wait_for("media", |st| st.media.len() >= bytes);
    }

    /// Waits until the appsrc's queue is empty (the last buffer may still
    /// be in the sink's render).
    pub fn taken(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.app.property::<u64>("current-level-bytes") > 0 {
            assert!(Instant::now() < deadline, "the sink took nothing");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A `twilio-mark` event through the appsrc's queue, after its buffers.
    pub fn mark(&self, name: &str) {
        let s = gst::Structure::builder("twilio-mark")
            .field("name", name)
            .build();
        assert!(self.app.send_event(gst::event::CustomDownstream::new(s)));
    }

    /// Emits `clear`; its `twilio-clear` report.
    pub fn clear(&self) -> Report {
        assert!(self.sink.emit_by_name::<bool>("clear", &[]));
        self.report()
    }

    /// The next `twilio-clear` on the bus (other element messages before
    /// it are dropped).
    pub fn report(&self) -> Report {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(msg) = self.bus.timed_pop_filtered(
                gst::ClockTime::from_mseconds(20),
                &[gst::MessageType::Element],
            ) && let Some(s) = msg.structure()
                && s.name() == "twilio-clear"
            {
                return Report {
                    played: s
                        .get::<Option<gst::ClockTime>>("played")
                        .unwrap()
                        .map(|t| Duration::from_nanos(t.nseconds())),
                    dropped: Duration::from_nanos(
                        s.get::<gst::ClockTime>("dropped").unwrap().nseconds(),
                    ),
                };
            }
        }
        panic!("no twilio-clear message");
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.p.set_state(gst::State::Null);
    }
}

/// A `twilio-clear` message's figures.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub played: Option<Duration>,
    pub dropped: Duration,
}
