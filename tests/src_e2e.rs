//! End to end: the real twiliostreamsrc in a pipeline, the emulator playing
//! Twilio over a real loopback WebSocket.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;
use gsttwiliostream::codec::Upsampler;
use twilio_emulator::audio::{decode, encode};
use twilio_emulator::{CallParams, Received, TwilioCall};

thread_local! {
    /// Extra properties for the src of [`start`]: each test using it runs
    /// once per way the src can push (see [`in_both_modes`]).
    static SRC_PROPS: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
}

/// Runs each test function twice: as `<name>::streaming_thread`, the src
/// pushing from its own thread, and as `<name>::shared_threads`, pushed
/// from the network threads.
macro_rules! in_both_modes {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[test]
            fn streaming_thread() {
                super::$body();
            }
            #[test]
            fn shared_threads() {
                super::SRC_PROPS.set("shared-threads=true");
                super::$body();
            }
        }
    )*};
}

in_both_modes!(
    pcm_8k_is_the_g191_decode_bit_for_bit,
    mulaw_output_is_the_payload_untouched,
    pcm_16k_matches_an_ideal_resampler,
    a_gap_becomes_silence_flagged_discont_and_counted,
    a_timestamp_jump_without_a_chunk_gap_is_a_gap_too,
    call_events_become_messages_and_downstream_events,
    a_connection_dropped_without_stop_ends_with_a_warning_and_eos,
    stopping_mid_call_returns_and_frees_the_port,
    hostile_timestamps_and_chunk_numbers_cannot_break_the_stream,
    realtime_call_timestamps_follow_twilio,
);

/// Starts `desc` (which names its src `src` and its sink `sink`), returns the
/// pipeline, the collector on the sink and the URL of the src.
fn start(desc: &str) -> (gst::Pipeline, Collector, String) {
    let desc = desc.replacen(
        "twiliostreamsrc name=src",
        &format!("twiliostreamsrc name=src {}", SRC_PROPS.get()),
        1,
    );
    let p = pipeline(&desc);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    (p, collector, url)
}

/// Plays `ulaw` in 20 ms chunks as fast as possible, then stop.
fn play(url: &str, params: CallParams, ulaw: &[u8]) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, params).await.unwrap();
        for chunk in ulaw.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn assert_contiguous(buffers: &[gst::Buffer]) {
    for pair in buffers.windows(2) {
        let end = pair[0].pts().unwrap() + pair[0].duration().unwrap();
        assert_eq!(pair[1].pts().unwrap(), end, "timestamps are not contiguous");
        assert_eq!(pair[1].offset(), pair[0].offset_end());
    }
}

fn pcm_8k_is_the_g191_decode_bit_for_bit() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    // Every μ-law code, many times over, in a scrambled order.
    let ulaw: Vec<u8> = (0..16000u32).map(|i| (i * 97 % 256) as u8).collect();
    play(&url, CallParams::default(), &ulaw);
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decode(&ulaw));
    assert_eq!(got.buffers.len(), 100);
    assert_contiguous(&got.buffers);
    let caps = by_name(&p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    assert_eq!(caps.structure(0).unwrap().get::<i32>("rate").unwrap(), 8000);
    set_state(&p, gst::State::Null);
}

fn mulaw_output_is_the_payload_untouched() {
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! audio/x-mulaw ! fakesink name=sink sync=false");
    let ulaw: Vec<u8> = (0..4000u32).map(|i| (i * 31 % 256) as u8).collect();
    play(&url, CallParams::default(), &ulaw);
    let got = collector.wait_eos();
    assert_eq!(got.bytes(), ulaw);
    assert_contiguous(&got.buffers);
    set_state(&p, gst::State::Null);
}

fn pcm_16k_matches_an_ideal_resampler() {
    // The default caps are 16 kHz S16LE.
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    let ulaw = encode(&sine(1000.0, 8000.0, 16000.0, 8000));
    play(&url, CallParams::default(), &ulaw);
    let got = collector.wait_eos();
    let caps = by_name(&p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("rate").unwrap(), 16000);
    assert_eq!(s.get::<&str>("format").unwrap(), "S16LE");

    let ours = got.samples();
    // All the audio, plus the filter's tail flushed at the end.
    assert_eq!(ours.len(), 2 * ulaw.len() + 42);
    let ideal = ideal_upsample(&decode(&ulaw));
    let d = Upsampler::DELAY;
    let range = 1000..ideal.len() - 1000;
    let ours: Vec<f64> = range.clone().map(|n| ours[n + d] as f64).collect();
    let snr = snr_db(&ideal[range], &ours);
    assert!(snr >= 50.0, "SNR {snr:.1} dB");

    // The delay is compensated in the timestamps: buffers are contiguous and
    // the stream starts DELAY samples before the first chunk's anchor.
    assert_contiguous(&got.buffers);
    let total: gst::ClockTime = got.buffers.iter().map(|b| b.duration().unwrap()).sum();
    assert_eq!(total, gst::ClockTime::from_nseconds(1_002_625_000));
    set_state(&p, gst::State::Null);
}

fn a_gap_becomes_silence_flagged_discont_and_counted() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let ulaw = encode(&sine(440.0, 8000.0, 8000.0, 160 * 20));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for (i, chunk) in ulaw.chunks(160).enumerate() {
            if i == 10 || i == 11 {
                call.lose_media(160);
            } else {
                call.send_media(chunk).unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let mut expected = decode(&ulaw);
    expected[1600..1920].fill(0);
    assert_eq!(got.samples(), expected);
    assert_contiguous(&got.buffers);
    // 18 buffers: the one after the gap carries the 40 ms of silence.
    assert_eq!(got.buffers.len(), 18);
    let discont: Vec<usize> = (0..got.buffers.len())
        .filter(|&i| got.buffers[i].flags().contains(gst::BufferFlags::DISCONT))
        .collect();
    assert_eq!(
        discont,
        [0, 10],
        "DISCONT on the first buffer and after the gap"
    );
    assert_eq!(
        got.buffers[10].duration().unwrap(),
        gst::ClockTime::from_mseconds(60)
    );
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("chunks-lost"), 2);
    assert_eq!(src.property::<u64>("chunks-received"), 18);
    let stats = src.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("chunks-lost").unwrap(), 2);
    set_state(&p, gst::State::Null);
}

fn a_timestamp_jump_without_a_chunk_gap_is_a_gap_too() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let ulaw = vec![0x80u8; 160 * 4];
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        let mut msgs = Vec::new();
        for chunk in ulaw.chunks(160) {
            msgs.push(call.media_message(chunk));
        }
        // Chunk numbers stay consecutive, but the last chunk is 100 ms late.
        if let gsttwiliostream::protocol::Inbound::Media { media, .. } = &mut msgs[3] {
            media.timestamp.0 += 100;
        }
        for m in &msgs {
            call.send(m).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let samples = got.samples();
    assert_eq!(samples.len(), 640 + 800);
    assert!(samples[480..1280].iter().all(|&s| s == 0));
    assert!(samples[1280..].iter().all(|&s| s == 32124));
    assert_eq!(by_name(&p, "src").property::<u64>("chunks-lost"), 5);
    set_state(&p, gst::State::Null);
}

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

fn a_connection_dropped_without_stop_ends_with_a_warning_and_eos() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for _ in 0..5 {
            call.send_media(&[0xFF; 160]).unwrap();
        }
        // Let the media reach the socket before the connection dies.
        tokio::time::sleep(Duration::from_millis(100)).await;
        call.abort().await;
    });
    let got = collector.wait_eos();
    assert_eq!(got.samples().len(), 800);
    let warning = drain_messages(&bus)
        .into_iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some((
                w.src().map(|s| s.name().to_string()),
                w.error().to_string(),
                w.debug(),
            )),
            _ => None,
        })
        .expect("a warning");
    assert_eq!(warning.0.as_deref(), Some("src"));
    let text = format!("{} {:?}", warning.1, warning.2);
    assert!(text.contains("before any stop message"), "{text}");
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
    let (c1, mut c2) = rt().block_on(async {
        let mut c1 = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        c1.send_media(&[0x80; 160]).unwrap();
        let mut c2 = TwilioCall::start(&url, second.clone()).await.unwrap();
        c2.send_media(&[0x00; 160]).unwrap();
        (c1, c2)
    });
    a.wait_buffers(1);

    let p2 = pipeline(&format!(
        "twiliostreamsrc name=src port={port} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let b = Collector::attach(&by_name(&p2, "sink"));
    set_state(&p2, gst::State::Playing);
    rt().block_on(async {
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
        let mut call = TwilioCall::connect(&url, params).await.unwrap();
        // Media before start.
        call.send_text(&format!(
            r#"{{"event":"media","streamSid":"{sid}","media":{{"timestamp":"0","payload":"AAAA"}}}}"#
        ))
        .unwrap();
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
    // before start, not json, missing field, binary, unknown, wrong sid, duplicate start
    assert_eq!(src.property::<u64>("invalid-messages"), 7);
    assert_eq!(src.property::<u64>("transcode-errors"), 1);
    assert_eq!(src.property::<u64>("chunks-received"), 2);
    set_state(&p, gst::State::Null);
}

/// Runs `f` on another thread and fails if it does not return in time:
/// a hang detector, not a timing assertion.
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} did not return"))
}

fn stopping_mid_call_returns_and_frees_the_port() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let port = by_name(&p, "src").property::<u32>("bound-port") as u16;
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for _ in 0..3 {
            call.send_media(&[0xFF; 160]).unwrap();
        }
        call
    });
    collector.wait_buffers(3);
    assert!(by_name(&p, "src").property::<bool>("connected"));

    let p2 = p.clone();
    returns("PLAYING -> NULL mid-call", move || {
        set_state(&p2, gst::State::Null)
    });
    // The listening socket is gone: the port binds again at once.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still taken");
    // And the call's socket was closed by us.
    let closed = rt().block_on(async {
        loop {
            match call.recv_timeout(PATIENCE).await {
                Some(Received::Closed(code)) => break code,
                Some(_) => continue,
                None => break None,
            }
        }
    });
    assert_eq!(closed, Some(1000));
    assert!(!by_name(&p, "src").property::<bool>("connected"));
}

#[test]
fn stopping_before_any_call_returns_and_frees_the_port() {
    let (p, _collector, _url) =
        start("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    let port = by_name(&p, "src").property::<u32>("bound-port") as u16;
    // Give the streaming thread time to block waiting for a call.
    std::thread::sleep(Duration::from_millis(50));
    let p2 = p.clone();
    returns("PLAYING -> NULL before a call", move || {
        set_state(&p2, gst::State::Null)
    });
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still taken");
    assert_eq!(by_name(&p, "src").property::<u32>("bound-port"), 0);

    // The element can listen again after that.
    set_state(&p, gst::State::Playing);
    assert_ne!(by_name(&p, "src").property::<u32>("bound-port"), 0);
    let p2 = p.clone();
    returns("PLAYING -> NULL again", move || {
        set_state(&p2, gst::State::Null)
    });
}

fn hostile_timestamps_and_chunk_numbers_cannot_break_the_stream() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let ulaw = vec![0x80u8; 160];
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&ulaw).unwrap();
        // Far in the future, then the largest numbers there are.
        let mut far = call.media_message(&ulaw);
        let mut max = call.media_message(&ulaw);
        if let gsttwiliostream::protocol::Inbound::Media { media, .. } = &mut far {
            media.timestamp.0 = 99_999_999_999_999;
        }
        if let gsttwiliostream::protocol::Inbound::Media { media, .. } = &mut max {
            media.timestamp.0 = u64::MAX;
            media.chunk = Some(gsttwiliostream::protocol::Counter(u64::MAX));
        }
        call.send(&far).unwrap();
        call.send(&max).unwrap();
        call.send_media(&ulaw).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    // Every chunk, contiguous, no silence invented.
    assert_eq!(got.samples(), vec![32124; 4 * 160]);
    assert_contiguous(&got.buffers);
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("invalid-messages"), 2);
    set_state(&p, gst::State::Null);
}

fn realtime_call_timestamps_follow_twilio() {
    // A short real-time call: the pipeline clock runs, buffers are placed by
    // media.timestamp, anchored near when the first chunk arrived.
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let script = twilio_emulator::Script {
        audio: vec![0xFF; 160 * 25],
        linger: Duration::ZERO,
        ..Default::default()
    };
    rt().block_on(async {
        let call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        twilio_emulator::play::run(call, &script).await.unwrap();
    });
    let got = collector.wait_eos();
    assert_eq!(got.buffers.len(), 25);
    assert_contiguous(&got.buffers);
    let first = got.buffers[0].pts().unwrap();
    let last = got.buffers.last().unwrap();
    assert_eq!(
        last.pts().unwrap() + last.duration().unwrap() - first,
        gst::ClockTime::from_mseconds(500)
    );
    set_state(&p, gst::State::Null);
}
