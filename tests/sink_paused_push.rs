//! A sink paused while a chunk is on its way from a network thread (a bin
//! pauses its sinks before their sources) drops that buffer instead of
//! prerolling it: prerolling would hold the network thread, and every call
//! on it, until the sink plays again.
//!
//! A gate on the src's pad holds one chunk on the call's network thread
//! while the test pauses the pipeline, then lets it through into the paused
//! sink; the call's next message must then be read (a malformed one,
//! counted at once), which it cannot while that thread is held in the sink.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, TwilioCall};

const CHUNK: [u8; 160] = [0x20; 160];

#[test]
fn a_chunk_in_flight_when_the_sink_pauses_does_not_hold_the_network_thread() {
    let p = pipeline("twiliostreamsrc name=src port=0 ! twiliostreamsink name=sink");
    let src = by_name(&p, "src");
    let armed = Arc::new(AtomicBool::new(false));
    let (at_gate, reached) = mpsc::channel::<()>();
    let (go, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let (seen, chunks) = mpsc::channel::<()>();
    let armed_in_probe = armed.clone();
    src.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if armed_in_probe.swap(false, Ordering::SeqCst) {
                at_gate.send(()).unwrap();
                gate.lock().unwrap().recv().unwrap();
            } else {
                let _ = seen.send(());
            }
            gst::PadProbeReturn::Ok
        });
    set_state(&p, gst::State::Playing);
    let url = url_of(&src);
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&CHUNK).unwrap();
        call
    });
    chunks.recv_timeout(PATIENCE).expect("the first chunk");
    // The next chunk waits at the gate, on the network thread, while the
    // sink alone goes to PAUSED.
    armed.store(true, Ordering::SeqCst);
    call.send_media(&CHUNK).unwrap();
    reached.recv_timeout(PATIENCE).expect("a chunk at the gate");
    set_state(&p, gst::State::Paused);
    go.send(()).unwrap();
    // Were that chunk prerolled, the call's task would wait in the sink
    // until PLAYING and read nothing more.
    call.send_text("not json").unwrap();
    counter_reaches(&src, "invalid-messages", 1);
    set_state(&p, gst::State::Playing);
    rt().block_on(async {
        call.send_stop().unwrap();
        call.close().await;
    });
    set_state(&p, gst::State::Null);
}
