//! When a connection becomes a call (at `start`), what a connection that never
//! does gets, what a call with no free element gets, and ending a call.

mod common;

use common::app::free_port;
use common::waiting::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::call::WsError;
use twilio_emulator::{CallParams, Received, TwilioCall};

/// A whole call: start, `ulaw`, stop.
async fn real_call(url: &str, ulaw: &[u8]) {
    let mut call = TwilioCall::start(url, CallParams::default()).await.unwrap();
    call.send_media(ulaw).unwrap();
    call.send_stop().unwrap();
    call.close().await;
}

#[test]
fn connections_that_never_start_do_not_touch_the_src() {
    let (p, src, collector, url) = recording("");
    rt().block_on(async {
        // A probe that upgrades and idles: it stays open all along.
        let idle = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        // One that sends `connected` and closes.
        let mut early = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        early
            .send_text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)
            .unwrap();
        early.close().await;
        // One that sends garbage: closed with 1008.
        let mut garbage = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        garbage.send_text("GET / HTTP/1.0").unwrap();
        assert_eq!(closed(&mut garbage).await, Some(1008));
        // Media before start is no call either.
        let mut media_first = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        let chunk = media_first.media_message(&MORE);
        media_first.send(&chunk).unwrap();
        assert_eq!(closed(&mut media_first).await, Some(1008));
        // A start without a streamSid is no call either.
        let mut no_sid = TwilioCall::connect(&url, CallParams::default()).await.unwrap();
        no_sid
            .send_text(r#"{"event":"start","streamSid":"","start":{"accountSid":"AC1","callSid":"CA1","streamSid":""}}"#)
            .unwrap();
        assert_eq!(closed(&mut no_sid).await, Some(1008));
        // The real call arrives whole in the same src.
        real_call(&url, &AUDIO).await;
        idle.abort().await;
    });
    assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
    let bus = p.bus().unwrap();
    assert!(warnings(&bus).is_empty(), "{:?}", warnings(&bus));
    // The idle probe counts once the server has seen it go.
    counter_reaches(&src, "rejected-connections", 5);
    assert_eq!(src.property::<u64>("invalid-messages"), 0);
    assert_eq!(src.property::<u64>("chunks-received"), 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn a_connection_with_no_start_in_time_is_closed_and_counted() {
    let (p, src, collector, url) = recording("handshake-timeout=1");
    rt().block_on(async {
        let mut idle = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        idle.send_text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#)
            .unwrap();
        assert_eq!(closed(&mut idle).await, Some(1008));
        real_call(&url, &AUDIO).await;
    });
    assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
    // Counted once the server is done with the connection: after the close
    // frame the probe saw.
    counter_reaches(&src, "rejected-connections", 1);
    assert!(warnings(&p.bus().unwrap()).is_empty());
    set_state(&p, gst::State::Null);
}

#[test]
fn max_connections_evicts_connections_that_have_not_started() {
    let (p, src, collector, url) = recording("max-connections=2");
    rt().block_on(async {
        let mut first = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        let _second = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        // A third connection, the real call, evicts the oldest probe.
        let mut call = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        assert_eq!(
            closed(&mut first).await,
            Some(1013),
            "told to try again later"
        );
        call.begin().unwrap();
        call.send_media(&AUDIO).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
    assert_eq!(src.property::<u64>("chunks-received"), 1);
    // Counted after the close frame the evicted probe saw.
    counter_reaches(&src, "rejected-connections", 1);
    set_state(&p, gst::State::Null);
}

/// A Telnyx `start` announcing `encoding` at `rate`, from a client of the
/// test's own: the close frame the plugin answers with (code, reason).
async fn start_closed(url: &str, encoding: &str, rate: u32) -> (u16, String) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let start = format!(
        r#"{{"event":"start","sequence_number":"1","start":{{"call_control_id":"v3:x","media_format":{{"encoding":"{encoding}","sample_rate":{rate},"channels":1}}}},"stream_id":"32de0dea"}}"#
    );
    ws.send(Message::text(start)).await.unwrap();
    match tokio::time::timeout(PATIENCE, ws.next()).await {
        Ok(Some(Ok(Message::Close(Some(frame))))) => {
            (u16::from(frame.code), frame.reason.to_string())
        }
        other => panic!("no close frame: {other:?}"),
    }
}

/// A `start` of a format the plugin cannot carry is no call: closed with
/// 1008 and a reason naming the format (cut to the 123 bytes a close frame
/// holds), not as if it were no `start`.
#[test]
fn a_start_of_an_unsupported_format_is_closed_naming_it() {
    let (p, src, collector, url) = recording("");
    let long = "X".repeat(200);
    let got = rt().block_on(async {
        let mut got = Vec::new();
        for (encoding, rate) in [
            ("AMR-WB", 16000),
            ("PCMA", 16000),
            ("L16", 44100),
            (&long, 8000),
        ] {
            got.push(start_closed(&url, encoding, rate).await);
        }
        real_call(&url, &AUDIO).await;
        got
    });
    let refused = |format: &str| (1008, format!("unsupported media format {format}"));
    let cut = format!(r#"unsupported media format "{long}"#)[..123].to_owned();
    assert_eq!(
        got,
        [
            refused(r#""AMR-WB" at 16000 Hz"#),
            refused(r#""PCMA" at 16000 Hz"#),
            refused(r#""L16" at 44100 Hz"#),
            (1008, cut),
        ]
    );
    assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
    counter_reaches(&src, "rejected-connections", 4);
    set_state(&p, gst::State::Null);
}

#[test]
fn a_call_with_every_element_busy_gets_1013_and_the_busy_call_goes_on() {
    let (p, src, collector, url) = recording("pending-timeout=1");
    let mut busy = busy_call(&url, &collector);
    rt().block_on(async {
        let mut second = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        second.send_media(&MORE).unwrap();
        assert_eq!(closed(&mut second).await, Some(1013));
        busy.send_media(&AUDIO).unwrap();
        busy.send_stop().unwrap();
        busy.close().await;
    });
    let mut expected = decode(&AUDIO);
    expected.extend(decode(&AUDIO));
    assert_eq!(collector.wait_eos().samples(), expected);
    assert_eq!(src.property::<u64>("refused-calls"), 1);
    assert!(warnings(&p.bus().unwrap()).is_empty());
    set_state(&p, gst::State::Null);
}

#[test]
fn with_pending_timeout_0_a_busy_path_answers_503_at_the_upgrade() {
    let (p, src, collector, url) = recording("pending-timeout=0");
    let mut busy = busy_call(&url, &collector);
    rt().block_on(async {
        match TwilioCall::connect(&url, CallParams::default()).await {
            Err(WsError::Http(response)) => assert_eq!(response.status(), 503),
            Err(other) => panic!("expected HTTP 503, got {other}"),
            Ok(_) => panic!("expected HTTP 503, the upgrade succeeded"),
        }
        busy.send_stop().unwrap();
        busy.close().await;
    });
    assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
    assert_eq!(src.property::<u64>("refused-calls"), 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn a_path_with_a_query_string_is_refused() {
    for path in ["/media?x=1", "/media#x"] {
        let p = pipeline(&format!("twiliostreamsrc port=0 path={path} ! fakesink"));
        assert!(p.set_state(gst::State::Playing).is_err(), "{path}");
        let error = first_error_text(&p.bus().unwrap()).expect("an error message");
        assert!(error.contains("query string"), "{error}");
        set_state(&p, gst::State::Null);
    }
}

/// The src's end-stream signal: the socket closes normally (after the
/// final mark is echoed, with `after_playout`), twilio-ended, EOS.
#[test]
fn the_end_stream_signal_closes_the_call_and_the_src_goes_eos() {
    for after_playout in [false, true] {
        let (p, src, collector, url) = recording("");
        let mut call = rt().block_on(async {
            let mut call = TwilioCall::start(&url, CallParams::default())
                .await
                .unwrap();
            call.send_media(&AUDIO).unwrap();
            call
        });
        collector.wait_buffers(1);
        assert!(src.emit_by_name::<bool>("end-stream", &[&after_playout]));
        let (marks, code) = rt().block_on(async {
            let mut marks = Vec::new();
            loop {
                match call.recv_timeout(PATIENCE).await {
                    Some(Received::Message(
                        gsttwiliostream::protocol::Outbound::Mark { mark, .. },
                        _,
                    )) => marks.push(mark.name),
                    Some(Received::Closed(code)) => break (marks, code),
                    Some(other) => panic!("{other:?}"),
                    None => panic!("not closed"),
                }
            }
        });
        assert_eq!(code, Some(1000));
        let expected: &[&str] = if after_playout {
            &["twiliostream-end"]
        } else {
            &[]
        };
        assert_eq!(marks, expected);
        assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
        let messages = drain_messages(&p.bus().unwrap());
        let ended = element_messages(&messages, "twilio-ended");
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].get::<String>("reason").unwrap(), "end-stream");
        assert!(
            messages
                .iter()
                .all(|m| !matches!(m.view(), gst::MessageView::Warning(_)))
        );
        assert!(
            !src.emit_by_name::<bool>("end-stream", &[&false]),
            "nothing left to end"
        );
        set_state(&p, gst::State::Null);
    }
}

/// A connection upgraded but not yet started when its element stops (a
/// port of the system's choosing, so nothing can listen there again) is
/// closed at once with 1013, not left until its `handshake-timeout` (1008).
/// (Before, the stop dropped it without a close frame.)
#[test]
fn a_connection_not_yet_started_when_the_element_stops_gets_1013_at_once() {
    let (p, _src, _collector, url) = recording("path=/stopping handshake-timeout=5");
    let mut probe = rt().block_on(async {
        TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap()
    });
    set_state(&p, gst::State::Null);
    rt().block_on(async {
        assert_eq!(closed(&mut probe).await, Some(1013));
    });
}

/// On a fixed port, a connection upgraded but not yet started while its
/// pipeline is cycled through NULL is the call of the pipeline back there.
#[test]
fn a_connection_not_yet_started_is_the_call_of_its_pipeline_cycled_meanwhile() {
    let port = free_port();
    let (p, src, _collector, url) = recording(&format!("port={port} path=/cycled-early"));
    let mut probe = rt().block_on(async {
        TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap()
    });
    set_state(&p, gst::State::Null);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    rt().block_on(async {
        probe.begin().unwrap();
        probe.send_media(&AUDIO).unwrap();
        probe.send_stop().unwrap();
        probe.close().await;
    });
    assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
    assert_eq!(src.property::<u64>("rejected-connections"), 0);
    set_state(&p, gst::State::Null);
}

/// A connection in the middle of its HTTP request when the element stops
/// gets an HTTP answer, not a dropped socket: 404, nobody serves the path.
#[test]
fn a_request_half_sent_when_the_element_stops_is_answered_404() {
    use std::io::{Read, Write};
    let (p, _src, _collector, url) = recording("path=/half-sent");
    let addr = url.trim_start_matches("ws://").split('/').next().unwrap();
    debug_log();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /half-sent HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    wait_until_logged(&format!("{}: accepted", s.local_addr().unwrap()));
    set_state(&p, gst::State::Null);
    s.write_all(
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer:?}");
}

/// On a fixed port, connections idle in their handshake while the pipeline
/// is cycled through NULL count against max-connections of the listener
/// back there, which evicts them as its own: a call coming then is let in.
#[test]
fn idle_connections_from_before_a_cycle_are_evicted_for_a_call_after_it() {
    let port = free_port();
    let (p, _src, _collector, url) = recording(&format!(
        "port={port} path=/evict-cycled max-connections=2 handshake-timeout=60"
    ));
    let mut idle = rt().block_on(async {
        let first = TwilioCall::connect(&url, CallParams::default()).await;
        let second = TwilioCall::connect(&url, CallParams::default()).await;
        [first.unwrap(), second.unwrap()]
    });
    set_state(&p, gst::State::Null);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    rt().block_on(async {
        real_call(&url, &AUDIO).await;
        assert_eq!(closed(&mut idle[0]).await, Some(1013));
    });
    assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
    set_state(&p, gst::State::Null);
}

/// On a fixed port, a connection upgraded without a signature while its
/// pipeline was stopped is no call of an element back on its path with an
/// auth-token (as a waiting call is not): its `start` gets 1013, counted
/// by that element.
#[test]
fn a_connection_upgraded_unsigned_is_not_the_call_of_an_element_back_with_an_auth_token() {
    let port = free_port();
    let (p, _src, _collector, url) = recording(&format!("port={port} path=/auth-early"));
    let mut probe = rt().block_on(async {
        TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap()
    });
    set_state(&p, gst::State::Null);
    let (p2, src2, _collector2, _) =
        recording(&format!("port={port} path=/auth-early auth-token=secret"));
    rt().block_on(async {
        probe.begin().unwrap();
        probe.send_media(&AUDIO).unwrap();
        assert_eq!(closed(&mut probe).await, Some(1013));
    });
    assert!(!src2.property::<bool>("connected"));
    assert_eq!(src2.property::<u64>("refused-calls"), 1);
    set_state(&p2, gst::State::Null);
}
