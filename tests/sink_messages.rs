//! twiliostreamsink end to end, the messages it sends: media frames and their exact JSON,
//! marks placed after the audio before them and their echoes, and clears.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::audio::encode;
use twilio_emulator::{Playout, Received, TwilioCall};

fn custom(name: &str, oob: bool) -> gst::Event {
    let s = gst::Structure::builder(name).build();
    if oob {
        gst::event::CustomDownstreamOob::new(s)
    } else {
        gst::event::CustomDownstream::new(s)
    }
}

fn mark_event(name: &str) -> gst::Event {
    gst::event::CustomDownstream::new(
        gst::Structure::builder("twilio-mark")
            .field("name", name)
            .build(),
    )
}

fn has_mark(got: &[Received], name: &str) -> bool {
    got.iter().any(
        |r| matches!(r, Received::Message(Outbound::Mark { mark, .. }, _) if mark.name == name),
    )
}

#[test]
fn media_messages_have_exactly_the_documented_shape_and_frames() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    let pcm = sine(440.0, 8000.0, 10000.0, 1000);
    h.push(pcm_buffer(&pcm)).unwrap();
    // Before EOS: EOS ends the stream (see sink_ending.rs).
    assert!(sink.property::<bool>("connected"));
    h.push_event(gst::event::Eos::new());
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 1000);

    let sid = &call.params.stream_sid;
    let texts: Vec<&String> = got
        .iter()
        .map(|r| match r {
            Received::Message(_, text) => text,
            other => panic!("not a valid message: {other:?}"),
        })
        .collect();
    // 20 ms frames (160 bytes), the last partial one sent at EOS.
    assert_eq!(texts.len(), 7);
    let ulaw = encode(&pcm);
    for (i, text) in texts.iter().enumerate() {
        let payload = &ulaw[i * 160..((i + 1) * 160).min(1000)];
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
        assert_eq!(
            **text,
            format!(r#"{{"event":"media","streamSid":"{sid}","media":{{"payload":"{b64}"}}}}"#)
        );
    }
    assert_eq!(sink.property::<u64>("chunks-sent"), 7);
    assert_eq!(sink.property::<u64>("bytes-sent"), 1000);
    assert_eq!(
        sink.property::<Option<String>>("stream-sid").as_deref(),
        Some(sid.as_str())
    );
    assert_eq!(
        sink.property::<Option<String>>("call-sid").as_deref(),
        Some(call.params.call_sid.as_str())
    );
}

#[test]
fn chunk_duration_sets_the_frame_size() {
    let mut h = sink_harness_with("audio/x-mulaw,rate=8000,channels=1", |sink| {
        sink.set_property("chunk-duration", 40u32)
    });
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    h.push(gst::Buffer::from_mut_slice(vec![0x55u8; 700]))
        .unwrap();
    h.push_event(gst::event::Eos::new());
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 700);
    let sizes: Vec<usize> = got
        .iter()
        .map(|r| match r {
            Received::Message(Outbound::Media { media, .. }, _) => {
                base64::engine::general_purpose::STANDARD
                    .decode(&media.payload)
                    .unwrap()
                    .len()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sizes, [320, 320, 60]);
    // μ-law passes through untouched.
    assert_eq!(media_bytes(&got), vec![0x55u8; 700]);
}

#[test]
fn a_mark_arrives_exactly_after_the_audio_before_it() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut call = dial(&sink, Playout::RealTime);
    h.push(pcm_buffer(&vec![1000; 1000])).unwrap();
    assert!(h.push_event(mark_event("prompt-1")));
    h.push(pcm_buffer(&vec![-1000; 480])).unwrap();
    // The application's way: an action signal, after what was rendered so far.
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"prompt-2"]));

    let got = receive_until(&mut call, |got| has_mark(got, "prompt-2"));
    let before_mark: usize = {
        let i = got
            .iter()
            .position(|r| matches!(r, Received::Message(Outbound::Mark { .. }, _)))
            .unwrap();
        media_bytes(&got[..i]).len()
    };
    assert_eq!(
        before_mark, 1000,
        "the mark follows exactly the 1000 samples before it"
    );
    let text = got
        .iter()
        .find_map(|r| match r {
            Received::Message(Outbound::Mark { .. }, t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"event":"mark","streamSid":"{}","mark":{{"name":"prompt-1"}}}}"#,
            call.params.stream_sid
        )
    );

    // Twilio echoes each mark when its playout passes it; the sink posts them.
    let deadline = std::time::Instant::now() + PATIENCE;
    while sink.property::<u64>("marks-played") < 2 {
        assert!(std::time::Instant::now() < deadline, "marks not echoed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let playback = call.playback();
    let echoed: Vec<(String, usize)> = playback
        .marks
        .iter()
        .map(|m| (m.name.clone(), m.played_samples))
        .collect();
    assert_eq!(
        echoed,
        [("prompt-1".to_owned(), 1000), ("prompt-2".to_owned(), 1480)]
    );
    assert!(playback.marks.iter().all(|m| !m.cleared));
    // The counter moves on the network task; the sink posts each echo
    // from its own thread, so the messages may follow a little later.
    let messages = messages_until(&bus, |m| element_messages(m, "twilio-mark").len() == 2);
    let names: Vec<String> = element_messages(&messages, "twilio-mark")
        .iter()
        .map(|s| s.get::<String>("name").unwrap())
        .collect();
    assert_eq!(names, ["prompt-1", "prompt-2"]);
    assert_eq!(sink.property::<u64>("marks-sent"), 2);
    let stats = sink.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("marks-played").unwrap(), 2);
    assert_eq!(stats.get::<u64>("marks-sent").unwrap(), 2);
}

#[test]
fn clear_drops_queued_audio_and_echoes_pending_marks() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    // A lead of 10 s: all 4 s of audio reach Twilio's queue at once.
    sink.set_property("max-lead", 10_000u32);
    let mut call = dial(&sink, Playout::RealTime);
    h.push(pcm_buffer(&sine(300.0, 8000.0, 8000.0, 16000)))
        .unwrap();
    assert!(h.push_event(mark_event("first-half")));
    h.push(pcm_buffer(&sine(300.0, 8000.0, 8000.0, 16000)))
        .unwrap();
    assert!(h.push_event(mark_event("second-half")));
    // A partial frame still inside the sink is discarded by the clear.
    h.push(pcm_buffer(&[5000; 100])).unwrap();
    assert!(h.push_event(custom("twilio-clear", true)));

    let got = receive_until(&mut call, |got| {
        got.iter()
            .any(|r| matches!(r, Received::Message(Outbound::Clear { .. }, _)))
    });
    assert_eq!(
        media_bytes(&got).len(),
        32000,
        "the 100 pending samples were not sent"
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while call.playback().marks.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "pending marks not echoed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let playback = call.playback();
    assert_eq!(playback.clears, 1);
    assert!(
        playback.marks.iter().all(|m| m.cleared),
        "{:?}",
        playback.marks
    );
    assert!(
        playback.cleared_samples > 16000,
        "most of the 4 s were dropped"
    );
    assert!(playback.played.len() + playback.cleared_samples == 32000);
    assert_eq!(sink.property::<u64>("clears-sent"), 1);
    assert_eq!(sink.property::<u64>("bytes-sent"), 32000);
}

#[test]
fn serialized_events_flushes_and_the_signal_each_send_one_clear() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut call = dial(&sink, Playout::Instant);
    h.push(pcm_buffer(&[0; 160])).unwrap();
    let clears = |call: &mut TwilioCall, n: usize| {
        receive_until(call, |got| {
            got.iter()
                .filter(|r| matches!(r, Received::Message(Outbound::Clear { .. }, _)))
                .count()
                >= n
        })
    };
    assert!(h.push_event(custom("twilio-clear", false)));
    clears(&mut call, 1);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(false)));
    clears(&mut call, 1);
    assert!(sink.emit_by_name::<bool>("clear", &[]));
    let got = clears(&mut call, 1);
    let text = got
        .iter()
        .find_map(|r| match r {
            Received::Message(Outbound::Clear { .. }, t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"event":"clear","streamSid":"{}"}}"#,
            call.params.stream_sid
        )
    );
    assert_eq!(sink.property::<u64>("clears-sent"), 3);
    // Each says what made it.
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut reasons = Vec::new();
    while reasons.len() < 3 && std::time::Instant::now() < deadline {
        reasons.extend(
            element_messages(&drain_messages(&bus), "twilio-clear")
                .iter()
                .map(|s| s.get::<String>("reason").unwrap()),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(reasons, ["event", "flush", "signal"]);
}

#[test]
fn a_mark_after_16khz_audio_follows_all_of_it() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    h.push(pcm_buffer(&sine(500.0, 16000.0, 8000.0, 2000)))
        .unwrap();
    assert!(h.push_event(mark_event("m")));
    let got = receive_until(&mut call, |got| has_mark(got, "m"));
    let i = got
        .iter()
        .position(|r| matches!(r, Received::Message(Outbound::Mark { .. }, _)))
        .unwrap();
    // 2000 samples at 16 kHz are 1000 at 8 kHz, all sent before the mark
    // (the downsampler delays their content by 2.6 ms, not their count).
    assert_eq!(media_bytes(&got[..i]).len(), 1000);
}
