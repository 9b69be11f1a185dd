//! The source element: a live PushSrc fed by one call.
//!
//! Timing: the first chunk's first sample is anchored at the running time the
//! chunk arrived, minus its duration (when it started being spoken). Every
//! later sample is placed by Twilio's `media.timestamp`, so buffers are
//! contiguous and drift-free against Twilio's clock; a jump in the timestamp
//! (or a skipped chunk number) is filled with silence and flagged DISCONT.
//! On the 16 kHz path the output is also shifted by the upsampler's delay, so
//! timestamps stay true to when the caller spoke.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use crate::call::{
    self, Call, CallEvent, DtmfDigit, Events, MediaChunk, SRC_COUNTERS, Slot, Stat, Stats,
    counter_pspecs, find_counter,
};
use crate::codec::{Upsampler, g711};
use crate::endpoint::Endpoint;
use crate::messages;
use crate::protocol::{StartInfo, StopInfo};
use crate::runtime::RUNTIME;
use crate::server::Registration;
use crate::wait::{Canceller, wait};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "twiliostreamsrc",
        gst::DebugColorFlags::empty(),
        Some("Twilio Media Streams source"),
    )
});

/// Twilio's customary chunk: the latency a live source of it has at least.
const CHUNK_DURATION: gst::ClockTime = gst::ClockTime::from_mseconds(20);
/// Nanoseconds per 8 kHz sample.
const NS_PER_SAMPLE: u64 = 125_000;
/// Timestamp deviations below this (in 8 kHz samples) are rounding, not gaps.
const GAP_TOLERANCE: u64 = 80;
/// Longest gap filled with silence (5 s); longer ones make the timestamps jump.
const MAX_SILENCE: u64 = 5 * 8000;
/// How far `media.timestamp` may run ahead of the time that really passed
/// since the first chunk before it is taken for garbage (10 s, in samples).
const MAX_AHEAD: u64 = 10 * 8000;
/// With `shared-threads`, a push that blocks this long (a chunk) means
/// downstream waits: the src warns and hands pushing to its streaming thread.
const SHARED_BLOCK_LIMIT: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Default)]
struct Settings {
    endpoint: Endpoint,
    call_name: Option<String>,
    /// Extra latency allowed for network jitter.
    latency_ms: u32,
    /// Push from the call's network task instead of a streaming thread.
    shared_threads: bool,
}

/// What the src pad carries, from the negotiated caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Pcm16k,
    Pcm8k,
    Mulaw,
}

impl Output {
    fn from_caps(caps: &gst::CapsRef) -> Option<Output> {
        let s = caps.structure(0)?;
        match (s.name().as_str(), s.get::<i32>("rate").ok()?) {
            ("audio/x-raw", 16000) => Some(Output::Pcm16k),
            ("audio/x-raw", 8000) => Some(Output::Pcm8k),
            ("audio/x-mulaw", 8000) => Some(Output::Mulaw),
            _ => None,
        }
    }

    /// Output samples per 8 kHz input sample.
    fn factor(self) -> u64 {
        match self {
            Output::Pcm16k => 2,
            Output::Pcm8k | Output::Mulaw => 1,
        }
    }

    fn bytes_per_input_sample(self) -> usize {
        match self {
            Output::Pcm16k => 4,
            Output::Pcm8k => 2,
            Output::Mulaw => 1,
        }
    }

    /// Signal delay added by the element.
    fn delay(self) -> gst::ClockTime {
        match self {
            Output::Pcm16k => gst::ClockTime::from_nseconds(Upsampler::delay_ns()),
            Output::Pcm8k | Output::Mulaw => gst::ClockTime::ZERO,
        }
    }

    fn latency(self) -> gst::ClockTime {
        CHUNK_DURATION + self.delay()
    }
}

/// Where the stream is in time.
#[derive(Debug)]
struct Timing {
    /// Running time of stream position 0 (before the output delay).
    anchor: gst::ClockTime,
    /// `media.timestamp` that position 0 stands for.
    first_ts_ms: u64,
    /// When the first chunk arrived.
    first_arrival: Instant,
    /// Twilio streams both tracks: chunk numbers may count both, so only
    /// timestamps tell gaps.
    ignore_chunk_numbers: bool,
    /// 8 kHz samples output so far, silence included.
    position: u64,
    /// The chunk number expected next, if Twilio numbers them.
    next_chunk: Option<u64>,
}

#[derive(Default)]
struct State {
    registration: Option<Registration>,
    bound_port: u32,
    /// The call being (or last) consumed; kept after stop for the counters.
    call: Option<Arc<Call>>,
    events: Option<Events>,
    start: Option<Arc<StartInfo>>,
    output: Option<Output>,
    upsampler: Upsampler,
    timing: Option<Timing>,
    /// The call ended: after the resampler tail, EOS.
    finished: bool,
    /// Serialized events to push once the segment is out.
    pending_events: Vec<gst::Event>,
    decoded: Vec<i16>,
    upsampled: Vec<i16>,
}

pub struct TwilioStreamSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    canceller: Mutex<Canceller>,
    /// Where calls are delivered: our own slot, or the named one while
    /// `call-name` is set (so sinks anywhere in the process can pair).
    slot: Mutex<Arc<Slot>>,
    shared: Shared,
}

impl Default for TwilioStreamSrc {
    fn default() -> Self {
        TwilioStreamSrc {
            settings: Default::default(),
            state: Default::default(),
            canceller: Default::default(),
            shared: Default::default(),
            slot: Mutex::new(Slot::new()),
        }
    }
}

/// Writes `samples` as S16LE into `out`, which is exactly twice as long.
fn write_s16le(samples: &[i16], out: &mut [u8]) {
    for (o, s) in out.chunks_exact_mut(2).zip(samples) {
        o.copy_from_slice(&s.to_le_bytes());
    }
}

impl TwilioStreamSrc {
    /// Where this src's calls are delivered; a paired sink waits on it too.
    pub(super) fn slot(&self) -> Arc<Slot> {
        self.slot.lock().unwrap().clone()
    }

    /// The call whose counters the properties show.
    fn stats_call(&self) -> Option<Arc<Call>> {
        self.state
            .lock()
            .unwrap()
            .call
            .clone()
            .or_else(|| self.slot().current())
    }

    fn stats_structure(&self) -> gst::Structure {
        let call = self.stats_call();
        Stats::structure(
            call.as_deref().map(|c| &c.stats),
            "twiliostreamsrc-stats",
            SRC_COUNTERS,
        )
    }

    fn post(&self, structure: gst::Structure) {
        messages::post(self.obj().upcast_ref(), structure);
    }

    /// Pushes queued serialized events, once the segment has gone out (so
    /// they keep their place among the buffers without breaking event order).
    fn push_pending_events(&self) {
        let events = {
            let mut state = self.state.lock().unwrap();
            if state.pending_events.is_empty() {
                return;
            }
            std::mem::take(&mut state.pending_events)
        };
        let pad = self.obj().src_pad().clone();
        if pad.sticky_event::<gst::event::Segment>(0).is_none() {
            self.state
                .lock()
                .unwrap()
                .pending_events
                .splice(0..0, events);
            return;
        }
        for event in events {
            gst::debug!(CAT, imp = self, "pushing {event:?}");
            pad.push_event(event);
        }
    }

    fn claim(&self, call: Arc<Call>) -> Result<(), gst::FlowError> {
        gst::info!(CAT, imp = self, "{call:?}: taking the call");
        call.log_to(*CAT, self.obj().upcast_ref());
        let Some(events) = call.take_events() else {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Read,
                ["{call:?} is consumed by another element"]
            );
            return Err(gst::FlowError::Error);
        };
        if self.settings.lock().unwrap().shared_threads {
            let src = self.obj().downgrade();
            call.set_consumer(Some(Arc::new(move || {
                if let Some(src) = src.upgrade() {
                    src.imp().drain_shared();
                }
            })));
        }
        {
            let mut state = self.state.lock().unwrap();
            state.events = Some(events);
            state.call = Some(call);
        }
        self.obj().notify("connected");
        Ok(())
    }

    fn handle_start(&self, start: Arc<StartInfo>) {
        let message = messages::start(&start);
        self.state.lock().unwrap().start = Some(start);
        // Sticky: stored on the pad, it goes out in order with the stream's
        // other sticky events, before the next buffer (or now, if flowing).
        let event = gst::event::CustomDownstreamSticky::new(message.clone());
        let pad = self.obj().src_pad().clone();
        if pad.sticky_event::<gst::event::Segment>(0).is_some() {
            pad.push_event(event);
        } else if pad.store_sticky_event(&event).is_err() {
            gst::warning!(CAT, imp = self, "could not store the twilio-start event");
        }
        for name in ["call-sid", "stream-sid", "account-sid", "custom-parameters"] {
            self.obj().notify(name);
        }
        self.post(message);
    }

    fn handle_dtmf(&self, digit: DtmfDigit) {
        gst::info!(CAT, imp = self, "DTMF {:?}", digit.0);
        match messages::dtmf_events(&digit) {
            Some(events) => self.state.lock().unwrap().pending_events.extend(events),
            None => gst::warning!(CAT, imp = self, "{:?} is not a DTMF digit", digit.0),
        }
        self.post(messages::dtmf(&digit));
    }

    fn handle_end(&self, stop: Option<StopInfo>, reason: Option<String>) -> Option<gst::Buffer> {
        let start = self.state.lock().unwrap().start.clone();
        if let Some(stop) = stop {
            let sid = start.as_ref().map(|s| s.stream_sid.as_str()).unwrap_or("");
            self.post(messages::stop(&stop, sid, self.stats_structure()));
        }
        if let Some(reason) = reason {
            gst::element_imp_warning!(self, gst::ResourceError::Read, ["{}", reason]);
        }
        let mut state = self.state.lock().unwrap();
        state.finished = true;
        self.drain(&mut state)
    }

    /// The audio still inside the upsampler, pushed out with silence.
    fn drain(&self, state: &mut State) -> Option<gst::Buffer> {
        if state.output != Some(Output::Pcm16k) || state.timing.is_none() {
            return None;
        }
        let silence = (Upsampler::DELAY as u64).div_ceil(2);
        let zeros = vec![g711::SILENCE; silence as usize];
        self.make_buffer(state, &zeros, 0, false).ok()
    }

    /// Places a chunk in time: returns the silence to insert before it and
    /// whether the stream is discontinuous there.
    fn place(&self, state: &mut State, chunk: &MediaChunk) -> (u64, bool) {
        let output = state.output.expect("checked by the caller");
        let Some(t) = state.timing.as_mut() else {
            let obj = self.obj();
            let now = match (obj.clock(), obj.base_time()) {
                (Some(clock), Some(base)) => clock.time().saturating_sub(base),
                _ => gst::ClockTime::ZERO,
            };
            let waited = gst::ClockTime::from_nseconds(
                Instant::now()
                    .saturating_duration_since(chunk.arrival)
                    .as_nanos() as u64,
            );
            let spoken = gst::ClockTime::from_nseconds(chunk.ulaw.len() as u64 * NS_PER_SAMPLE);
            let anchor = now
                .saturating_sub(waited)
                .saturating_sub(spoken)
                .max(output.delay());
            gst::debug!(
                CAT,
                imp = self,
                "first chunk (timestamp {} ms) anchored at {anchor}",
                chunk.timestamp_ms
            );
            let ignore_chunk_numbers = state
                .start
                .as_ref()
                .is_some_and(|s| s.tracks.iter().any(|t| t == "outbound"));
            state.timing = Some(Timing {
                anchor,
                first_ts_ms: chunk.timestamp_ms,
                first_arrival: chunk.arrival,
                ignore_chunk_numbers,
                position: 0,
                next_chunk: chunk.chunk.map(|c| c.saturating_add(1)),
            });
            return (0, false);
        };

        let mut due = chunk
            .timestamp_ms
            .saturating_sub(t.first_ts_ms)
            .saturating_mul(8);
        let elapsed = chunk.arrival.saturating_duration_since(t.first_arrival);
        let possible = (elapsed.as_millis() as u64).saturating_mul(8) + MAX_AHEAD;
        if due > possible {
            // A timestamp far beyond the time that passed: keep the audio
            // contiguous and measure later chunks from this one.
            gst::warning!(
                CAT,
                imp = self,
                "chunk {:?} claims timestamp {} ms, {} s after the first one, {:.1} s in: ignoring it",
                chunk.chunk,
                chunk.timestamp_ms,
                due / 8000,
                elapsed.as_secs_f64()
            );
            if let Some(call) = &state.call {
                call.stats.add(Stat::InvalidMessages, 1);
            }
            t.first_ts_ms = chunk.timestamp_ms.saturating_sub(t.position / 8);
            due = t.position;
        }
        let gap = due.saturating_sub(t.position);
        let skipped = match (chunk.chunk, t.next_chunk) {
            (Some(got), Some(expected)) if got > expected && !t.ignore_chunk_numbers => {
                got - expected
            }
            _ => 0,
        };
        t.next_chunk = chunk.chunk.map(|c| c.saturating_add(1));
        if due + GAP_TOLERANCE < t.position {
            gst::debug!(
                CAT,
                imp = self,
                "chunk {:?} (timestamp {} ms) overlaps what was played, keeping it contiguous",
                chunk.chunk,
                chunk.timestamp_ms
            );
        }
        if gap <= GAP_TOLERANCE && skipped == 0 {
            return (0, false);
        }
        let len = chunk.ulaw.len().max(1) as u64;
        let lost = skipped.max(gap.saturating_add(len / 2) / len).max(1);
        if let Some(call) = &state.call {
            call.stats.add(Stat::ChunksLost, lost);
        }
        gst::warning!(
            CAT,
            imp = self,
            "gap of {} ms before chunk {:?} (timestamp {} ms): {lost} chunk(s) lost",
            gap / 8,
            chunk.chunk,
            chunk.timestamp_ms
        );
        if gap <= GAP_TOLERANCE {
            (0, true)
        } else if gap > MAX_SILENCE {
            // Too long to fill: let the timestamps jump instead.
            t.position += gap;
            (0, true)
        } else {
            (gap, true)
        }
    }

    /// A buffer of `silence` 8 kHz samples of silence followed by `ulaw`, in
    /// the output format, at the current position.
    fn make_buffer(
        &self,
        state: &mut State,
        ulaw: &[u8],
        silence: u64,
        discont: bool,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let output = state.output.ok_or(gst::FlowError::NotNegotiated)?;
        let timing = state.timing.as_ref().expect("placed before");
        let samples = silence + ulaw.len() as u64;
        let pts = timing
            .anchor
            .saturating_add(gst::ClockTime::from_nseconds(
                timing.position.saturating_mul(NS_PER_SAMPLE),
            ))
            .saturating_sub(output.delay());
        let duration = gst::ClockTime::from_nseconds(samples * NS_PER_SAMPLE);
        let offset = timing.position * output.factor();

        let silence = silence as usize;
        let mut buffer = gst::Buffer::with_size(samples as usize * output.bytes_per_input_sample())
            .map_err(|_| gst::FlowError::Error)?;
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(pts);
            buffer.set_duration(duration);
            buffer.set_offset(offset);
            buffer.set_offset_end(offset + samples * output.factor());
            if discont {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
            let mut map = buffer.map_writable().map_err(|_| gst::FlowError::Error)?;
            let data = map.as_mut_slice();
            if output == Output::Mulaw {
                data[..silence].fill(g711::SILENCE);
                data[silence..].copy_from_slice(ulaw);
            } else {
                let State {
                    decoded,
                    upsampled,
                    upsampler,
                    ..
                } = state;
                decoded.clear();
                decoded.resize(samples as usize, 0);
                g711::decode_slice(ulaw, &mut decoded[silence..]);
                if output == Output::Pcm8k {
                    write_s16le(decoded, data);
                } else {
                    upsampled.resize(2 * decoded.len(), 0);
                    upsampler.process(decoded, upsampled);
                    write_s16le(upsampled, data);
                }
            }
        }
        state.timing.as_mut().unwrap().position += samples;
        Ok(buffer)
    }

    fn handle_media(&self, chunk: MediaChunk) -> Result<Option<gst::Buffer>, gst::FlowError> {
        if chunk.ulaw.is_empty() {
            return Ok(None);
        }
        let mut state = self.state.lock().unwrap();
        if state.output.is_none() {
            drop(state);
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["No caps negotiated"]);
            return Err(gst::FlowError::NotNegotiated);
        }
        let (silence, discont) = self.place(&mut state, &chunk);
        let buffer = self.make_buffer(&mut state, &chunk.ulaw, silence, discont);
        if let Some(events) = &state.events {
            events.recycle(chunk.ulaw);
        }
        buffer.map(Some)
    }

    /// Turns one event of the call into what goes downstream.
    fn process(&self, event: Option<CallEvent>) -> Result<Step, gst::FlowError> {
        gst::trace!(CAT, imp = self, "{event:?}");
        let tail = match event {
            Some(CallEvent::Media(chunk)) => {
                return Ok(self.handle_media(chunk)?.map_or(Step::Next, Step::Buffer));
            }
            Some(CallEvent::Start(start)) => {
                self.handle_start(start);
                return Ok(Step::Next);
            }
            Some(CallEvent::Dtmf(digit)) => {
                self.handle_dtmf(digit);
                return Ok(Step::Next);
            }
            Some(CallEvent::Mark(name)) => {
                gst::debug!(CAT, imp = self, "mark {name:?} played");
                self.post(messages::mark(&name));
                return Ok(Step::Next);
            }
            Some(CallEvent::Stop(stop)) => {
                gst::info!(CAT, imp = self, "stop: end of stream");
                self.handle_end(Some(stop), None)
            }
            Some(CallEvent::Closed(reason)) => self.handle_end(None, Some(reason)),
            None => self.handle_end(None, Some("the call ended".to_owned())),
        };
        Ok(Step::End(tail))
    }

    /// With `shared-threads`: pushes whatever the call queued, on the
    /// calling thread (the call's task, or a task of its own). One
    /// drain runs at a time; a request during it makes it go round again.
    fn drain_shared(&self) {
        // Not (or no longer) this run's way of pushing: a drain spawned in an
        // earlier run may come late.
        if !self.shared.enabled.load(Ordering::SeqCst)
            || self.shared.fallback.load(Ordering::SeqCst)
        {
            return;
        }
        self.shared.requested.store(true, Ordering::SeqCst);
        while !self.shared.draining.swap(true, Ordering::SeqCst) {
            while self.shared.requested.swap(false, Ordering::SeqCst) {
                self.drain_once();
            }
            self.shared.draining.store(false, Ordering::SeqCst);
            if self.shared.fallback.load(Ordering::SeqCst) {
                // No drain runs any more: the streaming thread takes over.
                self.shared.fallen_back.notify_one();
                return;
            }
            if !self.shared.requested.load(Ordering::SeqCst) {
                break;
            }
        }
    }

    /// [`Self::drain_shared`] on a network thread.
    fn drain_shared_soon(&self) {
        let src = self.obj().downgrade();
        RUNTIME.spawn(async move {
            if let Some(src) = src.upgrade() {
                src.imp().drain_shared();
            }
        });
    }

    fn drain_once(&self) {
        let pad = self.obj().src_pad().clone();
        while self.shared.flowing.load(Ordering::SeqCst)
            && !self.shared.fallback.load(Ordering::SeqCst)
        {
            let event = {
                let mut state = self.state.lock().unwrap();
                if state.finished {
                    return;
                }
                let Some(events) = state.events.as_mut() else {
                    return;
                };
                match events.try_recv() {
                    Poll::Ready(event) => event,
                    Poll::Pending => return,
                }
            };
            // The streaming thread would push the segment with the first
            // buffer; here it goes out before anything else of ours. It is
            // BaseSrc's own: a live source's time segment from 0 (reading
            // that one would take the stream lock the waiting thread holds).
            if pad.sticky_event::<gst::event::Segment>(0).is_none() {
                let segment = gst::FormattedSegment::<gst::ClockTime>::new();
                pad.push_event(gst::event::Segment::new(&segment));
            }
            let step = self.process(event);
            self.push_pending_events();
            let result = match step {
                Ok(Step::Next) => Ok(gst::FlowSuccess::Ok),
                Ok(Step::Buffer(buffer)) => self.push_shared(&pad, buffer),
                Ok(Step::End(tail)) => {
                    let result =
                        tail.map_or(Ok(gst::FlowSuccess::Ok), |b| self.push_shared(&pad, b));
                    if result.is_ok() {
                        pad.push_event(gst::event::Eos::new());
                    }
                    result
                }
                Err(flow) => Err(flow),
            };
            if let Err(flow) = result {
                self.shared_flow_error(&pad, flow);
                return;
            }
        }
    }

    /// Pushes `buffer`. If downstream held the thread for a chunk or more
    /// (every call on that network thread waited as long), warns and falls
    /// back to the streaming thread for the rest of the run.
    fn push_shared(
        &self,
        pad: &gst::Pad,
        mut buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.shared.discont.swap(false, Ordering::Relaxed) {
            buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
        }
        let pauses = self.shared.pauses.load(Ordering::SeqCst);
        let started = Instant::now();
        let result = pad.push(buffer);
        let took = started.elapsed();
        // A push held up by a pause (the sink waits for PLAYING) or ended by
        // a flush says nothing about downstream in PLAYING.
        let waited = took >= SHARED_BLOCK_LIMIT
            && result.is_ok()
            && pauses == self.shared.pauses.load(Ordering::SeqCst);
        if waited && !self.shared.fallback.swap(true, Ordering::SeqCst) {
            gst::element_imp_warning!(
                self,
                gst::CoreError::Clock,
                ("Downstream blocked a shared network thread"),
                [
                    "a push took {} ms; with shared-threads=true nothing downstream may wait \
                     (use sync=false, or a leaky queue). Pushing from this element's \
                     streaming thread from now on.",
                    took.as_millis()
                ]
            );
        }
        result
    }

    /// What the streaming thread would do when a push fails.
    fn shared_flow_error(&self, pad: &gst::Pad, flow: gst::FlowError) {
        if flow == gst::FlowError::Flushing {
            gst::debug!(CAT, imp = self, "flushing: not pushing");
            return;
        }
        gst::info!(CAT, imp = self, "stopping: {flow:?}");
        self.state.lock().unwrap().finished = true;
        if flow != gst::FlowError::Eos {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Internal data stream error."),
                ["streaming stopped, reason {flow:?}"]
            );
        }
        pad.push_event(gst::event::Eos::new());
    }
}

/// What one event of the call turned into.
enum Step {
    Next,
    Buffer(gst::Buffer),
    /// The call ended: its last audio (the resampler's tail), then EOS.
    End(Option<gst::Buffer>),
}

/// How a `shared-threads` src hands the call's task its pushes.
#[derive(Default)]
struct Shared {
    /// PLAYING: buffers may go out.
    flowing: AtomicBool,
    draining: AtomicBool,
    requested: AtomicBool,
    /// Downstream blocked a push: the streaming thread pushes from now on
    /// (until the element starts again).
    fallback: AtomicBool,
    /// Wakes the streaming thread once no drain runs after `fallback`.
    fallen_back: tokio::sync::Notify,
    /// This run pushes from the network threads (`shared-threads` at start).
    enabled: AtomicBool,
    /// PLAYING → PAUSED transitions so far.
    pauses: AtomicU64,
    /// The next buffer is the first since start: DISCONT, as BaseSrc marks it.
    discont: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for TwilioStreamSrc {
    const NAME: &'static str = "GstTwilioStreamSrc";
    type Type = super::TwilioStreamSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for TwilioStreamSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> =
            LazyLock::new(|| {
                let mut props = Endpoint::pspecs("");
                props.extend([
                glib::ParamSpecString::builder("call-name")
                    .nick("Call name")
                    .blurb(
                        "Pairs this src with the twiliostreamsink(s) of the same call-name, \
                            in any pipeline of the process. Without it, a sink pairs with the \
                            src of its own pipeline",
                    )
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb("Extra latency in ms reported on top of one chunk, so that chunks \
                            delayed by network jitter are still on time for a syncing sink")
                    .maximum(10_000)
                    .default_value(0)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("shared-threads")
                    .nick("Shared threads")
                    .blurb("Push the call's audio from the plugin's few network threads instead \
                            of a streaming thread of this element: far less CPU per call with \
                            hundreds of calls, but then nothing downstream may wait (no \
                            sync=true sink, no full queue), or every call on that thread waits; \
                            a push that waits 20 ms posts a warning and hands pushing back to \
                            the streaming thread")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("bound-port")
                    .nick("Bound port")
                    .blurb(
                        "The port actually listened on (useful with port=0), 0 when not listening",
                    )
                    .maximum(u16::MAX as u32)
                    .read_only()
                    .build(),
                glib::ParamSpecBoolean::builder("connected")
                    .nick("Connected")
                    .blurb("Whether a call is connected to this element")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("call-sid")
                    .nick("Call SID")
                    .blurb("callSid of the current call, from its start message")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("stream-sid")
                    .nick("Stream SID")
                    .blurb("streamSid of the current call, from its start message")
                    .read_only()
                    .build(),
                glib::ParamSpecString::builder("account-sid")
                    .nick("Account SID")
                    .blurb("accountSid of the current call, from its start message")
                    .read_only()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("custom-parameters")
                    .nick("Custom parameters")
                    .blurb("The <Parameter> values of the TwiML <Stream>, as string fields")
                    .read_only()
                    .build(),
            ]);
                props.extend(counter_pspecs(SRC_COUNTERS));
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

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.lock().unwrap();
        if settings.endpoint.set_property(pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "latency" => {
                settings.latency_ms = value.get().unwrap();
                drop(settings);
                let obj = self.obj();
                let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
            }
            "shared-threads" => settings.shared_threads = value.get().unwrap(),
            "call-name" => {
                settings.call_name = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|n| !n.is_empty());
                *self.slot.lock().unwrap() = match &settings.call_name {
                    Some(name) => call::named_slot(name),
                    None => Slot::new(),
                };
            }
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
        let sid = |f: fn(&StartInfo) -> &String| {
            self.state
                .lock()
                .unwrap()
                .start
                .as_deref()
                .map(|s| f(s).clone())
                .to_value()
        };
        match pspec.name() {
            "signature-failures" => self
                .state
                .lock()
                .unwrap()
                .registration
                .as_ref()
                .map_or(0, |r| r.signature_failures())
                .to_value(),
            "bound-port" => self.state.lock().unwrap().bound_port.to_value(),
            "connected" => self
                .slot()
                .current()
                .is_some_and(|c| c.is_open())
                .to_value(),
            "call-name" => self.settings.lock().unwrap().call_name.to_value(),
            "latency" => self.settings.lock().unwrap().latency_ms.to_value(),
            "shared-threads" => self.settings.lock().unwrap().shared_threads.to_value(),
            "call-sid" => sid(|s| &s.call_sid),
            "stream-sid" => sid(|s| &s.stream_sid),
            "account-sid" => sid(|s| &s.account_sid),
            "custom-parameters" => self
                .state
                .lock()
                .unwrap()
                .start
                .as_deref()
                .map(messages::custom_parameters)
                .to_value(),
            "stats" => self.stats_structure().to_value(),
            name => {
                let stat = find_counter(SRC_COUNTERS, name)
                    .unwrap_or_else(|| unimplemented!("property {name}"));
                self.stats_call()
                    .map_or(0, |c| c.stats.get(stat))
                    .to_value()
            }
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.set_live(true);
        obj.set_format(gst::Format::Time);
        obj.set_do_timestamp(false);
    }
}

impl GstObjectImpl for TwilioStreamSrc {}

impl ElementImpl for TwilioStreamSrc {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Twilio Media Streams source",
                "Source/Audio/Network",
                "Serves the WebSocket a Twilio Media Stream dials and outputs the caller's audio",
                "twiliostream developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let pcm = |rate: i32| {
                gst_audio::AudioCapsBuilder::new_interleaved()
                    .format(gst_audio::AudioFormat::S16le)
                    .rate(rate)
                    .channels(1)
                    .build()
            };
            let mut caps = pcm(16000);
            {
                let caps = caps.get_mut().unwrap();
                caps.append(pcm(8000));
                caps.append(crate::mulaw_caps());
            }
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PlayingToPaused {
            self.shared.pauses.fetch_add(1, Ordering::SeqCst);
            self.shared.flowing.store(false, Ordering::SeqCst);
        }
        let success = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToPlaying {
            self.shared.flowing.store(true, Ordering::SeqCst);
            // What the call queued while paused goes out now, from a
            // network thread like the rest.
            let claimed = self.state.lock().unwrap().events.is_some();
            if claimed && self.settings.lock().unwrap().shared_threads {
                self.drain_shared_soon();
            }
        }
        Ok(success)
    }
}

impl BaseSrcImpl for TwilioStreamSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        *self.state.lock().unwrap() = State::default();
        self.shared.fallback.store(false, Ordering::SeqCst);
        self.shared
            .enabled
            .store(settings.shared_threads, Ordering::SeqCst);
        self.shared.discont.store(true, Ordering::Relaxed);
        // A call left from an earlier run must not be taken for a new one.
        let slot = self.slot();
        if let Some(call) = slot.take() {
            call.close();
        }
        let registration = settings.endpoint.register(slot)?;
        let addr = registration.local_addr();
        gst::info!(
            CAT,
            imp = self,
            "listening on ws://{addr}{} for Twilio",
            settings.endpoint.path
        );
        {
            let mut state = self.state.lock().unwrap();
            state.bound_port = addr.port() as u32;
            state.registration = Some(registration);
        }
        self.obj().notify("bound-port");
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        let (registration, events) = {
            let mut state = self.state.lock().unwrap();
            state.bound_port = 0;
            if let Some(call) = &state.call {
                call.set_consumer(None);
            }
            self.shared.enabled.store(false, Ordering::SeqCst);
            (state.registration.take(), state.events.take())
        };
        // Stop taking calls first, then hang up the one we have.
        drop(registration);
        drop(events);
        if let Some(call) = self.slot().take() {
            gst::info!(CAT, imp = self, "{call:?}: closing");
            call.close();
        }
        self.obj().notify("bound-port");
        self.obj().notify("connected");
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let output = Output::from_caps(caps)
            .ok_or_else(|| gst::loggable_error!(CAT, "unsupported caps {caps}"))?;
        gst::debug!(CAT, imp = self, "output {output:?} for caps {caps}");
        let changed = {
            let mut state = self.state.lock().unwrap();
            let changed = state.output != Some(output);
            state.output = Some(output);
            state.upsampler.reset();
            changed
        };
        if changed {
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
        }
        Ok(())
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                let output = self.state.lock().unwrap().output.unwrap_or(Output::Pcm16k);
                let extra = self.settings.lock().unwrap().latency_ms;
                let latency = output.latency() + gst::ClockTime::from_mseconds(extra as u64);
                gst::debug!(CAT, imp = self, "latency {latency}");
                q.set(true, latency, gst::ClockTime::NONE);
                true
            }
            _ => BaseSrcImplExt::parent_query(self, query),
        }
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

impl PushSrcImpl for TwilioStreamSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        loop {
            self.push_pending_events();
            let mut state = self.state.lock().unwrap();
            if state.finished {
                return Err(gst::FlowError::Eos);
            }
            let Some(mut events) = state.events.take() else {
                drop(state);
                gst::debug!(CAT, imp = self, "waiting for a call");
                let slot = self.slot();
                let call =
                    wait(&self.canceller, slot.wait()).map_err(|_| gst::FlowError::Flushing)?;
                self.claim(call)?;
                continue;
            };
            if self.settings.lock().unwrap().shared_threads
                && !self.shared.fallback.load(Ordering::SeqCst)
            {
                // The call's task pushes from now on; this thread only waits
                // for the element to stop, or for downstream to block a push.
                state.events = Some(events);
                drop(state);
                // What came before this call was claimed: from a network
                // thread too, so that every push before a fallback is.
                self.drain_shared_soon();
                while !self.shared.fallback.load(Ordering::SeqCst) {
                    wait(&self.canceller, self.shared.fallen_back.notified())
                        .map_err(|_| gst::FlowError::Flushing)?;
                }
                gst::info!(CAT, imp = self, "downstream blocked: pushing from here");
                // BaseSrc flags this thread's first buffer DISCONT, though the
                // stream goes on without a gap.
                continue;
            }
            drop(state);
            if self.shared.fallback.load(Ordering::SeqCst) {
                // A drain that began before the fallback pushes nothing more,
                // but may still be finishing the push that blocked.
                while self.shared.draining.load(Ordering::SeqCst) {
                    if wait(&self.canceller, self.shared.fallen_back.notified()).is_err() {
                        self.state.lock().unwrap().events = Some(events);
                        return Err(gst::FlowError::Flushing);
                    }
                }
            }

            let event = wait(&self.canceller, events.recv());
            self.state.lock().unwrap().events = Some(events);
            let Ok(event) = event else {
                return Err(gst::FlowError::Flushing);
            };
            match self.process(event)? {
                Step::Next => continue,
                Step::Buffer(buffer) | Step::End(Some(buffer)) => {
                    return Ok(CreateSuccess::NewBuffer(buffer));
                }
                Step::End(None) => return Err(gst::FlowError::Eos),
            }
        }
    }
}
