//! twiliostreamsink end to end, what may come while it waits at EOS for
//! Twilio to play everything out: a flush (barge-in: the EOS is dropped and
//! the call goes on), a pause (the wait goes on once PLAYING again, however
//! long the pause: the writer held the audio),
//! Twilio's `stop` (EOS goes through, nothing to end, after `twilio-stop`);
//! and an EOS before any call (a sink that listens itself takes no call
//! until a flush).

mod common;

use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{Playout, Received, TwilioCall};

const EOS_MARK: &str = "twiliostream-eos";

/// A sink listening itself (with `props`), fed by an appsrc at 8 kHz.
fn appsrc_sink(props: &str) -> (gst::Pipeline, gst::Element, gst::Element) {
    let p = pipeline(&format!(
        "appsrc name=app format=time \
         caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved ! \
         twiliostreamsink name=sink port=0 sync=false {props}"
    ));
    set_state(&p, gst::State::Playing);
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    (p, app, sink)
}

fn is_eos_mark(r: &Received) -> bool {
    matches!(r, Received::Message(Outbound::Mark { mark, .. }, _) if mark.name == EOS_MARK)
}

/// Twilio dials `sink`, which plays `seconds` of a tone and reaches EOS;
/// returns once the EOS mark is on the wire (the sink waits for its echo),
/// with what came so far.
fn eos_waiting(
    app: &gst::Element,
    sink: &gst::Element,
    seconds: usize,
) -> (TwilioCall, Vec<Received>) {
    let mut call = dial(sink, Playout::RealTime);
    push(app, &sine(440.0, 8000.0, 8000.0, seconds * 8000));
    end_of_stream(app);
    let got = receive_until(&mut call, |got| got.iter().any(is_eos_mark));
    (call, got)
}

/// Receives the rest of the call: it must end normally (1000) after
/// `bytes` of audio in all, every byte of it played before the close.
fn all_played_then_closed(call: &mut TwilioCall, mut got: Vec<Received>, bytes: usize) {
    got.extend(receive_until(call, |_| false));
    assert_eq!(got.last(), Some(&Received::Closed(Some(1000))));
    let sent = media_bytes(&got).len();
    assert_eq!(sent, bytes, "the held audio went out");
    assert_eq!(
        call.playback().played.len(),
        sent,
        "closed before the playout"
    );
}

fn eos_count(messages: &[gst::Message]) -> usize {
    messages
        .iter()
        .filter(|m| matches!(m.view(), gst::MessageView::Eos(_)))
        .count()
}

#[test]
fn a_flush_during_the_eos_wait_drops_that_eos_and_the_call_goes_on() {
    init();
    let (p, app, sink) = appsrc_sink("");
    let bus = p.bus().unwrap();
    let (mut call, _) = eos_waiting(&app, &sink, 2);
    // A flush from upstream (a seek, a barge-in): it becomes a clear, which
    // makes Twilio echo the EOS mark at once (as it echoes every mark a
    // clear drops). Sent to the sink's pad: an appsrc flushed after its
    // end-of-stream would send EOS again.
    let pad = sink.static_pad("sink").unwrap();
    assert!(pad.send_event(gst::event::FlushStart::new()));
    assert!(pad.send_event(gst::event::FlushStop::new(false)));
    let mut messages = messages_until(&bus, |m| has_element(m, "twilio-clear"));
    let got = receive_until(&mut call, |got| {
        got.iter()
            .any(|r| matches!(r, Received::Message(Outbound::Clear { .. }, _)))
    });
    assert!(!got.contains(&Received::Closed(Some(1000))), "{got:?}");
    // The call is still on: the application ends it when it wants.
    assert!(sink.emit_by_name::<bool>("end-stream", &[&false]));
    let got = receive_until(&mut call, |_| false);
    assert_eq!(got.last(), Some(&Received::Closed(Some(1000))));
    messages.extend(messages_until(&bus, |m| has_element(m, "twilio-ended")));
    messages.extend(drain_messages(&bus));
    // No EOS message for the flushed stream, and not ended at its EOS.
    assert_eq!(eos_count(&messages), 0, "{messages:?}");
    let ended = element_messages(&messages, "twilio-ended");
    assert_eq!(ended[0].get::<String>("reason").unwrap(), "end-stream");
    set_state(&p, gst::State::Null);
}

#[test]
fn a_pause_during_the_eos_wait_holds_it_until_playing() {
    init();
    let (p, app, sink) = appsrc_sink("");
    let bus = p.bus().unwrap();
    let (mut call, mut got) = eos_waiting(&app, &sink, 1);
    set_state(&p, gst::State::Paused);
    set_state(&p, gst::State::Playing);
    // The wait went on: the call ends once Twilio played everything.
    got.extend(receive_until(&mut call, |_| false));
    assert_eq!(got.last(), Some(&Received::Closed(Some(1000))));
    let sent = media_bytes(&got).len();
    assert_eq!(sent, 8000);
    assert_eq!(
        call.playback().played.len(),
        sent,
        "closed before the playout"
    );
    // (twilio-ended comes from the sink's poster task; EOS waits for it
    // at most POSTER_DRAIN, so on a slow machine it may come after.)
    let mut messages = messages_until(&bus, |m| has_eos(m) && has_element(m, "twilio-ended"));
    messages.extend(drain_messages(&bus));
    assert_eq!(eos_count(&messages), 1);
    let ended = element_messages(&messages, "twilio-ended");
    assert_eq!(ended[0].get::<String>("reason").unwrap(), "eos");
    set_state(&p, gst::State::Null);
}

/// The EOS comes after the pause (the order `a_pause_during_…` leaves to
/// chance): the sink must not wait for the audio its paused writer holds
/// before PAUSED is complete, or PLAYING never comes back. The pipeline
/// reaches PAUSED with the EOS, and once PLAYING everything plays out.
#[test]
fn an_eos_after_a_pause_waits_for_playing_and_loses_no_audio() {
    init();
    let (p, app, sink) = appsrc_sink("");
    let mut call = dial(&sink, Playout::RealTime);
    push(&app, &sine(440.0, 8000.0, 8000.0, 8000));
    let got = receive_until(&mut call, |got| !media_bytes(got).is_empty());
    set_state(&p, gst::State::Paused);
    end_of_stream(&app);
    let (done, state, _) = p.state(gst::ClockTime::from_seconds(5));
    assert_eq!(
        (done, state),
        (Ok(gst::StateChangeSuccess::Success), gst::State::Paused),
        "the EOS did not complete PAUSED"
    );
    set_state(&p, gst::State::Playing);
    all_played_then_closed(&mut call, got, 8000);
    set_state(&p, gst::State::Null);
}

#[test]
fn twilios_stop_during_the_eos_wait_lets_eos_through_with_nothing_to_end() {
    init();
    let (p, app, sink) = appsrc_sink("");
    let bus = p.bus().unwrap();
    // 3 s queued at Twilio, which stops the stream (the caller hung up)
    // and keeps the socket open.
    let (mut call, _) = eos_waiting(&app, &sink, 3);
    call.send_stop().unwrap();
    // The stop is posted first, as a src posts it.
    let messages = messages_until(&bus, has_eos);
    assert!(has_element(&messages, "twilio-stop"), "{messages:?}");
    // The call is over on Twilio's side: the sink does not end it.
    assert!(!has_element(&messages, "twilio-ended"), "{messages:?}");
    assert!(
        call.try_recv()
            .is_none_or(|r| r != Received::Closed(Some(1000))),
        "closed a stopped call"
    );
    set_state(&p, gst::State::Null);
}

#[test]
fn eos_before_any_call_takes_no_call_until_a_flush() {
    init();
    // Refused at once rather than after 10 s, when no element is free.
    let (p, app, sink) = appsrc_sink("pending-timeout=0");
    let bus = p.bus().unwrap();
    let url = url_of(&sink);
    end_of_stream(&app);
    messages_until(&bus, has_eos);
    // Nothing to play: no caller is taken into silence (HTTP 503).
    let refused = rt().block_on(TwilioCall::start(&url, Default::default()));
    assert!(refused.is_err());
    assert!(!sink.property::<bool>("connected"));
    // A flush starts the stream over: a call is taken again.
    let pad = sink.static_pad("sink").unwrap();
    assert!(pad.send_event(gst::event::FlushStart::new()));
    assert!(pad.send_event(gst::event::FlushStop::new(true)));
    let _call = dial(&sink, Playout::RealTime);
    messages_until(&bus, |m| has_element(m, "twilio-start"));
    assert!(sink.property::<bool>("connected"));
    set_state(&p, gst::State::Null);
}

#[test]
fn a_call_waiting_while_no_call_is_taken_gets_the_sink_after_a_flush() {
    init();
    let (p, app, sink) = appsrc_sink("pending-timeout=15");
    let bus = p.bus().unwrap();
    let url = url_of(&sink);
    end_of_stream(&app);
    messages_until(&bus, has_eos);
    // It starts, and waits for an element (up to pending-timeout). Nothing
    // tells the caller it is waiting: half a second lets the server queue
    // it (a server slower than that hands it over at the flush directly,
    // and this test then shows less, never fails).
    let _call = rt()
        .block_on(TwilioCall::start(&url, Default::default()))
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pad = sink.static_pad("sink").unwrap();
    assert!(pad.send_event(gst::event::FlushStart::new()));
    assert!(pad.send_event(gst::event::FlushStop::new(true)));
    // The flush frees the sink: the waiting call is delivered at once.
    messages_until(&bus, |m| has_element(m, "twilio-start"));
    assert!(sink.property::<bool>("connected"));
    set_state(&p, gst::State::Null);
}

/// A lone sink (`props`) whose caller pressed a key, sent `stop` and hung
/// up, its poster held at the key press for `hold_ms` (the sink posts its
/// call's messages from a task), so that the `stop` behind it is not posted
/// yet when EOS comes; the call is closed. The pipeline, its appsrc, its bus.
fn hung_up_with_the_stop_held(
    props: &str,
    hold_ms: u64,
) -> (gst::Pipeline, gst::Element, gst::Bus) {
    init();
    let (p, app, sink) = appsrc_sink(props);
    let bus = p.bus().unwrap();
    bus.set_sync_handler(move |_, msg| {
        if msg.structure().is_some_and(|s| s.name() == "twilio-dtmf") {
            std::thread::sleep(std::time::Duration::from_millis(hold_ms));
        }
        gst::BusSyncReply::Pass
    });
    let mut call = dial(&sink, Playout::RealTime);
    call.send_dtmf("1").unwrap();
    call.send_stop().unwrap();
    rt().block_on(call.close());
    let deadline = std::time::Instant::now() + PATIENCE;
    while sink.property::<bool>("connected") {
        assert!(std::time::Instant::now() < deadline, "the call stays open");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    (p, app, bus)
}

#[test]
fn a_lone_sinks_twilio_stop_is_posted_before_its_eos() {
    let (p, app, bus) = hung_up_with_the_stop_held("", 500);
    // The caller hung up while the file played: its source runs out.
    end_of_stream(&app);
    let messages = messages_until(&bus, has_eos);
    // As from a src: an application that quits at EOS has seen the stop.
    assert!(has_element(&messages, "twilio-stop"), "{messages:?}");
    set_state(&p, gst::State::Null);
}

/// A pause while the lone sink waits at EOS for its poster's `twilio-stop`
/// holds that wait until PLAYING again: the stop still comes first.
#[test]
fn a_pause_while_waiting_for_twilio_stop_keeps_it_before_the_eos() {
    // Held long enough to outlast the pause below, and well within the 2 s
    // the sink gives its poster (which runs on through a pause).
    let (p, app, bus) = hung_up_with_the_stop_held("async=false", 900);
    end_of_stream(&app);
    // The sink waits for the poster now; a short pause, and on.
    std::thread::sleep(std::time::Duration::from_millis(200));
    set_state(&p, gst::State::Paused);
    std::thread::sleep(std::time::Duration::from_millis(200));
    set_state(&p, gst::State::Playing);
    let messages = messages_until(&bus, has_eos);
    assert!(has_element(&messages, "twilio-stop"), "{messages:?}");
    set_state(&p, gst::State::Null);
}

/// A pause longer than the playout bound's grace while EOS waits: the
/// writer holds the audio (and the EOS mark behind it) meanwhile, so the
/// wait must not run out then; back in PLAYING, everything is played out
/// before the stream is ended.
#[test]
fn a_long_pause_during_the_eos_wait_loses_no_audio() {
    init();
    let (p, app, sink) = appsrc_sink("");
    let mut call = dial(&sink, Playout::RealTime);
    push(&app, &sine(440.0, 8000.0, 8000.0, 8000));
    end_of_stream(&app);
    // Rendered (the EOS comes right after it): most of the second still
    // waits in the writer.
    let got = receive_until(&mut call, |got| !media_bytes(got).is_empty());
    set_state(&p, gst::State::Paused);
    let grace = gsttwiliostream::call::PLAYOUT_GRACE;
    std::thread::sleep(grace + std::time::Duration::from_secs(2));
    set_state(&p, gst::State::Playing);
    all_played_then_closed(&mut call, got, 8000);
    set_state(&p, gst::State::Null);
}
