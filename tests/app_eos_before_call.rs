//! An application that ends a src's stream with an EOS event before any
//! call came (retiring a pipeline of a pool): the src takes no call from
//! then on, until it starts again. A call goes to another element of its
//! path, or is refused as when the src holds one. (Before, the src took
//! the next call into its ended stream: the caller heard silence, and
//! nothing was posted.)

mod common;

use common::app::{free_port, pattern, wait_eos};
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::call::WsError;
use twilio_emulator::{CallParams, TwilioCall};

/// A src on `port` and `/media` (with `props`) recording at 8 kHz,
/// PLAYING: the pipeline, the src and what it outputs.
fn listening(port: u16, props: &str) -> (gst::Pipeline, gst::Element, Collector) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/media {props} ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false"
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    (p, src, collector)
}

/// Ends `p`'s stream with an EOS event and waits for its EOS.
fn retire(p: &gst::Pipeline) {
    assert!(p.send_event(gst::event::Eos::new()));
    wait_eos(&p.bus().unwrap());
}

/// A whole call of `chunks` chunks on `url`: its audio.
fn call(url: &str, chunks: usize) -> Vec<u8> {
    let audio = pattern(1, chunks);
    rt().block_on(async {
        let mut call = TwilioCall::start(url, CallParams::default()).await.unwrap();
        for chunk in audio.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    audio
}

#[test]
fn a_call_goes_past_a_src_ended_before_any_call_to_a_free_one() {
    init();
    let port = free_port();
    // The retired one listens first: before, it took the call.
    let (retired, retired_src, _) = listening(port, "");
    let (p, src, collector) = listening(port, "");
    retire(&retired);
    let audio = call(&format!("ws://127.0.0.1:{port}/media"), 10);
    assert_eq!(collector.wait_eos().samples(), decode(&audio));
    assert_eq!(src.property::<u64>("chunks-received"), 10);
    assert_eq!(retired_src.property::<u64>("chunks-received"), 0);
    assert!(retired_src.property::<Option<String>>("call-sid").is_none());
    set_state(&retired, gst::State::Null);
    set_state(&p, gst::State::Null);
}

#[test]
fn a_src_ended_before_any_call_refuses_calls_until_it_starts_again() {
    init();
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}/media");
    let (p, src, _) = listening(port, "pending-timeout=0");
    retire(&p);
    rt().block_on(async {
        match TwilioCall::connect(&url, CallParams::default()).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
            Err(other) => panic!("expected HTTP 503, got {other}"),
            Ok(_) => panic!("expected HTTP 503, the upgrade succeeded"),
        }
    });
    assert_eq!(src.property::<u64>("refused-calls"), 1);
    // Started again, it takes the next call.
    set_state(&p, gst::State::Null);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let audio = call(&url, 5);
    assert_eq!(collector.wait_eos().samples(), decode(&audio));
    set_state(&p, gst::State::Null);
}
