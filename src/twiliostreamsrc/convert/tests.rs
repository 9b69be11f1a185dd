//! Converter and StereoConverter against decoders, resamplers and
//! concealers of their own: passthrough, decoding, concealment in PCM and
//! in the call's own bytes, two channels.

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

#[test]
fn after_skipped_silence_a_loss_is_silent_and_late_audio_untouched() {
    // 20 ms of audio, then 100 ms that went out as a GAP (silence).
    let pcm = voiced(480);
    for wire in narrowband() {
        let mut bytes = Vec::new();
        wire.encode(&pcm, &mut bytes);
        let width = wire.bytes_per_tick();
        for own in [Output::own(wire), pcm8k_of(wire)] {
            let fresh = || {
                let mut c = Converter::default();
                c.set_concealment(true);
                convert(&mut c, own, 0, &bytes[..160 * width]);
                c.skipped(own, 800);
                c
            };
            // The loss the next chunk shows is concealed from that silence.
            let out = convert(&mut fresh(), own, 160, &bytes[160 * width..320 * width]);
            let mut heard = Vec::new();
            match own.passthrough() {
                true => wire.decode(&out, &mut heard),
                false => heard = s16le(&out),
            }
            assert!(heard[..160].iter().all(|&s| s == heard[0]), "{own:?}");
            assert!(heard[0].abs() <= 8, "{own:?}: {}", heard[0]);
            // Audio that only came late follows the silence untouched.
            let late = convert(&mut fresh(), own, 0, &bytes[160 * width..320 * width]);
            let plain = convert(
                &mut Converter::default(),
                own,
                0,
                &bytes[160 * width..320 * width],
            );
            assert_eq!(late, plain, "{own:?}");
        }
    }
}
