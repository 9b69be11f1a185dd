//! A buffer that waits in the sink's `prepare()` for its call holds
//! BaseSink's preroll lock, which PAUSED → PLAYING takes: with `async=false`
//! (or a live pipeline, where PLAYING does not wait for the preroll) the
//! state change waited for the call, and a pipeline that nobody called
//! could not be played, nor stopped (the state lock held meanwhile). A
//! pause meanwhile ended the wait with FLUSHING, which stopped the source
//! upstream for good: the call, once it came, got no audio.

mod common;

use std::sync::{Mutex, mpsc};
use std::time::Duration;

use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{Playout, Received};

/// The sink `s` of `p`, and word each time it waits for a call.
fn waiting_sink(p: &gst::Pipeline) -> (gst::Element, mpsc::Receiver<()>) {
    let sink = by_name(p, "s");
    let (waiting, waits) = mpsc::channel();
    let waiting = Mutex::new(waiting);
    on_log(&sink, "waiting for a call", move || {
        let _ = waiting.lock().unwrap().send(());
    });
    (sink, waits)
}

/// Sets `p` to PLAYING on a thread of its own: the thread, and the result
/// if it came within 10 s.
fn play_aside(
    p: &gst::Pipeline,
) -> (
    std::thread::JoinHandle<()>,
    Result<Result<gst::StateChangeSuccess, gst::StateChangeError>, mpsc::RecvTimeoutError>,
) {
    let (played, done) = mpsc::channel();
    let playing = {
        let p = p.clone();
        std::thread::spawn(move || {
            let _ = played.send(p.set_state(gst::State::Playing));
        })
    };
    (playing, done.recv_timeout(Duration::from_secs(10)))
}

/// The call gets media, and is not closed.
fn assert_gets_audio(call: &mut twilio_emulator::TwilioCall) {
    let got = receive_until(call, |got| {
        got.iter()
            .any(|r| matches!(r, Received::Message(Outbound::Media { .. }, _)))
    });
    assert!(!got.iter().any(|r| matches!(r, Received::Closed(_))));
}

#[test]
fn playing_does_not_wait_for_the_call_a_buffer_waits_for() {
    let p = pipeline(&format!(
        "audiotestsrc ! {PCM_8K} ! twiliostreamsink name=s port=0 async=false"
    ));
    let (sink, waits) = waiting_sink(&p);
    set_state(&p, gst::State::Paused);
    waits
        .recv_timeout(PATIENCE)
        .expect("no buffer waited for the call");
    let (playing, result) = play_aside(&p);
    // A call ends the wait either way.
    let mut call = dial(&sink, Playout::Instant);
    playing.join().unwrap();
    let result = result.expect("PLAYING waited for a call");
    assert_eq!(result, Ok(gst::StateChangeSuccess::Success));
    // The call gets the audio.
    assert_gets_audio(&mut call);
    set_state(&p, gst::State::Null);
}

/// The same for a `twilio-mark` event that comes before any buffer: it
/// waits for the call too, and PLAYING does not wait for it.
#[test]
fn playing_does_not_wait_for_the_call_a_mark_waits_for() {
    let p = pipeline(&format!(
        "appsrc name=app format=time caps={PCM_8K} ! twiliostreamsink name=s port=0 async=false"
    ));
    let (sink, waits) = waiting_sink(&p);
    set_state(&p, gst::State::Paused);
    let marking = {
        let pad = sink.static_pad("sink").unwrap();
        std::thread::spawn(move || {
            let mark = gst::Structure::builder("twilio-mark")
                .field("name", "first")
                .build();
            pad.send_event(gst::event::CustomDownstream::new(mark))
        })
    };
    waits
        .recv_timeout(PATIENCE)
        .expect("the mark did not wait for the call");
    let (playing, result) = play_aside(&p);
    let mut call = dial(&sink, Playout::Instant);
    playing.join().unwrap();
    marking.join().unwrap();
    let result = result.expect("PLAYING waited for a call");
    assert_eq!(result, Ok(gst::StateChangeSuccess::Success));
    // The mark goes out.
    let got = receive_until(&mut call, |got| !marks(got).is_empty());
    assert_eq!(marks(&got), ["first"]);
    set_state(&p, gst::State::Null);
}

/// Paused and played again while a buffer waits for the call: the source
/// goes on, and the call gets its audio.
#[test]
fn a_pause_while_a_buffer_waits_for_the_call_loses_nothing() {
    let p = pipeline(&format!(
        "audiotestsrc ! {PCM_8K} ! twiliostreamsink name=s port=0 async=false"
    ));
    let (sink, waits) = waiting_sink(&p);
    set_state(&p, gst::State::Playing);
    waits
        .recv_timeout(PATIENCE)
        .expect("no buffer waited for the call");
    set_state(&p, gst::State::Paused);
    set_state(&p, gst::State::Playing);
    let mut call = dial(&sink, Playout::Instant);
    assert_gets_audio(&mut call);
    set_state(&p, gst::State::Null);
}
