//! The codec against GStreamer's own G.711 elements: decoding must agree on
//! every code; encoding differs from `mulawenc` exactly where
//! twilio-protocol.md says it does (G.191 rounds a few negative inputs
//! differently from the classic BIAS formula).

mod common;

use gst_check::Harness;
use gsttwiliostream::codec::g711;

fn run(element: &str, caps: &str, input: Vec<u8>) -> Vec<u8> {
    common::init();
    let mut h = Harness::new(element);
    h.set_src_caps_str(caps);
    h.push(gst::Buffer::from_mut_slice(input)).unwrap();
    let out = h.pull().unwrap();
    out.map_readable().unwrap().to_vec()
}

#[test]
fn decode_agrees_with_mulawdec_on_every_code() {
    let codes: Vec<u8> = (0..=255).collect();
    let out = run(
        "mulawdec",
        "audio/x-mulaw,rate=8000,channels=1",
        codes.clone(),
    );
    let theirs: Vec<i16> = out
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    let ours: Vec<i16> = codes.iter().map(|&c| g711::decode(c)).collect();
    assert_eq!(ours, theirs);
}

#[test]
fn encode_differs_from_mulawenc_only_by_g191_rounding() {
    let samples: Vec<i16> = (i16::MIN..=i16::MAX).collect();
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let theirs = run(
        "mulawenc",
        "audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved",
        bytes,
    );
    assert_eq!(theirs.len(), samples.len());
    let mut differ = 0;
    for (&s, &t) in samples.iter().zip(&theirs) {
        let o = g711::encode(s);
        if o != t {
            differ += 1;
            assert!(s < 0, "differs on non-negative input {s}");
            // One quantisation step apart: the decoded values are neighbours.
            let (a, b) = (g711::decode(o) as i32, g711::decode(t) as i32);
            assert!(
                (a - s as i32).abs() <= (b - s as i32).abs() + 1024,
                "{s}: {a} vs {b}"
            );
            assert_eq!((o as i32 - t as i32).abs(), 1, "{s}: {o:#04x} vs {t:#04x}");
        }
    }
    assert_eq!(
        differ, 127,
        "twilio-protocol.md: mulawenc differs from G.191 on 127 inputs"
    );
}
