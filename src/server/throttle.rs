//! Log lines that an attacker or a misconfiguration can repeat at every
//! connection: a WARNING at most once a period, the rest at INFO.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// When a line was last let through (ms since `EPOCH`, plus 1; 0: never).
pub struct Throttle(AtomicU64);

impl Throttle {
    pub const fn new() -> Self {
        Throttle(AtomicU64::new(0))
    }

    /// Whether a line is due now: the first, or the first `period` after
    /// the last let through (one caller wins a race).
    pub fn due(&self, period: Duration) -> bool {
        self.due_at(EPOCH.elapsed(), period)
    }

    fn due_at(&self, now: Duration, period: Duration) -> bool {
        let now = now.as_millis() as u64 + 1;
        let last = self.0.load(Relaxed);
        (last == 0 || now.saturating_sub(last) >= period.as_millis() as u64)
            && self.0.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_period() {
        let t = Throttle::new();
        let s = Duration::from_secs;
        let minute = s(60);
        assert!(t.due_at(s(0), minute));
        assert!(!t.due_at(s(1), minute));
        assert!(!t.due_at(s(59), minute));
        assert!(t.due_at(s(61), minute));
        assert!(!t.due_at(s(120), minute));
        assert!(t.due_at(s(121), minute));
    }
}
