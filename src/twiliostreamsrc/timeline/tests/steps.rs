//! A step in one track's timestamps: measured anew where it is one, and
//! told from a chunk stamped back, late old chunks and a real gap.

use super::*;

#[test]
fn a_step_back_is_measured_anew_at_the_chunk_that_follows_the_first() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..20 {
        assert_eq!(
            timeline.place(&chunk(t0, 20 * n, Some(n + 1))),
            contiguous()
        );
        timeline.advance(160);
    }
    // Chunk 21 stamped 400 ms back: kept, after what was played.
    let back = |n: u64| Chunk {
        timestamp_ms: 20 * n - 400,
        ..chunk(t0, 20 * n, Some(n + 1))
    };
    let placed = timeline.place(&back(20));
    assert_eq!(
        (placed.overlap, placed.behind, placed.step_ms),
        (true, 3200, None)
    );
    timeline.advance(160);
    // The next follows it: a step, measured anew, nothing lost.
    let placed = timeline.place(&back(21));
    assert_eq!(
        placed,
        Placement {
            step_ms: Some(-400),
            ..contiguous()
        }
    );
    timeline.advance(160);
    assert_eq!(timeline.place(&back(22)), contiguous());
    timeline.advance(160);
    // A gap after the step is one again: silence for chunk 24.
    let placed = timeline.place(&back(24));
    assert_eq!(
        (placed.lost, placed.silence, placed.step_ms),
        (1, 160, None)
    );
}

#[test]
fn one_chunk_stamped_back_is_no_step() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..20 {
        timeline.place(&chunk(t0, 20 * n, Some(n + 1)));
        timeline.advance(160);
    }
    let placed = timeline.place(&Chunk {
        timestamp_ms: 0,
        ..chunk(t0, 400, Some(21))
    });
    assert_eq!((placed.overlap, placed.behind), (true, 3200));
    timeline.advance(160);
    // Chunk 22 where its timestamp says: no step, nothing lost.
    assert_eq!(timeline.place(&chunk(t0, 420, Some(22))), contiguous());
}

#[test]
fn earlier_chunks_come_late_over_a_second_are_no_step() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // Chunks 6 and 7 (100 and 120 ms) missing: silence.
    for n in (1..100).filter(|n| ![5, 6].contains(n)) {
        let placed = timeline.place(&chunk(t0, 20 * n, Some(n + 1)));
        timeline.advance(placed.silence + 160);
    }
    // They come 2 s on, out of order, numbered as such: kept (over 1 s
    // back), judged by their timestamps, no step.
    let late = |n: u64| Chunk {
        arrival: t0 + Duration::from_secs(2),
        ..chunk(t0, 20 * (n - 1), Some(n))
    };
    for n in [6, 7] {
        let placed = timeline.place(&late(n));
        assert_eq!(
            (placed.overlap, placed.behind, placed.step_ms),
            (true, 0, None),
            "chunk {n}"
        );
        timeline.advance(160);
    }
    // Chunk 101 where its timestamp says, 40 ms before what went out:
    // kept, no silence, nothing lost (not 1.9 s of both after a step).
    let placed = timeline.place(&chunk(t0, 2000, Some(101)));
    assert_eq!((placed.overlap, placed.silence, placed.lost), (true, 0, 0));
}

/// Chunk `n + 1`, stamped 400 ms before its time.
fn back(t0: Instant, n: u64) -> Chunk {
    Chunk {
        timestamp_ms: 20 * n - 400,
        ..chunk(t0, 20 * n, Some(n + 1))
    }
}

/// Chunks 2–20 on time, then 21–30 stamped 400 ms back: a step, measured
/// anew.
fn stepped_back(t0: Instant) -> Timeline {
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..20 {
        timeline.place(&chunk(t0, 20 * n, Some(n + 1)));
        timeline.advance(160);
    }
    for n in 20..30 {
        timeline.place(&back(t0, n));
        timeline.advance(160);
    }
    timeline
}

#[test]
fn timestamps_back_home_after_a_step_back_are_no_gap() {
    let t0 = Instant::now();
    let mut timeline = stepped_back(t0);
    // Chunk 31 stamped where it was before: home, not 400 ms of silence.
    let placed = timeline.place(&chunk(t0, 600, Some(31)));
    assert_eq!(
        placed,
        Placement {
            step_ms: Some(400),
            ..contiguous()
        }
    );
    timeline.advance(160);
    assert_eq!(timeline.place(&chunk(t0, 620, Some(32))), contiguous());
}

#[test]
fn chunks_lost_as_long_as_a_step_back_are_a_gap() {
    let t0 = Instant::now();
    let mut timeline = stepped_back(t0);
    // Chunks 31–50 lost: chunk 51 400 ms on, its number skipping 20.
    let placed = timeline.place(&back(t0, 50));
    assert_eq!(
        (placed.lost, placed.silence, placed.step_ms),
        (20, 3200, None)
    );
}
