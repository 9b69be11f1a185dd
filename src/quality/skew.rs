//! Clock skew between the sender's `media.timestamp` clock and ours: maps a
//! sender timestamp onto the local clock, following a sender clock that runs
//! fast or slow, through network jitter. Placing buffers is the src's job.
//!
//! Each arrival gives the transit drift y = (local − local₀) − (sender −
//! sender₀): the network delay, minus the first chunk's, plus the clocks'
//! drift. Delay varies only upwards from the path's minimum, so the lowest y
//! of each 10 s window of sender time lies close to minimum delay + drift.
//! A least-squares line through the last 30 window minima (5 minutes), fitted
//! again without those left far above it by congestion, gives the offset and
//! the skew. The mapping slews towards that line at no more than
//! [`MAX_SLEW_PPM`], so consecutive chunks stay contiguous to within
//! microseconds while it converges (in under a minute from any first
//! arrival up to 50 ms late) and while it tracks the drift.

/// Sender time each window of arrivals covers.
const WINDOW_NS: f64 = 10e9;
/// Window minima the line is fitted to: 5 minutes.
const WINDOWS: usize = 30;
/// A window minimum this far above the first fit was congestion: the second
/// fit leaves it out.
const OUTLIER_NS: f64 = 2e6;
/// Fastest the mapping moves against the sender's clock: 1 ms per second,
/// so 20 µs across a 20 ms chunk, a sixth of an 8 kHz sample.
pub const MAX_SLEW_PPM: f64 = 1000.0;

/// Estimates where sender timestamps fall on the local clock.
///
/// Times are nanoseconds: the sender's (`media.timestamp` × 10⁶) and the
/// local arrival time (running time, or any clock that does not jump). The
/// estimate is the arrival time a chunk would have had with the least
/// network delay seen, so it sits a little before most arrivals. One
/// allocation per estimator (and per reset): the window minima are a fixed
/// ring, kept out of line (once a line is fitted, after 20 s, a chunk
/// reads them only when a window closes, every 10 s).
#[derive(Debug, Clone)]
pub struct SkewEstimator {
    /// The first (sender, local) pair; everything else is relative to it.
    origin: Option<(u64, u64)>,
    /// Sender time (relative) where the open window starts.
    window_start: f64,
    /// Lowest (x, y) of the open window.
    window_min: (f64, f64),
    /// Lowest point of each closed window, a ring of the last `WINDOWS`.
    minima: Box<[(f64, f64); WINDOWS]>,
    closed: usize,
    /// The fitted line y = offset + rate · x, once two windows closed.
    line: Option<(f64, f64)>,
    /// The mapping's current y (the estimate is local₀ + x + correction)
    /// and the x it was set at.
    correction: f64,
    last_x: f64,
}

impl Default for SkewEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl SkewEstimator {
    /// An estimator that has seen nothing yet.
    pub fn new() -> Self {
        Self {
            origin: None,
            window_start: 0.0,
            window_min: (0.0, 0.0),
            minima: Box::new([(0.0, 0.0); WINDOWS]),
            closed: 0,
            line: None,
            correction: 0.0,
            last_x: 0.0,
        }
    }

    /// Forgets everything (a new stream).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Takes the arrival at `local_ns` of the chunk stamped `sender_ns` and
    /// returns where that timestamp belongs on the local clock. The first
    /// chunk maps to its own arrival; from then on the mapping moves
    /// against the sender's clock by at most [`MAX_SLEW_PPM`] of the sender
    /// time between calls.
    pub fn observe(&mut self, sender_ns: u64, local_ns: u64) -> u64 {
        let Some((sender0, local0)) = self.origin else {
            self.origin = Some((sender_ns, local_ns));
            return local_ns;
        };
        let x = sender_ns as f64 - sender0 as f64;
        let y = (local_ns as f64 - local0 as f64) - x;
        if x >= self.window_start + WINDOW_NS {
            self.close_window();
            self.window_start += WINDOW_NS * ((x - self.window_start) / WINDOW_NS).floor();
            self.window_min = (x, y);
        } else if y < self.window_min.1 {
            self.window_min = (x, y);
        }
        let target = match self.line {
            Some((offset, rate)) => offset + rate * x,
            None => self.lowest_so_far(),
        };
        let max = (x - self.last_x).abs() * MAX_SLEW_PPM * 1e-6;
        self.correction += (target - self.correction).clamp(-max, max);
        self.last_x = x;
        to_ns(local0, x, self.correction)
    }

    /// Where `sender_ns` falls on the local clock by the current mapping
    /// (continued at the estimated skew), or `None` before any arrival.
    pub fn local_time(&self, sender_ns: u64) -> Option<u64> {
        let (sender0, local0) = self.origin?;
        let x = sender_ns as f64 - sender0 as f64;
        let rate = self.line.map_or(0.0, |(_, rate)| rate);
        Some(to_ns(local0, x, self.correction + rate * (x - self.last_x)))
    }

    /// How much faster our clock runs than the sender's, in parts per
    /// million (0 until 20 s of arrivals are in).
    pub fn skew_ppm(&self) -> f64 {
        self.line.map_or(0.0, |(_, rate)| rate * 1e6)
    }

    /// Before a line can be fitted: the lowest transit drift seen.
    fn lowest_so_far(&self) -> f64 {
        let closed = self.minima[..self.closed.min(WINDOWS)].iter().map(|p| p.1);
        closed.fold(self.window_min.1, f64::min)
    }

    /// Keeps the open window's minimum and fits the line again.
    fn close_window(&mut self) {
        self.minima[self.closed % WINDOWS] = self.window_min;
        self.closed += 1;
        let points = &self.minima[..self.closed.min(WINDOWS)];
        let Some(first) = fit(points, |_| true) else {
            return;
        };
        let below = |p: &(f64, f64)| p.1 - (first.0 + first.1 * p.0) <= OUTLIER_NS;
        self.line = fit(points, below).or(Some(first));
    }
}

/// local₀ + x + y, in whole nanoseconds (never before 0).
fn to_ns(local0: u64, x: f64, y: f64) -> u64 {
    (local0 as f64 + x + y).round().max(0.0) as u64
}

/// Least-squares line (offset, rate) through the `points` that `keep`
/// keeps, if at least two are kept.
fn fit(points: &[(f64, f64)], keep: impl Fn(&(f64, f64)) -> bool) -> Option<(f64, f64)> {
    let kept = || points.iter().filter(|p| keep(p));
    let n = kept().count();
    if n < 2 {
        return None;
    }
    let mean_x = kept().map(|p| p.0).sum::<f64>() / n as f64;
    let mean_y = kept().map(|p| p.1).sum::<f64>() / n as f64;
    let sxx: f64 = kept().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = kept().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let rate = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    Some((mean_y - rate * mean_x, rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1e6;
    const CHUNK_NS: u64 = 20_000_000;
    const HOUR_CHUNKS: u64 = 3600 * 50;

    /// xorshift64: a fixed, dependency-free sequence.
    struct XorShift(u64);

    impl XorShift {
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// One chunk of a simulated call: its timestamp, when it arrived, and
    /// when it would have arrived with the least network delay (the truth
    /// the estimate should find), in ns.
    struct Arrival {
        sender: u64,
        local: u64,
        truth: f64,
    }

    /// An hour of 20 ms chunks from a sender clock `ppm` off ours: 80 ms
    /// base delay, up to `jitter_ms` more, in order (one TCP stream);
    /// every 7 minutes a 1.5 s stall delivers its chunks at once at its
    /// end, and every 20 minutes 25 s of congestion add 80 ms.
    fn call(ppm: f64, jitter_ms: f64, seed: u64) -> Vec<Arrival> {
        let mut rng = XorShift(seed);
        let local0 = 5e9;
        let mut last = 0.0f64;
        (0..HOUR_CHUNKS)
            .map(|i| {
                let sender = 155 * 1_000_000 + i * CHUNK_NS;
                let x = (i * CHUNK_NS) as f64;
                let truth = local0 + x * (1.0 + ppm * 1e-6) + 80.0 * MS;
                let mut local = truth + rng.unit() * jitter_ms * MS;
                let minute = x / 60e9;
                if minute % 20.0 >= 11.0 && minute % 20.0 < 11.0 + 25.0 / 60.0 {
                    local += 80.0 * MS;
                }
                let stall = (x - 3e9) % 420e9;
                if jitter_ms > 0.0 && (0.0..1.5e9).contains(&stall) {
                    local = local.max(truth - stall + 1.5e9);
                }
                local = local.max(last);
                last = local;
                Arrival {
                    sender,
                    local: local.round() as u64,
                    truth,
                }
            })
            .collect()
    }

    /// Runs a call through an estimator; returns the worst error after
    /// `settle_s` seconds (ms), the worst change of the mapping between
    /// consecutive chunks (ns), and the final skew estimate.
    fn run(arrivals: &[Arrival], settle_s: u64) -> (f64, f64, f64) {
        let mut est = SkewEstimator::new();
        let (mut worst, mut step) = (0.0f64, 0.0f64);
        let mut prev: Option<(u64, u64)> = None;
        for (i, a) in arrivals.iter().enumerate() {
            let mapped = est.observe(a.sender, a.local);
            if i as u64 >= settle_s * 50 {
                worst = worst.max((mapped as f64 - a.truth).abs() / MS);
            }
            if let Some((s, m)) = prev {
                let moved = (mapped as f64 - m as f64) - (a.sender - s) as f64;
                step = step.max(moved.abs());
            }
            prev = Some((a.sender, mapped));
        }
        (worst, step, est.skew_ppm())
    }

    #[test]
    fn an_hour_at_100_ppm_either_way_stays_within_20_ms() {
        for (ppm, seed) in [(100.0, 1), (-100.0, 2)] {
            let (worst, step, skew) = run(&call(ppm, 50.0, seed), 120);
            println!("{ppm} ppm: worst {worst:.2} ms, step {step:.0} ns, skew {skew:.2} ppm");
            // Unmapped, the timestamps would be 360 ms off by the end.
            assert!(worst < 20.0, "{ppm} ppm: {worst:.2} ms off");
            assert!((skew - ppm).abs() < 2.0, "{ppm} ppm: estimated {skew:.2}");
            // At most 20 µs per 20 ms chunk, and a nanosecond of rounding.
            assert!(step <= 20_001.0, "{ppm} ppm: moved {step} ns in a chunk");
        }
    }

    #[test]
    fn no_skew_stays_at_zero() {
        // Without jitter the mapping is exactly the arrivals.
        let arrivals = call(0.0, 0.0, 3);
        let mut est = SkewEstimator::new();
        for a in &arrivals[..30_000] {
            assert_eq!(est.observe(a.sender, a.local), a.local);
        }
        assert_eq!(est.skew_ppm(), 0.0);
        // With it, the skew stays near zero and the mapping near the truth.
        let (worst, _, skew) = run(&call(0.0, 50.0, 4), 120);
        assert!(skew.abs() < 1.0, "{skew:.3} ppm");
        assert!(worst < 20.0, "{worst:.2} ms");
    }

    #[test]
    fn the_first_arrival_anchors_and_then_slews() {
        // The first chunk came 50 ms late, the rest on time: the mapping
        // starts at that arrival and moves back at 1 ms per second.
        let mut est = SkewEstimator::new();
        assert_eq!(est.local_time(0), None);
        assert_eq!(est.observe(0, 1_050 * 1_000_000), 1_050 * 1_000_000);
        let mut mapped = 0;
        for i in 1..=1000u64 {
            mapped = est.observe(i * CHUNK_NS, 1_000 * 1_000_000 + i * CHUNK_NS);
        }
        // After 20 s: 20 ms of the 50 made up.
        assert_eq!(mapped, 1_030 * 1_000_000 + 1000 * CHUNK_NS);
        assert_eq!(est.local_time(1000 * CHUNK_NS), Some(mapped));
        for i in 1001..=5000u64 {
            mapped = est.observe(i * CHUNK_NS, 1_000 * 1_000_000 + i * CHUNK_NS);
        }
        assert_eq!(mapped, 1_000 * 1_000_000 + 5000 * CHUNK_NS);
        est.reset();
        assert_eq!(est.local_time(0), None);
    }

    #[test]
    fn the_mapping_continues_at_the_estimated_skew() {
        let arrivals = call(100.0, 0.0, 5);
        let mut est = SkewEstimator::new();
        for a in &arrivals[..50 * 600] {
            est.observe(a.sender, a.local);
        }
        let last = &arrivals[50 * 600 - 1];
        let mapped = est.local_time(last.sender).unwrap();
        // A minute on, at the estimated skew: 60 s + 6 ms.
        let later = est.local_time(last.sender + 60_000_000_000).unwrap();
        let ahead = (later - mapped) as f64 - 60e9;
        assert!((ahead - 6.0 * MS).abs() < 0.05 * MS, "{ahead} ns");
    }
}
