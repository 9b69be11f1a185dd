//! An application that embeds the elements in one long-running process
//! and serves calls one after another with one pipeline, as the README
//! has it: READY (or NULL) at each call's EOS, then PLAYING again. Every
//! call's audio comes out right (byte for byte, or the same as the first
//! call's through the resamplers), counters start from zero, and the
//! pipelines the README shows (echo, queue, recorder, a sink alone, the
//! voice bot) all take call after call.

mod common;

use common::app::*;
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, Playout, Received, TwilioCall};

/// The README's way to serve calls one after another with one pipeline:
/// after each call's EOS, back to `between` and to PLAYING. Every call's
/// echo is its own audio, byte for byte, and the counters are the call's.
/// (`app_long_life.rs` checks that threads, tasks and memory stay flat.)
fn one_pipeline_many_calls(desc: &str, between: gst::State, calls: usize) {
    let p = pipeline(desc);
    let src = by_name(&p, "src");
    let sink = by_name(&p, "sink");
    let bus = p.bus().unwrap();
    for n in 0..calls {
        set_bounded(&p, gst::State::Playing);
        let url = url_of(&src);
        let chunks = 5 + n % 3;
        let echoed = echo_call(&url, n, chunks);
        if echoed != pattern(n, chunks) {
            panic!(
                "call {n}: echoed {} of {} bytes; src {}; sink {}",
                echoed.len(),
                chunks * 160,
                src.property::<gst::Structure>("stats"),
                sink.property::<gst::Structure>("stats")
            );
        }
        wait_eos(&bus);
        assert_eq!(
            src.property::<u64>("chunks-received"),
            chunks as u64,
            "call {n}"
        );
        assert_eq!(
            sink.property::<u64>("bytes-sent"),
            (chunks * 160) as u64,
            "call {n}"
        );
        set_bounded(&p, between);
    }
    set_bounded(&p, gst::State::Null);
}

const ECHO: &str = "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! twiliostreamsink name=sink";
const ECHO_QUEUE: &str =
    "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! queue ! twiliostreamsink name=sink";

#[test]
fn one_echo_pipeline_serves_calls_in_a_row_through_ready() {
    one_pipeline_many_calls(ECHO, gst::State::Ready, 40);
}

#[test]
fn one_echo_pipeline_serves_calls_in_a_row_through_null() {
    // A fixed port: the listener is bound anew for every call.
    let desc = ECHO.replace("port=0", &format!("port={}", free_port()));
    one_pipeline_many_calls(&desc, gst::State::Null, 40);
}

#[test]
fn one_queued_echo_pipeline_serves_calls_in_a_row() {
    one_pipeline_many_calls(ECHO_QUEUE, gst::State::Ready, 40);
}

#[test]
fn streaming_thread_echo_serves_calls_in_a_row() {
    one_pipeline_many_calls(
        "twiliostreamsrc name=src port=0 shared-threads=false ! audio/x-mulaw ! twiliostreamsink name=sink",
        gst::State::Ready,
        40,
    );
}

/// The recorder: `twiliostreamsrc ! audio/x-mulaw ! wavenc ! filesink`,
/// one file per call, location changed in NULL.
#[test]
fn one_recorder_records_calls_in_a_row() {
    let dir = std::env::temp_dir().join(format!("embed-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p =
        pipeline("twiliostreamsrc name=src port=0 ! audio/x-mulaw ! wavenc ! filesink name=file");
    let src = by_name(&p, "src");
    let file = by_name(&p, "file");
    let bus = p.bus().unwrap();
    for n in 0..30 {
        let path = dir.join(format!("call-{n}.wav"));
        file.set_property("location", path.to_str().unwrap());
        set_bounded(&p, gst::State::Playing);
        let url = url_of(&src);
        let chunks = 3 + n % 4;
        let sent = pattern(n, chunks);
        rt().block_on(async {
            let mut call = TwilioCall::connect_with(&url, CallParams::default(), Playout::Instant)
                .await
                .unwrap();
            call.begin().unwrap();
            for c in sent.chunks(160) {
                call.send_media(c).unwrap();
            }
            call.send_stop().unwrap();
            call.close().await;
        });
        wait_eos(&bus);
        // NULL: wavenc writes its header again in PAUSED → READY (not ours).
        set_bounded(&p, gst::State::Null);
        let wav = std::fs::read(&path).unwrap();
        // Not the 44-byte header of PCM (μ-law's fmt chunk is longer):
        // the samples follow the data chunk's id and size.
        let data = wav.windows(4).position(|w| w == b"data").unwrap() + 8;
        assert_eq!(&wav[data..], &sent[..], "call {n}");
    }
    set_bounded(&p, gst::State::Null);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Through the default 16 kHz PCM (upsampler in the src, downsampler in the
/// sink), the same caller audio gives the same echo on every call: nothing
/// of one call's filters or timeline leaks into the next.
fn same_echo_every_call(desc: &str, between: gst::State, mid_call_stop_every: usize) {
    let p = pipeline(desc);
    let src = by_name(&p, "src");
    let bus = p.bus().unwrap();
    let sent = tones(25);
    let mut first: Option<Vec<u8>> = None;
    for n in 0..12 {
        set_bounded(&p, gst::State::Playing);
        let url = url_of(&src);
        if mid_call_stop_every > 0 && n % mid_call_stop_every == 1 {
            // A call cut short by the application: NULL mid-call.
            let mut call = rt().block_on(async {
                let mut call =
                    TwilioCall::connect_with(&url, CallParams::default(), Playout::Instant)
                        .await
                        .unwrap();
                call.begin().unwrap();
                call
            });
            for chunk in sent[..1600].chunks(160) {
                call.send_media(chunk).unwrap();
            }
            receive_until(&mut call, |got| media_bytes(got).len() >= 800);
            set_bounded(&p, gst::State::Null);
            rt().block_on(call.abort());
            let _ = drain_messages(&bus);
            continue;
        }
        let mut call = instant_call(&url);
        for chunk in sent.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        // All but the last frame (held back by the filters' delays) comes
        // back before `stop`; nothing is sent after it.
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= sent.len() - 160);
        call.send_stop().unwrap();
        wait_eos(&bus);
        rt().block_on(call.close());
        let echoed = media_bytes(&got);
        match &first {
            None => {
                first = Some(echoed);
            }
            Some(f) => assert_eq!(&echoed, f, "call {n}: echo differs from the first"),
        }
        set_bounded(&p, between);
    }
    set_bounded(&p, gst::State::Null);
}

#[test]
fn pcm_echo_is_the_same_on_every_call_through_ready() {
    same_echo_every_call(
        "twiliostreamsrc name=src port=0 ! twiliostreamsink name=sink",
        gst::State::Ready,
        0,
    );
}

#[test]
fn pcm_echo_is_the_same_on_every_call_with_calls_cut_short() {
    same_echo_every_call(
        "twiliostreamsrc name=src port=0 ! queue ! twiliostreamsink name=sink",
        gst::State::Ready,
        3,
    );
}

#[test]
fn pcm_echo_is_the_same_on_every_call_streaming_thread() {
    same_echo_every_call(
        "twiliostreamsrc name=src port=0 shared-threads=false ! twiliostreamsink name=sink",
        gst::State::Null,
        4,
    );
}

/// A sink that listens itself (`appsrc ! twiliostreamsink`), reused for
/// call after call: READY between them, each call gets exactly what was
/// pushed for it, ended after playout with `twilio-ended`.
#[test]
fn a_lone_sink_plays_call_after_call() {
    let p = pipeline(
        "appsrc name=in format=time caps=audio/x-mulaw,rate=8000,channels=1 \
         ! twiliostreamsink name=sink port=0",
    );
    let app = by_name(&p, "in");
    let sink = by_name(&p, "sink");
    let bus = p.bus().unwrap();
    for n in 0..30 {
        set_bounded(&p, gst::State::Playing);
        let url = url_of(&sink);
        let data = pattern(n, 3 + n % 3);
        let mut call = instant_call(&url);
        let ret = app.emit_by_name::<gst::FlowReturn>(
            "push-buffer",
            &[&gst::Buffer::from_slice(data.clone())],
        );
        assert_eq!(ret, gst::FlowReturn::Ok);
        end_of_stream(&app);
        let got = receive_until(&mut call, |_| false);
        assert_eq!(media_bytes(&got), data, "call {n}");
        assert_eq!(got.last(), Some(&Received::Closed(Some(1000))));
        // (The order of twilio-ended and EOS is sink_ending's to check:
        // EOS waits for it 2 s at most, which a stalled machine may pass.)
        messages_until(&bus, |m| has_eos(m) && has_element(m, "twilio-ended"));
        assert_eq!(sink.property::<u64>("bytes-sent"), data.len() as u64);
        rt().block_on(call.close());
        set_bounded(&p, gst::State::Ready);
    }
    set_bounded(&p, gst::State::Null);
}

/// The voice bot's pipeline (README "Python"), reused for call after call:
/// each call hears its prompt exactly, the bot ends it with `end-stream`
/// after playout, the app cycles through READY; counters keep the last
/// call's values in READY and start from zero on the next.
#[test]
fn the_voice_bot_pipeline_serves_calls_in_a_row() {
    let p = pipeline(VOICE_BOT);
    let src = by_name(&p, "src");
    let sink = by_name(&p, "sink");
    let tts = by_name(&p, "tts");
    let bus = p.bus().unwrap();
    for n in 0..25 {
        set_bounded(&p, gst::State::Playing);
        assert_eq!(src.property::<u64>("chunks-received"), 0);
        assert_eq!(sink.property::<u64>("bytes-sent"), 0);
        let mut call = start_call(&url_of(&src), 3);
        let prompt = pattern(n, 4);
        let ret = tts.emit_by_name::<gst::FlowReturn>(
            "push-buffer",
            &[&gst::Buffer::from_slice(prompt.clone())],
        );
        assert_eq!(ret, gst::FlowReturn::Ok);
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= prompt.len());
        assert_eq!(media_bytes(&got), prompt, "call {n}");
        assert!(sink.emit_by_name::<bool>("end-stream", &[&true]));
        let rest = receive_until(&mut call, |_| false);
        assert_eq!(rest.last(), Some(&Received::Closed(Some(1000))));
        wait_ended(&bus, n);
        rt().block_on(call.close());
        set_bounded(&p, gst::State::Ready);
        assert_eq!(src.property::<u64>("chunks-received"), 3, "kept in READY");
        assert_eq!(sink.property::<u64>("bytes-sent"), prompt.len() as u64);
    }
    set_bounded(&p, gst::State::Null);
}

/// A voice bot that cycles only the caller's branch (the src in a bin of
/// its own) through READY at each call's end, its bot branch playing on:
/// its sink, fed by the bot's appsrc and never by the src, follows the src
/// to its next call once the bot flushed its branch at the call's end
/// (before, it waited for good for a stream of the src's that would never
/// reach it, and the next callers heard nothing); what the bot still had
/// for the last caller is gone with the flush, never heard by the next.
#[test]
fn a_voice_bot_that_cycles_only_its_caller_branch_plays_into_each_call() {
    let (p, caller, src, sink, tts) = bot_with_its_own_caller_branch();
    let bus = p.bus().unwrap();
    for n in 0..4 {
        let mut call = start_call(&url_of(&src), 3);
        messages_until(&bus, |m| has_element(m, "twilio-start"));
        let prompt = pattern(n, 4);
        push(&tts, &prompt);
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= prompt.len());
        assert_eq!(media_bytes(&got), prompt, "call {n}");
        assert!(
            sink.emit_by_name::<bool>("send-mark", &[&"after"]),
            "call {n}"
        );
        // Two seconds more for this caller, who hangs up meanwhile.
        push(&tts, &pattern(n + 100, 100));
        call.send_stop().unwrap();
        rt().block_on(call.close());
        messages_until(&bus, |m| has_element(m, "twilio-stop"));
        tts.send_event(gst::event::FlushStart::new());
        tts.send_event(gst::event::FlushStop::new(true));
        assert!(caller.set_state(gst::State::Ready).is_ok());
        assert!(caller.set_state(gst::State::Playing).is_ok());
    }
    set_bounded(&p, gst::State::Null);
}

/// The same bot flushing its branch as soon as it sees `twilio-stop`,
/// before the caller's socket has closed: the call is over (Twilio plays
/// nothing more), so the sink follows the src to the next call. (Before,
/// a flush while the socket was still open was taken for one within the
/// call, and the next caller heard nothing, now and then under load.)
#[test]
fn a_voice_bot_that_flushes_at_twilio_stop_plays_into_the_next_call() {
    let (p, caller, src, _sink, tts) = bot_with_its_own_caller_branch();
    let bus = p.bus().unwrap();
    let first = first_call_stopped(&bus, &src, &tts);
    tts.send_event(gst::event::FlushStart::new());
    tts.send_event(gst::event::FlushStop::new(true));
    rt().block_on(first.close());
    assert!(caller.set_state(gst::State::Ready).is_ok());
    assert!(caller.set_state(gst::State::Playing).is_ok());
    let mut next = start_call(&url_of(&src), 3);
    messages_until(&bus, |m| has_element(m, "twilio-start"));
    let prompt = pattern(1, 4);
    push(&tts, &prompt);
    let got = receive_until(&mut next, |got| media_bytes(got).len() >= prompt.len());
    assert_eq!(media_bytes(&got), prompt);
    rt().block_on(next.close());
    set_bounded(&p, gst::State::Null);
}

/// The same bot, not flushing its branch when a call ends: what it
/// pushes once the next call has started is dropped, as the last call's
/// (nothing tells it from that call's audio still on its way), and a
/// WARNING says to flush; after a flush the next call hears the bot.
#[test]
fn a_voice_bot_that_does_not_flush_is_told_to() {
    let (p, caller, src, _sink, tts) = bot_with_its_own_caller_branch();
    let bus = p.bus().unwrap();
    let first = first_call_stopped(&bus, &src, &tts);
    rt().block_on(first.close());
    assert!(caller.set_state(gst::State::Ready).is_ok());
    assert!(caller.set_state(gst::State::Playing).is_ok());
    let mut next = start_call(&url_of(&src), 3);
    messages_until(&bus, |m| has_element(m, "twilio-start"));
    push(&tts, &pattern(1, 4));
    let warned = messages_until(&bus, |m| {
        m.iter()
            .any(|m| matches!(m.view(), gst::MessageView::Warning(_)))
    });
    let warning = warned
        .iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .unwrap();
    assert!(
        warning.ends_with(
            "is over and the src has the next call: what reaches the sink is dropped until \
             the branch that feeds it is flushed"
        ),
        "{warning}"
    );
    tts.send_event(gst::event::FlushStart::new());
    tts.send_event(gst::event::FlushStop::new(true));
    let prompt = pattern(2, 4);
    push(&tts, &prompt);
    let got = receive_until(&mut next, |got| media_bytes(got).len() >= prompt.len());
    assert_eq!(media_bytes(&got), prompt);
    set_bounded(&p, gst::State::Null);
}

/// A bot whose caller branch is a bin of its own: the pipeline, that bin,
/// the src, the sink and the bot's appsrc, PLAYING.
fn bot_with_its_own_caller_branch() -> (
    gst::Pipeline,
    gst::Element,
    gst::Element,
    gst::Element,
    gst::Element,
) {
    let p = pipeline(
        "( name=caller twiliostreamsrc name=src port=0 ! queue ! fakesink sync=false async=false ) \
         appsrc name=tts format=time is-live=true caps=audio/x-mulaw,rate=8000,channels=1 \
         ! queue ! twiliostreamsink name=sink",
    );
    let elements = ["caller", "src", "sink", "tts"].map(|name| by_name(&p, name));
    set_bounded(&p, gst::State::Playing);
    let [caller, src, sink, tts] = elements;
    (p, caller, src, sink, tts)
}

/// The bot's first call: its prompt heard, then the caller's `stop`,
/// posted; the caller's socket still open.
fn first_call_stopped(bus: &gst::Bus, src: &gst::Element, tts: &gst::Element) -> TwilioCall {
    let mut first = start_call(&url_of(src), 3);
    messages_until(bus, |m| has_element(m, "twilio-start"));
    push(tts, &pattern(0, 4));
    receive_until(&mut first, |got| media_bytes(got).len() >= 640);
    first.send_stop().unwrap();
    messages_until(bus, |m| has_element(m, "twilio-stop"));
    first
}

fn push(appsrc: &gst::Element, bytes: &[u8]) {
    let ret = appsrc.emit_by_name::<gst::FlowReturn>(
        "push-buffer",
        &[&gst::Buffer::from_slice(bytes.to_vec())],
    );
    assert_eq!(ret, gst::FlowReturn::Ok);
}
