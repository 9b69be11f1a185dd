//! The timeline's unit tests: placement, gaps, re-anchoring, fill and late audio.

use super::*;

mod steps;

const MS: ClockTime = ClockTime::MSECOND;

/// A 20 ms chunk `ms` after `t0`, with that timestamp.
fn chunk(t0: Instant, ms: u64, number: Option<u64>) -> Chunk {
    Chunk {
        timestamp_ms: ms,
        number,
        samples: 160,
        arrival: t0 + Duration::from_millis(ms),
    }
}

/// A timeline whose first chunk (number 1, timestamp 0) is anchored at 1 s.
fn started(t0: Instant, tracks: &[&str]) -> Timeline {
    let both = tracks.contains(&"outbound");
    let first = chunk(t0, 0, Some(1));
    let now = ClockTime::SECOND + 20 * MS;
    let mut timeline = Timeline::first(&first, now, Duration::ZERO, ClockTime::ZERO, both);
    assert_eq!(timeline.anchor(), ClockTime::SECOND);
    timeline.advance(160);
    timeline
}

fn contiguous() -> Placement {
    Placement::default()
}

#[test]
fn the_first_chunk_is_anchored_when_it_started_being_spoken() {
    let t0 = Instant::now();
    let first = chunk(t0, 12_340, Some(7));
    let now = 5 * ClockTime::SECOND;
    let waited = Duration::from_millis(30);
    let timeline = Timeline::first(&first, now, waited, ClockTime::ZERO, false);
    // 5 s, less 30 ms of waiting, less 20 ms of speech.
    assert_eq!(timeline.anchor(), 4950 * MS);
    assert_eq!(timeline.position, 0);
    assert_eq!(timeline.first_ts_ms, 12_340);
    assert_eq!(timeline.next_chunk, Some(8));
}

#[test]
fn the_anchor_is_no_earlier_than_the_output_delay() {
    let t0 = Instant::now();
    let delay = ClockTime::from_nseconds(2_562_500);
    let timeline = Timeline::first(&chunk(t0, 0, None), 10 * MS, Duration::ZERO, delay, false);
    assert_eq!(timeline.anchor(), delay);
    // So the first PTS is 0, not negative.
    assert_eq!(timeline.span(160, 2, delay).pts, ClockTime::ZERO);
}

#[test]
fn contiguous_chunks_follow_each_other() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..50 {
        assert_eq!(
            timeline.place(&chunk(t0, 20 * n, Some(n + 1))),
            contiguous()
        );
        let span = timeline.span(160, 1, ClockTime::ZERO);
        assert_eq!(span.pts, ClockTime::SECOND + 20 * n * MS);
        timeline.advance(160);
    }
}

#[test]
fn a_timestamp_gap_is_filled_with_silence_and_counted() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // Chunks at 20..60 ms lost (numbers 2 and 3 as well).
    let placed = timeline.place(&chunk(t0, 60, Some(4)));
    assert_eq!(
        placed,
        Placement {
            silence: 320,
            discont: true,
            lost: 2,
            gap: 320,
            ..contiguous()
        }
    );
    timeline.advance(320 + 160);
    // The chunk lands where its timestamp says.
    assert_eq!(timeline.place(&chunk(t0, 80, Some(5))), contiguous());
    assert_eq!(
        timeline.span(160, 1, ClockTime::ZERO).pts,
        ClockTime::SECOND + 80 * MS
    );
}

#[test]
fn a_timestamp_gap_counts_chunks_of_the_chunk_s_own_length() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // 100 ms missing, chunks of 40 ms: 2.5, rounded to 3.
    let placed = timeline.place(&Chunk {
        samples: 320,
        ..chunk(t0, 120, None)
    });
    assert_eq!((placed.silence, placed.lost), (800, 3));
}

#[test]
fn a_short_chunk_after_a_gap_does_not_multiply_the_loss() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // 100 ms missing, then a chunk of 7 samples: five 20 ms chunks lost,
    // not 114 of its own length.
    let placed = timeline.place(&Chunk {
        samples: 7,
        ..chunk(t0, 120, None)
    });
    assert_eq!((placed.silence, placed.lost), (800, 5));
}

#[test]
fn a_skipped_chunk_number_without_a_timestamp_gap_is_a_discont() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    let placed = timeline.place(&chunk(t0, 20, Some(5)));
    assert_eq!(
        placed,
        Placement {
            discont: true,
            lost: 3,
            ..contiguous()
        }
    );
    // Numbering goes on from the chunk that came.
    timeline.advance(160);
    assert_eq!(timeline.place(&chunk(t0, 40, Some(6))), contiguous());
}

#[test]
fn short_chunks_in_a_row_do_not_make_a_gap_many() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // Chunks of 1 and then 2 samples, 20 ms apart: each leaves 19.9 ms
    // unsent, one chunk's worth of 20 ms chunks, not 80 of their own.
    let short = |ms, number, samples| Chunk {
        samples,
        ..chunk(t0, ms, Some(number))
    };
    assert_eq!(timeline.place(&short(20, 2, 1)).lost, 0);
    timeline.advance(1);
    assert_eq!(timeline.place(&short(40, 3, 2)).lost, 1);
    timeline.advance(159 + 2);
    assert_eq!(timeline.place(&chunk(t0, 60, Some(4))).lost, 1);
}

#[test]
fn one_long_chunk_coarsens_the_count_for_a_second_at_most() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // A 100 ms chunk, then 20 ms ones for 2 s.
    let long = Chunk {
        samples: 800,
        ..chunk(t0, 20, Some(2))
    };
    assert_eq!(timeline.place(&long), contiguous());
    timeline.advance(800);
    let (mut ms, mut number) = (120, 3);
    for _ in 0..100 {
        assert_eq!(timeline.place(&chunk(t0, ms, Some(number))), contiguous());
        timeline.advance(160);
        (ms, number) = (ms + 20, number + 1);
    }
    // 100 ms missing: five 20 ms chunks lost, not one 100 ms chunk.
    let placed = timeline.place(&chunk(t0, ms + 100, None));
    assert_eq!((placed.silence, placed.lost), (800, 5));
}

#[test]
fn the_loss_unit_is_the_longest_of_the_last_50_to_100_chunks() {
    let mut unit = LossUnit::new(160);
    unit.see(800);
    for _ in 0..47 {
        unit.see(160);
    }
    // 49 seen in the first window, the long one among them.
    assert_eq!(unit.get(), 800);
    unit.see(160);
    // The window closed: its longest stays for the next one.
    assert_eq!(unit.get(), 800);
    for _ in 0..49 {
        unit.see(160);
        assert_eq!(unit.get(), 800);
    }
    unit.see(160);
    assert_eq!(unit.get(), 160);
    // A short chunk never lowers it below the window's longest.
    unit.see(1);
    assert_eq!(unit.get(), 160);
}

#[test]
fn a_chunk_number_beyond_the_time_passed_counts_nothing_lost() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // 60 ms in, chunk 1000: 998 chunks (20 s) cannot have been skipped.
    let placed = timeline.place(&chunk(t0, 20, Some(1000)));
    assert_eq!(
        placed,
        Placement {
            ignored_number: Some(1000),
            ..contiguous()
        }
    );
    // Numbers go on from it.
    timeline.advance(160);
    assert_eq!(timeline.place(&chunk(t0, 40, Some(1001))), contiguous());
    timeline.advance(160);
    let placed = timeline.place(&chunk(t0, 60, Some(1 << 40)));
    assert_eq!((placed.lost, placed.ignored_number), (0, Some(1 << 40)));
}

#[test]
fn a_chunk_whose_time_was_played_is_dropped_and_changes_nothing() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    assert_eq!(timeline.place(&chunk(t0, 20, Some(2))), contiguous());
    timeline.advance(160);
    // Chunk 2 again: stale, and chunk 3 follows as if it never came.
    let placed = timeline.place(&chunk(t0, 20, Some(2)));
    assert_eq!(
        placed,
        Placement {
            stale: true,
            ..contiguous()
        }
    );
    assert_eq!(timeline.place(&chunk(t0, 40, Some(3))), contiguous());
    timeline.advance(160);
    // 5 before 4: 4 is lost by then, and when it comes it is stale.
    assert_eq!(timeline.place(&chunk(t0, 80, Some(5))).lost, 1);
    timeline.advance(320);
    assert!(timeline.place(&chunk(t0, 60, Some(4))).stale);
    assert_eq!(timeline.place(&chunk(t0, 100, Some(6))), contiguous());
    timeline.advance(160);
    // Numbered as the next chunk, its timestamp gone back: kept.
    let placed = timeline.place(&chunk(t0, 100, Some(7)));
    assert!(!placed.stale && placed.overlap);
}

#[test]
fn a_chunk_far_behind_is_a_timestamp_gone_back_and_kept() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..100 {
        timeline.place(&chunk(t0, 20 * n, None));
        timeline.advance(160);
    }
    // 2 s in, a chunk claiming 20 ms: further back than a duplicate.
    let placed = timeline.place(&chunk(t0, 20, None));
    assert!(!placed.stale && placed.overlap);
}

#[test]
fn chunk_numbers_do_not_count_with_both_tracks() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound", "outbound"]);
    assert_eq!(timeline.place(&chunk(t0, 20, Some(3))), contiguous());
    // A timestamp gap still does.
    timeline.advance(160);
    assert_eq!(timeline.place(&chunk(t0, 60, Some(5))).lost, 1);
}

#[test]
fn a_gap_within_the_tolerance_is_rounding() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // 10 ms late (80 samples): nothing to fill.
    assert_eq!(timeline.place(&chunk(t0, 30, None)), contiguous());
    timeline.advance(160);
    // 11 ms late: a gap.
    let placed = timeline.place(&chunk(t0, 51, None));
    assert_eq!((placed.silence, placed.lost), (88, 1));
}

#[test]
fn a_gap_over_the_silence_limit_makes_the_timestamps_jump() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // 6 s later, really.
    let placed = timeline.place(&chunk(t0, 6020, None));
    assert_eq!(
        placed,
        Placement {
            silence: 0,
            discont: true,
            lost: 300,
            gap: 48_000,
            ..contiguous()
        }
    );
    assert_eq!(
        timeline.span(160, 1, ClockTime::ZERO).pts,
        ClockTime::SECOND + 6020 * MS
    );
}

#[test]
fn a_far_future_timestamp_is_ignored_and_later_ones_measured_from_it() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // Claims an hour after the first, 20 ms in.
    let mut liar = chunk(t0, 3_600_020, None);
    liar.arrival = t0 + Duration::from_millis(20);
    let placed = timeline.place(&liar);
    assert_eq!(
        placed,
        Placement {
            ignored_ahead: Some(Ahead {
                due: 3_600_020 * 8,
                elapsed: Duration::from_millis(20),
            }),
            ..contiguous()
        }
    );
    assert_eq!(
        timeline.span(160, 1, ClockTime::ZERO).pts,
        ClockTime::SECOND + 20 * MS
    );
    timeline.advance(160);
    let mut next = chunk(t0, 3_600_040, None);
    next.arrival = t0 + Duration::from_millis(40);
    assert_eq!(timeline.place(&next), contiguous());
    assert_eq!(
        timeline.span(160, 1, ClockTime::ZERO).pts,
        ClockTime::SECOND + 40 * MS
    );
}

#[test]
fn up_to_ten_seconds_ahead_is_believed() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    let mut ahead = chunk(t0, 10_000, None);
    ahead.arrival = t0;
    let placed = timeline.place(&ahead);
    assert_eq!(placed.ignored_ahead, None);
    assert!(placed.discont);
}

#[test]
fn a_partial_overlap_is_kept_contiguous() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..5 {
        timeline.place(&chunk(t0, 20 * n, None));
        timeline.advance(160);
    }
    // A chunk claiming 85 ms, 15 ms before the end of what went out: part
    // of its time is still to come (a chunk all of whose time went out is
    // dropped instead: see below).
    let placed = timeline.place(&chunk(t0, 85, None));
    assert_eq!(
        placed,
        Placement {
            overlap: true,
            // Out 15 ms after its timestamp's place.
            behind: 120,
            ..contiguous()
        }
    );
    assert_eq!(
        timeline.span(160, 1, ClockTime::ZERO).pts,
        ClockTime::SECOND + 100 * MS
    );
}

#[test]
fn spans_take_off_the_delay_and_count_output_samples() {
    let t0 = Instant::now();
    // 16 kHz: the upsampler delays by 2.5625 ms.
    let delay = ClockTime::from_nseconds(2_562_500);
    let first = chunk(t0, 0, None);
    let mut timeline = Timeline::first(&first, ClockTime::SECOND, Duration::ZERO, delay, false);
    assert_eq!(timeline.anchor(), 980 * MS);
    let span = timeline.span(160, 2, delay);
    assert_eq!(
        span,
        Span {
            pts: 980 * MS - delay,
            duration: 20 * MS,
            offset: 0,
            offset_end: 320,
        }
    );
    timeline.advance(160);
    // Silence and the chunk in one buffer.
    let span = timeline.span(480, 2, delay);
    assert_eq!(
        span,
        Span {
            pts: 1000 * MS - delay,
            duration: 60 * MS,
            offset: 320,
            offset_end: 1280,
        }
    );
    // At 8 kHz, no delay and one output sample per input sample.
    assert_eq!(timeline.span(160, 1, ClockTime::ZERO).offset, 160);
}

#[test]
fn a_reanchored_stream_goes_on_at_the_running_time_of_its_next_chunk() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..50 {
        timeline.place(&chunk(t0, 20 * n, None));
        timeline.advance(160);
    }
    // Paused at 2 s of running time for 2 s: Twilio's clock went on,
    // the running time did not. The chunk at 3000 ms arrives at running
    // time 2.1 s: it started being spoken at 2.08 s.
    timeline.reanchor(&chunk(t0, 3000, Some(151)), 2100 * MS, Duration::ZERO);
    let span = timeline.span(160, 1, ClockTime::ZERO);
    assert_eq!(span.pts, 2080 * MS);
    assert_eq!(span.offset, 50 * 160);
    timeline.advance(160);
    // The next one follows on, measured from the re-anchored chunk.
    assert_eq!(timeline.place(&chunk(t0, 3020, Some(152))), contiguous());
    assert_eq!(timeline.span(160, 1, ClockTime::ZERO).pts, 2100 * MS);
}

/// A chunk whose arrival says it started being spoken before the stream
/// stood still (it arrived just after PLAYING, the running time having
/// moved less than its length) goes on where the stream stood: no buffer
/// starts before the last one ended.
#[test]
fn a_reanchored_stream_never_steps_back() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..50 {
        timeline.place(&chunk(t0, 20 * n, None));
        timeline.advance(160);
    }
    let end = timeline.span(0, 1, ClockTime::ZERO).pts;
    assert_eq!(end, 2000 * MS);
    // Arrived at 2.005 s: spoken from 1.985 s by its length.
    timeline.reanchor(&chunk(t0, 3000, Some(151)), 2005 * MS, Duration::ZERO);
    assert_eq!(timeline.span(160, 1, ClockTime::ZERO).pts, end);
}

#[test]
fn nothing_is_filled_before_the_deadline() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    let deadline = 300 * MS;
    // Position 0 + 20 ms at running time 1.02 s; the next chunk is due
    // by 1.04 s, and 300 ms overdue at 1.34 s.
    assert_eq!(timeline.fill_due(deadline), 1340 * MS);
    assert_eq!(timeline.fill(1339 * MS, deadline), 0);
    assert_eq!(timeline.fill(1340 * MS, deadline), 160);
    timeline.advance(160);
    assert_eq!(timeline.fill_due(deadline), 1360 * MS);
    // Late waking fills all that is overdue, in whole chunks.
    assert_eq!(timeline.fill(1419 * MS, deadline), 480);
    timeline.advance(480);
}

#[test]
fn audio_held_back_is_not_filled_over() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound", "outbound"]);
    let deadline = 300 * MS;
    // A chunk of one track came and is held for the other's: the fill is
    // due a chunk after it (not at 1.34 s), and puts it out first.
    timeline.hold(160);
    assert_eq!(timeline.fill_due(deadline), 1360 * MS);
    assert_eq!(timeline.fill(1359 * MS, deadline), 0);
    assert_eq!(timeline.fill(1360 * MS, deadline), 320);
}

#[test]
fn audio_late_for_filled_time_goes_out_after_the_fill() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    // 400 ms of fill while nothing came.
    let filled = timeline.fill(1420 * MS, ClockTime::ZERO);
    assert_eq!(filled, 3200);
    timeline.advance(filled);
    // Then the next chunk (nothing was lost, it was only late).
    let placed = timeline.place(&chunk(t0, 20, Some(2)));
    assert_eq!(
        placed,
        Placement {
            discont: true,
            late: 3200,
            ..contiguous()
        }
    );
    assert_eq!(
        timeline.span(160, 1, ClockTime::ZERO).pts,
        ClockTime::SECOND + 420 * MS
    );
    timeline.advance(160);
    // Later chunks are measured from it.
    assert_eq!(timeline.place(&chunk(t0, 40, Some(3))), contiguous());
    assert_eq!(
        timeline.span(160, 1, ClockTime::ZERO).pts,
        ClockTime::SECOND + 440 * MS
    );
}

#[test]
fn a_real_gap_longer_than_the_fill_is_counted_and_the_rest_silenced() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    let filled = timeline.fill(1200 * MS, ClockTime::ZERO);
    assert_eq!(filled, 1440);
    timeline.advance(filled);
    // The chunk at 300 ms: 280 ms lost, 180 ms of it filled already.
    let placed = timeline.place(&chunk(t0, 300, Some(16)));
    assert_eq!(
        placed,
        Placement {
            silence: 800,
            discont: true,
            lost: 14,
            gap: 2240,
            ..contiguous()
        }
    );
    timeline.advance(800 + 160);
    assert_eq!(timeline.place(&chunk(t0, 320, Some(17))), contiguous());
}

#[test]
fn a_lost_stretch_within_the_fill_is_counted_and_late() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    let filled = timeline.fill(1500 * MS, ClockTime::ZERO);
    timeline.advance(filled);
    // 100 ms lost, then the rest arrives late.
    let placed = timeline.place(&chunk(t0, 120, Some(7)));
    assert_eq!(
        (placed.lost, placed.late, placed.silence),
        (5, 4000 - 960, 0)
    );
    assert!(placed.discont);
}

#[test]
fn a_numbered_chunk_kept_from_far_behind_does_not_make_the_next_lost() {
    let t0 = Instant::now();
    let mut timeline = started(t0, &["inbound"]);
    for n in 1..100 {
        timeline.place(&chunk(t0, 20 * n, Some(n + 1)));
        timeline.advance(160);
    }
    // Chunk 2 again, 2 s late: kept (a timestamp gone back, not a
    // duplicate by this window), and numbering does not go back with it.
    assert!(timeline.place(&chunk(t0, 20, Some(2))).overlap);
    timeline.advance(160);
    assert_eq!(timeline.place(&chunk(t0, 2000, Some(101))).lost, 0);
}

#[test]
fn a_meter_told_the_correction_finds_a_slow_senders_chunks_on_time() {
    use crate::quality::Meter;
    // 400 ppm slow, 2 minutes: by the end its chunks come 48 ms after the
    // first chunk's mapping puts them, more than the 20 ms latency.
    let run = |told: bool| {
        let t0 = Instant::now();
        let mut timeline = started(t0, &["inbound"]);
        let mut meter = Meter::new(Duration::from_millis(20), 0);
        meter.arrived(0, t0, 0, 160);
        for i in 1..6000u64 {
            let ts = 20 * i;
            let arrival = t0 + Duration::from_nanos((ts as f64 * 1e6 * (1.0 + 400e-6)) as u64);
            let chunk = Chunk {
                timestamp_ms: ts,
                number: Some(i + 1),
                samples: 160,
                arrival,
            };
            assert_eq!(timeline.place(&chunk), contiguous());
            timeline.advance(160);
            if told {
                meter.set_correction(timeline.correction_ns());
            }
            meter.arrived(0, arrival, ts, 160);
        }
        meter.call(20.0, true).late
    };
    assert_eq!(run(true), 0);
    assert!(run(false) > 3000);
}
