//! An EOS the sink holds at the end of a call, waiting for the call's last
//! messages (`twilio-stop`) to be posted before it, when the application
//! stops the pipeline meanwhile: the state change returns (the EOS is
//! dropped), whoever posts those messages. Where the sink waits is found
//! from its DEBUG log; the application's bus sync handler holds the
//! `twilio-stop` until the state change is done, so the wait cannot end
//! first.

mod common;

use std::sync::{Mutex, mpsc};

use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::Playout;

/// The line the sink logs as its EOS begins to wait for the messages.
const WAITING: &str = "EOS: waiting for the call's last messages";

/// Holds each `twilio-stop` in `bus`'s sync handler (on the thread that
/// posts it) until `release` sends. Returns (a stop is held, release).
fn hold_twilio_stop(bus: &gst::Bus) -> (mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (held_tx, held) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let (held_tx, released) = (Mutex::new(held_tx), Mutex::new(released));
    bus.set_sync_handler(move |_, msg| {
        if msg.structure().is_some_and(|s| s.name() == "twilio-stop") {
            let _ = held_tx.lock().unwrap().send(());
            let _ = released.lock().unwrap().recv_timeout(PATIENCE);
        }
        gst::BusSyncReply::Pass
    });
    (held, release)
}

/// A channel told each time `sink` logs [`WAITING`].
fn waiting_log(sink: &gst::Element) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    on_log(sink, WAITING, move || {
        let _ = tx.lock().unwrap().send(());
    });
    rx
}

/// Takes `p` to NULL while the sink's EOS waits (the `twilio-stop` it
/// waits for held), then lets the stop go: the state change must return.
fn null_returns_while_held(p: &gst::Pipeline, release: mpsc::Sender<()>) {
    let (done_tx, done) = mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(p2.set_state(gst::State::Null));
    });
    let result = done.recv_timeout(PATIENCE);
    let _ = release.send(());
    let result = result.expect("deadlock: NULL did not return while the EOS waited");
    result.expect("NULL");
}

/// A sink listening itself: its poster posts the call's `twilio-stop`.
#[test]
fn a_lone_sink_stopped_while_its_eos_waits_for_twilio_stop() {
    init();
    let p = pipeline(
        "appsrc name=app format=time \
         caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved ! \
         twiliostreamsink name=sink port=0 sync=false",
    );
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    let (held, release) = hold_twilio_stop(&p.bus().unwrap());
    let waiting = waiting_log(&sink);
    set_state(&p, gst::State::Playing);
    let mut call = dial(&sink, Playout::Instant);
    push(&app, &sine(440.0, 8000.0, 8000.0, 800));
    receive_until(&mut call, |got| !media_bytes(got).is_empty());
    call.send_stop().unwrap();
    held.recv_timeout(PATIENCE).expect("twilio-stop posted");
    end_of_stream(&app);
    waiting.recv_timeout(PATIENCE).expect("the EOS waits");
    null_returns_while_held(&p, release);
}
