//! A sink that pauses holds the pushes of the srcs that push into it from a
//! network thread (`shared-threads`): a buffer prerolled in the paused sink
//! would hold that thread, and every call on it, until PLAYING.
//!
//! * A push under way as the pipeline pauses (a bin pauses its sinks
//!   first): a gate on the src's pad holds a chunk on the call's network
//!   thread while the test pauses the pipeline, and lets it go once the sink
//!   says it waits for it. The chunk goes in before the sink pauses, the
//!   call's next message is read at once, and its echo comes after PLAYING.
//!   Without the hold the chunk is prerolled and the call's task waits in
//!   the paused sink, reading nothing more (`invalid-messages` stays 0).
//! * A sink paused alone, its src PLAYING: it stays PAUSED (nothing comes
//!   to preroll), what the call sends meanwhile waits in the call's queue
//!   while the network thread reads on, and all of it is echoed once the
//!   sink plays again. (Before the hold the first chunk was prerolled,
//!   holding the network thread until the pipeline, told the sink had
//!   prerolled, set it PLAYING again by itself.)
//! * The call's end while the sink holds its src comes once it plays; a
//!   stop while it holds is a stop as any.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use common::app::*;
use common::echo::*;
use common::sink::*;
use common::*;
use gst::prelude::*;

#[test]
fn a_push_under_way_when_the_pipeline_pauses_goes_in_before_the_sink_pauses() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! twiliostreamsink name=gated_sink",
    );
    let src = by_name(&p, "src");
    let sink = by_name(&p, "gated_sink");
    let held = pattern(1, 1);
    // The gate: the first buffer carrying `held` waits on the network thread.
    let armed = Arc::new(AtomicBool::new(true));
    let (at_gate, reached) = mpsc::channel::<()>();
    let (go, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    {
        let (held, armed) = (held.clone(), armed.clone());
        src.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let is_held = info
                    .buffer()
                    .and_then(|b| b.map_readable().ok())
                    .is_some_and(|m| m.as_slice() == held.as_slice());
                if is_held && armed.swap(false, Ordering::SeqCst) {
                    at_gate.send(()).unwrap();
                    let _ = gate.lock().unwrap().recv_timeout(PATIENCE);
                }
                gst::PadProbeReturn::Ok
            });
    }
    // The held chunk reaching the sink's pad.
    let (at_sink, into_sink) = mpsc::channel::<()>();
    {
        let held = held.clone();
        let at_sink = Mutex::new(at_sink);
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let is_held = info
                    .buffer()
                    .and_then(|b| b.map_readable().ok())
                    .is_some_and(|m| m.as_slice() == held.as_slice());
                if is_held {
                    let _ = at_sink.lock().unwrap().send(());
                }
                gst::PadProbeReturn::Ok
            });
    }
    // The sink pausing says it waits for the push under way: let the chunk
    // go, and go on (the sink's wait is bounded) once it is at the sink.
    let go_on_log = Mutex::new(go.clone());
    let into_sink = Mutex::new(into_sink);
    let waited = Arc::new(AtomicBool::new(false));
    {
        let waited = waited.clone();
        on_log(&sink, "waiting for a push under way from", move || {
            waited.store(true, Ordering::SeqCst);
            let _ = go_on_log.lock().unwrap().send(());
            let _ = into_sink.lock().unwrap().recv_timeout(PATIENCE);
        });
    }
    let mut call = echoing_call(&p, &src);

    call.send_media(&held).unwrap();
    reached
        .recv_timeout(PATIENCE)
        .expect("the chunk at the gate");
    set_bounded(&p, gst::State::Paused);
    // (Without the hold nothing let it go yet.)
    let _ = go.send(());
    // Had the chunk been prerolled, the call's task would wait in the sink
    // until PLAYING and read nothing more.
    assert_reads_on(&mut call, &src);
    assert!(
        waited.load(Ordering::SeqCst),
        "the sink waited for the push"
    );

    set_bounded(&p, gst::State::Playing);
    let after = pattern(2, 3);
    send_chunks(&mut call, &after);
    // The held chunk went in before the pause (its echo waited in the
    // writer); what comes after PLAYING is echoed.
    let chunks: Vec<&[u8]> = std::iter::once(held.as_slice())
        .chain(after.chunks(160))
        .collect();
    wait_until_echoed(&mut call, &chunks);
    assert_playing(&sink);
    hang_up(call, &p);
}

#[test]
fn a_sink_paused_alone_holds_its_src_and_loses_nothing() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);

    sink.set_state(gst::State::Paused).unwrap();
    let sent = pattern(3, 10);
    send_chunks(&mut call, &sent);
    // The network thread reads on: nothing waits in the paused sink.
    assert_reads_on(&mut call, &src);
    assert_paused_now(&sink);

    sink.set_state(gst::State::Playing).unwrap();
    wait_until_all_echoed(&mut call, &sent);
    assert_eq!(src.property::<u64>("chunks-dropped-paused"), 0);
    hang_up(call, &p);
}

/// A call that ends while its sink is paused alone ends when the sink plays
/// again: what it sent is pushed (counted), then `twilio-stop` and EOS.
#[test]
fn a_call_ended_while_its_sink_is_paused_ends_when_it_plays() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let buffers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let buffers = buffers.clone();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
                buffers.fetch_add(1, Ordering::SeqCst);
                gst::PadProbeReturn::Ok
            });
    }
    let mut call = echoing_call(&p, &src);
    // (The call's first chunks, echoed already.)
    let before = buffers.load(Ordering::SeqCst);
    sink.set_state(gst::State::Paused).unwrap();
    send_chunks(&mut call, &pattern(4, 3));
    call.send_stop().unwrap();
    rt().block_on(call.close());
    let bus = p.bus().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let meanwhile = drain_messages(&bus);
    assert!(
        !has_eos(&meanwhile) && !has_element(&meanwhile, "twilio-stop"),
        "the end goes out while the sink is paused"
    );
    sink.set_state(gst::State::Playing).unwrap();
    let messages = wait_eos(&bus);
    assert!(has_element(&messages, "twilio-stop"));
    assert_eq!(
        buffers.load(Ordering::SeqCst) - before,
        3,
        "every chunk reached the sink"
    );
    set_bounded(&p, gst::State::Null);
}

/// A pipeline stopped while its sink holds the src's pushes stops at once.
#[test]
fn a_pipeline_stops_while_its_sink_holds_the_pushes() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);
    let port = src.property::<u32>("bound-port") as u16;
    sink.set_state(gst::State::Paused).unwrap();
    send_chunks(&mut call, &pattern(5, 3));
    assert_reads_on(&mut call, &src);
    set_bounded(&p, gst::State::Null);
    assert!(port_is_free(port));
    // Started again, the sink is fed and holds anew.
    let call = echoing_call(&p, &src);
    hang_up(call, &p);
}

/// A flush into a sink that holds its src (a flushing seek, a barge-in)
/// does not leave it waiting for a buffer that cannot come: back in
/// PLAYING, it plays again and lets the src go on.
#[test]
fn a_flush_while_the_sink_holds_its_src() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);
    sink.set_state(gst::State::Paused).unwrap();
    let pad = sink.static_pad("sink").unwrap();
    assert!(pad.send_event(gst::event::FlushStart::new()));
    assert!(pad.send_event(gst::event::FlushStop::new(false)));
    sink.set_state(gst::State::Playing).unwrap();
    let after = pattern(6, 3);
    send_chunks(&mut call, &after);
    wait_until_all_echoed(&mut call, &after);
    assert_playing(&sink);
    hang_up(call, &p);
}
