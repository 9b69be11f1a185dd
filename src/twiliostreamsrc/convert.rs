//! The call's audio turned into the output format ([`Output`]): the wire
//! bytes passed through when the output is the call's own format (a loss
//! concealed in them), else decoded (μ-law, A-law, L16), concealed where
//! lost (8 kHz calls), resampled to the output rate and written (S16LE/BE,
//! μ-law, A-law); two channels interleaved for `track=both`. Where the
//! samples go in time is `timeline`'s and `tracks`' business.

use crate::codec::plc::{self, Concealer};
use crate::codec::scratch::{self, Scratch};
use crate::codec::{Resampler, alaw, g711};

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
        let mut pcm = scratch::i16s();
        if !self.unheard.is_empty() {
            // Settled: it only remembers them.
            let from = self.unheard.len().saturating_sub(history);
            format.decode(&self.unheard[from..], &mut pcm);
            concealer.good(&mut pcm);
            self.unheard.clear();
            pcm.clear();
        }
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

    /// Conceals each channel's lost stretches, or leaves them silent.
    pub fn set_concealment(&mut self, on: bool) {
        self.channels.iter_mut().for_each(|c| c.set_concealment(on));
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
mod tests {
    use super::*;
    use crate::codec::{ByteOrder, Upsampler, WireFormat, l16};

    fn s16le(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    fn output(encoding: Encoding, rate: u32, wire: WireFormat) -> Output {
        Output {
            encoding,
            rate,
            wire,
        }
    }

    fn pcm16k() -> Output {
        output(Encoding::S16le, 16000, WireFormat::PCMU)
    }

    fn pcm8k() -> Output {
        output(Encoding::S16le, 8000, WireFormat::PCMU)
    }

    fn mulaw() -> Output {
        output(Encoding::Mulaw, 8000, WireFormat::PCMU)
    }

    /// Some speech-like samples that are not silence.
    fn samples(n: usize) -> Vec<i16> {
        (0..n).map(|i| (i * 97 % 2000) as i16 - 1000).collect()
    }

    /// Some μ-law that is not silence.
    fn ulaw() -> Vec<u8> {
        samples(160).into_iter().map(g711::encode).collect()
    }

    fn convert(converter: &mut Converter, output: Output, silence: usize, wire: &[u8]) -> Vec<u8> {
        let ticks = silence + output.wire.ticks(wire.len()) as usize;
        let mut out = vec![0xAA; ticks * output.bytes_per_input_sample()];
        converter.write(output, silence, wire, &mut out);
        out
    }

    #[test]
    fn mulaw_passes_through_after_its_silence() {
        let ulaw = ulaw();
        let out = convert(&mut Converter::default(), mulaw(), 3, &ulaw);
        assert_eq!(out[..3], [g711::SILENCE; 3]);
        assert_eq!(out[3..], ulaw[..]);
    }

    /// A voiced sound: 100 Hz and its next two harmonics, at 8 kHz.
    fn voiced(n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let w = 2.0 * std::f64::consts::PI * 100.0 * i as f64 / 8000.0;
                (6000.0 * w.sin() + 3000.0 * (2.0 * w).sin() + 1500.0 * (3.0 * w).sin()) as i16
            })
            .collect()
    }

    /// `samples` (8 kHz) in `wire`'s format and back: what survives it.
    fn through(wire: WireFormat, samples: &[i16]) -> Vec<i16> {
        let mut bytes = Vec::new();
        wire.encode(samples, &mut bytes);
        let mut decoded = Vec::new();
        wire.decode(&bytes, &mut decoded);
        decoded
    }

    /// The wire formats at 8 kHz, whose own bytes can be concealed.
    fn narrowband() -> [WireFormat; 4] {
        [
            WireFormat::PCMU,
            WireFormat::PCMA,
            WireFormat::l16(8000, ByteOrder::Little),
            WireFormat::l16(8000, ByteOrder::Big),
        ]
    }

    #[test]
    fn own_bytes_are_concealed_where_lost_and_kept_elsewhere() {
        // Chunks of 20 ms, some lost: the next one comes after 160 ticks of
        // gap. Lost early (little history), and late, twice (the history
        // kept over many chunks, then over one after the blend).
        let pcm = voiced(12 * 160);
        for losses in [&[1][..], &[6, 9]] {
            for wire in narrowband() {
                let mut bytes = Vec::new();
                wire.encode(&pcm, &mut bytes);
                let width = wire.bytes_per_tick();
                let chunks: Vec<&[u8]> = bytes.chunks(160 * width).collect();
                let (own, decoded) = (Output::own(wire), pcm8k_of(wire));
                let (mut pass, mut pcm8k) = (Converter::default(), Converter::default());
                pass.set_concealment(true);
                pcm8k.set_concealment(true);
                let (mut got, mut reference) = (Vec::new(), Vec::new());
                let mut kept = bytes.clone();
                for (i, chunk) in chunks.iter().enumerate() {
                    if losses.contains(&i) {
                        kept[i * 160 * width..(i + 1) * 160 * width].fill(wire.silence());
                        continue;
                    }
                    let silence = if losses.contains(&(i.wrapping_sub(1))) {
                        160
                    } else {
                        0
                    };
                    got.extend(convert(&mut pass, own, silence, chunk));
                    reference.extend(s16le(&convert(&mut pcm8k, decoded, silence, chunk)));
                }
                // What PCM output conceals, in the call's own bytes.
                let mut heard = Vec::new();
                wire.decode(&got, &mut heard);
                assert_eq!(heard, through(wire, &reference), "{wire} {losses:?}");
                // Only the losses and the blends after them (at most 10 ms)
                // changed.
                for (t, (g, k)) in got.chunks(width).zip(kept.chunks(width)).enumerate() {
                    let near = losses
                        .iter()
                        .any(|&l| (l * 160..(l + 1) * 160 + 80).contains(&t));
                    assert!(g == k || near, "{wire} {losses:?}: tick {t} changed");
                }
                for &l in losses {
                    let gap = l * 160..(l + 1) * 160;
                    let snr = snr_db(&pcm[gap.clone()], &heard[gap]);
                    assert!(
                        snr > 10.0,
                        "{wire}: concealment {snr:.1} dB from the signal"
                    );
                }
            }
        }
    }

    #[test]
    fn own_bytes_stay_silent_where_lost_without_concealment() {
        let pcm = voiced(320);
        for wire in narrowband() {
            let mut bytes = Vec::new();
            wire.encode(&pcm, &mut bytes);
            let width = wire.bytes_per_tick();
            let mut converter = Converter::default();
            converter.set_concealment(false);
            let first = convert(&mut converter, Output::own(wire), 0, &bytes[..160 * width]);
            let next = convert(
                &mut converter,
                Output::own(wire),
                160,
                &bytes[160 * width..],
            );
            assert_eq!(first, bytes[..160 * width], "{wire}");
            assert!(
                next[..160 * width].iter().all(|&b| b == wire.silence()),
                "{wire}"
            );
            assert_eq!(next[160 * width..], bytes[160 * width..], "{wire}");
        }
    }

    #[test]
    fn both_channels_of_own_bytes_conceal_the_ticks_marked_lost() {
        // Channel 0's second 20 ms stands in for a lost chunk (as the
        // aligner marks it: silence bytes); channel 1 lost nothing.
        let pcm = voiced(480);
        for wire in narrowband() {
            let mut bytes = Vec::new();
            wire.encode(&pcm, &mut bytes);
            let width = wire.bytes_per_tick();
            let mut holed = bytes.clone();
            holed[160 * width..320 * width].fill(wire.silence());
            let mut lost = vec![false; 480];
            lost[160..320].fill(true);
            let (own, decoded) = (Output::own(wire), pcm8k_of(wire));
            let (mut pass, mut pcm8k) = (StereoConverter::default(), StereoConverter::default());
            pass.set_concealment(true);
            pcm8k.set_concealment(true);
            let mut got = vec![0; 2 * bytes.len()];
            pass.write(own, 0, [&holed, &bytes], [&lost, &[]], &mut got);
            let mut reference = vec![0; 2 * 480 * 2];
            pcm8k.write(decoded, 0, [&holed, &bytes], [&lost, &[]], &mut reference);
            let reference = s16le(&reference);
            let frames: Vec<&[u8]> = got.chunks_exact(2 * width).collect();
            for c in 0..2 {
                let channel: Vec<u8> = frames
                    .iter()
                    .flat_map(|f| f[c * width..(c + 1) * width].to_vec())
                    .collect();
                let mut heard = Vec::new();
                wire.decode(&channel, &mut heard);
                let expected: Vec<i16> = reference.iter().skip(c).step_by(2).copied().collect();
                assert_eq!(heard, through(wire, &expected), "{wire}, channel {c}");
            }
            let right: Vec<u8> = frames.iter().flat_map(|f| f[width..].to_vec()).collect();
            assert_eq!(right, bytes, "{wire}: channel 1 as it came");
        }
    }

    /// The signal-to-noise ratio of `test` against `reference`, in dB.
    fn snr_db(reference: &[i16], test: &[i16]) -> f64 {
        let power = |x: &mut dyn Iterator<Item = f64>| x.map(|v| v * v).sum::<f64>();
        let signal = power(&mut reference.iter().map(|&r| f64::from(r)));
        let noise = power(
            &mut reference
                .iter()
                .zip(test)
                .map(|(&r, &t)| f64::from(r) - f64::from(t)),
        );
        10.0 * (signal / noise.max(1.0)).log10()
    }

    /// S16LE at 8 kHz decoded from a call in `wire`.
    fn pcm8k_of(wire: WireFormat) -> Output {
        output(Encoding::S16le, 8000, wire)
    }

    #[test]
    fn pcm8k_is_the_decoded_mulaw() {
        let ulaw = ulaw();
        let out = s16le(&convert(&mut Converter::default(), pcm8k(), 2, &ulaw));
        assert_eq!(out[..2], [0, 0]);
        let decoded: Vec<i16> = ulaw.iter().map(|&c| g711::decode(c)).collect();
        assert_eq!(out[2..], decoded[..]);
    }

    #[test]
    fn pcm16k_is_the_upsampled_decoded_mulaw_across_chunks() {
        let ulaw = ulaw();
        let mut converter = Converter::default();
        let mut upsampler = Upsampler::new();
        for silence in [0, 40, 0] {
            let out = s16le(&convert(&mut converter, pcm16k(), silence, &ulaw));
            let mut decoded = vec![0; silence];
            decoded.extend(ulaw.iter().map(|&c| g711::decode(c)));
            let mut expected = vec![0; 2 * decoded.len()];
            upsampler.process(&decoded, &mut expected);
            assert_eq!(out, expected);
        }
        // Reset forgets the history, like a new upsampler.
        converter.reset();
        let mut fresh = Upsampler::new();
        let mut expected = vec![0; 2 * ulaw.len()];
        let decoded: Vec<i16> = ulaw.iter().map(|&c| g711::decode(c)).collect();
        fresh.process(&decoded, &mut expected);
        let out = s16le(&convert(&mut converter, pcm16k(), 0, &ulaw));
        assert_eq!(out, expected);
    }

    #[test]
    fn alaw_calls_decode_bit_exact_and_pass_through_as_alaw() {
        let alaw: Vec<u8> = samples(160).into_iter().map(alaw::encode).collect();
        let wire = WireFormat::PCMA;
        let out = s16le(&convert(
            &mut Converter::default(),
            output(Encoding::S16le, 8000, wire),
            2,
            &alaw,
        ));
        let decoded: Vec<i16> = alaw.iter().map(|&c| alaw::decode(c)).collect();
        assert_eq!(out[..2], [0, 0]);
        assert_eq!(out[2..], decoded[..]);
        let raw = convert(
            &mut Converter::default(),
            output(Encoding::Alaw, 8000, wire),
            2,
            &alaw,
        );
        assert_eq!(raw[..2], [alaw::SILENCE; 2]);
        assert_eq!(raw[2..], alaw[..]);
        // μ-law wanted from an A-law call: transcoded through PCM.
        let ulaw = convert(
            &mut Converter::default(),
            output(Encoding::Mulaw, 8000, wire),
            0,
            &alaw,
        );
        let expected: Vec<u8> = decoded.iter().map(|&s| g711::encode(s)).collect();
        assert_eq!(ulaw, expected);
    }

    #[test]
    fn wideband_l16_keeps_its_samples_at_its_own_rate() {
        let pcm = samples(320);
        for order in [ByteOrder::Big, ByteOrder::Little] {
            let wire = WireFormat::l16(16000, order);
            let mut bytes = Vec::new();
            l16::encode(order, &pcm, &mut bytes);
            let out = s16le(&convert(
                &mut Converter::default(),
                output(Encoding::S16le, 16000, wire),
                1,
                &bytes,
            ));
            assert_eq!(out[..2], [0, 0], "{order:?}");
            assert_eq!(out[2..], pcm[..], "{order:?}: bit for bit");
        }
    }

    #[test]
    fn other_rates_go_through_the_resampler() {
        let pcm = samples(480);
        let wire = WireFormat::l16(24000, ByteOrder::Big);
        let mut bytes = Vec::new();
        l16::encode(ByteOrder::Big, &pcm, &mut bytes);
        for rate in [16000, 8000] {
            let mut converter = Converter::default();
            let mut resampler = Resampler::new(24000, rate).unwrap();
            for _ in 0..3 {
                let out = s16le(&convert(
                    &mut converter,
                    output(Encoding::S16le, rate, wire),
                    0,
                    &bytes,
                ));
                let mut expected = Vec::new();
                resampler.process(&pcm, &mut expected);
                assert_eq!(out, expected, "24000 → {rate}");
            }
        }
        // And big-endian output of the call's own bytes.
        let raw = convert(
            &mut Converter::default(),
            output(Encoding::S16be, 24000, wire),
            0,
            &bytes,
        );
        assert_eq!(raw, bytes);
    }

    #[test]
    fn stereo_interleaves_two_channels_each_converted_on_its_own() {
        let ulaw = ulaw();
        let other: Vec<u8> = ulaw.iter().rev().copied().collect();
        for output in [pcm16k(), pcm8k(), mulaw()] {
            let mut stereo = StereoConverter::default();
            let (mut left, mut right) = (Converter::default(), Converter::default());
            for silence in [0, 40, 0] {
                let samples = silence + ulaw.len();
                let mut out = vec![0xAA; 2 * samples * output.bytes_per_input_sample()];
                stereo.write(output, silence, [&ulaw, &other], [&[], &[]], &mut out);
                let l = convert(&mut left, output, silence, &ulaw);
                let r = convert(&mut right, output, silence, &other);
                let width = output.sample_bytes();
                let frames: Vec<_> = out.chunks_exact(2 * width).collect();
                let expected: Vec<_> = l
                    .chunks_exact(width)
                    .zip(r.chunks_exact(width))
                    .map(|(l, r)| [l, r].concat())
                    .collect();
                assert_eq!(frames, expected, "{output:?}");
            }
        }
    }
}
