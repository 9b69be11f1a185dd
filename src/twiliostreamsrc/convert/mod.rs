//! The call's audio turned into the output format ([`Output`]): the wire
//! bytes passed through when the output is the call's own format (a loss
//! concealed in them), else decoded (μ-law, A-law, L16), concealed where
//! lost (8 kHz calls), resampled to the output rate and written (S16LE/BE,
//! μ-law, A-law); two channels interleaved for `track=both`. Where the
//! samples go in time is `timeline`'s and `tracks`' business.

use crate::codec::plc::{self, Concealer};
use crate::codec::scratch::{self, Scratch};
use crate::codec::{Resampler, WireFormat, alaw, g711};

use super::output::{Encoding, Output};

/// Turns the call's bytes into the output format, keeping the resampler's
/// history between chunks (its work buffers are the thread's, see
/// `codec::scratch`). With
/// concealment on (`gap-fill=plc`) and an 8 kHz call, its [`Concealer`]
/// sees every sample at 8 kHz before the resampler: received audio through
/// `good` (untouched unless it follows a loss), lost stretches filled by
/// `conceal`. Output in the call's own format is its bytes, passed through;
/// with concealment, what was lost and the blend after it are encoded
/// into them (the rest stays byte for byte).
#[derive(Default)]
pub struct Converter {
    resampler: Option<Resampler>,
    concealer: Option<Box<Concealer>>,
    /// The call's own bytes passed through since the concealer last heard
    /// any (the latest of them): it hears them only when a loss needs its
    /// history, so audio that follows no loss costs a copy, not a decode.
    unheard: Vec<u8>,
    /// The resampler was fed since it last started afresh: the end of
    /// that audio is still inside it (see [`restart_resampler`](Self::restart_resampler)).
    resampling: bool,
    /// Ticks of silence pushed through the resampler since its last audio:
    /// its tail goes out a fill at a time when fills are shorter than it.
    tail_fed: usize,
}

impl Converter {
    /// Forgets the resampler's history and the concealer's.
    pub fn reset(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        if let Some(concealer) = &mut self.concealer {
            concealer.reset();
        }
        self.unheard.clear();
        self.resampling = false;
        self.tail_fed = 0;
    }

    /// Whether audio is inside the resampler: what comes out of it lags
    /// what went in by its delay, so the last of it only comes out behind
    /// more input (silence, pushed before a GAP or at the end).
    pub fn resampling(&self) -> bool {
        self.resampling
    }

    /// Ticks of the tail already pushed out with silence (0 after audio).
    pub fn tail_fed(&self) -> usize {
        self.tail_fed
    }

    /// Records that `ticks` of the tail have gone out with silence (the
    /// silence's own conversion counted as audio and reset it).
    pub fn set_tail_fed(&mut self, ticks: usize) {
        self.tail_fed = ticks;
    }

    /// The resampler starts afresh, as after a silence longer than its
    /// filter: after its tail was pushed out, before a GAP (whose silence
    /// it does not see), so that the audio after the GAP follows silence,
    /// not the audio before it.
    pub fn restart_resampler(&mut self) {
        if let Some(resampler) = &mut self.resampler {
            resampler.reset();
        }
        self.resampling = false;
        self.tail_fed = 0;
    }

    /// Conceals lost stretches (`gap-fill=plc`) or leaves them silent.
    pub fn set_concealment(&mut self, on: bool) {
        if on != self.concealer.is_some() {
            self.concealer = on.then(|| Box::new(Concealer::new()));
            self.unheard.clear();
        }
    }

    /// Where the concealer's state for a next chunk of `next` samples
    /// lies (address, bytes; two ranges), if a concealer runs on `output`:
    /// for prefetching (see `call::hot`).
    pub fn hot_ranges(&self, output: Output, next: usize) -> [(usize, usize); 2] {
        match &self.concealer {
            // Passed through after no loss, the next chunk goes to `unheard`.
            Some(concealer) if output.passthrough() && concealer.settled() => [(0, 0); 2],
            Some(concealer) if output.conceals() => concealer.hot_ranges(next),
            _ => [(0, 0); 2],
        }
    }

    /// `ticks` went out as silence without being written (a GAP buffer or event, at
    /// the fill deadline): the concealer hears that silence. A loss found
    /// after it then conceals from silence, not from the audio before the
    /// GAP (a burst of it that late, after the silence), and audio that
    /// only came late follows it untouched.
    pub fn skipped(&mut self, output: Output, ticks: usize) {
        let Some(concealer) = self.concealer.as_mut().filter(|_| output.conceals()) else {
            return;
        };
        hear(concealer, &mut self.unheard, output.wire);
        let mut pcm = scratch::i16s();
        // Enough to end any blend and fill the history.
        let samples = ticks * output.wire.samples_per_tick();
        pcm.resize(samples.min(2 * plc::HISTORY), 0);
        concealer.good(&mut pcm);
    }

    /// Writes `silence` ticks (125 µs) of silence followed by `wire` (the
    /// call's bytes, whole ticks) into `out` as `output`; `out` holds
    /// exactly that many ticks' bytes. The silence is a loss: concealed
    /// when concealment is on.
    pub fn write(&mut self, output: Output, silence: usize, wire: &[u8], out: &mut [u8]) {
        if output.passthrough() {
            self.pass(output, silence, wire, None, out);
            return;
        }
        let samples = out.len() / output.sample_bytes();
        let pcm = self.pcm(output, silence, wire, None, samples);
        write_samples(output.encoding, &pcm, out);
    }

    /// `silence` ticks and `wire`, decoded (and resampled to the output
    /// rate), `samples` long, in a scratch buffer. Without `lost`, the
    /// silence is a loss; with it, the silence is plain (the end's tail)
    /// and `lost` marks which ticks of `wire` stand in for lost ones.
    fn pcm(
        &mut self,
        output: Output,
        silence: usize,
        wire: &[u8],
        lost: Option<&[bool]>,
        samples: usize,
    ) -> Scratch<i16> {
        let format = output.wire;
        let lead = silence * format.samples_per_tick();
        let mut decoded = scratch::i16s();
        decoded.resize(lead, 0);
        format.decode(wire, &mut decoded);
        if let Some(concealer) = self.concealer.as_mut().filter(|_| output.conceals()) {
            feed(concealer, &mut decoded, lead, lost);
        }
        let rates = (format.rate, output.rate);
        if self.resampler.as_ref().is_none_or(|r| r.rates() != rates) {
            self.resampler = Resampler::new(rates.0, rates.1);
        }
        let resampler = self.resampler.as_mut().expect("the rates are supported");
        let mut resampled = scratch::i16s();
        resampler.process(&decoded, &mut resampled);
        self.resampling = true;
        self.tail_fed = 0;
        // Whole ticks in give whole ticks out; anything else is a bug, but
        // the buffer keeps its size.
        debug_assert_eq!(resampled.len(), samples, "{rates:?}");
        resampled.resize(samples, 0);
        resampled
    }

    /// Writes the call's own bytes (`output` is its format) after `silence`
    /// ticks of silence into `out`, as [`write`](Self::write) or
    /// [`StereoConverter::write`] (`lost`) say. With concealment on, the
    /// concealer hears every sample (those after no loss once a loss needs
    /// them); what it changes (the loss, the blend after it) is encoded into
    /// the bytes, the rest stays as it came.
    fn pass(
        &mut self,
        output: Output,
        silence: usize,
        wire: &[u8],
        lost: Option<&[bool]>,
        out: &mut [u8],
    ) {
        let format = output.wire;
        let width = format.bytes_per_tick();
        let (gap, audio) = out.split_at_mut(silence * width);
        gap.fill(format.silence());
        audio.copy_from_slice(&wire[..audio.len()]);
        let Some(concealer) = self.concealer.as_mut().filter(|_| output.conceals()) else {
            return;
        };
        // 8 kHz: a tick is a sample.
        let history = plc::HISTORY * width;
        let loss = match lost {
            None => silence > 0,
            Some(lost) => lost.contains(&true),
        };
        if !loss && concealer.settled() {
            // Nothing to change: kept for when a loss needs it (plain
            // silence ahead of it too: it is what was played).
            let unheard = &mut self.unheard;
            unheard.extend_from_slice(gap);
            unheard.extend_from_slice(audio);
            if unheard.len() > 2 * history {
                unheard.drain(..unheard.len() - history);
            }
            return;
        }
        hear(concealer, &mut self.unheard, format);
        let mut pcm = scratch::i16s();
        pcm.resize(silence, 0);
        format.decode(audio, &mut pcm);
        let mut before = scratch::i16s();
        before.extend_from_slice(&pcm);
        feed(concealer, &mut pcm, silence, lost);
        for ((now, was), bytes) in pcm
            .iter()
            .zip(before.iter())
            .zip(out.chunks_exact_mut(width))
        {
            if now != was {
                format.encode_sample(*now, bytes);
            }
        }
    }
}

/// Lets `concealer` hear the call's bytes passed through that it has not
/// (`unheard`, after no loss: settled, it only remembers them).
fn hear(concealer: &mut Concealer, unheard: &mut Vec<u8>, format: WireFormat) {
    if unheard.is_empty() {
        return;
    }
    let from = unheard
        .len()
        .saturating_sub(plc::HISTORY * format.bytes_per_tick());
    let mut pcm = scratch::i16s();
    format.decode(&unheard[from..], &mut pcm);
    concealer.good(&mut pcm);
    unheard.clear();
}

/// Feeds `pcm` to `concealer`: its first `lead` samples are a loss
/// (concealed) without `lost`, else plain silence (the end's tail) with
/// `lost` marking which of the rest stand in for lost samples.
fn feed(concealer: &mut Concealer, pcm: &mut [i16], lead: usize, lost: Option<&[bool]>) {
    let (gap, audio) = pcm.split_at_mut(lead);
    match lost {
        None => {
            if !gap.is_empty() {
                concealer.conceal(gap);
            }
            if !audio.is_empty() {
                concealer.good(audio);
            }
        }
        Some(lost) => {
            if !gap.is_empty() {
                concealer.good(gap);
            }
            conceal_runs(concealer, audio, lost);
        }
    }
}

/// Feeds `audio` to `concealer` run by run: the samples `lost` marks are
/// concealed, the others are good.
fn conceal_runs(concealer: &mut Concealer, audio: &mut [i16], lost: &[bool]) {
    let mut start = 0;
    while start < audio.len() {
        let this = lost.get(start).copied().unwrap_or(false);
        let len = match lost.get(start..) {
            Some(rest) if !rest.is_empty() => rest.iter().take_while(|&&l| l == this).count(),
            _ => audio.len() - start,
        }
        .min(audio.len() - start);
        let run = &mut audio[start..start + len];
        if this {
            concealer.conceal(run);
        } else {
            concealer.good(run);
        }
        start += len;
    }
}

/// Two channels in one output (`track=both`): a [`Converter`] per channel
/// (so one resampler and one concealer each), written as interleaved frames.
#[derive(Default)]
pub struct StereoConverter {
    channels: [Converter; 2],
    /// One channel's bytes (scratch).
    channel: [Vec<u8>; 2],
}

impl StereoConverter {
    /// Forgets both resamplers' and concealers' history.
    pub fn reset(&mut self) {
        self.channels.iter_mut().for_each(Converter::reset);
    }

    /// Whether audio is inside either channel's resampler (see
    /// [`Converter::resampling`]).
    pub fn resampling(&self) -> bool {
        self.channels.iter().any(Converter::resampling)
    }

    /// See [`Converter::tail_fed`] (the channels are converted together).
    pub fn tail_fed(&self) -> usize {
        self.channels
            .iter()
            .map(Converter::tail_fed)
            .min()
            .unwrap_or(0)
    }

    /// See [`Converter::set_tail_fed`].
    pub fn set_tail_fed(&mut self, ticks: usize) {
        self.channels.iter_mut().for_each(|c| c.set_tail_fed(ticks));
    }

    /// Both channels' resamplers start afresh (see
    /// [`Converter::restart_resampler`]).
    pub fn restart_resampler(&mut self) {
        self.channels
            .iter_mut()
            .for_each(Converter::restart_resampler);
    }

    /// Conceals each channel's lost stretches, or leaves them silent.
    pub fn set_concealment(&mut self, on: bool) {
        self.channels.iter_mut().for_each(|c| c.set_concealment(on));
    }

    /// `ticks` of both channels went out as silence without being written
    /// (see [`Converter::skipped`]).
    pub fn skipped(&mut self, output: Output, ticks: usize) {
        self.channels
            .iter_mut()
            .for_each(|c| c.skipped(output, ticks));
    }

    /// Writes `silence` ticks of silence on both channels, then `wire[0]`
    /// on channel 0 beside `wire[1]` (as long) on channel 1, into `out` as
    /// `output`, interleaved; `out` holds exactly that many frames.
    /// `lost[c]` marks the ticks of `wire[c]` that stand in for lost ones
    /// (concealed when concealment is on); the leading silence is plain.
    pub fn write(
        &mut self,
        output: Output,
        silence: usize,
        wire: [&[u8]; 2],
        lost: [&[bool]; 2],
        out: &mut [u8],
    ) {
        assert_eq!(wire[0].len(), wire[1].len(), "channels of unequal length");
        let width = output.sample_bytes();
        let half = out.len() / 2;
        for c in 0..2 {
            let bytes = &mut self.channel[c];
            bytes.clear();
            bytes.resize(half, 0);
            if output.passthrough() {
                self.channels[c].pass(output, silence, wire[c], Some(lost[c]), bytes);
            } else {
                let pcm =
                    self.channels[c].pcm(output, silence, wire[c], Some(lost[c]), half / width);
                write_samples(output.encoding, &pcm, bytes);
            }
        }
        let [left, right] = &self.channel;
        for ((o, l), r) in out
            .chunks_exact_mut(2 * width)
            .zip(left.chunks_exact(width))
            .zip(right.chunks_exact(width))
        {
            o[..width].copy_from_slice(l);
            o[width..].copy_from_slice(r);
        }
    }
}

/// Writes `samples` in `encoding` into `out`, exactly as long.
fn write_samples(encoding: Encoding, samples: &[i16], out: &mut [u8]) {
    match encoding {
        Encoding::S16le => {
            for (o, s) in out.chunks_exact_mut(2).zip(samples) {
                o.copy_from_slice(&s.to_le_bytes());
            }
        }
        Encoding::S16be => {
            for (o, s) in out.chunks_exact_mut(2).zip(samples) {
                o.copy_from_slice(&s.to_be_bytes());
            }
        }
        Encoding::Mulaw => {
            for (o, &s) in out.iter_mut().zip(samples) {
                *o = g711::encode(s);
            }
        }
        Encoding::Alaw => {
            for (o, &s) in out.iter_mut().zip(samples) {
                *o = alaw::encode(s);
            }
        }
        // Not made from samples: only the call's own, passed through
        // (`Output::fits`).
        Encoding::G722 | Encoding::Opus => out.fill(0),
    }
}

#[cfg(test)]
mod tests;
