//! twiliostreamsink end to end, caps of another format or rate mid-stream:
//! what the call gets is the input, sample for sample, after the first
//! resampler's warm-up (each resampler's tail flushed at a change or the
//! end, a later one's warm-up skipped), and a mark after a change to μ-law
//! lands after as many samples as the input had before it, as without the
//! change: what the tail puts ahead waits as the delay did.

mod common;

use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::codec::{ByteOrder, Resampler, WireFormat, alaw, g711};
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{CallParams, Playout, Provider, Received, TwilioCall};

const PCM_16K: &str = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved";
const PCM_8K: &str = "audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved";
const MULAW: &str = "audio/x-mulaw,rate=8000,channels=1";
const ALAW: &str = "audio/x-alaw,rate=8000,channels=1";

fn dial_as(sink: &gst::Element, params: CallParams) -> TwilioCall {
    let url = url_of(sink);
    rt().block_on(async {
        let mut call = TwilioCall::connect_with(&url, params, Playout::Instant)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    })
}

/// What a call in `format` gets for `feed`'s input (ended by `end-stream`
/// after playout), decoded, and how many samples of it came before each
/// mark the test sent.
fn sent(
    caps: &str,
    format: WireFormat,
    feed: impl FnOnce(&mut gst_check::Harness),
) -> (Vec<i16>, Vec<usize>) {
    let mut h = sink_harness(caps);
    let sink = h.element().unwrap();
    let params = match format {
        WireFormat::PCMU => CallParams::default(),
        _ => CallParams::of(Provider::SignalWire, format),
    };
    let mut call = dial_as(&sink, params);
    feed(&mut h);
    assert!(sink.emit_by_name::<bool>("end-stream", &[&true]));
    decoded(format, &receive_until(&mut call, |_| false))
}

/// The audio in `got`, decoded, and how many samples of it came before
/// each mark the test sent.
fn decoded(format: WireFormat, got: &[Received]) -> (Vec<i16>, Vec<usize>) {
    let mut pcm = Vec::new();
    let mut marks = Vec::new();
    for r in got {
        match r {
            // (Not the plugin's own, `twiliostream-end`.)
            Received::Message(Outbound::Mark { mark, .. }, _)
                if !mark.name.starts_with("twiliostream-") =>
            {
                marks.push(pcm.len())
            }
            Received::Message(Outbound::Media { .. }, _) => {
                format.decode(&media_bytes(std::slice::from_ref(r)), &mut pcm)
            }
            _ => {}
        }
    }
    (pcm, marks)
}

/// A resampler's warm-up from `from` to `to`: its delay in output samples,
/// rounded up.
fn warm_up(from: u32, to: u32) -> usize {
    let r = Resampler::new(from, to).unwrap();
    (r.delay_ns() * to as u64).div_ceil(1_000_000_000) as usize
}

/// `pcm` at `from` resampled to `to` as a resampler alone makes it,
/// warm-up first, then its answer to silence.
fn resampled(from: u32, to: u32, pcm: &[i16]) -> Vec<i16> {
    let mut r = Resampler::new(from, to).unwrap();
    let mut out = Vec::new();
    r.process(pcm, &mut out);
    r.process(&vec![0; from as usize / 100], &mut out);
    out
}

/// μ-law as the call decodes it.
fn through_mulaw(pcm: &[i16]) -> Vec<i16> {
    pcm.iter().map(|&s| g711::decode(g711::encode(s))).collect()
}

fn mark(h: &mut gst_check::Harness, name: &str) {
    let s = gst::Structure::builder("twilio-mark")
        .field("name", name)
        .build();
    assert!(h.push_event(gst::event::CustomDownstream::new(s)));
}

fn assert_same(got: &[i16], want: &[i16]) {
    assert_eq!(got.len(), want.len(), "samples");
    let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
    assert_eq!(first_diff, None, "differs from sample {first_diff:?} on");
}

/// PCM at 16 kHz, then μ-law: the resampler's tail goes out at the change
/// (not held back in it until the end), the μ-law follows it, and a mark
/// after the μ-law comes after as many samples as the input had, as it
/// would without the change: the 21 samples of the tail put the output
/// ahead of the input, and wait at the end as the resampler's delay did.
#[test]
fn pcm_then_mulaw_is_the_input_sample_for_sample() {
    let pcm = sine(440.0, 16000.0, 8000.0, 1610);
    let ulaw: Vec<u8> = sine(700.0, 8000.0, 8000.0, 805)
        .iter()
        .map(|&s| g711::encode(s))
        .collect();
    let (got, marks) = sent(PCM_16K, WireFormat::PCMU, |h| {
        h.push(pcm_buffer(&pcm)).unwrap();
        mark(h, "pcm");
        h.set_src_caps_str(MULAW);
        h.push(gst::Buffer::from_slice(ulaw.clone())).unwrap();
        mark(h, "after");
    });
    let d = warm_up(16000, 8000);
    assert_eq!(d, 21);
    let want: Vec<i16> = [
        through_mulaw(&resampled(16000, 8000, &pcm)[..805 + d]),
        ulaw.iter().map(|&c| g711::decode(c)).collect(),
    ]
    .concat();
    assert_same(&got, &want);
    assert_eq!(marks, [805, 1610]);
}

/// μ-law, then PCM at 16 kHz: the PCM follows the μ-law at once (its
/// warm-up skipped: no hole) and all of it goes out at the end, its tail
/// too.
#[test]
fn mulaw_then_pcm_is_the_input_sample_for_sample() {
    let ulaw: Vec<u8> = sine(700.0, 8000.0, 8000.0, 805)
        .iter()
        .map(|&s| g711::encode(s))
        .collect();
    let pcm = sine(440.0, 16000.0, 8000.0, 1610);
    let (got, marks) = sent(MULAW, WireFormat::PCMU, |h| {
        h.push(gst::Buffer::from_slice(ulaw.clone())).unwrap();
        mark(h, "switch");
        h.set_src_caps_str(PCM_16K);
        h.push(pcm_buffer(&pcm)).unwrap();
        mark(h, "pcm");
    });
    let d = warm_up(16000, 8000);
    let want: Vec<i16> = [
        ulaw.iter().map(|&c| g711::decode(c)).collect(),
        through_mulaw(&resampled(16000, 8000, &pcm)[d..805 + d]),
    ]
    .concat();
    assert_same(&got, &want);
    // (The mark after the PCM comes before its last 2.6 ms, which its
    // resampler holds back: within the delay, as README says.)
    assert_eq!(marks, [805, 1610 - d]);
}

/// PCM at 16 kHz, A-law (transcoded), PCM at 8 kHz, PCM at 16 kHz again
/// into a μ-law call: each part in full, in step; the second 16 kHz
/// resampler skips its warm-up, as the first one's tail makes up for it.
#[test]
fn pcm_alaw_and_8khz_pcm_in_turn_are_the_input_sample_for_sample() {
    let a = sine(440.0, 16000.0, 8000.0, 1610);
    let b: Vec<u8> = sine(700.0, 8000.0, 8000.0, 333)
        .iter()
        .map(|&s| alaw::encode(s))
        .collect();
    let c = sine(900.0, 8000.0, 8000.0, 501);
    let e = sine(300.0, 16000.0, 8000.0, 998);
    let (got, marks) = sent(PCM_16K, WireFormat::PCMU, |h| {
        h.push(pcm_buffer(&a)).unwrap();
        h.set_src_caps_str(ALAW);
        h.push(gst::Buffer::from_slice(b.clone())).unwrap();
        h.set_src_caps_str(PCM_8K);
        h.push(pcm_buffer(&c)).unwrap();
        mark(h, "c");
        h.set_src_caps_str(PCM_16K);
        h.push(pcm_buffer(&e)).unwrap();
        mark(h, "e");
    });
    let d = warm_up(16000, 8000);
    let b: Vec<i16> = b.iter().map(|&x| alaw::decode(x)).collect();
    let want: Vec<i16> = [
        through_mulaw(&resampled(16000, 8000, &a)[..805 + d]),
        through_mulaw(&b),
        through_mulaw(&c),
        through_mulaw(&resampled(16000, 8000, &e)[d..499 + d]),
    ]
    .concat();
    assert_same(&got, &want);
    assert_eq!(marks, [805 + 333 + 501, 805 + 333 + 501 + 499]);
}

/// Into a 16 kHz L16 call: μ-law upsampled (its tail flushed at the
/// change), PCM at 16 kHz as it is, μ-law again (its warm-up skipped, its
/// tail flushed at the end).
#[test]
fn mulaw_and_pcm_in_turn_into_an_l16_call_are_the_input_sample_for_sample() {
    let l16 = WireFormat::l16(16000, ByteOrder::Big);
    let ulaw: Vec<u8> = sine(700.0, 8000.0, 8000.0, 805)
        .iter()
        .map(|&s| g711::encode(s))
        .collect();
    let b = sine(440.0, 16000.0, 8000.0, 1610);
    let (got, marks) = sent(MULAW, l16, |h| {
        h.push(gst::Buffer::from_slice(ulaw.clone())).unwrap();
        h.set_src_caps_str(PCM_16K);
        mark(h, "pcm");
        h.push(pcm_buffer(&b)).unwrap();
        h.set_src_caps_str(MULAW);
        h.push(gst::Buffer::from_slice(ulaw.clone())).unwrap();
        mark(h, "mulaw");
    });
    let u = warm_up(8000, 16000);
    let decoded: Vec<i16> = ulaw.iter().map(|&x| g711::decode(x)).collect();
    let up = resampled(8000, 16000, &decoded);
    let mut want = [&up[..1610 + u], &b[..], &up[u..1610 + u]].concat();
    // (The stream ends in whole ticks of 125 µs: 2 samples at 16 kHz.)
    want.resize(want.len().next_multiple_of(2), 0);
    assert_same(&got, &want);
    assert_eq!(marks, [1610, 4830]);
}

/// Into a 24 kHz L16 call (3 samples a 125 µs tick): samples that make no
/// whole tick before a mark wait for the next frame, and the end pads the
/// last tick with silence; none is dropped.
#[test]
fn samples_short_of_a_tick_before_a_mark_are_not_dropped() {
    let l16 = WireFormat::l16(24000, ByteOrder::Big);
    let pcm = sine(440.0, 24000.0, 8000.0, 424);
    let (got, marks) = sent(
        "audio/x-raw,format=S16LE,rate=24000,channels=1,layout=interleaved",
        l16,
        |h| {
            h.push(pcm_buffer(&pcm[..161])).unwrap();
            mark(h, "a");
            h.push(pcm_buffer(&pcm[161..324])).unwrap();
            mark(h, "b");
            h.push(pcm_buffer(&pcm[324..])).unwrap();
        },
    );
    assert_same(&got, &[&pcm[..], &[0, 0]].concat());
    // The first mark half a tick early (2 samples wait), the second exact.
    assert_eq!(marks, [159, 324]);
}

/// A clear, then caps of another rate: the new resampler starts afresh
/// (no tail before it, nothing to skip), as after a clear alone.
#[test]
fn a_clear_then_another_rate_starts_afresh() {
    let a = sine(440.0, 16000.0, 8000.0, 1600);
    let b = sine(700.0, 48000.0, 8000.0, 4800);
    let mut h = sink_harness(PCM_16K);
    let sink = h.element().unwrap();
    let mut call = dial_as(&sink, CallParams::default());
    h.push(pcm_buffer(&a)).unwrap();
    assert!(sink.emit_by_name::<bool>("clear", &[]));
    h.set_src_caps_str("audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved");
    h.push(pcm_buffer(&b)).unwrap();
    mark(&mut h, "b");
    let got = receive_until(&mut call, |got| marks(got).contains(&"b".to_owned()));
    let cleared = got
        .iter()
        .position(|r| matches!(r, Received::Message(Outbound::Clear { .. }, _)))
        .unwrap();
    let (after, at) = decoded(WireFormat::PCMU, &got[cleared..]);
    // As long as the input, the warm-up first, as for a stream's start.
    assert_same(&after, &through_mulaw(&resampled(48000, 8000, &b)[..800]));
    assert_eq!(at, [800]);
}

/// Forty changes between 24 and 48 kHz, each part ending between two
/// output samples: the call gets as much audio as came in (and the first
/// warm-up), within a sample, and a mark after the last part lands after
/// as many samples as the input had: each change's rounding is made up
/// for at the next, not added up.
#[test]
fn many_changes_of_rate_do_not_add_up() {
    const PCM_24K: &str = "audio/x-raw,format=S16LE,rate=24000,channels=1,layout=interleaved";
    const PCM_48K: &str = "audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved";
    let a = sine(440.0, 24000.0, 8000.0, 301);
    let b = sine(440.0, 48000.0, 8000.0, 605);
    let (got, marks) = sent(PCM_24K, WireFormat::PCMU, |h| {
        for _ in 0..20 {
            h.set_src_caps_str(PCM_24K);
            h.push(pcm_buffer(&a)).unwrap();
            h.set_src_caps_str(PCM_48K);
            h.push(pcm_buffer(&b)).unwrap();
        }
        mark(h, "end");
    });
    // 20 × (301 / 3 + 605 / 6) samples at 8 kHz, and 20 of warm-up.
    let input = (20.0 * (301.0 / 3.0 + 605.0 / 6.0)) as usize;
    assert!(got.len().abs_diff(input + 20) <= 1, "{} samples", got.len());
    assert!(
        marks[0].abs_diff(input) <= 1,
        "mark after {} samples",
        marks[0]
    );
}
