//! A step in one track's timestamps, back or ahead: measured anew where it
//! is one, and told from a chunk stamped back, late old chunks, a pause and
//! a real gap.

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

/// Chunk `n + 1`, on time, stamped `ms` off its time.
fn shifted(t0: Instant, n: u64, ms: i64) -> Chunk {
    Chunk {
        timestamp_ms: (20 * n).checked_add_signed(ms).unwrap(),
        ..chunk(t0, 20 * n, Some(n + 1))
    }
}

/// Chunks 2–20 on time.
fn on_time(t0: Instant, tracks: &[&str]) -> Timeline {
    let mut timeline = started(t0, tracks);
    for n in 1..20 {
        timeline.place(&chunk(t0, 20 * n, Some(n + 1)));
        timeline.advance(160);
    }
    timeline
}

/// The PTS of the chunk about to go out.
fn pts(timeline: &Timeline) -> ClockTime {
    timeline.span(160, 1, ClockTime::ZERO).pts
}

#[test]
fn a_step_ahead_numbered_on_in_time_is_measured_anew() {
    let t0 = Instant::now();
    let mut timeline = on_time(t0, &["inbound"]);
    // Chunk 21 numbered on, arriving a chunk after 20, stamped 400 ms on:
    // a step, not 400 ms of silence.
    let placed = timeline.place(&shifted(t0, 20, 400));
    assert_eq!(
        placed,
        Placement {
            step_ms: Some(400),
            ..contiguous()
        }
    );
    // Where it was spoken: the output runs no later.
    assert_eq!(pts(&timeline), ClockTime::SECOND + 400 * MS);
    timeline.advance(160);
    for n in 21..30 {
        assert_eq!(timeline.place(&shifted(t0, n, 400)), contiguous());
        assert_eq!(pts(&timeline), ClockTime::SECOND + 20 * n * MS);
        timeline.advance(160);
    }
    // A gap after the step is one again: silence for chunk 31.
    let placed = timeline.place(&shifted(t0, 31, 400));
    assert_eq!(
        (placed.lost, placed.silence, placed.step_ms),
        (1, 160, None)
    );
}

#[test]
fn only_a_jump_the_time_passed_does_not_account_for_is_a_step() {
    let t0 = Instant::now();
    // Chunk 21 stamped 400 ms on, arriving `later` ms after its time,
    // numbered `number`, on a stream of `tracks`.
    let place = |later: u64, number: Option<u64>, tracks: &[&str]| {
        let mut timeline = on_time(t0, tracks);
        timeline.place(&Chunk {
            number,
            arrival: t0 + Duration::from_millis(400 + later),
            ..shifted(t0, 20, 400)
        })
    };
    let gap = Placement {
        silence: 3200,
        discont: true,
        lost: 20,
        gap: 3200,
        ..contiguous()
    };
    let step = Placement {
        step_ms: Some(400),
        ..contiguous()
    };
    assert_eq!(place(0, Some(21), &["inbound"]), step);
    // The sender paused 400 ms: the arrival jumps too.
    assert_eq!(place(400, Some(21), &["inbound"]), gap);
    // Arriving up to 40 ms before the time that passed puts it (a network
    // faster by as much) is still a pause; earlier, a step.
    assert_eq!(place(360, Some(21), &["inbound"]), gap);
    assert_eq!(place(359, Some(21), &["inbound"]), step);
    // Chunks 21–40 lost: numbers skipped.
    assert_eq!(place(0, Some(41), &["inbound"]), gap);
    // Without chunk numbers, or numbers that may count both tracks, a
    // step cannot be told from a loss.
    assert_eq!(place(0, None, &["inbound"]), gap);
    assert_eq!(place(0, Some(21), &["inbound", "outbound"]), gap);
}

#[test]
fn a_jump_ahead_after_a_fill_or_beyond_the_plausible_is_no_step() {
    let t0 = Instant::now();
    let mut timeline = on_time(t0, &["inbound"]);
    // 200 ms filled (nothing came), then chunk 21 stamped 400 ms on: the
    // rest of the gap is silence, as before.
    let filled = timeline.fill(1610 * MS, ClockTime::ZERO);
    assert_eq!(filled, 1600);
    timeline.advance(filled);
    let placed = timeline.place(&shifted(t0, 20, 400));
    assert_eq!(
        (placed.lost, placed.silence, placed.step_ms),
        (20, 1600, None)
    );
    timeline.advance(1600 + 160);
    // A minute on (beyond 10 s past the time that passed): ignored as
    // garbage, measured anew, not a step.
    let placed = timeline.place(&shifted(t0, 21, 60_400));
    assert!(placed.ignored_ahead.is_some());
    assert_eq!((placed.lost, placed.step_ms), (0, None));
    timeline.advance(160);
    // And the next 400 ms step is one.
    assert_eq!(timeline.place(&shifted(t0, 22, 60_800)).step_ms, Some(400));
}

#[test]
fn a_burst_of_late_chunks_then_a_pause_is_a_gap_not_a_step() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..20 {
        // Chunks 11–20 held up, in a burst at 460 ms.
        let arrival = t0 + Duration::from_millis(if n >= 10 { 460 } else { 20 * n });
        timeline.place(&Chunk {
            arrival,
            ..chunk(t0, 20 * n, Some(n + 1))
        });
        timeline.advance(160);
    }
    // The sender paused 200 ms (numbered on): where the audio has reached
    // in real time is told by chunk 10, not by the late chunk 20.
    let placed = timeline.place(&Chunk {
        arrival: t0 + Duration::from_millis(600),
        ..shifted(t0, 20, 200)
    });
    assert_eq!(
        (placed.lost, placed.silence, placed.step_ms),
        (10, 1600, None)
    );
    timeline.advance(1600 + 160);
    // A step after it is one.
    let placed = timeline.place(&Chunk {
        arrival: t0 + Duration::from_millis(620),
        ..shifted(t0, 21, 600)
    });
    assert_eq!(placed.step_ms, Some(400));
}

#[test]
fn a_step_ahead_then_back_home_is_two_steps() {
    let t0 = Instant::now();
    let mut timeline = on_time(t0, &["inbound"]);
    assert_eq!(timeline.place(&shifted(t0, 20, 400)).step_ms, Some(400));
    timeline.advance(160);
    for n in 21..30 {
        timeline.place(&shifted(t0, n, 400));
        timeline.advance(160);
    }
    // Chunk 31 stamped where it belonged before: kept after what went
    // out; chunk 32 follows it: the step back.
    let placed = timeline.place(&shifted(t0, 30, 0));
    assert_eq!((placed.behind, placed.step_ms), (3200, None));
    timeline.advance(160);
    assert_eq!(
        timeline.place(&shifted(t0, 31, 0)),
        Placement {
            step_ms: Some(-400),
            ..contiguous()
        }
    );
    assert_eq!(pts(&timeline), ClockTime::SECOND + 620 * MS);
    assert_eq!(timeline.stepped_ms, 0);
}

#[test]
fn a_step_ahead_past_home_after_a_step_back_is_measured_anew() {
    let t0 = Instant::now();
    let mut timeline = stepped_back(t0);
    // Chunk 31 stamped 600 ms on from the step back, 200 past home: a
    // step ahead, though not home.
    let placed = timeline.place(&shifted(t0, 30, 200));
    assert_eq!(
        placed,
        Placement {
            step_ms: Some(600),
            ..contiguous()
        }
    );
    assert_eq!(timeline.stepped_ms, -200);
    timeline.advance(160);
    assert_eq!(timeline.place(&shifted(t0, 31, 200)), contiguous());
    assert_eq!(pts(&timeline), ClockTime::SECOND + 620 * MS);
}

#[test]
fn a_step_ahead_keeps_the_drift_estimate_and_the_output_timing() {
    // 400 ppm slow, a minute; with a 400 ms step ahead at 30 s or not.
    let run = |step: i64| {
        let t0 = Instant::now();
        let mut timeline = started(t0, &["inbound"]);
        let mut steps = vec![];
        for i in 1..3000u64 {
            let ts = 20 * i;
            let late = (ts as f64 * 1e6 * 400e-6) as u64;
            let chunk = Chunk {
                timestamp_ms: if i >= 1500 {
                    ts.saturating_add_signed(step)
                } else {
                    ts
                },
                number: Some(i + 1),
                samples: 160,
                arrival: t0 + Duration::from_millis(ts) + Duration::from_nanos(late),
            };
            let placed = timeline.place(&chunk);
            steps.extend(placed.step_ms);
            assert_eq!(
                Placement {
                    step_ms: None,
                    ..placed
                },
                contiguous()
            );
            timeline.advance(160);
        }
        (
            steps,
            timeline.skew_ppm(),
            timeline.correction_ns(),
            pts(&timeline),
        )
    };
    let (steps, skew, correction, end) = run(400);
    assert_eq!(steps, [400]);
    assert_eq!((skew, correction, end), {
        let (_, skew, correction, end) = run(0);
        (skew, correction, end)
    });
    assert!(correction.abs() > 10_000_000, "{correction} ns");
}

/// One chunk of a timestamp far ahead (garbage), then the sender's own
/// clock again, over 10 s back: no step, but measured from there, so that
/// a chunk sent twice is told again, and a lost one is a gap.
#[test]
fn after_one_far_future_timestamp_the_senders_clock_is_measured_again() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    let wild = Chunk {
        timestamp_ms: 3_600_020,
        ..chunk(t0, 20, Some(2))
    };
    assert!(timeline.place(&wild).ignored_ahead.is_some());
    timeline.advance(160);
    let placed = timeline.place(&chunk(t0, 40, Some(3)));
    assert_eq!((placed.overlap, placed.step_ms), (true, None));
    timeline.advance(160);
    assert_eq!(timeline.place(&chunk(t0, 60, Some(4))), contiguous());
    timeline.advance(160);
    assert!(timeline.place(&chunk(t0, 60, Some(4))).stale);
    // Chunk 5 lost: 6 comes after a gap of one.
    let placed = timeline.place(&chunk(t0, 100, Some(6)));
    assert_eq!((placed.lost, placed.silence), (1, 160));
}

/// One chunk of a wild number, then the sender's own numbers again (in
/// place by their timestamps): counted from those, so that a second wild
/// number is told again, not taken for lost chunks, and a step back is a
/// step, not chunks come late.
#[test]
fn after_one_wild_chunk_number_the_senders_numbers_count_again() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    let placed = timeline.place(&chunk(t0, 20, Some(1_000_002)));
    assert_eq!(placed.ignored_number, Some(1_000_002));
    timeline.advance(160);
    for n in 2..20 {
        assert_eq!(
            timeline.place(&chunk(t0, 20 * n, Some(n + 1))),
            contiguous()
        );
        timeline.advance(160);
    }
    let placed = timeline.place(&chunk(t0, 400, Some(1_000_021)));
    assert_eq!((placed.lost, placed.ignored_number), (0, Some(1_000_021)));
    timeline.advance(160);
    assert_eq!(timeline.place(&chunk(t0, 420, Some(22))), contiguous());
    timeline.advance(160);
    // Stamped 200 ms back, numbered on, twice: a step.
    let back = |n: u64| Chunk {
        timestamp_ms: 20 * n - 200,
        ..chunk(t0, 20 * n, Some(n + 1))
    };
    let placed = timeline.place(&back(22));
    assert_eq!((placed.stale, placed.overlap), (false, true));
    timeline.advance(160);
    assert_eq!(timeline.place(&back(23)).step_ms, Some(-200));
}

/// `hours` of 1 s chunks (no chunk numbers) from a sender clock as fast as
/// `ppm(hour)` says, then one stamped `jump_ms` on: whether each chunk
/// before was taken for garbage far ahead, and whether the last one was.
fn day_then_jump(hours: u64, ppm: impl Fn(u64) -> f64, jump_ms: u64) -> (u64, bool) {
    let t0 = Instant::now();
    let second = |ms: u64, local_ns: f64| Chunk {
        timestamp_ms: ms,
        number: None,
        samples: 8000,
        arrival: t0 + Duration::from_nanos(local_ns as u64),
    };
    let first = second(0, 0.0);
    let mut timeline = Timeline::first(
        &first,
        ClockTime::SECOND,
        Duration::ZERO,
        ClockTime::ZERO,
        false,
    );
    timeline.advance(8000);
    let (mut ignored, mut local_ns) = (0, 0.0);
    for s in 1..=hours * 3600 {
        // A sender `ppm` fast stamps a second in less of our time.
        local_ns += 1e9 / (1.0 + ppm(s / 3600) * 1e-6);
        let placed = timeline.place(&second(1000 * s, local_ns));
        ignored += u64::from(placed.ignored_ahead.is_some());
        timeline.advance(placed.silence + 8000);
    }
    let ms = 1000 * (hours * 3600 + 1) + jump_ms;
    let placed = timeline.place(&second(ms, local_ns + 1e9));
    (ignored, placed.ignored_ahead.is_some())
}

/// A day into a call, a timestamp 30 s beyond the time that passed since
/// the chunk before is garbage whatever the sender's clock (before, the
/// bound had grown by what a 500 ppm clock adds in a day: 43 s).
#[test]
fn a_jump_30_s_ahead_a_day_in_is_garbage_at_any_sender_clock() {
    for ppm in [0.0, 100.0, -100.0, 400.0] {
        assert_eq!(day_then_jump(24, |_| ppm, 30_000), (0, true), "{ppm} ppm");
        // 9 s on is a gap, as at the start of a call.
        assert_eq!(day_then_jump(24, |_| ppm, 9_000), (0, false), "{ppm} ppm");
    }
}

/// A sender clock within what the drift correction believes is no
/// garbage over 28 h, however its skew moves (a clock warming up): the
/// bound follows the timestamps, not a skew measured lately.
#[test]
fn a_sender_clock_within_500_ppm_is_no_garbage_over_28_h() {
    let slowing = |hour: u64| if hour < 20 { 500.0 } else { 0.0 };
    let swinging = |hour: u64| {
        if hour.is_multiple_of(2) {
            500.0
        } else {
            -500.0
        }
    };
    assert_eq!(day_then_jump(28, |_| 400.0, 0).0, 0, "400 ppm");
    assert_eq!(day_then_jump(28, |_| 500.0, 0).0, 0, "500 ppm");
    assert_eq!(day_then_jump(28, slowing, 0).0, 0, "500 then 0 ppm");
    assert_eq!(day_then_jump(28, swinging, 0).0, 0, "±500 ppm");
}
