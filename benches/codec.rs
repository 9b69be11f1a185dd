//! Per-frame cost of the codec and wire paths, against GStreamer's own
//! elements doing the same conversion, in the same run.
//!
//! `cargo bench --bench codec` prints a table: nanoseconds per 20 ms frame
//! (median of several timed batches), bytes allocated per frame in steady
//! state (counted by a wrapping global allocator), and how many times
//! cheaper our path is than the GStreamer chain a user would otherwise use.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_check::Harness;
use gsttwiliostream::codec::{Downsampler, Upsampler, g711};
use gsttwiliostream::protocol::{Inbound, write_media_json};

/// Counts every allocation, to report bytes allocated per frame.
struct Counting;

static ALLOCATED: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const BATCHES: usize = 15;
const BATCH_TIME: Duration = Duration::from_millis(60);

struct Measured {
    ns_per_frame: f64,
    bytes_per_frame: Option<f64>,
}

/// Median ns per call of `f` over several batches, and steady-state bytes
/// allocated per call (None when the allocations are not ours to count).
fn measure(mut f: impl FnMut(), count_alloc: bool) -> Measured {
    // Warm up, and size the batches.
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() > BATCH_TIME / 4 {
            break;
        }
        iters *= 2;
    }
    let iters = (iters * 4).max(1);
    let mut samples = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        samples.push(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    samples.sort_by(f64::total_cmp);
    let bytes_per_frame = count_alloc.then(|| {
        let before = ALLOCATED.load(Ordering::Relaxed);
        for _ in 0..1000 {
            f();
        }
        (ALLOCATED.load(Ordering::Relaxed) - before) as f64 / 1000.0
    });
    Measured {
        ns_per_frame: samples[BATCHES / 2],
        bytes_per_frame,
    }
}

fn speechlike(rate: usize, len: usize) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = n as f64 / rate as f64;
            let v: f64 = [
                (310.0, 1.0),
                (720.0, 0.6),
                (1230.0, 0.4),
                (2050.0, 0.25),
                (2900.0, 0.15),
            ]
            .iter()
            .map(|(f, a)| a * (2.0 * std::f64::consts::PI * f * t).sin())
            .sum();
            (6000.0 * v) as i16
        })
        .collect()
}

fn s16le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// The same frames through `chain` in a Harness (pushed in this thread:
/// element cost only, no thread hand-off).
fn gst_harness(chain: &str, in_caps: &str, out_caps: &str, frames: &[Vec<u8>]) -> Measured {
    let mut h = Harness::new_parse(chain);
    h.set_src_caps_str(in_caps);
    h.set_sink_caps_str(out_caps);
    let buffers: Vec<gst::Buffer> = frames
        .iter()
        .map(|f| gst::Buffer::from_slice(f.clone()))
        .collect();
    let mut i = 0;
    let mut pts = gst::ClockTime::ZERO;
    measure(
        || {
            let mut b = buffers[i % buffers.len()].copy();
            b.get_mut().unwrap().set_pts(pts);
            pts += gst::ClockTime::from_mseconds(20);
            i += 1;
            h.push(b).unwrap();
            while let Some(out) = h.try_pull() {
                black_box(out);
            }
        },
        false,
    )
}

/// The same frames through `appsrc ! chain ! appsink`, as an application
/// would run them: a push, then a pull of the result.
fn gst_pipeline(chain: &str, in_caps: &str, frames: &[Vec<u8>]) -> Measured {
    let p = gst::parse::launch(&format!(
        "appsrc name=src format=time caps={in_caps} ! {chain} ! appsink name=sink sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = p.by_name("src").unwrap();
    let sink = p.by_name("sink").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let buffers: Vec<gst::Buffer> = frames
        .iter()
        .map(|f| gst::Buffer::from_slice(f.clone()))
        .collect();
    let mut i = 0;
    let mut pts = gst::ClockTime::ZERO;
    let m = measure(
        || {
            let mut b = buffers[i % buffers.len()].copy();
            b.get_mut().unwrap().set_pts(pts);
            pts += gst::ClockTime::from_mseconds(20);
            i += 1;
            let _ = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&b]);
            let sample = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]);
            black_box(sample);
        },
        false,
    );
    p.set_state(gst::State::Null).unwrap();
    m
}

struct Row {
    what: &'static str,
    ours: Measured,
    /// The chain, and its cost through a Harness (no thread hand-off).
    theirs: Option<(&'static str, f64)>,
    /// Its cost as an application runs it: appsrc ! … ! appsink.
    app: Option<f64>,
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing
    // of interest either. Both run the whole table.
    gst::init().unwrap();
    let frames_16k: Vec<Vec<i16>> = speechlike(16000, 320 * 50)
        .chunks(320)
        .map(|c| c.to_vec())
        .collect();
    let frames_8k: Vec<Vec<u8>> = {
        let pcm = speechlike(8000, 160 * 50);
        let mut ulaw = vec![0; pcm.len()];
        g711::encode_slice(&pcm, &mut ulaw);
        ulaw.chunks(160).map(|c| c.to_vec()).collect()
    };
    let sid = "MZ18ad3ab5a668481ce02b83e7395059f0";
    let media_json: Vec<String> = frames_8k
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut s = String::new();
            write_media_json(sid, f, &mut s);
            // Twilio's inbound shape: sequenceNumber, chunk, timestamp too.
            s.replace(
                r#""media":{"#,
                &format!(r#""sequenceNumber":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","#, i + 2, i + 1, 20 * i + 155),
            )
        })
        .collect();

    let mut rows = Vec::new();

    // Encode path: 16 kHz S16LE -> 8 kHz μ-law.
    let mut down = Downsampler::new(16000).unwrap();
    let mut pcm8k = Vec::with_capacity(160);
    let mut ulaw = vec![0u8; 160];
    let mut i = 0;
    let ours = measure(
        || {
            pcm8k.clear();
            down.process(&frames_16k[i % frames_16k.len()], &mut pcm8k);
            g711::encode_slice(&pcm8k, &mut ulaw[..pcm8k.len()]);
            black_box(&ulaw);
            i += 1;
        },
        true,
    );
    let raw16: Vec<Vec<u8>> = frames_16k.iter().map(|f| s16le(f)).collect();
    let pcm16_caps = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved";
    let mulaw_caps = "audio/x-mulaw,rate=8000,channels=1";
    let enc_h = gst_harness("audioresample ! mulawenc", pcm16_caps, mulaw_caps, &raw16);
    let enc_p = gst_pipeline("audioresample ! mulawenc", pcm16_caps, &raw16);
    rows.push(Row {
        what: "encode: 16 kHz S16LE -> 8 kHz μ-law",
        ours,
        theirs: Some(("audioresample ! mulawenc", enc_h.ns_per_frame)),
        app: Some(enc_p.ns_per_frame),
    });

    // Decode path: μ-law -> 16 kHz S16LE.
    let mut up = Upsampler::new();
    let mut pcm8 = vec![0i16; 160];
    let mut pcm16 = vec![0i16; 320];
    let mut i = 0;
    let ours = measure(
        || {
            g711::decode_slice(&frames_8k[i % frames_8k.len()], &mut pcm8);
            up.process(&pcm8, &mut pcm16);
            black_box(&pcm16);
            i += 1;
        },
        true,
    );
    let dec_h = gst_harness(
        "mulawdec ! audioresample",
        mulaw_caps,
        pcm16_caps,
        &frames_8k,
    );
    let dec_p = gst_pipeline(
        "mulawdec ! audioresample ! audio/x-raw,rate=16000",
        mulaw_caps,
        &frames_8k,
    );
    rows.push(Row {
        what: "decode: μ-law -> 16 kHz S16LE",
        ours,
        theirs: Some(("mulawdec ! audioresample", dec_h.ns_per_frame)),
        app: Some(dec_p.ns_per_frame),
    });

    // Other input rates of the sink.
    for (rate, label) in [
        (24000usize, "encode: 24 kHz S16LE -> 8 kHz μ-law"),
        (48000, "encode: 48 kHz S16LE -> 8 kHz μ-law"),
    ] {
        let frames: Vec<Vec<i16>> = speechlike(rate, rate / 50 * 50)
            .chunks(rate / 50)
            .map(|c| c.to_vec())
            .collect();
        let mut down = Downsampler::new(rate as u32).unwrap();
        let mut i = 0;
        let ours = measure(
            || {
                pcm8k.clear();
                down.process(&frames[i % frames.len()], &mut pcm8k);
                g711::encode_slice(&pcm8k, &mut ulaw[..pcm8k.len()]);
                black_box(&ulaw);
                i += 1;
            },
            true,
        );
        let raw: Vec<Vec<u8>> = frames.iter().map(|f| s16le(f)).collect();
        let caps = format!("audio/x-raw,format=S16LE,rate={rate},channels=1,layout=interleaved");
        let theirs = gst_harness("audioresample ! mulawenc", &caps, mulaw_caps, &raw);
        rows.push(Row {
            what: label,
            ours,
            theirs: Some(("audioresample ! mulawenc", theirs.ns_per_frame)),
            app: None,
        });
    }

    // Wire, inbound: parse a media message and decode its base64.
    let mut payload = Vec::with_capacity(160);
    let mut i = 0;
    let wire_in = measure(
        || {
            let msg = Inbound::parse(&media_json[i % media_json.len()]).unwrap();
            if let Inbound::Media { media, .. } = msg {
                media.decode_payload(&mut payload).unwrap();
            }
            black_box(&payload);
            i += 1;
        },
        true,
    );
    let wire_in_ns = wire_in.ns_per_frame;
    rows.push(Row {
        what: "wire in: parse media JSON + base64 decode",
        ours: wire_in,
        theirs: None,
        app: None,
    });

    // Wire, outbound: build a media message with base64.
    let mut json = String::with_capacity(512);
    let mut i = 0;
    let wire_out = measure(
        || {
            write_media_json(sid, &frames_8k[i % frames_8k.len()], &mut json);
            black_box(&json);
            i += 1;
        },
        true,
    );
    let wire_out_ns = wire_out.ns_per_frame;
    rows.push(Row {
        what: "wire out: media JSON + base64 encode",
        ours: wire_out,
        theirs: None,
        app: None,
    });

    // Whole per-frame paths.
    let mut up = Upsampler::new();
    let mut i = 0;
    let ours = measure(
        || {
            let msg = Inbound::parse(&media_json[i % media_json.len()]).unwrap();
            if let Inbound::Media { media, .. } = msg {
                media.decode_payload(&mut payload).unwrap();
            }
            g711::decode_slice(&payload, &mut pcm8);
            up.process(&pcm8, &mut pcm16);
            black_box(&pcm16);
            i += 1;
        },
        true,
    );
    rows.push(Row {
        what: "whole in: JSON -> 16 kHz S16LE",
        ours,
        theirs: Some(("mulawdec ! audioresample", dec_h.ns_per_frame)),
        app: Some(dec_p.ns_per_frame),
    });
    let mut down = Downsampler::new(16000).unwrap();
    let mut i = 0;
    let ours = measure(
        || {
            pcm8k.clear();
            down.process(&frames_16k[i % frames_16k.len()], &mut pcm8k);
            g711::encode_slice(&pcm8k, &mut ulaw[..pcm8k.len()]);
            write_media_json(sid, &ulaw, &mut json);
            black_box(&json);
            i += 1;
        },
        true,
    );
    rows.push(Row {
        what: "whole out: 16 kHz S16LE -> JSON",
        ours,
        theirs: Some(("audioresample ! mulawenc", enc_h.ns_per_frame)),
        app: Some(enc_p.ns_per_frame),
    });

    println!();
    println!(
        "Per 20 ms frame, median of {BATCHES} batches ({} CPUs)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| path | ours (ns) | allocated (B) | GStreamer chain | GStreamer, Harness (ns) | ratio | GStreamer, appsrc ! … ! appsink (ns) | ratio |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|");
    let ratio = |theirs: f64, ours: f64| format!("{:.1}×", theirs / ours);
    for row in &rows {
        let ours = row.ours.ns_per_frame;
        let alloc = row
            .ours
            .bytes_per_frame
            .map_or("-".to_owned(), |b| format!("{b:.0}"));
        let (chain, harness) = match row.theirs {
            Some((chain, ns)) => (
                format!("`{chain}`"),
                format!("{ns:.0} | {}", ratio(ns, ours)),
            ),
            None => (String::new(), " | ".to_owned()),
        };
        let app = row.app.map_or(" | ".to_owned(), |ns| {
            format!("{ns:.0} | {}", ratio(ns, ours))
        });
        println!(
            "| {} | {ours:.0} | {alloc} | {chain} | {harness} | {app} |",
            row.what
        );
    }
    println!();
    println!(
        "Harness: buffers pushed and pulled on one thread, the chain's cost alone. \
         appsrc ! … ! appsink: a pipeline as an application runs it (push, then pull)."
    );
    println!("Wire alone: in {wire_in_ns:.0} ns, out {wire_out_ns:.0} ns");
}
