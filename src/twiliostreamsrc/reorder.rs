//! Telnyx's media put back in order before the timeline (Telnyx: "the order
//! of events is not guaranteed"). Pure: chunks in, chunks out in order.
//!
//! Per track, a chunk that follows the last one released (next `chunk`
//! number, or a timestamp where the last one ended) goes out at once, with
//! any held chunks it makes contiguous: media that arrives in order is never
//! delayed. A chunk after a gap is held, ordered by `chunk` (by `timestamp`
//! when a chunk has no number), until the missing one comes or more than
//! `window` chunks wait behind the gap: then the gap is given up (the
//! timeline counts it lost and fills it) and the held chunks go out. A
//! chunk that comes after its place was given up, or a duplicate, is
//! dropped and counted too late. At the end of the call, or when the
//! audio held is overdue (the src's fill deadline), everything held goes
//! out.
//!
//! A chunk number that contradicts its timestamp (it goes back or stands
//! still while the timestamp goes on, or skips far more than the time that passed: a
//! counter restarted or broken) is not believed: that chunk is placed by
//! its timestamp, and later ones are numbered from it; the chunk after it
//! carrying the sender's own next number goes on from it as the next one
//! would (so timestamps stepping back there are not taken for late audio).

use std::collections::VecDeque;

use crate::call::MediaChunk;
use crate::codec::WireFormat;

/// `reorder-window`'s default, in chunks (60 ms of 20 ms chunks).
pub const DEFAULT_WINDOW: u32 = 3;

/// With `track=both`, the least wait for the slower track (ms) under a
/// reorder `window`: the window gives a missing chunk up when the chunk
/// `window + 1` after it comes, while the other track is that far ahead
/// and a chunk more; a shorter wait fills the time of the chunks it held,
/// and they are dropped when it lets them out (each loss would cost the
/// chunk after it too). 0 without a window.
pub fn both_tracks_wait_ms(window: u32) -> u32 {
    match window {
        0 => 0,
        w => (w + 2) * 20,
    }
}

/// Timestamps within this (ms) of where the last chunk ended are contiguous.
const TIMESTAMP_TOLERANCE_MS: u64 = 5;

/// How much further (ms of audio) a chunk number may skip than twice the
/// time that passed (a counter shared by both tracks counts twice as fast).
const NUMBER_SLACK_MS: i128 = 1000;

/// What became of a chunk pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// It came after a later chunk of its track and was put back before it.
    pub reordered: bool,
    /// It came after its place was given up, or twice: dropped.
    pub too_late: bool,
    /// Its chunk number, not believed (see the module's doc).
    pub implausible_number: Option<u64>,
}

/// The window over both tracks.
#[derive(Debug, Default)]
pub struct Reorder {
    window: usize,
    format: WireFormat,
    lanes: [Lane; 2],
    ready: VecDeque<MediaChunk>,
}

/// Where a track's released audio has got to.
#[derive(Debug, Clone, Copy)]
struct Released {
    number: Option<u64>,
    /// Without a number (or one not believed): the last number before it.
    believed: Option<u64>,
    timestamp_ms: u64,
    end_ms: u64,
}

#[derive(Debug, Default)]
struct Lane {
    last: Option<Released>,
    /// A number was disbelieved against `last` (told once).
    doubted: bool,
    /// Chunks behind a gap, in order.
    held: Vec<MediaChunk>,
}

impl Reorder {
    /// A window holding at most `window` chunks per track behind a gap
    /// (0: off, every chunk goes out as it comes), for chunks in `format`.
    pub fn new(window: u32, format: WireFormat) -> Reorder {
        Reorder {
            window: window as usize,
            format,
            ..Reorder::default()
        }
    }

    /// Takes a chunk; what is ready goes out through [`Self::pop`].
    pub fn push(&mut self, mut chunk: MediaChunk) -> Pushed {
        if self.window == 0 {
            self.ready.push_back(chunk);
            return Pushed::default();
        }
        let mut implausible_number = None;
        let format = self.format;
        let lane = &mut self.lanes[chunk.track.index()];
        let Some(last) = lane.last else {
            // The first chunk of the track starts it.
            lane.release(chunk, format, &mut self.ready);
            lane.release_contiguous(format, &mut self.ready);
            return Pushed::default();
        };
        if !plausible(&chunk, &last) {
            let number = chunk.chunk.take();
            // Told once per contradiction: the chunks held behind a gap are
            // all measured against the same last one.
            if !std::mem::replace(&mut lane.doubted, true) {
                implausible_number = number;
            }
        }
        if !after(&chunk, &last) || lane.held.iter().any(|h| same(h, &chunk)) {
            return Pushed {
                too_late: true,
                implausible_number,
                ..Pushed::default()
            };
        }
        let at = lane.held.partition_point(|h| before(h, &chunk));
        // Before a later chunk held (behind this gap or one before it).
        let reordered = at < lane.held.len();
        lane.held.insert(at, chunk);
        lane.release_contiguous(format, &mut self.ready);
        if lane.held.len() > self.window {
            // Wait no longer for the gap: what is held goes out after it.
            let first = lane.held.remove(0);
            lane.release(first, format, &mut self.ready);
            lane.release_contiguous(format, &mut self.ready);
        }
        Pushed {
            reordered,
            too_late: false,
            implausible_number,
        }
    }

    /// The next chunk in order, if one is ready.
    pub fn pop(&mut self) -> Option<MediaChunk> {
        self.ready.pop_front()
    }

    /// The end of the call, or the held audio is overdue: every held chunk
    /// becomes ready, in order (the gaps before them are given up). True if
    /// any was held.
    pub fn flush(&mut self) -> bool {
        let format = self.format;
        let mut any = false;
        for lane in &mut self.lanes {
            for chunk in std::mem::take(&mut lane.held) {
                lane.release(chunk, format, &mut self.ready);
                any = true;
            }
        }
        any
    }

    /// Chunks held behind gaps, of both tracks.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.lanes.iter().map(|l| l.held.len()).sum()
    }
}

impl Lane {
    fn release(&mut self, chunk: MediaChunk, format: WireFormat, ready: &mut VecDeque<MediaChunk>) {
        let duration_ms = format.payload_ticks(&chunk.ulaw) / 8;
        // A number believed ends the contradiction (one taken away, or
        // none, does not: a stuck counter is told once).
        if chunk.chunk.is_some() {
            self.doubted = false;
        }
        let believed = match chunk.chunk {
            Some(_) => None,
            None => self.last.and_then(|l| l.number.or(l.believed)),
        };
        self.last = Some(Released {
            number: chunk.chunk,
            believed,
            timestamp_ms: chunk.timestamp_ms,
            // The peer's timestamp may be anything up to u64::MAX.
            end_ms: chunk.timestamp_ms.saturating_add(duration_ms),
        });
        ready.push_back(chunk);
    }

    /// Releases the held chunks that now follow the last one released.
    fn release_contiguous(&mut self, format: WireFormat, ready: &mut VecDeque<MediaChunk>) {
        while let (Some(first), Some(last)) = (self.held.first(), self.last) {
            if !follows(first, &last) {
                break;
            }
            let first = self.held.remove(0);
            self.release(first, format, ready);
        }
    }
}

/// `chunk` is the one right after `last`: the next number, or (numbers
/// aside, e.g. one counter shared by both tracks) where `last` ended.
fn follows(chunk: &MediaChunk, last: &Released) -> bool {
    let next_number =
        matches!((chunk.chunk, last.number), (Some(n), Some(l)) if l.checked_add(1) == Some(n));
    next_number
        || resumes(chunk, last)
        || chunk.timestamp_ms.abs_diff(last.end_ms) <= TIMESTAMP_TOLERANCE_MS
}

/// `chunk` carries the number after `last`'s place in the sender's own
/// count, `last` having none (or one not believed).
fn resumes(chunk: &MediaChunk, last: &Released) -> bool {
    let expected = last.believed.and_then(|b| b.checked_add(2));
    last.number.is_none() && expected.is_some() && chunk.chunk == expected
}

/// Whether `chunk`'s number may be believed, next to `last`: not if it goes
/// back, or stands still, while the timestamp goes on (a counter restarted
/// or stuck: a duplicate repeats the timestamp too), nor if it skips far
/// more than the time that passed. (Going on while the timestamp goes back
/// is the timestamps stepping back: the numbers keep the order.)
fn plausible(chunk: &MediaChunk, last: &Released) -> bool {
    let (Some(n), Some(l)) = (chunk.chunk, last.number) else {
        // Still stuck at the number before the last (disbelieved) one.
        let still = last.believed.is_some() && chunk.chunk == last.believed;
        return !(still && chunk.timestamp_ms > last.timestamp_ms);
    };
    let unit = i128::from(last.end_ms.saturating_sub(last.timestamp_ms).max(1));
    let by_number = (i128::from(n) - i128::from(l)) * unit;
    let by_time = i128::from(chunk.timestamp_ms) - i128::from(last.timestamp_ms);
    let restarted = by_number < 0 && by_time > 0;
    let stuck = by_number == 0 && by_time > TIMESTAMP_TOLERANCE_MS as i128;
    !restarted && !stuck && by_number <= 2 * by_time.abs() + NUMBER_SLACK_MS
}

/// `chunk` belongs after what was released up to `last`.
fn after(chunk: &MediaChunk, last: &Released) -> bool {
    match (chunk.chunk, last.number) {
        (Some(n), Some(l)) => n > l,
        _ => resumes(chunk, last) || chunk.timestamp_ms > last.timestamp_ms,
    }
}

/// `a` goes before `b`: by chunk number when both have one, else by timestamp.
fn before(a: &MediaChunk, b: &MediaChunk) -> bool {
    match (a.chunk, b.chunk) {
        (Some(x), Some(y)) => x < y,
        _ => a.timestamp_ms < b.timestamp_ms,
    }
}

fn same(a: &MediaChunk, b: &MediaChunk) -> bool {
    !before(a, b) && !before(b, a)
}

#[cfg(test)]
mod tests;
