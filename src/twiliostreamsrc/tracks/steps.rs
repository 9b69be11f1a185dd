//! Steps in one track's timestamps told from lost chunks (see the
//! [module documentation](super)), and a step of both tracks at once.

use std::time::{Duration, Instant};

use super::Aligner;
use crate::protocol::Track;
use crate::twiliostreamsrc::timeline::GAP_TOLERANCE;

impl Aligner {
    /// A gap before a chunk due at `due` that is a step in the track's
    /// timestamps, not lost chunks: the chunk (of `len` samples) ends more
    /// than the wait less its length ahead of where both tracks' audio has
    /// reached in real time. (Taken for a gap, the track would lead by
    /// that and its chunk, and a lead past the wait starves the other
    /// track; below a wait of two chunks, half the wait is left to jitter.)
    /// Without the other track's reach, the track's own best lately stands
    /// in (a burst of late chunks then a loss is no step). The track's own
    /// reach counts without what an earlier step taken for a gap put it
    /// ahead of real time: two such steps would add up to a lead past the
    /// wait.
    pub(super) fn stepped_ahead(
        &self,
        track: Track,
        due: i128,
        len: usize,
        arrival: Instant,
    ) -> Jump {
        let lane = &self.lanes[track.index()];
        let end = self.end(track) as i128;
        if !lane.started || due <= end + GAP_TOLERANCE as i128 {
            return Jump::No;
        }
        let other = &self.lanes[track.other().index()];
        let own = |reach: Option<i128>| reach.map(|r| r - lane.early);
        let reached = match other.expected.then(|| other.reach(arrival)).flatten() {
            Some(other) => own(lane.reach(arrival)).map_or(other, |own| own.max(other)),
            None => match own(lane.best_reach(arrival)) {
                Some(reached) => reached,
                None => return Jump::No,
            },
        };
        let (len, wait) = (len as i128, self.max_wait as i128);
        let bound = (wait - len).max(wait / 2);
        match due + len - reached > bound {
            true => Jump::Step(due - end),
            false => Jump::Gap,
        }
    }

    /// The other track's last step ahead, if it is this one's too: its
    /// chunk came within the wait of this one (at `arrival`), and this
    /// one, moved by it, lands within the wait of the other's first chunk
    /// after its step and not over its own audio. Both tracks' timestamps
    /// stepped at once: measured anew by as much, they stay aligned (each
    /// after its own last audio, a track whose last chunks were lost, or
    /// whose wait a flush gave up, would be moved by that much less, and
    /// the two would part for good). (A step of this track alone, after
    /// it fell silent, may land as near: the arrivals tell it apart.)
    pub(super) fn joint_step(&self, track: Track, due: i128, arrival: Instant) -> Option<i128> {
        let (step, at, when) = self.lanes[track.other().index()].stepped?;
        let wait = self.max_wait as i128;
        let together =
            arrival.saturating_duration_since(when) <= Duration::from_millis(self.max_wait / 8);
        let moved = due - step;
        let beside = (moved - at).abs() <= wait;
        let lane = &self.lanes[track.index()];
        let after_audio = moved + GAP_TOLERANCE as i128 >= lane.audio_end as i128;
        (together && beside && after_audio).then_some(step)
    }

    /// How far `track`'s audio, ending at `end` after a gap, runs ahead of
    /// real time: of where both tracks have reached by the chunks that
    /// reached furthest lately (a chunk after a loss in a burst after a
    /// stall comes with the time that passed, not ahead of it).
    pub(super) fn early(&self, track: Track, end: i128, arrival: Instant) -> i128 {
        let lane = &self.lanes[track.index()];
        let other = &self.lanes[track.other().index()];
        let own = lane.best_reach(arrival).map(|r| r - lane.early);
        let other = other.expected.then(|| other.best_reach(arrival)).flatten();
        own.max(other).map_or(0, |reached| (end - reached).max(0))
    }
}

/// A gap before a chunk, told by [`Aligner::stepped_ahead`].
pub(super) enum Jump {
    /// No gap.
    No,
    /// A step in the timestamps: by this many samples.
    Step(i128),
    /// Lost chunks.
    Gap,
}
