//! An echo whose call ends while audio is still on its way to the sink: the
//! src still posts the call's end (`twilio-stop`, `twilio-ended`, or the
//! WARNING of a dropped connection) before EOS. The sink must not end the
//! src's stream first by answering a buffer of the ended call with EOS.
//!
//! A gate between the two holds one buffer until the call's socket is
//! closed, as a slow branch (a queue, a busy streaming thread) would.

mod common;

use std::sync::mpsc;

use common::app::wait_eos;
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, Playout, TwilioCall};

/// An echo with a gate: the second buffer reaching the sink waits until
/// the returned sender says go.
fn gated_echo(src_props: &str) -> (gst::Pipeline, gst::Element, mpsc::Sender<()>) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {src_props} ! identity name=gate ! twiliostreamsink name=sink"
    ));
    let (go, gate) = mpsc::channel::<()>();
    let gate = std::sync::Mutex::new(gate);
    let seen = std::sync::atomic::AtomicUsize::new(0);
    by_name(&p, "gate").static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BUFFER,
        move |_, _| {
            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                let _ = gate.lock().unwrap().recv_timeout(PATIENCE);
            }
            gst::PadProbeReturn::Ok
        },
    );
    let src = by_name(&p, "src");
    set_state(&p, gst::State::Playing);
    (p, src, go)
}

/// Dials `src` and sends `n` chunks.
fn call_with_media(src: &gst::Element, n: usize) -> TwilioCall {
    let url = url_of(src);
    rt().block_on(async {
        let mut call = TwilioCall::connect_with(&url, CallParams::default(), Playout::Instant)
            .await
            .unwrap();
        call.begin().unwrap();
        for _ in 0..n {
            call.send_media(&[0x55; 160]).unwrap();
        }
        call
    })
}

/// Waits until the src's call is no longer connected (its socket closed).
fn wait_disconnected(src: &gst::Element) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while src.property::<bool>("connected") {
        assert!(std::time::Instant::now() < deadline, "still connected");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The bus until EOS (or an ERROR, which fails).
fn until_eos(p: &gst::Pipeline) -> Vec<gst::Message> {
    wait_eos(&p.bus().unwrap())
}

fn stop(p: &gst::Pipeline) {
    set_state(p, gst::State::Null);
}

fn callers_hang_up_is_posted(src_props: &str) {
    let (p, src, go) = gated_echo(src_props);
    let mut call = call_with_media(&src, 5);
    receive_until(&mut call, |got| !media_bytes(got).is_empty());
    call.send_stop().unwrap();
    rt().block_on(call.close());
    wait_disconnected(&src);
    go.send(()).unwrap();
    let messages = until_eos(&p);
    assert!(
        has_element(&messages, "twilio-stop"),
        "no twilio-stop before EOS: {messages:?}"
    );
    stop(&p);
}

#[test]
fn the_callers_hang_up_is_posted_though_audio_was_on_its_way() {
    callers_hang_up_is_posted("shared-threads=false");
}

#[test]
fn end_stream_posts_twilio_ended_though_audio_was_on_its_way() {
    let (p, src, go) = gated_echo("shared-threads=false");
    let mut call = call_with_media(&src, 5);
    receive_until(&mut call, |got| !media_bytes(got).is_empty());
    assert!(src.emit_by_name::<bool>("end-stream", &[&false]));
    wait_disconnected(&src);
    go.send(()).unwrap();
    let messages = until_eos(&p);
    let ended = element_messages(&messages, "twilio-ended");
    assert_eq!(ended.len(), 1, "no twilio-ended before EOS: {messages:?}");
    assert_eq!(ended[0].get::<String>("reason").unwrap(), "end-stream");
    rt().block_on(call.abort());
    stop(&p);
}

#[test]
fn a_dropped_connection_is_warned_of_though_audio_was_on_its_way() {
    let (p, src, go) = gated_echo("shared-threads=false");
    let mut call = call_with_media(&src, 5);
    receive_until(&mut call, |got| !media_bytes(got).is_empty());
    rt().block_on(call.abort());
    wait_disconnected(&src);
    go.send(()).unwrap();
    let messages = until_eos(&p);
    assert!(
        messages
            .iter()
            .any(|m| matches!(m.view(), gst::MessageView::Warning(_))),
        "no WARNING before EOS: {messages:?}"
    );
    stop(&p);
}

/// A sink fed by another branch than its src's (paired by `call-name`):
/// once the src has read the call's end (`stop`) and the socket is
/// closed, the sink answers with EOS, though events came after `stop`
/// (a DTMF digit) that the src, at its EOS, never reads.
#[test]
fn a_sink_fed_elsewhere_gets_eos_though_events_came_after_stop() {
    let p = pipeline("twiliostreamsrc name=src port=0 call-name=after-stop ! fakesink");
    let src = by_name(&p, "src");
    set_state(&p, gst::State::Playing);
    let mut h = sink_harness_with(
        "audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved",
        |sink| sink.set_property("call-name", "after-stop"),
    );
    let mut call = call_with_media(&src, 2);
    h.push(pcm_buffer(&[0; 160])).unwrap();
    receive_until(&mut call, |got| !media_bytes(got).is_empty());
    call.send_stop().unwrap();
    call.send_dtmf("1").unwrap();
    rt().block_on(call.close());
    let messages = until_eos(&p);
    assert!(has_element(&messages, "twilio-stop"), "{messages:?}");
    wait_disconnected(&src);
    push_until_eos(&mut h, "the sink takes buffers of a closed call for good");
    stop(&p);
}
