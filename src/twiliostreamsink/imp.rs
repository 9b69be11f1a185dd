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
//!
//! Not here: cutting the audio into frames (`framing.rs`), the property and
//! signal declarations (`properties.rs`), the bus messages of a call the sink
//! took itself (`poster.rs`).

use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use tokio::task::JoinHandle;

use super::framing::{Framer, Input, Take};
use super::poster;
use super::properties::{self, DEFAULT_CHUNK_MS};
use crate::call::{self, Call, SINK_COUNTERS, SendError, Slot, Stat, Stats, find_counter};
use crate::codec::resample::DOWNSAMPLER_RATES;
use crate::endpoint::{self, Endpoint};
use crate::protocol::{self, Mark, Outbound};
use crate::runtime::RUNTIME;
use crate::server::Registration;
use crate::wait::{Canceller, wait};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "twiliostreamsink",
        gst::DebugColorFlags::empty(),
        Some("Twilio Media Streams sink"),
    )
});

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
    /// The audio not sent yet, and how it is cut into frames.
    framer: Framer,
}

#[derive(Default)]
pub struct TwilioStreamSink {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    canceller: Mutex<Canceller>,
}

impl State {
    /// Sends the pending frames (whole ones, or all) to the call, if any.
    fn send_frames(&mut self, take: Take) -> Result<(), gst::FlowError> {
        let (Some(call), Some(sid)) = (self.call.as_ref(), self.stream_sid.as_deref()) else {
            return Ok(());
        };
        let sent = self.framer.send_frames(take, |payload| {
            let mut json = String::new();
            protocol::write_media_json(sid, payload, &mut json);
            match call.send_text(json) {
                Ok(()) => {
                    call.stats.add(Stat::ChunksSent, 1);
                    call.sent_audio(payload.len());
                }
                Err(SendError::Backlog) => call.stats.add(Stat::ChunksDropped, 1),
                Err(SendError::Closed) => return Err(gst::FlowError::Eos),
            }
            Ok(())
        });
        if sent.is_err() {
            self.framer.discard_pending();
        }
        sent
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

    pub(super) fn stats_structure(&self) -> gst::Structure {
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
    pub(super) fn send_mark(&self, name: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        let (Some(call), Some(sid)) = (state.call.clone(), state.stream_sid.clone()) else {
            gst::warning!(CAT, imp = self, "no call yet: mark {name:?} not sent");
            return false;
        };
        // The audio before the mark goes out first, even a partial frame.
        if state.send_frames(Take::All).is_err() {
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
    pub(super) fn clear(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        state.framer.clear();
        let (Some(call), Some(sid)) = (state.call.clone(), state.stream_sid.clone()) else {
            return false;
        };
        drop(state);
        if let Err(e) = call.send_text(Outbound::Clear { stream_sid: sid }.to_json()) {
            gst::warning!(CAT, imp = self, "clear not sent: {e:?}");
            return false;
        }
        call.stats.add(Stat::ClearsSent, 1);
        call.cleared();
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
}

#[glib::object_subclass]
impl ObjectSubclass for TwilioStreamSink {
    const NAME: &'static str = "GstTwilioStreamSink";
    type Type = super::TwilioStreamSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for TwilioStreamSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(properties::specs);
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(properties::signals);
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
        if let Some(value) = endpoint::listener_counter(
            self.state.lock().unwrap().registration.as_ref(),
            pspec.name(),
        ) {
            return value;
        }
        match pspec.name() {
            "call-name" => self.settings.lock().unwrap().call_name.to_value(),
            "chunk-duration" => self.settings.lock().unwrap().chunk_ms.to_value(),
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
            framer: Framer::new(settings.chunk_ms as usize * 8),
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
                    state.poster = Some(poster::spawn(&self.obj(), slot.clone()));
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
        let delay = {
            let mut state = self.state.lock().unwrap();
            let framer = &mut state.framer;
            framer
                .set_input(input)
                .map_err(|e| gst::loggable_error!(CAT, "unsupported rate {}", e.0))?;
            gst::ClockTime::from_mseconds(framer.frame_bytes() as u64 / 8)
                + gst::ClockTime::from_nseconds(framer.delay_ns())
        };
        gst::debug!(CAT, imp = self, "input {input:?} for caps {caps}");
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
        let pushed = state
            .framer
            .push(&map)
            .map_err(|_| gst::FlowError::NotNegotiated)?;
        if pushed.split_sample {
            // Buffers should hold whole samples; the byte waits for the next one.
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
        state.send_frames(Take::WholeFrames)?;
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
                    state.framer.push_resampler_tail();
                    let _ = state.send_frames(Take::All);
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
