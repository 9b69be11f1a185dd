//! Helpers of the tests that pause an echo (twiliostreamsrc into
//! twiliostreamsink): a call through it whose first chunk came back, the
//! echo of what it sends, the elements' states, the end of it.

use gst::prelude::*;
use twilio_emulator::{Received, TwilioCall};

use super::app::*;
use super::sink::*;
use super::*;

/// The launch line of the plain echo, its elements called `src` and `sink`.
pub const ECHO: &str =
    "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! twiliostreamsink name=sink";

/// The first chunk of every call, echoed before the test begins.
pub const FIRST: [u8; 160] = [0x20; 160];

/// The pipeline of `desc` and its elements `src` and `sink`.
pub fn echo_pipeline(desc: &str) -> (gst::Pipeline, gst::Element, gst::Element) {
    let p = pipeline(desc);
    let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
    (p, src, sink)
}

/// Plays `p` and starts a call through `src` whose [`FIRST`] chunk came
/// back, with `shared-threads` pushed from a network thread. (Until the
/// pipeline plays, the src's streaming thread pushes; a sink learns which
/// src feeds it, to hold it when it pauses, from a network thread's push:
/// FIRST is sent again until one comes so.)
pub fn echoing_call(p: &gst::Pipeline, src: &gst::Element) -> TwilioCall {
    set_bounded(p, gst::State::Playing);
    let network = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pad = src.static_pad("src").unwrap();
    let seen = network.clone();
    let probe = pad
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            // The OS's name of the thread: the plugin's runtime names its own.
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
            if name.trim_end() == "twiliostream" {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            gst::PadProbeReturn::Ok
        })
        .unwrap();
    let mut call = instant_call(&url_of(src));
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        call.send_media(&FIRST).unwrap();
        // (One echo per chunk, in order: this one's sink has rendered it.)
        wait_until_echoed(&mut call, &[&FIRST]);
        if network.load(std::sync::atomic::Ordering::SeqCst)
            || !src.property::<bool>("shared-threads")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no chunk pushed from a network thread"
        );
    }
    pad.remove_probe(probe);
    call
}

/// Waits until every one of `chunks` came back.
pub fn wait_until_echoed(call: &mut TwilioCall, chunks: &[&[u8]]) {
    let echoed = |got: &[Received]| {
        let bytes = media_bytes(got);
        chunks
            .iter()
            .all(|c| bytes.windows(c.len()).any(|w| w == *c))
    };
    let got = receive_until(call, echoed);
    assert!(echoed(&got), "the call closed before the echo");
}

/// Sends `ulaw` as chunks of 160 bytes (20 ms).
pub fn send_chunks(call: &mut TwilioCall, ulaw: &[u8]) {
    for chunk in ulaw.chunks(160) {
        call.send_media(chunk).unwrap();
    }
}

/// Waits until every 160-byte chunk of `ulaw` came back.
pub fn wait_until_all_echoed(call: &mut TwilioCall, ulaw: &[u8]) {
    let chunks: Vec<&[u8]> = ulaw.chunks(160).collect();
    wait_until_echoed(call, &chunks);
}

/// Sends text that is no JSON and waits until `src` counted it: the call's
/// network thread reads on (nothing holds it in a paused sink).
pub fn assert_reads_on(call: &mut TwilioCall, src: &gst::Element) {
    call.send_text("not json").unwrap();
    counter_reaches(src, "invalid-messages", 1);
}

/// `element` is (or within 5 s gets) PLAYING, nothing pending.
pub fn assert_playing(element: &gst::Element) {
    let (_, cur, pending) = element.state(gst::ClockTime::from_seconds(5));
    assert_eq!(
        (cur, pending),
        (gst::State::Playing, gst::State::VoidPending),
        "{}",
        element.name()
    );
}

/// `element` is PAUSED now, nothing pending.
pub fn assert_paused_now(element: &gst::Element) {
    let (_, cur, pending) = element.state(gst::ClockTime::ZERO);
    assert_eq!(
        (cur, pending),
        (gst::State::Paused, gst::State::VoidPending),
        "{}",
        element.name()
    );
}

/// Twilio's `stop`, the close, then the pipeline stopped.
pub fn hang_up(mut call: TwilioCall, p: &gst::Pipeline) {
    call.send_stop().unwrap();
    rt().block_on(call.close());
    set_bounded(p, gst::State::Null);
}

/// The connection dropped without a `stop`, then the pipeline stopped.
pub fn drop_call(call: TwilioCall, p: &gst::Pipeline) {
    rt().block_on(call.abort());
    set_bounded(p, gst::State::Null);
}

/// Sends `n` chunks of a fresh pattern and waits for all of them back.
pub fn echo_round(call: &mut TwilioCall, n: usize) {
    let sent = pattern(n, 3);
    send_chunks(call, &sent);
    wait_until_all_echoed(call, &sent);
}

/// Sets `state` on `element` alone from another thread, failing (instead
/// of hanging) if that does not return.
pub fn set_element_bounded(element: &gst::Element, state: gst::State) {
    let (tx, rx) = std::sync::mpsc::channel();
    let e = element.clone();
    std::thread::spawn(move || {
        let _ = tx.send(e.set_state(state));
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("deadlock: {state:?} on {} did not return", element.name()))
        .unwrap_or_else(|e| panic!("{state:?}: {e}"));
}
