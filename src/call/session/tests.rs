//! The session's tests, on plain strings.

use super::*;

const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

fn media(sid: &str, track: &str, payload: &str) -> String {
    format!(
        r#"{{"event":"media","streamSid":"{sid}","media":{{"track":"{track}","chunk":"7","timestamp":"140","payload":"{payload}"}}}}"#
    )
}

fn counts(h: &Handled) -> Vec<(Stat, u64)> {
    h.counts().collect()
}

fn warnings(h: &Handled) -> Vec<&str> {
    h.notes
        .iter()
        .filter(|n| n.level == Level::Warning)
        .map(|n| n.text.as_str())
        .collect()
}

fn started() -> Session {
    let mut s = Session::new(64 * 1024);
    let h = s.handle(START, Vec::new);
    assert!(matches!(h.event, Some(CallEvent::Start(ref st)) if st.call_sid == "CA1"));
    assert_eq!(counts(&h), []);
    assert!(warnings(&h).is_empty());
    s
}

#[test]
fn media_becomes_a_chunk_in_the_spare_buffer_and_is_counted() {
    let mut s = started();
    let spare = Vec::with_capacity(160);
    let spare_ptr = spare.as_ptr();
    let h = s.handle(&media("MZ1", "inbound", "/38A"), || spare);
    let Some(CallEvent::Media(chunk)) = h.event else {
        panic!("no media event")
    };
    assert_eq!(chunk.ulaw, [0xFF, 0x7F, 0x00]);
    assert_eq!((chunk.timestamp_ms, chunk.chunk), (140, Some(7)));
    assert_eq!(chunk.track, Track::Inbound);
    assert!(h.media);
    assert!(h.notes.is_empty());
    let h = s.handle(&media("MZ1", "inbound", "AAAA"), Vec::new);
    assert_eq!(
        counts(&h),
        [
            (Stat::InboundChunksReceived, 1),
            (Stat::InboundBytesReceived, 3)
        ]
    );
    let Some(CallEvent::Media(second)) = h.event else {
        panic!("no media event")
    };
    // The second payload was decoded into the spare buffer given before.
    assert_eq!(second.ulaw.as_ptr(), spare_ptr);
}

#[test]
fn messages_before_start_or_for_another_stream_are_invalid() {
    let mut s = Session::new(64 * 1024);
    for text in [
        media("MZ1", "inbound", "AAAA"),
        r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"a"}}"#.to_owned(),
        r#"{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":"1"}}"#.to_owned(),
        r#"{"event":"stop","streamSid":"MZ1","stop":{}}"#.to_owned(),
    ] {
        let h = s.handle(&text, Vec::new);
        assert!(h.event.is_none(), "{text}");
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)], "{text}");
        assert!(warnings(&h)[0].ends_with("before start"), "{:?}", h.notes);
    }
    let mut s = started();
    let h = s.handle(&media("MZ2", "inbound", "AAAA"), Vec::new);
    assert!(h.event.is_none());
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    assert_eq!(
        warnings(&h),
        [r#"ignoring message: media for streamSid "MZ2", this stream is "MZ1""#]
    );
}

#[test]
fn a_start_with_an_empty_or_two_stream_sids_is_invalid() {
    for text in [
        START.replacen(r#""streamSid":"MZ1""#, r#""streamSid":"""#, 2),
        START.replacen(r#""streamSid":"MZ1""#, r#""streamSid":"MZ2""#, 1),
    ] {
        let mut s = Session::new(64 * 1024);
        let h = s.handle(&text, Vec::new);
        assert!(h.event.is_none(), "{text}");
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    }
}

#[test]
fn a_second_start_is_invalid_and_keeps_the_first_stream() {
    let mut s = started();
    let h = s.handle(&START.replace("MZ1", "MZ9"), Vec::new);
    assert!(h.event.is_none());
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    assert!(warnings(&h)[0].contains("duplicate start"));
    assert!(
        s.handle(&media("MZ1", "inbound", "AAAA"), Vec::new)
            .event
            .is_some()
    );
}

#[test]
fn bad_input_is_counted_and_explained() {
    let mut s = Session::new(1024);
    let h = s.handle("not json", Vec::new);
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    assert!(warnings(&h)[0].starts_with("ignoring message: "));
    assert!(warnings(&h)[0].ends_with(r#"in "not json""#));

    let h = s.handle(&"x".repeat(1025), Vec::new);
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    assert_eq!(
        warnings(&h),
        ["ignoring message: 1025 bytes, more than max-message-size (1024)"]
    );

    let h = s.handle(r#"{"event":"party"}"#, Vec::new);
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    assert_eq!(warnings(&h), [r#"ignoring message: unknown event "party""#]);

    let h = s.binary(12);
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    assert_eq!(
        warnings(&h),
        ["ignoring a binary frame of 12 bytes (Twilio sends text)"]
    );
}

#[test]
fn outbound_media_is_a_chunk_of_its_track_and_keeps_the_call_alive() {
    let mut s = started();
    let h = s.handle(&media("MZ1", "outbound", "/38A"), Vec::new);
    let Some(CallEvent::Media(chunk)) = &h.event else {
        panic!("no media event")
    };
    assert_eq!(chunk.track, Track::Outbound);
    assert_eq!(chunk.ulaw, [0xFF, 0x7F, 0x00]);
    assert!(h.media);
    assert_eq!(
        counts(&h),
        [
            (Stat::OutboundChunksReceived, 1),
            (Stat::OutboundBytesReceived, 3)
        ]
    );
    // TwiML's spelling is taken too; a track nobody knows is invalid.
    let h = s.handle(&media("MZ1", "outbound_track", "AAAA"), Vec::new);
    assert!(matches!(h.event, Some(CallEvent::Media(ref c)) if c.track == Track::Outbound));
    let h = s.handle(&media("MZ1", "sideways", "AAAA"), Vec::new);
    assert!(h.event.is_none() && !h.media);
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    assert_eq!(
        warnings(&h),
        [r#"ignoring message: media of an unknown track "sideways""#]
    );
}

#[test]
fn bad_or_empty_payloads_make_no_chunk() {
    let mut s = started();
    let h = s.handle(&media("MZ1", "inbound", "!!!"), Vec::new);
    assert!(h.event.is_none() && !h.media);
    assert_eq!(counts(&h), [(Stat::InboundTranscodeErrors, 1)]);
    assert!(warnings(&h)[0].contains("bad base64 payload"));

    // An empty payload is media (the idle clock restarts) but no chunk.
    let h = s.handle(&media("MZ1", "inbound", ""), Vec::new);
    assert!(h.event.is_none() && h.media);
    assert_eq!(counts(&h), []);
}

#[test]
fn control_events_are_counted_and_stop_comes_once() {
    let mut s = started();
    let h = s.handle(
        r##"{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"#"}}"##,
        Vec::new,
    );
    assert!(matches!(h.event, Some(CallEvent::Dtmf(ref d)) if d.0 == "#"));
    assert_eq!(counts(&h), [(Stat::DtmfReceived, 1)]);
    // Not a key: invalid, nothing posted.
    for digit in ["Z", "", "12"] {
        let h = s.handle(
            &format!(r#"{{"event":"dtmf","streamSid":"MZ1","dtmf":{{"digit":"{digit}"}}}}"#),
            Vec::new,
        );
        assert!(h.event.is_none(), "{digit:?}");
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)], "{digit:?}");
    }

    let h = s.handle(
        r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"greeting"}}"#,
        Vec::new,
    );
    assert!(matches!(h.event, Some(CallEvent::Mark(ref m)) if m == "greeting"));
    assert_eq!(counts(&h), [(Stat::MarksReceived, 1)]);
    // A name with U+0000 is none of ours: posted, it would read "greeting".
    let h = s.handle(
        r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"greeting\u0000x"}}"#,
        Vec::new,
    );
    assert!(h.event.is_none());
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);

    let stop = r#"{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
    assert!(!s.stopped());
    assert!(matches!(
        s.handle(stop, Vec::new).event,
        Some(CallEvent::Stop(_))
    ));
    assert!(s.stopped());
    let again = s.handle(stop, Vec::new);
    assert!(again.event.is_none());
    assert_eq!(counts(&again), []);
    // Media after stop is neither an event nor counted as received.
    let late = s.handle(&media("MZ1", "inbound", "AAAA"), Vec::new);
    assert!(late.event.is_none() && !late.media);
    assert_eq!(counts(&late), []);
}

const TELNYX_START: &str = r#"{"event":"start","sequence_number":"1","start":{"user_id":"u1","call_control_id":"v3:c1","media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}},"stream_id":"S1"}"#;

#[test]
fn auto_detects_the_dialect_at_start_and_keeps_it() {
    let mut s = Session::new(64 * 1024);
    assert_eq!(s.dialect().name(), "twilio");
    let h = s.handle(r#"{"event":"connected","version":"1.0.0"}"#, Vec::new);
    assert_eq!(counts(&h), []);
    let h = s.handle(TELNYX_START, Vec::new);
    assert!(matches!(h.event, Some(CallEvent::Start(ref st)) if st.call_sid == "v3:c1"));
    assert_eq!(s.dialect().name(), "telnyx");
    assert_eq!(s.format(), WireFormat::PCMA);
    assert!(
        h.notes[0]
            .text
            .starts_with("start (telnyx dialect, PCMA@8000)")
    );
    let h = s.handle(
        r#"{"event":"media","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"1dU="},"stream_id":"S1"}"#,
        Vec::new,
    );
    let Some(CallEvent::Media(chunk)) = h.event else {
        panic!("no media event")
    };
    assert_eq!(chunk.ulaw, [0xD5, 0xD5]);
}

#[test]
fn a_fixed_dialect_reads_only_its_own_spelling() {
    let mut s = Session::new(64 * 1024).with_dialect(Choice::Twilio, ByteOrder::Big);
    let h = s.handle(TELNYX_START, Vec::new);
    assert!(h.event.is_none());
    assert!(
        warnings(&h)[0].contains("missing field `accountSid`"),
        "{:?}",
        h.notes
    );
    let mut s = Session::new(64 * 1024).with_dialect(Choice::SignalWire, ByteOrder::Little);
    let h = s.handle(
        &START
            .replace("audio/x-mulaw", "audio/x-L16")
            .replace("8000", "24000"),
        Vec::new,
    );
    assert!(matches!(h.event, Some(CallEvent::Start(_))));
    assert_eq!(s.format(), WireFormat::l16(24000, ByteOrder::Little));
    assert_eq!(s.dialect().name(), "signalwire");
    // SignalWire acknowledges a clear: no warning, no count.
    let h = s.handle(r#"{"event":"clear","streamSid":"MZ1"}"#, Vec::new);
    assert_eq!(counts(&h), []);
    assert!(warnings(&h).is_empty());
}

#[test]
fn a_start_in_a_format_we_cannot_carry_is_refused_with_its_name() {
    let mut s = Session::new(64 * 1024);
    let h = s.handle(&START.replace("audio/x-mulaw", "AMR-WB"), Vec::new);
    assert!(h.event.is_none());
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
    assert_eq!(
        warnings(&h),
        [r#"ignoring message: start announces an unsupported media format "AMR-WB" at 8000 Hz"#]
    );
    // Opus and G.722 are carried (passed through).
    let h = s.handle(&START.replace("audio/x-mulaw", "OPUS"), Vec::new);
    assert!(matches!(h.event, Some(CallEvent::Start(_))));
    assert_eq!(s.format(), WireFormat::OPUS);
}

/// An Opus payload whose TOC says it plays over 120 ms (or no frame) is no
/// packet: skipped, counted, told; a good one after it is media.
#[test]
fn an_opus_payload_that_is_no_packet_is_skipped() {
    let mut s = Session::new(64 * 1024);
    s.handle(&START.replace("audio/x-mulaw", "OPUS"), Vec::new);
    let media = |payload: &str| {
        format!(
            r#"{{"event":"media","streamSid":"MZ1","media":{{"track":"inbound","chunk":"2","timestamp":"20","payload":"{payload}"}}}}"#
        )
    };
    // 0x1b 0xff: SILK 60 ms × 63 frames, 3.78 s.
    let h = s.handle(&media("G/8="), Vec::new);
    assert!(h.event.is_none());
    assert_eq!(counts(&h), [(Stat::InboundTranscodeErrors, 1)]);
    assert_eq!(
        warnings(&h),
        [
            r#"skipping media chunk Some(Counter(2)): no Opus packet (RFC 6716: a TOC byte, at most 120 ms)"#
        ]
    );
    // 0x08 0x00: SILK 20 ms, one frame.
    let h = s.handle(&media("CAA="), Vec::new);
    assert!(matches!(h.event, Some(CallEvent::Media(_))));
}

#[test]
fn provider_errors_are_warnings() {
    let mut s = Session::new(64 * 1024);
    s.handle(TELNYX_START, Vec::new);
    let h = s.handle(
        r#"{"event":"error","stream_id":"S1","payload":{"code":100004,"title":"invalid_media","detail":"bad payload"}}"#,
        Vec::new,
    );
    assert_eq!(counts(&h), []);
    let told = "telnyx reports error 100004 invalid_media: bad payload";
    assert_eq!(warnings(&h), [told]);
    assert!(matches!(h.event, Some(CallEvent::ProviderError(ref t)) if t == told));
    // The same code again: logged, not told again.
    let h = s.handle(
        r#"{"event":"error","stream_id":"S1","payload":{"code":100004,"title":"invalid_media","detail":"again"}}"#,
        Vec::new,
    );
    assert_eq!(warnings(&h).len(), 1);
    assert!(h.event.is_none());
}

/// What is only reported keeps its place with U+FFFD for each U+0000 (GLib
/// would cut it there, a debug glib-rs panic); a streamSid holding one,
/// which every message of ours repeats, makes the start invalid.
#[test]
fn u0000_in_what_is_posted_becomes_u_fffd_and_in_the_stream_sid_is_invalid() {
    let mut s = Session::new(64 * 1024);
    let start = START
        .replace(r#""callSid":"CA1""#, r#""callSid":"CA\u00001""#)
        .replace(
            r#""tracks":["inbound"]"#,
            r#""tracks":["inbound"],"customParameters":{"na\u0000me":"va\u0000lue","plain":"x"}"#,
        );
    let h = s.handle(&start, Vec::new);
    let Some(CallEvent::Start(st)) = h.event else {
        panic!("no start: {:?}", h.notes);
    };
    assert_eq!(st.call_sid, "CA\u{FFFD}1");
    let params: Vec<(&str, &str)> = st
        .custom_parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(params, [("na\u{FFFD}me", "va\u{FFFD}lue"), ("plain", "x")]);
    let stop =
        r#"{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC\u0000","callSid":"CA1"}}"#;
    let Some(CallEvent::Stop(stop)) = s.handle(stop, Vec::new).event else {
        panic!("no stop");
    };
    assert_eq!(
        (stop.account_sid.as_str(), stop.call_sid.as_str()),
        ("AC\u{FFFD}", "CA1")
    );

    let mut s = Session::new(64 * 1024);
    let h = s.handle(&START.replace("MZ1", r"MZ\u00001"), Vec::new);
    assert!(h.event.is_none());
    assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
}
