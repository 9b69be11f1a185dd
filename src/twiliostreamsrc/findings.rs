//! What placing a chunk found (out of order, too late, a gap, a jump),
//! counted and told: out of line, since the usual chunk has nothing to
//! tell.

use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, State, TwilioStreamSrc};
use super::reorder::Pushed;
use super::timeline;
use super::tracks::Placed;
use crate::call::{CallEvent, MediaChunk, Stat};
use crate::lock::Locked;
use crate::messages;
use crate::protocol::Track;

/// How many more of a track's chunks must come too late than in time
/// (counted up to this, so that a burst banks no more) before it is taken
/// to lag the other: half a second of Twilio's 20 ms chunks.
const LATE_RUN: u16 = 25;

/// And for how long at least: a burst of chunks held up together and then
/// sent at once (a stall) is no lag, however many of them came too late.
const LATE_SPAN: Duration = Duration::from_millis(500);

/// The longest wait `track=both` raises its wait to for a lagging track
/// (`track-wait`'s own maximum), ms.
pub(super) const MAX_TRACK_WAIT_MS: u32 = 1000;

/// `track=both`, per track: whether its chunks keep coming too late (the
/// other track leads it by more than the wait), by how much, and whether
/// it was warned of as lagging past the longest wait; a track found
/// lagging, to handle once the state is let go (`media.rs`: the wait
/// raised, or the WARNING). (Plain values: unit-tested below.)
#[derive(Default)]
pub(super) struct Lateness {
    /// Chunks too late less chunks in time, from 0 up to [`LATE_RUN`].
    score: [u16; 2],
    /// When the first too late chunk of the score's run arrived.
    since: [Option<Instant>; 2],
    /// How far behind that run's chunks came, at most (samples).
    behind: [u64; 2],
    warned: [bool; 2],
    pub(super) lagging: Option<Track>,
}

impl Lateness {
    /// Notes a chunk of `track` that arrived at `arrival`, `behind` samples
    /// too late (0: in time); true once the track lags.
    fn note(&mut self, track: Track, arrival: Instant, behind: Option<u64>) -> bool {
        let i = track.index();
        let Some(behind) = behind else {
            self.score[i] = self.score[i].saturating_sub(1);
            if self.score[i] == 0 {
                (self.since[i], self.behind[i]) = (None, 0);
            }
            return false;
        };
        self.score[i] = (self.score[i] + 1).min(LATE_RUN);
        self.behind[i] = self.behind[i].max(behind);
        let since = *self.since[i].get_or_insert(arrival);
        self.score[i] == LATE_RUN && arrival.saturating_duration_since(since) >= LATE_SPAN
    }

    /// How far behind the lagging track's chunks came, at most (samples).
    fn behind(&self, track: Track) -> u64 {
        self.behind[track.index()]
    }

    /// After the wait was raised for `track`: its lateness counts anew.
    pub(super) fn raised(&mut self, track: Track) {
        let i = track.index();
        (self.score[i], self.since[i], self.behind[i]) = (0, None, 0);
    }

    /// Whether this is the first time `track`'s lag past the longest wait
    /// is told.
    pub(super) fn first_told(&mut self, track: Track) -> bool {
        !std::mem::replace(&mut self.warned[track.index()], true)
    }
}

impl TwilioStreamSrc {
    /// A key, a mark played, or the provider's error: told on the bus (a
    /// key downstream too).
    pub(super) fn handle_notice(&self, event: CallEvent) {
        match event {
            CallEvent::Dtmf(digit) => {
                gst::info!(CAT, imp = self, "DTMF {:?}", digit.0);
                match messages::dtmf_events(&digit) {
                    Some(events) => self.state.locked().pending_events.extend(events),
                    None => gst::warning!(CAT, imp = self, "{:?} is not a DTMF digit", digit.0),
                }
                self.post(messages::dtmf(&digit));
            }
            CallEvent::Mark(name) => {
                gst::debug!(CAT, imp = self, "mark {name:?} played");
                self.post(messages::mark(&name));
            }
            CallEvent::ProviderError(text) => self.warn_provider(&text),
            _ => {}
        }
    }

    /// The provider's error (the first of its code in the call).
    #[cold]
    pub(super) fn warn_provider(&self, text: &str) {
        gst::element_imp_warning!(
            self,
            gst::StreamError::Failed,
            ("{}", text),
            ["Reported by the provider in an error event; each code is told once per call"]
        );
    }

    /// Audio a call sent while it waited for the element, beyond
    /// `early-audio`, was dropped.
    #[cold]
    #[inline(never)]
    pub(super) fn warn_early_dropped(&self, dropped_ms: u64, kept: Duration) {
        gst::element_imp_warning!(
            self,
            gst::StreamError::Failed,
            (
                "Dropped the first {} ms of the call's audio: it came more than early-audio \
                 ({} ms) before the src went to PLAYING with the call",
                dropped_ms,
                kept.as_millis()
            ),
            ["Raise early-audio to keep what a call says while it waits for the src"]
        );
    }

    #[cold]
    #[inline(never)]
    pub(super) fn note_reordered(&self, chunk_no: Option<u64>, timestamp_ms: u64, pushed: Pushed) {
        if let Some(number) = pushed.implausible_number {
            gst::warning!(
                CAT,
                imp = self,
                "chunk number {number} does not fit its timestamp ({timestamp_ms} ms): \
                 placing the chunk by its timestamp, numbering on from it"
            );
        }
        if pushed.reordered {
            gst::debug!(
                CAT,
                imp = self,
                "chunk {} (timestamp {timestamp_ms} ms) came out of order: put back in place",
                Numbered(chunk_no)
            );
        } else if pushed.too_late {
            gst::debug!(
                CAT,
                imp = self,
                "chunk {} (timestamp {timestamp_ms} ms) came after its place was given up, or twice: dropped",
                Numbered(chunk_no)
            );
        }
    }

    #[inline(never)]
    pub(super) fn log_placed(&self, state: &State, chunk: &MediaChunk, placed: &Placed) {
        let track = chunk.track;
        if let Some(ahead) = placed.ignored_ahead {
            gst::warning!(
                CAT,
                imp = self,
                "{track} chunk claims timestamp {} ms, {} s after the first one, {:.1} s in: \
                 placing it after the track's last",
                chunk.timestamp_ms,
                ahead.due / 8000,
                ahead.elapsed.as_secs_f64()
            );
            count(state, Stat::InvalidMessages, 1);
        }
        if placed.gap > 0 {
            // Loss is call life: counted (chunks-lost, twilio-quality), not
            // a warning per chunk.
            gst::debug!(
                CAT,
                imp = self,
                "{track} track: gap of {} ms before timestamp {} ms, filled with silence",
                placed.gap / 8,
                chunk.timestamp_ms
            );
        }
        if placed.after_fill > 0 {
            count(state, Stat::ChunksFilledLate, 1);
            gst::debug!(
                CAT,
                imp = self,
                "{track} track: the chunk at {} ms came {} ms after its time was filled: \
                 it goes out after the fill",
                chunk.timestamp_ms,
                placed.after_fill / 8
            );
        }
        if placed.late > 0 {
            count(state, Stat::ChunksTooLate, 1);
            gst::debug!(
                CAT,
                imp = self,
                "{track} track: {} ms of the chunk at {} ms came after track-wait gave \
                 up its time, dropped",
                placed.late / 8,
                chunk.timestamp_ms
            );
        }
        if let (Some(step), true) = (placed.step, placed.with_other) {
            gst::warning!(
                CAT,
                imp = self,
                "{track} track: its timestamps stepped ahead by {} ms at timestamp {} ms, \
                 as the {} track's did: measured anew by as much, the tracks stay aligned",
                step.unsigned_abs() / 8,
                chunk.timestamp_ms,
                track.other()
            );
        } else if let Some(step) = placed.step {
            // Once per step: the chunks after it follow on.
            gst::warning!(
                CAT,
                imp = self,
                "{track} track: its timestamps stepped {} by {} ms at timestamp {} ms: \
                 measured anew from there, its audio goes on after its last (nothing \
                 lost); the {} track is untouched",
                if step > 0 { "ahead" } else { "back" },
                step.unsigned_abs() / 8,
                chunk.timestamp_ms,
                track.other()
            );
        }
        if placed.held {
            gst::debug!(
                CAT,
                imp = self,
                "{track} track: the chunk at {} ms lies over the track's audio with other \
                 bytes: kept back until the next one tells a step back from a chunk out \
                 of place",
                chunk.timestamp_ms
            );
        }
        if placed.twice {
            count(state, Stat::ChunksTooLate, 1);
            gst::debug!(
                CAT,
                imp = self,
                "{track} track: the chunk at {} ms was sent twice: dropped",
                chunk.timestamp_ms
            );
        }
        if placed.held_dropped > 0 {
            count(state, Stat::ChunksTooLate, 1);
            gst::debug!(
                CAT,
                imp = self,
                "{track} track: the chunk kept back was out of place: {} ms of it dropped",
                placed.held_dropped / 8
            );
        }
        if placed.skipped > 0 {
            gst::warning!(
                CAT,
                imp = self,
                "no media on either track for {} ms before timestamp {} ms: timestamps jump",
                placed.skipped / 8,
                chunk.timestamp_ms
            );
        }
    }

    /// `track=both`: a track whose chunks keep coming after `track-wait`
    /// gave their time up lags the other by more than the wait, and its
    /// channel is silence, or chopped (a lag past the wait by less than a
    /// chunk drops part of each): found once [`LATE_RUN`] more of its
    /// chunks came too late, in whole or in part, than in time, over
    /// [`LATE_SPAN`] at least, and handled once the state is let go (the
    /// wait raised, [`Self::raise_track_wait`], or past the longest wait
    /// [`Self::warn_lagging`]).
    #[inline]
    pub(super) fn note_lateness(&self, state: &mut State, chunk: &MediaChunk, placed: &Placed) {
        if placed.twice || placed.held {
            return;
        }
        let behind = (placed.late > 0).then_some(placed.behind);
        if state.lateness.note(chunk.track, chunk.arrival, behind) {
            state.lateness.lagging = Some(chunk.track);
        }
    }

    /// A track lags the other past the wait: for the rest of the call the
    /// wait is raised by as much as its chunks came too late (at most, over
    /// the run) and a chunk more, in steps of 10 ms, up to
    /// [`MAX_TRACK_WAIT_MS`], so that its channel carries its audio again
    /// (rather than silence for the whole call), at the price of that much
    /// more latency. The new wait, if raised.
    pub(super) fn raise_track_wait(&self, state: &mut State, track: Track) -> Option<u32> {
        let wait = state.track_wait_ms;
        if wait >= MAX_TRACK_WAIT_MS {
            return None;
        }
        let behind_ms = state.lateness.behind(track).div_ceil(8) as u32;
        let raised = (wait + behind_ms + 20).div_ceil(10) * 10;
        let raised = raised.min(MAX_TRACK_WAIT_MS);
        state.track_wait_ms = raised;
        state.lateness.raised(track);
        if let Some(aligner) = state.aligner.as_mut() {
            aligner.raise_wait(super::media::track_wait_ticks(raised));
        }
        Some(raised)
    }

    /// The wait raised for `track` (no lock held): told, and the pipeline's
    /// latency computed anew.
    #[cold]
    #[inline(never)]
    pub(super) fn warn_wait_raised(&self, track: Track, from_ms: u32, to_ms: u32) {
        gst::element_imp_warning!(
            self,
            gst::StreamError::Demux,
            (
                "The {track} track lags the {} by more than track-wait ({from_ms} ms): \
                 the wait is raised to {to_ms} ms for this call, and the src's latency with \
                 it. Set track-wait so that this is not needed.",
                track.other()
            ),
            [
                "{LATE_RUN} more of its chunks came too late than in time, over {} ms at \
                 least: dropped (chunks-too-late)",
                LATE_SPAN.as_millis()
            ]
        );
        let _ = self
            .obj()
            .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
    }

    #[cold]
    #[inline(never)]
    pub(super) fn warn_lagging(&self, track: Track, wait_ms: u32) {
        gst::element_imp_warning!(
            self,
            gst::StreamError::Demux,
            (
                "The {track} track lags the {} by more than the longest track-wait \
                 ({wait_ms} ms): its chunks come after their time went out, are dropped in \
                 whole or in part (chunks-too-late), and its channel is silence.",
                track.other()
            ),
            [
                "{LATE_RUN} more of its chunks came too late than in time, over {} ms at least",
                LATE_SPAN.as_millis()
            ]
        );
    }

    /// What `place` found worth counting or telling, out of line: the usual
    /// chunk has nothing to tell.
    #[cold]
    #[inline(never)]
    pub(super) fn note_placed(
        &self,
        state: &State,
        chunk: &MediaChunk,
        placed: &timeline::Placement,
    ) {
        if placed.late > 0 {
            count(state, Stat::ChunksFilledLate, 1);
            gst::debug!(
                CAT,
                imp = self,
                "chunk {} (timestamp {} ms) came {} ms after its time was filled: \
                 it goes out after the fill",
                Numbered(chunk.chunk),
                chunk.timestamp_ms,
                placed.late / 8
            );
        }
        if let Some(ahead) = placed.ignored_ahead {
            gst::warning!(
                CAT,
                imp = self,
                "chunk {} claims timestamp {} ms, {} s after the first one, {:.1} s in: ignoring it",
                Numbered(chunk.chunk),
                chunk.timestamp_ms,
                ahead.due / 8000,
                ahead.elapsed.as_secs_f64()
            );
            count(state, Stat::InvalidMessages, 1);
        }
        if placed.stale {
            count(state, Stat::ChunksTooLate, 1);
            gst::debug!(
                CAT,
                imp = self,
                "chunk {} (timestamp {} ms) is for time already played (sent twice, or \
                 after the next one): dropped",
                Numbered(chunk.chunk),
                chunk.timestamp_ms
            );
        }
        if let Some(number) = placed.ignored_number {
            gst::warning!(
                CAT,
                imp = self,
                "chunk number {number} (timestamp {} ms) skips more chunks than the time \
                 that passed holds: not counting them lost",
                chunk.timestamp_ms
            );
            count(state, Stat::InvalidMessages, 1);
        }
        if let Some(step) = placed.step_ms {
            // Once per step: the chunks after it follow on.
            gst::warning!(
                CAT,
                imp = self,
                "timestamps stepped {} by {} ms before chunk {} (timestamp {} ms): \
                 measured anew from there, the audio goes on after the last (nothing lost)",
                if step > 0 { "ahead" } else { "back" },
                step.unsigned_abs(),
                Numbered(chunk.chunk),
                chunk.timestamp_ms
            );
        }
        if placed.overlap {
            gst::debug!(
                CAT,
                imp = self,
                "chunk {} (timestamp {} ms) overlaps what was played, keeping it contiguous",
                Numbered(chunk.chunk),
                chunk.timestamp_ms
            );
        }
        if placed.lost > 0 {
            count(state, Stat::ChunksLost.of_track(chunk.track), placed.lost);
            // Counted; a warning per lost chunk would flood a call's log.
            gst::debug!(
                CAT,
                imp = self,
                "gap of {} ms before chunk {} (timestamp {} ms): {} chunk(s) lost",
                placed.gap / 8,
                Numbered(chunk.chunk),
                chunk.timestamp_ms,
                placed.lost
            );
        }
    }
}

/// Adds `n` to the call's counter `stat`, if the src has a call.
fn count(state: &State, stat: Stat, n: u64) {
    if let Some(call) = &state.call {
        call.stats.add(stat, n);
    }
}

/// A chunk's number as logged: the number, or "-" when the provider sends
/// none.
struct Numbered(Option<u64>);

impl std::fmt::Display for Numbered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Notes chunks of the outbound track, one every 20 ms from `start`,
    /// each `late(n)` (samples behind, or in time); the chunk at which the
    /// track was found lagging, if any.
    fn found(
        l: &mut Lateness,
        start: Instant,
        n: usize,
        late: impl Fn(usize) -> Option<u64>,
    ) -> Option<usize> {
        (0..n).find(|&k| {
            let arrival = start + Duration::from_millis(20 * k as u64);
            l.note(Track::Outbound, arrival, late(k))
        })
    }

    #[test]
    fn a_steady_lag_is_found_after_half_a_second() {
        let mut l = Lateness::default();
        let at = found(&mut l, Instant::now(), 100, |_| Some(320));
        // The 26th chunk: 25 too late, and 500 ms since the first.
        assert_eq!(at, Some(25));
        assert_eq!(l.behind(Track::Outbound), 320);
        assert_eq!(l.score[Track::Inbound.index()], 0);
        l.raised(Track::Outbound);
        assert_eq!(found(&mut l, Instant::now(), 25, |_| Some(40)), None);
    }

    /// Chunks held up and sent at once (a stall), then in time: however
    /// many came too late, no lag.
    #[test]
    fn a_burst_after_a_stall_is_no_lag() {
        let mut l = Lateness::default();
        let start = Instant::now();
        for k in 0..175u64 {
            assert!(!l.note(Track::Outbound, start, Some(28_000 - 160 * k)));
        }
        let after = start + Duration::from_millis(1);
        assert_eq!(found(&mut l, after, 500, |_| None), None);
        assert_eq!(l.behind(Track::Outbound), 0, "forgotten once in time");
    }

    /// A track mostly too late, sometimes in time (jitter past the wait):
    /// found, with how late it came at worst.
    #[test]
    fn a_track_mostly_too_late_is_found() {
        let mut l = Lateness::default();
        let late = |k: usize| (!k.is_multiple_of(5)).then_some(80 * (k % 7) as u64);
        let at = found(&mut l, Instant::now(), 200, late).expect("found");
        assert!((25..=60).contains(&at), "{at}");
        assert_eq!(l.behind(Track::Outbound), 480);
        // In time more often than not: never.
        let mut l = Lateness::default();
        let seldom = |k: usize| k.is_multiple_of(2).then_some(160);
        assert_eq!(found(&mut l, Instant::now(), 1000, seldom), None);
    }
}
