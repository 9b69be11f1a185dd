//! The truth at barge-in: each clear posts `twilio-clear`, saying up to
//! which running time of the outbound stream the caller heard it and how
//! much was dropped; checked against what the emulated Twilio played.

mod common;

use std::time::{Duration, Instant};

use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::Playout;

const PCM_8K: &str = "audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved";
/// How far the report may be from what the emulator played: its playout
/// steps by 20 ms, the model is continuous.
const TOLERANCE: Duration = Duration::from_millis(40);

fn twilio_clear(bus: &gst::Bus) -> gst::Structure {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Some(msg) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Element],
        ) && let Some(s) = msg.structure()
            && s.name() == "twilio-clear"
        {
            return s.to_owned();
        }
    }
    panic!("no twilio-clear message");
}

fn within(reported: Duration, played: Duration, what: &str) {
    let diff = reported.abs_diff(played);
    assert!(
        diff <= TOLERANCE,
        "{what}: reported {reported:?}, the emulator played {played:?}"
    );
}

#[test]
fn clear_says_how_much_of_each_prompt_the_caller_heard() {
    init();
    let p = pipeline(&format!(
        "appsrc name=app format=time caps={PCM_8K} ! twiliostreamsink name=sink port=0"
    ));
    p.set_state(gst::State::Playing).unwrap();
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    let bus = p.bus().unwrap();
    let call = dial(&sink, Playout::RealTime);
    let mut played_before = 0;
    // Prompts of one second at running times 0, 10 s and 20 s, cleared
    // after different times, by the signal and by the event.
    for (k, after_ms, by_event) in [(0u64, 250u64, false), (1, 640, true), (2, 420, false)] {
        let start = Duration::from_secs(10 * k);
        for i in 0..50u64 {
            let mut buffer = pcm_buffer(&sine(300.0, 8000.0, 6000.0, 160));
            let b = buffer.get_mut().unwrap();
            b.set_pts(
                gst::ClockTime::from_nseconds(start.as_nanos() as u64)
                    + gst::ClockTime::from_mseconds(20 * i),
            );
            b.set_duration(gst::ClockTime::from_mseconds(20));
            let ret = app.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
            assert_eq!(ret, gst::FlowReturn::Ok);
        }
        // The sink has taken the whole prompt (it holds up to a second).
        let deadline = Instant::now() + PATIENCE;
        while app.property::<u64>("current-level-bytes") > 0 {
            assert!(Instant::now() < deadline, "the sink took nothing");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(after_ms));
        if by_event {
            let clear = gst::Structure::new_empty("twilio-clear");
            let pad = sink.static_pad("sink").unwrap();
            assert!(pad.send_event(gst::event::CustomDownstreamOob::new(clear)));
        } else {
            assert!(sink.emit_by_name::<bool>("clear", &[]));
        }
        let report = twilio_clear(&bus);
        let deadline = Instant::now() + PATIENCE;
        while call.playback().clear_points.len() <= k as usize {
            assert!(Instant::now() < deadline, "Twilio got no clear");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (played_total, _) = call.playback().clear_points[k as usize];
        let emulator_heard = Duration::from_nanos((played_total - played_before) as u64 * 125_000);
        played_before = played_total;
        assert!(
            !emulator_heard.is_zero() && emulator_heard < Duration::from_secs(1),
            "prompt {k}: the emulator played {emulator_heard:?}"
        );

        assert_eq!(
            report.get::<String>("reason").unwrap(),
            if by_event { "event" } else { "signal" }
        );
        assert_eq!(
            report.get::<String>("stream-sid").unwrap(),
            call.params.stream_sid
        );
        let played = report
            .get::<Option<gst::ClockTime>>("played")
            .unwrap()
            .expect("audio was sent");
        let heard = Duration::from_nanos(played.nseconds()) - start;
        within(heard, emulator_heard, &format!("prompt {k} heard"));
        let dropped = report.get::<gst::ClockTime>("dropped").unwrap();
        within(
            Duration::from_nanos(dropped.nseconds()),
            Duration::from_secs(1) - emulator_heard,
            &format!("prompt {k} dropped"),
        );
    }
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_clear_before_any_audio_reports_nothing_played() {
    let h = sink_harness(PCM_8K);
    let sink = h.element().unwrap();
    let _call = dial(&sink, Playout::RealTime);
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    // The call reaches the sink before its task has applied `start`: it is
    // `connected` then, but with no streamSid yet `clear` refuses it.
    let deadline = Instant::now() + PATIENCE;
    while sink.property::<Option<String>>("stream-sid").is_none() {
        assert!(Instant::now() < deadline, "no call");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(sink.property::<bool>("connected"));
    assert!(sink.emit_by_name::<bool>("clear", &[]));
    let report = twilio_clear(&bus);
    assert_eq!(
        report.get::<Option<gst::ClockTime>>("played").unwrap(),
        None
    );
    assert_eq!(
        report.get::<gst::ClockTime>("dropped").unwrap(),
        gst::ClockTime::ZERO
    );
}

/// A mark or a clear sent to the sink element itself, not pushed into it
/// (`gst_element_send_event`, as a new user tries first), acts as pushed:
/// BaseSink sent such events upstream, where they were lost unsaid.
#[test]
fn events_sent_to_the_sink_element_act_as_pushed() {
    let mut h = sink_harness(PCM_8K);
    let sink = h.element().unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut call = dial(&sink, Playout::RealTime);
    h.push(pcm_buffer(&sine(300.0, 8000.0, 6000.0, 1600)))
        .unwrap();
    let mark = gst::Structure::builder("twilio-mark")
        .field("name", "sent-to-the-element")
        .build();
    assert!(sink.send_event(gst::event::CustomDownstream::new(mark)));
    let got = receive_until(&mut call, |got| !marks(got).is_empty());
    assert_eq!(marks(&got), ["sent-to-the-element"]);
    assert_eq!(media_bytes(&got).len(), 1600, "the mark follows the audio");
    let clear = gst::Structure::new_empty("twilio-clear");
    assert!(sink.send_event(gst::event::CustomDownstreamOob::new(clear)));
    let report = twilio_clear(&bus);
    assert_eq!(report.get::<String>("reason").unwrap(), "event");
    assert_eq!(sink.property::<u64>("clears-sent"), 1);
}

/// Such an event while a buffer waits in the sink for a call (its render
/// holding the pad's stream lock) neither waits nor hangs the state change
/// that follows: it is refused (no call), as the signals are. (Sent
/// through the pad, it waited for that lock with the element's state lock
/// held, and NULL hung.)
#[test]
fn an_event_sent_to_the_sink_element_before_a_call_hangs_nothing() {
    init();
    let p = pipeline(&format!(
        "appsrc name=app format=time caps={PCM_8K} ! twiliostreamsink name=sink port=0"
    ));
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    p.set_state(gst::State::Playing).unwrap();
    let buffer = pcm_buffer(&sine(300.0, 8000.0, 6000.0, 160));
    assert_eq!(
        app.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]),
        gst::FlowReturn::Ok
    );
    let (done, sent) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mark = gst::Structure::builder("twilio-mark")
            .field("name", "no-call-yet")
            .build();
        let marked = sink.send_event(gst::event::CustomDownstream::new(mark));
        let clear = gst::Structure::new_empty("twilio-clear");
        let cleared = sink.send_event(gst::event::CustomDownstreamOob::new(clear));
        let _ = done.send((marked, cleared));
    });
    let sent = sent.recv_timeout(PATIENCE).expect("send_event waited");
    assert_eq!(sent, (false, false));
    common::app::set_bounded(&p, gst::State::Null);
}
