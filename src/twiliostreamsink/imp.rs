//! The sink element: PCM in, μ-law `media` messages out, marks and clear.
//!
//! Finding the call, in this order: the src with the same `call-name`; else
//! the one twiliostreamsrc of the sink's own pipeline; else the sink listens
//! itself (host, port, path) and takes the next call, posting the call's
//! messages the way the src would.
//!
//! Buffers wait in `prepare()` until the call has started, so a file played
//! into a call prerolls only once somebody is on the line and its clock starts
//! then. Audio is resampled to 8 kHz, encoded, and sent in `chunk-duration`
//! frames; the sink syncs `render-delay` (one frame plus the resampler's
//! delay) early, so every frame still leaves on time.

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use tokio::task::JoinHandle;

use crate::call::{
    self, Call, CallEvent, SINK_COUNTERS, SendError, Slot, Stat, Stats, counter_pspecs,
    find_counter,
};
use crate::codec::{Downsampler, g711, resample::DOWNSAMPLER_RATES};
use crate::endpoint::Endpoint;
use crate::messages;
use crate::protocol::{self, Mark, Outbound};
use crate::runtime::RUNTIME;
use crate::server::Registration;
use crate::wait::{Canceller, wait};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "twiliostreamsink",
        gst::DebugColorFlags::empty(),
        Some("Twilio Media Streams sink"),
    )
});

const DEFAULT_CHUNK_MS: u32 = 20;

/// Name of the serialized custom downstream event that becomes a `mark`.
pub const MARK_EVENT: &str = "twilio-mark";
/// Name of the custom downstream event (in-band or out-of-band) that becomes a `clear`.
pub const CLEAR_EVENT: &str = "twilio-clear";
/// The mark a sink that took the call itself sends at EOS, to hang up only
/// once Twilio has played everything.
pub const EOS_MARK: &str = "twiliostream-eos";
/// Longest wait at EOS for Twilio to play out, beyond the audio queued there.
const PLAYOUT_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Settings {
    endpoint: Endpoint,
    call_name: Option<String>,
    chunk_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoint: Endpoint::default(),
            call_name: None,
            chunk_ms: DEFAULT_CHUNK_MS,
        }
    }
}

/// What the sink pad receives, from the caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    Pcm(u32),
    Mulaw,
}

#[derive(Default)]
struct State {
    /// Where the call comes from; set in start().
    slot: Option<Arc<Slot>>,
    /// Set when the sink listens itself (no src to pair with).
    registration: Option<Registration>,
    /// Posts the call's messages when the sink listens itself.
    poster: Option<JoinHandle<()>>,
    bound_port: u32,
    /// The call being (or last) played into, and its streamSid.
    call: Option<Arc<Call>>,
    stream_sid: Option<String>,
    input: Option<Input>,
    downsampler: Option<Downsampler>,
    frame_bytes: usize,
    /// Input as samples, and resampled to 8 kHz (scratch, reused).
    pcm: Vec<i16>,
    pcm8k: Vec<i16>,
    /// μ-law not sent yet (less than a frame once render returns).
    pending: Vec<u8>,
    /// A byte of a 16-bit sample split across buffers.
    odd_byte: Option<u8>,
}

#[derive(Default)]
pub struct TwilioStreamSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    canceller: Mutex<Canceller>,
}

impl State {
    /// Sends whole frames of `pending`, and with `all` the partial rest too.
    fn send_frames(&mut self, all: bool) -> Result<(), gst::FlowError> {
        let (Some(call), Some(sid)) = (self.call.as_ref(), self.stream_sid.as_deref()) else {
            return Ok(());
        };
        let frame = self.frame_bytes.max(1);
        let mut sent = 0;
        while self.pending.len() - sent >= frame || (all && sent < self.pending.len()) {
            let end = (sent + frame).min(self.pending.len());
            let payload = &self.pending[sent..end];
            let mut json = String::new();
            protocol::write_media_json(sid, payload, &mut json);
            match call.send_text(json) {
                Ok(()) => {
                    call.stats.add(Stat::ChunksSent, 1);
                    call.stats.add(Stat::BytesSent, payload.len() as u64);
                }
                Err(SendError::Backlog) => call.stats.add(Stat::ChunksDropped, 1),
                Err(SendError::Closed) => {
                    self.pending.clear();
                    return Err(gst::FlowError::Eos);
                }
            }
            sent = end;
        }
        self.pending.drain(..sent);
        Ok(())
    }

    /// Pushes the resampler's tail out with silence (at EOS).
    fn drain_resampler(&mut self) {
        let Some(down) = self.downsampler.as_mut().filter(|d| d.delay_ns() > 0) else {
            return;
        };
        let rate = down.input_rate() as u64;
        let zeros = (down.delay_ns() * rate).div_ceil(1_000_000_000) as usize + 6;
        self.pcm.clear();
        self.pcm.resize(zeros, 0);
        self.pcm8k.clear();
        down.process(&self.pcm, &mut self.pcm8k);
        let start = self.pending.len();
        self.pending.resize(start + self.pcm8k.len(), 0);
        g711::encode_slice(&self.pcm8k, &mut self.pending[start..]);
    }
}

impl TwilioStreamSink {
    fn current_call(&self) -> Option<Arc<Call>> {
        let state = self.state.lock().unwrap();
        state
            .call
            .clone()
            .or_else(|| state.slot.as_ref().and_then(|s| s.current()))
    }

    fn stats_structure(&self) -> gst::Structure {
        let call = self.current_call();
        Stats::structure(
            call.as_deref().map(|c| &c.stats),
            "twiliostreamsink-stats",
            SINK_COUNTERS,
        )
    }

    /// The twiliostreamsrc elements of the sink's top-level bin.
    fn srcs_in_pipeline(&self) -> Vec<crate::TwilioStreamSrc> {
        let mut top: gst::Object = self.obj().clone().upcast();
        while let Some(parent) = top.parent() {
            top = parent;
        }
        let Ok(bin) = top.downcast::<gst::Bin>() else {
            return Vec::new();
        };
        bin.iterate_recurse()
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.downcast::<crate::TwilioStreamSrc>().ok())
            .collect()
    }

    /// Waits (cancellably) until the call has started; EOS if the call ended
    /// instead, flushing if cancelled.
    fn ensure_call(&self) -> Result<(), gst::FlowError> {
        let slot = {
            let state = self.state.lock().unwrap();
            match (&state.call, &state.stream_sid) {
                (Some(call), Some(_)) if call.is_open() => return Ok(()),
                (Some(_), Some(_)) => return Err(gst::FlowError::Eos),
                _ => state.slot.clone().ok_or(gst::FlowError::Flushing)?,
            }
        };
        gst::debug!(CAT, imp = self, "waiting for a call");
        let call = wait(&self.canceller, slot.wait()).map_err(|_| gst::FlowError::Flushing)?;
        gst::debug!(CAT, imp = self, "{call:?}: waiting for its start");
        let start = wait(&self.canceller, call.started()).map_err(|_| gst::FlowError::Flushing)?;
        let Some(start) = start else {
            gst::info!(CAT, imp = self, "{call:?} ended before it started");
            return Err(gst::FlowError::Eos);
        };
        gst::info!(
            CAT,
            imp = self,
            "{call:?}: playing into stream {}",
            start.stream_sid
        );
        {
            let mut state = self.state.lock().unwrap();
            state.call = Some(call);
            state.stream_sid = Some(start.stream_sid.clone());
        }
        for name in ["connected", "call-sid", "stream-sid"] {
            self.obj().notify(name);
        }
        Ok(())
    }

    /// Sends a `mark` after everything rendered so far. False without a call.
    fn send_mark(&self, name: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        let (Some(call), Some(sid)) = (state.call.clone(), state.stream_sid.clone()) else {
            gst::warning!(CAT, imp = self, "no call yet: mark {name:?} not sent");
            return false;
        };
        // The audio before the mark goes out first, even a partial frame.
        if state.send_frames(true).is_err() {
            return false;
        }
        drop(state);
        let text = Outbound::Mark {
            stream_sid: sid,
            mark: Mark {
                name: name.to_owned(),
            },
        }
        .to_json();
        if let Err(e) = call.send_text(text) {
            gst::warning!(CAT, imp = self, "mark {name:?} not sent: {e:?}");
            return false;
        }
        call.stats.add(Stat::MarksSent, 1);
        gst::debug!(CAT, imp = self, "mark {name:?} sent");
        true
    }

    /// Discards audio not sent yet and sends `clear`. False without a call.
    fn clear(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        state.pending.clear();
        state.odd_byte = None;
        if let Some(down) = state.downsampler.as_mut() {
            down.reset();
        }
        let (Some(call), Some(sid)) = (state.call.clone(), state.stream_sid.clone()) else {
            return false;
        };
        drop(state);
        if let Err(e) = call.send_text(Outbound::Clear { stream_sid: sid }.to_json()) {
            gst::warning!(CAT, imp = self, "clear not sent: {e:?}");
            return false;
        }
        call.stats.add(Stat::ClearsSent, 1);
        gst::debug!(CAT, imp = self, "clear sent");
        true
    }

    /// With a call of its own, the sink hangs up when the pipeline stops:
    /// first let Twilio play what it has queued (a mark comes back once it has).
    fn wait_for_playout(&self) {
        let Some(call) = self.current_call().filter(|c| c.is_open()) else {
            return;
        };
        if !self.send_mark(EOS_MARK) {
            return;
        }
        let sent = call.stats.get(Stat::MarksSent);
        gst::debug!(CAT, imp = self, "EOS: waiting for Twilio to play out");
        let waiting = RUNTIME.spawn(async move {
            tokio::time::timeout(PLAYOUT_GRACE, call.marks_echoed(sent)).await
        });
        match wait(&self.canceller, waiting) {
            Ok(Ok(Ok(()))) => gst::debug!(CAT, imp = self, "EOS: played out"),
            Ok(_) => gst::warning!(CAT, imp = self, "EOS: Twilio did not confirm playout"),
            Err(_) => gst::debug!(CAT, imp = self, "EOS: stopped waiting for playout"),
        }
    }

    /// When the sink listens itself, nobody else reads the call's events:
    /// post them as the src would.
    fn spawn_poster(&self, slot: Arc<Slot>) -> JoinHandle<()> {
        let element = self.obj().upcast_ref::<gst::Element>().downgrade();
        RUNTIME.spawn(async move {
            let call = slot.wait().await;
            let Some(mut events) = call.take_events() else {
                return;
            };
            if let Some(e) = element.upgrade() {
                call.log_to(*CAT, &e);
                e.notify("connected");
            }
            let mut stream_sid = String::new();
            while let Some(event) = events.recv().await {
                let Some(e) = element.upgrade() else { return };
                let sink = e.downcast_ref::<super::TwilioStreamSink>().unwrap();
                match event {
                    CallEvent::Start(start) => {
                        stream_sid = start.stream_sid.clone();
                        messages::post(&e, messages::start(&start));
                    }
                    CallEvent::Dtmf(digit) => messages::post(&e, messages::dtmf(&digit)),
                    CallEvent::Mark(name) => messages::post(&e, messages::mark(&name)),
                    CallEvent::Stop(stop) => {
                        let stats = sink.imp().stats_structure();
                        messages::post(&e, messages::stop(&stop, &stream_sid, stats));
                    }
                    CallEvent::Closed(reason) => {
                        gst::element_warning!(e, gst::ResourceError::Write, ["{}", reason]);
                    }
                    CallEvent::Ended(why) => {
                        let stats = sink.imp().stats_structure();
                        messages::post(&e, messages::ended(&why, &stream_sid, stats));
                    }
                    CallEvent::Media(_) => {}
                }
            }
        })
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TwilioStreamSink {
    const NAME: &'static str = "GstTwilioStreamSink";
    type Type = super::TwilioStreamSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for TwilioStreamSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut props = vec![
                glib::ParamSpecString::builder("call-name")
                    .nick("Call name")
                    .blurb("Plays into the call of the twiliostreamsrc with the same call-name, \
                            in any pipeline of the process. Without it, the sink pairs with the \
                            twiliostreamsrc of its own pipeline, or listens itself if there is none")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("chunk-duration")
                    .nick("Chunk duration")
                    .blurb("Milliseconds of audio per media message sent to Twilio")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(DEFAULT_CHUNK_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("bound-port")
                    .nick("Bound port")
                    .blurb("The port this sink listens on itself, 0 when it does not listen")
                    .maximum(u16::MAX as u32)
                    .read_only()
                    .build(),
                glib::ParamSpecBoolean::builder("connected")
                    .nick("Connected")
                    .blurb("Whether the sink has a call to play into")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("call-sid")
                    .nick("Call SID")
                    .blurb("callSid of the call played into")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("stream-sid")
                    .nick("Stream SID")
                    .blurb("streamSid of the call played into")
                    .read_only()
                    .build(),
            ];
            props.extend(Endpoint::pspecs(
                ". Only used when there is no twiliostreamsrc to pair with",
            ));
            props.extend(counter_pspecs(SINK_COUNTERS));
            props.push(
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("All counters of the current call in one structure")
                    .read_only()
                    .build(),
            );
            props
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![
                // Action signal: sends a mark named by the argument after the
                // audio rendered so far. Returns whether it was sent.
                glib::subclass::Signal::builder("send-mark")
                    .param_types([String::static_type()])
                    .return_type::<bool>()
                    .action()
                    .class_handler(|args| {
                        let sink = args[0].get::<super::TwilioStreamSink>().unwrap();
                        let name = args[1].get::<String>().unwrap();
                        Some(sink.imp().send_mark(&name).to_value())
                    })
                    .build(),
                // Action signal: drops audio not sent yet and sends clear.
                glib::subclass::Signal::builder("clear")
                    .return_type::<bool>()
                    .action()
                    .class_handler(|args| {
                        let sink = args[0].get::<super::TwilioStreamSink>().unwrap();
                        Some(sink.imp().clear().to_value())
                    })
                    .build(),
            ]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        if settings.endpoint.set_property(pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "call-name" => {
                settings.call_name = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|n| !n.is_empty())
            }
            "chunk-duration" => settings.chunk_ms = value.get().unwrap(),
            other => unimplemented!("property {other}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(value) = self
            .settings
            .lock()
            .unwrap()
            .endpoint
            .property(pspec.name())
        {
            return value;
        }
        match pspec.name() {
            "call-name" => self.settings.lock().unwrap().call_name.to_value(),
            "chunk-duration" => self.settings.lock().unwrap().chunk_ms.to_value(),
            "signature-failures" => self
                .state
                .lock()
                .unwrap()
                .registration
                .as_ref()
                .map_or(0, |r| r.signature_failures())
                .to_value(),
            "bound-port" => self.state.lock().unwrap().bound_port.to_value(),
            "connected" => self.current_call().is_some_and(|c| c.is_open()).to_value(),
            "call-sid" => self
                .current_call()
                .and_then(|c| c.start_info())
                .map(|s| s.call_sid.clone())
                .to_value(),
            "stream-sid" => self.state.lock().unwrap().stream_sid.to_value(),
            "stats" => self.stats_structure().to_value(),
            name => {
                let stat = find_counter(SINK_COUNTERS, name)
                    .unwrap_or_else(|| unimplemented!("property {name}"));
                self.current_call()
                    .map_or(0, |c| c.stats.get(stat))
                    .to_value()
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // Real time by default: Twilio's queue stays short and clear is immediate.
        self.obj().set_sync(true);
    }
}

impl GstObjectImpl for TwilioStreamSink {}

impl ElementImpl for TwilioStreamSink {
    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::ReadyToPaused {
            self.connect().map_err(|e| {
                self.post_error_message(e);
                gst::StateChangeError
            })?;
        }
        let result = self.parent_change_state(transition);
        if transition == gst::StateChange::PausedToReady
            || (transition == gst::StateChange::ReadyToPaused && result.is_err())
        {
            self.disconnect();
        }
        result
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Twilio Media Streams sink",
                "Sink/Audio/Network",
                "Plays audio into a Twilio Media Streams call, with marks and clear",
                "twiliostream developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let mut caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .rate_list(DOWNSAMPLER_RATES.iter().map(|&r| r as i32))
                .channels(1)
                .build();
            caps.get_mut().unwrap().append(crate::mulaw_caps());
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }
}

impl TwilioStreamSink {
    /// Finds the call's slot (pairing, or listening itself). Done on READY →
    /// PAUSED, like the src, so that properties set in READY apply.
    fn connect(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let mut state = State {
            frame_bytes: settings.chunk_ms as usize * 8,
            ..State::default()
        };
        if let Some(name) = &settings.call_name {
            gst::info!(
                CAT,
                imp = self,
                "pairing with the src of call-name {name:?}"
            );
            state.slot = Some(call::named_slot(name));
        } else {
            let srcs = self.srcs_in_pipeline();
            match srcs.as_slice() {
                [src] => {
                    gst::info!(CAT, imp = self, "pairing with {}", src.name());
                    state.slot = Some(src.slot());
                }
                [] => {
                    let slot = Slot::new();
                    let registration = settings.endpoint.register(slot.clone())?;
                    let addr = registration.local_addr();
                    gst::info!(
                        CAT,
                        imp = self,
                        "no twiliostreamsrc to pair with: listening on ws://{addr}{}",
                        settings.endpoint.path
                    );
                    state.bound_port = addr.port() as u32;
                    state.registration = Some(registration);
                    state.poster = Some(self.spawn_poster(slot.clone()));
                    state.slot = Some(slot);
                }
                several => {
                    return Err(gst::error_msg!(
                        gst::ResourceError::Settings,
                        [
                            "{} twiliostreamsrc elements in this pipeline: set call-name on the \
                             sink and on the src it should play into",
                            several.len()
                        ]
                    ));
                }
            }
        }
        let listening = state.registration.is_some();
        *self.state.lock().unwrap() = state;
        if listening {
            self.obj().notify("bound-port");
        }
        Ok(())
    }

    /// Undoes [`connect`](Self::connect) on PAUSED → READY: stops listening
    /// and hangs up a call of its own.
    fn disconnect(&self) {
        let state = std::mem::take(&mut *self.state.lock().unwrap());
        if let Some(poster) = &state.poster {
            poster.abort();
        }
        // A call the sink took itself is hung up; a src's call is the src's.
        if let Some(registration) = state.registration {
            drop(registration);
            if let Some(call) = state.slot.as_ref().and_then(|s| s.take()) {
                gst::info!(CAT, imp = self, "{call:?}: closing");
                call.close();
            }
            self.obj().notify("bound-port");
        }
        // Keep the last call for the counters.
        self.state.lock().unwrap().call = state.call;
    }
}

impl BaseSinkImpl for TwilioStreamSink {
    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let s = caps
            .structure(0)
            .ok_or_else(|| gst::loggable_error!(CAT, "empty caps"))?;
        let input = match s.name().as_str() {
            "audio/x-mulaw" => Input::Mulaw,
            _ => Input::Pcm(
                s.get::<i32>("rate")
                    .map_err(|_| gst::loggable_error!(CAT, "no rate in {caps}"))?
                    as u32,
            ),
        };
        let downsampler = match input {
            Input::Pcm(rate) => Some(
                Downsampler::new(rate)
                    .ok_or_else(|| gst::loggable_error!(CAT, "unsupported rate {rate}"))?,
            ),
            Input::Mulaw => None,
        };
        gst::debug!(CAT, imp = self, "input {input:?} for caps {caps}");
        let delay = {
            let mut state = self.state.lock().unwrap();
            let frame = gst::ClockTime::from_mseconds(state.frame_bytes as u64 / 8);
            let delay = frame
                + gst::ClockTime::from_nseconds(downsampler.as_ref().map_or(0, |d| d.delay_ns()));
            state.input = Some(input);
            state.downsampler = downsampler;
            state.odd_byte = None;
            delay
        };
        // Frames leave once full: sync that much early so they leave on time.
        self.obj().set_render_delay(delay);
        Ok(())
    }

    fn prepare(&self, _buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.ensure_call().map(|_| gst::FlowSuccess::Ok)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.ensure_call()?;
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        let mut state = self.state.lock().unwrap();
        let state = &mut *state;
        match state.input {
            None => return Err(gst::FlowError::NotNegotiated),
            Some(Input::Mulaw) => state.pending.extend_from_slice(&map),
            Some(Input::Pcm(_)) => {
                let mut data: &[u8] = &map;
                state.pcm.clear();
                if let Some(first) = state.odd_byte.take()
                    && let Some((&second, rest)) = data.split_first()
                {
                    state.pcm.push(i16::from_le_bytes([first, second]));
                    data = rest;
                }
                let samples = data.chunks_exact(2);
                if let [last] = samples.remainder() {
                    // Buffers should hold whole samples; keep the byte for the next one.
                    state.odd_byte = Some(*last);
                    if let Some(call) = &state.call {
                        call.stats.add(Stat::OutboundTranscodeErrors, 1);
                    }
                    gst::warning!(
                        CAT,
                        imp = self,
                        "buffer of {} bytes splits a sample",
                        map.len()
                    );
                }
                state
                    .pcm
                    .extend(samples.map(|b| i16::from_le_bytes([b[0], b[1]])));
                state.pcm8k.clear();
                let down = state.downsampler.as_mut().expect("set with the caps");
                down.process(&state.pcm, &mut state.pcm8k);
                let start = state.pending.len();
                state.pending.resize(start + state.pcm8k.len(), 0);
                g711::encode_slice(&state.pcm8k, &mut state.pending[start..]);
            }
        }
        state.send_frames(false)?;
        Ok(gst::FlowSuccess::Ok)
    }

    fn event(&self, event: gst::Event) -> bool {
        let name = event.structure().map(|s| s.name().to_string());
        match event.view() {
            gst::EventView::CustomDownstream(_) if name.as_deref() == Some(MARK_EVENT) => {
                match event.structure().and_then(|s| s.get::<String>("name").ok()) {
                    Some(mark) => {
                        // Serialized: all audio before it was rendered.
                        if self.ensure_call().is_ok() {
                            self.send_mark(&mark);
                        }
                    }
                    None => gst::warning!(
                        CAT,
                        imp = self,
                        "{MARK_EVENT} event without a string field 'name'"
                    ),
                }
            }
            gst::EventView::CustomDownstream(_)
            | gst::EventView::CustomDownstreamOob(_)
            | gst::EventView::CustomBoth(_)
            | gst::EventView::CustomBothOob(_)
                if name.as_deref() == Some(CLEAR_EVENT) =>
            {
                self.clear();
            }
            gst::EventView::FlushStart(_) => {
                gst::debug!(CAT, imp = self, "flush: clearing");
                self.clear();
            }
            gst::EventView::Eos(_) => {
                let owns_call = {
                    let mut state = self.state.lock().unwrap();
                    state.drain_resampler();
                    let _ = state.send_frames(true);
                    state.registration.is_some()
                };
                if owns_call {
                    self.wait_for_playout();
                }
            }
            _ => {}
        }
        self.parent_event(event)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.canceller.lock().unwrap().cancel();
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.canceller.lock().unwrap().reset();
        Ok(())
    }
}
