//! Where a stream's audio has reached in real time: the position after its
//! last chunk, moved on by the time since that chunk arrived; or, further,
//! by the chunk that reached furthest lately, so that chunks come late (a
//! burst after a stall) do not hold it back. A jump in the timestamps that
//! the time that passed accounts for (a pause, lost chunks) ends near it;
//! a step in them, its chunks going on in real time, ends beyond it.

use std::time::{Duration, Instant};

use super::NS_PER_SAMPLE;

/// How long the chunk that reached furthest stands for the reach (longer
/// than a burst after a stall, far shorter than the clocks take to drift
/// apart).
const MEMORY: Duration = Duration::from_secs(2);

/// Positions are in 8 kHz samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reach {
    /// The last chunk's arrival and the position after it.
    last: Option<(Instant, u64)>,
    /// The chunk that reached furthest lately: its arrival, the position
    /// after it.
    best: Option<(Instant, u64)>,
}

impl Reach {
    /// A chunk that arrived at `arrival` put the audio up to `end`: the
    /// last, and the best if it reaches further than the one remembered
    /// (or that is old).
    pub fn reached(&mut self, arrival: Instant, end: u64) {
        let fresh = self
            .best
            .filter(|&(at, _)| arrival.saturating_duration_since(at) < MEMORY);
        let best = fresh.filter(|&(at, from)| moved(from, at, arrival) > i128::from(end));
        self.best = best.or(Some((arrival, end)));
        self.last = Some((arrival, end));
    }

    /// Where the audio would have reached by `now` had it gone on in real
    /// time since the last chunk (None before one).
    pub fn last(&self, now: Instant) -> Option<i128> {
        let (at, end) = self.last?;
        Some(moved(end, at, now))
    }

    /// [`last`](Self::last), or further by the chunk that reached furthest
    /// lately.
    pub fn best(&self, now: Instant) -> Option<i128> {
        let (at, end) = self.best?;
        self.last(now).max(Some(moved(end, at, now)))
    }
}

/// `end` moved on by the time from `at` to `now`.
fn moved(end: u64, at: Instant, now: Instant) -> i128 {
    let since = now.saturating_duration_since(at).as_nanos() / u128::from(NS_PER_SAMPLE);
    i128::from(end) + since as i128
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_late_chunks_does_not_hold_the_reach_back() {
        let t0 = Instant::now();
        let ms = |ms: u64| t0 + Duration::from_millis(ms);
        let mut reach = Reach::default();
        assert_eq!(reach.best(t0), None);
        reach.reached(t0, 160);
        // Three chunks held up 100 ms, then a burst.
        for end in [320, 480, 640] {
            reach.reached(ms(120), end);
        }
        // By the last: 100 ms short; by the first, where real time is.
        assert_eq!(reach.last(ms(140)), Some(640 + 160));
        assert_eq!(reach.best(ms(140)), Some(160 + 1120));
        // Forgotten after 2 s: the last stands.
        reach.reached(ms(2001), 800);
        assert_eq!(reach.best(ms(2001)), Some(800));
    }
}
