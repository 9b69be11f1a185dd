//! The call's media turned into buffers, for the `track` chosen.
//!
//! * Mono (`inbound`, `outbound`): that track's chunks, placed one by one by
//!   the `timeline`; the other track's are dropped. If the stream does not
//!   carry the track, the other one's chunks stand in as silence of their
//!   length, so the output still follows the call's clock.
//! * `both`: the two tracks aligned by `tracks` (the [`Aligner`]), one
//!   [`Timeline`] for their shared clock, converted into two interleaved
//!   channels.
//!
//! Also the warning for a track the stream lacks, and the end of the audio
//! (what the aligner still holds, the upsamplers' tail).

use std::time::Instant;

use gst::subclass::prelude::*;

use super::imp::{CAT, State, TwilioStreamSrc};
use super::output::Output;
use super::properties::Tracks;
use super::quality::Placing;
use super::step::Buffers;
use super::timeline::{self, Timeline};
use super::tracks::{Aligner, Frame};
use crate::call::{HotPart, MediaChunk, Stat};
use crate::codec::WireFormat;
use crate::lock::Locked;
use crate::protocol::{StartInfo, Track};

/// Which tracks `start` says the stream carries, in channel order. A stream
/// that names neither is taken for the caller's (the only kind Twilio has
/// without an outbound track); one that announces no tracks at all
/// (Telnyx's, whose `stream_track` is chosen elsewhere) may carry either.
pub(super) fn carried(start: &StartInfo) -> [bool; 2] {
    if start.tracks_unannounced {
        return [true, true];
    }
    let [inbound, outbound] = Track::ALL.map(|t| start.carries(t));
    [inbound || !outbound, outbound]
}

/// How long `track=both` waits at most for the slower track (`track-wait`,
/// ms), added to the latency it reports.
pub(super) fn track_wait(ms: u32) -> gst::ClockTime {
    gst::ClockTime::from_mseconds(u64::from(ms))
}

/// `track-wait` in the aligner's ticks (125 µs: 8 kHz samples).
pub(super) fn track_wait_ticks(ms: u32) -> u64 {
    u64::from(ms) * 8
}

impl TwilioStreamSrc {
    /// At `start`: notes which tracks the stream carries, and warns (once,
    /// as there is one `start`) if it lacks one this src outputs.
    pub(super) fn check_tracks(&self, start: &StartInfo) {
        let carried = carried(start);
        let tracks = {
            let mut state = self.state.locked();
            state.carried = carried;
            // Whether the one track output comes is seen from the media.
            state.unseen = (start.tracks_unannounced && state.tracks.mono().is_some()).then_some(0);
            state.tracks
        };
        let detail = format!(
            "start.tracks is {:?}. <Connect><Stream> and <Start><Stream> without a track \
             attribute carry the caller only; use <Start><Stream track=\"both_tracks\"> (or \
             \"outbound_track\") for what the caller hears",
            start.tracks
        );
        self.warn_missing(carried, tracks, &detail);
    }

    /// Warns if the stream lacks a track this src outputs (`carried`).
    fn warn_missing(&self, carried: [bool; 2], tracks: Tracks, detail: &str) {
        let missing: Vec<Track> = Track::ALL
            .into_iter()
            .filter(|t| !carried[t.index()] && tracks.mono().is_none_or(|m| m == *t))
            .collect();
        let Some(track) = missing.first() else {
            return;
        };
        let nick = match tracks {
            Tracks::Inbound => "inbound",
            Tracks::Outbound => "outbound",
            Tracks::Both => "both",
        };
        let has = Track::ALL
            .into_iter()
            .filter(|t| carried[t.index()])
            .map(Track::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let gets = match tracks {
            Tracks::Both => format!("gets silence in channel {} ({track})", track.index()),
            _ => "gets silence".to_owned(),
        };
        gst::element_imp_warning!(
            self,
            gst::ResourceError::Settings,
            ("The stream carries only [{has}]; track={nick} {gets}"),
            ["{detail}"]
        );
    }

    /// A media chunk through the reorder window: the buffers of the chunks
    /// it lets out (none while it waits for a missing one).
    pub(super) fn reorder_media(&self, chunk: MediaChunk) -> Result<Buffers, gst::FlowError> {
        let (chunk_no, timestamp_ms) = (chunk.chunk, chunk.timestamp_ms);
        let pushed = {
            let mut state = self.state.locked();
            let pushed = state.reorder.push(chunk);
            if let Some(call) = &state.call {
                call.stats
                    .add(Stat::ChunksReordered, pushed.reordered as u64);
                call.stats.add(Stat::ChunksTooLate, pushed.too_late as u64);
                call.stats.add(
                    Stat::InvalidMessages,
                    pushed.implausible_number.is_some() as u64,
                );
            }
            pushed
        };
        if pushed.reordered || pushed.too_late || pushed.implausible_number.is_some() {
            self.note_reordered(chunk_no, timestamp_ms, pushed);
        }
        self.released_media()
    }

    /// The buffers of the chunks the reorder window has let out; at the
    /// end of the call (`flush`), of every chunk it held.
    pub(super) fn released_media(&self) -> Result<Buffers, gst::FlowError> {
        let mut buffers = Buffers::default();
        loop {
            let Some(chunk) = self.state.locked().reorder.pop() else {
                return Ok(buffers);
            };
            self.handle_media(chunk, &mut buffers)?;
        }
    }

    /// A media chunk: into `out`, a buffer when there is audio to push
    /// (after the end of the audio before a pause, at the first chunk after it).
    pub(super) fn handle_media(
        &self,
        chunk: MediaChunk,
        out: &mut Buffers,
    ) -> Result<(), gst::FlowError> {
        if chunk.ulaw.is_empty() {
            return Ok(());
        }
        let mut state = self.state.locked();
        if state.output.is_none() {
            drop(state);
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["No caps negotiated"]);
            return Err(gst::FlowError::NotNegotiated);
        }
        let carried = state.carried;
        let buffer = match state.tracks.mono() {
            Some(track) => self.mono_media(&mut state, track, &chunk, out),
            None => self.both_media(&mut state, &chunk, out),
        };
        self.measure(&mut state, &chunk);
        if let Some(events) = &state.events {
            events.recycle(chunk.ulaw);
        }
        let lagging = state.lateness.lagging.take();
        let early = state.resume.early_to_warn.take();
        if state.carried != carried || lagging.is_some() || early.is_some() {
            let (now, tracks, wait) = (state.carried, state.tracks, state.track_wait_ms);
            // A lagging track: the wait raised, or past the longest one told.
            let lagging = lagging.map(|track| {
                let raised = self.raise_track_wait(&mut state, track);
                let told = raised.is_some() || state.lateness.first_told(track);
                (track, raised, told)
            });
            let kept = state.resume.early;
            drop(state);
            if let Some(dropped) = early {
                self.warn_early_dropped(dropped, kept);
            }
            if now != carried {
                let detail = format!(
                    "the stream's start names no tracks (Telnyx's stream_track), and only the \
                     other track came for track-wait ({wait} ms)"
                );
                self.warn_missing(now, tracks, &detail);
            }
            match lagging {
                Some((track, Some(raised), _)) => self.warn_wait_raised(track, wait, raised),
                Some((track, None, true)) => self.warn_lagging(track, wait),
                _ => {}
            }
        }
        out.extend(buffer?);
        Ok(())
    }

    /// `track` alone, or silence timed by the other if the stream lacks it.
    fn mono_media(
        &self,
        state: &mut State,
        track: Track,
        chunk: &MediaChunk,
        out: &mut Buffers,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        if let Some(seen) = state.unseen {
            if chunk.track == track {
                state.unseen = None;
            } else {
                // Tracks unannounced, and only the other one so far: once it
                // ran track-wait ahead, the stream is taken to lack `track`.
                let seen = seen + state.format.ticks(chunk.ulaw.len());
                if seen < track_wait_ticks(state.track_wait_ms) {
                    state.unseen = Some(seen);
                    return Ok(None);
                }
                state.unseen = None;
                state.carried[track.index()] = false;
            }
        }
        let carried = state.carried[track.index()];
        let source = if carried { track } else { track.other() };
        if chunk.track != source || !self.resumed(state, chunk, out) {
            return Ok(None);
        }
        let Some((silence, discont)) = self.place(state, chunk) else {
            return Ok(None);
        };
        if state.format.is_compressed() {
            return self.compressed_buffer(
                state,
                carried.then_some(&chunk.ulaw[..]),
                chunk,
                silence,
                discont,
            );
        }
        let buffer = if carried {
            self.make_buffer(state, &chunk.ulaw, silence, discont)
        } else {
            let ticks = state.format.ticks(chunk.ulaw.len());
            self.make_buffer(state, &[], silence + ticks, discont)
        };
        buffer.map(Some)
    }

    /// Both tracks: the chunk goes to the aligner; what both channels now
    /// cover (or the wait gave up on) goes out.
    #[inline(never)]
    fn both_media(
        &self,
        state: &mut State,
        chunk: &MediaChunk,
        out: &mut Buffers,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        if !state.carried[chunk.track.index()] {
            // Not announced in start: neither waited for nor used.
            gst::trace!(
                CAT,
                imp = self,
                "ignoring media of the {} track",
                chunk.track
            );
            return Ok(None);
        }
        if !self.resumed(state, chunk, out) {
            return Ok(None);
        }
        if state.timeline.is_none() {
            self.anchor(state, chunk);
            let [inbound, outbound] = state.carried;
            state.aligner = Some(Box::new(
                Aligner::new(inbound, outbound, track_wait_ticks(state.track_wait_ms))
                    .with_silence(state.format.silence()),
            ));
        }
        let aligner = state.aligner.as_mut().expect("made with the timeline");
        let offset_before = aligner.offset_ms(chunk.track);
        let placed = aligner.push(chunk.track, chunk.timestamp_ms, &chunk.ulaw, chunk.arrival);
        let frame = aligner.next_frame();
        // The clock is measured by the track's timestamps as placed (after
        // a step, measured anew).
        let offset_ms = aligner.offset_ms(chunk.track);
        if let Some(timeline) = state.timeline.as_mut() {
            timeline.observe(&timeline::Chunk {
                timestamp_ms: (i128::from(chunk.timestamp_ms) + offset_ms).clamp(0, u64::MAX.into())
                    as u64,
                ..placing(chunk, state.format)
            });
        }
        state.chunk_dropped = placed.twice || placed.late >= chunk.ulaw.len() as u64;
        state.placing = Placing {
            // (Beyond an i64 only from a timestamp near u64::MAX.)
            step_ms: placed.step.map(|_| {
                (offset_before - offset_ms).clamp(i64::MIN.into(), i64::MAX.into()) as i64
            }),
            behind_ms: 0,
            held: placed.held,
            // Whatever was kept back, this chunk settled it: placed (the
            // start of a step back) or dropped (even if this one steps ahead).
            released: Some(placed.held_dropped == 0),
        };
        self.log_placed(state, chunk, &placed);
        self.note_lateness(state, chunk, &placed);
        // After a skipped gap, the frame after the jump goes out with the
        // next chunk.
        let buffer = match frame {
            Some(mut frame) => {
                frame.discont |= std::mem::take(&mut state.discont);
                self.frame_buffer(state, frame, 0)
            }
            None => Ok(None),
        };
        // What is held for the other track came: the fill is due past it.
        let held = state.aligner.as_ref().map_or(0, |a| a.held());
        if let Some(timeline) = state.timeline.as_mut() {
            timeline.hold(held);
            self.ran_to(timeline);
        }
        buffer
    }

    /// A two-channel buffer of `frame` followed by `tail` samples of silence
    /// (the upsamplers' tail at the end), at the current position.
    #[inline(never)]
    pub(super) fn frame_buffer(
        &self,
        state: &mut State,
        frame: Frame,
        tail: usize,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let output = state.output.ok_or(gst::FlowError::NotNegotiated)?;
        let State {
            aligner,
            timeline,
            stereo,
            call,
            ..
        } = state;
        let (Some(aligner), Some(timeline)) = (aligner.as_mut(), timeline.as_mut()) else {
            return Ok(None);
        };
        for track in Track::ALL.into_iter().filter(|t| frame.lost[t.index()] > 0) {
            let lost = frame.lost[track.index()];
            if let Some(call) = call {
                call.stats.add(Stat::ChunksLost.of_track(track), lost);
            }
            gst::debug!(CAT, imp = self, "{track} track: {lost} chunk(s) lost");
        }
        if frame.too_late > 0 {
            if let Some(call) = call {
                call.stats.add(Stat::ChunksTooLate, frame.too_late);
            }
            gst::debug!(
                CAT,
                imp = self,
                "{} chunk(s) kept back were sent twice or out of place: dropped",
                frame.too_late
            );
        }
        timeline.advance(frame.jump);
        let samples = frame.samples + tail;
        if samples == 0 {
            return Ok(None);
        }
        let span = timeline.span(samples as u64, output.factor(), output.delay());
        let width = 2 * output.bytes_per_input_sample();
        let mut buffer =
            gst::Buffer::with_size(samples * width).map_err(|_| gst::FlowError::Error)?;
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(span.pts);
            buffer.set_duration(span.duration);
            buffer.set_offset(span.offset);
            buffer.set_offset_end(span.offset_end);
            if frame.discont {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
            let mut map = buffer.map_writable().map_err(|_| gst::FlowError::Error)?;
            let (body, rest) = map.as_mut_slice().split_at_mut(frame.samples * width);
            let n = frame.samples;
            let channels = [
                &aligner.channel(Track::Inbound)[..n],
                &aligner.channel(Track::Outbound)[..n],
            ];
            let lost = [
                &aligner.lost_mask(Track::Inbound)[..n],
                &aligner.lost_mask(Track::Outbound)[..n],
            ];
            stereo.write(output, 0, channels, lost, body);
            if tail > 0 {
                stereo.write(output, tail, [&[], &[]], [&[], &[]], rest);
            }
        }
        aligner.consume(frame.samples);
        timeline.advance(samples as u64);
        timeline.hold(aligner.held());
        self.ran_to(timeline);
        Ok(Some(buffer))
    }

    /// The end of the audio: what the aligner still holds, and the audio
    /// still inside the upsampler(s), pushed out with silence.
    #[inline(never)]
    pub(super) fn drain(&self, state: &mut State) -> Option<gst::Buffer> {
        let timeline = state.timeline.as_ref()?;
        gst::debug!(
            CAT,
            imp = self,
            "our clock against Twilio's: {:+.1} ppm",
            timeline.skew_ppm()
        );
        let tail = state.output.map_or(0, Output::tail_ticks);
        if state.tracks == Tracks::Both {
            let frame = state.aligner.as_deref_mut().and_then(Aligner::finish);
            self.release_held(state);
            return self
                .frame_buffer(state, frame.unwrap_or_default(), tail)
                .ok()
                .flatten();
        }
        if tail == 0 {
            return None;
        }
        let zeros = vec![state.format.silence(); tail * state.format.bytes_per_tick()];
        self.make_buffer(state, &zeros, 0, false).ok()
    }

    /// Starts the timeline at the first chunk.
    #[inline(never)]
    fn anchor(&self, state: &mut State, chunk: &MediaChunk) {
        let output = state.output.expect("checked by the caller");
        let now = self.running_time();
        let waited = Instant::now().saturating_duration_since(self.arrived(state, chunk));
        // Chunk numbers may count both tracks if the stream may carry the
        // outbound one.
        let both_tracks = state.start.as_ref().is_some_and(|s| carried(s)[1]);
        let placing = placing(chunk, state.format);
        let timeline = Timeline::first(&placing, now, waited, output.delay(), both_tracks);
        gst::debug!(
            CAT,
            imp = self,
            "first chunk (timestamp {} ms) anchored at {}",
            chunk.timestamp_ms,
            timeline.anchor()
        );
        self.ran_to(&timeline);
        state.timeline = Some(timeline);
        self.fill_timer_rearm();
    }

    /// Places a chunk in time: returns the silence to insert before it and
    /// whether the stream is discontinuous there; None if the chunk's time
    /// was played already (it is dropped).
    fn place(&self, state: &mut State, chunk: &MediaChunk) -> Option<(u64, bool)> {
        let Some(timeline) = state.timeline.as_mut() else {
            self.anchor(state, chunk);
            return Some((0, false));
        };
        if std::mem::take(&mut state.discont) {
            // Anchored anew at this chunk.
            return Some((0, true));
        }
        let placed = timeline.place(&placing(chunk, state.format));
        if placed.late > 0
            || placed.ignored_ahead.is_some()
            || placed.overlap
            || placed.lost > 0
            || placed.stale
            || placed.ignored_number.is_some()
            || placed.step_ms.is_some()
        {
            self.note_placed(state, chunk, &placed);
        }
        state.chunk_dropped = placed.stale;
        state.placing = Placing {
            step_ms: placed.step_ms,
            behind_ms: placed.behind / 8,
            ..Placing::default()
        };
        (!placed.stale).then_some((placed.silence, placed.discont))
    }

    /// A buffer of `silence` ticks (8 kHz samples) of silence followed by
    /// `wire` (the call's bytes), in the output format, at the current position.
    pub(super) fn make_buffer(
        &self,
        state: &mut State,
        wire: &[u8],
        silence: u64,
        discont: bool,
    ) -> Result<gst::Buffer, gst::FlowError> {
        let output = state.output.ok_or(gst::FlowError::NotNegotiated)?;
        let timeline = state.timeline.as_mut().expect("placed before");
        let samples = silence + state.format.ticks(wire.len());
        let span = timeline.span(samples, output.factor(), output.delay());
        let mut buffer = gst::Buffer::with_size(samples as usize * output.bytes_per_input_sample())
            .map_err(|_| gst::FlowError::Error)?;
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(span.pts);
            buffer.set_duration(span.duration);
            buffer.set_offset(span.offset);
            buffer.set_offset_end(span.offset_end);
            if discont {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
            let mut map = buffer.map_writable().map_err(|_| gst::FlowError::Error)?;
            state
                .converter
                .write(output, silence as usize, wire, map.as_mut_slice());
        }
        timeline.advance(samples);
        self.ran_to(timeline);
        if let Some(call) = &state.call {
            // The next chunk is most likely as long as this one's audio.
            let next = state.format.ticks(wire.len()) as usize;
            let [fields, history] = state.converter.hot_ranges(output, next);
            call.hot.set(HotPart::SrcBuffers, fields.0, fields.1);
            call.hot.set(HotPart::SrcHistory, history.0, history.1);
        }
        Ok(buffer)
    }
}

/// What the timeline needs to know of a chunk in `format`.
pub(super) fn placing(chunk: &MediaChunk, format: WireFormat) -> timeline::Chunk {
    timeline::Chunk {
        timestamp_ms: chunk.timestamp_ms,
        number: chunk.chunk,
        samples: format.payload_ticks(&chunk.ulaw),
        arrival: chunk.arrival,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(tracks: &[&str]) -> StartInfo {
        StartInfo {
            account_sid: "AC1".into(),
            stream_sid: "MZ1".into(),
            call_sid: "CA1".into(),
            tracks: tracks.iter().map(|t| t.to_string()).collect(),
            custom_parameters: Default::default(),
            media_format: None,
            tracks_unannounced: false,
        }
    }

    #[test]
    fn a_stream_carries_the_tracks_start_names_or_else_the_caller() {
        assert_eq!(carried(&start(&["inbound"])), [true, false]);
        assert_eq!(carried(&start(&["outbound"])), [false, true]);
        assert_eq!(carried(&start(&["inbound", "outbound"])), [true, true]);
        assert_eq!(carried(&start(&[])), [true, false]);
        // Telnyx announces none: either may come.
        let telnyx = StartInfo {
            tracks_unannounced: true,
            ..start(&[])
        };
        assert_eq!(carried(&telnyx), [true, true]);
        assert_eq!(carried(&start(&["something"])), [true, false]);
    }

    #[test]
    fn the_default_track_wait_is_60_ms() {
        use super::super::properties::DEFAULT_TRACK_WAIT_MS;
        assert_eq!(
            track_wait(DEFAULT_TRACK_WAIT_MS),
            gst::ClockTime::from_mseconds(60)
        );
        assert_eq!(
            track_wait_ticks(DEFAULT_TRACK_WAIT_MS),
            super::super::tracks::TRACK_WAIT
        );
    }
}
