//! The bound past which a `media.timestamp` ahead of the time that really
//! passed is garbage, not a gap or a step (pure).

use std::time::{Duration, Instant};

use crate::twiliostreamsrc::drift::MAX_SKEW_PPM;

/// How far `media.timestamp` may run ahead of the time that really passed
/// since the first chunk before it is taken for garbage (10 s, in samples).
pub(crate) const MAX_AHEAD: u64 = 10 * 8000;

/// How far (8 kHz samples) `media.timestamp` may have moved after `elapsed`
/// of our time and not be garbage: what a sender clock as fast as a clock
/// may be ([`MAX_SKEW_PPM`]) stamps in that time, plus [`MAX_AHEAD`].
/// (Against our time alone, a sender 100 ppm fast would pass it after
/// 28 h, one 400 ppm fast after 7 h, and every chunk after that would be
/// taken for garbage.)
pub(crate) fn plausible(elapsed: Duration) -> u64 {
    let samples = (elapsed.as_millis() as u64).saturating_mul(8);
    let skew = (u128::from(samples) * MAX_SKEW_PPM as u128 / 1_000_000) as u64;
    samples.saturating_add(skew).saturating_add(MAX_AHEAD)
}

/// Whether a timestamp (ms) arrived at `arrival` is further ahead of the one
/// before, `last` (timestamp, arrival), than [`plausible`] for the time
/// between them. This bound does not grow with the call (a day of 500 ppm
/// adds 43 s to the one from the first chunk), and no clock within
/// [`MAX_SKEW_PPM`] reaches it, however its skew moves.
pub(crate) fn jumped(last: (u64, Instant), timestamp_ms: u64, arrival: Instant) -> bool {
    let ahead = timestamp_ms.saturating_sub(last.0).saturating_mul(8);
    ahead > plausible(arrival.saturating_duration_since(last.1))
}
