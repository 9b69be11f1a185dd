//! The sink fed oddly: buffers of odd sizes, empty ones, discontinuities,
//! GAP events and buffers flagged GAP, and the same format's caps sent again mid-stream change
//! nothing in what Twilio gets; a change of rate mid-stream leaves no hole.

mod common;

use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::Playout;

const PCM_16K: &str = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved";

/// What Twilio gets for `feed`'s input, through a sink with `caps`.
fn sent(caps: &str, feed: impl FnOnce(&mut gst_check::Harness)) -> Vec<u8> {
    let mut h = sink_harness(caps);
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    feed(&mut h);
    assert!(sink.emit_by_name::<bool>("end-stream", &[&true]));
    media_bytes(&receive_until(&mut call, |_| false))
}

#[test]
fn odd_buffers_empty_ones_gaps_and_the_same_caps_again_change_nothing() {
    let pcm = sine(440.0, 16000.0, 8000.0, 16000);
    let reference = sent(PCM_16K, |h| {
        h.push(pcm_buffer(&pcm)).unwrap();
    });
    // The input, after the resampler's warm-up (2.6 ms; its tail goes out
    // at `end-stream`).
    assert_eq!(reference.len(), 8000 + 21);
    let odd = sent(PCM_16K, |h| {
        let mut at = 0;
        for (k, len) in [1usize, 0, 333, 4097, 0, 2, 5000, 1]
            .iter()
            .cycle()
            .enumerate()
        {
            if at >= pcm.len() {
                break;
            }
            let end = (at + len).min(pcm.len());
            let mut buffer = pcm_buffer(&pcm[at..end]);
            if k % 3 == 0 {
                buffer
                    .get_mut()
                    .unwrap()
                    .set_flags(gst::BufferFlags::DISCONT);
            }
            h.push(buffer).unwrap();
            at = end;
            if k == 5 {
                h.push_event(gst::event::Gap::builder(gst::ClockTime::from_seconds(1)).build());
            }
            if k == 7 {
                // A gap's silence, as a src's fill pushes it.
                let mut gap = pcm_buffer(&[0; 320]);
                gap.get_mut().unwrap().set_flags(gst::BufferFlags::GAP);
                h.push(gap).unwrap();
            }
            if k == 9 {
                // The same format, said again (a field more).
                h.set_src_caps_str(&format!("{PCM_16K},channel-mask=(bitmask)0x0"));
            }
        }
    });
    assert_eq!(odd.len(), reference.len());
    let first_diff = odd.iter().zip(&reference).position(|(a, b)| a != b);
    assert_eq!(
        first_diff, None,
        "the audio differs from sample {first_diff:?} on"
    );
}

/// 16 kHz, then 48 kHz: the 1 kHz tone goes on without a hole. The first
/// resampler's tail (the 2.6 ms its delay holds back) comes out at the
/// change, and the new one's warm-up is skipped.
#[test]
fn a_rate_change_mid_stream_leaves_no_hole() {
    let a = sine(1000.0, 16000.0, 8000.0, 16000);
    let b: Vec<i16> = (0..48000)
        .map(|n| {
            (8000.0 * (2.0 * std::f64::consts::PI * 1000.0 * (1.0 + n as f64 / 48000.0)).sin())
                .round() as i16
        })
        .collect();
    let out = sent(PCM_16K, |h| {
        h.push(pcm_buffer(&a)).unwrap();
        h.set_src_caps_str("audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved");
        h.push(pcm_buffer(&b)).unwrap();
    });
    let pcm = twilio_emulator::audio::decode(&out);
    // Every 1 ms (8 samples) after the filter's start holds the tone.
    let quiet: Vec<usize> = pcm[40..pcm.len() - 40]
        .chunks(8)
        .enumerate()
        .filter(|(_, c)| c.iter().map(|&s| s.unsigned_abs()).max().unwrap() < 4000)
        .map(|(i, _)| 40 + 8 * i)
        .collect();
    assert!(
        quiet.is_empty(),
        "a hole at samples {quiet:?} (the change at 8000)"
    );
    // In step across the change, within the half sample that dropping
    // whole samples allows: the tone's phase after it is the phase before.
    let phase = |range: std::ops::Range<usize>| {
        let (mut re, mut im) = (0.0, 0.0);
        for k in range {
            let w = 2.0 * std::f64::consts::PI * 1000.0 * k as f64 / 8000.0;
            re += pcm[k] as f64 * w.cos();
            im += pcm[k] as f64 * w.sin();
        }
        im.atan2(re)
    };
    let (before, after) = (phase(4000..8000), phase(8200..15800));
    let shift = (after - before) / (2.0 * std::f64::consts::PI) * 8.0;
    let shift = shift - (shift / 8.0).round() * 8.0;
    assert!(shift.abs() < 0.5, "{shift} samples out of step");
    // As long as the input (2 s) and the first filter's warm-up, within a
    // sample: each tail goes out, at the change and at `end-stream`.
    assert!(pcm.len().abs_diff(16000 + 21) <= 1, "{} samples", pcm.len());
}
