//! An EOS the sink holds at the end of a call, waiting for the call's last
//! messages (`twilio-stop`) to be posted before it, when the application
//! stops the pipeline meanwhile: the state change returns (the EOS is
//! dropped), whoever posts those messages. Where the sink waits is found
//! from its DEBUG log; the application's bus sync handler holds the
//! `twilio-stop` until the state change is done, so the wait cannot end
//! first.

mod common;

use std::sync::{Mutex, mpsc};

use common::peer::{Echo, Peer};
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

/// Each test holds a network thread in its sync handler: one at a time,
/// or together they would hold every thread of the plugin's runtime.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
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
/// waits for held), then lets the stop go: the state change must return,
/// the EOS dropped, as README says of a stop during the EOS wait (not
/// posted once the wait ran out: the pipeline has `message-forward` on, to
/// show the sink's own EOS message).
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
    let messages = drain_messages(&p.bus().unwrap());
    let eos = messages.iter().any(|m| {
        m.structure()
            .filter(|s| s.name() == "GstBinForwarded")
            .and_then(|s| s.get::<gst::Message>("message").ok())
            .is_some_and(|m| m.type_() == gst::MessageType::Eos)
    });
    assert!(!eos, "the sink posted its EOS: {messages:?}");
}

/// A sink listening itself: its poster posts the call's `twilio-stop`.
#[test]
fn a_lone_sink_stopped_while_its_eos_waits_for_twilio_stop() {
    let _one = one_at_a_time();
    init();
    let p = pipeline(
        "appsrc name=app format=time \
         caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved ! \
         twiliostreamsink name=sink port=0 sync=false",
    );
    p.set_property("message-forward", true);
    p.set_auto_flush_bus(false);
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

/// An echo (`between` the elements, the src with `src_props`) ended by an
/// EOS event, whose caller hangs up as the EOS is on its way to the sink
/// (held at the sink's pad until then): the src reads that `stop` after
/// its EOS, and the sink, finding the call stopped, waits for the src to
/// post `twilio-stop`. The pipeline, once the bus's sync handler (which
/// `hold` installs) holds that `twilio-stop`, and what the sink logs.
fn echo_stopped_after_its_eos(
    between: &str,
    src_props: &str,
    hold: impl FnOnce(&gst::Bus) -> mpsc::Receiver<()>,
) -> (gst::Pipeline, mpsc::Receiver<()>) {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {src_props} ! audio/x-mulaw {between} \
         twiliostreamsink name=sink"
    ));
    p.set_property("message-forward", true);
    p.set_auto_flush_bus(false);
    let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
    let held = hold(&p.bus().unwrap());
    let waiting = waiting_log(&sink);
    let (go, eos_held) = mpsc::channel::<()>();
    let eos_held = Mutex::new(eos_held);
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| match info.event().map(|e| e.type_()) {
            Some(gst::EventType::Eos) => {
                let _ = eos_held.lock().unwrap().recv_timeout(PATIENCE);
                gst::PadProbeReturn::Remove
            }
            _ => gst::PadProbeReturn::Ok,
        },
    );
    set_state(&p, gst::State::Playing);
    let peer = Peer::dial(&url_of(&src), Echo::Never);
    for n in 0..5 {
        peer.send_media(&[0x55; 160], n + 1, n * 20);
    }
    peer.wait_for("the echo", |st| !st.media.is_empty());
    assert!(p.send_event(gst::event::Eos::new()));
    peer.stop();
    held.recv_timeout(PATIENCE).expect("twilio-stop posted");
    go.send(()).unwrap();
    (p, waiting)
}

fn paired_sink_stopped_while_its_eos_waits(between: &str, src_props: &str) {
    let _one = one_at_a_time();
    let mut release = None;
    let (p, waiting) = echo_stopped_after_its_eos(between, src_props, |bus| {
        let (held, go) = hold_twilio_stop(bus);
        release = Some(go);
        held
    });
    waiting.recv_timeout(PATIENCE).expect("the EOS waits");
    null_returns_while_held(&p, release.unwrap());
}

#[test]
fn a_paired_sink_stopped_while_its_eos_waits_for_twilio_stop() {
    paired_sink_stopped_while_its_eos_waits("!", "");
}

#[test]
fn the_same_through_a_queue() {
    paired_sink_stopped_while_its_eos_waits("! queue !", "");
}

#[test]
fn the_same_from_the_streaming_thread() {
    paired_sink_stopped_while_its_eos_waits("!", "shared-threads=false");
}

#[test]
fn the_same_from_the_streaming_thread_through_a_queue() {
    paired_sink_stopped_while_its_eos_waits("! queue !", "shared-threads=false");
}

/// The application's sync handler holds `twilio-stop` (on the src's
/// thread) until the sink waits for it, or until the pipeline's EOS comes
/// without that wait: the sink must wait, and the stop come first.
fn a_held_twilio_stop_comes_before_eos(between: &str, src_props: &str) {
    let _one = one_at_a_time();
    let (eos_tx, eos) = mpsc::channel::<()>();
    let (release, released) = mpsc::channel::<()>();
    let (p, waiting) = echo_stopped_after_its_eos(between, src_props, move |bus| {
        let (held_tx, held) = mpsc::channel();
        let (held_tx, released, eos_tx) = (
            Mutex::new(held_tx),
            Mutex::new(released),
            Mutex::new(eos_tx),
        );
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Eos(_) = msg.view() {
                let _ = eos_tx.lock().unwrap().send(());
            } else if msg.structure().is_some_and(|s| s.name() == "twilio-stop") {
                let _ = held_tx.lock().unwrap().send(());
                let _ = released.lock().unwrap().recv_timeout(PATIENCE);
            }
            gst::BusSyncReply::Pass
        });
        held
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    let sink_waited = loop {
        if waiting.try_recv().is_ok() {
            break true;
        }
        if eos.try_recv().is_ok() {
            break false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither a wait nor EOS"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    release.send(()).unwrap();
    let before_eos = common::app::wait_eos(&p.bus().unwrap());
    set_state(&p, gst::State::Null);
    assert!(sink_waited, "{between} {src_props}: EOS before twilio-stop");
    let stops = element_messages(&before_eos, "twilio-stop").len();
    let ended = element_messages(&before_eos, "twilio-ended").len();
    assert_eq!(
        (stops, ended),
        (1, 0),
        "{between} {src_props}: {before_eos:?}"
    );
}

#[test]
fn a_held_twilio_stop_still_comes_before_eos() {
    a_held_twilio_stop_comes_before_eos("!", "");
}

#[test]
fn a_held_twilio_stop_through_a_queue() {
    a_held_twilio_stop_comes_before_eos("! queue !", "");
}

#[test]
fn a_held_twilio_stop_from_the_streaming_thread() {
    a_held_twilio_stop_comes_before_eos("!", "shared-threads=false");
}

#[test]
fn a_held_twilio_stop_from_the_streaming_thread_through_a_queue() {
    a_held_twilio_stop_comes_before_eos("! queue !", "shared-threads=false");
}
