//! `shared-threads`: the fill timer. With nothing arriving no network task
//! runs for the call, so each claimed call gets one timer task on the
//! runtime that sleeps until the audio is the fill deadline overdue and then
//! pushes the fill (a GAP buffer, see `timing`; the push is
//! `shared_threads`' `fill_shared`), under the same rules as a drain: only
//! while flowing, not after a fallback, never during a drain. It wakes about
//! once per fill deadline while chunks come (the due time only moves later
//! as they do), not once per chunk. Those wakes are made cheap, as hundreds
//! of calls each have one:
//! - Between two looks at the pipeline's clock (at most [`CLOCK_TRUSTED`]
//!   apart), the timer converts the running time at which the audio placed
//!   so far runs out (`Shared::runs_out`, stored with each chunk) to a
//!   time of its own from the last look: a wake that finds the due time
//!   moved later sleeps on without the element's locks or a clock read
//!   (upgrading the timer's weak reference to the element takes GLib's
//!   global weak-reference read lock, briefly).
//! - Its wakes fall on a grid of [`FILL_GRID`], so that many calls' wakes
//!   share one wake-up of the runtime (a fill is at most that much later).

use std::sync::atomic::Ordering;
use std::time::Duration;

use gst::subclass::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};
use super::timeline::Timeline;
use crate::lock::Locked;
use crate::runtime::RUNTIME;

/// The fill timer wakes on multiples of this (from the process's first
/// timer): the wakes of all calls' timers coincide in fewer wake-ups.
const FILL_GRID: Duration = Duration::from_millis(20);

/// Tests only: the srcs (by address) whose fill timer looked while their
/// stream was ended before the call.
#[cfg(test)]
pub(super) static LOOKED_ENDED: std::sync::Mutex<Vec<usize>> = std::sync::Mutex::new(Vec::new());

/// How long the fill timer converts running time to its own time from one
/// look at the pipeline's clock, which may run at another rate (100 ppm
/// over this is 1 ms).
const CLOCK_TRUSTED: Duration = Duration::from_secs(10);

impl TwilioStreamSrc {
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
                    // (None: the run is over, or the src panicked.)
                    match src.imp().on_network(|imp| imp.timer_look(run)) {
                        Some(Some(look)) => look,
                        _ => return,
                    }
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
                    src.imp().on_network(Self::fill_shared);
                }
            }
        });
    }

    /// The fill timer's look: None once its run is over (or the call), else
    /// the look at the clock, if the fill may be pushed now. After an EOS
    /// sent to the element the timer waits, not ends: a flush before the
    /// streaming thread carried the EOS out drops it, and the stream (its
    /// fills with it) goes on (`resume_after_dropped_eos` wakes the timer).
    fn timer_look(&self, run: u64) -> Option<Option<FillLook>> {
        let (finished, after_eos) = {
            let state = self.state.locked();
            (state.finished, state.after_eos)
        };
        if self.shared.runs.load(Ordering::SeqCst) != run || finished {
            return None;
        }
        if after_eos {
            gst::debug!(CAT, imp = self, "the stream ended: the fill timer waits");
            #[cfg(test)]
            {
                use gst::prelude::*;
                LOOKED_ENDED.locked().push(self.obj().as_ptr() as usize);
            }
            return Some(None);
        }
        // (Held, the gate's release wakes the timer.)
        Some(
            (self.shared.pushing() && !self.shared.gate.holding())
                .then(|| self.fill_look())
                .flatten(),
        )
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
        let ahead = (runs_out.checked_add(self.deadline)?).checked_sub(self.running)?;
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
