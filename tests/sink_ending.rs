//! twiliostreamsink end to end, how a pipeline ends its call: EOS sends a
//! final mark and closes the WebSocket normally once Twilio has played
//! everything (alone, paired, in an echo), unless `end-stream-on-eos` is off
//! or the caller stopped first; the `end-stream` signal both ways; a paired
//! sink marking and clearing before its first buffer; the limit on mark
//! names; the warning about listening properties a paired sink ignores.

mod common;

use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{CallParams, Playout, Received, TwilioCall};

const EOS_MARK: &str = "twiliostream-eos";
const END_MARK: &str = "twiliostream-end";

/// Everything the plugin sends until it closes the WebSocket.
fn until_closed(call: &mut TwilioCall) -> Vec<Received> {
    let got = receive_until(call, |_| false);
    assert!(
        matches!(got.last(), Some(Received::Closed(_))),
        "not closed: {got:?}"
    );
    got
}

fn no_warnings_or_errors(messages: &[gst::Message]) {
    for m in messages {
        assert!(
            !matches!(
                m.view(),
                gst::MessageView::Warning(_) | gst::MessageView::Error(_)
            ),
            "{m:?}"
        );
    }
}

/// Twilio's side of a paired src's call, started; waits for `twilio-start`.
fn start_call(bus: &gst::Bus, src: &gst::Element, playout: Playout) -> TwilioCall {
    let url = url_of(src);
    let call = rt().block_on(async {
        let mut call = TwilioCall::connect_with(&url, CallParams::default(), playout)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    });
    messages_until(bus, |m| has_element(m, "twilio-start"));
    call
}

/// What was sent ends with the EOS mark and a normal close, and Twilio had
/// played all the audio (and echoed the mark) before the close.
fn assert_ended_after_playout(call: &TwilioCall, got: &[Received], sink: &gst::Element) {
    let n = got.len();
    assert_eq!(got[n - 1], Received::Closed(Some(1000)));
    assert!(
        matches!(&got[n - 2], Received::Message(Outbound::Mark { mark, .. }, _) if mark.name == EOS_MARK),
        "{:?}",
        &got[n - 2]
    );
    let sent = media_bytes(got).len();
    assert_eq!(sink.property::<u64>("bytes-sent"), sent as u64);
    // The reader saw the close after everything it played: all of it.
    let playback = call.playback();
    assert_eq!(playback.played.len(), sent, "closed before the playout");
    let last = playback.marks.last().expect("the EOS mark was not echoed");
    assert_eq!((last.name.as_str(), last.cleared), (EOS_MARK, false));
    assert_eq!(last.played_samples, sent);
}

#[test]
fn eos_ends_a_lone_sinks_call_once_twilio_played_everything() {
    let p = pipeline(
        "audiotestsrc num-buffers=25 samplesperbuffer=160 freq=500 ! \
         audio/x-raw,rate=8000,channels=1 ! twiliostreamsink name=sink port=0 sync=false",
    );
    assert!(by_name(&p, "sink").property::<bool>("end-stream-on-eos"));
    let bus = p.bus().unwrap();
    set_state(&p, gst::State::Playing);
    let sink = by_name(&p, "sink");
    // Real-time playout: half a second queued at Twilio when EOS comes.
    let mut call = dial(&sink, Playout::RealTime);
    let got = until_closed(&mut call);
    assert_eq!(media_bytes(&got).len(), 4000);
    assert_eq!(marks(&got), [EOS_MARK]);
    assert_ended_after_playout(&call, &got, &sink);

    // The sink took the call, so it says it ended it; EOS follows (an
    // application that quits at EOS has seen twilio-ended).
    let messages = messages_until(&bus, has_eos);
    assert!(has_element(&messages, "twilio-ended"), "{messages:?}");
    let ended = &element_messages(&messages, "twilio-ended")[0];
    assert_eq!(ended.get::<String>("reason").unwrap(), "eos");
    assert_eq!(
        ended.get::<String>("stream-sid").unwrap(),
        call.params.stream_sid
    );
    no_warnings_or_errors(&messages);
    assert_eq!(sink.property::<u64>("marks-played"), 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn eos_from_the_pipeline_ends_a_paired_sinks_call() {
    let (p, sp, app, sink) = appsrc_pair("");
    let bus = p.bus().unwrap();
    let mut call = start_call(&bus, &by_name(&p, "src"), Playout::RealTime);
    // Half a second and a partial frame, then EOS: everything goes out.
    push(&app, &sine(400.0, 8000.0, 8000.0, 4000));
    push(&app, &[3000; 100]);
    end_of_stream(&app);
    let got = until_closed(&mut call);
    assert_eq!(media_bytes(&got).len(), 4100);
    assert_ended_after_playout(&call, &got, &sink);

    // The src reads the call: it posts twilio-ended and goes EOS too.
    let messages = messages_until(&bus, |m| has_eos(m) && has_element(m, "twilio-ended"));
    let ended = &element_messages(&messages, "twilio-ended")[0];
    assert_eq!(ended.get::<String>("reason").unwrap(), "eos");
    no_warnings_or_errors(&messages);
    no_warnings_or_errors(&messages_until(&sp.bus().unwrap(), has_eos));
    set_state(&sp, gst::State::Null);
    set_state(&p, gst::State::Null);
}

#[test]
fn eos_sent_to_an_echo_pipeline_ends_the_call_after_playout() {
    let p = pipeline("twiliostreamsrc name=src port=0 ! queue ! twiliostreamsink name=sink");
    let bus = p.bus().unwrap();
    set_state(&p, gst::State::Playing);
    let sink = by_name(&p, "sink");
    let mut call = start_call(&bus, &by_name(&p, "src"), Playout::RealTime);
    for _ in 0..25 {
        call.send_media(&[0x20; 160]).unwrap();
    }
    receive_until(&mut call, |got| media_bytes(got).len() >= 2000);
    // The application ends the pipeline (not the caller): the src goes EOS
    // and the sink ends the call once Twilio played it all.
    assert!(p.send_event(gst::event::Eos::new()));
    let got = until_closed(&mut call);
    assert_eq!(marks(&got), [EOS_MARK]);
    assert_eq!(got.last(), Some(&Received::Closed(Some(1000))));
    let playback = call.playback();
    assert_eq!(playback.marks.last().unwrap().name, EOS_MARK);
    assert_eq!(
        playback.played.len() as u64,
        sink.property::<u64>("bytes-sent")
    );
    messages_until(&bus, has_eos);
    set_state(&p, gst::State::Null);
}

/// And `end-stream`, emitted on either element as `twilio-stop` is posted,
/// is refused: the call's end is read already (no `twilio-ended` would
/// follow) and Twilio plays nothing more.
#[test]
fn in_an_echo_the_callers_stop_ends_it_with_no_extra_wait() {
    let p =
        pipeline("twiliostreamsrc name=src port=0 ! queue ! twiliostreamsink name=sink sync=false");
    let bus = p.bus().unwrap();
    set_state(&p, gst::State::Playing);
    let sink = by_name(&p, "sink");
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let (elements, answers) = ([by_name(&p, "src"), sink.clone()], answers.clone());
        bus.set_sync_handler(move |_, msg| {
            if let gst::MessageView::Element(e) = msg.view()
                && e.structure().is_some_and(|s| s.name() == "twilio-stop")
            {
                for element in &elements {
                    for after_playout in [false, true] {
                        let ended = element.emit_by_name::<bool>("end-stream", &[&after_playout]);
                        answers.lock().unwrap().push(ended);
                    }
                }
            }
            gst::BusSyncReply::Pass
        });
    }
    let mut call = start_call(&bus, &by_name(&p, "src"), Playout::RealTime);
    for _ in 0..50 {
        call.send_media(&[0x20; 160]).unwrap();
    }
    call.send_stop().unwrap();
    let messages = messages_until(&bus, has_eos);
    bus.unset_sync_handler();
    assert_eq!(*answers.lock().unwrap(), [false; 4]);
    // No final mark: nothing to wait for once Twilio stopped the stream.
    assert_eq!(sink.property::<u64>("marks-sent"), 0);
    assert!(!has_element(&messages, "twilio-ended"));
    // Nor is the call ended: Twilio ends it.
    std::iter::from_fn(|| call.try_recv()).for_each(|r| {
        assert!(
            matches!(r, Received::Message(Outbound::Media { .. }, _)),
            "{r:?}"
        )
    });
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}

/// From Twilio's `stop` on, nothing is sent (it plays nothing more): media
/// rendered is dropped, a mark or a clear refused; the sink takes its
/// buffers without an error.
#[test]
fn after_twilios_stop_the_sink_sends_nothing_more() {
    let p = pipeline(&format!(
        "appsrc name=app format=time caps={PCM_8K} ! \
         twiliostreamsink name=sink port=0 sync=false max-lead=60000"
    ));
    let bus = p.bus().unwrap();
    set_state(&p, gst::State::Playing);
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    let mut call = dial(&sink, Playout::Instant);
    let tone = sine(440.0, 8000.0, 8000.0, 1600);
    push(&app, &tone[..800]);
    let before = receive_until(&mut call, |got| media_bytes(got).len() >= 800);
    call.send_stop().unwrap();
    let mut messages = messages_until(&bus, |m| has_element(m, "twilio-stop"));
    // Five more frames, rendered once EOS is through (no wait: stopped).
    push(&app, &tone[800..]);
    end_of_stream(&app);
    messages.extend(messages_until(&bus, has_eos));
    assert!(!sink.emit_by_name::<bool>("send-mark", &[&"late"]));
    assert!(!sink.emit_by_name::<bool>("clear", &[]));
    assert_eq!(sink.property::<u64>("marks-sent"), 0);
    assert_eq!(sink.property::<u64>("clears-sent"), 0);
    messages.extend(drain_messages(&bus));
    assert!(!has_element(&messages, "twilio-clear"), "{messages:?}");
    no_warnings_or_errors(&messages);
    assert_eq!(sink.property::<u64>("chunks-sent"), 5);
    assert_eq!(sink.property::<u64>("bytes-sent"), 800);
    assert_eq!(sink.property::<u64>("chunks-dropped"), 0);
    set_state(&p, gst::State::Null);
    // Only the close.
    let after = until_closed(&mut call);
    assert_eq!(after.len(), 1, "sent after stop: {after:?}");
    assert_eq!(media_bytes(&before).len(), 800);
}

#[test]
fn with_end_stream_on_eos_off_the_call_stays_after_eos() {
    // A sink that took the call itself still lets Twilio play out at EOS,
    // and hangs up only when it stops.
    let mut h = sink_harness_with(PCM_8K, |sink| sink.set_property("end-stream-on-eos", false));
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::RealTime);
    h.push(pcm_buffer(&[1000; 800])).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(call.playback().played.len(), 800, "EOS before the playout");
    assert!(sink.property::<bool>("connected"));
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"after-eos"]));
    let got = receive_until(&mut call, |got| marks(got).len() == 2);
    assert_eq!(marks(&got), [EOS_MARK, "after-eos"]);
    drop(h);
    assert_eq!(
        until_closed(&mut call).last(),
        Some(&Received::Closed(Some(1000)))
    );

    // A paired sink does nothing at EOS: the call is the src's.
    let (p, sp, app, sink) = appsrc_pair("end-stream-on-eos=false");
    let mut call = start_call(&p.bus().unwrap(), &by_name(&p, "src"), Playout::Instant);
    push(&app, &[1000; 480]);
    end_of_stream(&app);
    messages_until(&sp.bus().unwrap(), has_eos);
    assert_eq!(sink.property::<u64>("marks-sent"), 0);
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"after-eos"]));
    let got = receive_until(&mut call, |got| !marks(got).is_empty());
    assert_eq!(media_bytes(&got).len(), 480);
    assert_eq!(marks(&got), ["after-eos"]);
    set_state(&sp, gst::State::Null);
    set_state(&p, gst::State::Null);
    rt().block_on(call.close());
}

#[test]
fn the_end_stream_signal_ends_now_or_after_playout() {
    for after_playout in [true, false] {
        let mut h = sink_harness(PCM_8K);
        let sink = h.element().unwrap();
        let bus = gst::Bus::new();
        sink.set_bus(Some(&bus));
        let mut call = dial(&sink, Playout::RealTime);
        // A second and a partial frame, queued at Twilio at once (sync=false).
        h.push(pcm_buffer(&sine(300.0, 8000.0, 8000.0, 8100)))
            .unwrap();
        assert!(sink.emit_by_name::<bool>("end-stream", &[&after_playout]));
        if after_playout {
            // Already ending after the playout: a second asks nothing
            // (one end mark below).
            assert!(!sink.emit_by_name::<bool>("end-stream", &[&true]));
            // Audio rendered after it is no part of the stream it ends:
            // dropped, not sent after the end mark; nor are marks, which
            // Twilio would echo as played (the signal's refused).
            h.push(pcm_buffer(&sine(440.0, 8000.0, 8000.0, 1600)))
                .unwrap();
            let mark = gst::Structure::builder("twilio-mark")
                .field("name", "after-the-end")
                .build();
            assert!(h.push_event(gst::event::CustomDownstream::new(mark)));
            assert!(!sink.emit_by_name::<bool>("send-mark", &[&"late"]));
        }
        let got = until_closed(&mut call);
        assert_eq!(got.last(), Some(&Received::Closed(Some(1000))));
        let playback = call.playback();
        if after_playout {
            // The partial frame went out first, and Twilio played it all.
            assert_eq!(media_bytes(&got).len(), 8100);
            assert_eq!(marks(&got), [END_MARK]);
            assert_eq!(playback.played.len(), 8100);
            assert_eq!(playback.marks.last().unwrap().name, END_MARK);
        } else {
            assert!(marks(&got).is_empty());
        }
        let messages = messages_until(&bus, |m| has_element(m, "twilio-ended"));
        let ended = &element_messages(&messages, "twilio-ended")[0];
        assert_eq!(ended.get::<String>("reason").unwrap(), "end-stream");
        assert!(
            !sink.emit_by_name::<bool>("end-stream", &[&false]),
            "nothing left to end"
        );
        // What comes after an ended stream has nowhere to go.
        push_until_eos(&mut h, "the sink takes buffers after its stream ended");
    }
}

#[test]
fn a_paired_sink_marks_and_clears_before_its_first_buffer() {
    // Paired within its pipeline this time (the src's branch does not
    // preroll without the caller's audio, so its fakesink does not wait).
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 ! fakesink async=false \
         appsrc name=app format=time caps={PCM_8K} ! twiliostreamsink name=sink sync=false"
    ));
    set_state(&p, gst::State::Playing);
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    let bus = p.bus().unwrap();
    assert!(!sink.emit_by_name::<bool>("send-mark", &[&"too-early"]));
    let mut call = start_call(&bus, &by_name(&p, "src"), Playout::Instant);
    // `start` arrived, no buffer yet: the sink has the call.
    assert_eq!(
        sink.property::<Option<String>>("stream-sid").as_deref(),
        Some(call.params.stream_sid.as_str())
    );
    assert_eq!(
        sink.property::<Option<String>>("call-sid").as_deref(),
        Some(call.params.call_sid.as_str())
    );
    assert!(sink.property::<bool>("connected"));
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"greeting"]));
    assert!(sink.emit_by_name::<bool>("clear", &[]));
    push(&app, &[1000; 480]);
    end_of_stream(&app);
    let got = until_closed(&mut call);
    let kinds: Vec<String> = got
        .iter()
        .map(|r| match r {
            Received::Message(Outbound::Mark { mark, .. }, _) => format!("mark {}", mark.name),
            Received::Message(Outbound::Clear { .. }, _) => "clear".to_owned(),
            Received::Message(Outbound::Media { .. }, _) => "media".to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "mark greeting",
            "clear",
            "media",
            "media",
            "media",
            "mark twiliostream-eos",
            "Closed(Some(1000))"
        ]
    );
    assert_eq!(sink.property::<u64>("marks-sent"), 2);
    assert_eq!(sink.property::<u64>("clears-sent"), 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn mark_names_up_to_the_limit_round_trip_and_longer_ones_are_refused() {
    let mut h = sink_harness_with(PCM_8K, |sink| {
        sink.set_property("max-message-size", 1024u32)
    });
    let sink = h.element().unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut call = dial(&sink, Playout::Instant);
    h.push(pcm_buffer(&[0; 160])).unwrap();
    // 256 bytes once JSON-escaped: 2 + 6 + 124 × 2.
    let longest = format!("\"\u{1}{}", "é".repeat(124));
    let too_long = "m".repeat(257);
    // Only 43 bytes, but 258 escaped.
    let too_long_escaped = "\u{1}".repeat(43);
    for name in [&too_long, &too_long_escaped] {
        assert!(!sink.emit_by_name::<bool>("send-mark", &[name]));
    }
    // The serialized event is held to the same limit.
    let event = |name: &str| {
        gst::event::CustomDownstream::new(
            gst::Structure::builder("twilio-mark")
                .field("name", name)
                .build(),
        )
    };
    h.push_event(event(&too_long));
    // (Read before the good mark: its echo is posted on this bus too.)
    let refused = warnings(&bus);
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused
            .iter()
            .all(|w| w.starts_with("Mark name too long") && w.contains("at most 256")),
        "{refused:?}"
    );
    assert!(sink.emit_by_name::<bool>("send-mark", &[&longest]));

    let got = receive_until(&mut call, |got| !marks(got).is_empty());
    assert_eq!(marks(&got), [longest.as_str()]);
    // Its echo came back within max-message-size and was recognised.
    let messages = messages_until(&bus, |m| has_element(m, "twilio-mark"));
    let echoed = &element_messages(&messages, "twilio-mark")[0];
    assert_eq!(echoed.get::<String>("name").unwrap(), longest);
    assert_eq!(sink.property::<u64>("marks-played"), 1);
    assert_eq!(sink.property::<u64>("marks-sent"), 1);
}

#[test]
fn a_paired_sink_warns_that_its_listening_properties_are_ignored() {
    let p = pipeline("twiliostreamsrc port=0 ! queue ! twiliostreamsink port=9 path=/ignored");
    let bus = p.bus().unwrap();
    set_state(&p, gst::State::Paused);
    let said = warnings(&bus);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("port, path ignored"), "{said:?}");
    assert!(!said[0].contains("host"), "{said:?}");
    set_state(&p, gst::State::Null);

    // With the defaults there is nothing to say.
    let p = pipeline("twiliostreamsrc port=0 ! queue ! twiliostreamsink");
    let bus = p.bus().unwrap();
    set_state(&p, gst::State::Paused);
    assert!(warnings(&bus).is_empty());
    set_state(&p, gst::State::Null);
}

#[test]
fn send_mark_with_no_name_is_refused_not_a_crash() {
    let (p, sp, _app, sink) = appsrc_pair("");
    let bus = p.bus().unwrap();
    let _call = start_call(&bus, &by_name(&p, "src"), Playout::Instant);
    assert!(!sink.emit_by_name::<bool>("send-mark", &[&None::<String>]));
    // The sink works on.
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"after"]));
    set_state(&sp, gst::State::Null);
    set_state(&p, gst::State::Null);
}
