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
//! A chunk number that contradicts its timestamp (it goes back while the
//! timestamp goes on, or skips far more than the time that passed: a
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
        self.doubted = false;
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
/// back while the timestamp goes on (a counter restarted), nor if it skips
/// far more than the time that passed. (Going on while the timestamp goes
/// back is the timestamps stepping back: the numbers keep the order.)
fn plausible(chunk: &MediaChunk, last: &Released) -> bool {
    let (Some(n), Some(l)) = (chunk.chunk, last.number) else {
        return true;
    };
    let unit = i128::from(last.end_ms.saturating_sub(last.timestamp_ms).max(1));
    let by_number = (i128::from(n) - i128::from(l)) * unit;
    let by_time = i128::from(chunk.timestamp_ms) - i128::from(last.timestamp_ms);
    let restarted = by_number < 0 && by_time > 0;
    !restarted && by_number <= 2 * by_time.abs() + NUMBER_SLACK_MS
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
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::protocol::Track;

    /// Chunk `n` of `track`: 20 ms at timestamp 20·(n−1), its bytes all `n`.
    fn chunk(track: Track, n: u64) -> MediaChunk {
        MediaChunk {
            track,
            timestamp_ms: (n - 1) * 20,
            chunk: Some(n),
            ulaw: vec![n as u8; 160],
            arrival: Instant::now(),
        }
    }

    fn inbound(n: u64) -> MediaChunk {
        chunk(Track::Inbound, n)
    }

    fn unnumbered(n: u64) -> MediaChunk {
        MediaChunk {
            chunk: None,
            ..inbound(n)
        }
    }

    fn popped(reorder: &mut Reorder) -> Vec<u64> {
        std::iter::from_fn(|| reorder.pop())
            .map(|c| c.ulaw[0] as u64)
            .collect()
    }

    /// Pushes chunks `order` one by one; what each push let out.
    fn run(window: u32, order: impl IntoIterator<Item = MediaChunk>) -> (Vec<Vec<u64>>, Counts) {
        let mut reorder = Reorder::new(window, WireFormat::default());
        let mut counts = Counts::default();
        let out = order
            .into_iter()
            .map(|c| {
                counts.add(reorder.push(c));
                popped(&mut reorder)
            })
            .collect();
        (out, counts)
    }

    #[derive(Debug, Default, PartialEq)]
    struct Counts {
        reordered: u32,
        too_late: u32,
        implausible: Vec<u64>,
    }

    impl Counts {
        fn add(&mut self, pushed: Pushed) {
            self.reordered += pushed.reordered as u32;
            self.too_late += pushed.too_late as u32;
            self.implausible.extend(pushed.implausible_number);
        }
    }

    /// Chunk `n` (timestamp and bytes) numbered `number`.
    fn numbered(n: u64, number: u64) -> MediaChunk {
        MediaChunk {
            chunk: Some(number),
            ..inbound(n)
        }
    }

    /// Timestamps and numbers at the top of their range (a peer's, not
    /// Telnyx's) are taken without overflowing.
    #[test]
    fn counters_at_the_end_of_their_range_do_not_overflow() {
        let at = |timestamp_ms, number| MediaChunk {
            timestamp_ms,
            chunk: Some(number),
            ..inbound(1)
        };
        let (out, _) = run(
            3,
            [
                at(u64::MAX, u64::MAX - 1),
                at(u64::MAX - 10, u64::MAX),
                at(0, 0),
                at(u64::MAX, 1),
            ],
        );
        assert_eq!(out[0], [1]);
    }

    #[test]
    fn chunks_in_order_go_out_at_once() {
        let (out, counts) = run(3, (1..=6).map(inbound));
        assert_eq!(out, [[1], [2], [3], [4], [5], [6]]);
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn a_swapped_pair_goes_out_in_order_when_the_first_comes() {
        let (out, counts) = run(3, [1, 3, 2, 4, 6, 5, 7].map(inbound));
        let expected: [&[u64]; 7] = [&[1], &[], &[2, 3], &[4], &[], &[5, 6], &[7]];
        assert_eq!(out, expected);
        assert_eq!(
            counts,
            Counts {
                reordered: 2,
                too_late: 0,
                ..Counts::default()
            }
        );
    }

    /// A pair swapped behind a loss the window still waits for is put
    /// back in order too, and counted (it goes before a held chunk, if not
    /// before the first).
    #[test]
    fn a_pair_swapped_behind_a_loss_is_counted_reordered() {
        let (out, counts) = run(3, [1, 3, 5, 4, 6, 7].map(inbound));
        let expected: [&[u64]; 6] = [&[1], &[], &[], &[], &[3, 4, 5, 6], &[7]];
        assert_eq!(out, expected);
        assert_eq!(
            counts,
            Counts {
                reordered: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_real_loss_is_given_up_after_the_window() {
        let (out, counts) = run(3, [1, 2, 4, 5, 6, 7, 8].map(inbound));
        let expected: [&[u64]; 7] = [&[1], &[2], &[], &[], &[], &[4, 5, 6, 7], &[8]];
        assert_eq!(out, expected);
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn a_chunk_later_than_the_window_is_dropped_as_too_late() {
        let (out, counts) = run(2, [1, 3, 4, 5, 2, 6].map(inbound));
        let expected: [&[u64]; 6] = [&[1], &[], &[], &[3, 4, 5], &[], &[6]];
        assert_eq!(out, expected);
        assert_eq!(
            counts,
            Counts {
                reordered: 0,
                too_late: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn duplicates_are_dropped_whether_released_or_held() {
        let (out, counts) = run(3, [1, 1, 3, 3, 2, 2, 4].map(inbound));
        let expected: [&[u64]; 7] = [&[1], &[], &[], &[], &[2, 3], &[], &[4]];
        assert_eq!(out, expected);
        assert_eq!(
            counts,
            Counts {
                reordered: 1,
                too_late: 3,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_window_of_zero_passes_everything_as_it_comes() {
        let (out, counts) = run(0, [2, 1, 1, 3].map(inbound));
        assert_eq!(out, [[2], [1], [1], [3]]);
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn without_chunk_numbers_timestamps_order_the_chunks() {
        let (out, counts) = run(3, [1, 3, 2, 4, 2].map(unnumbered));
        let expected: [&[u64]; 5] = [&[1], &[], &[2, 3], &[4], &[]];
        assert_eq!(out, expected);
        assert_eq!(
            counts,
            Counts {
                reordered: 1,
                too_late: 1,
                ..Counts::default()
            }
        );
    }

    #[test]
    fn contiguous_timestamps_release_across_a_counter_shared_by_tracks() {
        // Chunk numbers counted over both tracks: each track's skip by one,
        // its timestamps follow on.
        let order = [1, 2, 3, 4, 5, 6].map(|n| {
            let track = if n % 2 == 1 {
                Track::Inbound
            } else {
                Track::Outbound
            };
            MediaChunk {
                timestamp_ms: (n - 1) / 2 * 20,
                ..chunk(track, n)
            }
        });
        let (out, counts) = run(3, order);
        assert_eq!(out, [[1], [2], [3], [4], [5], [6]]);
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn each_track_waits_for_its_own_gap() {
        let order = [
            chunk(Track::Inbound, 1),
            chunk(Track::Outbound, 1),
            chunk(Track::Inbound, 3),
            chunk(Track::Outbound, 2),
            chunk(Track::Inbound, 2),
        ];
        let (out, counts) = run(3, order);
        let expected: [&[u64]; 5] = [&[1], &[1], &[], &[2], &[2, 3]];
        assert_eq!(out, expected);
        assert_eq!(counts.reordered, 1);
    }

    #[test]
    fn a_number_far_ahead_of_its_timestamp_is_not_believed() {
        // Chunk 4 says it is chunk 1000000: placed by its timestamp, and
        // the chunks after it are not too late.
        let order = [
            numbered(1, 1),
            numbered(2, 2),
            numbered(3, 3),
            numbered(4, 1_000_000),
        ]
        .into_iter()
        .chain((5..=8).map(inbound));
        let (out, counts) = run(3, order);
        assert_eq!(out.concat(), (1..=8).collect::<Vec<_>>());
        assert!(out.iter().all(|o| o.len() == 1), "nothing held: {out:?}");
        assert_eq!(
            counts,
            Counts {
                implausible: vec![1_000_000],
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_step_back_after_a_number_not_believed_goes_out() {
        // Chunk 3 numbered 1e12, then the sender's own numbers again, the
        // timestamps 40 ms back: not late (the timeline tells the step).
        let back = |n: u64| MediaChunk {
            timestamp_ms: (n - 1) * 20 - 40,
            ..inbound(n)
        };
        let order = [
            inbound(1),
            inbound(2),
            numbered(3, 1_000_000_000_000),
            back(4),
            back(5),
        ];
        let (out, counts) = run(3, order);
        assert_eq!(out, [[1], [2], [3], [4], [5]]);
        assert_eq!(
            counts,
            Counts {
                implausible: vec![1_000_000_000_000],
                ..Counts::default()
            }
        );
    }

    #[test]
    fn a_counter_that_restarts_is_followed_from_there() {
        // Chunks 1..=50, then numbered from 1 again with timestamps going on.
        let order = (1..=50)
            .map(inbound)
            .chain((51..=60).map(|n| numbered(n, n - 50)));
        let (out, counts) = run(3, order);
        assert_eq!(out.concat(), (1..=60).collect::<Vec<_>>());
        assert_eq!(counts.too_late, 0);
        assert_eq!(counts.implausible, [1], "only the first restarted number");
    }

    #[test]
    fn timestamps_stepping_back_keep_the_order_of_the_numbers() {
        // Numbers go on by one; at chunk 30 the timestamps step back 400 ms.
        let order = (1..=60).map(|n| MediaChunk {
            timestamp_ms: if n < 30 {
                (n - 1) * 20
            } else {
                (n - 1) * 20 - 400
            },
            ..inbound(n)
        });
        let (out, counts) = run(3, order);
        assert_eq!(out.concat(), (1..=60).collect::<Vec<_>>());
        assert!(out.iter().all(|o| o.len() == 1), "nothing held: {out:?}");
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn a_restart_behind_a_gap_is_told_once() {
        // 1..=10, chunk 11 lost, then numbered from 1 again.
        let order = (1..=10)
            .map(inbound)
            .chain((12..=16).map(|n| numbered(n, n - 10)));
        let (out, counts) = run(3, order);
        assert_eq!(
            out.concat(),
            [(1..=10).collect::<Vec<_>>(), (12..=16).collect()].concat()
        );
        assert_eq!(counts.implausible.len(), 1, "{counts:?}");
        assert_eq!(counts.too_late, 0);
    }

    #[test]
    fn numbers_going_on_through_a_silence_are_believed() {
        // Nothing sent for 10 s (a provider quiet when idle): the next number,
        // timestamps far on. It follows at once.
        let later = |n: u64| MediaChunk {
            timestamp_ms: 10_000 + n * 20,
            ..inbound(n)
        };
        let (out, counts) = run(3, [inbound(1), inbound(2), inbound(3), later(4), later(5)]);
        assert_eq!(out, [[1], [2], [3], [4], [5]]);
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn a_real_gap_with_a_counter_shared_by_tracks_is_believed() {
        // A counter over both tracks: one track's numbers skip twice as
        // fast as its time, 3 s lost.
        let order = [1u64, 3, 5, 305].map(|n| MediaChunk {
            timestamp_ms: (n - 1) / 2 * 20,
            ..inbound(n)
        });
        let (_, counts) = run(3, order);
        assert_eq!(counts, Counts::default());
    }

    #[test]
    fn overdue_held_chunks_go_out_and_their_gap_is_given_up() {
        let mut reorder = Reorder::new(3, WireFormat::default());
        for n in [1, 3, 4] {
            reorder.push(inbound(n));
        }
        assert_eq!(popped(&mut reorder), [1]);
        assert!(reorder.flush());
        assert_eq!(popped(&mut reorder), [3, 4]);
        assert!(!reorder.flush(), "nothing held any more");
        // Chunk 2, should it still come, is too late.
        assert!(reorder.push(inbound(2)).too_late);
        assert!(!reorder.push(inbound(5)).too_late);
        assert_eq!(popped(&mut reorder), [5]);
    }

    #[test]
    fn the_end_lets_out_what_is_held_in_order() {
        let mut reorder = Reorder::new(3, WireFormat::default());
        for n in [1, 4, 3] {
            reorder.push(inbound(n));
        }
        assert_eq!(popped(&mut reorder), [1]);
        assert_eq!(reorder.held(), 2);
        reorder.flush();
        assert_eq!(popped(&mut reorder), [3, 4]);
        assert_eq!(reorder.held(), 0);
    }
}
