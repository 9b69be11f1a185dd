//! Where a call's per-chunk state lives, fetched into the cache at once.
//!
//! At hundreds of calls a call's state has left the cache by the time its
//! next chunk comes (every 20 ms), and handling the chunk reaches it one
//! miss after another: the call, its event queue, the src's state, its
//! pad, the sink's pad and state (GStreamer's among them), the writer's
//! queue, each reached through the one before. The elements register where
//! their objects lie; the call's task asks for all of it when a message
//! arrives, so that the misses overlap with each other and with parsing
//! the message instead of following one another (a few per cent of the
//! default pipeline's CPU per frame at 200 calls: README, Performance).
//!
//! A prefetch never faults: a stale range (an element gone, a buffer
//! moved) costs only a useless fetch, so ranges are plain addresses.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Ranges a call keeps.
const RANGES: usize = 8;
/// The most of one range fetched (lines past it are left to the code).
const MAX_RANGE: usize = 8192;

/// Who registered a range: each element keeps its own.
#[derive(Clone, Copy, Debug)]
pub enum HotPart {
    /// The consuming src: its object, with its state.
    Src = 0,
    /// Its pad.
    SrcPad = 1,
    /// Its concealer: the fields a chunk reads first.
    SrcBuffers = 2,
    /// The src's downstream element, when not ours (a queue, a capsfilter).
    Downstream = 3,
    /// That element's sink pad.
    DownstreamPad = 4,
    /// The sending sink: its object, with its state.
    Sink = 5,
    /// Its pad.
    SinkPad = 6,
    /// The part of the src's concealer history the next chunk overwrites.
    SrcHistory = 7,
}

impl HotPart {
    /// What a src registers.
    pub const SRC: [HotPart; 6] = [
        HotPart::Src,
        HotPart::SrcPad,
        HotPart::SrcBuffers,
        HotPart::SrcHistory,
        HotPart::Downstream,
        HotPart::DownstreamPad,
    ];
    /// What a sink registers.
    pub const SINK: [HotPart; 2] = [HotPart::Sink, HotPart::SinkPad];
}

/// The registered ranges: (address, length) pairs, 0 length for none.
#[derive(Default)]
pub struct Hot([(AtomicUsize, AtomicUsize); RANGES]);

impl Hot {
    /// Registers `len` bytes at `addr` as `part`'s (0 bytes: none). The
    /// same range again writes nothing: the task reads these lines on
    /// every message, from another thread at times.
    pub fn set(&self, part: HotPart, addr: usize, len: usize) {
        let (a, l) = &self.0[part as usize];
        if a.load(Ordering::Relaxed) != addr || l.load(Ordering::Relaxed) != len {
            a.store(addr, Ordering::Relaxed);
            l.store(len, Ordering::Relaxed);
        }
    }

    /// Forgets `parts` (an element let go of the call).
    pub fn clear(&self, parts: &[HotPart]) {
        for &part in parts {
            self.set(part, 0, 0);
        }
    }

    /// Registers the range from `first` to `last` (`len` bytes at
    /// each): an object whose parts lie near each other, in either order.
    /// If they lie far apart, only `first`'s.
    pub fn set_span(&self, part: HotPart, first: (usize, usize), last: (usize, usize)) {
        let start = first.0.min(last.0);
        let end = (first.0 + first.1).max(last.0 + last.1);
        if end - start <= MAX_RANGE {
            self.set(part, start, end - start);
        } else {
            self.set(part, first.0, first.1);
        }
    }

    /// Asks for every registered range to be brought into the cache.
    pub fn fetch(&self) {
        for (a, l) in &self.0 {
            let len = l.load(Ordering::Relaxed);
            if len > 0 {
                prefetch(a.load(Ordering::Relaxed), len.min(MAX_RANGE));
            }
        }
    }
}

/// Prefetches the cache lines of `len` bytes at `addr`.
#[inline]
pub fn prefetch(addr: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first = addr & !63;
        let lines = (addr.saturating_add(len) - first).div_ceil(64);
        for i in 0..lines {
            let line = first.wrapping_add(i * 64);
            // SAFETY: a prefetch is a hint: it never faults, whatever the
            // address, and reads nothing into the program.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (addr, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_kept_per_part_and_fetching_any_address_is_harmless() {
        let hot = Hot::default();
        let value = [0u64; 32];
        hot.set(HotPart::Src, value.as_ptr() as usize, 256);
        assert_eq!(hot.0[HotPart::Src as usize].1.load(Ordering::Relaxed), 256);
        // Stale and wild addresses: a prefetch never faults.
        hot.set(HotPart::Sink, 8, 1 << 20);
        hot.set(HotPart::SinkPad, usize::MAX - 10, 100);
        hot.fetch();
        hot.clear(&HotPart::SINK);
        assert_eq!(hot.0[HotPart::Sink as usize].1.load(Ordering::Relaxed), 0);
        assert_eq!(
            hot.0[HotPart::SinkPad as usize].1.load(Ordering::Relaxed),
            0
        );
        assert_eq!(hot.0[HotPart::Src as usize].1.load(Ordering::Relaxed), 256);
    }

    #[test]
    fn a_span_covers_both_parts_when_near_else_the_first() {
        let hot = Hot::default();
        let range = |part: HotPart| {
            let (a, l) = &hot.0[part as usize];
            (a.load(Ordering::Relaxed), l.load(Ordering::Relaxed))
        };
        hot.set_span(HotPart::Src, (1000, 100), (600, 50));
        assert_eq!(range(HotPart::Src), (600, 500));
        hot.set_span(HotPart::Src, (1000, 100), (1050, 200));
        assert_eq!(range(HotPart::Src), (1000, 250));
        hot.set_span(HotPart::Src, (1000, 100), (1 << 30, 50));
        assert_eq!(range(HotPart::Src), (1000, 100));
    }
}
