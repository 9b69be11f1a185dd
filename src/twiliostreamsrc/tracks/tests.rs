//! The aligner's unit tests: alignment, per-track gaps and losses, the wait, the end, the fill.

use super::*;
use crate::codec::g711;
use std::time::Duration;

use Track::{Inbound as In, Outbound as Out};

/// The fill deadline: the aligner's flush and fill, and as the element runs it.
mod fill;
/// The fills' start: rounding onto it, a first chunk too late after a fill.
mod fill_start;
/// Steps in one track's timestamps, in scripted calls.
mod steps;

/// An aligner for both tracks, and the time of its first chunk.
fn both() -> (Aligner, Instant) {
    (Aligner::new(true, true, TRACK_WAIT), Instant::now())
}

/// A 20 ms chunk of `fill` at `ms` (arriving then, after `t0`).
fn push(a: &mut Aligner, t0: Instant, track: Track, ms: u64, fill: u8) -> Placed {
    let arrival = t0 + Duration::from_millis(ms);
    a.push(track, 1000 + ms, &[fill; 160], arrival)
}

/// Takes the next frame's two channels out.
fn take(a: &mut Aligner) -> Option<(Frame, Vec<u8>, Vec<u8>)> {
    let frame = a.next_frame()?;
    let n = frame.samples;
    let channels = (a.channel(In)[..n].to_vec(), a.channel(Out)[..n].to_vec());
    a.consume(n);
    Some((frame, channels.0, channels.1))
}

const S: u8 = g711::SILENCE;

#[test]
fn interleaved_tracks_come_out_frame_by_frame_aligned() {
    let (mut a, t0) = both();
    for n in 0..10 {
        assert_eq!(push(&mut a, t0, In, 20 * n, n as u8), Placed::default());
        // The inbound chunk waits for its outbound half.
        assert_eq!(a.next_frame(), None);
        push(&mut a, t0, Out, 20 * n, 100 + n as u8);
        let (frame, inb, outb) = take(&mut a).unwrap();
        assert_eq!(
            frame,
            Frame {
                samples: 160,
                ..Frame::default()
            }
        );
        assert_eq!((inb, outb), (vec![n as u8; 160], vec![100 + n as u8; 160]));
    }
}

#[test]
fn a_track_delivered_late_is_aligned_by_its_timestamps() {
    let (mut a, t0) = both();
    // The outbound track arrives two chunks behind: within the wait.
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, In, 20, 2);
    push(&mut a, t0, In, 40, 3);
    assert_eq!(a.next_frame(), None);
    push(&mut a, t0, Out, 0, 11);
    let (_, inb, outb) = take(&mut a).unwrap();
    assert_eq!((inb, outb), (vec![1; 160], vec![11; 160]));
    push(&mut a, t0, Out, 20, 12);
    push(&mut a, t0, Out, 40, 13);
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!(frame.samples, 320);
    assert_eq!(inb, [vec![2; 160], vec![3; 160]].concat());
    assert_eq!(outb, [vec![12; 160], vec![13; 160]].concat());
    assert_eq!(frame.lost, [0, 0]);
}

#[test]
fn a_gap_in_one_track_is_silence_in_that_track_only_and_counted() {
    let (mut a, t0) = both();
    let mut inbound = Vec::new();
    let mut outbound = Vec::new();
    let mut lost = [0, 0];
    let mut disconts = Vec::new();
    for n in 0..10u64 {
        push(&mut a, t0, In, 20 * n, 1);
        // Outbound chunks 3, 4 and 5 are lost.
        if !(3..6).contains(&n) {
            let placed = push(&mut a, t0, Out, 20 * n, 2);
            assert_eq!(placed.gap, if n == 6 { 480 } else { 0 });
        }
        while let Some((frame, i, o)) = take(&mut a) {
            inbound.extend(i);
            outbound.extend(o);
            lost = [lost[0] + frame.lost[0], lost[1] + frame.lost[1]];
            if frame.discont {
                disconts.push(n);
            }
        }
    }
    assert_eq!(inbound, vec![1; 1600]);
    let mut expected = vec![2; 1600];
    expected[480..960].fill(S);
    assert_eq!(outbound, expected);
    assert_eq!(lost, [0, 3]);
    assert_eq!(disconts, [6]);
}

#[test]
fn the_slower_track_is_waited_for_at_most_max_wait() {
    let (mut a, t0) = both();
    push(&mut a, t0, Out, 0, 2);
    push(&mut a, t0, In, 0, 1);
    take(&mut a).unwrap();
    // The outbound track stops; inbound goes on.
    for n in 1..=3 {
        push(&mut a, t0, In, 20 * n, 1);
        assert_eq!(a.next_frame(), None, "within the wait");
    }
    push(&mut a, t0, In, 80, 1);
    // 80 ms ahead now: 20 ms go out, with silence for outbound.
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!(
        (frame.samples, frame.lost, frame.discont),
        (160, [0, 1], true)
    );
    assert_eq!((inb, outb), (vec![1; 160], vec![S; 160]));
    // It stays at most the wait behind.
    push(&mut a, t0, In, 100, 1);
    let (frame, _, _) = take(&mut a).unwrap();
    assert_eq!(
        (frame.samples, frame.lost, frame.discont),
        (160, [0, 1], false)
    );
    assert_eq!(a.end(In) - a.position, TRACK_WAIT);
    // The outbound track comes back late: what was filled is dropped,
    // the rest lands where its timestamp says.
    let placed = push(&mut a, t0, Out, 40, 2);
    assert_eq!(placed.late, 160);
    assert_eq!(a.next_frame(), None);
    let placed = push(&mut a, t0, Out, 60, 2);
    assert_eq!(placed, Placed::default());
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [0, 0]));
    assert_eq!((inb, outb), (vec![1; 160], vec![2; 160]));
}

#[test]
fn a_track_the_stream_does_not_carry_is_silence_at_once() {
    let mut a = Aligner::new(true, false, TRACK_WAIT);
    let t0 = Instant::now();
    push(&mut a, t0, In, 0, 1);
    let (frame, inb, outb) = take(&mut a).unwrap();
    // Neither waited for nor counted.
    assert_eq!(
        (frame.samples, frame.lost, frame.discont),
        (160, [0, 0], false)
    );
    assert_eq!((inb, outb), (vec![1; 160], vec![S; 160]));
}

#[test]
fn silence_before_a_track_starts_is_not_a_loss() {
    let (mut a, t0) = both();
    for n in 0..6 {
        push(&mut a, t0, In, 20 * n, 1);
    }
    let (frame, _, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (480, [0, 0]));
    assert_eq!(outb, vec![S; 480]);
    // It starts 40 ms after the silence filled so far: no loss either.
    let placed = push(&mut a, t0, Out, 160, 2);
    assert_eq!(placed.gap, 800);
    let (frame, _, outb) = take(&mut a).unwrap();
    assert_eq!(
        (frame.samples, frame.lost, frame.discont),
        (480, [0, 0], false)
    );
    assert_eq!(outb, vec![S; 480]);
    // Once it has started, its gaps count.
    push(&mut a, t0, In, 120, 1);
    push(&mut a, t0, In, 140, 1);
    push(&mut a, t0, In, 160, 1);
    push(&mut a, t0, Out, 220, 2);
    let (frame, _, outb) = take(&mut a).unwrap();
    assert_eq!(frame.lost, [0, 2]);
    assert_eq!(outb, [vec![S; 320], vec![2; 160]].concat());
}

#[test]
fn a_track_starting_a_few_ms_off_the_other_goes_at_its_timestamp() {
    // Outbound's timestamps lie 5 ms after inbound's, from its first
    // chunk on: put at the start, it would run 5 ms early all call long.
    let (mut a, t0) = both();
    for ms in (0..60).step_by(20) {
        push(&mut a, t0, In, ms, 1);
        push(&mut a, t0, Out, ms + 5, 2);
    }
    let (frame, _, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (480, [0, 0]));
    assert_eq!(outb, [vec![S; 40], vec![2; 440]].concat());
}

#[test]
fn rounding_within_the_tolerance_is_no_gap() {
    let (mut a, t0) = both();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, Out, 0, 2);
    take(&mut a).unwrap();
    // 10 ms off either way: contiguous.
    assert_eq!(push(&mut a, t0, In, 30, 1), Placed::default());
    assert_eq!(push(&mut a, t0, Out, 10, 2), Placed::default());
    let (frame, _, _) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [0, 0]));
}

#[test]
fn a_duplicate_chunk_is_dropped() {
    let (mut a, t0) = both();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, In, 20, 3);
    push(&mut a, t0, Out, 0, 2);
    // The same bytes where the track had them: dropped at once.
    let placed = push(&mut a, t0, In, 0, 1);
    assert_eq!((placed.twice, placed.held), (true, false));
    // Other bytes over the track's audio: kept back until the next chunk.
    let placed = push(&mut a, t0, In, 0, 9);
    assert!(placed.held);
    let (_, inb, _) = take(&mut a).unwrap();
    assert_eq!(inb, vec![1; 160]);
    assert_eq!(a.next_frame(), None);
    // The next one follows the track's audio, not it: it was out of place.
    // (One following it would have told a step back.)
    let placed = push(&mut a, t0, In, 40, 4);
    assert_eq!((placed.held_dropped, placed.step), (160, None));
    push(&mut a, t0, Out, 20, 2);
    push(&mut a, t0, Out, 40, 2);
    let (frame, inb, _) = take(&mut a).unwrap();
    assert_eq!((frame.lost, frame.too_late), ([0, 0], 0));
    assert_eq!(inb, [[3; 160], [4; 160]].concat());
    // One kept back at the end is dropped then, and told in the frame.
    assert!(push(&mut a, t0, Out, 20, 9).held);
    let frame = a.finish().unwrap();
    assert_eq!((frame.samples, frame.too_late), (0, 1));
}

#[test]
fn a_long_stream_wide_gap_is_skipped_not_filled() {
    let (mut a, t0) = both();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, Out, 0, 2);
    take(&mut a).unwrap();
    // Nothing on either track for 6 s.
    let placed = push(&mut a, t0, In, 6020, 1);
    assert_eq!(placed.skipped, 6000 * 8);
    assert_eq!(placed.gap, 0);
    push(&mut a, t0, Out, 6020, 2);
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!(
        frame,
        Frame {
            samples: 160,
            jump: 48_000,
            lost: [300, 300],
            discont: true,
            too_late: 0,
        }
    );
    assert_eq!((inb, outb), (vec![1; 160], vec![2; 160]));
    // And the tracks go on from there.
    push(&mut a, t0, In, 6040, 1);
    push(&mut a, t0, Out, 6040, 2);
    assert_eq!(take(&mut a).unwrap().0.samples, 160);
}

#[test]
fn what_came_before_a_skip_goes_out_before_the_jump() {
    let (mut a, t0) = both();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, In, 20, 1);
    push(&mut a, t0, Out, 0, 2);
    // Outbound's 20 ms never come; 6 s later both go on.
    let placed = push(&mut a, t0, In, 6040, 1);
    assert_eq!(placed.skipped, 6000 * 8);
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!(
        (frame.samples, frame.jump, frame.lost),
        (160, 0, [300, 300])
    );
    assert_eq!((inb, outb), (vec![1; 160], vec![2; 160]));
    assert_eq!(a.next_frame(), None, "outbound's 20 ms are waited for");
    let placed = push(&mut a, t0, Out, 6040, 2);
    assert_eq!(placed.gap, 160);
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.jump, frame.lost), (160, 0, [0, 1]));
    assert_eq!((inb, outb), (vec![1; 160], vec![S; 160]));
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!(
        (frame.samples, frame.jump, frame.lost),
        (160, 6000 * 8, [0, 0])
    );
    assert_eq!((inb, outb), (vec![1; 160], vec![2; 160]));
}

#[test]
fn far_future_timestamps_stay_contiguous() {
    let (mut a, t0) = both();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, Out, 0, 2);
    take(&mut a).unwrap();
    for ms in [3_600_000, u64::MAX / 2] {
        let placed = a.push(In, ms, &[1; 160], t0 + Duration::from_millis(20));
        assert!(placed.ignored_ahead.is_some());
        assert_eq!((placed.gap, placed.skipped), (0, 0));
    }
    push(&mut a, t0, Out, 20, 2);
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [0, 0]));
    assert_eq!((inb, outb), (vec![1; 160], vec![2; 160]));
    // Measured anew: the chunks after them follow on, not ignored.
    let placed = a.push(
        In,
        u64::MAX / 2 + 20,
        &[1; 160],
        t0 + Duration::from_millis(40),
    );
    assert_eq!(placed, Placed::default());
    // A timestamp before the first chunk's, alone, is dropped.
    assert!(a.push(Out, 0, &[2; 160], t0).held);
    assert_eq!(push(&mut a, t0, Out, 40, 2).held_dropped, 160);
}

#[test]
fn a_timestamp_past_i64_max_ms_moves_its_track_in_full() {
    // How far such a chunk moves its track does not fit an i64 of ms:
    // clamped, the element misplaced its time and, at the step back that
    // follows, overflowed taking the offsets apart (a panic: the call
    // ended with an ERROR).
    let (mut a, t0) = both();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, Out, 0, 2);
    let ms = u64::MAX - 7;
    let placed = a.push(In, ms, &[3; 160], t0 + Duration::from_millis(20));
    assert!(placed.ignored_ahead.is_some());
    // Placed after the track's last: 20 ms in on the stream's clock.
    assert_eq!(i128::from(ms) + a.offset_ms(In), 1020);
    // The next ones on the old measure: a step back, to where it was.
    assert!(push(&mut a, t0, In, 40, 4).held);
    let placed = push(&mut a, t0, In, 60, 5);
    assert!(placed.step.is_some_and(|step| step < 0), "{placed:?}");
    assert_eq!(a.offset_ms(In), 0);
}

#[test]
fn finish_pads_the_shorter_track() {
    let (mut a, t0) = both();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, Out, 0, 2);
    push(&mut a, t0, In, 20, 1);
    take(&mut a).unwrap();
    let frame = a.finish().unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [0, 1]));
    assert_eq!(a.channel(Out)[..160], [S; 160]);
    a.consume(160);
    assert_eq!(a.finish(), None);
}

#[test]
fn chunks_of_other_lengths_are_counted_in_their_own_length() {
    let (mut a, t0) = both();
    a.push(In, 1000, &[1; 320], t0);
    a.push(Out, 1000, &[2; 320], t0);
    take(&mut a).unwrap();
    // 100 ms missing from the outbound track, chunks of 40 ms: 2.5 → 3.
    a.push(In, 1040, &[1; 1120], t0);
    a.push(Out, 1140, &[2; 320], t0);
    let (frame, _, outb) = take(&mut a).unwrap();
    assert_eq!(frame.lost, [0, 3]);
    assert_eq!(outb[..800], [S; 800]);
}

#[test]
fn a_short_chunk_after_a_gap_counts_it_in_the_track_s_longest_chunks() {
    let (mut a, t0) = both();
    let mut lost = [0, 0];
    let mut drain = |a: &mut Aligner| {
        while let Some((frame, _, _)) = take(a) {
            lost = [lost[0] + frame.lost[0], lost[1] + frame.lost[1]];
        }
    };
    for n in 0..8u64 {
        push(&mut a, t0, In, 20 * n, 1);
        // Outbound: chunks 2 and 3 missing, then a chunk of 2 samples.
        match n {
            2 | 3 => {}
            4 => {
                a.push(Out, 1000 + 80, &[2; 2], t0 + Duration::from_millis(80));
            }
            _ => {
                push(&mut a, t0, Out, 20 * n, 2);
            }
        }
        drain(&mut a);
    }
    // Two 20 ms chunks, not 160 of 2 samples; the short chunk's missing
    // rest (19.75 ms) one more.
    assert_eq!(lost, [0, 3]);
}

#[test]
fn the_late_part_after_the_wait_is_dropped_also_within_the_rounding_tolerance() {
    // track-wait 50 ms: the wait gives up the outbound track mid-chunk.
    let mut a = Aligner::new(true, true, 400);
    let t0 = Instant::now();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, Out, 0, 2);
    take(&mut a).unwrap();
    // The outbound track falls behind: at 80 ms, it is filled to 50 ms.
    for ms in [20, 40, 60, 80] {
        push(&mut a, t0, In, ms, 1);
    }
    let (frame, _, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (240, [0, 2]));
    assert_eq!(outb, vec![S; 240]);
    // Its chunks come back: the one at 20 ms all late, the one at 40 ms
    // late by 10 ms: what lies in the silence is dropped, the rest goes
    // where its timestamp says.
    assert_eq!(push(&mut a, t0, Out, 20, 3).late, 160);
    let placed = push(&mut a, t0, Out, 40, 4);
    assert_eq!((placed.late, placed.gap), (80, 0));
    push(&mut a, t0, Out, 60, 5);
    push(&mut a, t0, Out, 80, 6);
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (400, [0, 0]));
    assert_eq!(inb, vec![1; 400]);
    let expected = [vec![4; 80], vec![5; 160], vec![6; 160]].concat();
    assert_eq!(outb, expected, "the outbound track runs late");
    // And on time from there.
    push(&mut a, t0, In, 100, 7);
    push(&mut a, t0, Out, 100, 8);
    let (_, inb, outb) = take(&mut a).unwrap();
    assert_eq!((inb, outb), (vec![7; 160], vec![8; 160]));
}

#[test]
fn a_chunk_just_after_the_wait_s_silence_goes_where_its_timestamp_says() {
    // track-wait 70 ms: the wait gives up the outbound track mid-chunk.
    let mut a = Aligner::new(true, true, 560);
    let t0 = Instant::now();
    push(&mut a, t0, In, 0, 1);
    push(&mut a, t0, Out, 0, 2);
    take(&mut a).unwrap();
    for ms in [20, 40, 60, 80] {
        push(&mut a, t0, In, ms, 1);
    }
    let (frame, _, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (80, [0, 1]));
    assert_eq!(outb, vec![S; 80]);
    // Its chunk at 20 ms is lost; the one at 40 ms starts 10 ms after the
    // silence: 10 ms more of it, not the chunk 10 ms early.
    let placed = push(&mut a, t0, Out, 40, 4);
    assert_eq!((placed.late, placed.gap), (0, 80));
    push(&mut a, t0, Out, 60, 5);
    push(&mut a, t0, Out, 80, 6);
    let (frame, inb, outb) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (560, [0, 0]));
    assert_eq!(inb, vec![1; 560]);
    let expected = [vec![S; 80], vec![4; 160], vec![5; 160], vec![6; 160]].concat();
    assert_eq!(outb, expected, "the outbound track runs early");
    push(&mut a, t0, In, 100, 7);
    push(&mut a, t0, Out, 100, 8);
    let (_, inb, outb) = take(&mut a).unwrap();
    assert_eq!((inb, outb), (vec![7; 160], vec![8; 160]));
}

/// Both tracks from a sender clock 400 ppm fast (a clock, not garbage:
/// under MAX_SKEW_PPM), for 8 h: after 7 h its timestamps are 10 s ahead
/// of our time. They are no garbage for that: nothing is taken for far
/// ahead, and every frame comes out whole, nothing lost.
#[test]
fn a_fast_sender_clock_over_hours_is_no_garbage() {
    let (mut a, t0) = both();
    let local_ns = |ms: u64| (ms as f64 * 1e6 / (1.0 + 400e-6)) as u64;
    let (mut ignored, mut samples) = (0, 0);
    for n in 0..8 * 3600 * 50u64 {
        let arrival = t0 + Duration::from_nanos(local_ns(20 * n));
        for track in [In, Out] {
            let placed = a.push(track, 155 + 20 * n, &[1; 160], arrival);
            ignored += u64::from(placed.ignored_ahead.is_some());
        }
        while let Some(frame) = a.next_frame() {
            assert_eq!(frame.lost, [0, 0], "chunk {n}");
            samples += frame.samples as u64;
            a.consume(frame.samples);
        }
    }
    assert_eq!(ignored, 0, "timestamps taken for garbage");
    assert_eq!(samples, 8 * 3600 * 8000);
}

/// An aligner started by the leading track's chunk (as after a pause,
/// when the stream is anchored anew), the other track two chunks behind:
/// the other's chunks for time before the first are too late, and not a
/// step back (it has no audio yet to step back over), so from its first
/// chunk in time on the two stay aligned.
#[test]
fn a_lagging_track_stays_aligned_from_a_start_the_other_led() {
    for lagging in Track::ALL {
        let (mut a, t0) = both();
        let leading = lagging.other();
        let mut channels = [Vec::new(), Vec::new()];
        let mut late = 0;
        for n in 10..30u64 {
            let at = t0 + Duration::from_millis(20 * n);
            for (track, k) in [(leading, n), (lagging, n - 2)] {
                let placed = a.push(track, 20 * k, &[k as u8; 160], at);
                assert_eq!(placed.step, None, "{lagging:?} chunk {k}");
                assert!(!placed.held, "{lagging:?} chunk {k}");
                late += placed.late;
            }
            while let Some((_, inbound, outbound)) = take(&mut a) {
                channels[0].extend(inbound);
                channels[1].extend(outbound);
            }
        }
        assert_eq!(late, 320, "{lagging:?}: the two chunks before the start");
        let [inbound, outbound] = &channels;
        // From chunk 10 on, sample for sample.
        let from = outbound.iter().position(|&b| b == 10).unwrap();
        assert_eq!(from, 0, "{lagging:?}");
        let n = outbound.len().min(inbound.len());
        assert!(n >= 160 * 17, "{lagging:?}: {n} samples");
        assert_eq!(inbound[..n], outbound[..n], "{lagging:?}");
    }
}
