//! Network trouble for a scripted call, reproducible from a seed: chunks
//! lost (at random, or in bursts), sent late by a random delay (in order,
//! as TCP keeps it), a sender clock off by some ppm, and chunks sent after
//! the next one (Telnyx does not guarantee the order of its media).

use std::time::Duration;

use gsttwiliostream::protocol::Track;

/// What goes wrong on the way. The default: nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Impairments {
    /// Chunks lost, in percent (0–100).
    pub loss_percent: f64,
    /// Losses come in bursts of this many chunks (0 or 1: one at a time).
    pub loss_burst: u32,
    /// Each chunk is sent up to this much later than due (uniform).
    pub jitter: Duration,
    /// The sender's clock runs this many ppm fast (negative: slow): its
    /// 20 ms chunks come every 20 ms / (1 + ppm·10⁻⁶) of real time.
    pub skew_ppm: f64,
    /// Every this many chunks, one is sent after the chunk that follows it
    /// (0: none).
    pub swap_every: u32,
    /// Seeds the random choices: the same seed, the same call.
    pub seed: u64,
}

impl Impairments {
    /// Real time per `chunk` of the sender's time.
    pub fn chunk_interval(&self, chunk: Duration) -> Duration {
        chunk.div_f64(1.0 + self.skew_ppm * 1e-6)
    }
}

/// The random choices, chunk by chunk.
#[derive(Debug, Clone)]
pub struct Impairer {
    impairments: Impairments,
    state: u64,
    /// Chunks of the current burst still to lose, per track (a burst is
    /// one track's chunks in a row).
    burst_left: [u32; 2],
}

impl Impairer {
    pub fn new(impairments: Impairments) -> Impairer {
        Impairer {
            impairments,
            // splitmix64 of the seed, never 0 (xorshift's fixed point).
            state: splitmix(impairments.seed) | 1,
            burst_left: [0; 2],
        }
    }

    /// A uniform number in [0, 1).
    fn uniform(&mut self) -> f64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Whether the next chunk of a one-track stream is lost.
    pub fn lose(&mut self) -> bool {
        self.lose_on(Track::Inbound)
    }

    /// Whether the next chunk of `track` is lost: bursts start with
    /// probability loss/burst, so the loss rate stays `loss_percent`, and
    /// lose that many of the track's chunks in a row.
    pub fn lose_on(&mut self, track: Track) -> bool {
        let left = &mut self.burst_left[track.index()];
        if *left > 0 {
            *left -= 1;
            return true;
        }
        let burst = self.impairments.loss_burst.max(1);
        let p = self.impairments.loss_percent / 100.0 / f64::from(burst);
        if p > 0.0 && self.uniform() < p {
            self.burst_left[track.index()] = burst - 1;
            return true;
        }
        false
    }

    /// Whether chunk `n` (from 0) of a track is held back and sent after
    /// chunk `n + 1`: chunks `swap_every − 1`, `2·swap_every − 1`, …
    pub fn swapped(&self, n: usize) -> bool {
        let every = self.impairments.swap_every as usize;
        every > 0 && (n + 1).is_multiple_of(every)
    }

    /// How late the next chunk is sent.
    pub fn delay(&mut self) -> Duration {
        if self.impairments.jitter.is_zero() {
            return Duration::ZERO;
        }
        self.impairments.jitter.mul_f64(self.uniform())
    }
}

/// splitmix64: a well-mixed 64-bit value from any seed.
pub(crate) fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn losses(impairments: Impairments, n: usize) -> Vec<bool> {
        let mut impairer = Impairer::new(impairments);
        (0..n).map(|_| impairer.lose()).collect()
    }

    #[test]
    fn the_loss_rate_is_as_asked_and_the_seed_repeats_it() {
        let random = Impairments {
            loss_percent: 5.0,
            seed: 7,
            ..Default::default()
        };
        let lost = losses(random, 100_000);
        let rate = lost.iter().filter(|&&l| l).count() as f64 / 1000.0;
        assert!((rate - 5.0).abs() < 0.3, "{rate} %");
        assert_eq!(lost, losses(random, 100_000));
        assert_ne!(lost, losses(Impairments { seed: 8, ..random }, 100_000));
        assert!(losses(Impairments::default(), 1000).iter().all(|&l| !l));
    }

    /// With both tracks, interleaved chunk by chunk, a burst loses that
    /// many of one track's chunks in a row (it once alternated between the
    /// tracks, losing runs of half the burst in each).
    #[test]
    fn bursts_lose_that_many_of_one_track_in_a_row() {
        let mut impairer = Impairer::new(Impairments {
            loss_percent: 10.0,
            loss_burst: 4,
            seed: 1,
            ..Default::default()
        });
        let mut lost = [Vec::new(), Vec::new()];
        for _ in 0..50_000 {
            for track in Track::ALL {
                lost[track.index()].push(impairer.lose_on(track));
            }
        }
        for lost in lost {
            let rate = lost.iter().filter(|&&l| l).count() as f64 / 500.0;
            assert!((rate - 10.0).abs() < 1.0, "{rate} %");
            let runs = lost.split(|&l| !l).filter(|run| !run.is_empty());
            assert!(runs.clone().count() > 100);
            for run in runs {
                assert_eq!(run.len() % 4, 0, "a run of {}", run.len());
            }
        }
    }

    #[test]
    fn bursts_lose_that_many_in_a_row() {
        let bursty = Impairments {
            loss_percent: 10.0,
            loss_burst: 4,
            seed: 1,
            ..Default::default()
        };
        let lost = losses(bursty, 100_000);
        let rate = lost.iter().filter(|&&l| l).count() as f64 / 1000.0;
        assert!((rate - 10.0).abs() < 1.0, "{rate} %");
        // Runs are multiples of 4 (bursts may touch).
        let mut run = 0;
        for &l in lost.iter().chain([false].iter()) {
            if l {
                run += 1;
            } else {
                assert_eq!(run % 4, 0, "a run of {run}");
                run = 0;
            }
        }
    }

    #[test]
    fn every_nth_chunk_is_swapped_with_the_next() {
        let impairer = Impairer::new(Impairments {
            swap_every: 3,
            ..Default::default()
        });
        let swapped: Vec<usize> = (0..10).filter(|&n| impairer.swapped(n)).collect();
        assert_eq!(swapped, [2, 5, 8]);
        let none = Impairer::new(Impairments::default());
        assert!((0..10).all(|n| !none.swapped(n)));
    }

    #[test]
    fn delays_stay_within_the_jitter_and_skew_scales_the_interval() {
        let mut impairer = Impairer::new(Impairments {
            jitter: Duration::from_millis(30),
            ..Default::default()
        });
        let delays: Vec<Duration> = (0..1000).map(|_| impairer.delay()).collect();
        assert!(delays.iter().all(|d| *d < Duration::from_millis(30)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(25)));
        let fast = Impairments {
            skew_ppm: 1000.0,
            ..Default::default()
        };
        let interval = fast.chunk_interval(Duration::from_millis(20));
        assert!((interval.as_secs_f64() - 0.02 / 1.001).abs() < 1e-9);
    }
}
