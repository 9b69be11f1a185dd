//! Where the src puts each chunk of the caller's audio on its output timeline,
//! with plain numbers in and plain results out: the element logs, counts and
//! makes the buffers.
//!
//! The first chunk's first sample is anchored at the running time the chunk
//! arrived, minus its duration (when it started being spoken). Every later
//! sample is placed by Twilio's `media.timestamp`, so buffers are contiguous;
//! a jump in the timestamp (or a skipped chunk number) is filled with
//! silence and flagged DISCONT, a jump too long to fill moves the timestamps
//! on, and a timestamp implausibly far ahead is ignored. On the 16 kHz path
//! the output is also shifted back by the upsampler's delay, so timestamps
//! stay true to when the caller spoke.
//!
//! Against Twilio's clock running fast or slow, the [`Drift`] correction is
//! added (buffer durations absorb its steps of at most 20 µs per chunk, so
//! buffers stay exactly contiguous). After a pause the element anchors the
//! stream anew ([`Timeline::reanchor`]). When nothing arrives, the element
//! asks for fill ([`Timeline::fill`]) once the audio (with what it holds
//! back, [`Timeline::hold`]) is overdue by its fill deadline; audio that then
//! arrives for time already filled is late: it goes out after the fill
//! (nothing is lost, the stream is measured from it on, DISCONT) and is
//! counted ([`Placement::late`]).
//!
//! A chunk stamped before what was played (by less than [`MAX_AHEAD`]) is
//! kept, after it; if the next chunk follows it, the timestamps stepped
//! back there: later chunks are measured from that one (nothing lost, the
//! drift estimate goes on by the timestamps before the step), and the
//! step is told ([`Placement::step_ms`]). Chunks numbered before the one
//! expected came late instead: they start no step. A chunk where the
//! timestamps before such steps put it (a jump ahead by them, no chunk
//! number skipped) is no gap: they stepped home, and measure it again.
//! Stamped further back (e.g. the sender's clock again after one
//! timestamp of garbage far ahead), it is kept after what was played and
//! later chunks are measured from it, without a step.
//!
//! A jump ahead is a step as well when the chunk is numbered as the one
//! expected (none lost), nothing was filled since the last chunk, and it
//! ends more than [`STEP_TOLERANCE`] beyond where the audio has reached in
//! real time ([`Reach`]: the time that passed does not account for the
//! jump, so the sender did not pause): measured from likewise, nothing
//! lost, told as a step. Without chunk numbers (or when they may count
//! both tracks) a step ahead cannot be told from lost chunks: it is a gap.
//! A jump implausibly far ahead ([`plausible`]: of the time passed since
//! the first chunk, or since the chunk before, [`jumped`]) is ignored as
//! garbage, not taken for a step.
//!
//! A chunk number skipping more than the time that passed holds is garbage
//! too ([`Placement::ignored_number`]): numbers count from it, or again
//! from the next chunk numbered back where its timestamp puts it.

use std::time::{Duration, Instant};

use gst::ClockTime;

use super::drift::Drift;
pub(super) use garbage::{MAX_AHEAD, jumped, plausible};
pub use loss_unit::LossUnit;
pub(super) use reach::Reach;

mod garbage;
mod loss_unit;
mod reach;

/// Nanoseconds per 8 kHz sample.
pub const NS_PER_SAMPLE: u64 = 125_000;
/// Timestamp deviations below this (in 8 kHz samples) are rounding, not gaps.
pub(super) const GAP_TOLERANCE: u64 = 80;
/// Longest gap filled with silence (5 s); longer ones make the timestamps jump.
pub(super) const MAX_SILENCE: u64 = 5 * 8000;
/// How far behind the stream a chunk whose time all went out may be to be
/// taken for a duplicate or a chunk come after its successor (1 s).
pub(super) const MAX_STALE: u64 = 8000;
/// How far (8 kHz samples) a chunk numbered next, after a jump in the
/// timestamps, may end beyond where the audio has reached in real time
/// ([`Reach::best`]) and still be taken for one after a pause: 40 ms, as
/// `track=both` allows by default (its wait less a chunk). A chunk arrives
/// that much before the best of the last 2 s only if the network's delay
/// fell by as much; coming late makes a jump look more like a pause, never
/// less, so a step is never taken for jitter's sake.
pub(super) const STEP_TOLERANCE: u64 = 320;

/// What the timeline needs to know of a `media` chunk.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    /// `media.timestamp`: milliseconds since the stream started.
    pub timestamp_ms: u64,
    /// `media.chunk`, when present.
    pub number: Option<u64>,
    /// Its length in 8 kHz samples.
    pub samples: u64,
    /// When it was read off the socket.
    pub arrival: Instant,
}

/// Where a chunk went, for the element to act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    /// 8 kHz samples of silence to output before the chunk.
    pub silence: u64,
    /// The stream is discontinuous before the chunk.
    pub discont: bool,
    /// Chunks taken for lost before this one (0: none).
    pub lost: u64,
    /// The gap before the chunk in 8 kHz samples (meaningful when `lost` > 0).
    pub gap: u64,
    /// The timestamp ran implausibly far ahead and was ignored.
    pub ignored_ahead: Option<Ahead>,
    /// The chunk was due before what was already played (it is kept
    /// contiguous all the same).
    pub overlap: bool,
    /// The chunk's time was all played already (a duplicate, or a chunk
    /// come after the next one): it is dropped, and placing it changed
    /// nothing.
    pub stale: bool,
    /// Its chunk number ran further ahead than the time that passed allows
    /// (`Some(number)`): taken for garbage, not for lost chunks, and later
    /// numbers are measured from it.
    pub ignored_number: Option<u64>,
    /// 8 kHz samples of the chunk's time that had been filled already: it
    /// came late and goes out after the fill.
    pub late: u64,
    /// Kept over what was played (an `overlap` by less than [`MAX_AHEAD`],
    /// not numbered as an earlier chunk): it goes out this many 8 kHz
    /// samples after its timestamp's place.
    pub behind: u64,
    /// The timestamps stepped by this many ms: back at the chunk before,
    /// kept over what was played, which this one follows; or ahead, at
    /// this one (home to where they were before steps back, or further
    /// than the time that passed, numbered on). Later chunks are measured
    /// from here.
    pub step_ms: Option<i64>,
}

/// An ignored far-future timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    /// Where it would have put the chunk: 8 kHz samples after the first one.
    pub due: u64,
    /// Time that really passed between the first chunk's arrival and this one's.
    pub elapsed: Duration,
}

/// Time, duration and offsets of an output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub pts: ClockTime,
    pub duration: ClockTime,
    /// In output samples.
    pub offset: u64,
    pub offset_end: u64,
}

/// Where the stream is in time, from its first chunk on.
#[derive(Debug)]
pub struct Timeline {
    /// Running time (ns) of stream position 0, before the output delay;
    /// negative when anchored anew at a position further on than the
    /// running time.
    anchor: i64,
    /// `media.timestamp` that position 0 stands for (negative once the
    /// stream was measured anew after more output than timestamps).
    first_ts_ms: i64,
    /// When the first chunk arrived.
    first_arrival: Instant,
    /// The last chunk placed: its timestamp (ms) and arrival ([`jumped`]).
    last: (u64, Instant),
    /// The stream may carry both tracks (announced, or no tracks announced
    /// at all): chunk numbers may count both, so only timestamps tell gaps.
    ignore_chunk_numbers: bool,
    /// 8 kHz samples output so far, silence included.
    position: u64,
    /// The chunk number expected next, if Twilio numbers them.
    next_chunk: Option<u64>,
    /// Twilio's clock against ours.
    drift: Drift,
    /// The drift correction (ns) at the current position.
    applied: i64,
    /// 8 kHz samples filled since the last chunk.
    filled: u64,
    /// Length of the last chunk: the unit of fill.
    chunk_len: u64,
    /// Samples after the position held back (see [`Self::hold`]).
    held: u64,
    /// The unit in which a gap counts lost chunks.
    unit: LossUnit,
    /// ms added to the timestamps to undo the steps measured anew at: the
    /// drift is estimated by them.
    stepped_ms: i64,
    /// Where (8 kHz samples, by its timestamp) the last chunk kept over
    /// what was played ends: if the next one starts there, a step back.
    kept_behind: Option<i128>,
    /// Where the output has reached in real time: what tells a step ahead
    /// from a pause.
    reach: Reach,
}

impl Timeline {
    /// Starts the timeline at the first chunk. Its first sample is anchored
    /// at the running time it started being spoken: `now` (running time) less
    /// what it `waited` since arrival, less its own length; but no earlier
    /// than the output `delay`, which is taken off every PTS. `both_tracks`:
    /// the stream may carry both (chunk numbers may then count both).
    pub fn first(
        chunk: &Chunk,
        now: ClockTime,
        waited: Duration,
        delay: ClockTime,
        both_tracks: bool,
    ) -> Timeline {
        let mut drift = Drift::default();
        drift.observe(chunk.timestamp_ms, 0, chunk.samples);
        let mut reach = Reach::default();
        reach.reached(chunk.arrival, chunk.samples);
        Timeline {
            anchor: spoken_at(chunk, now, waited).max(delay).nseconds() as i64,
            first_ts_ms: chunk.timestamp_ms.min(i64::MAX as u64) as i64,
            first_arrival: chunk.arrival,
            last: (chunk.timestamp_ms, chunk.arrival),
            ignore_chunk_numbers: both_tracks,
            position: 0,
            next_chunk: chunk.number.map(|c| c.saturating_add(1)),
            drift,
            applied: 0,
            filled: 0,
            chunk_len: chunk.samples.max(1),
            held: 0,
            unit: LossUnit::new(chunk.samples),
            stepped_ms: 0,
            kept_behind: None,
            reach,
        }
    }

    /// Anchors the stream anew at `chunk` (after a pause, when the running
    /// time stood still while Twilio's clock went on): the current position
    /// is put at the running time the chunk started being spoken (or where
    /// the stream stood, if that is later), and later chunks are measured
    /// from this one. The position (and so the offsets)
    /// goes on; the element flags the buffer DISCONT.
    pub fn reanchor(&mut self, chunk: &Chunk, now: ClockTime, waited: Duration) {
        let elapsed = self.position.saturating_mul(NS_PER_SAMPLE) as i64;
        // Never before the end of what went out: the chunk's arrival, less
        // its length, can put its start a few ms before the running time
        // where the stream stood still (buffers would overlap).
        let spoken = spoken_at(chunk, now, waited).nseconds() as i64;
        self.anchor = spoken.max(self.anchor + elapsed) - elapsed;
        self.first_ts_ms = self.measure_from(chunk);
        self.last = (chunk.timestamp_ms, chunk.arrival);
        self.next_chunk = chunk.number.map(|c| c.saturating_add(1));
        self.filled = 0;
        self.chunk_len = chunk.samples.max(1);
        self.held = 0;
        self.kept_behind = None;
        // The time that stood still is no measure of the audio's.
        self.reach = Reach::default();
        self.reach
            .reached(chunk.arrival, self.position + chunk.samples);
        let chunk = self.unstepped(chunk);
        self.drift.rebase(chunk.timestamp_ms);
        self.observe(&chunk);
        self.applied = 0;
    }

    /// `chunk` with the steps measured anew at undone.
    fn unstepped(&self, chunk: &Chunk) -> Chunk {
        Chunk {
            timestamp_ms: chunk.timestamp_ms.saturating_add_signed(self.stepped_ms),
            ..*chunk
        }
    }

    /// Whether `chunk` starts where the last one kept over what was played
    /// ends (its `due` there): then the timestamps stepped back, and this
    /// one is measured from, at the current position. The step in ms.
    fn stepped_back(&mut self, chunk: &Chunk) -> Option<i64> {
        let end = self.kept_behind.take()?;
        if self.numbered_on(chunk) == Some(false) {
            // An earlier chunk come late: no new audio.
            return None;
        }
        let due = (chunk.timestamp_ms as i128 - self.first_ts_ms as i128) * 8;
        if (due - end).abs() > GAP_TOLERANCE as i128 {
            return None;
        }
        Some(self.step_to(chunk))
    }

    /// Whether `chunk` starts where the timestamps before the steps back
    /// measured anew at put the stream (by the current ones, after a gap),
    /// no chunk number skipped: they stepped home, and measure the stream
    /// again. The step in ms.
    fn stepped_home(&mut self, chunk: &Chunk) -> Option<i64> {
        if self.stepped_ms == 0 || self.filled > 0 {
            return None;
        }
        if let (Some(got), Some(next)) = (chunk.number, self.next_chunk)
            && got > next
            && !self.ignore_chunk_numbers
        {
            return None;
        }
        let home = self.first_ts_ms.saturating_add(self.stepped_ms);
        let due = (chunk.timestamp_ms as i128 - home as i128) * 8;
        let (position, tolerance) = (self.position as i128, GAP_TOLERANCE as i128);
        let current = due + self.stepped_ms as i128 * 8;
        if (due - position).abs() > tolerance || current <= position + tolerance {
            return None;
        }
        self.first_ts_ms = home;
        Some(std::mem::take(&mut self.stepped_ms))
    }

    /// The timestamps stepped at `chunk`: it is measured from, at the
    /// current position, and the steps are remembered (for a step home).
    /// The step in ms.
    fn step_to(&mut self, chunk: &Chunk) -> i64 {
        let before = self.first_ts_ms;
        self.first_ts_ms = self.measure_from(chunk);
        let step = self.first_ts_ms.saturating_sub(before);
        self.stepped_ms = self.stepped_ms.saturating_sub(step);
        step
    }

    /// Whether `chunk`, due `due` by its timestamp, is a step ahead in the
    /// timestamps, its chunks going on in real time: a jump past the
    /// current position with nothing filled, numbered as the chunk
    /// expected (no chunk lost), and ending further than
    /// [`STEP_TOLERANCE`] beyond where the audio has reached in real time
    /// (the time that passed does not account for it: no pause). Then it
    /// is measured from, at the current position. The step in ms.
    fn stepped_ahead(&mut self, chunk: &Chunk, due: u64) -> Option<i64> {
        let next = chunk.number.is_some() && chunk.number == self.next_chunk;
        if !next || self.ignore_chunk_numbers || self.filled > 0 {
            return None;
        }
        if due <= self.position + GAP_TOLERANCE {
            return None;
        }
        let reached = self.reach.best(chunk.arrival)?;
        if i128::from(due + chunk.samples) - reached <= i128::from(STEP_TOLERANCE) {
            return None;
        }
        Some(self.step_to(chunk))
    }

    /// Takes the arrival of a chunk for the drift estimate (every chunk
    /// placed, and with both tracks every chunk of either).
    pub fn observe(&mut self, chunk: &Chunk) {
        let arrival = chunk.arrival.saturating_duration_since(self.first_arrival);
        self.drift
            .observe(chunk.timestamp_ms, arrival.as_nanos() as u64, chunk.samples);
    }

    /// The skew of our clock against Twilio's estimated so far (ppm).
    pub fn skew_ppm(&self) -> f64 {
        self.drift.skew_ppm()
    }

    /// Measures later chunks from `chunk`, placed at the current position.
    fn measure_from(&self, chunk: &Chunk) -> i64 {
        let ms = chunk.timestamp_ms as i128 - (self.position / 8) as i128;
        ms.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Running time of the current position (before the output delay).
    fn now_playing(&self) -> i128 {
        self.anchor as i128 + self.position as i128 * NS_PER_SAMPLE as i128 + self.applied as i128
    }

    /// The running time at which, with nothing arriving, the next chunk's
    /// worth of audio after what is held is `deadline` overdue (it would
    /// normally have arrived a chunk after it started being spoken).
    pub fn fill_due(&self, deadline: ClockTime) -> ClockTime {
        let due = self.now_playing()
            + ((self.held + self.chunk_len) * NS_PER_SAMPLE) as i128
            + deadline.nseconds() as i128;
        ClockTime::from_nseconds(due.max(0) as u64)
    }

    /// At running time `now`, with nothing arrived: the 8 kHz samples
    /// overdue by `deadline`, to be put out now (0: none): what is held,
    /// then the whole chunks to fill after it. The element puts them out
    /// ([`Self::span`], [`Self::advance`]); the next chunk's placement
    /// accounts for them.
    pub fn fill(&mut self, now: ClockTime, deadline: ClockTime) -> u64 {
        let overdue = now.nseconds() as i128
            - deadline.nseconds() as i128
            - self.now_playing()
            - (self.held * NS_PER_SAMPLE) as i128;
        let chunk_ns = (self.chunk_len * NS_PER_SAMPLE) as i128;
        if overdue < chunk_ns {
            return 0;
        }
        let samples = self.held + (overdue / chunk_ns) as u64 * self.chunk_len;
        self.filled += samples;
        samples
    }

    /// `samples` after the position came and are held back (`track=both`
    /// waiting for the slower track): the fill is due past them. (After a
    /// fill, the position is as overdue as the deadline allows.)
    pub fn hold(&mut self, samples: u64) {
        self.held = samples;
    }

    /// Running time of stream position 0 (0 if before).
    pub fn anchor(&self) -> ClockTime {
        ClockTime::from_nseconds(self.anchor.max(0) as u64)
    }

    /// Places a chunk after the first one.
    pub fn place(&mut self, chunk: &Chunk) -> Placement {
        let earlier = self.numbered_on(chunk) == Some(false);
        let mut placement = Placement {
            step_ms: self
                .stepped_back(chunk)
                .or_else(|| self.stepped_home(chunk)),
            ..Placement::default()
        };
        let ms = (chunk.timestamp_ms as i128 - self.first_ts_ms as i128).max(0);
        let mut due = u64::try_from(ms).unwrap_or(u64::MAX).saturating_mul(8);
        let elapsed = chunk.arrival.saturating_duration_since(self.first_arrival);
        let possible = plausible(elapsed);
        let last = std::mem::replace(&mut self.last, (chunk.timestamp_ms, chunk.arrival));
        if due > possible || jumped(last, chunk.timestamp_ms, chunk.arrival) {
            // A timestamp far beyond the time that passed: keep the audio
            // contiguous and measure later chunks from this one.
            placement.ignored_ahead = Some(Ahead { due, elapsed });
            self.first_ts_ms = self.measure_from(chunk);
            due = self.position;
            // Its clock is no longer the one measured: keep the correction
            // reached in the anchor, measure again.
            self.anchor += self.applied;
            self.drift.reset();
            self.applied = 0;
        } else if placement.step_ms.is_none()
            && let Some(step) = self.stepped_ahead(chunk, due)
        {
            placement.step_ms = Some(step);
            due = self.position;
        }
        // (A step undone: the drift estimate goes on continuously.)
        self.observe(&self.unstepped(chunk));
        // Where the chunk would go had nothing been filled.
        let expected = self.position - self.filled;
        if self.is_stale(chunk, expected) {
            // All of its time went out already: sent twice, or after the
            // chunk that follows it. Playing it now would put it out of
            // place and the rest of the stream later.
            placement.stale = true;
            return placement;
        }
        self.unit.see(chunk.samples);
        let unit = self.unit.get();
        self.chunk_len = chunk.samples.max(1);
        let filled = std::mem::take(&mut self.filled);
        let gap = due.saturating_sub(expected);
        let mut skipped = match (chunk.number, self.next_chunk) {
            (Some(got), Some(expected)) if got > expected && !self.ignore_chunk_numbers => {
                got - expected
            }
            _ => 0,
        };
        if skipped.saturating_mul(unit) > possible.saturating_sub(expected) {
            // More chunks skipped than the time that passed could hold
            // (noted once per message: not again with its timestamp).
            if placement.ignored_ahead.is_none() {
                placement.ignored_number = chunk.number;
            }
            skipped = 0;
        }
        // Only forward: a chunk kept from behind must not make the next one
        // count chunks it skipped. But a chunk numbered back that goes where
        // the next one does (its timestamp not before it) is new audio: the
        // numbers went back (after one wild number), and count from it.
        let in_place = due + GAP_TOLERANCE >= expected;
        self.next_chunk = match (chunk.number, self.next_chunk) {
            (Some(got), Some(_)) if earlier && in_place => Some(got.saturating_add(1)),
            (Some(got), Some(next)) => Some(next.max(got.saturating_add(1))),
            (got, next) => got.map(|c| c.saturating_add(1)).or(next),
        };
        if filled > 0 && due + GAP_TOLERANCE < self.position {
            // Late for time already filled: after the fill, and measured
            // from here on.
            placement.late = self.position - due;
            placement.discont = true;
            self.first_ts_ms = self.measure_from(chunk);
            due = self.position;
        } else {
            placement.overlap = due + GAP_TOLERANCE < self.position;
            // New audio stamped back (not an earlier chunk come late): it
            // may start a step back, and is measured where it goes out.
            if placement.overlap && !earlier {
                // By its timestamp (before the clamp of `due` at the start).
                let due = (chunk.timestamp_ms as i128 - self.first_ts_ms as i128) * 8;
                let behind = self.position as i128 - due;
                if behind <= MAX_AHEAD as i128 {
                    placement.behind = behind as u64;
                    self.kept_behind = Some(due + chunk.samples as i128);
                } else {
                    // Too far back for a step: measured from here on.
                    self.first_ts_ms = self.measure_from(chunk);
                }
            }
        }
        if gap > GAP_TOLERANCE || skipped > 0 {
            placement.lost = skipped.max(gap.saturating_add(unit / 2) / unit).max(1);
            placement.gap = gap;
            placement.discont = true;
            let rest = due.saturating_sub(self.position);
            if rest > MAX_SILENCE {
                // Too long to fill: let the timestamps jump instead.
                self.position += rest;
            } else if rest > GAP_TOLERANCE {
                placement.silence = rest;
            }
        }
        let end = self.position + placement.silence + chunk.samples;
        self.reach.reached(chunk.arrival, end);
        placement
    }

    /// Whether all of `chunk`'s time went out already, a little before
    /// `expected` (where the next chunk goes): within [`MAX_STALE`], and not
    /// numbered as a new chunk. Further back, or numbered on, it is a
    /// timestamp gone backwards instead, and kept (an overlap).
    fn is_stale(&self, chunk: &Chunk, expected: u64) -> bool {
        let due = (chunk.timestamp_ms as i128 - self.first_ts_ms as i128) * 8;
        let end = due + chunk.samples as i128;
        chunk.samples > 0
            && end <= expected as i128
            && due >= expected as i128 - MAX_STALE as i128
            && self.numbered_on(chunk) != Some(true)
    }

    /// Whether `chunk`'s number is the one expected or past it (a new
    /// chunk), or before it (an earlier one come late); None when the
    /// chunks are not numbered or their numbers may count both tracks.
    fn numbered_on(&self, chunk: &Chunk) -> Option<bool> {
        match (chunk.number, self.next_chunk) {
            (Some(got), Some(next)) if !self.ignore_chunk_numbers => Some(got >= next),
            _ => None,
        }
    }

    /// Where a buffer of `samples` 8 kHz samples at the current position
    /// goes, with `factor` output samples per 8 kHz one and the output
    /// shifted back by the signal `delay` the element adds. Its end carries
    /// the drift correction as it is now, so the next buffer starts there.
    pub fn span(&self, samples: u64, factor: u64, delay: ClockTime) -> Span {
        let at = |position: u64, correction: i64| {
            let ns =
                self.anchor as i128 + position as i128 * NS_PER_SAMPLE as i128 + correction as i128
                    - delay.nseconds() as i128;
            ns.max(0) as u64
        };
        let pts = at(self.position, self.applied);
        let end = at(self.position + samples, self.drift.correction());
        let offset = self.position * factor;
        Span {
            pts: ClockTime::from_nseconds(pts),
            duration: ClockTime::from_nseconds(end.saturating_sub(pts)),
            offset,
            offset_end: offset + samples * factor,
        }
    }

    /// How far the timestamps are moved for the sender's clock drift now
    /// (ns, see [`Drift`]).
    pub fn correction_ns(&self) -> i64 {
        self.drift.correction()
    }

    /// Moves the position past `samples` output 8 kHz samples.
    pub fn advance(&mut self, samples: u64) {
        self.position += samples;
        self.applied = self.drift.correction();
    }
}

/// The running time `chunk` started being spoken: `now` less what it
/// `waited` since arrival, less its own length.
fn spoken_at(chunk: &Chunk, now: ClockTime, waited: Duration) -> ClockTime {
    let waited = ClockTime::from_nseconds(waited.as_nanos() as u64);
    let spoken = ClockTime::from_nseconds(chunk.samples * NS_PER_SAMPLE);
    now.saturating_sub(waited).saturating_sub(spoken)
}

#[cfg(test)]
mod tests;
