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
