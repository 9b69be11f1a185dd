//! An application that ends an echo with an EOS event on the pipeline (the
//! usual way to stop a GStreamer pipeline cleanly): the src's stream ends
//! at once, the paired sink plays out and ends the call, and the call's
//! last messages (the marks Twilio echoes during that playout, the EOS
//! mark, `twilio-ended`) are still posted, before the pipeline's EOS.

mod common;

use common::app::{pattern, realtime_call, wait_eos};
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::{Received, TwilioCall};

fn marks(messages: &[gst::Message]) -> Vec<String> {
    element_messages(messages, "twilio-mark")
        .iter()
        .map(|s| s.get::<String>("name").unwrap())
        .collect()
}

fn eos_event_keeps_the_calls_messages(between: &str, src_props: &str) {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {src_props} ! audio/x-mulaw {between} twiliostreamsink name=sink"
    ));
    let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    // Twilio plays what it gets in real time: the marks come back during
    // the sink's playout at EOS.
    let mut call = realtime_call(&url_of(&src));
    let sent = pattern(1, 10);
    for chunk in sent.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    receive_until(&mut call, |got| media_bytes(got).len() >= sent.len());
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"after-echo"]));
    assert!(p.send_event(gst::event::Eos::new()));

    let bus = p.bus().unwrap();
    let before_eos = wait_eos(&bus);
    assert_eq!(
        marks(&before_eos),
        ["after-echo", "twiliostream-eos"],
        "{between} {src_props}: marks posted before EOS"
    );
    let ended = element_messages(&before_eos, "twilio-ended");
    assert_eq!(ended.len(), 1, "{between} {src_props}: {before_eos:?}");
    assert_eq!(ended[0].get::<String>("reason").unwrap(), "eos");
    // Twilio was told the stream ended normally, after it played it all.
    let got = until_closed(&mut call);
    assert_eq!(got.last(), Some(&Received::Closed(Some(1000))), "{got:?}");
    set_state(&p, gst::State::Null);
}

#[test]
fn an_eos_event_keeps_the_calls_last_messages() {
    eos_event_keeps_the_calls_messages("!", "");
}

#[test]
fn the_same_through_a_queue() {
    eos_event_keeps_the_calls_messages("! queue !", "");
}

#[test]
fn the_same_from_the_streaming_thread() {
    eos_event_keeps_the_calls_messages("! queue !", "shared-threads=false");
}

/// A μ-law echo (`between` the src and the sink) playing, with a call whose
/// first 100 ms (`pattern(n, 5)`) came back.
fn echoing(between: &str, src_props: &str, n: usize) -> (gst::Pipeline, TwilioCall) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {src_props} ! audio/x-mulaw {between} twiliostreamsink"
    ));
    set_state(&p, gst::State::Playing);
    let mut call = common::app::instant_call(&url_of(&by_name(&p, "src")));
    let sent = pattern(n, 5);
    for chunk in sent.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    receive_until(&mut call, |got| media_bytes(got).len() >= sent.len());
    (p, call)
}

/// The application sends EOS and goes to NULL at once, without waiting for
/// the pipeline's EOS: the state change returns (the sink's playout and its
/// wait for the src end with it), the call is closed.
fn eos_then_null_at_once(between: &str, src_props: &str) {
    init();
    for round in 0..4 {
        let (p, mut call) = echoing(between, src_props, round);
        if round % 2 == 1 {
            call.send_stop().unwrap();
        }
        assert!(p.send_event(gst::event::Eos::new()));
        set_state(&p, gst::State::Null);
        let got = receive_until(&mut call, |got| {
            matches!(got.last(), Some(Received::Closed(_)))
        });
        assert!(matches!(got.last(), Some(Received::Closed(_))), "{got:?}");
    }
}

#[test]
fn eos_then_null_at_once_returns() {
    eos_then_null_at_once("! queue !", "");
}

#[test]
fn eos_then_null_at_once_returns_from_the_streaming_thread() {
    eos_then_null_at_once("! queue !", "shared-threads=false");
}

/// The caller hangs up (`stop`) just as the application sends EOS: the sink
/// has nothing to play out, but lets the EOS through only once the src has
/// posted `twilio-stop`, which it may read after its own EOS (an
/// application that quits at EOS would miss it). Once per call, and no
/// `twilio-ended`. (Whether the stop comes before or after the src's EOS
/// is chance: `sink_eos_held.rs` holds it there.)
fn stop_as_eos_is_sent(between: &str, src_props: &str) {
    init();
    for n in 0..8 {
        let (p, mut call) = echoing(between, src_props, n);
        call.send_stop().unwrap();
        assert!(p.send_event(gst::event::Eos::new()));
        let before_eos = wait_eos(&p.bus().unwrap());
        let stops = element_messages(&before_eos, "twilio-stop").len();
        let ended = element_messages(&before_eos, "twilio-ended").len();
        assert_eq!(
            (stops, ended),
            (1, 0),
            "{between} {src_props} call {n}: {before_eos:?}"
        );
        rt().block_on(call.close());
        set_state(&p, gst::State::Null);
    }
}

#[test]
fn a_stop_as_eos_is_sent_is_posted_before_eos() {
    stop_as_eos_is_sent("! queue !", "");
}

#[test]
fn a_stop_as_eos_is_sent_from_the_streaming_thread() {
    stop_as_eos_is_sent("! queue !", "shared-threads=false");
}

#[test]
fn a_stop_as_eos_is_sent_without_a_queue() {
    stop_as_eos_is_sent("!", "");
}

#[test]
fn a_stop_as_eos_is_sent_without_a_queue_from_the_streaming_thread() {
    stop_as_eos_is_sent("!", "shared-threads=false");
}
