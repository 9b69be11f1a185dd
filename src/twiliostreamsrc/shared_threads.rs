//! `shared-threads`: the src pushing the call's audio from the call's
//! network task instead of its streaming thread, and the fallback to the
//! streaming thread when downstream blocks such a push. Turning call events
//! into buffers is `imp`'s; this file only decides where they are pushed from.
//! The fill timer, which pushes the fill when nothing comes, is `fill_timer`'s.
//!
//! Every push from a network thread passes the src's [`PushGate`]
//! (`push_gate.rs`): each buffer (and EOS) a drain pushes, and a fill as a
//! whole. While a sink it feeds on that thread pauses, nothing is pushed:
//! the call's events wait in its queue, the fill timer sleeps, and what a
//! drain made but had not pushed yet is kept in the src's state
//! ([`Out`], `held`). A sink may pause in the middle of a drain, from a bus
//! sync handler on this very thread, at a message the src posts while it
//! turns an event into buffers (`twilio-quality`, `twilio-stop`): the
//! buffers of that event are then kept, not pushed into the paused sink.
//! The last such sink to play again resumes the src
//! ([`TwilioStreamSrc::release_pushes`]): what was kept goes out first, in
//! order, then the call's events (a fill waits for it; after a fallback the
//! streaming thread pushes it first). A stop drops it, as it drops the
//! call's queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;

use super::imp::{CAT, TwilioStreamSrc};
use super::step::{Buffers, Out, Step};
use super::until_playing::Bins;
use crate::call::CallEvent;
use crate::lock::Locked;
use crate::push_gate::{self, PushGate, Pusher, Pushing};
use crate::runtime::RUNTIME;
use crate::wait::wait;

/// With `shared-threads`, two pushes in a row that block this long (a
/// chunk) mean downstream waits: the src hands pushing to its streaming
/// thread. One alone may be the thread preempted on a busy machine.
const SHARED_BLOCK_LIMIT: Duration = Duration::from_millis(20);

/// One push that blocks this long is downstream waiting, not preemption.
const SHARED_BLOCK_LONG: Duration = Duration::from_millis(200);

/// How a `shared-threads` src hands the call's task its pushes.
#[derive(Default)]
pub(super) struct Shared {
    /// PLAYING: buffers may go out.
    flowing: AtomicBool,
    pub(super) draining: AtomicBool,
    pub(super) requested: AtomicBool,
    /// Downstream blocked a push: the streaming thread pushes from now on
    /// (until the element starts again).
    fallback: AtomicBool,
    /// A bin of the src was not PLAYING yet at a push: the streaming
    /// thread pushes until it is (`until_playing.rs`).
    pub(super) until_playing: AtomicBool,
    /// Wakes the streaming thread once no drain runs after `fallback` (or
    /// `until_playing`).
    pub(super) fallen_back: tokio::sync::Notify,
    /// The last push held the thread [`SHARED_BLOCK_LIMIT`] or more.
    slow_push: AtomicBool,
    /// This run pushes from the network threads (`shared-threads` at start).
    enabled: AtomicBool,
    /// PLAYING → PAUSED transitions so far.
    pauses: AtomicU64,
    /// The next buffer is the first since start: DISCONT, as BaseSrc marks it.
    pub(super) discont: AtomicBool,
    /// BaseSrc marks the next buffer its streaming thread pushes DISCONT
    /// (since start, or a flush or a return to PLAYING: `unlock_stop`).
    pub(super) base_discont: AtomicBool,
    /// Starts and stops so far: a fill timer ends when its run is over.
    pub(super) runs: AtomicU64,
    /// Wakes the fill timer: flowing again, a fallback, a stop.
    pub(super) timer: Arc<tokio::sync::Notify>,
    /// The pad was seen holding its segment this run (and no flush since):
    /// spares a look at the pad's sticky events, under its lock, per chunk.
    segment_out: AtomicBool,
    /// Running time (ns) at which the audio placed so far runs out (0: none
    /// yet), for the fill timer.
    pub(super) runs_out: AtomicU64,
    /// What every push from a network thread passes: held while a sink it
    /// feeds pauses.
    pub(super) gate: PushGate,
    /// The src panicked and stopped on its own (`panicked.rs`).
    pub(super) stopped_after_panic: AtomicBool,
}

/// Tests only: the src at this address (0: none) panics in its next drain,
/// holding its state's lock, as an overflow in turning a chunk into buffers
/// would (`panicked.rs`).
#[cfg(test)]
pub(super) static PANIC_IN_DRAIN: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

impl Shared {
    /// `BaseSrc::start`: this run pushes from network threads if `enabled`.
    pub(super) fn start(&self, enabled: bool) {
        self.fallback.store(false, Ordering::SeqCst);
        self.until_playing.store(false, Ordering::SeqCst);
        self.slow_push.store(false, Ordering::Relaxed);
        self.enabled.store(enabled, Ordering::SeqCst);
        self.discont.store(true, Ordering::Relaxed);
        self.base_discont.store(true, Ordering::SeqCst);
        self.segment_out.store(false, Ordering::SeqCst);
        self.runs_out.store(0, Ordering::Relaxed);
        self.runs.fetch_add(1, Ordering::SeqCst);
    }

    /// A flush ended (`BaseSrc::unlock_stop`): it may have taken the
    /// pad's segment, so look at the pad again.
    pub(super) fn flushed(&self) {
        self.segment_out.store(false, Ordering::SeqCst);
    }

    /// `BaseSrc::stop`: late drains push nothing, the fill timer ends.
    pub(super) fn stop(&self) {
        self.enabled.store(false, Ordering::SeqCst);
        self.runs.fetch_add(1, Ordering::SeqCst);
        self.timer.notify_one();
    }

    /// Before PLAYING → PAUSED: no more pushes.
    pub(super) fn pausing(&self) {
        self.pauses.fetch_add(1, Ordering::SeqCst);
        self.flowing.store(false, Ordering::SeqCst);
    }

    /// Pushes may go out from the network threads now.
    pub(super) fn pushing(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
            && self.flowing.load(Ordering::SeqCst)
            && !self.streaming()
    }

    /// This run pushes from the network threads (until a fallback).
    pub(super) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Downstream blocked a push this run: the streaming thread pushes.
    pub(super) fn fell_back(&self) -> bool {
        self.fallback.load(Ordering::SeqCst)
    }

    /// The streaming thread pushes, for the rest of the run (a fallback)
    /// or until the src's bins play (`until_playing.rs`).
    pub(super) fn streaming(&self) -> bool {
        self.fallback.load(Ordering::SeqCst) || self.until_playing.load(Ordering::SeqCst)
    }
}

impl TwilioStreamSrc {
    /// A fill from a network thread begins (it passes the gate as one
    /// push), unless a sink downstream pauses (`push_gate.rs`); a sink it
    /// reaches learns who pushes.
    fn push_begins(&self) -> Option<(Pushing<'_>, Pusher)> {
        let pushing = self.shared.gate.enter()?;
        Some((pushing, push_gate::pushing_as(self.obj().as_ptr() as usize)))
    }

    /// A sink this src pushes into from a network thread pauses: see
    /// [`PushGate::hold`].
    pub(super) fn hold_pushes(&self) -> bool {
        self.shared.gate.hold()
    }

    /// [`PushGate::settle`].
    pub(super) fn settle_pushes(&self, bound: Duration) -> bool {
        self.shared.gate.settle(bound)
    }

    /// That sink plays again (or stops): once none holds the pushes, what
    /// the call queued meanwhile goes out, and the fill timer looks again.
    /// Spawns, never blocks (a sink's state change calls it).
    pub(super) fn release_pushes(&self) {
        if self.shared.gate.release() && self.shared.enabled() {
            gst::debug!(CAT, imp = self, "no sink holds the pushes: going on");
            self.drain_shared_soon();
            self.shared.timer.notify_one();
        }
    }

    /// After PAUSED → PLAYING: pushes may go out again.
    pub(super) fn shared_playing(&self) {
        self.shared.flowing.store(true, Ordering::SeqCst);
        self.shared.timer.notify_one();
        // What the call queued while paused goes out now, from a
        // network thread like the rest.
        let claimed = self.state.locked().events.is_some();
        if claimed && self.shared.enabled() {
            self.drain_shared_soon();
        }
    }

    /// The streaming thread of a `shared-threads` src, once it has a call
    /// (or its bins play again): waits until downstream blocks a push, or a
    /// push finds a bin not PLAYING yet (or the element stops).
    pub(super) fn wait_for_fallback(&self) -> Result<(), gst::FlowError> {
        // What came before this call was claimed (or while this thread
        // pushed): from a network thread too, so that every push before a
        // fallback is.
        self.drain_shared_soon();
        while !self.shared.streaming() {
            wait(&self.canceller, self.shared.fallen_back.notified())
                .map_err(|_| gst::FlowError::Flushing)?;
        }
        if self.shared.fell_back() {
            gst::info!(CAT, imp = self, "downstream blocked: pushing from here");
        } else {
            gst::debug!(
                CAT,
                imp = self,
                "not PLAYING yet: pushing from here until then"
            );
        }
        Ok(())
    }

    /// The streaming thread after a fallback, before it pulls the call's events.
    pub(super) fn wait_for_last_drain(&self) -> Result<(), gst::FlowError> {
        if self.shared.streaming() {
            // A drain that began before the fallback pushes nothing more,
            // but may still be finishing the push that blocked.
            while self.shared.draining.load(Ordering::SeqCst) {
                if wait(&self.canceller, self.shared.fallen_back.notified()).is_err() {
                    return Err(gst::FlowError::Flushing);
                }
            }
        }
        Ok(())
    }
    /// With `shared-threads`: pushes whatever the call queued, on the
    /// calling thread (the call's task, or a task of its own). One
    /// drain runs at a time; a request during it makes it go round again.
    pub(super) fn drain_shared(&self) {
        // Not (or no longer) this run's way of pushing: a drain spawned in an
        // earlier run may come late.
        if !self.shared.enabled.load(Ordering::SeqCst) || self.shared.streaming() {
            return;
        }
        // A sink downstream pauses: the events wait in the call's queue.
        // (The gate is passed again at each push: see `push_out`.)
        if self.shared.gate.holding() {
            return;
        }
        let _named = push_gate::pushing_as(self.obj().as_ptr() as usize);
        self.shared.requested.store(true, Ordering::SeqCst);
        while !self.shared.draining.swap(true, Ordering::SeqCst) {
            while self.shared.requested.swap(false, Ordering::SeqCst) {
                self.drain_once();
            }
            self.shared.draining.store(false, Ordering::SeqCst);
            if self.shared.streaming() {
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
                src.imp().on_network(Self::drain_shared);
            }
        });
    }

    /// The fill timer's turn: the fill, unless a drain runs (it pushes
    /// what came, and the timer looks again after it), or has buffers a
    /// pause held back to push first.
    pub(super) fn fill_shared(&self) {
        if !self.shared.pushing() {
            return;
        }
        match self.bins() {
            Bins::Playing => {}
            Bins::Leaving => return,
            // (The GAP would preroll a sink: the streaming thread fills.)
            Bins::NotYetPlaying => return self.until_playing(),
        }
        let Some(pushing) = self.push_begins() else {
            return;
        };
        if self.shared.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.shared.streaming() {
            // The streaming thread took over since the look above.
            self.shared.draining.store(false, Ordering::SeqCst);
            self.shared.fallen_back.notify_one();
            return;
        }
        if !self.state.locked().held.is_empty() {
            // Older than the fill: the drain pushes them, the timer looks again.
            self.shared.requested.store(true, Ordering::SeqCst);
        } else if self.fill_wait().is_some() {
            // (What is no longer overdue, a chunk having come, is not filled.)
            let pad = self.obj().src_pad().clone();
            // As in a drain: after a flush, the segment before anything.
            if !self.shared.segment_out.load(Ordering::SeqCst) {
                self.segment_out(&pad);
            }
            match self
                .fill_overdue()
                .and_then(|held| self.push_all(&pad, held))
            {
                Ok(_) => self.push_pending_events(),
                Err(flow) => self.shared_flow_error(&pad, flow),
            }
        }
        self.shared.draining.store(false, Ordering::SeqCst);
        drop(pushing);
        if self.shared.streaming() {
            self.shared.fallen_back.notify_one();
        } else if self.shared.requested.load(Ordering::SeqCst) {
            // A chunk came during the fill: its drain gave way to this.
            self.drain_shared();
        }
    }

    fn drain_once(&self) {
        let obj = self.obj();
        let pad = obj.src_pad();
        // (A sink that pauses meanwhile stops the drain at the next push:
        // the rest is held back, and the drain ends.)
        while self.shared.flowing.load(Ordering::SeqCst)
            && !self.shared.streaming()
            && !self.shared.gate.holding()
        {
            let mut state = self.state.locked();
            #[cfg(test)]
            if PANIC_IN_DRAIN
                .compare_exchange(obj.as_ptr() as usize, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                panic!("a drain panicked (test)");
            }
            let held = std::mem::take(&mut state.held);
            let event = if !held.is_empty() {
                None
            } else if state.finished {
                return;
            } else if state.after_eos {
                drop(state);
                return self.post_queued();
            } else {
                let Some(events) = state.events.as_mut() else {
                    return;
                };
                match events.try_recv() {
                    Poll::Ready(event) => Some(event),
                    Poll::Pending => return,
                }
            };
            drop(state);
            // Looked at only with something to push: it costs a few locks.
            match self.bins() {
                Bins::Playing => {}
                Bins::Leaving => return self.put_back(held, event),
                Bins::NotYetPlaying => {
                    self.put_back(held, event);
                    return self.until_playing();
                }
            }
            // The streaming thread would push the segment with the first
            // buffer; here it goes out before anything else of ours. It is
            // BaseSrc's own: a live source's time segment from 0 (reading
            // that one would take the stream lock the waiting thread holds).
            if !self.shared.segment_out.load(Ordering::SeqCst) {
                self.segment_out(pad);
            }
            // What a pause held back goes before the call's next event.
            let Some(event) = event else {
                if let Err(flow) = self.push_out(pad, held) {
                    self.shared_flow_error(pad, flow);
                    return;
                }
                continue;
            };
            if let Err(flow) = self.reconfigure_shared(pad) {
                self.shared_flow_error(pad, flow);
                return;
            }
            let step = self.process(event);
            self.push_pending_events();
            let result = match step {
                Ok(Step::Next) => Ok(()),
                Ok(Step::Buffers(buffers)) => {
                    self.push_out(pad, buffers.into_iter().map(Out::Buffer))
                }
                Ok(Step::End(buffers)) => self.push_out(
                    pad,
                    (buffers.into_iter().map(Out::Buffer))
                        .chain([Out::Event(gst::event::Eos::new())]),
                ),
                Err(flow) => Err(flow),
            };
            if let Err(flow) = result {
                self.shared_flow_error(pad, flow);
                return;
            }
        }
    }

    /// What a drain took but cannot push yet, back where it was.
    #[cold]
    #[inline(never)]
    fn put_back(&self, held: Vec<Out>, event: Option<Option<CallEvent>>) {
        let mut state = self.state.locked();
        // (Only a drain adds to `held`, and this one is the only drain.)
        state.held.splice(0..0, held);
        if let (Some(event), Some(events)) = (event.flatten(), state.events.as_mut()) {
            events.put_back(event);
        }
    }

    #[cold]
    #[inline(never)]
    fn segment_out(&self, pad: &gst::Pad) {
        let out = pad.sticky_event::<gst::event::Segment>(0).is_some() || {
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            pad.push_event(gst::event::Segment::new(&segment))
        };
        self.shared.segment_out.store(out, Ordering::SeqCst);
    }

    /// A drain's pushes: `out` in turn, up to the first failure, each past
    /// the gate. From the first a sink's hold stops, the rest is kept
    /// (`held`) for the drain that goes on after the hold: a sink may pause
    /// in the middle of a drain, from a bus sync handler at a message the
    /// src posted on this thread.
    fn push_out(
        &self,
        pad: &gst::Pad,
        out: impl IntoIterator<Item = Out>,
    ) -> Result<(), gst::FlowError> {
        let mut out = out.into_iter();
        while let Some(next) = out.next() {
            let Some(_pushing) = self.shared.gate.enter() else {
                self.hold_back(std::iter::once(next).chain(out));
                return Ok(());
            };
            match next {
                Out::Buffer(buffer) => {
                    self.push_shared(pad, buffer)?;
                }
                Out::Event(event) => {
                    pad.push_event(event);
                }
            }
        }
        Ok(())
    }

    /// Keeps `out`, held back by a sink's hold, to go out before anything
    /// the src makes next.
    #[cold]
    #[inline(never)]
    fn hold_back(&self, out: impl Iterator<Item = Out>) {
        let mut state = self.state.locked();
        let before = state.held.len();
        state.held.splice(0..0, out);
        gst::debug!(
            CAT,
            imp = self,
            "a sink holds the pushes: {} kept back",
            state.held.len() - before
        );
    }

    /// After a fallback, on the streaming thread: what a drain held back,
    /// before the call's next event (None once there is none).
    pub(super) fn held_created(&self) -> Result<Option<CreateSuccess>, gst::FlowError> {
        if !self.shared.streaming() {
            return Ok(None);
        }
        // The drain whose push fell back may still hold back the rest of
        // that push: wait for it before looking.
        self.wait_for_last_drain()?;
        loop {
            let next = {
                let mut state = self.state.locked();
                if state.held.is_empty() {
                    return Ok(None);
                }
                state.held.remove(0)
            };
            match next {
                Out::Buffer(buffer) => return Ok(Some(CreateSuccess::NewBuffer(buffer))),
                Out::Event(event) if event.type_() == gst::EventType::Eos => {
                    return Err(gst::FlowError::Eos);
                }
                Out::Event(event) => {
                    self.obj().src_pad().push_event(event);
                }
            }
        }
    }

    /// Pushes `buffers` in turn, up to the first failure.
    fn push_all(
        &self,
        pad: &gst::Pad,
        buffers: Buffers,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        buffers
            .into_iter()
            .try_fold(gst::FlowSuccess::Ok, |_, b| self.push_shared(pad, b))
    }

    /// Pushes `buffer`. If downstream held the thread for a chunk or more
    /// twice in a row, or once for [`SHARED_BLOCK_LONG`] (every call on that
    /// network thread waited as long), falls back to the streaming thread
    /// for the rest of the run.
    fn push_shared(
        &self,
        pad: &gst::Pad,
        mut buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.shared.discont.swap(false, Ordering::Relaxed) {
            buffer.make_mut().set_flags(gst::BufferFlags::DISCONT);
        }
        self.before_shared_push(&mut buffer);
        let pauses = self.shared.pauses.load(Ordering::SeqCst);
        let started = Instant::now();
        let result = pad.push(buffer);
        let took = started.elapsed();
        // A push held up by a pause (the sink waits for PLAYING) or ended by
        // a flush says nothing about downstream in PLAYING.
        let slow = took >= SHARED_BLOCK_LIMIT
            && result.is_ok()
            && pauses == self.shared.pauses.load(Ordering::SeqCst);
        let waited = if slow {
            self.shared.slow_push.swap(true, Ordering::Relaxed) || took >= SHARED_BLOCK_LONG
        } else {
            if self.shared.slow_push.load(Ordering::Relaxed) {
                self.shared.slow_push.store(false, Ordering::Relaxed);
            }
            false
        };
        if waited && !self.shared.fallback.swap(true, Ordering::SeqCst) {
            self.shared.timer.notify_one();
            // Expected with a sink that syncs to the clock: not a warning.
            gst::info!(
                CAT,
                imp = self,
                "downstream held a network thread for {} ms: pushing from this element's \
                 streaming thread from now on",
                took.as_millis()
            );
        }
        result
    }

    /// What the streaming thread would do when a push fails.
    #[cold]
    #[inline(never)]
    fn shared_flow_error(&self, pad: &gst::Pad, flow: gst::FlowError) {
        if flow == gst::FlowError::Flushing {
            // The flush may end by taking the pad's segment (flush-stop
            // goes out after unlock_stop): look at the pad again.
            self.shared.flushed();
            gst::debug!(CAT, imp = self, "flushing: not pushing");
            return;
        }
        gst::info!(CAT, imp = self, "stopping: {flow:?}");
        if flow == gst::FlowError::Eos {
            // Downstream ended the stream, not the call: its messages are
            // still posted, and the streaming thread pushes the EOS.
            self.read_after_eos();
            self.end_on_streaming_thread();
            return;
        } else {
            self.state.locked().finished = true;
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Internal data stream error."),
                [
                    "streaming stopped, reason {}",
                    super::loop_duties::flow_name(flow)
                ]
            );
        }
        // (Past the gate: the error's sync handler may pause a sink.)
        let _ = self.push_out(pad, [Out::Event(gst::event::Eos::new())]);
    }
}
