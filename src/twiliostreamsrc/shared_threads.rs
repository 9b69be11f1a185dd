//! `shared-threads`: the src pushing the call's audio from the call's
//! network task instead of its streaming thread, and the fallback to the
//! streaming thread when downstream blocks such a push. Turning call events
//! into buffers is `imp`'s; this file only decides where they are pushed from.
//!
//! With nothing arriving no network task runs for the call, so each claimed
//! call gets one timer task on the runtime that sleeps until the audio is
//! the fill deadline overdue and then pushes the fill (a GAP event, see
//! `timing`), under the same rules as a drain: only while flowing, not
//! after a fallback, never during a drain. It wakes about once per fill
//! deadline while chunks come (the due time only moves later as they do),
//! not once per chunk. Those wakes are made cheap, as hundreds of calls
//! each have one:
//! - Between two looks at the pipeline's clock (at most [`CLOCK_TRUSTED`]
//!   apart), the timer converts the running time at which the audio placed
//!   so far runs out ([`Shared::runs_out`], stored with each chunk) to a
//!   time of its own from the last look: a wake that finds the due time
//!   moved later sleeps on without the element's locks or a clock read
//!   (upgrading the timer's weak reference to the element takes GLib's
//!   global weak-reference read lock, briefly).
//! - Its wakes fall on a grid of [`FILL_GRID`], so that many calls' wakes
//!   share one wake-up of the runtime (a fill is at most that much later).
//!
//! Every push from a network thread (a drain, a fill) passes the src's
//! [`PushGate`] (`push_gate.rs`): while a sink it feeds on that thread
//! pauses, nothing is pushed (the call's events wait in its queue, the fill
//! timer sleeps), and the last such sink to play again resumes the src
//! ([`TwilioStreamSrc::release_pushes`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};
use super::step::{Buffers, Step};
use super::timeline::Timeline;
use crate::push_gate::{self, PushGate, Pusher, Pushing};
use crate::runtime::RUNTIME;
use crate::wait::wait;

/// With `shared-threads`, two pushes in a row that block this long (a
/// chunk) mean downstream waits: the src hands pushing to its streaming
/// thread. One alone may be the thread preempted on a busy machine.
const SHARED_BLOCK_LIMIT: Duration = Duration::from_millis(20);

/// One push that blocks this long is downstream waiting, not preemption.
const SHARED_BLOCK_LONG: Duration = Duration::from_millis(200);

/// The fill timer wakes on multiples of this (from the process's first
/// timer): the wakes of all calls' timers coincide in fewer wake-ups.
const FILL_GRID: Duration = Duration::from_millis(20);

/// How long the fill timer converts running time to its own time from one
/// look at the pipeline's clock, which may run at another rate (100 ppm
/// over this is 1 ms).
const CLOCK_TRUSTED: Duration = Duration::from_secs(10);

/// How a `shared-threads` src hands the call's task its pushes.
#[derive(Default)]
pub(super) struct Shared {
    /// PLAYING: buffers may go out.
    flowing: AtomicBool,
    draining: AtomicBool,
    requested: AtomicBool,
    /// Downstream blocked a push: the streaming thread pushes from now on
    /// (until the element starts again).
    fallback: AtomicBool,
    /// Wakes the streaming thread once no drain runs after `fallback`.
    fallen_back: tokio::sync::Notify,
    /// The last push held the thread [`SHARED_BLOCK_LIMIT`] or more.
    slow_push: AtomicBool,
    /// This run pushes from the network threads (`shared-threads` at start).
    enabled: AtomicBool,
    /// PLAYING → PAUSED transitions so far.
    pauses: AtomicU64,
    /// The next buffer is the first since start: DISCONT, as BaseSrc marks it.
    discont: AtomicBool,
    /// Starts and stops so far: a fill timer ends when its run is over.
    runs: AtomicU64,
    /// Wakes the fill timer: flowing again, a fallback, a stop.
    timer: Arc<tokio::sync::Notify>,
    /// The pad was seen holding its segment this run (and no flush since):
    /// spares a look at the pad's sticky events, under its lock, per chunk.
    segment_out: AtomicBool,
    /// Running time (ns) at which the audio placed so far runs out (0: none
    /// yet), for the fill timer.
    runs_out: AtomicU64,
    /// What every push from a network thread passes: held while a sink it
    /// feeds pauses.
    pub(super) gate: PushGate,
}

impl Shared {
    /// `BaseSrc::start`: this run pushes from network threads if `enabled`.
    pub(super) fn start(&self, enabled: bool) {
        self.fallback.store(false, Ordering::SeqCst);
        self.slow_push.store(false, Ordering::Relaxed);
        self.enabled.store(enabled, Ordering::SeqCst);
        self.discont.store(true, Ordering::Relaxed);
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
    fn pushing(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
            && self.flowing.load(Ordering::SeqCst)
            && !self.fallback.load(Ordering::SeqCst)
    }

    /// This run pushes from the network threads (until a fallback).
    pub(super) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Downstream blocked a push this run: the streaming thread pushes.
    pub(super) fn fell_back(&self) -> bool {
        self.fallback.load(Ordering::SeqCst)
    }
}

impl TwilioStreamSrc {
    /// A push from a network thread begins, unless a sink downstream
    /// pauses (`push_gate.rs`); a sink it reaches learns who pushes.
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
        let claimed = self.state.lock().unwrap().events.is_some();
        if claimed && self.shared.enabled() {
            self.drain_shared_soon();
        }
    }

    /// The streaming thread of a `shared-threads` src, once it has a call:
    /// waits until downstream blocks a push (or the element stops).
    pub(super) fn wait_for_fallback(&self) -> Result<(), gst::FlowError> {
        // What came before this call was claimed: from a network
        // thread too, so that every push before a fallback is.
        self.drain_shared_soon();
        while !self.shared.fallback.load(Ordering::SeqCst) {
            wait(&self.canceller, self.shared.fallen_back.notified())
                .map_err(|_| gst::FlowError::Flushing)?;
        }
        gst::info!(CAT, imp = self, "downstream blocked: pushing from here");
        Ok(())
    }

    /// The streaming thread after a fallback, before it pulls the call's events.
    pub(super) fn wait_for_last_drain(&self) -> Result<(), gst::FlowError> {
        if self.shared.fallback.load(Ordering::SeqCst) {
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
        if !self.shared.enabled.load(Ordering::SeqCst)
            || self.shared.fallback.load(Ordering::SeqCst)
        {
            return;
        }
        // A sink downstream pauses: the events wait in the call's queue.
        let Some(_pushing) = self.push_begins() else {
            return;
        };
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

    /// With `shared-threads`, at claiming a call: the call's fill timer, on
    /// the runtime, for the rest of this run.
    pub(super) fn spawn_fill_timer(&self) {
        let src = self.obj().downgrade();
        let timer = self.shared.timer.clone();
        let run = self.shared.runs.load(Ordering::SeqCst);
        RUNTIME.spawn(async move {
            'look: loop {
                let woken = timer.notified();
                tokio::pin!(woken);
                // Registered before looking, so no wake-up is missed.
                woken.as_mut().enable();
                let look = {
                    let Some(src) = src.upgrade() else { return };
                    let imp = src.imp();
                    if imp.shared.runs.load(Ordering::SeqCst) != run {
                        return;
                    }
                    if imp.state.lock().unwrap().finished {
                        return;
                    }
                    // (Held, the gate's release wakes the timer.)
                    (imp.shared.pushing() && !imp.shared.gate.holding())
                        .then(|| imp.fill_look())
                        .flatten()
                };
                let Some(look) = look else {
                    woken.await;
                    continue;
                };
                let mut at = on_grid(look.wait);
                // Chunks that came meanwhile moved the due time later.
                loop {
                    tokio::select! {
                        _ = &mut woken => continue 'look,
                        _ = tokio::time::sleep_until(at) => {}
                    }
                    let Some(src) = src.upgrade() else { return };
                    let runs_out = src.imp().shared.runs_out.load(Ordering::Relaxed);
                    match look.due(runs_out) {
                        Some(due) if due > tokio::time::Instant::now() => at = on_grid_at(due),
                        _ => break,
                    }
                }
                if let Some(src) = src.upgrade()
                    && src.imp().shared.runs.load(Ordering::SeqCst) == run
                {
                    src.imp().fill_shared();
                }
            }
        });
    }

    /// The timeline placed audio up to `timeline`'s position: the fill
    /// timer's due time moves with it.
    pub(super) fn ran_to(&self, timeline: &Timeline) {
        let runs_out = timeline.fill_due(gst::ClockTime::ZERO).nseconds();
        self.shared.runs_out.store(runs_out, Ordering::Relaxed);
    }

    /// The stream was anchored (anew): the fill is due from a new time.
    pub(super) fn fill_timer_rearm(&self) {
        self.shared.timer.notify_one();
    }

    /// The fill timer's turn: the fill, unless a drain runs (it pushes
    /// what came, and the timer looks again after it).
    fn fill_shared(&self) {
        if !self.shared.pushing() || self.bin_leaving_playing() {
            return;
        }
        let Some(_pushing) = self.push_begins() else {
            return;
        };
        if self.shared.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        // (What is no longer overdue, a chunk having come, is not filled.)
        if self.fill_wait().is_some() {
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
        if self.shared.fallback.load(Ordering::SeqCst) {
            self.shared.fallen_back.notify_one();
        } else if self.shared.requested.load(Ordering::SeqCst) {
            // A chunk came during the fill: its drain gave way to this.
            self.drain_shared();
        }
    }

    fn drain_once(&self) {
        let obj = self.obj();
        let pad = obj.src_pad();
        // (A sink that pauses meanwhile stops the drain at the next event.)
        while self.shared.flowing.load(Ordering::SeqCst)
            && !self.shared.fallback.load(Ordering::SeqCst)
            && !self.shared.gate.holding()
            && !self.bin_leaving_playing()
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
            if !self.shared.segment_out.load(Ordering::SeqCst) {
                self.segment_out(pad);
            }
            let step = self.process(event);
            self.push_pending_events();
            let result = match step {
                Ok(Step::Next) => Ok(gst::FlowSuccess::Ok),
                Ok(Step::Buffers(buffers)) => self.push_all(pad, buffers),
                Ok(Step::End(buffers)) => {
                    let result = self.push_all(pad, buffers);
                    if result.is_ok() {
                        pad.push_event(gst::event::Eos::new());
                    }
                    result
                }
                Err(flow) => Err(flow),
            };
            if let Err(flow) = result {
                self.shared_flow_error(pad, flow);
                return;
            }
        }
    }

    /// A bin of this src leaves PLAYING (its pending state is set first):
    /// a sink it paused before the src would hold a push, this network
    /// thread with it (the call's reads, other calls' tasks), until it
    /// plays. The events wait in the queue for `shared_playing`.
    fn bin_leaving_playing(&self) -> bool {
        let mut bin = self.obj().parent().and_downcast::<gst::Element>();
        while let Some(b) = bin {
            let pending = b.pending_state();
            if b.current_state() == gst::State::Playing
                && (gst::State::Null..=gst::State::Paused).contains(&pending)
            {
                return true;
            }
            bin = b.parent().and_downcast();
        }
        false
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

/// The fill timer's look at the pipeline's clock: how long until the fill
/// is due, and what converts a later due time to the timer's own time.
pub(super) struct FillLook {
    /// From now until the audio is the fill deadline overdue.
    pub wait: Duration,
    /// The running time (ns) at `at`.
    pub running: u64,
    pub at: tokio::time::Instant,
    /// The fill deadline (ns).
    pub deadline: u64,
}

impl FillLook {
    /// When the fill is due if the audio runs out at running time
    /// `runs_out`: None when that is unknown, already due, or the look is
    /// too old to convert by ([`CLOCK_TRUSTED`]).
    fn due(&self, runs_out: u64) -> Option<tokio::time::Instant> {
        if runs_out == 0 || self.at.elapsed() > CLOCK_TRUSTED {
            return None;
        }
        let ahead = (runs_out + self.deadline).checked_sub(self.running)?;
        Some(self.at + Duration::from_nanos(ahead))
    }
}

/// `wait` from now, rounded up to the grid ([`FILL_GRID`]).
fn on_grid(wait: Duration) -> tokio::time::Instant {
    on_grid_at(tokio::time::Instant::now() + wait)
}

/// `at`, rounded up to the grid ([`FILL_GRID`]).
fn on_grid_at(at: tokio::time::Instant) -> tokio::time::Instant {
    static EPOCH: std::sync::LazyLock<tokio::time::Instant> =
        std::sync::LazyLock::new(tokio::time::Instant::now);
    let step = FILL_GRID.as_nanos();
    let since = at.saturating_duration_since(*EPOCH).as_nanos();
    *EPOCH + Duration::from_nanos((since.div_ceil(step) * step) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn look(running: u64, deadline: u64, at: tokio::time::Instant) -> FillLook {
        FillLook {
            wait: Duration::ZERO,
            running,
            at,
            deadline,
        }
    }

    #[test]
    fn a_later_due_time_is_converted_from_the_last_look() {
        let at = tokio::time::Instant::now();
        // Looked at running time 5 s; the fill deadline is 300 ms.
        let look = look(5000 * MS, 300 * MS, at);
        // The audio runs out at 5.02 s: due 320 ms after the look.
        let due = look.due(5020 * MS).unwrap();
        assert_eq!(due - at, Duration::from_millis(320));
        // Nothing placed yet, or already overdue by the look: look again.
        assert_eq!(look.due(0), None);
        assert_eq!(look.due(4000 * MS), None);
    }

    #[test]
    fn an_old_look_is_not_converted_from() {
        let Some(long_ago) = tokio::time::Instant::now().checked_sub(CLOCK_TRUSTED * 2) else {
            return; // the machine's clock starts later than that
        };
        assert_eq!(look(5000 * MS, 300 * MS, long_ago).due(5020 * MS), None);
    }

    #[test]
    fn wakes_fall_on_the_grid_and_never_early() {
        let now = tokio::time::Instant::now();
        let step = FILL_GRID.as_nanos();
        let mut previous: Option<tokio::time::Instant> = None;
        for ms in [0u64, 1, 7, 19, 20, 21, 333] {
            let at = now + Duration::from_millis(ms);
            let woken = on_grid_at(at);
            assert!(woken >= at, "{ms} ms: woken before it is due");
            assert!(woken - at < FILL_GRID, "{ms} ms: a grid step late or more");
            // Every wake is a whole number of grid steps from every other.
            if let Some(p) = previous {
                assert_eq!((woken - p).as_nanos() % step, 0);
            }
            previous = Some(woken);
        }
    }
}
