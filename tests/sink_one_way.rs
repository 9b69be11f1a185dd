//! twiliostreamsink on a one-way stream (Twilio's `<Start><Stream>`, whose
//! `start` names the outbound track): nothing sent, marks and clears
//! refused, EOS at once, a WARNING, also for a sink that was already
//! waiting for the call; and Telnyx, whose `start` never makes a stream
//! one-way.

mod common;

use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{CallParams, Received, TwilioCall};

/// A Twilio call whose `start` names both tracks: a one-way stream.
fn one_way_call(url: &str) -> TwilioCall {
    rt().block_on(async {
        let params = CallParams {
            tracks: vec!["inbound".to_owned(), "outbound".to_owned()],
            ..CallParams::default()
        };
        TwilioCall::start(url, params).await.unwrap()
    })
}

fn has_warning(messages: &[gst::Message]) -> bool {
    messages
        .iter()
        .any(|m| matches!(m.view(), gst::MessageView::Warning(_)))
}

/// A stream with the outbound track is a one-way `<Start><Stream>`: Twilio
/// answers anything sent on it with error 31924, and echoes no mark. The
/// sink sends nothing there (marks and clears refused), and its EOS ends
/// the stream at once, with no wait for an echo that cannot come.
#[test]
fn a_sink_on_a_one_way_stream_sends_nothing_and_ends_at_once() {
    let (p, sp, app, sink) = appsrc_pair("");
    let bus = p.bus().unwrap();
    let url = url_of(&by_name(&p, "src"));
    let mut call = one_way_call(&url);
    messages_until(&bus, |m| has_element(m, "twilio-start"));
    push(&app, &[1000; 400]);
    assert!(!sink.emit_by_name::<bool>("send-mark", &[&"m"]));
    assert!(!sink.emit_by_name::<bool>("clear", &[]));
    end_of_stream(&app);
    let got = until_closed(&mut call);
    assert_eq!(got, [Received::Closed(Some(1000))]);
    messages_until(&sp.bus().unwrap(), has_eos);
    for counter in ["chunks-sent", "bytes-sent", "marks-sent", "clears-sent"] {
        assert_eq!(sink.property::<u64>(counter), 0, "{counter}");
    }
    set_state(&sp, gst::State::Null);
    set_state(&p, gst::State::Null);
}

/// A sink already waiting for its call (its first buffer in hand) takes
/// the call the moment it is dispatched, before the call's task has run:
/// it must see the stream as one-way then too (the WARNING, marks
/// refused). Without that, about every other call here missed both.
#[test]
fn a_sink_waiting_for_a_one_way_call_warns_and_refuses_marks() {
    for _ in 0..6 {
        let (p, sp, app, sink) = appsrc_pair("");
        push(&app, &[0; 160]);
        // Most likely waiting for the call by now; the check below holds
        // whichever comes first.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let url = url_of(&by_name(&p, "src"));
        let _call = one_way_call(&url);
        messages_until(&sp.bus().unwrap(), has_warning);
        assert!(!sink.emit_by_name::<bool>("send-mark", &[&"m"]));
        set_state(&sp, gst::State::Null);
        set_state(&p, gst::State::Null);
    }
}

/// Telnyx's `start` names no tracks, and Telnyx does not say that its
/// bidirectional streams carry the inbound track only: a Telnyx `start`
/// naming the outbound track is not taken for a one-way stream.
#[test]
fn a_telnyx_start_naming_the_outbound_track_is_still_answered() {
    use gsttwiliostream::codec::WireFormat;
    use gsttwiliostream::protocol::{Inbound, StartInfo};
    use twilio_emulator::Provider;
    let (p, sp, app, sink) = appsrc_pair("");
    let bus = p.bus().unwrap();
    let url = url_of(&by_name(&p, "src"));
    // The emulator's own `start` for Telnyx names no tracks; the one
    // below names both, by hand.
    let params = CallParams::of(Provider::Telnyx, WireFormat::PCMU);
    let tracks = ["inbound", "outbound"];
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::connect(&url, params.clone()).await.unwrap();
        call.send(&Provider::Telnyx.connected()).unwrap();
        let start = Inbound::Start {
            sequence_number: None,
            stream_sid: params.stream_sid.clone(),
            start: StartInfo {
                account_sid: params.account_sid.clone(),
                stream_sid: params.stream_sid.clone(),
                call_sid: params.call_sid.clone(),
                tracks: tracks.map(str::to_owned).to_vec(),
                custom_parameters: Default::default(),
                media_format: Some(Provider::Telnyx.media_format(WireFormat::PCMU)),
                tracks_unannounced: false,
            },
        };
        // The emulator spells Telnyx's `start` without tracks, as Telnyx
        // documents it: add them.
        let mut text: serde_json::Value =
            serde_json::from_str(&Provider::Telnyx.text(&start)).unwrap();
        text["start"]["tracks"] = serde_json::json!(tracks);
        call.send_text(&text.to_string()).unwrap();
        call
    });
    messages_until(&bus, |m| has_element(m, "twilio-start"));
    push(&app, &[1000; 400]);
    counter_at_least(&sink, "chunks-sent", 2);
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"m"]));
    let got = receive_until(&mut call, |got| {
        got.iter()
            .any(|r| matches!(r, Received::Message(Outbound::Mark { .. }, _)))
    });
    let media = got
        .iter()
        .filter(|r| matches!(r, Received::Message(Outbound::Media { .. }, _)))
        .count();
    // 50 ms: the last 10 ms padded to Telnyx's 20 ms before the mark.
    assert_eq!(media, 3, "{got:?}");
    set_state(&sp, gst::State::Null);
    set_state(&p, gst::State::Null);
}

/// The emulator playing a Telnyx stream of both tracks (`--dialect telnyx
/// --track both`) takes what the sink sends, as the sink sends it: Twilio's
/// one-way rule is not Telnyx's, and the emulator must not report the
/// sink's documented behaviour as Twilio error 31924.
#[test]
fn the_emulator_as_telnyx_takes_media_on_a_stream_of_both_tracks() {
    use gsttwiliostream::codec::WireFormat;
    use twilio_emulator::Provider;
    let (p, sp, app, sink) = appsrc_pair("");
    let bus = p.bus().unwrap();
    let url = url_of(&by_name(&p, "src"));
    let params = CallParams {
        tracks: vec!["inbound".to_owned(), "outbound".to_owned()],
        ..CallParams::of(Provider::Telnyx, WireFormat::PCMU)
    };
    let mut call = rt().block_on(async { TwilioCall::start(&url, params).await.unwrap() });
    messages_until(&bus, |m| has_element(m, "twilio-start"));
    push(&app, &[1000; 320]);
    counter_at_least(&sink, "chunks-sent", 2);
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"m"]));
    let got = receive_until(&mut call, |got| {
        got.iter().any(|r| {
            matches!(
                r,
                Received::Message(Outbound::Mark { .. }, _) | Received::Invalid(_)
            )
        })
    });
    assert!(
        !got.iter().any(|r| matches!(r, Received::Invalid(_))),
        "{got:?}"
    );
    let media = got
        .iter()
        .filter(|r| matches!(r, Received::Message(Outbound::Media { .. }, _)))
        .count();
    // 40 ms at 8 kHz: two 20 ms frames, then the mark.
    assert_eq!(media, 2, "{got:?}");
    set_state(&sp, gst::State::Null);
    set_state(&p, gst::State::Null);
}

#[test]
fn a_sink_on_a_one_way_stream_warns_that_twilio_rejects_its_audio() {
    let (p, sp, app, _sink) = appsrc_pair("");
    let bus = p.bus().unwrap();
    let url = url_of(&by_name(&p, "src"));
    let _call = one_way_call(&url);
    messages_until(&bus, |m| has_element(m, "twilio-start"));
    push(&app, &[0; 160]);
    let warnings = messages_until(&sp.bus().unwrap(), has_warning);
    let text = warnings
        .iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .unwrap();
    assert!(text.contains("one-way"), "{text}");
    set_state(&sp, gst::State::Null);
    set_state(&p, gst::State::Null);
}
