//! The length in which a gap's lost chunks are counted (pure).

/// Chunks a [`LossUnit`] remembers its longest length over, about: a
/// second of 20 ms chunks.
const LOSS_UNIT_WINDOW: u32 = 50;

/// The length a gap's lost chunks are counted in (8 kHz samples): the
/// longest chunk of the last 50 to 100, so that a short payload before or
/// after a gap does not make it many lost chunks, and one long payload
/// does not make later gaps count few for the rest of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossUnit {
    /// The longest of the last window and the current one.
    longest: u64,
    /// The longest of the current window.
    window: u64,
    /// Chunks seen in the current window.
    seen: u32,
}

impl LossUnit {
    pub fn new(first: u64) -> LossUnit {
        LossUnit {
            longest: first.max(1),
            window: first,
            seen: 1,
        }
    }

    /// A chunk of `len` samples came.
    pub fn see(&mut self, len: u64) {
        self.longest = self.longest.max(len);
        self.window = self.window.max(len);
        self.seen += 1;
        if self.seen >= LOSS_UNIT_WINDOW {
            self.longest = self.window.max(1);
            self.window = 0;
            self.seen = 0;
        }
    }

    pub fn get(&self) -> u64 {
        self.longest
    }
}
