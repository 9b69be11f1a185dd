//! What the src pad carries (16 or 8 kHz S16LE, or the call's own μ-law; one
//! channel, or two for `track=both`) and the conversion of Twilio's μ-law
//! into it: decoding, upsampling, S16LE, interleaving. Where the samples go
//! in time is `timeline`'s and `tracks`' business.

use gst::ClockTime;

use crate::codec::plc::Concealer;
use crate::codec::{Upsampler, g711};

/// Twilio's customary chunk: the latency a live source of it has at least.
const CHUNK_DURATION: ClockTime = ClockTime::from_mseconds(20);
/// Where the two channels of `track=both` are: front left the caller
/// (inbound), front right what the caller hears (outbound).
pub const STEREO_MASK: u64 = 0x3;

/// The output format, from the negotiated caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Pcm16k,
    Pcm8k,
    Mulaw,
}

impl Output {
    pub fn from_caps(caps: &gst::CapsRef) -> Option<Output> {
        let s = caps.structure(0)?;
        match (s.name().as_str(), s.get::<i32>("rate").ok()?) {
            ("audio/x-raw", 16000) => Some(Output::Pcm16k),
            ("audio/x-raw", 8000) => Some(Output::Pcm8k),
            ("audio/x-mulaw", 8000) => Some(Output::Mulaw),
            _ => None,
        }
    }

    /// The caps of every format with `channels` (1, or 2 for both tracks),
    /// in order of preference.
    pub fn caps(channels: u32) -> gst::Caps {
        let pcm = |rate: i32| {
            let builder = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .rate(rate)
                .channels(channels as i32);
            if channels == 2 {
                builder.channel_mask(STEREO_MASK).build()
            } else {
                builder.build()
            }
        };
        let mut caps = pcm(16000);
        {
            let caps = caps.get_mut().unwrap();
            caps.append(pcm(8000));
            let mut mulaw = crate::mulaw_caps();
            mulaw.get_mut().unwrap().set("channels", channels as i32);
            caps.append(mulaw);
        }
        caps
    }

    /// The caps of every format, mono first (the pad template).
    pub fn template_caps() -> gst::Caps {
        let mut caps = Output::caps(1);
        caps.get_mut().unwrap().append(Output::caps(2));
        caps
    }

    /// Output samples per 8 kHz input sample.
    pub fn factor(self) -> u64 {
        match self {
            Output::Pcm16k => 2,
            Output::Pcm8k | Output::Mulaw => 1,
        }
    }

    /// Bytes per 8 kHz input sample, of one channel.
    pub fn bytes_per_input_sample(self) -> usize {
        match self {
            Output::Pcm16k => 4,
            Output::Pcm8k => 2,
            Output::Mulaw => 1,
        }
    }

    /// Signal delay added by the element.
    pub fn delay(self) -> ClockTime {
        match self {
            Output::Pcm16k => ClockTime::from_nseconds(Upsampler::delay_ns()),
            Output::Pcm8k | Output::Mulaw => ClockTime::ZERO,
        }
    }

    pub fn latency(self) -> ClockTime {
        CHUNK_DURATION + self.delay()
    }
}

/// Turns μ-law into the output format, keeping the upsampler's history
/// between chunks and reusing its scratch buffers. With concealment on
/// (`gap-fill=plc`), its [`Concealer`] sees every sample at 8 kHz before the
/// upsampler: received audio through `good` (untouched unless it follows a
/// loss), lost stretches filled by `conceal`. μ-law output is the call's own
/// bytes, passed through: its gaps stay silence.
#[derive(Default)]
pub struct Converter {
    upsampler: Upsampler,
    concealer: Option<Box<Concealer>>,
    decoded: Vec<i16>,
    upsampled: Vec<i16>,
}

impl Converter {
    /// Forgets the upsampler's history and the concealer's.
    pub fn reset(&mut self) {
        self.upsampler.reset();
        if let Some(concealer) = &mut self.concealer {
            concealer.reset();
        }
    }

    /// Conceals lost stretches (`gap-fill=plc`) or leaves them silent.
    pub fn set_concealment(&mut self, on: bool) {
        if on != self.concealer.is_some() {
            self.concealer = on.then(|| Box::new(Concealer::new()));
        }
    }

    /// Writes `silence` 8 kHz samples of silence followed by `ulaw` into
    /// `out` as `output`; `out` holds exactly that many samples' bytes. The
    /// silence is a loss: concealed when concealment is on.
    pub fn write(&mut self, output: Output, silence: usize, ulaw: &[u8], out: &mut [u8]) {
        if output == Output::Mulaw {
            out[..silence].fill(g711::SILENCE);
            out[silence..].copy_from_slice(ulaw);
            return;
        }
        write_s16le(self.pcm(output, silence, ulaw, None), out);
    }

    /// `silence` samples and `ulaw`, decoded (and upsampled for 16 kHz
    /// output), in this converter's scratch buffer. Without `lost`, the
    /// silence is a loss; with it, the silence is plain (the end's tail)
    /// and `lost` marks which samples of `ulaw` stand in for lost ones.
    fn pcm(
        &mut self,
        output: Output,
        silence: usize,
        ulaw: &[u8],
        lost: Option<&[bool]>,
    ) -> &[i16] {
        let decoded = &mut self.decoded;
        decoded.clear();
        decoded.resize(silence + ulaw.len(), 0);
        g711::decode_slice(ulaw, &mut decoded[silence..]);
        if let Some(concealer) = &mut self.concealer {
            let (gap, audio) = decoded.split_at_mut(silence);
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
        if output == Output::Pcm8k {
            return decoded;
        }
        self.upsampled.resize(2 * decoded.len(), 0);
        self.upsampler.process(decoded, &mut self.upsampled);
        &self.upsampled
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
/// (so one upsampler and one concealer each), written as interleaved frames.
#[derive(Default)]
pub struct StereoConverter {
    channels: [Converter; 2],
}

impl StereoConverter {
    /// Forgets both upsamplers' and concealers' history.
    pub fn reset(&mut self) {
        self.channels.iter_mut().for_each(Converter::reset);
    }

    /// Conceals each channel's lost stretches, or leaves them silent.
    pub fn set_concealment(&mut self, on: bool) {
        self.channels.iter_mut().for_each(|c| c.set_concealment(on));
    }

    /// Writes `silence` 8 kHz samples of silence on both channels, then
    /// `ulaw[0]` on channel 0 beside `ulaw[1]` (as long) on channel 1, into
    /// `out` as `output`, interleaved; `out` holds exactly that many frames.
    /// `lost[c]` marks the samples of `ulaw[c]` that stand in for lost ones
    /// (concealed when concealment is on); the leading silence is plain.
    pub fn write(
        &mut self,
        output: Output,
        silence: usize,
        ulaw: [&[u8]; 2],
        lost: [&[bool]; 2],
        out: &mut [u8],
    ) {
        assert_eq!(ulaw[0].len(), ulaw[1].len(), "channels of unequal length");
        if output == Output::Mulaw {
            let (head, tail) = out.split_at_mut(2 * silence);
            head.fill(g711::SILENCE);
            for ((o, &a), &b) in tail.chunks_exact_mut(2).zip(ulaw[0]).zip(ulaw[1]) {
                o.copy_from_slice(&[a, b]);
            }
            return;
        }
        let [left, right] = &mut self.channels;
        let left = left.pcm(output, silence, ulaw[0], Some(lost[0]));
        let right = right.pcm(output, silence, ulaw[1], Some(lost[1]));
        for ((o, l), r) in out.chunks_exact_mut(4).zip(left).zip(right) {
            o[..2].copy_from_slice(&l.to_le_bytes());
            o[2..].copy_from_slice(&r.to_le_bytes());
        }
    }
}

/// Writes `samples` as S16LE into `out`, which is exactly twice as long.
fn write_s16le(samples: &[i16], out: &mut [u8]) {
    for (o, s) in out.chunks_exact_mut(2).zip(samples) {
        o.copy_from_slice(&s.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s16le(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    /// Some μ-law that is not silence.
    fn ulaw() -> Vec<u8> {
        (0..160)
            .map(|i| g711::encode((i * 97 % 2000) as i16 - 1000))
            .collect()
    }

    fn convert(converter: &mut Converter, output: Output, silence: usize, ulaw: &[u8]) -> Vec<u8> {
        let mut out = vec![0xAA; (silence + ulaw.len()) * output.bytes_per_input_sample()];
        converter.write(output, silence, ulaw, &mut out);
        out
    }

    #[test]
    fn mulaw_passes_through_after_its_silence() {
        let ulaw = ulaw();
        let out = convert(&mut Converter::default(), Output::Mulaw, 3, &ulaw);
        assert_eq!(out[..3], [g711::SILENCE; 3]);
        assert_eq!(out[3..], ulaw[..]);
    }

    #[test]
    fn pcm8k_is_the_decoded_mulaw() {
        let ulaw = ulaw();
        let out = s16le(&convert(&mut Converter::default(), Output::Pcm8k, 2, &ulaw));
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
            let out = s16le(&convert(&mut converter, Output::Pcm16k, silence, &ulaw));
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
        let out = s16le(&convert(&mut converter, Output::Pcm16k, 0, &ulaw));
        assert_eq!(out, expected);
    }

    #[test]
    fn stereo_interleaves_two_channels_each_converted_on_its_own() {
        let ulaw = ulaw();
        let other: Vec<u8> = ulaw.iter().rev().copied().collect();
        for output in [Output::Pcm16k, Output::Pcm8k, Output::Mulaw] {
            let mut stereo = StereoConverter::default();
            let (mut left, mut right) = (Converter::default(), Converter::default());
            for silence in [0, 40, 0] {
                let samples = silence + ulaw.len();
                let mut out = vec![0xAA; 2 * samples * output.bytes_per_input_sample()];
                stereo.write(output, silence, [&ulaw, &other], [&[], &[]], &mut out);
                let l = convert(&mut left, output, silence, &ulaw);
                let r = convert(&mut right, output, silence, &other);
                let width = output.bytes_per_input_sample() / output.factor() as usize;
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

    #[test]
    fn formats_have_their_rates_delays_and_sizes() {
        assert_eq!(Output::Pcm16k.delay(), ClockTime::from_nseconds(2_562_500));
        assert_eq!(Output::Pcm8k.delay(), ClockTime::ZERO);
        assert_eq!(Output::Mulaw.latency(), ClockTime::from_mseconds(20));
        assert_eq!(
            [Output::Pcm16k, Output::Pcm8k, Output::Mulaw]
                .map(|o| (o.factor(), o.bytes_per_input_sample())),
            [(2, 4), (1, 2), (1, 1)]
        );
    }

    #[test]
    fn caps_name_the_format_and_the_channels() {
        gst::init().unwrap();
        for channels in [1, 2] {
            let caps = Output::caps(channels);
            let formats: Vec<_> = caps
                .iter()
                .map(|s| {
                    assert_eq!(s.get::<i32>("channels"), Ok(channels as i32));
                    Output::from_caps(&gst::Caps::from(s.to_owned()))
                })
                .collect();
            assert_eq!(
                formats,
                [
                    Some(Output::Pcm16k),
                    Some(Output::Pcm8k),
                    Some(Output::Mulaw)
                ]
            );
        }
        let stereo = Output::caps(2);
        let mask = stereo
            .structure(0)
            .unwrap()
            .get::<gst::Bitmask>("channel-mask");
        assert_eq!(mask, Ok(gst::Bitmask::new(STEREO_MASK)));
        // The template: mono first (the default), then two channels.
        let template: Vec<_> = Output::template_caps()
            .iter()
            .map(|s| s.to_owned())
            .collect();
        let expected: Vec<_> = (Output::caps(1).iter())
            .chain(Output::caps(2).iter())
            .map(|s| s.to_owned())
            .collect();
        assert_eq!(template, expected);
        let caps = gst::Caps::builder("audio/x-raw")
            .field("rate", 48000)
            .build();
        assert_eq!(Output::from_caps(&caps), None);
    }
}
