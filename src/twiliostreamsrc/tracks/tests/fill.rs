//! The fill deadline around the aligner, as the element runs it
//! (`media.rs`, `timing.rs`): a stall of both tracks filled, then their
//! late audio, whose two chunks of one time are two messages.

use super::*;
use crate::twiliostreamsrc::timeline::{Chunk, Timeline};
use gst::ClockTime;

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
