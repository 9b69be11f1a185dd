//! One track of [`Aligner`](super::Aligner): its samples from the output
//! position on, where it has reached in real time, and what it last got (to
//! tell a chunk sent twice or late from a step back).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Instant;

use super::TRACK_WAIT;
use crate::codec::g711;
use crate::twiliostreamsrc::timeline::{GAP_TOLERANCE, LossUnit, Reach};

/// The chunk length assumed for counting lost chunks before one arrived.
const DEFAULT_CHUNK: u64 = 160;
/// How many of a track's last chunks are remembered to tell a chunk sent
/// twice (320 ms of Twilio's 20 ms chunks).
const HEARD: usize = 16;

/// One track's samples from the output position on.
#[derive(Debug)]
pub(super) struct Lane {
    /// `start.tracks` announced it: it is waited for, and its gaps count.
    pub(super) expected: bool,
    /// A chunk of it has arrived (silence before that is not a loss).
    pub(super) started: bool,
    /// μ-law from the output position on: audio and filled silence.
    pub(super) pending: Vec<u8>,
    /// Beside `pending`: which samples stand in for lost audio (to conceal).
    pub(super) lost_mask: Vec<bool>,
    /// The byte of silence in the call's codec.
    pub(super) silence: u8,
    /// The length to count lost chunks in (see [`LossUnit`]).
    pub(super) unit: LossUnit,
    /// Silence filled since its last audio, and the chunks counted for it.
    pub(super) run: u64,
    pub(super) run_counted: u64,
    /// Chunks counted lost and not yet reported in a [`Frame`](super::Frame).
    pub(super) lost: u64,
    /// A run of silence began to count since the last frame: the next
    /// frame is DISCONT (once per run, as the mono output flags a gap once).
    pub(super) discont: bool,
    /// Samples filled by the fill deadline since its last audio.
    pub(super) filled: u64,
    /// Samples added to where its timestamps put it: how far it was moved
    /// when measured anew (a step in its timestamps, or one far ahead).
    pub(super) offset: i128,
    /// Its last step ahead: by how much, where its chunk went and when it
    /// came (to take the other track's step at once as the same step).
    pub(super) stepped: Option<(i128, i128, Instant)>,
    /// Axis position after its last audio.
    pub(super) audio_end: u64,
    /// Its last chunk's timestamp (ms) and arrival, to tell a jump far
    /// ahead of it (`timeline::jumped`).
    pub(super) last: Option<(u64, Instant)>,
    /// Where its audio has reached in real time.
    real_time: Reach,
    /// Samples its audio runs ahead of real time since a step ahead taken
    /// for a gap (its chunk came before its time): taken off its reach, so
    /// that such steps do not add up to a lead past the wait. Kept until
    /// its next gap: a lead from a step lasts. (A loss whose next chunk
    /// came early, the network's delay having fallen, reads the same.)
    pub(super) early: i128,
    /// Its last chunks of audio, oldest overwritten first.
    heard: [Option<Heard>; HEARD],
    heard_next: usize,
    /// A chunk behind its audio, until the next one tells what it is.
    pub(super) held: Option<Held>,
    /// Held chunks dropped without a chunk to report it (at a flush or the
    /// end), not yet reported in a [`Frame`](super::Frame).
    pub(super) too_late: u64,
}

/// A chunk of audio a track got: where, and a hash of its bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heard {
    /// Where it was placed on the axis (its timestamp's place, unless the
    /// track was measured anew at it).
    pub(super) due: i128,
    /// The axis span of its samples that went in as audio.
    pub(super) start: i128,
    pub(super) end: i128,
    pub(super) hash: u64,
}

/// What a chunk before its track's audio is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Behind {
    /// It is not.
    No,
    /// The same bytes at the same place as a chunk the track got: dropped.
    Twice,
    /// It lies where the track has silence only (filled for a gap or the
    /// wait): late audio, placed as such.
    Late,
    /// It lies over audio of the track with other bytes (or before what is
    /// remembered): the first after a step back, or out of place.
    Unsure,
}

/// A hash of a chunk's bytes.
pub(super) fn hash(ulaw: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    ulaw.hash(&mut hasher);
    hasher.finish()
}

/// A chunk that lies over what its track already holds, with other bytes:
/// the first after the track's timestamps stepped back, or out of place.
#[derive(Debug)]
pub(super) struct Held {
    /// Where its timestamp put it on the axis.
    pub(super) due: i128,
    pub(super) ulaw: Vec<u8>,
    pub(super) arrival: Instant,
}

impl Lane {
    pub(super) fn new(expected: bool, max_wait: u64) -> Lane {
        // Room for the wait and a few chunks: no allocation per chunk.
        let room = (max_wait + 4 * TRACK_WAIT) as usize;
        Lane {
            expected,
            started: false,
            pending: Vec::with_capacity(room),
            lost_mask: Vec::with_capacity(room),
            silence: g711::SILENCE,
            unit: LossUnit::new(DEFAULT_CHUNK),
            run: 0,
            run_counted: 0,
            lost: 0,
            discont: false,
            filled: 0,
            offset: 0,
            stepped: None,
            audio_end: 0,
            last: None,
            real_time: Reach::default(),
            early: 0,
            heard: [None; HEARD],
            heard_next: 0,
            held: None,
            too_late: 0,
        }
    }

    /// Where its audio would have reached by `now` had it gone on in real
    /// time since its last chunk (None before its first).
    pub(super) fn reach(&self, now: Instant) -> Option<i128> {
        self.real_time.last(now)
    }

    /// Where its audio has reached by `now` by the chunk that reached
    /// furthest lately: chunks that came late (a burst after a stall) do not
    /// hold it back.
    pub(super) fn best_reach(&self, now: Instant) -> Option<i128> {
        self.real_time.best(now)
    }

    /// Its audio reached `audio_end` at `arrival`.
    pub(super) fn reached(&mut self, arrival: Instant) {
        self.real_time.reached(arrival, self.audio_end);
    }

    /// Remembers a chunk of audio (see [`Heard`]).
    pub(super) fn heard(&mut self, heard: Heard) {
        self.heard[self.heard_next] = Some(heard);
        self.heard_next = (self.heard_next + 1) % HEARD;
    }

    /// Appends `n` samples of silence, counting the chunks they stand for.
    pub(super) fn fill(&mut self, n: u64) {
        self.pending
            .resize(self.pending.len() + n as usize, self.silence);
        self.lost_mask
            .resize(self.pending.len(), self.expected && self.started);
        if !(self.expected && self.started) {
            return;
        }
        self.run += n;
        // Rounded to whole chunks: a run of half a chunk or more is one.
        let unit = self.unit.get();
        let counted = (self.run + unit / 2) / unit;
        if counted > self.run_counted {
            self.discont |= self.run_counted == 0;
            self.lost += counted - self.run_counted;
            self.run_counted = counted;
        }
    }

    /// Appends audio: a run of silence ends.
    pub(super) fn audio(&mut self, ulaw: &[u8]) {
        if ulaw.is_empty() {
            return;
        }
        self.pending.extend_from_slice(ulaw);
        self.lost_mask.resize(self.pending.len(), false);
        self.run = 0;
        self.run_counted = 0;
    }

    /// What a chunk due at `due` is if it lies before the audio the track
    /// holds (or has output): a chunk sent twice, late audio, or maybe the
    /// first after a step back.
    pub(super) fn behind(&self, due: i128, ulaw: &[u8]) -> Behind {
        let tolerance = GAP_TOLERANCE as i128;
        if !self.started || ulaw.is_empty() || due + tolerance >= self.audio_end as i128 {
            return Behind::No;
        }
        let heard = || self.heard.iter().flatten();
        if heard().next().is_none() {
            // None of its audio went in yet (its first chunks were all
            // before where the output started, as after a pause when the
            // other track led): nothing for a step back to go over.
            return Behind::Late;
        }
        let (hash, end) = (hash(ulaw), due + ulaw.len() as i128);
        if heard().any(|h| h.due == due && h.end == end && h.hash == hash) {
            return Behind::Twice;
        }
        let remembered = heard().map(|h| h.start).min();
        // (Timestamps a little off overlap the audio beside it a little.)
        let over_audio: i128 = heard()
            .map(|h| (h.end.min(end) - h.start.max(due)).max(0))
            .sum();
        match remembered {
            Some(from) if due >= from && over_audio <= tolerance => Behind::Late,
            _ => Behind::Unsure,
        }
    }
}
