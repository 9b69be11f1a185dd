//! An application that serves calls in a row by restarting the src alone
//! (NULL, then synced with its PLAYING pipeline) after each call's EOS,
//! the sink left PLAYING. The call's `stop` sent EOS through the sink;
//! the README has a paired sink follow its src to the next call without a
//! state change of its own, so every next call echoes exactly, and ends
//! with its own `twilio-stop` and EOS. Every wait is bounded.

mod common;

use common::app::*;
use common::sink::*;
use common::*;
use gst::prelude::*;

/// Bytes that differ per call and per chunk, with no call's bytes a shift
/// of another's (so an echo of one call is never taken for another's).
fn unique(seed: u64, chunks: usize) -> Vec<u8> {
    let mut r = common::rng::Rng::new(seed);
    (0..chunks * 160)
        .map(|_| (r.next() % 250) as u8 + 3)
        .collect()
}

/// Stops the src alone and starts it again with its pipeline.
fn restart_alone(src: &gst::Element) {
    let (tx, rx) = std::sync::mpsc::channel();
    let s = src.clone();
    std::thread::spawn(move || {
        s.set_state(gst::State::Null).unwrap();
        let _ = tx.send(s.sync_state_with_parent());
    });
    rx.recv_timeout(PATIENCE)
        .expect("src restart hung")
        .unwrap();
}

fn calls_after_eos(desc: &str) {
    let p = pipeline(desc);
    let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
    let bus = p.bus().unwrap();
    set_bounded(&p, gst::State::Playing);
    for n in 0..3u64 {
        let sent = unique(n + 1, 4);
        let mut call = instant_call(&url_of(&src));
        for chunk in sent.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= sent.len());
        assert_eq!(media_bytes(&got), sent, "{desc}: call {n}");
        call.send_stop().unwrap();
        rt().block_on(call.close());
        // The call's EOS went through the sink (and made the pipeline's).
        let messages = wait_eos(&bus);
        assert!(has_element(&messages, "twilio-stop"), "{desc}: call {n}");
        restart_alone(&src);
    }
    assert_eq!(sink.property::<u64>("chunks-sent"), 4, "{desc}");
    set_bounded(&p, gst::State::Null);
}

/// (Before: the sink, at EOS, dropped the src's next STREAM_START, which
/// failed the src's first push: an ERROR, "Internal data stream error",
/// and the next caller hung up at once, having heard nothing.)
#[test]
fn a_src_restarted_alone_after_its_calls_eos_echoes_the_next_call() {
    calls_after_eos("twiliostreamsrc name=src port=0 ! audio/x-mulaw ! twiliostreamsink name=sink");
}

#[test]
fn the_same_from_the_streaming_thread() {
    calls_after_eos(
        "twiliostreamsrc name=src port=0 shared-threads=false ! audio/x-mulaw \
         ! twiliostreamsink name=sink",
    );
}

#[test]
fn the_same_through_a_queue() {
    calls_after_eos(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! queue ! twiliostreamsink name=sink",
    );
}
