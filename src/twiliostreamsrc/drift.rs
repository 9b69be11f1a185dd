//! Twilio's clock against ours: the small correction the [`Timeline`] adds
//! to its timestamps so that a sender clock running fast or slow does not
//! carry the output away from real time over a long call (pure).
//!
//! The timeline places samples by counting them (8000 per second of
//! Twilio's clock). A sender clock 100 ppm fast puts 0.36 s more audio in an
//! hour than our clock sees pass, so timestamps by count alone would run
//! 0.36 s ahead of the arrivals. [`SkewEstimator`] measures the skew from
//! the arrivals (robust to jitter and bursts); the correction follows the
//! skew only, not the estimator's offset: the stream stays anchored where
//! the timeline anchored it (the first chunk's arrival), and the correction
//! is the drift accumulated since, `skew × Twilio time since the anchor`.
//! It moves by at most [`MAX_SLEW_PPM`] of the audio it covers (20 µs per
//! 20 ms chunk, a sixth of a sample), and the timeline lets buffer
//! durations absorb those steps, so buffers stay exactly contiguous. For
//! the first 20 s (until the estimator has a skew) the correction is 0; a
//! skew beyond [`MAX_SKEW_PPM`] is taken for a broken sender, not a clock,
//! and ignored.
//!
//! [`Timeline`]: super::timeline::Timeline

use crate::quality::SkewEstimator;

/// Fastest the correction moves: 1000 ppm of the audio it covers.
pub const MAX_SLEW_PPM: f64 = 1000.0;
/// Largest skew believed to be a clock's (crystal clocks are within ±100).
pub const MAX_SKEW_PPM: f64 = 500.0;
/// Nanoseconds per 8 kHz sample.
const NS_PER_SAMPLE: f64 = 125_000.0;
/// Where the first timestamp lies on the sender's clock given the
/// estimator (ns): 52 days of room for timestamps stepping back from it,
/// and a double still holds every nanosecond around it.
const ORIGIN_NS: u64 = 1 << 52;

/// The drift correction of one stream.
#[derive(Debug, Clone, Default)]
pub struct Drift {
    estimator: SkewEstimator,
    /// The first `media.timestamp` (ms) the estimator took: it is given
    /// times from there (plus [`ORIGIN_NS`]), so that any u64 timestamp
    /// fits its nanoseconds.
    origin_ms: Option<u64>,
    /// `media.timestamp` (ms) from which the drift is counted: the anchor.
    base_ms: Option<u64>,
    /// Nanoseconds to add to the sample-count time, now.
    correction: f64,
}

impl Drift {
    /// Takes a chunk stamped `timestamp_ms` of `samples` 8 kHz samples that
    /// arrived at `arrival_ns` (any steady clock), and moves the correction.
    pub fn observe(&mut self, timestamp_ms: u64, arrival_ns: u64, samples: u64) {
        let origin = *self.origin_ms.get_or_insert(timestamp_ms);
        let sender_ns = (timestamp_ms as i128 - origin as i128) * 1_000_000 + ORIGIN_NS as i128;
        self.estimator
            .observe(sender_ns.clamp(0, u64::MAX.into()) as u64, arrival_ns);
        let base = *self.base_ms.get_or_insert(timestamp_ms);
        let ppm = self.estimator.skew_ppm();
        let rate = if ppm.abs() <= MAX_SKEW_PPM {
            ppm * 1e-6
        } else {
            0.0
        };
        let x = timestamp_ms.saturating_sub(base) as f64 * 1e6;
        let max = samples as f64 * NS_PER_SAMPLE * MAX_SLEW_PPM * 1e-6;
        self.correction += (rate * x - self.correction).clamp(-max, max);
    }

    /// Nanoseconds to add to the sample-count time of the current position.
    pub fn correction(&self) -> i64 {
        self.correction.round() as i64
    }

    /// The stream is anchored anew at the chunk stamped `timestamp_ms`:
    /// drift counts from there, the skew estimate is kept.
    pub fn rebase(&mut self, timestamp_ms: u64) {
        self.base_ms = Some(timestamp_ms);
        self.correction = 0.0;
    }

    /// The timestamps broke (an implausible jump): start measuring again.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The skew estimated so far, in ppm (our clock against the sender's).
    pub fn skew_ppm(&self) -> f64 {
        self.estimator.skew_ppm()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use gst::ClockTime;

    use super::*;
    use crate::twiliostreamsrc::timeline::{Chunk, Timeline};

    /// xorshift64: uniform in [0, 1), fixed and dependency-free.
    fn unit(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An hour of 20 ms chunks from a sender `ppm` fast (positive) or slow,
    /// through the timeline: 40 ms least delay plus up to 40 ms of jitter
    /// (in order, one TCP stream), a 1 s stall every 10 minutes. Returns the
    /// worst distance (ns) of a PTS after the first minute from where it
    /// belongs, and the worst step between consecutive buffers' PTS and the
    /// previous end (ns), and the estimated skew.
    fn hour(ppm: f64, seed: u64) -> (f64, i64, f64) {
        let mut rng = seed;
        let t0 = Instant::now();
        // Sender time x (ns) reaches us after (1 - ppm) x of our time: a fast
        // sender stamps more than our clock sees pass.
        let local = |x: f64| x / (1.0 + ppm * 1e-6);
        let mut last = 0.0f64;
        let mut timeline: Option<Timeline> = None;
        let (mut worst, mut step) = (0.0f64, 0i64);
        let mut prev_end: Option<ClockTime> = None;
        let mut first_arrival = 0.0;
        for i in 0..3600 * 50u64 {
            let x = (i * 20_000_000) as f64;
            let truth = local(x + 20e6) + 40e6;
            let mut at = truth + unit(&mut rng) * 40e6;
            let stall = x % 600e9;
            if (5e9..6e9).contains(&stall) {
                at = at.max(truth - (stall - 5e9) + 1e9);
            }
            at = at.max(last);
            last = at;
            let chunk = Chunk {
                timestamp_ms: 1000 + i * 20,
                number: Some(i + 1),
                samples: 160,
                arrival: t0 + Duration::from_nanos(at as u64),
            };
            // Running time = the arrival time; processed on arrival.
            let now = ClockTime::from_nseconds(at as u64);
            let timeline = match &mut timeline {
                Some(t) => {
                    assert!(!t.place(&chunk).discont, "chunk {i}");
                    t
                }
                None => {
                    first_arrival = at;
                    timeline.insert(Timeline::first(
                        &chunk,
                        now,
                        Duration::ZERO,
                        ClockTime::ZERO,
                        false,
                    ))
                }
            };
            let span = timeline.span(160, 1, ClockTime::ZERO);
            if let Some(end) = prev_end {
                step = step.max((span.pts.nseconds() as i64 - end.nseconds() as i64).abs());
            }
            prev_end = Some(span.pts + span.duration);
            // Where it belongs: anchored like the first chunk, then on our
            // clock (spoken 20 ms before its least-delay arrival).
            let belongs = first_arrival - 20e6 + (local(x) - local(0.0));
            if i >= 50 * 60 {
                worst = worst.max((span.pts.nseconds() as f64 - belongs).abs());
            }
            timeline.advance(160);
        }
        (worst, step, timeline.unwrap().skew_ppm())
    }

    #[test]
    fn an_hour_at_100_ppm_either_way_stays_within_20_ms_and_contiguous() {
        for (ppm, seed) in [(100.0, 7), (-100.0, 11), (0.0, 13)] {
            let (worst, step, skew) = hour(ppm, seed);
            // The sender's skew seen from our clock is the opposite sign.
            assert!((skew + ppm).abs() < 3.0, "{ppm} ppm: estimated {skew:.2}");
            assert!(worst < 20e6, "{ppm} ppm: {:.2} ms off", worst / 1e6);
            assert_eq!(step, 0, "{ppm} ppm: not contiguous");
        }
    }

    /// Hours of 20 ms chunks from a sender `ppm` fast, each arriving 40 ms
    /// after it was spoken (no jitter): how many placements took the
    /// timestamp for garbage far ahead, and the worst distance (ns) of a
    /// PTS after the first minute from where it belongs.
    fn hours_fast(ppm: f64, hours: u64) -> (u64, f64) {
        let t0 = Instant::now();
        let local = |x: f64| x / (1.0 + ppm * 1e-6);
        let mut timeline: Option<Timeline> = None;
        let (mut ignored, mut worst) = (0, 0.0f64);
        for i in 0..hours * 3600 * 50 {
            let x = (i * 20_000_000) as f64;
            let at = local(x + 20e6) + 40e6;
            let chunk = Chunk {
                timestamp_ms: 155 + i * 20,
                number: Some(i + 1),
                samples: 160,
                arrival: t0 + Duration::from_nanos(at as u64),
            };
            let now = ClockTime::from_nseconds(at as u64);
            let timeline = match &mut timeline {
                Some(t) => {
                    ignored += u64::from(t.place(&chunk).ignored_ahead.is_some());
                    t
                }
                None => timeline.insert(Timeline::first(
                    &chunk,
                    now,
                    Duration::ZERO,
                    ClockTime::ZERO,
                    false,
                )),
            };
            let span = timeline.span(160, 1, ClockTime::ZERO);
            let belongs = local(x + 20e6) + 40e6 - 20e6;
            if i >= 50 * 60 {
                worst = worst.max((span.pts.nseconds() as f64 - belongs).abs());
            }
            timeline.advance(160);
        }
        (ignored, worst)
    }

    /// A sender clock 400 ppm fast (a clock, not garbage: under
    /// MAX_SKEW_PPM) is 10 s ahead of ours after 7 h. Its timestamps are
    /// no garbage for that: the drift correction keeps following them.
    #[test]
    fn a_fast_sender_clock_over_hours_is_no_garbage() {
        let (ignored, worst) = hours_fast(400.0, 8);
        assert_eq!(ignored, 0, "timestamps taken for garbage");
        assert!(worst < 20e6, "{:.2} ms off", worst / 1e6);
    }

    /// The skew is measured from timestamps anywhere in their range: one
    /// past 2^53 ms (a JSON number beyond a double's integers) as well.
    #[test]
    fn the_skew_is_measured_at_any_timestamp() {
        for first in [155, 1 << 32, 1 << 53, u64::MAX - 3_600_000] {
            let mut drift = Drift::default();
            // 400 ppm: our clock sees 20.008 ms per 20 ms chunk.
            for i in 0..5000u64 {
                drift.observe(first + i * 20, i * 20_008_000, 160);
            }
            assert!(
                (drift.skew_ppm() - 400.0).abs() < 1.0,
                "first timestamp {first}: {} ppm",
                drift.skew_ppm()
            );
        }
    }

    #[test]
    fn the_correction_slews_at_most_20_us_per_chunk() {
        let mut drift = Drift::default();
        // Arrivals 1 % slow (a broken sender): ignored beyond MAX_SKEW_PPM.
        for i in 0..5000u64 {
            drift.observe(i * 20, i * 20_200_000, 160);
        }
        assert_eq!(drift.correction(), 0);
        // 400 ppm: followed, at most 20 µs per chunk.
        let mut drift = Drift::default();
        let mut prev = 0;
        for i in 0..5000u64 {
            drift.observe(i * 20, i * 20_008_000, 160);
            assert!((drift.correction() - prev).abs() <= 20_001);
            prev = drift.correction();
        }
        let expected = 400e-6 * 4999.0 * 20e6;
        assert!((prev as f64 - expected).abs() < 1e6, "{prev} ns");
        drift.rebase(5000 * 20);
        assert_eq!(drift.correction(), 0);
        assert!(drift.skew_ppm() > 390.0);
    }
}
