//! Interarrival jitter of one track's media chunks (RFC 3550, 6.4.1), and
//! the count of chunks that came later than the latency allows. Plain
//! numbers in; turning them into counters and messages is the elements' job.

use std::time::Duration;

/// Jitter and lateness of one track, fed every chunk as it arrives.
///
/// Transit is the arrival time minus `media.timestamp`; jitter is RFC 3550's
/// running mean of how much consecutive transits differ,
/// `J += (|D| - J) / 16`. A chunk is late when it arrives more than the
/// latency after it was due, where due is where the first chunk's arrival
/// and timestamp put it, moved by the drift correction the src applies to
/// its timestamps (a sender clock 100 ppm slow would otherwise make every
/// chunk late after a while: 0.36 s an hour), as a syncing sink sees it.
#[derive(Debug, Clone)]
pub struct Jitter {
    latency_ns: i128,
    /// Transit of the first chunk (ns).
    first_transit: Option<i128>,
    /// Transit of the last chunk (ns).
    last_transit: i128,
    jitter_ns: f64,
    late: u64,
}

impl Jitter {
    /// A meter that counts chunks more than `latency` behind as late.
    pub fn new(latency: Duration) -> Self {
        Self {
            latency_ns: latency.as_nanos() as i128,
            first_transit: None,
            last_transit: 0,
            jitter_ns: 0.0,
            late: 0,
        }
    }

    /// Changes the latency later chunks are judged by.
    pub fn set_latency(&mut self, latency: Duration) {
        self.latency_ns = latency.as_nanos() as i128;
    }

    /// Takes a chunk stamped `timestamp_ms` that arrived at `arrival` (since
    /// any fixed reference, the same for every chunk), when the src moves
    /// its timestamps by `correction_ns` for the sender's clock drift.
    /// Returns whether it was late.
    pub fn arrived(&mut self, arrival: Duration, timestamp_ms: u64, correction_ns: i64) -> bool {
        let transit = arrival.as_nanos() as i128 - i128::from(timestamp_ms) * 1_000_000;
        let due_transit = transit - i128::from(correction_ns);
        let Some(first) = self.first_transit else {
            self.first_transit = Some(due_transit);
            self.last_transit = transit;
            return false;
        };
        let d = (transit - self.last_transit).abs() as f64;
        self.jitter_ns += (d - self.jitter_ns) / 16.0;
        self.last_transit = transit;
        let late = due_transit - first > self.latency_ns;
        self.late += u64::from(late);
        late
    }

    /// The interarrival jitter so far, in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_ns / 1e6
    }

    /// Chunks that arrived later than the latency allows.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Takes the next chunk for the first one again (the timestamps jumped),
    /// keeping the jitter and the late count.
    pub fn rebase(&mut self) {
        self.first_transit = None;
    }

    /// Starts over (a new stream), keeping the latency.
    pub fn reset(&mut self) {
        *self = Self::new(Duration::from_nanos(self.latency_ns as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Chunk `i`: timestamp 155 + 20 i ms, arriving at 3 s + that + `delay`.
    fn feed(j: &mut Jitter, delays_ms: impl IntoIterator<Item = f64>) -> Vec<bool> {
        delays_ms
            .into_iter()
            .enumerate()
            .map(|(i, delay)| {
                let ts = 155 + 20 * i as u64;
                let delay = Duration::from_micros((delay * 1e3).round() as u64);
                let arrival = Duration::from_secs(3) + Duration::from_millis(ts) + delay;
                j.arrived(arrival, ts, 0)
            })
            .collect()
    }

    #[test]
    fn a_slow_sender_is_judged_where_the_drift_correction_puts_it() {
        // 500 ppm slow: chunk i (timestamp 20 i ms) arrives 10 µs later
        // per chunk than the one before would have it; after 100 s, 50 ms.
        let run = |corrected: bool| {
            let mut j = Jitter::new(20 * MS);
            (0..5000u64)
                .filter(|&i| {
                    let ts = 20 * i;
                    let drift_ns = (ts * 1_000_000) as f64 * 500e-6;
                    let arrival = Duration::from_secs(3)
                        + Duration::from_millis(ts)
                        + Duration::from_nanos(drift_ns as u64);
                    j.arrived(arrival, ts, if corrected { drift_ns as i64 } else { 0 })
                })
                .count()
        };
        // As the src corrects its timestamps, none is late at a syncing
        // sink; judged by the uncorrected mapping, those after 40 s were.
        assert_eq!(run(true), 0);
        assert_eq!(run(false), 2999);
    }

    #[test]
    fn constant_delay_is_no_jitter() {
        let mut j = Jitter::new(100 * MS);
        feed(&mut j, std::iter::repeat_n(37.0, 500));
        assert_eq!(j.jitter_ms(), 0.0);
        assert_eq!(j.late(), 0);
    }

    #[test]
    fn alternating_delay_converges_to_twice_the_swing() {
        // Delays alternate d + 5 and d - 5 ms: every transit differs from
        // the one before by |D| = 10 ms, so after n differences
        // J = 10 (1 - (15/16)^n) ms, which tends to 10 ms.
        let mut j = Jitter::new(100 * MS);
        let delays = |n: usize| (0..n).map(|i| if i % 2 == 0 { 45.0 } else { 35.0 });
        feed(&mut j, delays(11));
        let expected = 10.0 * (1.0 - (15.0f64 / 16.0).powi(10));
        assert!((j.jitter_ms() - expected).abs() < 1e-6, "{}", j.jitter_ms());
        let mut j = Jitter::new(100 * MS);
        feed(&mut j, delays(1000));
        assert!((j.jitter_ms() - 10.0).abs() < 1e-6, "{}", j.jitter_ms());
    }

    #[test]
    fn one_delayed_chunk_adds_its_delay_twice_over_16() {
        // 20 ms late once: D = +20 then -20, J = 20/16 then + (20 - J)/16.
        let mut j = Jitter::new(100 * MS);
        feed(&mut j, [0.0, 0.0, 20.0, 0.0]);
        let first = 20.0 / 16.0;
        let expected = first + (20.0 - first) / 16.0;
        assert!((j.jitter_ms() - expected).abs() < 1e-9, "{}", j.jitter_ms());
    }

    #[test]
    fn chunks_later_than_the_latency_are_counted() {
        // Due times follow the first chunk (delay 10 ms): judged by delays
        // beyond 10 + 100 ms.
        let mut j = Jitter::new(100 * MS);
        let late = feed(&mut j, [10.0, 60.0, 110.0, 111.0, 400.0, 0.0, 10.0]);
        assert_eq!(late, [false, false, false, true, true, false, false]);
        assert_eq!(j.late(), 2);
        // A first chunk that was itself held up makes the later ones early.
        let mut j = Jitter::new(100 * MS);
        feed(&mut j, [200.0, 0.0, 250.0, 300.0, 301.0]);
        assert_eq!(j.late(), 1);
    }

    #[test]
    fn latency_changes_and_reset() {
        let mut j = Jitter::new(100 * MS);
        feed(&mut j, [0.0, 150.0]);
        assert_eq!(j.late(), 1);
        j.set_latency(200 * MS);
        j.reset();
        assert_eq!((j.late(), j.jitter_ms()), (0, 0.0));
        feed(&mut j, [0.0, 150.0, 201.0]);
        assert_eq!(j.late(), 1);
    }
}
