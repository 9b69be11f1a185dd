//! The src's timing glue around the [`Timeline`](super::timeline::Timeline):
//! the return to PLAYING after a pause, and the fill pushed when nothing
//! arrives for the fill deadline.
//!
//! * **Pause.** A live BaseSrc does not call `create()` in PAUSED (one
//!   under way goes on, and what it takes then is dropped), and the
//!   running time stands still while Twilio's clock goes on. On the return
//!   to PLAYING, the media chunks that arrived before it are dropped
//!   (counted in `chunks-dropped-paused`: played late, they would put every
//!   later buffer ahead of its PTS by the pause) and the stream is anchored
//!   anew at the next chunk: its first sample at the running time it started
//!   being spoken, flagged DISCONT. With `track=both`, what the aligner
//!   held goes out before it (the wait for the slower track given up, as
//!   at a fill); a resampled output's tail then, at its time before the
//!   pause (as before a fill's GAP). The
//!   same holds for both push modes. A call's chunks from before its first
//!   PLAYING (it waited for the element) are no pause: kept, up to
//!   `early-audio`, and counted as come at the return (the call runs that
//!   much behind real time); older ones are dropped and warned of.
//! * **Fill deadline.** When nothing arrives until the audio is
//!   [`fill_deadline`](TwilioStreamSrc::fill_deadline) overdue, silence
//!   goes out for the overdue time (a chunk at a time while it lasts):
//!   a buffer flagged GAP, or for a compressed output a GAP event, so
//!   downstream does not wait for the next chunk to learn of the gap. A
//!   resampled output's tail (the audio still inside the filter) goes out
//!   first, padded with silence, and the resampler starts afresh. Audio
//!   that then arrives for time already filled goes out after the fill
//!   (counted in `chunks-filled-late`, DISCONT). The streaming thread
//!   waits for it ([`receive`](TwilioStreamSrc::receive)); with
//!   `shared-threads` the call's fill timer on the runtime does
//!   (`shared_threads`). With `track=both` the deadline counts past what
//!   the aligner holds (audio that came, waiting for the other track); then
//!   that goes out first (the wait for the slower track given up), and the
//!   GAP covers both channels; late audio of either track goes after it.

use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::fill_timer::FillLook;
use super::imp::{CAT, State, TwilioStreamSrc};
use super::media::{placing, track_wait_ticks};
use super::output::Output;
use super::step::Buffers;
use super::timeline::Span;
use super::tracks::{Aligner, Frame};
use crate::call::{CallEvent, Events, MediaChunk, Stat};
use crate::lock::Locked;
use crate::runtime::RUNTIME;
use crate::wait::{Cancelled, wait};

/// The fill deadline is never shorter than this: Twilio's delivery is
/// bursty (some 230 ms without a chunk, nothing lost, is normal at TwiML
/// boundaries), and audio that is merely late must not be overtaken by fill.
pub(super) const MIN_FILL_DEADLINE: gst::ClockTime = gst::ClockTime::from_mseconds(300);

/// The return to PLAYING, as media placement sees it.
#[derive(Debug, Default)]
pub(super) struct Resume {
    /// When the element last went to PLAYING: earlier chunks queued while
    /// paused.
    since: Option<Instant>,
    /// The next chunk placed anchors the stream anew.
    pending: bool,
    /// Between PLAYING → PAUSED and the return: a `create()` under way
    /// may still take chunks, which queued while paused as well.
    paused: bool,
    /// `early-audio`: how long before the element's first PLAYING with
    /// the call (the call waiting for it) a chunk may have come and be kept.
    pub(super) early: Duration,
    /// The PLAYING the call's first chunk was placed in: chunks from
    /// before it are early, kept (however the element paused since).
    first_playing: Option<Instant>,
    /// The call's chunks from further before it, dropped: ms of audio,
    /// per track.
    early_dropped_ms: [u64; 2],
    /// Told of once.
    early_told: bool,
    /// The most of them (ms), to warn of once the state is let go.
    pub(super) early_to_warn: Option<u64>,
}

impl Resume {
    /// A run's, keeping `early_ms` of a call's audio from before its
    /// first PLAYING.
    pub(super) fn keeping(early_ms: u32) -> Resume {
        Resume {
            early: Duration::from_millis(early_ms.into()),
            ..Resume::default()
        }
    }
}

/// What a media chunk is to the return to PLAYING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterPause {
    /// It queued while paused: dropped.
    Drop,
    /// The first after the return with a timeline running: anchor anew.
    Reanchor,
    Place,
}

/// What waiting on the call's queue gave.
pub(super) enum Received {
    Event(Option<CallEvent>),
    /// The fill deadline passed with nothing.
    Overdue,
    /// `look` passed with nothing (before the fill deadline).
    Look,
}

impl TwilioStreamSrc {
    /// Before PLAYING → PAUSED.
    pub(super) fn pausing(&self) {
        self.state.locked().resume.paused = true;
    }

    /// Before PAUSED → PLAYING (before `create()` may run again).
    pub(super) fn resuming(&self) {
        let resume = &mut self.state.locked().resume;
        resume.since = Some(Instant::now());
        resume.pending = true;
        resume.paused = false;
    }

    /// A media chunk against the last return to PLAYING. One taken while
    /// paused queued while paused too: a `create()` under way when the
    /// element paused goes on waiting (BaseSrc 1.22 does not unlock it
    /// then), and BaseSrc would push what it made once PLAYING again.
    pub(super) fn after_pause(&self, state: &mut State, chunk: &MediaChunk) -> AfterPause {
        let resume = &mut state.resume;
        if state.timeline.is_none() {
            // The call's first chunk anchors the stream: nothing to anew.
            resume.first_playing = resume.since;
            resume.pending = false;
        }
        // A call's audio from before its first PLAYING (it waited for the
        // element) is no pause: kept, up to `early-audio`, and it goes on
        // from where the stream stands, even after a pause (the chunks
        // that came during the pause are dropped, and the first after it
        // anchors anew).
        let early = resume
            .first_playing
            .map(|first| first.saturating_duration_since(chunk.arrival))
            .filter(|before| !before.is_zero());
        let dropped = match early {
            Some(before) => before > resume.early,
            None => resume.paused || resume.since.is_some_and(|since| chunk.arrival < since),
        };
        if dropped {
            if early.is_some() {
                let ms = state.format.payload_ns(&chunk.ulaw) / 1_000_000;
                resume.early_dropped_ms[chunk.track.index()] += ms;
            }
            if let Some(call) = &state.call {
                call.stats.add(Stat::ChunksDroppedPaused, 1);
            }
            gst::trace!(CAT, imp = self, "dropping a chunk that came while paused");
            return AfterPause::Drop;
        }
        // (Not told when early-audio is 0: chosen so.)
        let most = resume.early_dropped_ms.into_iter().max().unwrap_or(0);
        if most > 0 && !resume.early.is_zero() && !std::mem::replace(&mut resume.early_told, true) {
            resume.early_to_warn = Some(most);
        }
        if early.is_none() && std::mem::take(&mut resume.pending) && state.timeline.is_some() {
            return AfterPause::Reanchor;
        }
        AfterPause::Place
    }

    /// When a chunk counts as come, for its place in time: not before the
    /// last return to PLAYING (a call's audio kept from before its first
    /// starts there, and the call runs that much behind real time).
    pub(super) fn arrived(&self, state: &State, chunk: &MediaChunk) -> Instant {
        state
            .resume
            .since
            .map_or(chunk.arrival, |since| since.max(chunk.arrival))
    }

    /// Whether a chunk of the track(s) output is placed: not if it queued
    /// while paused; the first after a return to PLAYING anchors anew (the
    /// end of the audio before the pause into `out` first).
    pub(super) fn resumed(&self, state: &mut State, chunk: &MediaChunk, out: &mut Buffers) -> bool {
        match self.after_pause(state, chunk) {
            AfterPause::Drop => false,
            AfterPause::Reanchor => {
                self.reanchor(state, chunk, out);
                true
            }
            AfterPause::Place => true,
        }
    }

    /// The first chunk after a return to PLAYING: the stream goes on from
    /// the running time it started being spoken (for both tracks, with the
    /// aligner started anew at it). What the aligner held (audio that came
    /// before the pause, waiting for the other track), then the audio still
    /// inside the resampler(s) go out first, into `out`, at their time
    /// before the pause, and the resampler(s) start afresh, as before a
    /// fill's GAP: the new aligner would throw the held audio away
    /// uncounted, and the filter never hears the break, and would otherwise
    /// carry the end of the audio before it into the first re-anchored
    /// buffer.
    #[inline(never)]
    fn reanchor(&self, state: &mut State, chunk: &MediaChunk, out: &mut Buffers) {
        let now = self.running_time();
        let waited = Instant::now().saturating_duration_since(chunk.arrival);
        let Some(output) = state.output.filter(|_| state.timeline.is_some()) else {
            return;
        };
        // What the aligner held first: it has not reached the resampler(s).
        self.flush_aligner(state, out);
        out.extend(self.resampler_tail(state, output, u64::MAX).1);
        let timeline = state.timeline.as_mut().expect("checked");
        timeline.reanchor(&placing(chunk, state.format), now, waited);
        self.ran_to(timeline);
        // A syncing sink meets the chunks from the new anchor on.
        state.meter.reanchored();
        if state.aligner.is_some() {
            let [inbound, outbound] = state.carried;
            state.aligner = Some(Box::new(
                Aligner::new(inbound, outbound, track_wait_ticks(state.track_wait_ms))
                    .with_silence(state.format.silence()),
            ));
        }
        state.discont = true;
        self.fill_timer_rearm();
        gst::debug!(
            CAT,
            imp = self,
            "back to PLAYING: chunk at {} ms anchored at {now}",
            chunk.timestamp_ms
        );
    }

    /// The pipeline's running time now.
    pub(super) fn running_time(&self) -> gst::ClockTime {
        let obj = self.obj();
        match (obj.clock(), obj.base_time()) {
            (Some(clock), Some(base)) => clock.time().saturating_sub(base),
            _ => gst::ClockTime::ZERO,
        }
    }

    /// How overdue audio is before a gap is filled without waiting for the
    /// next chunk: the reported latency, and at least [`MIN_FILL_DEADLINE`].
    pub(super) fn fill_deadline(&self) -> gst::ClockTime {
        self.latency().max(MIN_FILL_DEADLINE)
    }

    /// The streaming thread's wait for the next event of the call, up to
    /// the fill deadline when the stream is filled in time, and up to
    /// `look` if given.
    pub(super) fn receive(
        &self,
        events: &mut Events,
        look: Option<Duration>,
    ) -> Result<Received, Cancelled> {
        let (timeout, expired) = match (self.fill_wait(), look) {
            (Some(fill), Some(look)) if look < fill => (look, Received::Look),
            (Some(fill), _) => (fill, Received::Overdue),
            (None, Some(look)) => (look, Received::Look),
            (None, None) => return wait(&self.canceller, events.recv()).map(Received::Event),
        };
        // The timer is the runtime's; the wait is this thread's.
        let _runtime = RUNTIME.enter();
        let received = wait(
            &self.canceller,
            tokio::time::timeout(timeout, events.recv()),
        )?;
        Ok(received.map_or(expired, Received::Event))
    }

    /// How long from now until the audio is the fill deadline overdue, if
    /// the stream is being filled in time (a timeline runs, the call goes
    /// on, not paused).
    pub(super) fn fill_wait(&self) -> Option<Duration> {
        self.fill_times().map(|(wait, _, _)| wait)
    }

    /// [`Self::fill_wait`], with the running time and the time of the
    /// look, for the fill timer of `shared-threads`.
    pub(super) fn fill_look(&self) -> Option<FillLook> {
        self.fill_times().map(|(wait, running, deadline)| FillLook {
            wait,
            running: running.nseconds(),
            at: tokio::time::Instant::now(),
            deadline: deadline.nseconds(),
        })
    }

    /// The wait until the fill is due, the running time and the deadline.
    fn fill_times(&self) -> Option<(Duration, gst::ClockTime, gst::ClockTime)> {
        let deadline = self.fill_deadline();
        let state = self.state.locked();
        match (&state.timeline, state.finished) {
            (Some(timeline), false) if !state.resume.paused && !state.after_eos => {
                let due = timeline.fill_due(deadline);
                let now = self.running_time();
                let wait = Duration::from_nanos(due.saturating_sub(now).nseconds());
                Some((wait, now, deadline))
            }
            _ => None,
        }
    }

    /// The fill deadline passed. What the reorder window holds behind a
    /// gap goes out first, the gap given up (the fill then looks again, as
    /// its chunks may cover the time); else [`Self::fill_gap`]. Returned
    /// for the caller to push.
    pub(super) fn fill_overdue(&self) -> Result<Buffers, gst::FlowError> {
        if self.state.locked().reorder.flush() {
            return self.released_media();
        }
        Ok(self.fill_gap())
    }

    /// Silence for the time overdue (GAP buffers, or a GAP event). With
    /// `track=both`, what the aligner held comes first; then the audio
    /// still inside the resampler(s), pushed out with silence: returned as
    /// buffers for the caller to push, the GAP buffers with them (a GAP
    /// event queued after them).
    fn fill_gap(&self) -> Buffers {
        let deadline = self.fill_deadline();
        let now = self.running_time();
        let mut held = Buffers::default();
        let mut state = self.state.locked();
        let event = self.fill_into(&mut state, now, deadline, &mut held);
        // A re-anchoring whose chunk the aligner held: the stream's first
        // buffer since is the fill's.
        if !held.is_empty() && std::mem::take(&mut state.discont) {
            held.flag_first(gst::BufferFlags::DISCONT);
        }
        drop(state);
        if let Some(event) = event {
            self.obj().src_pad().push_event(event);
        }
        held
    }

    /// [`Self::fill_gap`]'s work under the state's lock: the buffers into
    /// `held`; a GAP event to push now (none before it), if any.
    fn fill_into(
        &self,
        state: &mut State,
        now: gst::ClockTime,
        deadline: gst::ClockTime,
        held: &mut Buffers,
    ) -> Option<gst::Event> {
        let output = state.output?;
        let timeline = state.timeline.as_mut()?;
        let mut samples = timeline.fill(now, deadline);
        if samples == 0 {
            return None;
        }
        if state.aligner.is_some() {
            samples = samples.saturating_sub(self.flush_aligner(state, held));
            let aligner = state.aligner.as_mut().expect("there");
            if samples == 0 || !aligner.fill(samples) {
                return None;
            }
        }
        // The audio still inside the resampler(s) next, at its time.
        let (tail, buffer) = self.resampler_tail(state, output, samples);
        held.extend(buffer);
        samples -= tail;
        if samples == 0 {
            return None;
        }
        // The concealer hears the GAP's silence: a loss found after it is
        // not concealed from the audio before it, that late.
        match state.aligner.is_some() {
            true => state.stereo.skipped(output, samples as usize),
            false => state.converter.skipped(output, samples as usize),
        }
        let timeline = state.timeline.as_mut().expect("there");
        let gap = timeline.span(samples, output.factor(), output.delay());
        timeline.advance(samples);
        self.ran_to(timeline);
        gst::debug!(
            CAT,
            imp = self,
            "nothing came: gap of {} from {} (at {now})",
            gap.duration,
            gap.pts
        );
        // Raw audio gets its silence as a buffer flagged GAP, so that what
        // ignores GAP events (`wavenc`, `filesink`) keeps the time; the
        // payloads of a compressed call have no silence to make.
        let channels = if state.aligner.is_some() { 2 } else { 1 };
        if let Some(buffers) = silent_gap(output, channels, &gap) {
            held.extend(buffers);
            return None;
        }
        let event = gst::event::Gap::builder(gap.pts)
            .duration(gap.duration)
            .build();
        if !held.is_empty() {
            state.pending_events.push(event);
            return None;
        }
        Some(event)
    }

    /// With `track=both`: what the aligner holds (audio that came, waiting
    /// for the other track) goes out into `out` at its time, the slower
    /// track filled with silence to the leading one (its wait given up,
    /// counted lost as at the end), chunks kept back dropped as too late.
    /// The ticks it covered (its samples and a jump). Before a fill's GAP,
    /// and before a pause's re-anchoring (which starts a new aligner).
    fn flush_aligner(&self, state: &mut State, out: &mut Buffers) -> u64 {
        let Some(aligner) = state.aligner.as_mut() else {
            return 0;
        };
        let frame = aligner.flush();
        self.release_held(state);
        let Some(frame) = frame else {
            return 0;
        };
        let covered = frame.samples as u64 + frame.jump;
        out.extend(self.frame_buffer(state, frame, 0).ok().flatten());
        covered
    }

    /// Before a GAP of `samples`: the audio still inside the resampler(s)
    /// (its delay's worth, which the GAP at the position would otherwise
    /// cover, and which would come out only after it, with the audio that
    /// follows) pushed out with silence, up to `samples` ticks, as a buffer
    /// at the position; once all of it is out, the resampler(s) start
    /// afresh, as after the GAP's silence. A fill shorter than the tail (a
    /// sender's chunks shorter than it) pushes part of it, the next fill
    /// the rest. The ticks taken from the GAP, and the buffer. Also before
    /// the stream is anchored anew after a pause (`samples` unbounded).
    pub(super) fn resampler_tail(
        &self,
        state: &mut State,
        output: Output,
        samples: u64,
    ) -> (u64, Option<gst::Buffer>) {
        let full = output.tail_ticks();
        let both = state.aligner.is_some();
        let (resampling, fed) = match both {
            true => (state.stereo.resampling(), state.stereo.tail_fed()),
            false => (state.converter.resampling(), state.converter.tail_fed()),
        };
        if full == 0 || !resampling {
            return (0, None);
        }
        let tail = (full.saturating_sub(fed) as u64).min(samples) as usize;
        let buffer = match both {
            true => self
                .frame_buffer(state, Frame::default(), tail)
                .ok()
                .flatten(),
            false => {
                let width = state.format.bytes_per_tick();
                let zeros = vec![state.format.silence(); tail * width];
                self.make_buffer(state, &zeros, 0, false).ok()
            }
        };
        // No buffer (none allocated): the position did not move, the GAP
        // covers the tail's time.
        let out = buffer.as_ref().map_or(full, |_| fed + tail);
        match (out >= full, both) {
            (true, true) => state.stereo.restart_resampler(),
            (true, false) => state.converter.restart_resampler(),
            (false, true) => state.stereo.set_tail_fed(out),
            (false, false) => state.converter.set_tail_fed(out),
        }
        (buffer.as_ref().map_or(0, |_| tail as u64), buffer)
    }
}

/// Output samples of silence in one GAP buffer at most: a fill overdue by
/// a long time (nothing pushed meanwhile) goes out in pieces of a second.
const GAP_PIECE_SECONDS: u64 = 1;

/// Buffers of silence in `output` (raw audio, `channels` interleaved) over
/// `gap`, flagged GAP, a second at most each; None for a compressed output.
fn silent_gap(output: Output, channels: usize, gap: &Span) -> Option<Vec<gst::Buffer>> {
    let silence = output.silence_byte()?;
    let total = gap.offset_end - gap.offset;
    let piece = GAP_PIECE_SECONDS * output.rate as u64;
    // The time at `k` samples into the gap, so that the pieces tile it.
    let at = |k: u64| gap.pts + gap.duration.mul_div_floor(k, total).expect("no overflow");
    let mut buffers = Vec::new();
    let mut done = 0;
    while done < total {
        let n = (total - done).min(piece);
        let bytes = n as usize * channels * output.sample_bytes();
        let mut buffer = gst::Buffer::from_mut_slice(vec![silence; bytes]);
        let b = buffer.get_mut().expect("new");
        b.set_pts(at(done));
        b.set_duration(at(done + n) - at(done));
        b.set_offset(gap.offset + done);
        b.set_offset_end(gap.offset + done + n);
        b.set_flags(gst::BufferFlags::GAP);
        buffers.push(buffer);
        done += n;
    }
    Some(buffers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::WireFormat;
    use crate::twiliostreamsrc::output::Encoding;

    /// A long fill at 16 kHz, two channels, goes out in pieces of a second
    /// that tile it: contiguous, offsets and sizes of the samples they
    /// hold, silent, flagged GAP; a compressed output gets none.
    #[test]
    fn a_long_fill_goes_out_in_pieces_that_tile_it() {
        gst::init().unwrap();
        let output = Output {
            encoding: Encoding::S16le,
            rate: 16000,
            wire: WireFormat::PCMU,
        };
        let gap = Span {
            pts: gst::ClockTime::from_mseconds(700),
            duration: gst::ClockTime::from_mseconds(2500),
            offset: 11_200,
            offset_end: 11_200 + 40_000,
        };
        let buffers = silent_gap(output, 2, &gap).unwrap();
        assert_eq!(buffers.len(), 3);
        let (mut pts, mut offset) = (gap.pts, gap.offset);
        for b in &buffers {
            assert_eq!((b.pts(), b.offset()), (Some(pts), offset));
            let samples = b.offset_end() - b.offset();
            assert!(samples <= 16_000);
            assert_eq!(b.size() as u64, samples * 2 * 2);
            assert!(b.flags().contains(gst::BufferFlags::GAP));
            assert!(b.map_readable().unwrap().iter().all(|&x| x == 0));
            pts += b.duration().unwrap();
            offset = b.offset_end();
        }
        assert_eq!((pts, offset), (gap.pts + gap.duration, gap.offset_end));
        let mulaw = Output {
            encoding: Encoding::Mulaw,
            rate: 8000,
            ..output
        };
        let one = silent_gap(
            mulaw,
            1,
            &Span {
                offset_end: 11_200 + 160,
                ..gap
            },
        )
        .unwrap();
        assert_eq!(one[0].map_readable().unwrap().as_slice(), [0xFF; 160]);
        let opus = Output {
            encoding: Encoding::Opus,
            ..output
        };
        assert!(silent_gap(opus, 1, &gap).is_none());
    }
}
