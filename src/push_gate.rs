//! Pushes a `shared-threads` src makes from the network threads, held back
//! while a sink they reach on that thread pauses.
//!
//! A bin pauses its sinks before their sources. A buffer pushed into a sink
//! that has just paused is prerolled there: BaseSink holds the pushing
//! thread until PLAYING, and a network thread held runs no other call. So
//! such a src has a [`PushGate`]: every push from a network thread passes
//! it ([`PushGate::enter`]; a drain passes it at each buffer, as a sink
//! may pause between two, from a bus sync handler on that very thread),
//! and the src names itself in a thread-local while it drains
//! ([`pushing_as`]), so that a sink rendering on that thread learns which
//! srcs feed it ([`pusher`]). On PLAYING → PAUSED such a sink, before
//! BaseSink pauses, [`holds`](PushGate::hold) their gates and waits
//! (briefly, bounded: [`PushGate::settle`]) for the pushes already past
//! them; the srcs then leave what comes in the call's queue, and keep what
//! they made but could not push, until no sink holds them
//! ([`PushGate::release`] says when to go on). A sink behind a `queue`
//! renders on the queue's thread, learns no src and holds nothing: the
//! push into the queue does not wait for it.
//!
//! Lock-free, and inside the src's own state: a push touches no other
//! cache line.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a pausing sink waits for the pushes already past a gate: a push
/// takes microseconds; one that takes longer is held downstream, and a
/// state change must not hang on it (that push may then preroll).
pub const PAUSE_WAIT: Duration = Duration::from_millis(100);

thread_local! {
    /// The address of the src whose push is under way on this thread (0: none).
    static PUSHER: Cell<usize> = const { Cell::new(0) };
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct PushGate {
    /// Sinks fed through the gate that are paused (or pausing).
    holds: AtomicUsize,
    /// Pushes past the gate, not returned yet.
    in_flight: AtomicUsize,
    /// Something was held back: the src is to go on once no sink holds.
    held_back: AtomicBool,
}

/// A push under way past a gate: ends when dropped.
#[must_use]
pub struct Pushing<'a>(&'a PushGate);

impl Drop for Pushing<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The src named on this thread: restores the one before when dropped.
#[must_use]
pub struct Pusher(usize);

impl Drop for Pusher {
    fn drop(&mut self) {
        PUSHER.set(self.0);
    }
}

/// Names the src at `address` as the one pushing on this thread.
pub fn pushing_as(address: usize) -> Pusher {
    Pusher(PUSHER.replace(address))
}

/// The address of the src whose push is under way on this thread (0: none).
pub fn pusher() -> usize {
    PUSHER.get()
}

impl PushGate {
    /// Begins a push, unless a sink holds the gate: then None, and
    /// [`release`](Self::release) says when to go on.
    pub fn enter(&self) -> Option<Pushing<'_>> {
        // SeqCst against `hold`: either it sees this push, or this sees it.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.holding() {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Pushing(self))
    }

    /// Whether a sink holds the gate (then [`release`](Self::release) says
    /// when to go on): a push under way stops before the next thing it
    /// would push.
    pub fn holding(&self) -> bool {
        if self.holds.load(Ordering::SeqCst) == 0 {
            return false;
        }
        self.held_back.store(true, Ordering::SeqCst);
        // The last release may have come between the two looks and found
        // nothing held back: then this goes on itself.
        !(self.holds.load(Ordering::SeqCst) == 0 && self.held_back.swap(false, Ordering::SeqCst))
    }

    /// A sink fed through the gate pauses: pushes are held back from now
    /// on. Whether one is under way, past the gate already (see
    /// [`settle`](Self::settle)).
    pub fn hold(&self) -> bool {
        self.holds.fetch_add(1, Ordering::SeqCst);
        self.in_flight.load(Ordering::SeqCst) != 0
    }

    /// Waits up to `bound` until no push is under way; not on a network
    /// thread (the push under way may be this thread's own). False if one
    /// still is.
    pub fn settle(&self, bound: Duration) -> bool {
        if crate::runtime::on_runtime() {
            return self.in_flight.load(Ordering::SeqCst) == 0;
        }
        let until = Instant::now() + bound;
        while self.in_flight.load(Ordering::SeqCst) != 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_micros(200)));
        }
        true
    }

    /// Ends a [`hold`](Self::hold). True when it was the last and something
    /// was held back: the src is to go on (what the call queued meanwhile).
    pub fn release(&self) -> bool {
        let before = self.holds.fetch_sub(1, Ordering::SeqCst);
        debug_assert!(before > 0, "released more often than held");
        before == 1 && self.held_back.swap(false, Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_sink_learns_the_src_pushing_on_its_thread() {
        assert_eq!(pusher(), 0, "no push under way");
        {
            let _a = pushing_as(0xa0);
            assert_eq!(pusher(), 0xa0);
            {
                let _b = pushing_as(0xb0);
                assert_eq!(pusher(), 0xb0);
            }
            assert_eq!(pusher(), 0xa0);
        }
        assert_eq!(pusher(), 0);
        std::thread::spawn(|| assert_eq!(pusher(), 0))
            .join()
            .unwrap();
    }

    #[test]
    fn pushes_are_held_back_until_the_last_release_says_go_on() {
        let gate = PushGate::default();
        assert!(!gate.hold(), "nothing under way");
        assert!(!gate.hold());
        assert!(gate.enter().is_none());
        assert!(!gate.release(), "one sink still holds");
        assert!(gate.enter().is_none());
        assert!(gate.release(), "something was held back");
        assert!(gate.enter().is_some());
        // Nothing held back: nothing to go on with.
        gate.hold();
        assert!(!gate.release());
    }

    #[test]
    fn a_hold_waits_for_the_push_under_way() {
        let gate = Arc::new(PushGate::default());
        let (entered, at_push) = std::sync::mpsc::channel();
        let pusher = {
            let gate = gate.clone();
            std::thread::spawn(move || {
                let pushing = gate.enter().unwrap();
                entered.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(20));
                drop(pushing);
            })
        };
        at_push.recv().unwrap();
        assert!(gate.hold(), "a push under way");
        assert!(gate.settle(Duration::from_secs(60)), "waited it out");
        assert_eq!(gate.in_flight.load(Ordering::SeqCst), 0);
        pusher.join().unwrap();
        gate.release();
    }

    #[test]
    fn a_hold_gives_up_after_its_bound() {
        let gate = PushGate::default();
        let pushing = gate.enter().unwrap();
        let started = Instant::now();
        assert!(gate.hold());
        assert!(!gate.settle(Duration::from_millis(5)));
        assert!(started.elapsed() >= Duration::from_millis(5));
        drop(pushing);
        gate.release();
    }

    #[test]
    fn a_release_racing_a_push_never_leaves_it_held_back() {
        // Whatever the interleaving, a push either goes, or the release
        // says to go on.
        for _ in 0..500 {
            let gate = Arc::new(PushGate::default());
            gate.hold();
            let pusher = {
                let gate = gate.clone();
                std::thread::spawn(move || gate.enter().is_some())
            };
            let go_on = gate.release();
            let went = pusher.join().unwrap();
            assert!(went || go_on);
        }
    }
}
