//! The source element's glue: a live PushSrc fed by one call. Its state,
//! caps, latency, state changes, the call's events turned into buffers,
//! events and messages, and `create`. The sibling files (ARCHITECTURE.md)
//! implement the rest of [`TwilioStreamSrc`], hence the `pub(super)` items.

use std::sync::{Arc, LazyLock, Mutex};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::app_eos::AppEos;
use super::convert::{Converter, StereoConverter};
use super::flush::Flush;
use super::output::Output;
use super::properties::{self, GapFill, Settings, Tracks};
use super::quality::{Placing, meter};
use super::reorder::Reorder;
use super::shared_threads::Shared;
use super::step::{Out, Step};
use super::timeline::Timeline;
use super::timing::Resume;
use super::tracks::Aligner;
use crate::call::{Call, CallEvent, Events, HotPart, MediaChunk, Slot};
use crate::codec::WireFormat;
use crate::contain::Containing as _;
use crate::lock::Locked;
use crate::messages;
use crate::protocol::{StartInfo, StopInfo};
use crate::quality::Meter;
use crate::server::Registration;
use crate::wait::Canceller;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "twiliostreamsrc",
        gst::DebugColorFlags::empty(),
        Some("Twilio Media Streams source"),
    )
});

#[derive(Default)]
pub(super) struct State {
    pub(super) registration: Option<Registration>,
    pub(super) bound_port: u32,
    /// The call being (or last) consumed; kept after stop for the counters.
    pub(super) call: Option<Arc<Call>>,
    pub(super) events: Option<Events>,
    pub(super) start: Option<Arc<StartInfo>>,
    /// The call's audio on the wire (8 kHz μ-law until its `start`).
    pub(super) format: WireFormat,
    pub(super) output: Option<Output>,
    pub(super) converter: Converter,
    /// From the first chunk on.
    pub(super) timeline: Option<Timeline>,
    /// The `track` property, as this run started with it.
    pub(super) tracks: Tracks,
    /// The tracks the stream carries (by `start`), in channel order.
    pub(super) carried: [bool; 2],
    /// One track output from a stream whose `start` named none: ticks of
    /// the other track seen before any of it (None once that is decided).
    pub(super) unseen: Option<u64>,
    /// `track=both`: the two tracks aligned, from the first chunk on.
    pub(super) aligner: Option<Box<Aligner>>,
    pub(super) stereo: Box<StereoConverter>,
    /// What fills lost audio, as this run started with it.
    pub(super) gap_fill: GapFill,
    /// The call's quality, measured on the chunks output.
    pub(super) meter: Meter,
    /// A `twilio-quality` message is due.
    pub(super) report_due: bool,
    /// The chunk being handled was dropped whole: the meter does not count it.
    pub(super) chunk_dropped: bool,
    /// What placing the chunk being handled tells the quality meter.
    pub(super) placing: Placing,
    /// The call ended: after the resampler tail, EOS.
    pub(super) finished: bool,
    /// The stream ended before the call: its messages alone (`after_eos.rs`).
    pub(super) after_eos: bool,
    /// Serialized events to push once the segment is out.
    pub(super) pending_events: Vec<gst::Event>,
    /// The last return to PLAYING (what queued before it is dropped).
    pub(super) resume: Resume,
    /// The next buffer is flagged DISCONT (the stream was anchored anew).
    pub(super) discont: bool,
    /// The `reorder-window` property, as this run started with it.
    pub(super) reorder_window: u32,
    /// The `track-wait` property (ms), as this run started with it.
    pub(super) track_wait_ms: u32,
    /// Media put back in order (Telnyx), before the timeline.
    pub(super) reorder: Reorder,
    /// `track=both`: tracks lagging past `track-wait` (`findings.rs`).
    pub(super) lateness: super::findings::Lateness,
    /// What a drain made and a sink's pause held back: pushed first next.
    pub(super) held: Vec<Out>,
}

pub struct TwilioStreamSrc {
    pub(super) settings: Mutex<Settings>,
    pub(super) state: Mutex<State>,
    pub(super) canceller: Mutex<Canceller>,
    /// Where calls are delivered: our own slot, or the named one while
    /// `call-name` is set (so sinks anywhere in the process can pair),
    /// with the name it is for.
    pub(super) slot: Mutex<(Option<String>, Arc<Slot>)>,
    pub(super) shared: Shared,
    pub(super) flush: Flush,
    /// What the drains do for BaseSrc's loop (`loop_duties.rs`).
    pub(super) duties: super::loop_duties::Duties,
    pub(super) app_eos: AppEos,
}

impl Default for TwilioStreamSrc {
    fn default() -> Self {
        TwilioStreamSrc {
            settings: Default::default(),
            state: Default::default(),
            canceller: Default::default(),
            shared: Default::default(),
            flush: Default::default(),
            duties: Default::default(),
            app_eos: Default::default(),
            slot: Mutex::new((None, Slot::new())),
        }
    }
}

impl TwilioStreamSrc {
    /// Where this src's calls are delivered; a paired sink waits on it too.
    pub(super) fn slot(&self) -> Arc<Slot> {
        self.slot.locked().1.clone()
    }

    pub(super) fn post(&self, structure: gst::Structure) {
        messages::post(self.obj().upcast_ref(), structure);
    }

    /// Pushes queued serialized events, once the segment has gone out (so
    /// they keep their place among the buffers without breaking event order).
    pub(super) fn push_pending_events(&self) {
        let events = {
            let mut state = self.state.locked();
            if state.pending_events.is_empty() {
                return;
            }
            std::mem::take(&mut state.pending_events)
        };
        let pad = self.obj().src_pad().clone();
        if pad.sticky_event::<gst::event::Segment>(0).is_none() {
            self.state.locked().pending_events.splice(0..0, events);
            return;
        }
        for event in events {
            gst::debug!(CAT, imp = self, "pushing {event:?}");
            pad.push_event(event);
        }
    }

    pub(super) fn claim(&self, call: Arc<Call>) -> Result<(), gst::FlowError> {
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
        if self.shared.enabled() {
            // (`stop` drops it: it holds the element.)
            call.set_consumer(Some(self.network_consumer()));
        }
        let pad = self.obj().src_pad().clone();
        crate::hot_objects::register(&call, self, HotPart::Src, &pad, HotPart::SrcPad);
        crate::hot_objects::register_downstream(&call, &pad);
        {
            let mut state = self.state.locked();
            state.events = Some(events);
            state.call = Some(call);
        }
        if self.shared.enabled() {
            self.spawn_fill_timer();
        }
        self.obj().notify("connected");
        Ok(())
    }

    fn handle_start(&self, start: Arc<StartInfo>) {
        let message = messages::start(&start);
        self.state.locked().start = Some(start.clone());
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
        self.check_tracks(&start);
    }

    fn handle_end(&self, stop: Option<StopInfo>, reason: Option<String>) -> Option<gst::Buffer> {
        let start = self.state.locked().start.clone();
        if let Some(stop) = stop {
            let sid = start.as_ref().map(|s| s.stream_sid.as_str()).unwrap_or("");
            self.post(messages::stop(&stop, sid, self.stats_structure()));
        }
        if let Some(reason) = reason {
            gst::element_imp_warning!(self, gst::ResourceError::Read, ("{}", reason));
        }
        let mut state = self.state.locked();
        state.finished = true;
        // Its messages are out: a paired sink's EOS may go on.
        state.events.iter().for_each(|events| events.end_handled());
        self.drain(&mut state)
    }

    /// The `end-stream` action signal.
    pub(super) fn end_stream(&self, after_playout: bool) -> bool {
        let call = self.state.locked().call.clone();
        let Some(call) = call else {
            gst::info!(CAT, imp = self, "end-stream: no call to end");
            return false;
        };
        call.end_stream(after_playout)
    }

    /// Turns one event of the call into what goes downstream.
    pub(super) fn process(&self, event: Option<CallEvent>) -> Result<Step, gst::FlowError> {
        gst::trace!(CAT, imp = self, "{event:?}");
        match event {
            Some(CallEvent::Media(chunk)) => self.process_media(chunk),
            event => self.process_other(event),
        }
    }

    /// A media chunk: what the reorder window lets out with it.
    fn process_media(&self, chunk: MediaChunk) -> Result<Step, gst::FlowError> {
        let mut buffers = self.released_media()?;
        buffers.extend(self.reorder_media(chunk)?);
        self.post_due_report();
        Ok(Step::Buffers(buffers))
    }

    /// [`process`](Self::process) for all but media, out of line: the
    /// media path stays short.
    #[inline(never)]
    fn process_other(&self, event: Option<CallEvent>) -> Result<Step, gst::FlowError> {
        let event = match event {
            Some(CallEvent::Media(chunk)) => return self.process_media(chunk),
            event => event,
        };
        if matches!(
            event,
            None | Some(CallEvent::Stop(_) | CallEvent::Closed(_) | CallEvent::Ended(_))
        ) {
            // What the reorder window holds goes out before the end.
            self.state.locked().reorder.flush();
        }
        let mut buffers = self.released_media()?;
        let tail = match event {
            // Taken by `process_media` above.
            Some(CallEvent::Media(_)) => return Ok(Step::Buffers(buffers)),
            Some(CallEvent::Start(start)) => {
                self.handle_start(start);
                self.follow_call_format()?;
                return Ok(Step::Next);
            }
            Some(e @ (CallEvent::Dtmf(_) | CallEvent::Mark(_) | CallEvent::ProviderError(_))) => {
                self.handle_notice(e);
                return Ok(Step::Next);
            }
            Some(CallEvent::Stop(stop)) => {
                gst::info!(CAT, imp = self, "stop: end of stream");
                self.handle_end(Some(stop), None)
            }
            Some(CallEvent::Closed(reason)) => self.handle_end(None, Some(reason)),
            Some(CallEvent::Ended(why)) => {
                gst::info!(CAT, imp = self, "stream ended by us ({why}): end of stream");
                let sid = self
                    .state
                    .locked()
                    .start
                    .as_ref()
                    .map(|s| s.stream_sid.clone());
                self.post(messages::ended(
                    &why,
                    sid.as_deref().unwrap_or(""),
                    self.stats_structure(),
                ));
                self.handle_end(None, None)
            }
            None => self.handle_end(None, Some("the call ended".to_owned())),
        };
        buffers.extend(tail);
        Ok(Step::End(buffers))
    }
}

#[glib::object_subclass]
impl ObjectSubclass for TwilioStreamSrc {
    const NAME: &'static str = "GstTwilioStreamSrc";
    type Type = super::TwilioStreamSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for TwilioStreamSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        properties::specs()
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
                "Twilio Media Streams Source",
                "Source/Audio/Network",
                "Receives a phone call's audio from Twilio Media Streams on the WebSocket Twilio dials",
                "The twiliostream developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &Output::template_caps(),
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn send_event(&self, event: gst::Event) -> bool {
        self.stopping_on_panic(|| false, || self.send_event_refusing_seeks(event))
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        self.stopping_on_panic(
            || crate::contain::state_change_fallback(transition),
            || {
                if transition == gst::StateChange::PlayingToPaused {
                    self.shared.pausing();
                    self.pausing();
                }
                if transition == gst::StateChange::PausedToPlaying {
                    // Before create() may run again.
                    self.resuming();
                }
                let success = self.parent_change_state(transition)?;
                if transition == gst::StateChange::PausedToPlaying {
                    self.shared_playing();
                }
                Ok(success)
            },
        )
    }
}

impl BaseSrcImpl for TwilioStreamSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.stopping_on_panic(super::panicked::start_fallback, || self.start_listening())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.stopping_on_panic(|| Ok(()), || self.stop_listening())
    }
    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        self.stopping_on_panic(
            || Err(gst::loggable_error!(CAT, "panicked")),
            || {
                let format = self.state.locked().format;
                let output = Output::from_caps(caps, format)
                    .ok_or_else(|| gst::loggable_error!(CAT, "unsupported caps {caps}"))?;
                gst::debug!(CAT, imp = self, "output {output:?} for caps {caps}");
                let changed = {
                    let mut state = self.state.locked();
                    let changed = state.output != Some(output);
                    state.output = Some(output);
                    state.converter.reset();
                    state.stereo.reset();
                    changed
                };
                if changed {
                    let obj = self.obj();
                    let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
                }
                Ok(())
            },
        )
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        self.stopping_on_panic(
            || None,
            || {
                // Started, the tracks this run started with; else the property's.
                let (format, run) = {
                    let state = self.state.locked();
                    let run = state.registration.is_some().then_some(state.tracks);
                    (state.format, run)
                };
                let tracks = run.unwrap_or_else(|| self.settings.locked().track);
                let caps = Output::caps(tracks.channels(), format);
                Some(match filter {
                    Some(filter) => {
                        filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First)
                    }
                    None => caps,
                })
            },
        )
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        self.stopping_on_panic(
            || false,
            || match query.view_mut() {
                gst::QueryViewMut::Position(q) if q.format() == gst::Format::Time => {
                    match self.shared_position() {
                        Some(position) => {
                            q.set(position);
                            true
                        }
                        None => BaseSrcImplExt::parent_query(self, query),
                    }
                }
                gst::QueryViewMut::Latency(q) => {
                    let latency = self.latency();
                    gst::debug!(CAT, imp = self, "latency {latency}");
                    q.set(true, latency, gst::ClockTime::NONE);
                    true
                }
                _ => BaseSrcImplExt::parent_query(self, query),
            },
        )
    }

    fn event(&self, event: &gst::Event) -> bool {
        self.stopping_on_panic(|| false, || self.event_seeing_flushes(event))
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.stopping_on_panic(|| Ok(()), || self.unlock_create())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.stopping_on_panic(
            || Ok(()),
            || {
                self.shared.flushed();
                self.shared
                    .base_discont
                    .store(true, std::sync::atomic::Ordering::SeqCst);
                self.unlock_create_stop()
            },
        )
    }
}

impl TwilioStreamSrc {
    /// `start`'s body: the run's state from the settings, and the listener.
    fn start_listening(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.locked().clone();
        {
            let mut state = self.state.locked();
            *state = State {
                tracks: settings.track,
                carried: [true, false],
                gap_fill: settings.gap_fill,
                reorder_window: settings.reorder_window,
                track_wait_ms: settings.track_wait_ms,
                resume: Resume::keeping(settings.early_audio_ms),
                meter: meter(settings.quality_interval),
                ..State::default()
            };
            let conceal = settings.gap_fill == GapFill::Plc;
            state.converter.set_concealment(conceal);
            state.stereo.set_concealment(conceal);
        }
        // BaseSrc counts `num-buffers` in its own loop: a run that sets it
        // pushes from the streaming thread.
        let limited = self.obj().num_buffers() >= 0;
        if settings.shared_threads && limited {
            gst::info!(
                CAT,
                imp = self,
                "num-buffers is set: pushing from the streaming thread"
            );
        }
        self.shared.start(settings.shared_threads && !limited);
        self.start_duties();
        self.forget_eos();
        let slot = self.slot();
        let claim = self.ready_slot(&slot, settings.track)?;
        let registration = settings.endpoint.register(claim)?;
        let addr = registration.local_addr();
        gst::info!(
            CAT,
            imp = self,
            "listening on {} for Twilio",
            settings.endpoint.listening_url(addr)
        );
        {
            let mut state = self.state.locked();
            state.bound_port = addr.port() as u32;
            state.registration = Some(registration);
        }
        self.obj().notify("bound-port");
        #[cfg(test)]
        if crate::contain::asked(&super::panicked::PANIC_IN_START, self) {
            panic!("start panicked (test)");
        }
        Ok(())
    }

    /// `stop`'s body: the listener let go of, the call hung up.
    fn stop_listening(&self) -> Result<(), gst::ErrorMessage> {
        self.stop_eos();
        let (registration, events) = {
            let mut state = self.state.locked();
            #[cfg(test)]
            if crate::contain::asked(&super::panicked::PANIC_IN_STOP, self) {
                panic!("stop panicked (test)");
            }
            state.bound_port = 0;
            if let Some(call) = &state.call {
                call.set_consumer(None);
                call.hot.clear(&HotPart::SRC);
            }
            self.shared.stop();
            // Dropped with the call's queue.
            state.held.clear();
            (state.registration.take(), state.events.take())
        };
        // Stop taking calls first, then hang up the one we have.
        drop(registration);
        drop(events);
        if let Some(call) = self.slot().take() {
            gst::info!(CAT, imp = self, "{call:?}: closing");
            call.close();
        }
        // A `call-name` set while started applies from now on.
        self.follow_call_name();
        self.obj().notify("bound-port");
        self.obj().notify("connected");
        Ok(())
    }
}
