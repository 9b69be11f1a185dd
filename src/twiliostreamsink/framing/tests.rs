//! The framer's tests, with plain values.

use super::*;
use crate::codec::Downsampler;
use std::convert::Infallible;

/// A deterministic, non-trivial signal.
fn signal(len: usize) -> Vec<i16> {
    (0..len)
        .map(|n| ((n as i64 * 7919 % 20011) - 10005) as i16 * 3)
        .collect()
}

fn s16le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn encode(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().map(|&s| g711::encode(s)).collect()
}

/// What the downsampler alone makes of `pcm`, as μ-law.
fn reference(rate: u32, pcm: &[i16]) -> Vec<u8> {
    let mut down = Downsampler::new(rate).unwrap();
    let mut out = Vec::new();
    down.process(pcm, &mut out);
    encode(&out)
}

pub(super) fn framer(input: Input, frame_bytes: usize) -> Framer {
    let mut f = Framer::new(frame_bytes);
    f.set_input(input).unwrap();
    f
}

pub(super) fn frames(f: &mut Framer, take: Take) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    f.send_frames(take, |_, frame, _| {
        out.push(frame.to_vec());
        Ok::<_, Infallible>(())
    })
    .unwrap();
    out
}

/// Pushes `bytes` in pieces of uneven sizes (splitting samples), collecting
/// whole frames.
fn push_in_pieces(f: &mut Framer, bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for size in [2usize, 641, 5, 322, 1001].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, tail) = rest.split_at((*size).min(rest.len()));
        f.push(piece).unwrap();
        out.extend(frames(f, Take::WholeFrames));
        rest = tail;
    }
    out
}

#[test]
fn pcm_is_cut_into_frames_of_its_downsampled_mulaw() {
    for rate in [8000u32, 16000, 48000] {
        let ratio = rate as usize / 8000;
        // 3 frames of 160 and 100 bytes more, at 8 kHz.
        let pcm = signal(ratio * (3 * 160 + 100));
        let mut f = framer(Input::Pcm(rate), 160);
        let got = push_in_pieces(&mut f, &s16le(&pcm));
        let want = reference(rate, &pcm);
        assert_eq!(want.len(), 580, "{rate} Hz");
        assert_eq!(got.len(), 3, "{rate} Hz");
        for (i, frame) in got.iter().enumerate() {
            assert_eq!(
                frame[..],
                want[160 * i..160 * (i + 1)],
                "{rate} Hz frame {i}"
            );
        }
        assert_eq!(f.pending(), &want[480..], "{rate} Hz");
    }
}

#[test]
fn mulaw_is_cut_into_frames_as_it_is() {
    let ulaw: Vec<u8> = (0..500u32).map(|i| (i * 31 % 256) as u8).collect();
    let mut f = framer(Input::Mulaw, 160);
    let got = push_in_pieces(&mut f, &ulaw);
    assert_eq!(got, [&ulaw[..160], &ulaw[160..320], &ulaw[320..480]]);
    assert_eq!(f.pending(), &ulaw[480..]);
}

#[test]
fn other_chunk_durations_set_the_frame_size() {
    // 8 bytes per millisecond: 1 ms, 30 ms, 100 ms.
    for frame_bytes in [8usize, 240, 800] {
        let pcm = signal(2 * 1700);
        let mut f = framer(Input::Pcm(16000), frame_bytes);
        let got = push_in_pieces(&mut f, &s16le(&pcm));
        let want = reference(16000, &pcm);
        assert_eq!(got.len(), 1700 / frame_bytes, "{frame_bytes}");
        assert!(got.iter().all(|fr| fr.len() == frame_bytes));
        assert_eq!(got.concat(), want[..got.len() * frame_bytes]);
        assert_eq!(f.pending().len(), 1700 % frame_bytes);
    }
}

#[test]
fn all_hands_out_the_partial_frame_before_a_mark() {
    let pcm = signal(200);
    let mut f = framer(Input::Pcm(8000), 160);
    f.push(&s16le(&pcm)).unwrap();
    assert_eq!(frames(&mut f, Take::WholeFrames), [encode(&pcm[..160])]);
    // What a mark sends first: the 40 samples left, exactly.
    assert_eq!(frames(&mut f, Take::All), [encode(&pcm[160..])]);
    assert!(f.pending().is_empty());
    assert!(frames(&mut f, Take::All).is_empty());
    // A short frame, then framing goes on from there.
    f.push(&s16le(&pcm[..170])).unwrap();
    assert_eq!(frames(&mut f, Take::WholeFrames), [encode(&pcm[..160])]);
}

#[test]
fn the_resampler_tail_comes_out_at_eos() {
    // (rate, μ-law bytes of tail): the delay, rounded up, no more.
    for (rate, tail) in [(16000u32, 21usize), (24000, 20), (48000, 22)] {
        let ratio = rate as usize / 8000;
        let pcm = signal(ratio * 250);
        let mut f = framer(Input::Pcm(rate), 160);
        f.push(&s16le(&pcm)).unwrap();
        let whole = frames(&mut f, Take::WholeFrames);
        let delay_ns = f.delay_ns();
        f.push_resampler_tail();
        // A second time (end-stream, then EOS), nothing more.
        f.push_resampler_tail();
        let rest = frames(&mut f, Take::All);
        assert_eq!(rest.len(), 1, "{rate} Hz");
        assert_eq!(rest[0].len(), 250 - 160 + tail, "{rate} Hz");
        // The tail covers the delay: the last input has come out.
        assert!(tail as u64 * 125_000 >= delay_ns, "{rate} Hz");
        // And it is the downsampler's answer to that silence.
        let mut padded = pcm.clone();
        padded.resize(pcm.len() + ratio * 100, 0);
        let want = reference(rate, &padded);
        let got = [whole.concat(), rest.concat()].concat();
        assert_eq!(got[..], want[..got.len()], "{rate} Hz");
    }
    // Nothing to flush without a resampler delay.
    for input in [Input::Pcm(8000), Input::Mulaw] {
        let mut f = framer(input, 160);
        f.push(&[1, 2, 3, 4]).unwrap();
        f.push_resampler_tail();
        assert_eq!(f.pending().len(), if input == Input::Mulaw { 4 } else { 2 });
    }
}

#[test]
fn a_split_sample_is_reported_and_carried_to_the_next_push() {
    let pcm = signal(4);
    let bytes = s16le(&pcm);
    let mut f = framer(Input::Pcm(8000), 160);
    assert_eq!(
        f.push(&bytes[..3]).unwrap(),
        Pushed {
            split_sample: true,
            ..Pushed::default()
        }
    );
    assert_eq!(f.pending(), encode(&pcm[..1]));
    assert_eq!(f.push(&bytes[3..4]).unwrap(), Pushed::default());
    assert_eq!(f.pending(), encode(&pcm[..2]));
    assert_eq!(
        f.push(&bytes[4..5]).unwrap(),
        Pushed {
            split_sample: true,
            ..Pushed::default()
        }
    );
    // An empty buffer in between neither loses the byte nor splits anything.
    assert_eq!(f.push(&[]).unwrap(), Pushed::default());
    assert_eq!(f.push(&bytes[5..]).unwrap(), Pushed::default());
    assert_eq!(f.pending(), encode(&pcm));
    // Caps of another format drop a split sample (here there and back).
    f.push(&bytes[..1]).unwrap();
    f.set_input(Input::Mulaw).unwrap();
    f.set_input(Input::Pcm(8000)).unwrap();
    f.push(&bytes[2..4]).unwrap();
    assert_eq!(f.pending(), [encode(&pcm), encode(&pcm[1..2])].concat());
}

#[test]
fn clear_drops_pending_audio_and_resets_the_resampler() {
    let pcm = signal(2 * 300);
    let bytes = s16le(&pcm);
    let mut f = framer(Input::Pcm(16000), 160);
    f.push(&bytes[..501]).unwrap();
    assert!(!f.pending().is_empty());
    f.clear();
    assert!(f.pending().is_empty());
    // No history, no split byte: as from a new framer.
    f.push(&bytes).unwrap();
    assert_eq!(f.pending(), reference(16000, &pcm));
}

#[test]
fn input_must_be_set_and_supported() {
    let mut f = Framer::new(160);
    assert_eq!(f.push(&[0, 0]), Err(NotNegotiated::NoInput));
    assert_eq!(f.delay_ns(), 0);
    assert_eq!(f.set_input(Input::Pcm(44100)), Err(UnsupportedRate(44100)));
    assert_eq!(f.push(&[0, 0]), Err(NotNegotiated::NoInput));
    f.set_input(Input::Pcm(16000)).unwrap();
    assert_eq!(f.delay_ns(), 2_562_500);
    assert_eq!(f.set_input(Input::Pcm(11025)), Err(UnsupportedRate(11025)));
    assert_eq!(f.delay_ns(), 2_562_500);
}

#[test]
fn frames_carry_the_index_of_their_first_sample() {
    let mut f = framer(Input::Mulaw, 160);
    f.push(&[0x55; 400]).unwrap();
    assert_eq!(f.produced(), 400);
    let mut starts = Vec::new();
    f.send_frames(Take::WholeFrames, |start, frame, _| {
        starts.push((start, frame.len()));
        Ok::<_, Infallible>(())
    })
    .unwrap();
    assert_eq!(starts, [(0, 160), (160, 160)]);
    // A clear drops the 80 pending samples: they were never handed out.
    f.clear();
    assert_eq!(f.produced(), 320);
    f.push(&[0x55; 100]).unwrap();
    starts.clear();
    f.send_frames(Take::All, |start, frame, _| {
        starts.push((start, frame.len()));
        Ok::<_, Infallible>(())
    })
    .unwrap();
    assert_eq!(starts, [(320, 100)]);
    assert_eq!(f.produced(), 420);
}

#[test]
fn a_failed_send_keeps_that_frame_and_the_rest() {
    let ulaw: Vec<u8> = (0..=255).collect();
    let mut f = framer(Input::Mulaw, 100);
    f.push(&ulaw).unwrap();
    let mut calls = 0;
    let result = f.send_frames(Take::All, |_, _, _| {
        calls += 1;
        if calls == 2 { Err("closed") } else { Ok(()) }
    });
    assert_eq!(result, Err("closed"));
    assert_eq!(f.pending(), &ulaw[100..]);
    f.discard_pending();
    assert!(f.pending().is_empty());
}

#[test]
fn a_zero_frame_size_sends_byte_frames() {
    // As the element's state before it is connected.
    let mut f = framer(Input::Mulaw, 0);
    f.push(&[1, 2]).unwrap();
    assert_eq!(frames(&mut f, Take::WholeFrames), [[1], [2]]);
}

#[test]
fn steady_state_reuses_its_buffers() {
    let pcm = signal(960 * 20);
    let bytes = s16le(&pcm);
    let mut f = framer(Input::Pcm(48000), 160);
    let push = |f: &mut Framer, i: usize| {
        f.push(&bytes[1920 * (i % 10)..][..1920]).unwrap();
        f.send_frames(Take::WholeFrames, |_, _, _| Ok::<_, Infallible>(()))
            .unwrap();
    };
    for i in 0..4 {
        push(&mut f, i);
    }
    // Its own buffer, and the thread's scratch buffers it works in.
    let buffers = |f: &Framer| {
        let (a, b) = (scratch::i16s(), scratch::i16s());
        let (c, d) = (scratch::f32s(), scratch::f32s());
        let mut scratch = [a.as_ptr() as usize, b.as_ptr() as usize];
        scratch.sort();
        let mut work = [c.as_ptr() as usize, d.as_ptr() as usize];
        work.sort();
        (f.pending.as_ptr() as usize, scratch, work)
    };
    let before = buffers(&f);
    for i in 4..200 {
        push(&mut f, i);
    }
    assert_eq!(buffers(&f), before);
}

#[test]
fn the_calls_codec_and_rate_set_the_frames() {
    use crate::codec::ByteOrder;
    let pcm = signal(3 * 580);
    // 48 kHz PCM into each format: the resampler's output, encoded, in
    // frames of 20 ms (160 ticks) of that format.
    for target in [
        WireFormat::PCMA,
        WireFormat::l16(8000, ByteOrder::Big),
        WireFormat::l16(16000, ByteOrder::Little),
        WireFormat::l16(24000, ByteOrder::Big),
    ] {
        let mut f = framer(Input::Pcm(24000), 160);
        f.set_target(target, 0);
        assert_eq!(f.target(), target);
        assert_eq!(f.frame_bytes(), 160 * target.bytes_per_tick(), "{target}");
        let got = push_in_pieces(&mut f, &s16le(&pcm));
        let mut resampled = Vec::new();
        Resampler::new(24000, target.rate)
            .unwrap()
            .process(&pcm, &mut resampled);
        let mut want = Vec::new();
        target.encode(&resampled, &mut want);
        assert_eq!(got.len(), want.len() / f.frame_bytes(), "{target}");
        assert_eq!(got.concat(), want[..got.concat().len()], "{target}");
        // What waits, in time: 1740 samples at 24 kHz are 580 ticks, 100 left.
        let left = f.pending_bytes() / target.bytes_per_tick();
        assert_eq!(f.pending_ns(), left as u64 * 125_000, "{target}");
        assert_eq!(left, 100, "{target}");
    }
}

#[test]
fn g711_input_passes_through_into_its_own_codec_and_is_transcoded_otherwise() {
    let alaw_bytes: Vec<u8> = (0..=255).collect();
    let mut f = framer(Input::Alaw, 160);
    f.set_target(WireFormat::PCMA, 0);
    f.push(&alaw_bytes).unwrap();
    assert_eq!(f.pending(), alaw_bytes);
    // A-law into a μ-law call: decoded and encoded again.
    let mut f = framer(Input::Alaw, 160);
    f.push(&alaw_bytes).unwrap();
    let want: Vec<u8> = alaw_bytes
        .iter()
        .map(|&c| g711::encode(alaw::decode(c)))
        .collect();
    assert_eq!(f.pending(), want);
    // μ-law into a 16 kHz L16 call: decoded and upsampled.
    let ulaw: Vec<u8> = (0..160u32).map(|i| (i * 7) as u8).collect();
    let target = WireFormat::l16(16000, crate::codec::ByteOrder::Big);
    let mut f = framer(Input::Mulaw, 160);
    f.set_target(target, 0);
    f.push(&ulaw).unwrap();
    let decoded: Vec<i16> = ulaw.iter().map(|&c| g711::decode(c)).collect();
    let mut up = Vec::new();
    Resampler::new(8000, 16000)
        .unwrap()
        .process(&decoded, &mut up);
    let mut want = Vec::new();
    target.encode(&up, &mut want);
    assert_eq!(f.pending(), want);
}

#[test]
fn a_provider_minimum_lengthens_frames_and_pads_the_last() {
    let mut f = framer(Input::Mulaw, 80);
    // Telnyx: at least 20 ms.
    f.set_target(WireFormat::PCMA, 160);
    assert_eq!(f.frame_bytes(), 160);
    f.push(&[0xFF; 200]).unwrap();
    let mut got = Vec::new();
    f.send_frames(Take::All, |_, frame, padding| {
        got.push((frame.to_vec(), padding));
        Ok::<_, Infallible>(())
    })
    .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0.len(), got[0].1), (160, 0));
    // 40 bytes of audio, then A-law silence up to 20 ms: said to be padding.
    assert_eq!((got[1].0.len(), got[1].1), (160, 120));
    assert!(got[1].0[40..].iter().all(|&b| b == alaw::SILENCE));
}

#[test]
fn at_most_n_frames_leaves_the_rest_pending() {
    let mut f = framer(Input::Pcm(8000), 160);
    let pcm = signal(1000);
    f.push(&s16le(&pcm)).unwrap();
    let first = frames(&mut f, Take::AtMost(2));
    assert_eq!(first.len(), 2);
    assert!(f.whole_frame_pending());
    let rest = frames(&mut f, Take::AtMost(10));
    assert_eq!(rest.len(), 4);
    assert!(!f.whole_frame_pending());
    // In order, and the partial frame still waits.
    assert_eq!([first, rest].concat().concat(), encode(&pcm[..960]));
    assert_eq!(f.pending().len(), 40);
}

#[test]
fn the_same_input_again_keeps_the_resamplers_history() {
    let pcm = signal(3200);
    let bytes = s16le(&pcm);
    let mut f = framer(Input::Pcm(16000), 160);
    f.push(&bytes[..3001]).unwrap();
    // Caps again, of the same format: the split sample and the filter's
    // history carry on, as if nothing came between.
    f.set_input(Input::Pcm(16000)).unwrap();
    f.push(&bytes[3001..]).unwrap();
    let got = frames(&mut f, Take::All).concat();
    assert_eq!(got, reference(16000, &pcm));
}

/// A 1 kHz tone at `rate`, from sample `from` of that rate on.
fn tone(rate: u32, from: usize, len: usize) -> Vec<i16> {
    (from..from + len)
        .map(|n| {
            let t = n as f64 / rate as f64;
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()).round() as i16
        })
        .collect()
}

/// What a resampler alone makes of `pcm` followed by enough silence to
/// flush it, as 8 kHz samples.
fn resampled(rate: u32, pcm: &[i16]) -> Vec<i16> {
    let mut r = Resampler::new(rate, 8000).unwrap();
    let mut out = Vec::new();
    r.process(pcm, &mut out);
    r.process(&vec![0; rate as usize / 100], &mut out);
    out
}

#[test]
fn a_change_of_rate_flushes_the_old_tail_and_skips_the_new_warm_up() {
    // 62.5 ms at 16 kHz, 50 ms at 48 kHz, 20 ms as μ-law: one tone.
    let a = tone(16000, 0, 1000);
    let b = tone(48000, 3000, 2400);
    let c: Vec<u8> = tone(8000, 900, 160)
        .iter()
        .map(|&s| g711::encode(s))
        .collect();
    let mut f = framer(Input::Pcm(16000), 160);
    f.push(&s16le(&a)).unwrap();
    // The delays in 8 kHz samples, rounded up: 20.5 and 21.2.
    let d1 = f.delay_ns().div_ceil(125_000) as usize;
    f.set_input(Input::Pcm(48000)).unwrap();
    let d2 = f.delay_ns().div_ceil(125_000) as usize;
    assert_eq!((d1, d2), (21, 22));
    // The first part has come out whole, its delay included; the next
    // input comes out right after it (within a sample).
    assert_eq!(f.produced(), (500 + d1) as u64);
    assert!(f.lag_ns() < 125_000);
    f.push(&s16le(&b)).unwrap();
    // The second less what its filter holds: no warm-up of its own.
    assert_eq!(f.produced(), (500 + d1 + 400 - d2) as u64);
    assert_eq!(f.lag_ns(), f.delay_ns());
    f.set_input(Input::Mulaw).unwrap();
    // All of it: the input's 112.5 ms and the first delay, no more.
    assert_eq!(f.produced(), (500 + d1 + 400) as u64);
    f.push(&c).unwrap();
    let want = [
        encode(&resampled(16000, &a)[..500 + d1]),
        encode(&resampled(48000, &b)[d2..d2 + 400]),
        c,
    ]
    .concat();
    // What is ahead of the input (the first delay) waits for more input
    // or the end, as that resampler's delay did.
    let got = frames(&mut f, Take::All).concat();
    assert_eq!(got[..], want[..1060]);
    assert_eq!(f.pending_bytes(), d1);
    f.push_resampler_tail();
    let got = [got, frames(&mut f, Take::All).concat()].concat();
    assert_eq!(got.len(), want.len());
    let first_diff = got.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "differs from sample {first_diff:?} on");
    // No hole: every millisecond after the warm-up holds the tone.
    let pcm: Vec<i16> = got.iter().map(|&c| g711::decode(c)).collect();
    for (i, ms) in pcm[d1 + 8..].chunks_exact(8).enumerate() {
        let peak = ms.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 6000, "a hole at {} ms: {ms:?}", i + 3);
    }
}

#[test]
fn a_tail_flushed_at_a_change_waits_at_the_end_as_the_delay_did() {
    let pcm = signal(2 * 170);
    let ulaw: Vec<u8> = (0..480u32).map(|i| (i * 31 % 256) as u8).collect();
    let mut f = framer(Input::Pcm(16000), 160);
    f.push(&s16le(&pcm)).unwrap();
    assert_eq!(frames(&mut f, Take::WholeFrames).len(), 1);
    f.set_input(Input::Mulaw).unwrap();
    // 170 in, 170 + 21 out: the tail is ahead of the input.
    assert_eq!(f.produced(), 170 + 21);
    // Before a mark: as much as came in, the rest waits.
    assert_eq!(frames(&mut f, Take::All).concat().len(), 10);
    assert_eq!(f.pending_bytes(), 21);
    // 20 ms frames of μ-law make a whole frame each, as the PCM did.
    for chunk in ulaw.chunks(160) {
        f.push(chunk).unwrap();
        let sent = frames(&mut f, Take::WholeFrames);
        assert_eq!(sent.len(), 1);
        assert!(!f.whole_frame_pending());
    }
    assert_eq!(f.produced(), 650 + 21);
    // Back to PCM: its warm-up makes up for the tail, nothing waits.
    f.set_input(Input::Pcm(16000)).unwrap();
    f.push(&s16le(&pcm)).unwrap();
    assert_eq!(f.produced(), 820);
    // A clear, and the count starts level again.
    f.set_input(Input::Mulaw).unwrap();
    f.clear();
    f.push(&ulaw[..160]).unwrap();
    assert_eq!(frames(&mut f, Take::All).concat(), &ulaw[..160]);
    // Padding to a provider's minimum is no tail: nothing waits for it.
    let mut f = framer(Input::Pcm(8000), 160);
    f.set_target(WireFormat::PCMA, 160);
    f.push(&s16le(&pcm[..200])).unwrap();
    assert_eq!(frames(&mut f, Take::All).concat().len(), 320);
    f.push(&s16le(&pcm[..160])).unwrap();
    assert_eq!(frames(&mut f, Take::WholeFrames).len(), 1);
    // The end lets all of it go.
    let mut f = framer(Input::Pcm(16000), 160);
    f.push(&s16le(&pcm)).unwrap();
    f.set_input(Input::Mulaw).unwrap();
    f.push_resampler_tail();
    assert_eq!(frames(&mut f, Take::All).concat().len(), 191);
}

#[test]
fn after_a_clear_a_new_resampler_keeps_its_warm_up() {
    let pcm = signal(6 * 300);
    let mut f = framer(Input::Pcm(16000), 160);
    f.push(&s16le(&pcm[..1000])).unwrap();
    f.clear();
    f.set_input(Input::Pcm(48000)).unwrap();
    f.push(&s16le(&pcm)).unwrap();
    // As a new framer's: as long as the input, warm-up first.
    assert_eq!(f.pending(), reference(48000, &pcm));
}

#[test]
fn samples_short_of_a_tick_wait_and_the_end_pads_the_last() {
    use crate::codec::ByteOrder;
    let target = WireFormat::l16(16000, ByteOrder::Little);
    let pcm = signal(7);
    let mut f = framer(Input::Pcm(16000), 160);
    f.set_target(target, 0);
    f.push(&s16le(&pcm)).unwrap();
    // 3 ticks before a mark; the 7th sample waits.
    assert_eq!(frames(&mut f, Take::All).concat(), s16le(&pcm[..6]));
    assert_eq!(f.pending(), s16le(&pcm[6..]));
    f.push_resampler_tail();
    assert_eq!(f.pending(), s16le(&[pcm[6], 0]));
}

/// Two hundred changes between 24 and 48 kHz, each part a length that
/// ends between two output samples: the output stays in step with the
/// input and as long as it (and the first warm-up), within a sample, as
/// each change skips the warm-up to the nearest sample of where the audio
/// must go on: rounding at each change does not add up.
#[test]
fn many_changes_of_rate_keep_the_audio_in_step() {
    use std::f64::consts::PI;
    // A 500 Hz tone, one phase across all the parts.
    let at = |t: f64| (8000.0 * (2.0 * PI * 500.0 * t).sin()).round() as i16;
    let mut f = framer(Input::Pcm(24000), 160);
    let mut t = 0.0;
    for part in 0..200 {
        let (rate, len) = [(24000, 301), (48000, 605)][part % 2];
        f.set_input(Input::Pcm(rate)).unwrap();
        let pcm: Vec<i16> = (0..len).map(|n| at(t + n as f64 / rate as f64)).collect();
        f.push(&s16le(&pcm)).unwrap();
        t += len as f64 / rate as f64;
    }
    f.push_resampler_tail();
    let out: Vec<i16> = frames(&mut f, Take::All)
        .concat()
        .iter()
        .map(|&c| g711::decode(c))
        .collect();
    // The first resampler's delay, 20 samples, as its warm-up.
    let want = (t * 8000.0).round() as usize + 20;
    assert!(
        out.len().abs_diff(want) <= 1,
        "{} samples, not {want}",
        out.len()
    );
    // The last part's phase against the tone's, 20 samples later.
    let (mut re, mut im) = (0.0, 0.0);
    for (k, &s) in out.iter().enumerate().skip(out.len() - 80).take(48) {
        let w = 2.0 * PI * 500.0 * (k as f64 - 20.0) / 8000.0;
        re += s as f64 * w.cos();
        im += s as f64 * w.sin();
    }
    let shift = re.atan2(im) / (2.0 * PI) * 16.0;
    assert!(shift.abs() < 1.0, "{shift} samples out of step");
}
