//! The sink element: PCM (or the call's own codec) in, `media` messages in the call's codec out, marks and clear.
//!
//! Buffers wait in `prepare()` until the call has started, so a file played
//! into a call prerolls only once somebody is on the line and its clock starts
//! then (`preroll.rs`: how, without holding up a state change). Audio is
//! resampled to 8 kHz, encoded, and handed to the call in `chunk-duration`
//! frames, each with the running time of its first sample.
//! The call's writer paces them by its model of Twilio's queue (`max-lead`),
//! so by default the sink does not sync to the clock (`sync=false`): a
//! source faster than real time is held back only when more than
//! [`MAX_QUEUED`] waits in the writer. With `sync=true` the sink syncs
//! `render-delay` (one frame plus the resampler's delay) early, so every
//! frame still leaves on time.
//!
//! Not here: finding the call (`pairing.rs`), cutting the audio into frames (`framing/`), marks, clear and
//! ending the stream at EOS or on `end-stream` (`control.rs`), the property,
//! signal and pad template declarations (`properties.rs`), the bus messages
//! of a call the sink took itself (`poster.rs`), what a panic does
//! (`panicked.rs`).

use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::framing::{Framer, Input, NotNegotiated, Take};
use super::properties::{self, DEFAULT_CHUNK_MS, DEFAULT_END_STREAM_ON_EOS, DEFAULT_MAX_LEAD_MS};
use crate::call::{Call, Outgoing, SendError, Slot, Stat};
use crate::contain::Containing as _;
use crate::endpoint::Endpoint;
use crate::lock::Locked;
use crate::server::Registration;

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
/// Audio waiting in the call's writer beyond which `render()` waits for it
/// to be written: a source faster than real time is held back here.
pub const MAX_QUEUED: std::time::Duration = std::time::Duration::from_secs(1);
/// Frames `render()` hands the writer at a time, waiting for room between
/// batches: a buffer of minutes stays within the writer's byte limit.
const BATCH_FRAMES: usize = 50;
/// Nanoseconds per 8 kHz sample.
const NS_PER_SAMPLE: u64 = 125_000;
/// A buffer's running time this far (ns) from where the audio before it
/// ends is a jump: the partial frame before it goes out on its own.
const JUMP_NS: i64 = 10_000_000;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) endpoint: Endpoint,
    pub(super) call_name: Option<String>,
    pub(super) chunk_ms: u32,
    /// `end-stream-on-eos`: at EOS, play out and close the WebSocket.
    pub(super) end_stream_on_eos: bool,
    pub(super) max_lead_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoint: Endpoint::default(),
            call_name: None,
            chunk_ms: DEFAULT_CHUNK_MS,
            end_stream_on_eos: DEFAULT_END_STREAM_ON_EOS,
            max_lead_ms: DEFAULT_MAX_LEAD_MS,
        }
    }
}

#[derive(Default)]
pub(super) struct State {
    /// Where the call comes from; set in start().
    pub(super) slot: Option<Arc<Slot>>,
    /// Set when the sink listens itself (no src to pair with).
    pub(super) registration: Option<Registration>,
    /// Posts the call's messages when the sink listens itself.
    pub(super) poster: Option<super::poster::Poster>,
    pub(super) bound_port: u32,
    /// The call being (or last) played into, and its streamSid.
    pub(super) call: Option<Arc<Call>>,
    pub(super) stream_sid: Option<String>,
    /// The audio not sent yet, and how it is cut into frames.
    pub(super) framer: Framer,
    /// The segment of the buffers rendered, for their running times.
    pub(super) segment: gst::FormattedSegment<gst::ClockTime>,
    /// The framer's sample index and the running time (ns) of the last
    /// buffer with a timestamp: the running time of every frame.
    pub(super) anchor: (u64, u64),
    /// Between flush-start and flush-stop: a render already past BaseSink's
    /// own check sends nothing after the flush's clear.
    pub(super) flushing: bool,
    /// Another sink plays into the call: this one errored, and sends nothing.
    pub(super) refused: bool,
    /// A STREAM_START came since the call played into was over: the src's
    /// next stream, which may take the sink to the src's next call
    /// (`pairing.rs`, `let_go_of_ended_call`).
    pub(super) next_stream: bool,
    /// Once the call played into is over: whether the sink's stream came
    /// from the src (the walk upstream, once per call: `pairing.rs`).
    pub(super) from_src: Option<bool>,
    /// That the branch feeding the sink must be flushed was told, for the
    /// call played into.
    pub(super) told_flush: bool,
    /// BaseSink took an EOS: until a flush or a new start it drops
    /// everything, a STREAM_START too (`pairing.rs`, `restart_after_eos`).
    pub(super) ended: bool,
    /// `ended` set a probe for the next STREAM_START that has not fired.
    pub(super) eos_probe: bool,
    /// The srcs that pushed into this sink from a network thread
    /// (`shared-threads`), and those whose pushes it holds while paused
    /// (`pairing.rs`, `hold_feeders`).
    pub(super) feeders: Vec<crate::TwilioStreamSrc>,
    pub(super) holding: Vec<crate::TwilioStreamSrc>,
}

#[derive(Default)]
pub struct TwilioStreamSink {
    pub(super) settings: Mutex<Settings>,
    pub(super) state: Mutex<State>,
    /// While BaseSink's `async` is turned off (`pairing.rs`,
    /// `not_async_if`): by how many calls at once (a state change and a
    /// flush may overlap), and the setting the first one found.
    pub(super) async_off: Mutex<(usize, bool)>,
    /// Whether the last of PLAYING → PAUSED and PAUSED → PLAYING to begin
    /// was the pause (`preroll.rs`): set before BaseSink's part of either.
    pub(super) pausing: std::sync::atomic::AtomicBool,
    /// From PLAYING → PAUSED (a hold, made with `async` off) until the
    /// next PAUSED → PLAYING or READY has been made, also with it off
    /// (`pairing.rs`, `change_base_state`).
    pub(super) held: std::sync::atomic::AtomicBool,
    /// The sink panicked and stopped on its own (`panicked.rs`).
    pub(super) stopped_after_panic: std::sync::atomic::AtomicBool,
}

impl State {
    /// Keeps the src pushing on this thread from a network thread, if any.
    pub(super) fn note_feeder(&mut self) {
        if crate::push_gate::pusher() != 0 && !self.feeders.iter().any(|f| f.is_pushing()) {
            self.feeders.extend(crate::TwilioStreamSrc::pushing());
        }
    }

    /// Sends the pending frames (whole ones, or all) to the call, if any.
    pub(super) fn send_frames(&mut self, take: Take) -> Result<(), gst::FlowError> {
        let (Some(call), Some(sid)) = (self.call.as_ref(), self.stream_sid.as_deref()) else {
            return Ok(());
        };
        let (anchor_sample, anchor_time) = self.anchor;
        let sent = self.framer.send_frames(take, |start, payload, padding| {
            let mut json = String::new();
            call.dialect().write_media(sid, payload, &mut json);
            let offset = start as i64 - anchor_sample as i64;
            let running_time = (anchor_time as i64 + offset * NS_PER_SAMPLE as i64).max(0) as u64;
            let media = Outgoing::Media {
                text: json,
                bytes: payload.len() as u32,
                duration: call.audio_ns(payload),
                padding: call.audio_ns(payload)
                    - call.audio_ns(&payload[..payload.len() - padding]),
                running_time,
            };
            match call.send(media) {
                // (Media after `end-stream` is dropped by `send`: Ok.)
                Ok(()) | Err(SendError::Ending) => {}
                Err(SendError::Backlog) => call.stats.add(Stat::ChunksDropped, 1),
                // Dropped, as after `stop`, until the call's consumer has
                // read its end (see `Call::end_unread`).
                Err(SendError::Closed) if call.end_unread() => {}
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
    /// A `twilio-mark` event that is no mark: the WARNING saying why.
    #[cold]
    pub(super) fn mark_event_ignored(&self, why: &str) {
        gst::element_imp_warning!(
            self,
            gst::CoreError::Event,
            ("{MARK_EVENT} event ignored: {why}")
        );
    }

    /// Input the call cannot take: the error, posted.
    #[cold]
    #[inline(never)]
    fn mismatch(&self, input: Input, call: crate::codec::WireFormat) -> gst::FlowError {
        gst::element_imp_error!(
            self,
            gst::StreamError::Format,
            ("Input {:?} cannot be sent into a {} call", input, call),
            [
                "G.722 and Opus input pass through to a call in the same codec \
                 only, and a G.722 or Opus call takes nothing else: encode \
                 (avenc_g722, opusenc) for such calls, send PCM to the others"
            ]
        );
        gst::FlowError::NotNegotiated
    }

    /// A buffer that splits a sample: counted and told; the byte waits
    /// for the next one (buffers should hold whole samples).
    #[cold]
    #[inline(never)]
    fn split_sample(&self, state: &State, len: usize) {
        if let Some(call) = &state.call {
            call.stats.add(Stat::OutboundTranscodeErrors, 1);
        }
        gst::warning!(CAT, imp = self, "buffer of {len} bytes splits a sample");
    }

    /// Frames leave once full: sync that much (and the resampler's delay)
    /// early so they leave on time. Set by the caps and the call's format.
    pub(super) fn update_render_delay(&self) {
        let delay = {
            let state = self.state.locked();
            gst::ClockTime::from_mseconds(state.framer.frame_ms())
                + gst::ClockTime::from_nseconds(state.framer.delay_ns())
        };
        self.obj().set_render_delay(delay);
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

    // GLib calls these with no way to unwind: a panic would abort the
    // process, every call in it. Caught, it stops the element as in a
    // vfunc. (A lock a panic elsewhere poisoned is taken all the same:
    // `crate::lock`.)
    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        self.stopping_on_panic(|| (), || self.write_property(value, pspec));
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        self.stopping_on_panic(
            || pspec.default_value().clone(),
            || self.read_property(pspec),
        )
    }

    fn constructed(&self) {
        self.parent_constructed();
        // The call's writer paces (max-lead): no clock wait per buffer.
        self.obj().set_sync(false);
        // Keeping the last buffer costs a lock and two reference counts per
        // buffer, for a snapshot that audio has little use for.
        self.obj().set_enable_last_sample(false);
    }
}

impl GstObjectImpl for TwilioStreamSink {}

impl ElementImpl for TwilioStreamSink {
    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        self.stopping_on_panic(
            || crate::contain::state_change_fallback(transition),
            || {
                if transition == gst::StateChange::ReadyToPaused {
                    self.connect().map_err(|e| {
                        self.post_error_message(e);
                        gst::StateChangeError
                    })?;
                }
                match transition {
                    gst::StateChange::PlayingToPaused => self.pausing.store(true, SeqCst),
                    gst::StateChange::PausedToPlaying | gst::StateChange::ReadyToPaused => {
                        self.pausing.store(false, SeqCst)
                    }
                    _ => {}
                }
                if transition == gst::StateChange::PausedToPlaying {
                    self.pause_call(false);
                }
                // PLAYING ↔ PAUSED hold the pushes of the srcs that feed the sink
                // from a network thread (`pairing.rs`).
                let result = self.change_base_state(transition);
                if transition == gst::StateChange::PlayingToPaused {
                    self.pause_call(true);
                }
                if transition == gst::StateChange::PausedToReady
                    || (transition == gst::StateChange::ReadyToPaused && result.is_err())
                {
                    self.disconnect();
                }
                result
            },
        )
    }

    fn send_event(&self, event: gst::Event) -> bool {
        match self.element_event(&event) {
            Some(done) => done,
            None => self.parent_send_event(event),
        }
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Twilio Media Streams Sink",
                "Sink/Audio/Network",
                "Plays audio into a phone call through Twilio Media Streams, with marks and clear",
                "The twiliostream developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        properties::pad_templates()
    }
}

impl BaseSinkImpl for TwilioStreamSink {
    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        self.stopping_on_panic(
            || Err(gst::loggable_error!(CAT, "panicked")),
            || {
                let s = caps
                    .structure(0)
                    .ok_or_else(|| gst::loggable_error!(CAT, "empty caps"))?;
                let input = match s.name().as_str() {
                    "audio/x-mulaw" => Input::Mulaw,
                    "audio/x-alaw" => Input::Alaw,
                    "audio/G722" => Input::G722,
                    "audio/x-opus" => Input::Opus,
                    _ => Input::Pcm(
                        s.get::<i32>("rate")
                            .map_err(|_| gst::loggable_error!(CAT, "no rate in {caps}"))?
                            as u32,
                    ),
                };
                self.state
                    .locked()
                    .framer
                    .set_input(input)
                    .map_err(|e| gst::loggable_error!(CAT, "unsupported rate {}", e.0))?;
                gst::debug!(CAT, imp = self, "input {input:?} for caps {caps}");
                self.update_render_delay();
                Ok(())
            },
        )
    }

    fn prepare(&self, _buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.stopping_on_panic(
            || Err(gst::FlowError::Error),
            || self.ensure_call().map(|_| gst::FlowSuccess::Ok),
        )
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.stopping_on_panic(
            || Err(gst::FlowError::Error),
            || {
                if !self.ensure_call()? {
                    return Ok(gst::FlowSuccess::Ok);
                }
                if buffer
                    .flags()
                    .intersects(gst::BufferFlags::HEADER | gst::BufferFlags::GAP)
                {
                    // An encoder's stream headers (opusenc's OpusHead, OpusTags):
                    // no audio. A gap's silence (a src's fill): nothing to send,
                    // as for a GAP event; Twilio plays silence meanwhile. Its
                    // pusher is a feeder all the same (held when the sink pauses).
                    self.state.locked().note_feeder();
                    return Ok(gst::FlowSuccess::Ok);
                }
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                let mut state = self.state.locked();
                #[cfg(test)]
                if super::panicked::asked(&super::panicked::PANIC_IN_RENDER, self) {
                    panic!("render panicked (test)");
                }
                if state.flushing {
                    return Err(gst::FlowError::Flushing);
                }
                state.note_feeder();
                if let Some(time) = state.segment.to_running_time(buffer.pts()) {
                    // The resampler's output lags its input by its delay.
                    let time = time.nseconds().saturating_sub(state.framer.lag_ns());
                    // A jump in the timestamps (closed up: no clock wait): the
                    // partial frame goes out first, timed as the audio before it
                    // rather than as this buffer.
                    let (sample, at) = state.anchor;
                    let produced = state.framer.produced();
                    let expected =
                        at as i64 + (produced as i64 - sample as i64) * NS_PER_SAMPLE as i64;
                    if state.framer.pending_bytes() > 0 && (time as i64 - expected).abs() > JUMP_NS
                    {
                        state.send_frames(Take::All)?;
                    }
                    state.anchor = (state.framer.produced(), time);
                }
                let pushed = match state.framer.push(&map) {
                    Ok(pushed) => pushed,
                    Err(NotNegotiated::Mismatch(input, call)) => {
                        drop(state);
                        return Err(self.mismatch(input, call));
                    }
                    Err(NotNegotiated::NoInput) => return Err(gst::FlowError::NotNegotiated),
                };
                if pushed.split_sample {
                    self.split_sample(&state, map.len());
                }
                if let Some(ticks) = pushed.short_packet {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "Opus packets of {} ms: Telnyx takes media of 20 ms or more \
                         (opusenc frame-size=20); sent as they are",
                        ticks as f64 / 8.0
                    );
                }
                drop(map);
                // Faster than real time: wait here for the writer, not on the clock.
                // Never on a network thread (a shared-threads push), which the
                // writer itself may need. A long buffer goes to the writer a batch
                // at a time, each once there is room for it: all at once, it could
                // pass the writer's byte limit and be dropped.
                let on_runtime = || tokio::runtime::Handle::try_current().is_ok();
                loop {
                    let before = state.framer.pending_bytes();
                    state.send_frames(Take::AtMost(BATCH_FRAMES))?;
                    let call = state.call.clone();
                    // (Only when frames went: a sink without its call's streamSid
                    // sends nothing, and must not spin.)
                    let mut more =
                        state.framer.pending_bytes() < before && state.framer.whole_frame_pending();
                    if more && on_runtime() {
                        state.send_frames(Take::WholeFrames)?;
                        more = false;
                    }
                    drop(state);
                    if let Some(call) = call
                        && call.queued_audio() > MAX_QUEUED
                        && !on_runtime()
                    {
                        // A pause suspends the wait until PLAYING; a flush or a
                        // stop ends it (`preroll.rs`).
                        self.wait_under_preroll_lock(call.room(MAX_QUEUED))?;
                    }
                    if !more {
                        return Ok(gst::FlowSuccess::Ok);
                    }
                    state = self.state.locked();
                    if state.flushing {
                        return Err(gst::FlowError::Flushing);
                    }
                }
            },
        )
    }

    fn event(&self, event: gst::Event) -> bool {
        self.stopping_on_panic(
            || false,
            || {
                // (A GAP prerolls as a buffer does.)
                self.state.locked().note_feeder();
                let name = event.structure().map(|s| s.name().to_string());
                match event.view() {
                    gst::EventView::CustomDownstream(_) | gst::EventView::CustomBoth(_)
                        if name.as_deref() == Some(MARK_EVENT) =>
                    {
                        match event.structure().and_then(|s| s.get::<String>("name").ok()) {
                            Some(mark) => {
                                // Serialized: all audio before it was rendered.
                                if self.ensure_call() == Ok(true) {
                                    self.send_mark(&mark);
                                }
                            }
                            None => self.mark_event_ignored("it has no string field 'name'"),
                        }
                    }
                    gst::EventView::CustomDownstreamOob(_)
                    | gst::EventView::CustomBothOob(_)
                    | gst::EventView::CustomDownstreamSticky(_)
                        if name.as_deref() == Some(MARK_EVENT) =>
                    {
                        self.mark_event_ignored(
                            "a mark goes after the audio before it: send a serialized \
                             custom downstream event (not out-of-band, not sticky)",
                        );
                    }
                    gst::EventView::CustomDownstream(_)
                    | gst::EventView::CustomDownstreamOob(_)
                    | gst::EventView::CustomBoth(_)
                    | gst::EventView::CustomBothOob(_)
                        if name.as_deref() == Some(CLEAR_EVENT) =>
                    {
                        self.clear("event");
                    }
                    gst::EventView::FlushStart(_) => {
                        gst::debug!(CAT, imp = self, "flush: clearing");
                        self.state.locked().flushing = true;
                        self.clear("flush");
                    }
                    gst::EventView::FlushStop(_) => {
                        let mut state = self.state.locked();
                        state.flushing = false;
                        state.ended = false;
                        // After an EOS that came before any call (see `eos`), the
                        // stream starts over: a call may come for it, with a poster
                        // for its messages (the last one may have ended with a call
                        // hung up at that EOS).
                        if let (Some(registration), Some(slot)) = (&state.registration, &state.slot)
                        {
                            let slot = slot.clone();
                            registration.reopen(&slot);
                            if state.poster.as_ref().is_none_or(|p| p.is_finished()) {
                                state.poster = Some(super::poster::spawn(&self.obj(), slot));
                            }
                        }
                        drop(state);
                        // What was on its way for a call over is gone: the
                        // next call may be followed (`pairing.rs`).
                        self.stream_started();
                    }
                    gst::EventView::StreamStart(_) => self.stream_started(),
                    gst::EventView::Segment(e) => {
                        if let Ok(segment) = e.segment().clone().downcast::<gst::ClockTime>() {
                            self.state.locked().segment = segment;
                        }
                    }
                    gst::EventView::Eos(_) if !self.eos(&event) => return false,
                    _ => {}
                }
                let flush = matches!(
                    event.view(),
                    gst::EventView::FlushStart(_) | gst::EventView::FlushStop(_)
                );
                let eos = event.type_() == gst::EventType::Eos;
                let taken = self.not_async_if(flush && self.is_held(), || self.parent_event(event));
                if eos && taken {
                    self.ended();
                }
                taken
            },
        )
    }

    // No unlock()/unlock_stop(): the sink's waits under the preroll lock
    // (a mark's, EOS's, render's for room in the writer) release it and
    // look at BaseSink's `flushing` as they go (`preroll.rs`).
}
