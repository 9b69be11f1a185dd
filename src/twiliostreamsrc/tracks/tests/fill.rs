//! The fill deadline: the aligner's flush and fill, and the audio after
//! them; then as the element runs it (`media.rs`, `timing.rs`): a stall
//! of both tracks filled, then their late audio, whose two chunks of one
//! time are two messages.

use super::*;
use crate::twiliostreamsrc::timeline::{Chunk, Timeline};
use gst::ClockTime;

/// Both tracks for the first 100 ms, all taken out.
fn both_until_100ms() -> (Aligner, Instant) {
    let (mut a, t0) = both();
    for ms in (0..100).step_by(20) {
        push(&mut a, t0, In, ms, 1);
        push(&mut a, t0, Out, ms, 2);
    }
    while take(&mut a).is_some() {}
    (a, t0)
}

/// Inbound until 100 ms, outbound's timestamps `off_ms` after it: the
/// flush pads inbound with silence to outbound's end, then 300 ms filled.
fn stalled_with_outbound_off(off_ms: u64) -> (Aligner, Instant) {
    let (mut a, t0) = both();
    for ms in (0..100).step_by(20) {
        push(&mut a, t0, In, ms, 1);
        push(&mut a, t0, Out, ms + off_ms, 2);
    }
    while take(&mut a).is_some() {}
    let frame = a.flush().unwrap();
    assert_eq!(a.channel(In)[..frame.samples], vec![S; 8 * off_ms as usize]);
    a.consume(frame.samples);
    assert!(a.fill(2400));
    (a, t0)
}

#[test]
fn late_audio_of_both_tracks_goes_whole_after_a_fill() {
    let (mut a, t0) = both_until_100ms();
    // Nothing came: nothing held, 300 ms filled.
    assert_eq!(a.flush(), None);
    assert!(a.fill(2400));
    // The audio from 100 ms on arrives late: after the fill, nothing lost.
    assert_eq!(push(&mut a, t0, In, 100, 3).after_fill, 2400);
    assert_eq!(push(&mut a, t0, Out, 100, 4).after_fill, 0);
    let (frame, inbound, outbound) = take(&mut a).unwrap();
    assert_eq!(
        (frame.samples, frame.lost, frame.discont),
        (160, [0, 0], true)
    );
    assert_eq!((inbound, outbound), (vec![3; 160], vec![4; 160]));
    // Later chunks follow on, measured from there.
    push(&mut a, t0, In, 120, 5);
    push(&mut a, t0, Out, 120, 6);
    let (frame, inbound, _) = take(&mut a).unwrap();
    assert_eq!(
        (frame.samples, frame.lost, frame.discont),
        (160, [0, 0], false)
    );
    assert_eq!(inbound, vec![5; 160]);
}

#[test]
fn chunks_really_missing_around_a_fill_count_as_lost() {
    let (mut a, t0) = both_until_100ms();
    assert!(a.fill(2400));
    // The chunks at 100 and 120 ms never come; 140 ms comes late.
    assert_eq!(push(&mut a, t0, In, 140, 3).after_fill, 2080);
    push(&mut a, t0, Out, 140, 4);
    let (frame, inbound, outbound) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [2, 2]));
    assert_eq!((inbound, outbound), (vec![3; 160], vec![4; 160]));

    // Audio lost for longer than the fill: silence to its time, all lost.
    let (mut a, t0) = both_until_100ms();
    assert!(a.fill(2400));
    assert_eq!(push(&mut a, t0, In, 600, 3).after_fill, 0);
    push(&mut a, t0, Out, 600, 4);
    let (frame, inbound, _) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (1600 + 160, [25, 25]));
    assert_eq!(inbound[..1600], [S; 1600]);
    assert_eq!(inbound[1600..], [3; 160]);
}

#[test]
fn a_flush_gives_up_the_wait_for_the_slower_track() {
    let (mut a, t0) = both_until_100ms();
    push(&mut a, t0, In, 100, 3);
    assert_eq!(take(&mut a), None);
    // Held until a flush; then nothing is held and the time can be filled.
    assert!(!a.fill(160));
    let frame = a.flush().unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [0, 1]));
    assert_eq!(a.channel(Out)[..160], [S; 160]);
    a.consume(160);
    assert!(a.fill(2400));
}

#[test]
fn the_other_track_s_audio_for_time_before_the_first_late_chunk_is_too_late() {
    let (mut a, t0) = both_until_100ms();
    // The outbound chunk at 100 ms does not come before a flush gives up
    // the wait for it; then nothing comes, 300 ms filled.
    push(&mut a, t0, In, 100, 1);
    let frame = a.flush().unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [0, 1]));
    a.consume(160);
    assert!(a.fill(2400));
    // The inbound chunk at 120 ms is lost; 140 ms comes first, after the
    // fill, and moves both tracks on.
    assert_eq!(push(&mut a, t0, In, 140, 3).after_fill, 2240);
    // The outbound chunks at 100 and 120 ms lie before it: too late (not
    // a second move, which would part the tracks).
    for ms in [100, 120] {
        let placed = push(&mut a, t0, Out, ms, 2);
        assert_eq!((placed.late, placed.after_fill), (160, 0), "{ms}");
    }
    assert_eq!(push(&mut a, t0, Out, 140, 4), Placed::default());
    push(&mut a, t0, In, 160, 5);
    push(&mut a, t0, Out, 160, 6);
    let (frame, inbound, outbound) = take(&mut a).unwrap();
    assert_eq!(frame.samples, 320);
    assert_eq!(inbound, [[3; 160], [5; 160]].concat());
    assert_eq!(outbound, [[4; 160], [6; 160]].concat());
    // Inbound's chunk at 120 ms lost; outbound's at 120 ms too (its
    // time was silence: as for the wait, lost and too late).
    assert_eq!(frame.lost, [1, 1]);
}

#[test]
fn after_a_fill_the_first_chunk_in_time_fixes_both_tracks_even_if_not_late() {
    let (mut a, t0) = both_until_100ms();
    assert!(a.fill(2400));
    // Inbound's chunk at 400 ms comes first, in time (15 lost before it);
    // outbound's at 380 ms after it lies in the fill: too late, not a
    // move of both tracks (which would part them).
    assert_eq!(push(&mut a, t0, In, 400, 3), Placed::default());
    let placed = push(&mut a, t0, Out, 380, 2);
    assert_eq!((placed.late, placed.after_fill), (160, 0));
    push(&mut a, t0, Out, 400, 4);
    push(&mut a, t0, In, 420, 5);
    push(&mut a, t0, Out, 420, 6);
    let (frame, inbound, outbound) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (320, [15, 15]));
    assert_eq!(inbound, [[3; 160], [5; 160]].concat());
    assert_eq!(outbound, [[4; 160], [6; 160]].concat());
}

const DEADLINE: ClockTime = ClockTime::from_mseconds(300);

/// The aligner and the timeline timing its output; running time is
/// 1020 ms + the ms since the first chunk arrived.
struct Element {
    a: Aligner,
    timeline: Timeline,
    t0: Instant,
    channels: [Vec<u8>; 2],
    lost: [u64; 2],
    gaps: u64,
}

/// Chunk `n` of `track`: bytes of its own.
fn chunk_of(track: Track, n: u64) -> Vec<u8> {
    let k = if track == In { 13 } else { 97 };
    (0..160).map(|i| ((n * 160 + i) * k + 5) as u8).collect()
}

impl Element {
    fn new() -> Element {
        let first = Chunk {
            timestamp_ms: 1000,
            number: None,
            samples: 160,
            arrival: Instant::now(),
        };
        let now = ClockTime::from_mseconds(1020);
        Element {
            a: Aligner::new(true, true, TRACK_WAIT),
            timeline: Timeline::first(&first, now, Duration::ZERO, ClockTime::ZERO, true),
            t0: first.arrival,
            channels: Default::default(),
            lost: [0; 2],
            gaps: 0,
        }
    }

    /// A buffer of `frame` (`frame_buffer`).
    fn out(&mut self, frame: Frame) {
        for track in Track::ALL {
            let ch = &self.a.channel(track)[..frame.samples];
            self.channels[track.index()].extend_from_slice(ch);
            self.lost[track.index()] += frame.lost[track.index()];
        }
        self.a.consume(frame.samples);
        self.timeline.advance(frame.jump + frame.samples as u64);
        self.timeline.hold(self.a.held());
    }

    /// The fill deadline's look at `at` ms (`fill_gap`).
    fn tick(&mut self, at: u64) {
        let now = ClockTime::from_mseconds(1020 + at);
        let mut samples = self.timeline.fill(now, DEADLINE);
        if samples == 0 {
            return;
        }
        if let Some(frame) = self.a.flush() {
            samples -= frame.samples as u64 + frame.jump;
            self.out(frame);
        }
        if samples > 0 && self.a.fill(samples) {
            self.timeline.advance(samples);
            self.gaps += samples;
        }
    }

    /// Chunk `n` of `track` (timestamp 20 `n` ms) arriving at `at` ms, the
    /// fill deadline looked at just before (`both_media`).
    fn arrive(&mut self, track: Track, n: u64, at: u64) -> Placed {
        self.tick(at);
        let arrival = self.t0 + Duration::from_millis(at);
        let placed = self
            .a
            .push(track, 1000 + 20 * n, &chunk_of(track, n), arrival);
        while let Some(frame) = self.a.next_frame() {
            self.out(frame);
        }
        self.timeline.hold(self.a.held());
        placed
    }
}

#[test]
fn the_other_track_s_late_chunk_is_waited_for_past_the_fill_deadline() {
    // The first late chunk's time is 19 ms from the next fill: the other
    // track's chunk of that time comes up to 20 ms after it.
    for (first, other) in [(In, Out), (Out, In)] {
        for lag in [0, 2, 10, 20] {
            let mut e = Element::new();
            for n in 0..20 {
                e.arrive(In, n, 20 * n);
                e.arrive(Out, n, 20 * n);
            }
            // Nothing for 1.5 s, filled; then the rest in a burst.
            assert_eq!(e.arrive(first, 20, 1919).after_fill, 9760);
            let placed = e.arrive(other, 20, 1919 + lag);
            assert_eq!(placed, Placed::default(), "{other} {lag} ms later");
            for n in 21..40 {
                e.arrive(In, n, 1919 + lag);
                e.arrive(Out, n, 1919 + lag);
            }
            let last = e.a.finish();
            assert!(last.is_none_or(|f| f.samples == 0));
            for track in Track::ALL {
                let sent: Vec<u8> = (0..40).flat_map(|n| chunk_of(track, n)).collect();
                let got = &e.channels[track.index()];
                assert!(*got == sent, "{track}, {other} {lag} ms after {first}");
            }
            assert_eq!((e.lost, e.gaps), ([0, 0], 9760));
        }
    }
}

#[test]
fn the_fill_deadline_still_gives_up_the_wait_past_what_is_held() {
    let mut e = Element::new();
    for n in 0..20 {
        e.arrive(In, n, 20 * n);
        e.arrive(Out, n, 20 * n);
    }
    // Inbound at 400 ms; outbound never: the wait ends a chunk and the
    // deadline after the inbound chunk's time (1.42 + 0.02 + 0.3 s).
    e.arrive(In, 20, 400);
    e.tick(719);
    assert_eq!(e.channels[0].len(), 3200);
    e.tick(720);
    assert_eq!(e.channels[0][3200..], chunk_of(In, 20));
    assert_eq!(e.channels[1][3200..], [S; 160]);
    assert_eq!((e.lost, e.gaps), ([0, 1], 160));
}

#[test]
fn the_first_chunk_after_a_fill_goes_at_its_timestamp_however_little_off() {
    // Outbound's timestamps lie 5 ms after inbound's (40 samples), from
    // 25 ms on: the fill ends on outbound's audio (at 425 ms), off
    // inbound's 20 ms grid.
    let stalled = || stalled_with_outbound_off(25);
    // The chunks of the stall never come. Inbound's at 420 ms is 5 ms into
    // the fill (late for its time: after it, both tracks moved on); or
    // inbound's at 430 ms lies 5 ms past it (silence before it). Either
    // way outbound's chunk 5 ms later goes 40 samples after it, as before.
    for (ms, late, gap) in [(420, 40, 0), (430, 0, 40)] {
        let (mut a, t0) = stalled();
        assert_eq!(push(&mut a, t0, In, ms, 3).after_fill, late, "{ms}");
        push(&mut a, t0, Out, ms + 5, 4);
        push(&mut a, t0, In, ms + 20, 5);
        push(&mut a, t0, Out, ms + 25, 6);
        let (frame, inbound, outbound) = take(&mut a).unwrap();
        let n = frame.samples;
        assert!(n >= gap + 320, "{ms}");
        let want_in = [vec![S; gap], vec![3; 160], vec![5; 160]].concat();
        let want_out = [vec![S; gap + 40], vec![4; 160], vec![6; 160]].concat();
        assert_eq!(inbound, want_in[..n], "{ms}");
        assert_eq!(outbound, want_out[..n], "{ms}");
    }
}

#[test]
fn a_chunk_for_time_a_flush_gave_its_track_silence_is_too_late() {
    let (mut a, t0) = both_until_100ms();
    assert!(a.fill(2400));
    // Inbound's chunk at 100 ms comes late: after the fill, both tracks
    // moved on. Outbound's does not come before the deadline again: the
    // flush gives up the wait for it (silence), another 300 ms filled.
    assert_eq!(push(&mut a, t0, In, 100, 3).after_fill, 2400);
    let frame = a.flush().unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [0, 1]));
    a.consume(160);
    assert!(a.fill(2400));
    // Outbound's chunk at 100 ms then comes: its time went out, inbound's
    // audio beside silence. Too late, not a second move (which would put
    // it after this fill, a chunk away from inbound's of its time).
    let placed = push(&mut a, t0, Out, 100, 4);
    assert_eq!((placed.late, placed.after_fill), (160, 0));
    // The chunks at 120 ms are late for this fill: after it, together.
    assert_eq!(push(&mut a, t0, In, 120, 5).after_fill, 2400);
    assert_eq!(push(&mut a, t0, Out, 120, 6), Placed::default());
    let (frame, inbound, outbound) = take(&mut a).unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [0, 0]));
    assert_eq!((inbound, outbound), (vec![5; 160], vec![6; 160]));
}

#[test]
fn a_chunk_partly_in_its_track_s_silence_before_a_fill_moves_on_by_the_fill() {
    // Outbound's timestamps lie 5 ms after inbound's. Both until 100 ms
    // (outbound 105 ms); the flush pads inbound to 105 ms; 300 ms filled.
    let stalled = || stalled_with_outbound_off(5);
    // Inbound's chunk at 100 ms and outbound's at 105 ms come late, in
    // either order: the same output. Inbound's first 5 ms lie where it
    // went out as silence: too late; both tracks move on by the fill
    // alone, so the rest of it and outbound's chunk go side by side.
    let mut outputs = Vec::new();
    for inbound_first in [true, false] {
        let (mut a, t0) = stalled();
        let (mut placed_in, mut placed_out) = (Placed::default(), Placed::default());
        for inbound in [inbound_first, !inbound_first] {
            match inbound {
                true => placed_in = push(&mut a, t0, In, 100, 3),
                false => placed_out = push(&mut a, t0, Out, 105, 4),
            }
        }
        assert_eq!(placed_in.late, 40, "inbound first: {inbound_first}");
        assert_eq!(placed_out.late, 0, "inbound first: {inbound_first}");
        let moved = [placed_in.after_fill, placed_out.after_fill];
        assert_eq!(moved.iter().sum::<u64>(), 2400, "{inbound_first}");
        push(&mut a, t0, In, 120, 5);
        push(&mut a, t0, Out, 125, 6);
        let (frame, inbound, outbound) = take(&mut a).unwrap();
        assert_eq!(frame.samples, 280);
        assert_eq!(inbound, [vec![3; 120], vec![5; 160]].concat());
        assert_eq!(outbound[..280], [vec![4; 160], vec![6; 120]].concat());
        outputs.push((frame, inbound, outbound));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn a_second_fill_after_a_partial_move_on_moves_on_by_the_fill_alone() {
    let (mut a, t0) = both_until_100ms();
    assert!(a.fill(2400));
    // Inbound's chunk at 200 ms comes first after the fill: both tracks
    // move on by 200 ms (the chunks at 100..200 ms are lost).
    assert_eq!(push(&mut a, t0, In, 200, 3).after_fill, 1600);
    push(&mut a, t0, In, 220, 3);
    push(&mut a, t0, In, 240, 3);
    // Outbound does not come: the flush gives up its wait (its 200..260
    // ms go out as silence beside inbound's audio), 300 ms filled again.
    let frame = a.flush().unwrap();
    assert_eq!(frame.samples, 480);
    a.consume(480);
    assert!(a.fill(2400));
    // Outbound's chunk at 200 ms then comes: its time went out as its
    // track's silence, before this fill: too late, not a move of both
    // tracks by more than the fill.
    let placed = push(&mut a, t0, Out, 200, 4);
    assert_eq!((placed.late, placed.after_fill), (160, 0), "{placed:?}");
}

#[test]
fn a_second_fill_after_a_chunk_dropped_in_silence_moves_on_by_the_fill_alone() {
    let (mut a, t0) = both_until_100ms();
    // Inbound's chunk at 100 ms; outbound's does not come: the flush
    // gives up its wait; 300 ms filled.
    push(&mut a, t0, In, 100, 3);
    let frame = a.flush().unwrap();
    a.consume(frame.samples);
    assert!(a.fill(2400));
    // Outbound's chunk at 100 ms comes: too late (the fix).
    assert_eq!(push(&mut a, t0, Out, 100, 4).late, 160);
    // Inbound goes on on time after the fill (120 ms at the fill's end:
    // its chunks for the fill's time never come), 3 chunks; outbound
    // stalls; flush, 300 ms filled again.
    for ms in [420, 440, 460] {
        assert_eq!(push(&mut a, t0, In, ms, 5).after_fill, 0);
    }
    let frame = a.flush().unwrap();
    assert_eq!(frame.samples, 480);
    a.consume(480);
    assert!(a.fill(2400));
    // Outbound's chunk at 420 ms: its time went out as silence before
    // this fill: too late, not a move by more than the fill.
    let placed = push(&mut a, t0, Out, 420, 6);
    assert_eq!((placed.late, placed.after_fill), (160, 0), "{placed:?}");
}

#[test]
fn a_chunk_kept_back_after_a_fill_then_flushed_is_dropped_not_a_move() {
    let (mut a, t0) = both_until_100ms();
    assert_eq!(a.flush(), None);
    assert!(a.fill(2400));
    // Inbound's chunk at 60 ms, other bytes over its audio: kept back.
    assert!(push(&mut a, t0, In, 60, 9).held);
    // Nothing follows it before the deadline: the flush drops it.
    let frame = a.flush();
    assert_eq!(
        frame.map(|f| (f.samples, f.too_late)),
        Some((0, 1)),
        "inbound now holds {:?}",
        &a.channel(In)[..a.channel(In).len().min(4)]
    );
}

#[test]
fn a_chunk_kept_back_after_a_fill_not_followed_is_dropped_not_a_move() {
    let (mut a, t0) = both_until_100ms();
    assert_eq!(a.flush(), None);
    assert!(a.fill(2400));
    assert!(push(&mut a, t0, In, 60, 9).held);
    // Inbound's chunk at 100 ms, late for the fill, does not follow it:
    // the held one is dropped, this one goes after the fill.
    let placed = push(&mut a, t0, In, 100, 3);
    assert_eq!(
        (placed.held_dropped, placed.after_fill, placed.late),
        (160, 2400, 0),
        "{placed:?}"
    );
    assert_eq!(push(&mut a, t0, Out, 100, 4), Placed::default());
    let (frame, inbound, outbound) = take(&mut a).unwrap();
    assert_eq!((inbound, outbound), (vec![3; 160], vec![4; 160]));
    assert_eq!(frame.lost, [0, 0]);
}

#[test]
fn a_late_chunk_for_a_gap_before_the_fill_is_too_late_not_a_move() {
    // Inbound's chunk at 40 ms is missing (silence for it went out);
    // then nothing for the deadline, 300 ms filled.
    let (mut a, t0) = both();
    for ms in (0..100).step_by(20) {
        if ms != 40 {
            push(&mut a, t0, In, ms, 1);
        }
        push(&mut a, t0, Out, ms, 2);
    }
    while take(&mut a).is_some() {}
    assert_eq!(a.flush(), None);
    assert!(a.fill(2400));
    // It then comes: its time went out as its track's silence, before
    // the fill: too late, not a move of both tracks by more than the fill.
    let placed = push(&mut a, t0, In, 40, 7);
    assert_eq!((placed.late, placed.after_fill), (160, 0), "{placed:?}");
    // The chunks at 100 ms: after the fill, side by side, nothing lost.
    assert_eq!(push(&mut a, t0, In, 100, 3).after_fill, 2400);
    assert_eq!(push(&mut a, t0, Out, 100, 4), Placed::default());
    let (frame, inbound, outbound) = take(&mut a).unwrap();
    assert_eq!((inbound, outbound), (vec![3; 160], vec![4; 160]));
    assert_eq!(frame.lost, [0, 0]);
}

#[test]
fn hostile_timestamps_far_before_the_first_after_fills_do_not_panic() {
    // The call starts at 2^60 ms; after each fill an inbound chunk
    // stamped 0 (kept back: over its audio), then the deadline: released
    // after the fill, each moves both tracks on by 2^63 samples; the
    // moves add up past u64 (a panic in a debug build, garbage positions
    // in a release one).
    let t0 = Instant::now();
    let mut a = Aligner::new(true, true, TRACK_WAIT);
    let start = 1u64 << 60;
    let mut ms = 0;
    for _round in 0..3 {
        for n in 0..5u64 {
            let at = t0 + Duration::from_millis(ms + 20 * n);
            a.push(In, start + ms + 20 * n, &[1; 160], at);
            a.push(Out, start + ms + 20 * n, &[2; 160], at);
            while take(&mut a).is_some() {}
        }
        if let Some(f) = a.flush() {
            a.consume(f.samples);
        }
        a.fill(2400);
        let at = t0 + Duration::from_millis(ms + 400);
        a.push(In, 0, &[9; 160], at);
        if let Some(f) = a.flush() {
            a.consume(f.samples);
        }
        ms += 1000;
    }
}

#[test]
fn a_track_s_first_chunk_late_for_a_fill_goes_after_it() {
    // Inbound alone for 100 ms (outbound not started yet), then nothing
    // for the deadline: 300 ms filled.
    let (mut a, t0) = both();
    for ms in (0..100).step_by(20) {
        push(&mut a, t0, In, ms, 1);
    }
    while take(&mut a).is_some() {}
    let frame = a.flush().unwrap();
    a.consume(frame.samples);
    assert!(a.fill(2400));
    // Outbound's first chunk, at 100 ms, comes first after the fill: late
    // audio for filled time, after the fill (as either track's would be).
    let placed = push(&mut a, t0, Out, 100, 4);
    assert_eq!((placed.late, placed.after_fill), (0, 2400), "{placed:?}");
}

#[test]
fn a_second_fill_before_the_other_track_s_chunk_moves_on_by_that_fill_only() {
    // Outbound's timestamps lie 5 ms after inbound's. Both until 100 ms
    // (outbound 105 ms); the flush pads inbound to 105 ms; 300 ms filled.
    let (mut a, t0) = stalled_with_outbound_off(5);
    // The chunks of 100 to 180 ms are lost; inbound's at 200 ms comes
    // late: after the fill, both tracks moved on by 205 ms (the rest of
    // the fill stands for the lost chunks).
    assert_eq!(push(&mut a, t0, In, 200, 3).after_fill, 1640);
    // Outbound's does not come before the deadline again: the flush gives
    // up the wait for it (silence), and 20 ms more are filled.
    let frame = a.flush().unwrap();
    assert_eq!((frame.samples, frame.lost), (160, [5, 1]));
    a.consume(160);
    assert!(a.fill(160));
    // Outbound's chunk at 205 ms: its first 15 ms lie where its track went
    // out as silence, too late; the rest moves both tracks on by this
    // fill alone (the first fill's rest lies before that silence), so the
    // chunks that follow stay aligned.
    let placed = push(&mut a, t0, Out, 205, 4);
    assert_eq!((placed.late, placed.after_fill), (120, 160));
    push(&mut a, t0, In, 220, 5);
    push(&mut a, t0, Out, 225, 6);
    let (frame, inbound, outbound) = take(&mut a).unwrap();
    assert_eq!(frame.samples, 160);
    assert_eq!(inbound, vec![5; 160]);
    assert_eq!(outbound, [vec![4; 40], vec![6; 120]].concat());
    // Outbound's lost chunks (105 to 185 ms: with the silence the flush
    // gave it, 6) are counted.
    assert_eq!(frame.lost, [0, 5]);
}
