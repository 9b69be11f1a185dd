//! `track=both`: the caller's and the callee's chunks on one clock. Both
//! tracks' `media.timestamp` count from the start of the stream, so each
//! chunk has one place on a shared axis of 8 kHz samples; the [`Aligner`]
//! keeps what each track has from the output position on, and hands out
//! frames both tracks cover, sample for sample. What a track lacks is
//! silence in that track only: a timestamp jump at once, a track that falls
//! behind once the other is `max_wait` samples ahead (so the output never
//! waits longer for the slower track). Lost chunks are counted per track.
//!
//! When nothing arrives for the fill deadline (counted past what is
//! [`held`]: it came), the element [`flush`]es what is held (the slower
//! track's wait given up) and [`fill`]s the time past it (a GAP
//! downstream). Audio that then arrives for time already filled is late:
//! it goes after the fill, and both tracks are measured from it on
//! (nothing is lost, as with one track; the other track's audio for time
//! before the first chunk after the fill, late or not, is too late); what
//! is really missing still counts as lost.
//!
//! [`held`]: Aligner::held
//! [`flush`]: Aligner::flush
//! [`fill`]: Aligner::fill
//!
//! A step in one track's timestamps (its chunks go on in real time, their
//! timestamps moved) is not a gap: that track is measured anew from the
//! chunk, which follows its last audio, and the other track is untouched.
//! A step ahead is told from lost chunks by when the chunk arrives: ahead
//! of where the audio of both tracks has reached in real time since their
//! last chunks (lost chunks leave a gap in real time too) by more than the
//! wait less a chunk, so that a step taken for a gap never leaves its track
//! leading by more than the wait (which would starve the other track). A
//! track's own reach counts without what such a gap put it ahead of real
//! time, or two of them would add up to more. Without the other track's
//! audio, the track's own furthest reach of the
//! last 2 s stands in for it, so that a burst of late chunks and then a
//! loss is no step.
//!
//! A chunk before its track's audio is told by its bytes (a hash of the
//! track's last 16 chunks): the same bytes where the track had them, it was
//! sent twice and is dropped; where the track has silence only (filled for
//! a gap or the wait), it is late audio, dropped as such. Over audio with
//! other bytes (or before what is remembered), it is kept back: if the next
//! chunk follows it, the timestamps stepped back and both go on after the
//! track's audio; otherwise it is dropped, out of place. (Chunks all of one
//! byte, as digital silence, cannot tell a step back within what is
//! remembered from chunks sent twice: they are dropped as such, and the
//! track stays that much late.)
//!
//! Plain numbers in, plain results out: the element converts, timestamps
//! (one `Timeline`: anchor, spans) and counts. Chunk numbers are not used
//! (they may count both tracks); gaps are told by timestamps, per track.

use std::time::Instant;

use super::timeline::{Ahead, GAP_TOLERANCE, LossUnit, MAX_SILENCE, jumped, plausible};
use crate::protocol::Track;
use lane::{Behind, Heard, Held, Lane, hash};
use steps::Jump;

mod lane;
mod steps;

/// How long the slower track is waited for by default (`track-wait`), in
/// 8 kHz samples (60 ms: three of Twilio's 20 ms frames).
pub const TRACK_WAIT: u64 = 480;

/// Where a chunk went, for the element to log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placed {
    /// Silence put before it in its track (a timestamp gap), in samples.
    pub gap: u64,
    /// Its first samples came too late (their time was output or filled
    /// already) and were dropped.
    pub late: u64,
    /// With `late`: how far its start lay behind its track's end (output or
    /// filled), in samples: how much longer a wait would have kept it.
    pub behind: u64,
    /// Its timestamp ran implausibly far ahead: it was placed right after
    /// its track's last sample instead.
    pub ignored_ahead: Option<Ahead>,
    /// Both tracks had nothing for this long (samples, over 5 s): the
    /// output skips it instead of filling it.
    pub skipped: u64,
    /// Samples of its time that had been filled already (nothing came for
    /// the fill deadline): it goes out after the fill, kept whole (but for
    /// a part before the fill where its track had silence: `late`).
    pub after_fill: u64,
    /// Its track's timestamps stepped by this many samples (ahead or back)
    /// at this chunk: the track was measured anew, the chunk follows its
    /// last audio; nothing of it was lost. (Saturated: back from a
    /// timestamp near `u64::MAX`, it is more than an i64.)
    pub step: Option<i64>,
    /// That step ahead was the other track's too, taken as it was: the
    /// tracks' timestamps stepped at once, and they stay aligned.
    pub with_other: bool,
    /// It lies over audio its track holds, with other bytes: kept back
    /// until the track's next chunk tells a step back from a chunk out of
    /// place.
    pub held: bool,
    /// The same bytes where its track had them: sent twice, dropped.
    pub twice: bool,
    /// Samples of the chunk kept back before it that were dropped: it was
    /// not the start of a step (out of place).
    pub held_dropped: u64,
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
    /// Chunks kept back and then dropped (see [`Placed::held`]) since the
    /// last frame, when no chunk's [`Placed`] told it (a flush, the end).
    pub too_late: u64,
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
    /// Samples late audio was moved on by, after a fill: added to every
    /// later position.
    shifted: u64,
    /// A chunk came since the last fill (a late one moved both tracks on):
    /// the other track's audio for time before it is too late, not a move.
    moved_on: bool,
    /// The last run of fills, back to back: (start, end) on the axis. Time
    /// before its start went out.
    fills: (u64, u64),
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
            lanes: [Lane::new(inbound, max_wait), Lane::new(outbound, max_wait)],
            origin_ms: None,
            first_arrival: None,
            skipped: 0,
            shifted: 0,
            moved_on: false,
            fills: (0, 0),
            position: 0,
            jump: None,
            max_wait,
        }
    }

    /// Fills silence with `byte` (the call's codec's silence; μ-law's
    /// unless told).
    pub fn with_silence(mut self, byte: u8) -> Aligner {
        self.lanes.iter_mut().for_each(|l| l.silence = byte);
        self
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
        let mut due = self.due(track, timestamp_ms, arrival, &mut placed);
        let i = track.index();
        if let Some(held) = self.lanes[i].held.take() {
            let held_end = held.due + held.ulaw.len() as i128;
            if !ulaw.is_empty() && (due - held_end).abs() <= GAP_TOLERANCE as i128 {
                // One over its audio with other bytes, the next after it:
                // the timestamps stepped back. Both follow its audio.
                let step = held.due - self.end(track) as i128;
                self.lanes[i].offset -= step;
                due -= step;
                placed.step = Some(saturate(step));
                self.place(track, held.due - step, &held.ulaw, held.arrival);
            } else {
                // Sent twice (or out of place): what its track holds
                // already is dropped.
                let released = self.place(track, held.due, &held.ulaw, held.arrival);
                placed.held_dropped = released.late;
            }
        }
        if placed.step.is_none() {
            match self.lanes[i].behind(due, ulaw) {
                Behind::Twice => {
                    placed.twice = true;
                    return placed;
                }
                Behind::Unsure => {
                    self.lanes[i].held = Some(Held {
                        due,
                        ulaw: ulaw.to_vec(),
                        arrival,
                    });
                    placed.held = true;
                    return placed;
                }
                Behind::Late | Behind::No => {}
            }
            match self.stepped_ahead(track, due, ulaw.len(), arrival) {
                Jump::Step(own) => {
                    let joint = self.joint_step(track, due, arrival);
                    let step = joint.unwrap_or(own);
                    self.lanes[i].offset -= step;
                    due -= step;
                    placed.step = Some(saturate(step));
                    placed.with_other = joint.is_some();
                    self.lanes[i].stepped = Some((step, due, arrival));
                }
                Jump::Gap => {
                    self.lanes[i].early = self.early(track, due + ulaw.len() as i128, arrival)
                }
                Jump::No => {}
            }
        }
        let found = self.place(track, due, ulaw, arrival);
        Placed {
            step: placed.step,
            with_other: placed.with_other,
            held_dropped: placed.held_dropped,
            ignored_ahead: placed.ignored_ahead,
            ..found
        }
    }

    /// Where `track`'s chunk at `timestamp_ms` goes on the axis; one far
    /// ahead of the time that passed goes right after the track's last
    /// sample, and the track is measured from it.
    fn due(
        &mut self,
        track: Track,
        timestamp_ms: u64,
        arrival: Instant,
        placed: &mut Placed,
    ) -> i128 {
        let origin = *self.origin_ms.get_or_insert(timestamp_ms);
        let first_arrival = *self.first_arrival.get_or_insert(arrival);
        let lane = &mut self.lanes[track.index()];
        // Where its timestamp puts it (before a skipped gap: raw).
        let raw = (timestamp_ms as i128 - origin as i128) * 8 + lane.offset;
        let elapsed = arrival.saturating_duration_since(first_arrival);
        let possible = i128::from(plausible(elapsed));
        let due = raw - self.skipped as i128 + self.shifted as i128;
        let last = lane.last.replace((timestamp_ms, arrival));
        if raw <= possible && !last.is_some_and(|last| jumped(last, timestamp_ms, arrival)) {
            return due;
        }
        placed.ignored_ahead = Some(Ahead {
            due: raw.min(u64::MAX as i128) as u64,
            elapsed,
        });
        let end = self.end(track) as i128;
        self.lanes[track.index()].offset += end - due;
        end
    }

    /// Places a chunk of `track` at `due` on the axis.
    fn place(&mut self, track: Track, mut due: i128, ulaw: &[u8], arrival: Instant) -> Placed {
        let mut placed = Placed::default();
        let end = self.end(track) as i128;
        let stream_end = self.end(Track::Inbound).max(self.end(Track::Outbound)) as i128;
        if due > stream_end + MAX_SILENCE as i128 && self.jump.is_none() {
            // Both tracks had nothing for over 5 s: skip that time (the
            // timestamps jump) rather than fill it.
            let skip = (due - stream_end) as u64;
            placed.skipped = skip;
            self.skipped += skip;
            self.jump = Some((stream_end as u64, skip));
            for lane in self.lanes.iter_mut().filter(|l| l.expected && l.started) {
                let unit = lane.unit.get();
                let counted = (skip + unit / 2) / unit;
                lane.lost += counted;
                lane.discont |= counted > 0;
            }
            due = stream_end;
        }
        let lane = &mut self.lanes[track.index()];
        if !ulaw.is_empty() {
            // The first chunk replaces the default, even a shorter one.
            let len = ulaw.len() as u64;
            if lane.started {
                lane.unit.see(len);
            } else {
                lane.unit = LossUnit::new(len);
            }
        }
        // Where the fills began: time before it went out, audio or silence
        // (a gap in the track, its wait given up, the flush padding it to
        // the other track). (Not `filled` back from the end: that is all
        // the track missed since its last audio, for counting it lost,
        // over fills and padding.)
        let fill_start = self.fills.0 as i128;
        if lane.filled > 0 && !self.moved_on && due + ulaw.len() as i128 <= fill_start {
            // All of it before the fills: too late, as at the wait (as late
            // audio after the fill it would move both tracks on by more
            // than the fill, and away from the other track's audio of its
            // time, output before the fill).
            placed.late = ulaw.len() as u64;
            placed.behind = (end - due).max(0) as u64;
            return placed;
        }
        let filled = std::mem::take(&mut lane.filled);
        // (The first chunk after a fill settles where both tracks go on.)
        let moved_on = self.moved_on;
        if filled > 0 {
            // Where it would go had nothing been filled: what lies between
            // is lost (counted when the run is).
            let expected = end - filled as i128;
            // (Over its own audio just before the fills, within the
            // tolerance, it is rounding: kept whole, right after the fill,
            // which alone moves both tracks on.)
            let rounding = lane.audio_end as i128 == fill_start
                && due < fill_start
                && due + GAP_TOLERANCE as i128 >= fill_start;
            let from = due.max(fill_start);
            if from < end && !moved_on {
                // Late for time filled already, however little: after the
                // fill, and both tracks measured from here on (once: the
                // other track's audio follows in step). A part before the
                // fills is too late (cut below). (A track's first chunk too:
                // the other's audio may not come back late.)
                let late = (end - from) as u64;
                placed.after_fill = late;
                lane.run += (due - expected).max(0) as u64;
                lane.discont = true;
                self.shifted = self.shifted.saturating_add(late);
                due = if rounding { end } else { due + late as i128 };
                for lane in &mut self.lanes {
                    lane.filled = lane.filled.saturating_sub(late);
                }
            } else if lane.started {
                lane.run += filled;
            }
            self.moved_on = true;
        }
        let position = self.position;
        let lane = &mut self.lanes[track.index()];
        // Counts what a fill left (the gap below adds to it).
        lane.fill(0);
        let whole = ulaw;
        let mut ulaw = ulaw;
        // After silence past the track's audio (the wait given up, a
        // flush, a fill), or before its first audio, there is no audio to
        // round a chunk onto: it goes where its timestamp says, however
        // little off (put right after the silence, its track would run
        // that much early or late against the other for good).
        let starts_later = !lane.started && due > end;
        let after_silence = (lane.audio_end as i128) < end || starts_later;
        let tolerance = if after_silence {
            0
        } else {
            GAP_TOLERANCE as i128
        };
        if due > end + tolerance {
            // (Before its first chunk, a track is not losing any.)
            placed.gap = (due - end) as u64;
            lane.fill(placed.gap);
        } else if due + tolerance < end {
            // Its time went out, or to silence: that much of it is
            // dropped (over the track's audio, within the tolerance, it
            // is rounding).
            let from = match due + (GAP_TOLERANCE as i128) < end {
                true => due,
                false => due.max(lane.audio_end as i128),
            };
            let late = ((end - from) as u64).min(ulaw.len() as u64);
            placed.late = late;
            placed.behind = (end - due) as u64;
            ulaw = &ulaw[late as usize..];
        }
        lane.started = true;
        lane.audio(ulaw);
        if !ulaw.is_empty() {
            lane.audio_end = position + lane.pending.len() as u64;
            lane.reached(arrival);
            lane.heard(Heard {
                due,
                start: due + placed.late as i128,
                end: lane.audio_end as i128,
                hash: hash(whole),
            });
        }
        placed
    }

    /// Drops the chunks kept back (nothing followed them; what they add
    /// after their track's audio goes in), to be reported as too late.
    fn release_held(&mut self) {
        for track in Track::ALL {
            if let Some(held) = self.lanes[track.index()].held.take() {
                let released = self.place(track, held.due, &held.ulaw, held.arrival);
                self.lanes[track.index()].too_late += u64::from(released.late > 0);
            }
        }
    }

    /// Waits up to `max_wait` samples from now on, if that is longer (a
    /// track found lagging past the wait): the slower track's time already
    /// filled stays silence, and the output waits for it from there.
    pub fn raise_wait(&mut self, max_wait: u64) {
        self.max_wait = self.max_wait.max(max_wait);
    }

    /// The next frame that may go out, if any. A track more than `max_wait`
    /// behind the other (or not announced) is first filled with silence up
    /// to that bound (past a chunk kept back: it may be the track's next
    /// audio, after a step back).
    pub fn next_frame(&mut self) -> Option<Frame> {
        let lead = self.end(Track::Inbound).max(self.end(Track::Outbound));
        for track in Track::ALL {
            let end = self.end(track);
            let lane = &mut self.lanes[track.index()];
            // A chunk kept back may be the track's next audio: waited for.
            let held = lane.held.as_ref().map_or(0, |h| h.ulaw.len() as u64);
            let until = if lane.expected {
                lead.saturating_sub(self.max_wait + held)
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
        if samples == 0 && jump == 0 && self.lanes.iter().all(|l| l.too_late == 0) {
            return None;
        }
        Some(self.frame(samples as usize, jump))
    }

    /// Everything left, both tracks filled with silence to the longer one
    /// (a jump still to come is not made: the end follows on).
    pub fn finish(&mut self) -> Option<Frame> {
        self.release_held();
        let lead = self.end(Track::Inbound).max(self.end(Track::Outbound));
        for track in Track::ALL {
            let end = self.end(track);
            self.lanes[track.index()].fill(lead - end);
        }
        self.jump = None;
        let samples = (lead - self.position) as usize;
        let told = self.lanes.iter().any(|l| l.lost > 0 || l.too_late > 0);
        (samples > 0 || told).then(|| self.frame(samples, 0))
    }

    /// Nothing arrived for the fill deadline: everything held, the slower
    /// track filled with silence to the leading one (its wait given up, as
    /// at the end), up to a skipped gap.
    pub fn flush(&mut self) -> Option<Frame> {
        self.release_held();
        let lead = self.end(Track::Inbound).max(self.end(Track::Outbound));
        for track in Track::ALL {
            let end = self.end(track);
            self.lanes[track.index()].fill(lead - end);
        }
        self.next_frame()
    }

    /// After a [`flush`](Self::flush) that emptied both tracks: the output
    /// moves on by `samples` that neither track had (the element sends a
    /// GAP); audio coming for them later goes after them. False (nothing
    /// done) if a track still holds samples.
    pub fn fill(&mut self, samples: u64) -> bool {
        if self.lanes.iter().any(|l| !l.pending.is_empty()) {
            return false;
        }
        let after_output = self.fills.1 != self.position;
        if after_output {
            self.fills.0 = self.position;
        }
        self.position += samples;
        self.fills.1 = self.position;
        for lane in &mut self.lanes {
            if after_output && lane.filled > 0 {
                // What is left of an earlier fill (its track came no more)
                // lies before what went out since: lost, and no part of
                // this fill.
                if lane.started {
                    lane.run += std::mem::take(&mut lane.filled);
                    lane.fill(0);
                }
                lane.filled = 0;
            }
            lane.filled += samples;
        }
        self.moved_on = false;
        true
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
            frame.too_late += std::mem::take(&mut lane.too_late);
        }
        frame
    }

    /// How far `track` was moved, in ms, by measuring it anew: its
    /// timestamps plus this are on the other track's clock again. (Beyond
    /// an i64: a timestamp past `i64::MAX` ms moves it that far.)
    pub fn offset_ms(&self, track: Track) -> i128 {
        self.lanes[track.index()].offset / 8
    }

    /// Samples past the output position the leading track holds: audio
    /// that came, waiting for the other track (the fill is due past it).
    pub fn held(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| l.pending.len() as u64)
            .max()
            .unwrap_or(0)
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

/// `samples` as an i64, saturated.
fn saturate(samples: i128) -> i64 {
    samples.clamp(i64::MIN.into(), i64::MAX.into()) as i64
}

#[cfg(test)]
mod tests;
