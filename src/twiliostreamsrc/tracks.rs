//! `track=both`: the caller's and the callee's chunks on one clock. Both
//! tracks' `media.timestamp` count from the start of the stream, so each
//! chunk has one place on a shared axis of 8 kHz samples; the [`Aligner`]
//! keeps what each track has from the output position on, and hands out
//! frames both tracks cover, sample for sample. What a track lacks is
//! silence in that track only: a timestamp jump at once, a track that falls
//! behind once the other is `max_wait` samples ahead (so the output never
//! waits longer for the slower track). Lost chunks are counted per track.
//!
//! Plain numbers in, plain results out: the element converts, timestamps
//! (one `Timeline`: anchor, spans) and counts. Chunk numbers are not used
//! (they may count both tracks); gaps are told by timestamps, per track.

use std::time::Instant;

use super::timeline::{Ahead, GAP_TOLERANCE, MAX_AHEAD, MAX_SILENCE};
use crate::codec::g711;
use crate::protocol::Track;

/// How long the slower track is waited for by default, in 8 kHz samples
/// (60 ms: three of Twilio's 20 ms frames).
pub const TRACK_WAIT: u64 = 480;
/// The chunk length assumed for counting lost chunks before one arrived.
const DEFAULT_CHUNK: u64 = 160;

/// One track's samples from the output position on.
#[derive(Debug)]
struct Lane {
    /// `start.tracks` announced it: it is waited for, and its gaps count.
    expected: bool,
    /// A chunk of it has arrived (silence before that is not a loss).
    started: bool,
    /// μ-law from the output position on: audio and filled silence.
    pending: Vec<u8>,
    /// Beside `pending`: which samples stand in for lost audio (to conceal).
    lost_mask: Vec<bool>,
    /// Length of its last chunk, to count lost chunks in.
    chunk_len: u64,
    /// Silence filled since its last audio, and the chunks counted for it.
    run: u64,
    run_counted: u64,
    /// Chunks counted lost and not yet reported in a [`Frame`].
    lost: u64,
    /// A run of silence began to count since the last frame: the next
    /// frame is DISCONT (once per run, as the mono output flags a gap once).
    discont: bool,
}

impl Lane {
    fn new(expected: bool) -> Lane {
        Lane {
            expected,
            started: false,
            // Room for the wait and a few chunks: no allocation per chunk.
            pending: Vec::with_capacity(4 * TRACK_WAIT as usize),
            lost_mask: Vec::with_capacity(4 * TRACK_WAIT as usize),
            chunk_len: DEFAULT_CHUNK,
            run: 0,
            run_counted: 0,
            lost: 0,
            discont: false,
        }
    }

    /// Appends `n` samples of silence, counting the chunks they stand for.
    fn fill(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.pending
            .resize(self.pending.len() + n as usize, g711::SILENCE);
        self.lost_mask
            .resize(self.pending.len(), self.expected && self.started);
        if !(self.expected && self.started) {
            return;
        }
        self.run += n;
        // Rounded to whole chunks: a run of half a chunk or more is one.
        let counted = (self.run + self.chunk_len / 2) / self.chunk_len;
        if counted > self.run_counted {
            self.discont |= self.run_counted == 0;
            self.lost += counted - self.run_counted;
            self.run_counted = counted;
        }
    }

    /// Appends audio: a run of silence ends.
    fn audio(&mut self, ulaw: &[u8]) {
        if ulaw.is_empty() {
            return;
        }
        self.pending.extend_from_slice(ulaw);
        self.lost_mask.resize(self.pending.len(), false);
        self.run = 0;
        self.run_counted = 0;
    }
}

/// Where a chunk went, for the element to log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placed {
    /// Silence put before it in its track (a timestamp gap), in samples.
    pub gap: u64,
    /// Its first samples came too late (their time was output or filled
    /// already) and were dropped.
    pub late: u64,
    /// Its timestamp ran implausibly far ahead: it was placed right after
    /// its track's last sample instead.
    pub ignored_ahead: Option<Ahead>,
    /// Both tracks had nothing for this long (samples, over 5 s): the
    /// output skips it instead of filling it.
    pub skipped: u64,
}

/// What may go out now: the first `samples` of both channels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frame {
    pub samples: usize,
    /// Samples the timestamps jump before this frame (a skipped gap).
    pub jump: u64,
    /// Chunks counted lost since the last frame, per track (channel order).
    pub lost: [u64; 2],
    /// Silence stands in for lost chunks, or the timestamps jump.
    pub discont: bool,
}

/// The two tracks, aligned. See the module documentation.
#[derive(Debug)]
pub struct Aligner {
    lanes: [Lane; 2],
    /// `media.timestamp` of axis position 0: the first chunk's.
    origin_ms: Option<u64>,
    first_arrival: Option<Instant>,
    /// Samples of stream-wide gaps skipped: taken off every later position.
    skipped: u64,
    /// Axis position of the first pending sample of both lanes.
    position: u64,
    /// A skipped gap not yet output: (position it is at, samples).
    jump: Option<(u64, u64)>,
    max_wait: u64,
}

impl Aligner {
    /// An aligner for a stream announcing `inbound` and `outbound` tracks
    /// (a track it does not announce is silence, neither waited for nor
    /// counted), waiting at most `max_wait` samples for the slower one.
    pub fn new(inbound: bool, outbound: bool, max_wait: u64) -> Aligner {
        Aligner {
            lanes: [Lane::new(inbound), Lane::new(outbound)],
            origin_ms: None,
            first_arrival: None,
            skipped: 0,
            position: 0,
            jump: None,
            max_wait,
        }
    }

    fn end(&self, track: Track) -> u64 {
        self.position + self.lanes[track.index()].pending.len() as u64
    }

    /// Places a chunk of `track` by its timestamp.
    pub fn push(
        &mut self,
        track: Track,
        timestamp_ms: u64,
        ulaw: &[u8],
        arrival: Instant,
    ) -> Placed {
        let mut placed = Placed::default();
        let origin = *self.origin_ms.get_or_insert(timestamp_ms);
        let first_arrival = *self.first_arrival.get_or_insert(arrival);
        let end = self.end(track) as i128;
        // Where its timestamp puts it (before a skipped gap: raw).
        let raw = (timestamp_ms as i128 - origin as i128) * 8;
        let elapsed = arrival.saturating_duration_since(first_arrival);
        let possible = elapsed.as_millis() as i128 * 8 + MAX_AHEAD as i128;
        let mut due = raw - self.skipped as i128;
        if raw > possible {
            placed.ignored_ahead = Some(Ahead {
                due: raw.min(u64::MAX as i128) as u64,
                elapsed,
            });
            due = end;
        }
        let stream_end = self.end(Track::Inbound).max(self.end(Track::Outbound)) as i128;
        if due > stream_end + MAX_SILENCE as i128 && self.jump.is_none() {
            // Both tracks had nothing for over 5 s: skip that time (the
            // timestamps jump) rather than fill it.
            let skip = (due - stream_end) as u64;
            placed.skipped = skip;
            self.skipped += skip;
            self.jump = Some((stream_end as u64, skip));
            for lane in self.lanes.iter_mut().filter(|l| l.expected && l.started) {
                let counted = (skip + lane.chunk_len / 2) / lane.chunk_len;
                lane.lost += counted;
                lane.discont |= counted > 0;
            }
            due = stream_end;
        }
        let lane = &mut self.lanes[track.index()];
        if !ulaw.is_empty() {
            lane.chunk_len = ulaw.len() as u64;
        }
        let mut ulaw = ulaw;
        if due > end + GAP_TOLERANCE as i128 {
            // (Before its first chunk, a track is not losing any.)
            placed.gap = (due - end) as u64;
            lane.fill(placed.gap);
        } else if due + (GAP_TOLERANCE as i128) < end {
            let late = ((end - due) as u64).min(ulaw.len() as u64);
            placed.late = late;
            ulaw = &ulaw[late as usize..];
        }
        lane.started = true;
        lane.audio(ulaw);
        placed
    }

    /// The next frame that may go out, if any. A track more than `max_wait`
    /// behind the other (or not announced) is first filled with silence up
    /// to that bound.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let lead = self.end(Track::Inbound).max(self.end(Track::Outbound));
        for track in Track::ALL {
            let end = self.end(track);
            let lane = &mut self.lanes[track.index()];
            let until = if lane.expected {
                lead.saturating_sub(self.max_wait)
            } else {
                lead
            };
            lane.fill(until.saturating_sub(end));
        }
        let ready = self.end(Track::Inbound).min(self.end(Track::Outbound)) - self.position;
        let (samples, jump) = match self.jump {
            Some((at, skip)) if at == self.position => {
                self.jump = None;
                (ready, skip)
            }
            Some((at, _)) => (ready.min(at - self.position), 0),
            None => (ready, 0),
        };
        if samples == 0 && jump == 0 {
            return None;
        }
        Some(self.frame(samples as usize, jump))
    }

    /// Everything left, both tracks filled with silence to the longer one
    /// (a jump still to come is not made: the end follows on).
    pub fn finish(&mut self) -> Option<Frame> {
        let lead = self.end(Track::Inbound).max(self.end(Track::Outbound));
        for track in Track::ALL {
            let end = self.end(track);
            self.lanes[track.index()].fill(lead - end);
        }
        self.jump = None;
        let samples = (lead - self.position) as usize;
        let lost = self.lanes.iter().any(|l| l.lost > 0);
        (samples > 0 || lost).then(|| self.frame(samples, 0))
    }

    fn frame(&mut self, samples: usize, jump: u64) -> Frame {
        let mut frame = Frame {
            samples,
            jump,
            discont: jump > 0,
            ..Frame::default()
        };
        for (i, lane) in self.lanes.iter_mut().enumerate() {
            frame.lost[i] = std::mem::take(&mut lane.lost);
            frame.discont |= std::mem::take(&mut lane.discont);
        }
        frame
    }

    /// The μ-law of `track` from the output position on; a frame's channel
    /// is its first `samples`.
    pub fn channel(&self, track: Track) -> &[u8] {
        &self.lanes[track.index()].pending
    }

    /// Beside [`channel`](Self::channel): which of its samples stand in
    /// for lost audio (silence filled after the track's first chunk).
    pub fn lost_mask(&self, track: Track) -> &[bool] {
        &self.lanes[track.index()].lost_mask
    }

    /// Moves the output position past a frame of `samples`.
    pub fn consume(&mut self, samples: usize) {
        for lane in &mut self.lanes {
            lane.pending.drain(..samples);
            lane.lost_mask.drain(..samples);
        }
        self.position += samples as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use Track::{Inbound as In, Outbound as Out};

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
        push(&mut a, t0, Out, 0, 2);
        let placed = push(&mut a, t0, In, 0, 9);
        assert_eq!(placed.late, 160);
        let (_, inb, _) = take(&mut a).unwrap();
        assert_eq!(inb, vec![1; 160]);
        assert_eq!(a.next_frame(), None);
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
        // Timestamps before the first chunk's are simply late.
        let placed = a.push(Out, 0, &[2; 160], t0);
        assert_eq!(placed.late, 160);
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
}
