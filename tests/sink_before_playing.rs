//! The sink's wait for its call before and around PLAYING. A wait in
//! `prepare()`/`render()`/`event()` runs under BaseSink's preroll lock,
//! which PAUSED → PLAYING takes without unlocking the sink first: with
//! `async=false` it must not hold up PLAYING, and a pause while it waits
//! must suspend the wait, not end it as a flush would (that stopped the
//! source upstream for good). Each test dials only after the state
//! changes, so a change that waited for the call fails it (a hang, bounded
//! by `within`), and compares the audio the call gets with what went in.

mod common;

use std::sync::{Mutex, mpsc};

use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::codec::g711;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{Playout, Received};

/// Runs `f` on a thread of its own; its result, or a failure naming `what`
/// if it has not returned within [`PATIENCE`] (a hang).
fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(f());
    });
    result
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} did not return: it waited for the call"))
}

/// A channel told each time `sink` logs a line containing `text`.
fn logged(sink: &gst::Element, text: &'static str) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    on_log(sink, text, move || {
        let _ = tx.lock().unwrap().send(());
    });
    rx
}

/// An appsrc into a sink with `async=false`: the pipeline, both elements,
/// and a channel told when the sink starts waiting for a call.
fn fed_by_appsrc() -> (
    gst::Pipeline,
    gst::Element,
    gst::Element,
    mpsc::Receiver<()>,
) {
    let p = pipeline(&format!(
        "appsrc name=app format=time caps={PCM_8K} ! \
         twiliostreamsink name=s port=0 async=false"
    ));
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "s"));
    let waiting = logged(&sink, "waiting for a call");
    (p, app, sink, waiting)
}

/// `pipeline` set to `state`, bounded by [`within`]: how it went.
fn change(
    pipeline: &gst::Pipeline,
    state: gst::State,
) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
    let p = pipeline.clone();
    within(&format!("the change to {state:?}"), move || {
        p.set_state(state)
    })
}

/// The same, which must complete at once.
fn done(pipeline: &gst::Pipeline, state: gst::State) {
    assert_eq!(
        change(pipeline, state),
        Ok(gst::StateChangeSuccess::Success),
        "{state:?}"
    );
}

fn expect(rx: &mpsc::Receiver<()>, what: &str) {
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("never logged: {what}"));
}

/// `samples` pushed into `app` in buffers of 100 ms, the first at 0.
fn feed(app: &gst::Element, samples: &[i16]) {
    for (i, part) in samples.chunks(800).enumerate() {
        let mut buffer = pcm_buffer(part);
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(100 * i as u64));
        b.set_duration(gst::ClockTime::from_mseconds(100));
        let ret = app.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        assert_eq!(ret, gst::FlowReturn::Ok);
    }
}

/// One second of a 440 Hz tone, in ten buffers of 100 ms.
fn feed_tone(app: &gst::Element) -> Vec<i16> {
    let tone = sine(440.0, 8000.0, 8000.0, 8000);
    feed(app, &tone);
    tone
}

/// What the call gets until `samples` of audio have come, decoded.
fn heard(call: &mut twilio_emulator::TwilioCall, samples: usize) -> Vec<i16> {
    let got = receive_until(call, |got| media_bytes(got).len() >= samples);
    assert!(
        !got.iter().any(|r| matches!(r, Received::Closed(_))),
        "the call closed: {got:?}"
    );
    media_bytes(&got)
        .iter()
        .take(samples)
        .map(|&c| g711::decode(c))
        .collect()
}

/// `heard` is `sent` from its first sample on, to within μ-law's steps.
fn assert_same_audio(heard: &[i16], sent: &[i16]) {
    assert_eq!(heard.len(), sent.len());
    for (i, (&h, &s)) in heard.iter().zip(sent).enumerate() {
        let step = (s as i32).abs() / 16 + 8;
        assert!(
            (h as i32 - s as i32).abs() <= step,
            "sample {i}: heard {h}, sent {s}"
        );
    }
}

#[test]
fn playing_with_async_off_does_not_wait_for_the_call() {
    let (p, app, sink, waiting) = fed_by_appsrc();
    let tone = feed_tone(&app);
    done(&p, gst::State::Paused);
    // The first buffer waits for the call (the preroll lock free meanwhile).
    expect(&waiting, "the first buffer's wait for the call");
    done(&p, gst::State::Playing);
    // The call gets it all.
    let mut call = dial(&sink, Playout::Instant);
    assert_same_audio(&heard(&mut call, tone.len()), &tone);
    done(&p, gst::State::Null);
}

/// A mark before any buffer, with `async=false`: its wait for the call does
/// not hold up PLAYING, and it goes out before the audio that follows it.
#[test]
fn a_mark_first_with_async_off_does_not_hold_up_playing() {
    let (p, app, sink, waiting) = fed_by_appsrc();
    done(&p, gst::State::Paused);
    let mark = gst::Structure::builder("twilio-mark")
        .field("name", "first")
        .build();
    let marking = {
        let pad = sink.static_pad("sink").unwrap();
        std::thread::spawn(move || pad.send_event(gst::event::CustomDownstream::new(mark)))
    };
    expect(&waiting, "the mark's wait for the call");
    done(&p, gst::State::Playing);
    let mut call = dial(&sink, Playout::Instant);
    assert!(marking.join().unwrap(), "the mark was refused");
    let tone = feed_tone(&app);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= tone.len());
    assert_eq!(marks(&got), ["first"]);
    let first_media = got
        .iter()
        .position(|r| matches!(r, Received::Message(Outbound::Media { .. }, _)));
    let the_mark = got
        .iter()
        .position(|r| matches!(r, Received::Message(Outbound::Mark { .. }, _)));
    assert!(
        the_mark < first_media,
        "the mark went after the audio: {got:?}"
    );
    done(&p, gst::State::Null);
}

/// Paused and played again (twice) while a buffer waits for the call: the
/// wait goes on, the source is not stopped, and the call gets every sample.
#[test]
fn a_pause_while_a_buffer_waits_for_the_call_loses_nothing() {
    let (p, app, sink, waiting) = fed_by_appsrc();
    let tone = feed_tone(&app);
    done(&p, gst::State::Playing);
    expect(&waiting, "the wait for the call");
    for _ in 0..2 {
        done(&p, gst::State::Paused);
        done(&p, gst::State::Playing);
    }
    let mut call = dial(&sink, Playout::Instant);
    assert_same_audio(&heard(&mut call, tone.len()), &tone);
    done(&p, gst::State::Null);
}

/// A live source (PLAYING waits for the sink's preroll, which waits for the
/// call): paused and played again meanwhile, it is not stopped, and the
/// call gets its tone. (This held before the wait's rework too: the sink's
/// change is ASYNC-pending, so the pause never reached it. Kept as a guard.)
#[test]
fn a_live_source_paused_before_the_call_goes_on() {
    let p = pipeline(&format!(
        "audiotestsrc is-live=true freq=440 volume=0.25 samplesperbuffer=160 ! {PCM_8K} ! \
         twiliostreamsink name=s port=0"
    ));
    let sink = by_name(&p, "s");
    let waiting = logged(&sink, "waiting for a call");
    change(&p, gst::State::Playing).unwrap();
    expect(&waiting, "the wait for the call");
    change(&p, gst::State::Paused).unwrap();
    change(&p, gst::State::Playing).unwrap();
    let mut call = dial(&sink, Playout::Instant);
    // A second of it: the source runs on after the call's first buffer.
    let audio = heard(&mut call, 8000);
    let level = amplitude(&audio[4000..], 440.0);
    assert!(
        (level - 0.25 * 32767.0).abs() < 0.1 * 32767.0 * 0.25,
        "440 Hz at {level}"
    );
    done(&p, gst::State::Null);
}

/// Stopped while a buffer waits, in each place it can: prerolling with
/// `async=false`, waiting for the call in PLAYING, and after a pause.
#[test]
fn a_stop_while_a_buffer_waits_returns() {
    for (pause, play) in [(false, false), (false, true), (true, true)] {
        let (p, app, _sink, waiting) = fed_by_appsrc();
        feed_tone(&app);
        done(&p, gst::State::Paused);
        expect(&waiting, "the first buffer's wait for the call");
        if play {
            done(&p, gst::State::Playing);
        }
        if pause {
            done(&p, gst::State::Paused);
        }
        done(&p, gst::State::Null);
    }
}

/// A flush from the appsrc (the README's way to clear) while the first
/// buffer waits for the call as the sink prerolls (`async=true`): the
/// pipeline's change to PLAYING goes on (ASYNC, asked again or not), and
/// once the call comes it plays what was pushed after the flush, all of
/// it. (The sink's own `get_state` says FAILURE meanwhile: BaseSink gives
/// up a preroll whose `prepare()` is flushed; see ARCHITECTURE.md.)
#[test]
fn a_flush_while_the_first_buffer_prerolls_keeps_the_state_change() {
    let p = pipeline(&format!(
        "appsrc name=app format=time caps={PCM_8K} ! twiliostreamsink name=s port=0"
    ));
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "s"));
    let waiting = logged(&sink, "waiting for a call");
    let playing = Ok(gst::StateChangeSuccess::Async);
    assert_eq!(change(&p, gst::State::Playing), playing);
    // Flushed: none of it may reach the call.
    feed(&app, &[3000; 2400]);
    expect(&waiting, "the first buffer's wait for the call");
    assert!(app.send_event(gst::event::FlushStart::new()));
    assert!(app.send_event(gst::event::FlushStop::new(true)));
    let (ret, _, pending) = p.state(gst::ClockTime::ZERO);
    assert_eq!((ret, pending), (playing, gst::State::Playing));
    assert_eq!(change(&p, gst::State::Playing), playing);
    let tone = feed_tone(&app);
    expect(&waiting, "the wait for the call after the flush");
    let mut call = dial(&sink, Playout::Instant);
    assert_same_audio(&heard(&mut call, tone.len()), &tone);
    let (ret, state, _) = p.state(gst::ClockTime::try_from(PATIENCE).unwrap());
    assert_eq!(
        (ret, state),
        (Ok(gst::StateChangeSuccess::Success), gst::State::Playing)
    );
    done(&p, gst::State::Null);
}
