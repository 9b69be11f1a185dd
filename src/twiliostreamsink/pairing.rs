//! Finding the call, in this order: the src with the same `call-name`; else
//! the one twiliostreamsrc of the sink's own pipeline; else the sink listens
//! itself (host, port, path) and takes the next call, posting the call's
//! messages the way the src would. Done on READY → PAUSED (`connect`) and
//! undone on PAUSED → READY (`disconnect`); `ensure_call` waits, cancellably,
//! for the call's `start` before the first buffer. Pausing: the call's
//! writer with the sink (`pause_call`), and the pushes of the srcs that
//! feed the sink from a network thread (`change_base_state`, `push_gate.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::framing::Framer;
use super::imp::{CAT, State, TwilioStreamSink};
use super::{poster, properties};
use crate::call::slot::Claim;
use crate::call::{self, Call};
use crate::contain::Containing;
use crate::lock::Locked;
use crate::push_gate::PAUSE_WAIT;

/// What a paired sink whose call is over does when the slot holds
/// another call (`let_go_of_ended_call`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// Keeps its call: still open, no other call, or listening itself.
    Kept,
    /// No stream has started since the call's end: what comes is that
    /// call's, still on its way (behind a queue). Dropped.
    OldStream,
    /// Let go of it: the next call is adopted.
    LetGo,
}

impl TwilioStreamSink {
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
    /// instead, FLUSHING if a flush or a stop ended the wait (a pause
    /// suspends it until PLAYING: `preroll.rs`). False: the buffer (or
    /// mark) is of the stream of a call over, while the src has its next
    /// call: dropped.
    pub(super) fn ensure_call(&self) -> Result<bool, gst::FlowError> {
        let (adopted, over) = {
            let state = self.state.locked();
            match (&state.call, &state.stream_sid) {
                // A call that ended takes buffers (dropping them) until its
                // consumer has read its end: EOS from here would stop a src
                // upstream before it posts that end.
                (Some(call), Some(_)) => {
                    let open = call.is_open() || call.end_unread();
                    // (Cloned only once over: not per buffer.)
                    (Some(open), (!open).then(|| call.clone()))
                }
                // Another sink plays into the call (an ERROR said so).
                _ if state.refused => return Err(gst::FlowError::Error),
                _ => (None, None),
            }
        };
        // A call over, its src started again alone with another: that one,
        // from the start of its stream on (what comes before is the old
        // call's, still on its way: not for the next caller's ears).
        let adopted = match over.map(|old| self.let_go_of_ended_call(&old)) {
            Some(Ended::LetGo) => None,
            Some(Ended::OldStream) => {
                gst::debug!(CAT, imp = self, "the ended call's stream: dropped");
                return Ok(false);
            }
            Some(Ended::Kept) | None => adopted,
        };
        #[cfg(test)]
        if adopted.is_none() && super::panicked::asked(&super::panicked::PANIC_BEFORE_CALL, self) {
            panic!("the sink panicked before taking its call (test)");
        }
        // The call adopted already (every buffer: no clones, one lock), or
        // one that can be without waiting.
        if let Some(open) = adopted.or_else(|| {
            self.adopt_call()
                .map(|(c, _)| c.is_open() || c.end_unread())
        }) {
            return if open {
                Ok(true)
            } else {
                Err(gst::FlowError::Eos)
            };
        }
        let slot = self
            .state
            .locked()
            .slot
            .clone()
            .ok_or(gst::FlowError::Flushing)?;
        gst::debug!(CAT, imp = self, "waiting for a call");
        let call = self.wait_under_preroll_lock(slot.wait())?;
        gst::debug!(CAT, imp = self, "{call:?}: waiting for its start");
        let start = self.wait_under_preroll_lock(call.started())?;
        if start.is_none() {
            gst::info!(CAT, imp = self, "{call:?} ended before it started");
            return Err(gst::FlowError::Eos);
        }
        match self.adopt(call) {
            Some((call, _)) if call.is_open() => Ok(true),
            _ if self.state.locked().refused => Err(gst::FlowError::Error),
            _ => Err(gst::FlowError::Eos),
        }
    }

    /// The call played into is over and the slot holds another: the src
    /// was started again alone (its bin and this sink played on) and took
    /// it. Once a new stream has started here (the src's STREAM_START, or a
    /// flush of the branch that feeds the sink: `stream_started`), lets go
    /// of the old call as a stop would, so that the next one is adopted;
    /// what comes before is the old call's, still on its way (behind a
    /// queue, or in a voice bot's appsrc), not for the next caller's ears.
    /// A sink whose stream does not come from the src (an appsrc, a mixer)
    /// gets no STREAM_START of the src's: a WARNING says to flush that
    /// branch. (A sink listening itself takes one call per
    /// start: it keeps the old one.) `seen` is the call over as the caller
    /// saw it: if another thread (a signal's, the streaming thread) let go
    /// of it meanwhile, LetGo too, so that the caller looks again rather
    /// than end the stream or use that call.
    pub(super) fn let_go_of_ended_call(&self, seen: &Arc<Call>) -> Ended {
        let mut state = self.state.locked();
        if !state
            .call
            .as_ref()
            .is_some_and(|call| Arc::ptr_eq(call, seen))
        {
            return Ended::LetGo;
        }
        let (Some(old), None) = (&state.call, &state.registration) else {
            return Ended::Kept;
        };
        let next = state.slot.as_ref().and_then(|slot| slot.current());
        if old.is_open() || next.is_none_or(|next| Arc::ptr_eq(&next, old)) {
            return Ended::Kept;
        }
        if !state.next_stream {
            // A stream of the application's own (an appsrc, as a voice
            // bot's; a mixer) gets no STREAM_START of the src's: told once
            // what to do. (Looked at once per call over: not per buffer.)
            let from_src = match state.from_src {
                Some(from_src) => from_src,
                None => {
                    let slot = state.slot.clone();
                    drop(state);
                    let from_src = self.stream_from_src(slot.as_ref());
                    state = self.state.locked();
                    if !state
                        .call
                        .as_ref()
                        .is_some_and(|call| Arc::ptr_eq(call, seen))
                    {
                        return Ended::LetGo;
                    }
                    state.from_src = Some(from_src);
                    from_src
                }
            };
            if !from_src && !std::mem::replace(&mut state.told_flush, true) {
                drop(state);
                self.warn_flush_needed(format!("{seen:?}"));
            }
            return Ended::OldStream;
        }
        let old = state.call.take().expect("looked at above");
        state.stream_sid = None;
        state.next_stream = false;
        // Its partial frame and the resampler's history were for that call.
        state.framer.clear();
        drop(state);
        old.hot.clear(&crate::call::HotPart::SINK);
        old.release_sender(self.sender_id());
        gst::info!(
            CAT,
            imp = self,
            "{old:?} is over and the src has another call: letting go"
        );
        Ended::LetGo
    }

    /// The application's branch feeds the sink, not the src, and the src
    /// has its next call: what comes is dropped until that branch is
    /// flushed (or started again).
    #[cold]
    fn warn_flush_needed(&self, old: String) {
        gst::element_imp_warning!(
            self,
            gst::StreamError::Failed,
            ("{old} is over and the src has the next call: what reaches the sink is dropped \
                 until the branch that feeds it is flushed"),
            [
                "the sink's stream does not come from the src (an appsrc, a mixer), so nothing \
                 tells the old call's audio, still on its way, from the next one's: flush that \
                 branch when a call ends (flush-start and flush-stop to its appsrc), or set it \
                 to READY and back"
            ]
        );
    }

    /// A STREAM_START (serialized: after every buffer before it), or a
    /// flush's end. Once the call played into is over, a stream starting is
    /// the src's next run, or the application's branch starting afresh:
    /// from here on the sink may follow the src to its next call.
    pub(super) fn stream_started(&self) {
        let mut state = self.state.locked();
        // Over once Twilio sent `stop` (it plays nothing more), though its
        // socket may close a moment after: an application that flushes as
        // it sees `twilio-stop` is after the call's end.
        if state
            .call
            .as_ref()
            .is_some_and(|call| !call.is_open() || call.is_stopped())
        {
            gst::debug!(CAT, imp = self, "a stream starts after the call's end");
            state.next_stream = true;
        }
    }

    /// BaseSink took an EOS. A paired sink follows its src's next stream
    /// (the src alone restarted after its call ended), but BaseSink drops
    /// everything after an EOS, that stream's STREAM_START first (before
    /// `event()`; an error upstream): a one-shot probe looks for that
    /// STREAM_START (set only now, so that no buffer pays for a probe on the
    /// pad). A sink that listens itself takes one call per start.
    pub(super) fn ended(&self) {
        let mut state = self.state.locked();
        state.ended = true;
        if state.slot.is_none() || state.registration.is_some() || state.eos_probe {
            return;
        }
        state.eos_probe = true;
        drop(state);
        let weak = self.obj().downgrade();
        self.obj()
            .sink_pad()
            .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |pad, info| {
                let Some(gst::PadProbeData::Event(event)) = &info.data else {
                    return gst::PadProbeReturn::Ok;
                };
                if event.type_() != gst::EventType::StreamStart {
                    return gst::PadProbeReturn::Ok;
                }
                if let Some(sink) = weak.upgrade() {
                    sink.imp().restart_after_eos(pad);
                }
                gst::PadProbeReturn::Remove
            });
    }

    /// A STREAM_START on its way in after the sink's EOS (the probe set by
    /// `ended`): a paired sink whose call is over flushes its own pad, which
    /// ends the EOS as a new start would. (On the pad's streaming thread,
    /// holding its stream lock: the flush-stop takes it again.)
    fn restart_after_eos(&self, pad: &gst::Pad) {
        self.stopping_on_panic(
            || (),
            || {
                {
                    let mut state = self.state.locked();
                    state.eos_probe = false;
                    let follows = state.ended
                        && state.slot.is_some()
                        && state.registration.is_none()
                        && state.call.as_ref().is_none_or(|call| !call.is_open());
                    if !follows {
                        return;
                    }
                    state.ended = false;
                }
                gst::info!(
                    CAT,
                    imp = self,
                    "a stream starts after EOS: flushing the EOS"
                );
                pad.send_event(gst::event::FlushStart::new());
                pad.send_event(gst::event::FlushStop::new(false));
            },
        )
    }

    /// Finds the call's slot (pairing, or listening itself). Done on READY →
    /// PAUSED, like the src, so that properties set in READY apply.
    pub(super) fn connect(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.locked().clone();
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
                    let claim = Claim::new_slot();
                    let slot = claim.slot().clone();
                    let registration = settings.endpoint.register(claim)?;
                    let addr = registration.local_addr();
                    gst::info!(
                        CAT,
                        imp = self,
                        "no twiliostreamsrc to pair with: listening on {}",
                        settings.endpoint.listening_url(addr)
                    );
                    state.bound_port = addr.port() as u32;
                    state.registration = Some(registration);
                    state.poster = Some(poster::spawn(&self.obj(), slot.clone()));
                    state.slot = Some(slot);
                }
                several => {
                    return Err(gst::error_msg!(
                        gst::ResourceError::Settings,
                        (
                            "{} twiliostreamsrc elements in this pipeline: set call-name on the \
                             sink and on the src it should play into",
                            several.len()
                        )
                    ));
                }
            }
        }
        let listening = state.registration.is_some();
        *self.state.locked() = state;
        if listening {
            self.obj().notify("bound-port");
        } else {
            let ignored = properties::listening_properties_set(&settings.endpoint);
            if !ignored.is_empty() {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Settings,
                    (
                        "{} ignored: the sink plays into the call of a twiliostreamsrc \
                         and does not listen itself",
                        ignored.join(", ")
                    ),
                    ["the src's listener takes the calls: set these on the src"]
                );
            }
        }
        Ok(())
    }

    /// PLAYING → PAUSED holds the call's audio in its writer (Twilio plays
    /// out what it has, at most the lead); PAUSED → PLAYING goes on.
    pub(super) fn pause_call(&self, paused: bool) {
        let call = self.state.locked().call.clone();
        if let Some(call) = call {
            gst::debug!(CAT, imp = self, "{call:?}: paused {paused}");
            call.pause_writer(paused);
        }
    }

    /// BaseSink's state change. PLAYING → PAUSED is a hold of the call:
    /// the writer keeps what it was given (`pause_call`), and the sink
    /// holds the pushes of the srcs that feed it from a network thread from
    /// before BaseSink pauses until after it plays (`hold_feeders`). The
    /// hold's changes (PLAYING → PAUSED, then PAUSED → PLAYING or READY)
    /// complete at once, as with `async=false`: waiting for a buffer to
    /// preroll (ASYNC), the sink would get no PAUSED → PLAYING from a bin
    /// until one came, and the writer would keep the rest of what it was
    /// given (an appsrc's whole prompt, pushed ahead of real time, and the
    /// marks behind it) until the application pushed again.
    pub(super) fn change_base_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let sync = match transition {
            gst::StateChange::PlayingToPaused => {
                self.hold_feeders();
                self.held.store(true, SeqCst);
                true
            }
            // (Async on, BaseSink would post an ASYNC_DONE, and a state
            // change to PAUSED, for the ASYNC_START it never posted.)
            gst::StateChange::PausedToPlaying | gst::StateChange::PausedToReady => self.is_held(),
            _ => false,
        };
        // (Turning `async` off and on takes BaseSink's preroll lock, which
        // the sink's waits in `render()` and `event()` release as they wait,
        // `preroll.rs`.)
        let result = self.not_async_if(sync, || self.parent_change_state(transition));
        if transition == gst::StateChange::PausedToPlaying {
            // Only now: what came before PLAYING would be prerolled.
            self.release_feeders();
        }
        if matches!(
            transition,
            gst::StateChange::PausedToPlaying | gst::StateChange::PausedToReady
        ) {
            self.held.store(false, SeqCst);
        }
        result
    }

    /// Whether the sink is in a hold: from PLAYING → PAUSED until the
    /// PAUSED → PLAYING or READY after it (the feeders it holds, if any,
    /// are held within it).
    pub(super) fn is_held(&self) -> bool {
        self.held.load(SeqCst)
    }

    /// Runs `f` (a call into BaseSink) with its `async` off if `off`. Also
    /// for a flush while the sink holds: with `async` on, BaseSink would
    /// lose its state (ASYNC, waiting for a buffer to preroll) and a bin
    /// would not hand it the PAUSED → PLAYING that ends the hold.
    /// Calls may overlap (a flush on one thread, a state change on
    /// another): the last to finish restores what the first found.
    pub(super) fn not_async_if<R>(&self, off: bool, f: impl FnOnce() -> R) -> R {
        if !off {
            return f();
        }
        {
            let mut turned_off = self.async_off.locked();
            if turned_off.0 == 0 {
                turned_off.1 = self.set_async_enabled(false);
            }
            turned_off.0 += 1;
        }
        let result = f();
        let mut turned_off = self.async_off.locked();
        turned_off.0 -= 1;
        if turned_off.0 == 0 {
            self.set_async_enabled(turned_off.1);
        }
        result
    }

    /// BaseSink's `async` setting, without the property's notification
    /// (the sink turns it off for a moment). The setting it had.
    pub(super) fn set_async_enabled(&self, enabled: bool) -> bool {
        use gst::glib::translate::{FromGlib, IntoGlib, ToGlibPtr};
        let obj = self.obj();
        let sink: &gst_base::BaseSink = obj.upcast_ref();
        let sink: *mut gst_base::ffi::GstBaseSink = sink.to_glib_none().0;
        // SAFETY: the pointer is valid for both calls, which take the
        // object's lock.
        unsafe {
            let was = bool::from_glib(gst_base::ffi::gst_base_sink_is_async_enabled(sink));
            gst_base::ffi::gst_base_sink_set_async_enabled(sink, enabled.into_glib());
            was
        }
    }

    /// Before PLAYING → PAUSED: holds the pushes of the srcs that push into
    /// this sink from a network thread (`shared-threads`), and waits
    /// (bounded) for those under way. A bin pauses its sinks first: a
    /// buffer such a src pushed after BaseSink paused would be prerolled,
    /// and the network thread held until PLAYING, with every call on it.
    fn hold_feeders(&self) {
        // A src relinked elsewhere since it pushed here feeds another
        // branch now: holding it would stop that branch while this sink
        // pauses. It is forgotten (it is learned again if it comes back).
        let feeders = self.state.locked().feeders.clone();
        let gone: Vec<_> = feeders.into_iter().filter(|f| !self.fed_by(f)).collect();
        let new = {
            let mut state = self.state.locked();
            let state = &mut *state;
            state.feeders.retain(|f| !gone.contains(f));
            let new: Vec<_> = state
                .feeders
                .iter()
                .filter(|f| !state.holding.contains(f))
                .cloned()
                .collect();
            state.holding.extend(new.iter().cloned());
            new
        };
        for src in new {
            if src.hold_pushes() {
                gst::debug!(
                    CAT,
                    imp = self,
                    "waiting for a push under way from {}",
                    src.name()
                );
                if !src.settle_pushes(PAUSE_WAIT) {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "a push from {} still under way after {} ms: pausing anyway (it may \
                         wait here until PLAYING)",
                        src.name(),
                        PAUSE_WAIT.as_millis()
                    );
                }
            }
        }
    }

    /// After PAUSED → PLAYING, or when the sink stops: the srcs it held go on.
    pub(super) fn release_feeders(&self) {
        let holding = std::mem::take(&mut self.state.locked().holding);
        for src in holding {
            src.release_pushes();
        }
    }

    /// Undoes [`connect`](Self::connect) on PAUSED → READY: stops listening
    /// and hangs up a call of its own.
    pub(super) fn disconnect(&self) {
        self.release_feeders();
        let state = std::mem::take(&mut *self.state.locked());
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
        if let Some(call) = &state.call {
            call.hot.clear(&crate::call::HotPart::SINK);
            // A src's call goes on: whoever plays into it next is not held.
            call.pause_writer(false);
            call.release_sender(self.sender_id());
        }
        // Keep the last call for the counters.
        self.state.locked().call = state.call;
    }
}

#[cfg(test)]
mod tests;
