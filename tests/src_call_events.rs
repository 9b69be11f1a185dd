//! twiliostreamsrc end to end, a call's signalling: start/DTMF/mark/stop as bus messages
//! and downstream events, concurrent calls on one port, waiting calls and 404s, malformed input.

mod common;

use common::src::{call_of_chunks, in_both_modes, start};
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::{decode, encode};
use twilio_emulator::{CallParams, TwilioCall};

in_both_modes!(
    call_events_become_messages_and_downstream_events,
    events_sent_to_the_src_go_out_among_its_buffers,
);

fn call_events_become_messages_and_downstream_events() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    let params = CallParams {
        custom_parameters: [
            ("caller".to_owned(), "+15550100".to_owned()),
            ("lang".into(), "en".into()),
        ]
        .into_iter()
        .collect(),
        ..CallParams::default()
    };
    let ulaw = vec![0xFFu8; 160 * 10];
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, params.clone()).await.unwrap();
        for (i, chunk) in ulaw.chunks(160).enumerate() {
            call.send_media(chunk).unwrap();
            if i == 3 {
                call.send_dtmf("5").unwrap();
            }
            if i == 5 {
                call.send_mark("greeting-done").unwrap();
                call.send_dtmf("#").unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let messages = drain_messages(&bus);

    let start = element_messages(&messages, "twilio-start");
    assert_eq!(start.len(), 1);
    let s = &start[0];
    assert_eq!(s.get::<&str>("call-sid").unwrap(), params.call_sid);
    assert_eq!(s.get::<&str>("stream-sid").unwrap(), params.stream_sid);
    assert_eq!(s.get::<&str>("account-sid").unwrap(), params.account_sid);
    let tracks = s.get::<gst::Array>("tracks").unwrap();
    assert_eq!(
        tracks
            .iter()
            .map(|v| v.get::<String>().unwrap())
            .collect::<Vec<_>>(),
        ["inbound"]
    );
    let custom = s.get::<gst::Structure>("custom-parameters").unwrap();
    assert_eq!(custom.get::<&str>("caller").unwrap(), "+15550100");
    assert_eq!(custom.get::<&str>("lang").unwrap(), "en");

    let dtmf = element_messages(&messages, "twilio-dtmf");
    let digits: Vec<(String, i32)> = dtmf
        .iter()
        .map(|s| {
            (
                s.get::<String>("digit").unwrap(),
                s.get::<i32>("number").unwrap(),
            )
        })
        .collect();
    assert_eq!(digits, [("5".to_owned(), 5), ("#".to_owned(), 11)]);

    let marks = element_messages(&messages, "twilio-mark");
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].get::<&str>("name").unwrap(), "greeting-done");

    let stop = element_messages(&messages, "twilio-stop");
    assert_eq!(stop.len(), 1);
    assert_eq!(stop[0].get::<&str>("call-sid").unwrap(), params.call_sid);
    assert_eq!(
        stop[0].get::<&str>("stream-sid").unwrap(),
        params.stream_sid
    );

    // Order on the bus: start, dtmf 5, mark, dtmf #, stop.
    let order: Vec<String> = messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e.structure().map(|s| s.name().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "twilio-start",
            "twilio-dtmf",
            "twilio-mark",
            "twilio-dtmf",
            "twilio-stop"
        ]
    );

    // Downstream: the start as a sticky event, DTMF as GStreamer's
    // dtmf-event pairs, each after the audio that preceded it.
    let events: Vec<(usize, String, Option<i32>, Option<bool>)> = got
        .events
        .iter()
        .map(|(n, s)| {
            (
                *n,
                s.name().to_string(),
                s.get::<i32>("number").ok(),
                s.get::<bool>("start").ok(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (0, "twilio-start".to_owned(), None, None),
            (4, "dtmf-event".to_owned(), Some(5), Some(true)),
            (4, "dtmf-event".to_owned(), Some(5), Some(false)),
            (6, "dtmf-event".to_owned(), Some(11), Some(true)),
            (6, "dtmf-event".to_owned(), Some(11), Some(false)),
        ]
    );
    let (_, dtmf_start) = &got.events[1];
    assert_eq!(dtmf_start.get::<i32>("type").unwrap(), 1);
    assert!(dtmf_start.get::<i32>("volume").is_ok());

    let src = by_name(&p, "src");
    assert_eq!(
        src.property::<Option<String>>("call-sid").as_deref(),
        Some(params.call_sid.as_str())
    );
    assert_eq!(
        src.property::<Option<String>>("stream-sid").as_deref(),
        Some(params.stream_sid.as_str())
    );
    assert_eq!(
        src.property::<Option<String>>("account-sid").as_deref(),
        Some(params.account_sid.as_str())
    );
    let custom = src.property::<gst::Structure>("custom-parameters");
    assert_eq!(custom.get::<&str>("caller").unwrap(), "+15550100");
    assert_eq!(src.property::<u64>("dtmf-received"), 2);
    assert_eq!(src.property::<u64>("marks-received"), 1);
    assert_eq!(src.property::<u64>("chunks-received"), 10);
    assert_eq!(src.property::<u64>("bytes-received"), 1600);
    assert_eq!(src.property::<u64>("invalid-messages"), 0);
    let stats = src.property::<gst::Structure>("stats");
    for (field, value) in [
        ("dtmf-received", 2u64),
        ("marks-received", 1),
        ("bytes-received", 1600),
    ] {
        assert_eq!(stats.get::<u64>(field).unwrap(), value, "{field}");
    }
    set_state(&p, gst::State::Null);
}

#[test]
fn two_concurrent_calls_on_one_port_stay_apart() {
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 path=/calls ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let a = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let port = by_name(&p, "src").property::<u32>("bound-port");
    let p2 = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/calls ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let b = Collector::attach(&by_name(&p2, "sink"));
    set_state(&p2, gst::State::Playing);
    assert_eq!(by_name(&p2, "src").property::<u32>("bound-port"), port);

    let url = format!("ws://127.0.0.1:{port}/calls");
    let (low, high) = (CallParams::default(), CallParams::default());
    let low_audio = encode(&sine(500.0, 8000.0, 12000.0, 8000));
    let high_audio = encode(&sine(1500.0, 8000.0, 12000.0, 8000));
    rt().block_on(async {
        let mut c1 = TwilioCall::start(&url, low.clone()).await.unwrap();
        let mut c2 = TwilioCall::start(&url, high.clone()).await.unwrap();
        // Interleaved, so both calls are live at once.
        for (x, y) in low_audio.chunks(160).zip(high_audio.chunks(160)) {
            c1.send_media(x).unwrap();
            c2.send_media(y).unwrap();
        }
        c1.send_stop().unwrap();
        c2.send_stop().unwrap();
        c1.close().await;
        c2.close().await;
    });
    let (got_a, got_b) = (a.wait_eos(), b.wait_eos());
    for (pipe, got) in [(&p, got_a), (&p2, got_b)] {
        let sid = by_name(pipe, "src")
            .property::<Option<String>>("call-sid")
            .unwrap();
        let expected = if sid == low.call_sid {
            &low_audio
        } else {
            assert_eq!(sid, high.call_sid);
            &high_audio
        };
        assert_eq!(
            got.samples(),
            decode(expected),
            "call {sid} got the other call's audio"
        );
    }
    set_state(&p, gst::State::Null);
    set_state(&p2, gst::State::Null);
}

#[test]
fn a_call_waits_for_an_element_and_unknown_paths_get_404() {
    init();
    // One src busy with a call; a second call waits for the next src.
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let a = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let port = by_name(&p, "src").property::<u32>("bound-port");

    let second = CallParams::default();
    let c1 = rt().block_on(async {
        let mut c1 = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        c1.send_media(&[0x80; 160]).unwrap();
        c1
    });
    // A connection becomes a call at its start: the first call must have
    // reached the src before the second starts, or the second could take it.
    a.wait_buffers(1);
    let mut c2 = rt()
        .block_on(TwilioCall::start(&url, second.clone()))
        .unwrap();

    let p2 = pipeline(&format!(
        "twiliostreamsrc name=src port={port} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let b = Collector::attach(&by_name(&p2, "sink"));
    set_state(&p2, gst::State::Playing);
    // Media is sent once the new src plays: what a src gets before PLAYING
    // is dropped like what queues while PAUSED (see tests/src_timing.rs).
    rt().block_on(async {
        c2.send_media(&[0x00; 160]).unwrap();
        c2.send_stop().unwrap();
        c2.close().await;
    });
    let got = b.wait_eos();
    assert_eq!(got.samples(), vec![-32124; 160]);
    assert_eq!(
        by_name(&p2, "src").property::<Option<String>>("call-sid"),
        Some(second.call_sid.clone())
    );

    // Nobody listens on /elsewhere.
    let err = rt()
        .block_on(TwilioCall::connect(
            &format!("ws://127.0.0.1:{port}/elsewhere"),
            CallParams::default(),
        ))
        .err()
        .expect("handshake must fail");
    match err {
        twilio_emulator::call::WsError::Http(response) => assert_eq!(response.status(), 404),
        other => panic!("expected HTTP 404, got {other}"),
    }
    rt().block_on(c1.close());
    set_state(&p, gst::State::Null);
    set_state(&p2, gst::State::Null);
}

#[test]
fn malformed_input_is_counted_and_the_call_goes_on() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let params = CallParams::default();
    let sid = params.stream_sid.clone();
    rt().block_on(async {
        // (Media before start makes a connection no call at all: see
        // tests/admission.rs.)
        let mut call = TwilioCall::connect(&url, params).await.unwrap();
        call.begin().unwrap();
        call.send_media(&[0x80; 160]).unwrap();
        call.send_text("{not json").unwrap();
        call.send_text(r#"{"event":"media","streamSid":"MZ1"}"#).unwrap(); // missing media
        call.send_binary(&[1, 2, 3]).unwrap();
        call.send_text(r#"{"event":"hangup","streamSid":"x"}"#).unwrap();
        call.send_text(&format!(
            r#"{{"event":"media","streamSid":"{sid}","media":{{"timestamp":"175","payload":"%%%"}}}}"#
        ))
        .unwrap();
        call.send_text(
            r#"{"event":"media","streamSid":"MZother","media":{"timestamp":"175","payload":"AAAA"}}"#,
        )
        .unwrap();
        call.begin().unwrap(); // a duplicate start (with its connected)
        call.send_media(&[0x00; 160]).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let mut expected = vec![32124i16; 160];
    expected.extend(vec![-32124i16; 160]);
    assert_eq!(got.samples(), expected);
    let src = by_name(&p, "src");
    // not json, missing field, binary, unknown, wrong sid, duplicate start
    assert_eq!(src.property::<u64>("invalid-messages"), 6);
    assert_eq!(src.property::<u64>("transcode-errors"), 1);
    assert_eq!(src.property::<u64>("chunks-received"), 2);
    set_state(&p, gst::State::Null);
}

/// A custom downstream event and tags sent to the src mid-call go out
/// among its buffers, in order, as from any GStreamer source. (With
/// `shared-threads`, BaseSrc kept them for its streaming thread, which
/// waits for the whole call: they never went out, `send_event` TRUE.)
fn events_sent_to_the_src_go_out_among_its_buffers() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    by_name(&p, "sink").static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            let what = match &info.data {
                Some(gst::PadProbeData::Buffer(_)) => "buffer".to_owned(),
                Some(gst::PadProbeData::Event(e)) => match e.view() {
                    gst::EventView::CustomDownstream(c) => c
                        .structure()
                        .map_or("custom".into(), |s| s.name().to_string()),
                    gst::EventView::Tag(t) => match t.tag().get::<gst::tags::Title>() {
                        Some(title) => format!("title {}", title.get()),
                        None => "other tags".into(),
                    },
                    _ => return gst::PadProbeReturn::Ok,
                },
                _ => return gst::PadProbeReturn::Ok,
            };
            log.lock().unwrap().push(what);
            gst::PadProbeReturn::Ok
        },
    );
    let src = by_name(&p, "src");
    let mut call = call_of_chunks(&url, &collector, 5);
    let custom = gst::event::CustomDownstream::new(gst::Structure::new_empty("my-event"));
    assert!(src.send_event(custom));
    let mut tags = gst::TagList::new();
    tags.make_mut()
        .add::<gst::tags::Title>(&"a call", gst::TagMergeMode::Append);
    assert!(src.send_event(gst::event::Tag::new(tags)));
    for _ in 0..5 {
        call.send_media(&[0x55; 160]).unwrap();
    }
    call.send_stop().unwrap();
    rt().block_on(call.close());
    collector.wait_eos();
    let seen = seen.lock().unwrap().clone();
    let at = |what: &str| seen.iter().position(|s| s == what);
    let (custom, title) = (at("my-event"), at("title a call"));
    let buffers = seen.iter().filter(|s| *s == "buffer").count();
    assert_eq!(buffers, 10, "{seen:?}");
    // After the buffers before them, and before the last one (the one
    // being made as they came may go first, as with BaseSrc's loop).
    let last = seen.iter().rposition(|s| s == "buffer");
    assert!(custom.is_some_and(|c| c >= 5), "{seen:?}");
    assert!(title > custom && title < last, "{seen:?}");
    set_state(&p, gst::State::Null);
}
