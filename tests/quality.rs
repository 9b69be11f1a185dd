//! What users hear: speech through 16 kHz → 8 kHz μ-law → 16 kHz, with our
//! resamplers, with GStreamer's `audioresample` at its default quality, and
//! with an ideal (long windowed-sinc) resampler. Ours must be at least as
//! close to the ideal round trip as audioresample is. (Frequency response,
//! image and alias rejection of each resampler are unit tests in
//! src/codec/resample.rs.)

mod common;

use gst_check::Harness;
use gsttwiliostream::codec::{Downsampler, Upsampler, g711};

/// "Thank you for calling. For sales, press one. For support, press two.",
/// 16 kHz mono, made with espeak-ng.
const SPEECH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/speech-16k.wav");

fn speech() -> Vec<i16> {
    let mut reader = hound::WavReader::open(SPEECH).unwrap();
    assert_eq!(reader.spec().sample_rate, 16000);
    reader.samples::<i16>().map(Result::unwrap).collect()
}

/// A 1601-tap (at 16 kHz) Kaiser β = 14 windowed sinc at 4 kHz: far sharper
/// and deeper than either resampler under test.
fn ideal_filter() -> Vec<f64> {
    common::halfband_sinc(800, 14.0)
}

/// Ideal 16 → 8 kHz, delay-compensated: output m is at input time 2m.
fn ideal_down(x: &[f64], h: &[f64]) -> Vec<f64> {
    let half = (h.len() / 2) as isize;
    (0..x.len() / 2)
        .map(|m| {
            let mut acc = 0.0;
            for (k, hk) in h.iter().enumerate() {
                let i = 2 * m as isize + half - k as isize;
                if i >= 0 && (i as usize) < x.len() {
                    acc += hk * x[i as usize];
                }
            }
            acc
        })
        .collect()
}

/// Ideal 8 → 16 kHz, delay-compensated: output 2m is input m.
fn ideal_up(x: &[f64], h: &[f64]) -> Vec<f64> {
    let half = (h.len() / 2) as isize;
    (0..2 * x.len())
        .map(|n| {
            let mut acc = 0.0;
            for (k, hk) in h.iter().enumerate() {
                let i = n as isize + half - k as isize;
                if i >= 0 && i % 2 == 0 && ((i / 2) as usize) < x.len() {
                    acc += 2.0 * hk * x[(i / 2) as usize];
                }
            }
            acc
        })
        .collect()
}

fn mulaw_round_trip(x: &[i16]) -> Vec<i16> {
    x.iter().map(|&s| g711::decode(g711::encode(s))).collect()
}

fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter()
        .map(|&v| v.round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn ours(x: &[i16]) -> Vec<i16> {
    let mut down = Downsampler::new(16000).unwrap();
    let mut narrow = Vec::new();
    down.process(x, &mut narrow);
    let narrow = mulaw_round_trip(&narrow);
    let mut wide = vec![0; 2 * narrow.len()];
    Upsampler::new().process(&narrow, &mut wide);
    wide
}

fn gstreamer(x: &[i16]) -> Vec<i16> {
    common::init();
    let mut h = Harness::new_parse(
        "audioresample ! audio/x-raw,rate=8000 ! mulawenc ! mulawdec ! audioresample",
    );
    h.set_src_caps_str("audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved");
    h.set_sink_caps_str("audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved");
    let mut out = Vec::new();
    for (i, chunk) in x.chunks(320).enumerate() {
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut b = gst::Buffer::from_mut_slice(bytes);
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(20 * i as u64));
        h.push(b).unwrap();
        while let Some(o) = h.try_pull() {
            out.extend(
                o.map_readable()
                    .unwrap()
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]])),
            );
        }
    }
    out
}

/// SNR (dB) of `test` against `reference`, at the lag (test shifted by up to
/// ±200 samples) that suits `test` best, over the middle of the signal.
fn best_snr(reference: &[f64], test: &[i16]) -> (f64, isize) {
    let range = 2000..reference.len() - 2000;
    let signal: f64 = reference[range.clone()].iter().map(|v| v * v).sum();
    (-200isize..200)
        .filter(|lag| range.end as isize + lag <= test.len() as isize)
        .map(|lag| {
            let noise: f64 = range
                .clone()
                .map(|n| (test[(n as isize + lag) as usize] as f64 - reference[n]).powi(2))
                .sum();
            (10.0 * (signal / noise).log10(), lag)
        })
        .fold((f64::MIN, 0), |best, c| if c.0 > best.0 { c } else { best })
}

#[test]
fn speech_round_trip_is_at_least_as_close_to_ideal_as_audioresample() {
    let x = speech();
    let h = ideal_filter();
    let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let narrow = mulaw_round_trip(&to_i16(&ideal_down(&xf, &h)));
    let narrow: Vec<f64> = narrow.iter().map(|&v| v as f64).collect();
    let ideal = ideal_up(&narrow, &h);

    let (ours_snr, ours_lag) = best_snr(&ideal, &ours(&x));
    let (gst_snr, gst_lag) = best_snr(&ideal, &gstreamer(&x));
    println!(
        "against the ideal round trip: ours {ours_snr:.2} dB (lag {ours_lag}), audioresample {gst_snr:.2} dB (lag {gst_lag})"
    );
    // Our delay is the documented one: 41 samples down, 41 up.
    assert_eq!(ours_lag, 2 * Upsampler::DELAY as isize);
    assert!(
        ours_snr >= gst_snr,
        "ours {ours_snr:.2} dB, audioresample {gst_snr:.2} dB"
    );
}
