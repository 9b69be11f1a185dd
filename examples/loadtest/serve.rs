//! The server side (this binary with `--serve N --server KIND`, a child of
//! the driver): N echo pipelines of the plugin on one port, or the bare
//! floor. It answers the driver's questions on stdin/stdout, one line each:
//! `heap` (allocations, bytes, frames received so far) and `stats` (the
//! calls' counters). Anything else stops it.

use std::io::Write;

use gst::prelude::*;

use crate::{Kind, floor, heap, usage};

/// The server's pipeline for one call, on `port`.
pub fn pipeline(kind: Kind, port: u32) -> String {
    let (src, between, sink) = match kind {
        Kind::Default => ("", "!", ""),
        Kind::Queue => ("", "! queue !", ""),
        Kind::Tuned => (" quality-interval=0", "! audio/x-mulaw !", ""),
        Kind::Streaming => (" shared-threads=false", "! queue !", " sync=true"),
        Kind::Floor | Kind::GstFloor | Kind::GstFloor2 | Kind::GstFloorQueue => {
            unreachable!("the floors run no pipeline")
        }
    };
    format!(
        "twiliostreamsrc name=src port={port} path=/echo{src} {between} twiliostreamsink name=sink{sink}"
    )
}

/// What the driver prints for `kind`.
pub fn describe(kind: Kind) -> String {
    match kind {
        Kind::Floor => "bare tokio-tungstenite echo, JSON + base64 (the floor)".to_owned(),
        Kind::GstFloor => {
            "the floor, each chunk also pushed from a pad into `fakesink sync=false`".to_owned()
        }
        Kind::GstFloor2 => "the floor, each chunk also pushed from a pad through \
            `capsfilter` into `fakesink sync=false`"
            .to_owned(),
        Kind::GstFloorQueue => "the floor, each chunk also pushed from a pad through \
            `queue` into `fakesink sync=false`, echoed once it reached the sink"
            .to_owned(),
        kind => format!(
            "`{}`",
            pipeline(kind, 0)
                .replace(" name=src port=0 path=/echo", "")
                .replace(" name=sink", "")
        ),
    }
}

pub fn serve(n: usize, kind: Kind) {
    let out = std::io::stdout();
    let (_, base_rss) = usage(std::process::id());
    let via = match kind {
        Kind::Floor => Some(floor::Via::Nothing),
        Kind::GstFloor => Some(floor::Via::Pad),
        Kind::GstFloor2 => Some(floor::Via::Capsfilter),
        Kind::GstFloorQueue => Some(floor::Via::Queue),
        _ => None,
    };
    if let Some(via) = via {
        if via != floor::Via::Nothing {
            gst::init().unwrap();
        }
        // Configured as the plugin's runtime is: as many workers, the same
        // wait before they sleep (TWILIOSTREAM_BATCH_WAIT_US).
        let runtime = gsttwiliostream::runtime::builder().build().unwrap();
        let port = floor::serve(&runtime, via);
        writeln!(out.lock(), "READY {port} {base_rss}").unwrap();
        answer(&out, || {
            let frames = floor::FRAMES.load(std::sync::atomic::Ordering::Relaxed);
            [frames, 0, 0, 0, frames]
        });
        return;
    }
    gst::init().unwrap();
    gsttwiliostream::plugin_register_static().unwrap();
    let mut pipelines = Vec::with_capacity(n);
    let mut port = 0;
    for _ in 0..n {
        let p = gst::parse::launch(&pipeline(kind, port))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        port = p.by_name("src").unwrap().property::<u32>("bound-port");
        pipelines.push(p);
    }
    writeln!(out.lock(), "READY {port} {base_rss}").unwrap();
    let elements: Vec<(gst::Element, gst::Element)> = pipelines
        .iter()
        .map(|p| (p.by_name("src").unwrap(), p.by_name("sink").unwrap()))
        .collect();
    answer(&out, || {
        let mut totals = [0u64; 5];
        for (src, sink) in &elements {
            totals[0] += src.property::<u64>("chunks-received");
            totals[1] += src.property::<u64>("chunks-lost");
            totals[2] += src.property::<u64>("overruns");
            totals[3] += src.property::<u64>("invalid-messages");
            totals[4] += sink.property::<u64>("chunks-sent");
        }
        totals
    });
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
}

/// Answers the driver until it says stop. `counters` gives frames
/// received, lost, overruns, invalid messages and frames sent.
fn answer(out: &std::io::Stdout, counters: impl Fn() -> [u64; 5]) {
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "heap" => {
                // The allocation counters first: what reading the
                // properties allocates falls in the next interval (and is
                // far below its noise).
                let (calls, bytes) = heap::allocated();
                let frames = counters()[0];
                writeln!(out.lock(), "HEAP {calls} {bytes} {frames}").unwrap();
            }
            "stats" => {
                let t = counters().map(|v| v.to_string()).join(" ");
                writeln!(out.lock(), "STATS {t}").unwrap();
            }
            _ => break,
        }
    }
}
