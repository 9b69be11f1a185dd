//! A long-lived application taking call after call on one set of
//! pipelines, each call put on hold (PLAYING → PAUSED → PLAYING) mid-call
//! and READY between calls: an echo (src into sink) and a src paired with
//! a sink in another pipeline by `call-name`, the application relaying the
//! audio. Each call's echo is exactly what was said outside the hold (what
//! came during it is dropped and counted, as the README's "Output" says),
//! counters start from zero on each call, and nothing (threads, file
//! descriptors) piles up from call to call.

mod common;

use std::time::{Duration, Instant};

use common::app::*;
use common::echo::*;
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::TwilioCall;

const CALLS: usize = 4;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Threads and fds settle back to at most `before` (plus slack for the
/// set_bounded threads and the test runtime's sockets closing).
fn settles_to(before: (usize, usize)) {
    let deadline = Instant::now() + PATIENCE;
    while (threads() > before.0 + 1 || fds() > before.1 + 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        threads() <= before.0 + 1,
        "threads {} -> {}",
        before.0,
        threads()
    );
    assert!(fds() <= before.1 + 1, "fds {} -> {}", before.1, fds());
}

/// One call with a hold: `before` echoed, the pipelines `hold`, `during`
/// sent and received by the src (so it arrived while PAUSED), `resume`,
/// `after` echoed, then `stop`. Returns the call for the caller to check.
fn held_call(
    url: &str,
    src: &gst::Element,
    n: usize,
    hold: impl Fn(),
    resume: impl Fn(),
) -> (TwilioCall, Vec<u8>) {
    let before = pattern(n, 3);
    let during = vec![0x7e; 2 * 160];
    let after = pattern(n + 100, 4);
    let mut call = instant_call(url);
    send_chunks(&mut call, &before);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= before.len());
    assert_eq!(
        media_bytes(&got),
        before,
        "call {n}: the echo before the hold"
    );
    hold();
    send_chunks(&mut call, &during);
    counter_reaches(src, "chunks-received", 5);
    resume();
    send_chunks(&mut call, &after);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= after.len());
    assert_eq!(
        media_bytes(&got),
        after,
        "call {n}: the echo after the hold"
    );
    (call, [before, after].concat())
}

fn echo_with_holds(desc: &str) {
    let (p, src, sink) = echo_pipeline(desc);
    let bus = p.bus().unwrap();
    let mut baseline = None;
    for n in 0..CALLS {
        set_bounded(&p, gst::State::Playing);
        assert_eq!(src.property::<u64>("chunks-received"), 0, "call {n}");
        assert_eq!(src.property::<u64>("chunks-dropped-paused"), 0, "call {n}");
        assert_eq!(sink.property::<u64>("bytes-sent"), 0, "call {n}");
        let (mut call, expected) = held_call(
            &url_of(&src),
            &src,
            n,
            || {
                set_bounded(&p, gst::State::Paused);
            },
            || {
                set_bounded(&p, gst::State::Playing);
            },
        );
        call.send_stop().unwrap();
        wait_eos(&bus);
        rt().block_on(call.close());
        assert_eq!(src.property::<u64>("chunks-received"), 9, "call {n}");
        assert_eq!(src.property::<u64>("chunks-dropped-paused"), 2, "call {n}");
        assert_eq!(
            sink.property::<u64>("bytes-sent"),
            expected.len() as u64,
            "call {n}"
        );
        set_bounded(&p, gst::State::Ready);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(200));
            baseline = Some((threads(), fds()));
        }
    }
    set_bounded(&p, gst::State::Null);
    settles_to(baseline.unwrap());
}

#[test]
fn echo_with_a_hold_in_every_call() {
    echo_with_holds(ECHO);
}

#[test]
fn queued_echo_with_a_hold_in_every_call() {
    echo_with_holds(&ECHO.replace("! twiliostreamsink", "! queue ! twiliostreamsink"));
}

#[test]
fn streaming_thread_echo_with_a_hold_in_every_call() {
    echo_with_holds(&ECHO.replace("port=0", "port=0 shared-threads=false"));
}

/// The src's pipeline hands what it hears to the application, which
/// relays it into the sink's pipeline (appsrc), the sink paired with the
/// src by `call-name`: both pipelines held, and READY between calls.
#[test]
fn paired_pipelines_with_a_hold_in_every_call() {
    let a = pipeline(
        "twiliostreamsrc name=src port=0 call-name=held-pair ! audio/x-mulaw \
         ! fakesink name=out sync=false",
    );
    let b = pipeline(
        "appsrc name=in format=time is-live=true do-timestamp=true \
         caps=audio/x-mulaw,rate=8000,channels=1 \
         ! twiliostreamsink name=sink call-name=held-pair",
    );
    let (src, sink, app) = (by_name(&a, "src"), by_name(&b, "sink"), by_name(&b, "in"));
    let relay = app.clone();
    by_name(&a, "out").static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER,
        move |_, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &info.data {
                let bytes = buffer.map_readable().unwrap().to_vec();
                let _ = relay.emit_by_name::<gst::FlowReturn>(
                    "push-buffer",
                    &[&gst::Buffer::from_slice(bytes)],
                );
            }
            gst::PadProbeReturn::Ok
        },
    );
    let (bus_a, bus_b) = (a.bus().unwrap(), b.bus().unwrap());
    let mut baseline = None;
    for n in 0..CALLS {
        set_bounded(&a, gst::State::Playing);
        set_bounded(&b, gst::State::Playing);
        assert_eq!(src.property::<u64>("chunks-received"), 0, "call {n}");
        assert_eq!(sink.property::<u64>("bytes-sent"), 0, "call {n}");
        let (mut call, expected) = held_call(
            &url_of(&src),
            &src,
            n,
            || {
                set_bounded(&b, gst::State::Paused);
                set_bounded(&a, gst::State::Paused);
            },
            || {
                set_bounded(&a, gst::State::Playing);
                set_bounded(&b, gst::State::Playing);
            },
        );
        call.send_stop().unwrap();
        let messages = wait_eos(&bus_a);
        assert!(has_element(&messages, "twilio-stop"), "call {n}");
        rt().block_on(call.close());
        assert_eq!(src.property::<u64>("chunks-dropped-paused"), 2, "call {n}");
        assert_eq!(
            sink.property::<u64>("bytes-sent"),
            expected.len() as u64,
            "call {n}"
        );
        let _ = drain_messages(&bus_b);
        set_bounded(&b, gst::State::Ready);
        set_bounded(&a, gst::State::Ready);
        if n == 0 {
            std::thread::sleep(Duration::from_millis(200));
            baseline = Some((threads(), fds()));
        }
    }
    set_bounded(&b, gst::State::Null);
    set_bounded(&a, gst::State::Null);
    settles_to(baseline.unwrap());
}

/// The caller hangs up during the hold: on the return to PLAYING the
/// call's end comes (`twilio-stop`, then EOS); or the application, seeing
/// the call gone, stops from PAUSED. Either way the next call echoes.
fn hang_up_on_hold(desc: &str) {
    let (p, src, _sink) = echo_pipeline(desc);
    let bus = p.bus().unwrap();
    for n in 0..CALLS {
        set_bounded(&p, gst::State::Playing);
        let mut call = instant_call(&url_of(&src));
        let said = pattern(n, 3);
        send_chunks(&mut call, &said);
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= said.len());
        assert_eq!(media_bytes(&got), said, "call {n}");
        set_bounded(&p, gst::State::Paused);
        call.send_stop().unwrap();
        rt().block_on(call.close());
        if n % 2 == 0 {
            set_bounded(&p, gst::State::Playing);
            let messages = wait_eos(&bus);
            assert!(has_element(&messages, "twilio-stop"), "call {n}");
        }
        set_bounded(&p, gst::State::Ready);
        let _ = drain_messages(&bus);
    }
    set_bounded(&p, gst::State::Playing);
    assert_eq!(echo_call(&url_of(&src), 9, 4), pattern(9, 4));
    wait_eos(&bus);
    set_bounded(&p, gst::State::Null);
}

#[test]
fn echo_caller_hangs_up_on_hold() {
    hang_up_on_hold(ECHO);
}

#[test]
fn queued_echo_caller_hangs_up_on_hold() {
    hang_up_on_hold(&ECHO.replace("! twiliostreamsink", "! queue ! twiliostreamsink"));
}

#[test]
fn streaming_thread_echo_caller_hangs_up_on_hold() {
    hang_up_on_hold(&ECHO.replace("port=0", "port=0 shared-threads=false"));
}

/// The README's two echo pairs in one pipeline, tied by `call-name`, two
/// calls at a time through a hold of the whole pipeline, call after call
/// through READY: each call hears only its own echo, exactly.
#[test]
fn two_pairs_in_one_pipeline_with_a_hold_in_every_call() {
    let p = pipeline(
        "twiliostreamsrc name=a port=0 path=/echo call-name=held-a \
         ! audio/x-mulaw ! twiliostreamsink name=sa call-name=held-a async=false \
         twiliostreamsrc name=b port=0 path=/echo call-name=held-b \
         ! audio/x-mulaw ! twiliostreamsink name=sb call-name=held-b async=false",
    );
    let (a, b) = (by_name(&p, "a"), by_name(&p, "b"));
    let bus = p.bus().unwrap();
    for n in 0..CALLS {
        set_bounded(&p, gst::State::Playing);
        let mut calls = [instant_call(&url_of(&a)), instant_call(&url_of(&b))];
        // Which src took which call is the listener's choice: each call
        // is told apart by its own audio.
        for (i, call) in calls.iter_mut().enumerate() {
            let said = pattern(10 * n + i, 3);
            send_chunks(call, &said);
            let got = receive_until(call, |got| media_bytes(got).len() >= said.len());
            assert_eq!(media_bytes(&got), said, "call {n}.{i} before the hold");
        }
        set_bounded(&p, gst::State::Paused);
        for call in calls.iter_mut() {
            send_chunks(call, &[0x7e; 320]);
        }
        let received =
            || a.property::<u64>("chunks-received") + b.property::<u64>("chunks-received");
        let deadline = Instant::now() + PATIENCE;
        while received() < 10 {
            assert!(
                Instant::now() < deadline,
                "the chunks sent on hold never came"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        set_bounded(&p, gst::State::Playing);
        for (i, call) in calls.iter_mut().enumerate() {
            let said = pattern(10 * n + i + 5, 4);
            send_chunks(call, &said);
            let got = receive_until(call, |got| media_bytes(got).len() >= said.len());
            assert_eq!(media_bytes(&got), said, "call {n}.{i} after the hold");
        }
        for mut call in calls {
            call.send_stop().unwrap();
            rt().block_on(call.close());
        }
        wait_eos(&bus);
        assert_eq!(a.property::<u64>("chunks-dropped-paused"), 2, "call {n}");
        assert_eq!(b.property::<u64>("chunks-dropped-paused"), 2, "call {n}");
        set_bounded(&p, gst::State::Ready);
    }
    set_bounded(&p, gst::State::Null);
}

/// The hold of the application's own voice only: the echo's sink paused
/// alone, its src playing on. What the caller said meanwhile waits and
/// then goes out, all of it, in order (README, "Pausing"); call after
/// call through READY.
#[test]
fn echo_with_its_sink_alone_held_in_every_call() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let bus = p.bus().unwrap();
    for n in 0..CALLS {
        let mut call = echoing_call(&p, &src);
        let said = pattern(n, 3);
        send_chunks(&mut call, &said);
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= said.len());
        assert_eq!(media_bytes(&got), said, "call {n} before the hold");
        set_element_bounded(&sink, gst::State::Paused);
        let so_far = src.property::<u64>("chunks-received");
        let during = pattern(n + 50, 2);
        send_chunks(&mut call, &during);
        counter_reaches(&src, "chunks-received", so_far + 2);
        set_element_bounded(&sink, gst::State::Playing);
        let after = pattern(n + 100, 3);
        send_chunks(&mut call, &after);
        let expected = [during, after].concat();
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= expected.len());
        assert_eq!(media_bytes(&got), expected, "call {n} after the hold");
        call.send_stop().unwrap();
        wait_eos(&bus);
        rt().block_on(call.close());
        assert_eq!(src.property::<u64>("chunks-dropped-paused"), 0, "call {n}");
        set_bounded(&p, gst::State::Ready);
    }
    set_bounded(&p, gst::State::Null);
}

/// The README's voice bot (one pipeline: the caller into a `level`, the
/// bot's voice from an `appsrc`), call after call through READY, each
/// call held while the bot queues its next prompt: both prompts are heard
/// exactly, in order, and the bot ends the call after playout.
#[test]
fn the_voice_bot_holds_every_call() {
    let p = pipeline(VOICE_BOT);
    let (src, sink, tts) = (by_name(&p, "src"), by_name(&p, "sink"), by_name(&p, "tts"));
    let bus = p.bus().unwrap();
    let say = |prompt: &[u8]| {
        let buffer = gst::Buffer::from_slice(prompt.to_vec());
        let ret = tts.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        assert_eq!(ret, gst::FlowReturn::Ok);
    };
    for n in 0..CALLS {
        set_bounded(&p, gst::State::Playing);
        let mut call = start_call(&url_of(&src), 3);
        let first = pattern(n, 4);
        say(&first);
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= first.len());
        assert_eq!(media_bytes(&got), first, "call {n}: the first prompt");
        set_bounded(&p, gst::State::Paused);
        let second = pattern(n + 100, 5);
        say(&second);
        set_bounded(&p, gst::State::Playing);
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= second.len());
        assert_eq!(
            media_bytes(&got),
            second,
            "call {n}: the prompt queued on hold"
        );
        assert!(sink.emit_by_name::<bool>("end-stream", &[&true]));
        let rest = receive_until(&mut call, |_| false);
        assert!(media_bytes(&rest).is_empty(), "call {n}: {rest:?}");
        wait_ended(&bus, n);
        rt().block_on(call.close());
        set_bounded(&p, gst::State::Ready);
        assert_eq!(
            sink.property::<u64>("bytes-sent"),
            (first.len() + second.len()) as u64,
            "call {n}"
        );
    }
    set_bounded(&p, gst::State::Null);
}

/// A prompt held halfway: the bot pushed a whole prompt and a mark after
/// it, ahead of real time; the writer holds the rest of it when the call
/// is held, and nothing more is pushed. Back in PLAYING the rest of the
/// prompt and then the mark go out, the mark comes back, and the sink is
/// PLAYING with no buffer to preroll. (Before, BaseSink waited for one:
/// a bin handed the sink no PAUSED → PLAYING and the writer kept the
/// rest, the mark with it, until the bot spoke again.)
fn prompt_held_halfway(desc: &str) {
    let p = pipeline(desc);
    let (src, sink, tts) = (by_name(&p, "src"), by_name(&p, "sink"), by_name(&p, "tts"));
    let bus = p.bus().unwrap();
    set_bounded(&p, gst::State::Playing);
    let mut call = realtime_call(&url_of(&src));
    let prompt = pattern(0, 50);
    let ret = tts.emit_by_name::<gst::FlowReturn>(
        "push-buffer",
        &[&gst::Buffer::from_slice(prompt.clone())],
    );
    assert_eq!(ret, gst::FlowReturn::Ok);
    let mark = gst::Structure::builder("twilio-mark")
        .field("name", "prompt-end")
        .build();
    assert!(tts.send_event(gst::event::CustomDownstream::new(mark)));
    let mut got = receive_until(&mut call, |got| media_bytes(got).len() >= 10 * 160);
    set_bounded(&p, gst::State::Paused);
    set_bounded(&p, gst::State::Playing);
    got.extend(receive_until(&mut call, |got| !marks(got).is_empty()));
    assert_eq!(media_bytes(&got), prompt, "the prompt heard");
    assert_eq!(marks(&got), ["prompt-end"]);
    let messages = messages_until(&bus, |m| has_element(m, "twilio-mark"));
    let echoed = messages.last().and_then(|m| m.structure()).unwrap();
    assert_eq!(echoed.get::<&str>("name").unwrap(), "prompt-end");
    assert_playing(&sink);
    hang_up(call, &p);
}

#[test]
fn a_prompt_held_halfway_plays_on_after_the_hold() {
    prompt_held_halfway(VOICE_BOT);
}

/// The same with an appsrc that is not live.
#[test]
fn a_prompt_held_halfway_plays_on_after_the_hold_not_live() {
    prompt_held_halfway(&VOICE_BOT.replace(" is-live=true", ""));
}
