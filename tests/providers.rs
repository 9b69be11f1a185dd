//! The providers that copied Twilio's protocol, end to end over real
//! loopback WebSockets with the emulator playing each: SignalWire's
//! wideband L16 and Telnyx's A-law into the src (bit for bit where nothing
//! is resampled, our resampler's output where something is, renegotiation
//! to a call's own rate), DTMF, and the sink's wire shape per dialect byte
//! for byte, with marks and clear.

mod common;

use base64::Engine as _;
use common::sink::*;
use common::src::{assert_contiguous, in_both_modes, start};
use common::*;
use gst::glib;
use gst::prelude::*;
use gsttwiliostream::codec::{ByteOrder, Resampler, WireFormat, alaw};
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{CallParams, Impairments, Playout, Provider, Received, Script, TwilioCall};

in_both_modes!(
    signalwire_l16_16k_comes_out_bit_for_bit,
    l16_24k_switches_to_its_own_rate_when_downstream_takes_it,
    l16_24k_is_resampled_when_downstream_wants_16k,
    telnyx_alaw_decodes_bit_exact_with_its_dtmf,
    telnyx_alaw_raw_output_is_the_payload_untouched,
    telnyx_media_out_of_order_comes_out_in_order,
    without_the_reorder_window_a_chunk_after_its_successor_is_dropped,
);

/// Plays `wire` (bytes of `params.format`) in 20 ms chunks as fast as
/// possible, a DTMF digit after the first, then stop.
fn play(url: &str, params: CallParams, wire: &[u8]) {
    let chunk = 160 * params.format.bytes_per_tick();
    rt().block_on(async {
        let mut call = TwilioCall::start(url, params).await.unwrap();
        for (i, c) in wire.chunks(chunk).enumerate() {
            call.send_media(c).unwrap();
            if i == 0 {
                call.send_dtmf("7").unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn l16(format: WireFormat, pcm: &[i16]) -> Vec<u8> {
    let mut out = Vec::new();
    format.encode(pcm, &mut out);
    out
}

fn negotiated(p: &gst::Pipeline) -> (String, i32) {
    let caps = by_name(p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    let s = caps.structure(0).unwrap();
    let format = s
        .get::<&str>("format")
        .unwrap_or(s.name().as_str())
        .to_owned();
    (format, s.get::<i32>("rate").unwrap())
}

fn signalwire_l16_16k_comes_out_bit_for_bit() {
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    let format = WireFormat::l16(16000, ByteOrder::Big);
    let pcm = sine(1000.0, 16000.0, 12000.0, 16000);
    play(
        &url,
        CallParams::of(Provider::SignalWire, format),
        &l16(format, &pcm),
    );
    let got = collector.wait_eos();
    assert_eq!(negotiated(&p), ("S16LE".to_owned(), 16000));
    // Its own samples: no resampler, so no tail either.
    assert_eq!(got.samples(), pcm);
    assert_eq!(got.buffers.len(), 50);
    assert_contiguous(&got.buffers);
    set_state(&p, gst::State::Null);
}

fn l16_24k_switches_to_its_own_rate_when_downstream_takes_it() {
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    let format = WireFormat::l16(24000, ByteOrder::Big);
    let pcm = sine(3000.0, 24000.0, 12000.0, 24000);
    play(
        &url,
        CallParams::of(Provider::SignalWire, format),
        &l16(format, &pcm),
    );
    let got = collector.wait_eos();
    assert_eq!(negotiated(&p), ("S16LE".to_owned(), 24000));
    assert_eq!(got.samples(), pcm);
    assert_contiguous(&got.buffers);
    set_state(&p, gst::State::Null);
}

fn l16_24k_is_resampled_when_downstream_wants_16k() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=16000 ! fakesink name=sink sync=false",
    );
    let format = WireFormat::l16(24000, ByteOrder::Big);
    let pcm = sine(3000.0, 24000.0, 12000.0, 24000);
    play(
        &url,
        CallParams::of(Provider::SignalWire, format),
        &l16(format, &pcm),
    );
    let got = collector.wait_eos();
    assert_eq!(negotiated(&p), ("S16LE".to_owned(), 16000));
    // The resampler held to the bar (codec::resample's tests), and its tail.
    let mut resampler = Resampler::new(24000, 16000).unwrap();
    let mut expected = Vec::new();
    resampler.process(&pcm, &mut expected);
    let ours = got.samples();
    assert_eq!(ours[..expected.len()], expected[..]);
    let tail_ticks = (resampler.delay_ns()).div_ceil(125_000) as usize;
    assert_eq!(ours.len(), expected.len() + 2 * tail_ticks);
    assert_contiguous(&got.buffers);
    set_state(&p, gst::State::Null);
}

fn telnyx_alaw_decodes_bit_exact_with_its_dtmf() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    // Every A-law code, many times over, in a scrambled order.
    let codes: Vec<u8> = (0..8000u32).map(|i| (i * 97 % 256) as u8).collect();
    play(
        &url,
        CallParams::of(Provider::Telnyx, WireFormat::PCMA),
        &codes,
    );
    let got = collector.wait_eos();
    let decoded: Vec<i16> = codes.iter().map(|&c| alaw::decode(c)).collect();
    assert_eq!(got.samples(), decoded);
    assert_contiguous(&got.buffers);
    let src = by_name(&p, "src");
    assert!(
        src.property::<Option<String>>("call-sid")
            .is_some_and(|s| s.starts_with("CA")),
        "Telnyx's call_control_id is the call"
    );
    let messages = drain_messages(&bus);
    let dtmf = element_messages(&messages, "twilio-dtmf");
    assert_eq!(dtmf.len(), 1);
    assert_eq!(dtmf[0].get::<&str>("digit").unwrap(), "7");
    set_state(&p, gst::State::Null);
}

fn telnyx_alaw_raw_output_is_the_payload_untouched() {
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! audio/x-alaw ! fakesink name=sink sync=false");
    let codes: Vec<u8> = (0..4000u32).map(|i| (i * 31 % 256) as u8).collect();
    play(
        &url,
        CallParams::of(Provider::Telnyx, WireFormat::PCMA),
        &codes,
    );
    let got = collector.wait_eos();
    assert_eq!(got.bytes(), codes);
    set_state(&p, gst::State::Null);
}

/// Plays `codes` (8 kHz A-law) as a Telnyx call, every 4th chunk sent
/// after the one that follows it; returns the src's output and its counters
/// (reordered, too late, lost).
/// Plays `codes` as a Telnyx A-law call, every fourth chunk swapped with
/// the next: what came out, the counts of chunks reordered, too late and
/// lost, and the call's loss in percent (`stats`).
fn play_swapped(window: u32, codes: &[u8]) -> (common::Collected, [u64; 3], f64) {
    let (p, collector, url) = start(&format!(
        "twiliostreamsrc name=src port=0 reorder-window={window} ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false"
    ));
    let script = Script {
        audio: codes.to_vec(),
        realtime: false,
        linger: std::time::Duration::ZERO,
        impairments: Impairments {
            swap_every: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    rt().block_on(async {
        let call = TwilioCall::start(&url, CallParams::of(Provider::Telnyx, WireFormat::PCMA))
            .await
            .unwrap();
        twilio_emulator::play::run(call, &script).await.unwrap();
    });
    let got = collector.wait_eos();
    let src = by_name(&p, "src");
    let counts =
        ["chunks-reordered", "chunks-too-late", "chunks-lost"].map(|c| src.property::<u64>(c));
    let loss = src
        .property::<gst::Structure>("stats")
        .get::<f64>("loss-percent")
        .unwrap();
    set_state(&p, gst::State::Null);
    (got, counts, loss)
}

/// A-law codes, every chunk of 160 different from its neighbours.
fn distinct_chunks(chunks: usize) -> Vec<u8> {
    (0..chunks * 160)
        .map(|i| (i * 97 % 251 + i / 160) as u8)
        .collect()
}

fn telnyx_media_out_of_order_comes_out_in_order() {
    let codes = distinct_chunks(40);
    let (got, [reordered, too_late, lost], loss) = play_swapped(3, &codes);
    let decoded: Vec<i16> = codes.iter().map(|&c| alaw::decode(c)).collect();
    assert_eq!(got.samples(), decoded);
    assert_contiguous(&got.buffers);
    // Chunks 3, 7, …, 35 (from 0) came after the next one; 39, the last,
    // had none to follow, so it came in order.
    assert_eq!((reordered, too_late, lost), (9, 0, 0));
    assert_eq!(loss, 0.0);
}

fn without_the_reorder_window_a_chunk_after_its_successor_is_dropped() {
    let codes = distinct_chunks(40);
    let (got, [reordered, too_late, lost], loss) = play_swapped(0, &codes);
    let decoded: Vec<i16> = codes.iter().map(|&c| alaw::decode(c)).collect();
    // The timeline takes each swapped chunk's place for a gap (lost,
    // concealed, and the concealment merged into the next chunk), and drops
    // the chunk when it comes after (too late): the audio differs there,
    // and only there, and the stream stays as long as the call.
    let samples = got.samples();
    assert_eq!(samples.len(), decoded.len());
    assert_eq!(samples[..3 * 160], decoded[..3 * 160]);
    assert_ne!(samples[3 * 160..4 * 160], decoded[3 * 160..4 * 160]);
    assert_eq!(samples[5 * 160..7 * 160], decoded[5 * 160..7 * 160]);
    assert_contiguous(&got.buffers);
    assert_eq!((reordered, too_late, lost), (0, 9, 9));
    // Each swapped chunk is lost once, not also received when it comes
    // too late: 9 of 40.
    assert_eq!(loss, 9.0 / 40.0 * 100.0);
}

/// Dials the sink as `provider` streaming `format`.
fn dial_as(sink: &gst::Element, provider: Provider, format: WireFormat) -> TwilioCall {
    let url = url_of(sink);
    rt().block_on(async {
        let params = CallParams::of(provider, format);
        let mut call = TwilioCall::connect_with(&url, params, Playout::Instant)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    })
}

fn texts(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| match r {
            Received::Message(_, text) => text.clone(),
            other => panic!("not a valid message: {other:?}"),
        })
        .collect()
}

fn mark_event(name: &str) -> gst::Event {
    gst::event::CustomDownstream::new(
        gst::Structure::builder("twilio-mark")
            .field("name", name)
            .build(),
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn telnyx_gets_alaw_media_marks_and_clear_without_a_stream_id() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial_as(&sink, Provider::Telnyx, WireFormat::PCMA);
    let pcm = sine(440.0, 8000.0, 10000.0, 400);
    h.push(pcm_buffer(&pcm)).unwrap();
    assert!(h.push_event(mark_event("said")));
    assert!(h.push_event(gst::event::CustomDownstreamOob::new(
        gst::Structure::builder("twilio-clear").build()
    )));
    let got = receive_until(&mut call, |got| {
        got.iter()
            .any(|r| matches!(r, Received::Message(Outbound::Clear { .. }, _)))
    });
    let coded: Vec<u8> = pcm.iter().map(|&s| alaw::encode(s)).collect();
    // Two whole 20 ms frames, then the rest before the mark, padded with
    // A-law silence to Telnyx's 20 ms minimum.
    let mut last = coded[320..].to_vec();
    last.resize(160, alaw::SILENCE);
    assert_eq!(
        texts(&got),
        [
            format!(
                r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
                b64(&coded[..160])
            ),
            format!(
                r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
                b64(&coded[160..320])
            ),
            format!(
                r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
                b64(&last)
            ),
            r#"{"event":"mark","mark":{"name":"said"}}"#.to_owned(),
            r#"{"event":"clear"}"#.to_owned(),
        ]
    );
    // Twilio's semantics: the mark came back (played or cleared).
    let deadline = std::time::Instant::now() + PATIENCE;
    while call.playback().marks.is_empty() {
        assert!(std::time::Instant::now() < deadline, "mark not echoed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(call.playback().marks[0].name, "said");
}

#[test]
fn signalwire_gets_l16_at_the_calls_rate_in_twilios_shape() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let format = WireFormat::l16(16000, ByteOrder::Big);
    let mut call = dial_as(&sink, Provider::SignalWire, format);
    let pcm = sine(1000.0, 16000.0, 10000.0, 640);
    h.push(pcm_buffer(&pcm)).unwrap();
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 1280);
    let sid = &call.params.stream_sid;
    assert_eq!(sid.len(), 36, "a UUID");
    // Same rate: the samples as they came, big-endian, 20 ms per frame.
    let wire = l16(format, &pcm);
    assert_eq!(
        texts(&got),
        [&wire[..640], &wire[640..]].map(|frame| format!(
            r#"{{"event":"media","streamSid":"{sid}","media":{{"payload":"{}"}}}}"#,
            b64(frame)
        ))
    );
    assert_eq!(sink.property::<u64>("bytes-sent"), 1280);
}

#[test]
fn a_fixed_dialect_refuses_another_providers_start() {
    init();
    let p = pipeline("twiliostreamsrc name=src port=0 dialect=twilio ! fakesink name=sink");
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let url = url_of(&src);
    let closed = rt().block_on(async {
        let params = CallParams::of(Provider::Telnyx, WireFormat::PCMU);
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        (call.recv_timeout(PATIENCE).await, call.close_reason())
    });
    // Not a start in Twilio's spelling: no call, closed as a policy
    // violation, with the reason the emulator prints.
    assert_eq!(
        closed,
        (
            Some(Received::Closed(Some(1008))),
            Some("a start message not in dialect twilio".to_owned())
        )
    );
    // Counted once the server is done with the connection.
    let deadline = std::time::Instant::now() + PATIENCE;
    while src.property::<u64>("rejected-connections") != 1 {
        assert!(std::time::Instant::now() < deadline, "not counted");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    set_state(&p, gst::State::Null);
}

/// A `start` in another provider's spelling than the path's fixed
/// `dialect` is closed with a reason that says so, not "expected a start
/// message", which reads as if no `start` had been sent. A malformed
/// `start` is not named another dialect's for looking like one (Twilio
/// and SignalWire share a spelling: only a UUID `streamSid` tells them
/// apart).
#[test]
fn a_start_of_another_dialect_is_closed_saying_so() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    init();
    let telnyx = r#"{"event":"start","sequence_number":"1","start":{"call_control_id":"v3:x","media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}},"stream_id":"32de0dea"}"#;
    let twilio = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
    let wrapped = r#"{"rawEvent":{"event":"start","sequenceNumber":"1","streamSid":"0b3f4a4e-8a4f-4c0e-9d7e-6a2b3c4d5e6f","start":{"accountSid":"a","callSid":"c","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}},"eventType":"start"}"#;
    // No `start` object: no dialect's start.
    let uuid_no_start = r#"{"event":"start","sequenceNumber":"1","streamSid":"0b3f4a4e-8a4f-4c0e-9d7e-6a2b3c4d5e6f"}"#;
    let mz_no_start = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0"}"#;
    let other = |d: &str| format!("a start message not in dialect {d}");
    let generic = || "expected a start message: missing field `start`".to_owned();
    for (dialect, start, reason) in [
        ("twilio", telnyx, other("twilio")),
        ("telnyx", twilio, other("telnyx")),
        ("twilio", wrapped, other("twilio")),
        ("twilio", uuid_no_start, generic()),
        ("signalwire", mz_no_start, generic()),
        ("telnyx", mz_no_start, generic()),
    ] {
        let p = pipeline(&format!(
            "twiliostreamsrc name=src port=0 dialect={dialect} ! fakesink"
        ));
        set_state(&p, gst::State::Playing);
        let url = url_of(&by_name(&p, "src"));
        let closed = rt().block_on(async {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            ws.send(Message::text(start)).await.unwrap();
            match tokio::time::timeout(PATIENCE, ws.next()).await {
                Ok(Some(Ok(Message::Close(Some(frame))))) => {
                    (u16::from(frame.code), frame.reason.to_string())
                }
                other => panic!("no close frame: {other:?}"),
            }
        });
        assert_eq!(closed, (1008, reason), "{dialect}: {start}");
        set_state(&p, gst::State::Null);
    }
}

/// Dials `url` with `dialer` as SignalWire; the HTTP status of a refusal.
fn signalwire_dial(dialer: &twilio_emulator::Dialer, url: &str) -> Result<(), Option<u16>> {
    dial_with_auth(Provider::SignalWire, dialer, url)
}

/// Dials `url` with `dialer` as `provider`; the HTTP status of a refusal.
fn dial_with_auth(
    provider: Provider,
    dialer: &twilio_emulator::Dialer,
    url: &str,
) -> Result<(), Option<u16>> {
    rt().block_on(async {
        let params = CallParams::of(provider, WireFormat::PCMU);
        match TwilioCall::connect_via(dialer, url, params, Playout::Instant).await {
            Ok(mut call) => {
                call.begin().unwrap();
                call.close().await;
                Ok(())
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(Some(response.status().as_u16()))
            }
            Err(_) => Err(None),
        }
    })
}

#[test]
fn signalwire_bearer_token_is_checked_on_the_upgrade() {
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 auth-token=\"\" auth-bearer-token=s3cret ! fakesink",
    );
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let url = url_of(&src);
    let with = |token: Option<&str>| twilio_emulator::Dialer {
        bearer_token: token.map(str::to_owned),
        ..twilio_emulator::Dialer::default()
    };
    assert_eq!(signalwire_dial(&with(None), &url), Err(Some(403)));
    assert_eq!(signalwire_dial(&with(Some("s3cre")), &url), Err(Some(403)));
    assert_eq!(
        signalwire_dial(&with(Some("s3cret!")), &url),
        Err(Some(403))
    );
    assert_eq!(src.property::<u64>("signature-failures"), 3);
    assert_eq!(signalwire_dial(&with(Some("s3cret")), &url), Ok(()));
    // Write-only: never read back.
    let pspec = src.find_property("auth-bearer-token").unwrap();
    assert!(!pspec.flags().contains(glib::ParamFlags::READABLE));
    set_state(&p, gst::State::Null);
}

/// Telnyx presents `stream_auth_token` bare in `x-telnyx-streaming-auth-token`:
/// `auth-bearer-token` accepts it there on a `telnyx` or `auto` path, and
/// a missing or wrong one gets 403 and is counted; a bearer header still
/// does. A `twilio` path takes the token as a bearer header only.
#[test]
fn telnyx_stream_auth_token_is_checked_on_the_upgrade() {
    init();
    let with = |telnyx: Option<&str>, bearer: Option<&str>| twilio_emulator::Dialer {
        telnyx_token: telnyx.map(str::to_owned),
        bearer_token: bearer.map(str::to_owned),
        ..twilio_emulator::Dialer::default()
    };
    for dialect in ["telnyx", "auto"] {
        let p = pipeline(&format!(
            "twiliostreamsrc name=src port=0 dialect={dialect} auth-token=\"\" \
             auth-bearer-token=s3cret ! fakesink"
        ));
        set_state(&p, gst::State::Playing);
        let src = by_name(&p, "src");
        let url = url_of(&src);
        let telnyx = |dialer| dial_with_auth(Provider::Telnyx, &dialer, &url);
        assert_eq!(telnyx(with(None, None)), Err(Some(403)), "{dialect}");
        assert_eq!(telnyx(with(Some("s3cre"), None)), Err(Some(403)));
        assert_eq!(telnyx(with(Some("s3cret!"), None)), Err(Some(403)));
        assert_eq!(telnyx(with(Some("Bearer s3cret"), None)), Err(Some(403)));
        assert_eq!(src.property::<u64>("signature-failures"), 4, "{dialect}");
        assert_eq!(telnyx(with(Some("s3cret"), None)), Ok(()), "{dialect}");
        assert_eq!(telnyx(with(None, Some("s3cret"))), Ok(()), "{dialect}");
        // A wrong Telnyx header beside a right bearer one does not matter.
        assert_eq!(telnyx(with(Some("nope"), Some("s3cret"))), Ok(()));
        assert_eq!(src.property::<u64>("signature-failures"), 4, "{dialect}");
        set_state(&p, gst::State::Null);
    }
    let p = pipeline(
        "twiliostreamsrc name=src port=0 dialect=twilio auth-token=\"\" \
         auth-bearer-token=s3cret ! fakesink",
    );
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let url = url_of(&src);
    let twilio = |dialer| dial_with_auth(Provider::Twilio, &dialer, &url);
    assert_eq!(twilio(with(Some("s3cret"), None)), Err(Some(403)));
    assert_eq!(src.property::<u64>("signature-failures"), 1);
    assert_eq!(twilio(with(None, Some("s3cret"))), Ok(()));
    set_state(&p, gst::State::Null);
}

/// SignalWire acknowledges a `clear` with a `clear` of its own (the
/// emulator sends one after the marks it flushed): the src takes it
/// quietly, not as an invalid message, and the call goes on.
#[test]
fn signalwire_acknowledges_a_clear_and_the_call_goes_on() {
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 dialect=signalwire ! queue ! twiliostreamsink name=sink",
    );
    set_state(&p, gst::State::Playing);
    let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
    let url = url_of(&src);
    rt().block_on(async {
        let params = CallParams::of(Provider::SignalWire, WireFormat::PCMU);
        let mut call = TwilioCall::connect_with(&url, params, Playout::Instant)
            .await
            .unwrap();
        call.begin().unwrap();
        call.send_media(&[0xFF; 160]).unwrap();
        // The echo's first chunk back: the sink plays into the call.
        while !matches!(
            call.recv_timeout(PATIENCE).await,
            Some(Received::Message(Outbound::Media { .. }, _))
        ) {}
        assert!(sink.emit_by_name::<bool>("clear", &[]));
        loop {
            match call.recv_timeout(PATIENCE).await {
                Some(Received::Message(Outbound::Clear { .. }, _)) => break,
                Some(Received::Message(..)) => {}
                other => panic!("no clear: {other:?}"),
            }
        }
        // Messages are handled in order: once the digit after the
        // acknowledgement is counted, the acknowledgement was handled.
        call.send_dtmf("5").unwrap();
        counter_reaches(&src, "dtmf-received", 1);
        call.send_stop().unwrap();
        call.close().await;
    });
    assert_eq!(src.property::<u64>("invalid-messages"), 0);
    set_state(&p, gst::State::Null);
}

/// A bearer token an HTTP header cannot carry could never match: the
/// element does not start, saying why.
#[test]
fn a_bearer_token_no_header_can_carry_is_refused_at_start() {
    init();
    for token in ["clé", "s3cret\n", " s3cret"] {
        let p = pipeline("twiliostreamsrc name=src port=0 ! fakesink");
        by_name(&p, "src").set_property("auth-bearer-token", token);
        assert!(p.set_state(gst::State::Playing).is_err(), "{token:?}");
        let error = first_error_text(&p.bus().unwrap()).unwrap();
        assert_eq!(
            error,
            "auth-bearer-token must be printable ASCII, with no space around it: \
             an HTTP header carries it"
        );
        p.set_state(gst::State::Null).unwrap();
    }
}
