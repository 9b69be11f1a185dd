//! The hostile-input matrix: one test per kind of bad input, each checking
//! the documented behaviour (README, "Bad input never costs the call").
//! Unless said otherwise, the call goes on: a valid chunk before and a valid
//! chunk after the bad input both come out, and nothing else does.

mod common;

use std::time::Duration;

use common::raw::{self, RawWs, next_close};
use common::src::start;
use common::*;
use futures::SinkExt;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, TwilioCall};

/// A listening src into a fakesink at 8 kHz.
const PCM8K: &str =
    "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false";

const BEFORE: [u8; 160] = [0x80; 160];
const AFTER: [u8; 160] = [0x00; 160];

struct Run {
    src: gst::Element,
    samples: Vec<i16>,
    warnings: Vec<String>,
}

/// A call with `bad` between two valid chunks; returns what came out.
fn around(bad: impl FnOnce(&mut TwilioCall)) -> Run {
    let (p, collector, url) = start(PCM8K);
    let src = by_name(&p, "src");
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&BEFORE).unwrap();
        bad(&mut call);
        call.send_media(&AFTER).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let warnings = warnings(&p.bus().unwrap());
    set_state(&p, gst::State::Null);
    Run {
        src,
        samples: got.samples(),
        warnings,
    }
}

fn expect_call_went_on(run: &Run) {
    let mut expected = decode(&BEFORE);
    expected.extend(decode(&AFTER));
    assert_eq!(run.samples, expected);
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
}

fn invalid(run: &Run) -> u64 {
    run.src.property::<u64>("invalid-messages")
}

fn sid(call: &TwilioCall) -> String {
    call.params.stream_sid.clone()
}

#[test]
fn malformed_json() {
    let run = around(|c| c.send_text("{\"event\":\"media\",").unwrap());
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
}

#[test]
fn missing_required_field() {
    let run = around(|c| {
        let text = format!(
            r#"{{"event":"media","streamSid":"{}","media":{{"timestamp":"0"}}}}"#,
            sid(c)
        );
        c.send_text(&text).unwrap()
    });
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
}

#[test]
fn bad_base64() {
    let run = around(|c| {
        let text = format!(
            r#"{{"event":"media","streamSid":"{}","media":{{"timestamp":"175","payload":"!!not base64!!"}}}}"#,
            sid(c)
        );
        c.send_text(&text).unwrap()
    });
    // Counted as a transcode error; its time slot is filled by timestamps.
    assert_eq!(run.src.property::<u64>("transcode-errors"), 1);
    assert_eq!(run.samples.len(), 320);
    assert_eq!(invalid(&run), 0);
}

#[test]
fn base64_of_odd_length() {
    // "AAA" lacks its padding: not base64 as Twilio sends it.
    let run = around(|c| {
        let text = format!(
            r#"{{"event":"media","streamSid":"{}","media":{{"timestamp":"175","payload":"AAA"}}}}"#,
            sid(c)
        );
        c.send_text(&text).unwrap()
    });
    assert_eq!(run.src.property::<u64>("transcode-errors"), 1);
    assert_eq!(run.samples.len(), 320);
}

#[test]
fn payload_of_odd_byte_count_is_audio() {
    // μ-law is a byte a sample: 159 bytes are 159 samples, nothing wrong.
    let run = around(|c| c.send_media(&[0xFF; 159]).unwrap());
    assert_eq!(run.samples.len(), 160 + 159 + 160);
    assert_eq!(run.src.property::<u64>("transcode-errors"), 0);
}

#[test]
fn empty_payload() {
    let run = around(|c| {
        let text = format!(
            r#"{{"event":"media","streamSid":"{}","media":{{"timestamp":"175","payload":""}}}}"#,
            sid(c)
        );
        c.send_text(&text).unwrap()
    });
    expect_call_went_on(&run);
    assert_eq!(run.src.property::<u64>("chunks-received"), 2);
}

#[test]
fn wrong_stream_sid() {
    let run = around(|c| {
        c.send_text(r#"{"event":"media","streamSid":"MZnotthisone","media":{"timestamp":"175","payload":"AAAA"}}"#)
            .unwrap()
    });
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
}

#[test]
fn media_of_an_unknown_track() {
    let run = around(|c| {
        let text = format!(
            r#"{{"event":"media","streamSid":"{}","media":{{"track":"sideways","timestamp":"175","payload":"AAAA"}}}}"#,
            sid(c)
        );
        c.send_text(&text).unwrap()
    });
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
    assert_eq!(run.src.property::<u64>("chunks-received"), 2);
}

#[test]
fn unknown_event() {
    let run = around(|c| c.send_text(r#"{"event":"transfer","to":"+1555"}"#).unwrap());
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
}

#[test]
fn a_mark_name_holding_u0000() {
    // Posted, it would be cut to "greeting": a name the bot may have sent.
    let run = around(|c| {
        let text = format!(
            r#"{{"event":"mark","streamSid":"{}","mark":{{"name":"greeting\u0000x"}}}}"#,
            sid(c)
        );
        c.send_text(&text).unwrap()
    });
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
    assert_eq!(run.src.property::<u64>("marks-received"), 0);
}

#[test]
fn binary_frame() {
    let run = around(|c| c.send_binary(&[0xFF; 160]).unwrap());
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
}

#[test]
fn duplicate_start() {
    let run = around(|c| c.begin().unwrap());
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
}

/// `start` in Twilio's shape, its `mediaFormat` without `sampleRate`.
fn start_without_a_rate(sid: &str, encoding: &str) -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC1","streamSid":"{sid}","callSid":"CA1","tracks":["inbound"],"mediaFormat":{{"encoding":"{encoding}","channels":1}}}}}}"#
    )
}

#[test]
fn a_start_without_a_sample_rate() {
    // G.711 has one rate: the call is taken, its audio whole. L16 could be
    // any: that connection is no call (1008, naming the format).
    let (p, collector, url) = start(PCM8K);
    let src = by_name(&p, "src");
    rt().block_on(async {
        let mut probe = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        probe
            .send_text(&start_without_a_rate(&sid(&probe), "audio/x-L16"))
            .unwrap();
        let closed = probe.recv_timeout(PATIENCE).await;
        assert_eq!(closed, Some(twilio_emulator::Received::Closed(Some(1008))));
        let mut call = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        call.send_text(&start_without_a_rate(&sid(&call), "audio/x-mulaw"))
            .unwrap();
        call.send_media(&BEFORE).unwrap();
        call.send_media(&AFTER).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    let mut expected = decode(&BEFORE);
    expected.extend(decode(&AFTER));
    assert_eq!(collector.wait_eos().samples(), expected);
    assert_eq!(src.property::<u64>("invalid-messages"), 0);
    counter_reaches(&src, "rejected-connections", 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn media_before_start() {
    // A connection becomes a call only at start: one that sends media
    // first is closed (1008) and counted, and never reaches the src; the
    // real call after it arrives whole.
    let (p, collector, url) = start(PCM8K);
    let src = by_name(&p, "src");
    rt().block_on(async {
        let mut probe = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        let early = probe.media_message(&[0x55; 160]);
        probe.send(&early).unwrap();
        let closed = probe.recv_timeout(PATIENCE).await;
        assert_eq!(closed, Some(twilio_emulator::Received::Closed(Some(1008))));
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&AFTER).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    assert_eq!(collector.wait_eos().samples(), decode(&AFTER));
    assert_eq!(src.property::<u64>("invalid-messages"), 0);
    // Counted once the server is done with the probe: after the close
    // frame it saw.
    counter_reaches(&src, "rejected-connections", 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn oversized_frame() {
    // Over max-message-size (64 KiB by default): counted, ignored.
    let run = around(|c| {
        c.send_text(&format!(
            "{{\"event\":\"x\",\"pad\":\"{}\"}}",
            "a".repeat(70_000)
        ))
        .unwrap()
    });
    expect_call_went_on(&run);
    assert_eq!(invalid(&run), 1);
}

#[test]
fn a_second_connection_for_the_same_call() {
    // Twilio may open a second socket for a call. Each socket is a call of
    // its own: the first is not disturbed, the second goes to the next
    // element free on the path.
    let p = pipeline(
        "twiliostreamsrc name=a port=0 path=/s ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let first = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let port = by_name(&p, "a").property::<u32>("bound-port");
    let p2 = pipeline(&format!(
        "twiliostreamsrc name=b port={port} path=/s ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let second = Collector::attach(&by_name(&p2, "sink"));
    set_state(&p2, gst::State::Playing);
    let url = format!("ws://127.0.0.1:{port}/s");
    let params = CallParams::default();
    let mut one = rt().block_on(async {
        let mut one = TwilioCall::start(&url, params.clone()).await.unwrap();
        one.send_media(&BEFORE).unwrap();
        one
    });
    // A socket becomes a call at its start, given to the oldest free src:
    // the first must be a's before the second starts.
    first.wait_buffers(1);
    rt().block_on(async {
        let mut two = TwilioCall::start(&url, params.clone()).await.unwrap();
        two.send_media(&AFTER).unwrap();
        one.send_media(&BEFORE).unwrap();
        for c in [&mut one, &mut two] {
            c.send_stop().unwrap();
        }
        one.close().await;
        two.close().await;
    });
    assert_eq!(
        first.wait_eos().samples(),
        [decode(&BEFORE), decode(&BEFORE)].concat()
    );
    assert_eq!(second.wait_eos().samples(), decode(&AFTER));
    set_state(&p, gst::State::Null);
    set_state(&p2, gst::State::Null);
}

/// A call from a client of the test's own (its socket within reach):
/// `start` of an inbound-only call, then one chunk of 4 samples.
async fn raw_call(url: &str) -> RawWs {
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, params) = raw::started_call(url).await;
    let media = format!(
        r#"{{"event":"media","streamSid":"{}","media":{{"timestamp":"0","payload":"gICAgA=="}}}}"#,
        params.stream_sid
    );
    ws.send(Message::text(media)).await.unwrap();
    ws
}

#[test]
fn abrupt_tcp_reset_mid_call() {
    let (p, collector, url) = start(PCM8K);
    rt().block_on(async {
        // A raw socket, so that it can be reset.
        let ws = raw_call(&url).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // SO_LINGER 0: closing sends a RST instead of a FIN (and does
        // not block: nothing is left to send).
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            #[allow(deprecated)]
            tcp.set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(ws);
    });
    let got = collector.wait_eos();
    assert_eq!(got.samples(), vec![32124; 4]);
    let warning = warnings(&p.bus().unwrap()).pop().expect("a warning");
    assert!(warning.contains("before any stop message"), "{warning}");
    set_state(&p, gst::State::Null);
}

/// A connection closed (a FIN) with no close frame is said to have
/// dropped, not taken for a protocol error answered with 1002.
#[test]
fn a_tcp_close_without_a_close_frame_mid_call() {
    let (p, collector, url) = start(PCM8K);
    rt().block_on(async {
        let ws = raw_call(&url).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(ws);
    });
    let got = collector.wait_eos();
    assert_eq!(got.samples(), vec![32124; 4]);
    let warning = warnings(&p.bus().unwrap()).pop().expect("a warning");
    assert!(
        warning.contains("the connection dropped without a close frame before any stop message"),
        "{warning}"
    );
    set_state(&p, gst::State::Null);
}

/// A text frame that is not UTF-8 breaks the WebSocket protocol: the call
/// ends with close code 1007 (RFC 6455), said in the close frame, not by
/// dropping the connection; the audio before it went out.
#[test]
fn text_that_is_not_utf8_is_closed_with_1007() {
    let (p, collector, url) = start(PCM8K);
    let code = rt().block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut ws = raw_call(&url).await;
        // FIN + text, masked (a zero key), 2 bytes that are not UTF-8.
        let frame = [0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe];
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() {
            tcp.write_all(&frame).await.unwrap();
        }
        next_close(&mut ws).await
    });
    assert_eq!(code, Some(1007));
    let got = collector.wait_eos();
    assert_eq!(got.samples(), vec![32124; 4]);
    set_state(&p, gst::State::Null);
}

/// U+0000 in what is posted (ids, custom parameters, a close frame's
/// reason): GLib's strings end there, and a debug build of glib-rs panics
/// on one, which ended the call's task. Each comes out as U+FFFD.
#[test]
fn u0000_in_the_ids_parameters_and_close_reason() {
    let (p, collector, url) = start(PCM8K);
    let params = CallParams {
        call_sid: "CA\0nul".into(),
        custom_parameters: [("na\0me".into(), "va\0lue".into())].into(),
        ..Default::default()
    };
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        call.send_media(&BEFORE).unwrap();
        collector.wait_buffers(1);
        call.send_media(&AFTER).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    assert_eq!(
        collector.wait_eos().samples(),
        [decode(&BEFORE), decode(&AFTER)].concat()
    );
    let messages = drain_messages(&p.bus().unwrap());
    let started = element_messages(&messages, "twilio-start");
    assert_eq!(started.len(), 1);
    assert_eq!(
        started[0].get::<String>("call-sid").unwrap(),
        "CA\u{FFFD}nul"
    );
    let params = started[0]
        .get::<gst::Structure>("custom-parameters")
        .unwrap();
    // (A name that is no plain field name comes as `name=value` in left-out.)
    let left_out = params.get::<gst::Array>("left-out").unwrap();
    assert_eq!(
        left_out.first().unwrap().get::<String>().unwrap(),
        "na\u{FFFD}me=va\u{FFFD}lue"
    );
    let stopped = element_messages(&messages, "twilio-stop");
    assert_eq!(
        stopped[0].get::<String>("call-sid").unwrap(),
        "CA\u{FFFD}nul"
    );
    set_state(&p, gst::State::Null);

    // A close frame's reason, in the WARNING that the call ended before stop.
    let (p, collector, url) = start(PCM8K);
    rt().block_on(async {
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame;
        let mut ws = raw_call(&url).await;
        collector.wait_buffers(1);
        let frame = CloseFrame {
            code: 4000.into(),
            reason: "by\0e".into(),
        };
        ws.send(Message::Close(Some(frame))).await.unwrap();
        assert_eq!(next_close(&mut ws).await, Some(4000));
    });
    assert_eq!(collector.wait_eos().samples(), vec![32124; 4]);
    let warning = warnings(&p.bus().unwrap()).pop().expect("a warning");
    assert!(warning.contains("code 4000: by\u{FFFD}e"), "{warning}");
    set_state(&p, gst::State::Null);
}

/// Twilio closes with `code` on `ws`: the reply it gets before the end of
/// the connection (RFC 6455 5.5.1: a close frame, its code echoed).
async fn close_answered(ws: &mut RawWs, code: u16) -> Option<u16> {
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    let frame = CloseFrame {
        code: code.into(),
        reason: "bye".into(),
    };
    ws.send(Message::Close(Some(frame))).await.unwrap();
    next_close(ws).await
}

/// Twilio's close frame mid-call is answered with a close frame before the
/// connection ends; the audio before it went out. A code no endpoint may
/// send (999) is answered with 1002, and the WARNING does not say Twilio
/// sent that.
#[test]
fn a_close_from_twilio_is_answered() {
    for (sent, answered, said) in [
        (4000, 4000, "Twilio closed the WebSocket (code 4000: bye)"),
        (
            999,
            1002,
            "Twilio closed the WebSocket with a close code no endpoint may send \
             (answered with 1002; or with 1002 itself)",
        ),
    ] {
        let (p, collector, url) = start(PCM8K);
        let code = rt().block_on(async {
            let mut ws = raw_call(&url).await;
            collector.wait_buffers(1);
            close_answered(&mut ws, sent).await
        });
        assert_eq!(code, Some(answered));
        assert_eq!(collector.wait_eos().samples(), vec![32124; 4]);
        let warning = warnings(&p.bus().unwrap()).pop().expect("a warning");
        assert!(warning.contains(said), "{warning}");
        set_state(&p, gst::State::Null);
    }
}

/// So is one before any `start`.
#[test]
fn a_close_before_start_is_answered() {
    let p = pipeline("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let code = rt().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        close_answered(&mut ws, 4000).await
    });
    assert_eq!(code, Some(4000));
    set_state(&p, gst::State::Null);
}
