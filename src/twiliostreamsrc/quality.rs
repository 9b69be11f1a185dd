//! The src's call quality: every chunk it outputs measured (jitter, late
//! chunks) on its streaming thread, not in the call's task, which stays
//! cheap; the figures as properties and `stats` fields; the periodic
//! `twilio-quality` message, posted with no lock held. The measures
//! themselves are `crate::quality`'s.

use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{State, TwilioStreamSrc};
use super::media::track_wait;
use super::output::Output;
use super::properties::{GapFill, Settings, Tracks};
use crate::call::{MediaChunk, Stat};
use crate::lock::Locked;
use crate::messages;
use crate::protocol::Track;
use crate::quality::{Figures, Meter};

/// The latency the src reports for `output`, `latency_ms` extra, `tracks`.
pub(super) fn reported_latency(
    output: Output,
    latency_ms: u32,
    tracks: Tracks,
    track_wait_ms: u32,
) -> gst::ClockTime {
    let mut latency = output.latency() + gst::ClockTime::from_mseconds(latency_ms as u64);
    if tracks == Tracks::Both {
        latency += track_wait(track_wait_ms);
    }
    latency
}

/// What placing the chunk being handled tells the quality meter, beside
/// whether it was dropped (`State::chunk_dropped`).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Placing {
    /// Its track's timestamps stepped by this many ms (negative: back) at
    /// it, and the track was measured anew.
    pub(super) step_ms: Option<i64>,
    /// It went out this many ms after its timestamp's place (kept over what
    /// was played): measured there.
    pub(super) behind_ms: u64,
    /// It was kept back (`track=both`): measured once the track's next
    /// chunk tells whether it started a step.
    pub(super) held: bool,
    /// The chunk its track kept back before it was placed (`Some(true)`)
    /// or dropped.
    pub(super) released: Option<bool>,
}

/// A new call's meter.
pub(super) fn meter(quality_interval: u32) -> Meter {
    Meter::new(Duration::ZERO, u64::from(quality_interval) * 1000)
}

/// The reported latency in ms for `output` and a run's settings, and
/// whether losses are concealed.
fn conditions(
    output: Output,
    latency_ms: u32,
    (tracks, track_wait_ms, gap_fill): (Tracks, u32, GapFill),
) -> (f64, bool) {
    let latency = reported_latency(output, latency_ms, tracks, track_wait_ms);
    let concealment = gap_fill == GapFill::Plc && output.conceals();
    (latency.nseconds() as f64 / 1e6, concealment)
}

/// What `mos` reads on a new src, every property at its default: the
/// property's declared default, so that gst-inspect shows it.
pub(super) fn default_mos() -> f64 {
    let s = Settings::default();
    let run = (s.track, s.track_wait_ms, s.gap_fill);
    let (latency_ms, concealment) = conditions(Output::default(), s.latency_ms, run);
    Meter::default().call(latency_ms, concealment).mos
}

impl TwilioStreamSrc {
    /// The latency the src reports: a chunk (and the upsampler's delay),
    /// the `latency` property, and with `track=both` the wait for the
    /// slower track.
    pub(super) fn latency(&self) -> gst::ClockTime {
        let (output, run) = {
            let state = self.state.locked();
            // Once negotiated, the tracks and wait this run started with.
            let run = state
                .output
                .is_some()
                .then_some((state.tracks, state.track_wait_ms));
            (state.output.unwrap_or_default(), run)
        };
        let (extra, tracks, wait) = {
            let settings = self.settings.locked();
            let (tracks, wait) = run.unwrap_or((settings.track, settings.track_wait_ms));
            (settings.latency_ms, tracks, wait)
        };
        reported_latency(output, extra, tracks, wait)
    }

    /// Measures a chunk of the track(s) output, after its audio was placed
    /// (so its track's lost count is up to date); notes a report due.
    pub(super) fn measure(&self, state: &mut State, chunk: &MediaChunk) {
        let measured = match state.tracks.mono() {
            Some(track) => {
                let carried = state.carried[track.index()];
                chunk.track == if carried { track } else { track.other() }
            }
            None => state.carried[chunk.track.index()],
        };
        let dropped = std::mem::take(&mut state.chunk_dropped);
        let placing = std::mem::take(&mut state.placing);
        if !measured || chunk.ulaw.is_empty() {
            return;
        }
        let latency_ms = self.settings.locked().latency_ms;
        let output = state.output.unwrap_or_default();
        state.meter.set_latency(
            reported_latency(output, latency_ms, state.tracks, state.track_wait_ms).into(),
        );
        if let Some(call) = &state.call {
            for track in Track::ALL {
                let lost = call.stats.get(Stat::ChunksLost.of_track(track));
                state.meter.set_lost(track.index(), lost);
            }
        }
        if let Some(timeline) = &state.timeline {
            let correction = timeline.correction_ns();
            state.meter.set_correction(correction);
        }
        let (track, ticks) = (chunk.track.index(), state.format.payload_ticks(&chunk.ulaw));
        let meter = &mut state.meter;
        // One kept back and dropped was out of place: judged by the track's
        // measure before a step this chunk brings; one placed, after it.
        let mut due = placing.released == Some(false) && meter.release(track, false);
        // A step is no lateness nor jitter: the track is judged as placed.
        if let Some(step) = placing.step_ms {
            meter.stepped(track, step);
        }
        due |= placing.released == Some(true) && meter.release(track, true);
        let timestamp_ms = chunk.timestamp_ms.saturating_add(placing.behind_ms);
        due |= if placing.held {
            meter.hold(track, chunk.arrival, timestamp_ms, ticks)
        } else {
            // A chunk dropped whole came again, or after its time was given
            // up (counted lost then): received once, or lost, not both; its
            // lateness counts all the same.
            meter.measure(track, chunk.arrival, timestamp_ms, ticks, !dropped)
        };
        state.report_due |= due;
    }

    /// The chunks the aligner kept back were dropped (a flush): measured
    /// as such.
    pub(super) fn release_held(&self, state: &mut State) {
        for track in Track::ALL {
            state.report_due |= state.meter.release(track.index(), false);
        }
    }

    /// Posts `twilio-quality` if one fell due.
    pub(super) fn post_due_report(&self) {
        let message = {
            let mut state = self.state.locked();
            if !std::mem::take(&mut state.report_due) {
                return;
            }
            let (latency_ms, concealment) = self.conditions(&state);
            let interval = state.meter.report(latency_ms, concealment);
            let call = state.meter.call(latency_ms, concealment);
            let sid = state.start.as_ref().map(|s| s.stream_sid.clone());
            messages::quality(sid.as_deref().unwrap_or(""), &interval, &call)
        };
        messages::post(self.obj().upcast_ref(), message);
    }

    /// The reported latency in ms, and whether losses are concealed: once
    /// negotiated, for the run as it started (as `latency` reports it);
    /// before, for the properties as they are.
    fn conditions(&self, state: &State) -> (f64, bool) {
        let settings = self.settings.locked();
        let run = match state.output {
            Some(_) => (state.tracks, state.track_wait_ms, state.gap_fill),
            None => (settings.track, settings.track_wait_ms, settings.gap_fill),
        };
        conditions(state.output.unwrap_or_default(), settings.latency_ms, run)
    }

    /// The call's figures so far; `jitter_ms` is the current estimate (the
    /// larger track's).
    pub(super) fn quality_now(&self) -> Figures {
        let state = self.state.locked();
        let (latency_ms, concealment) = self.conditions(&state);
        let mut figures = state.meter.call(latency_ms, concealment);
        figures.jitter_ms = state.meter.jitter_ms(0).max(state.meter.jitter_ms(1));
        figures
    }

    /// `stats`' quality fields: jitter (per track for both), late chunks,
    /// loss % and MOS of the call so far.
    pub(super) fn add_quality_fields(&self, s: &mut gst::Structure) {
        let figures = self.quality_now();
        let (both, jitter) = {
            let state = self.state.locked();
            (
                state.tracks == Tracks::Both,
                [state.meter.jitter_ms(0), state.meter.jitter_ms(1)],
            )
        };
        s.set("jitter", figures.jitter_ms);
        if both {
            s.set("inbound-jitter", jitter[0]);
            s.set("outbound-jitter", jitter[1]);
        }
        s.set("late-chunks", figures.late);
        s.set("loss-percent", figures.loss_percent);
        s.set("mos", figures.mos);
    }
}
