//! `shared-threads=true` when downstream holds the network thread: the
//! fallback to the src's own streaming thread (README "Threads": the
//! fallback rule), what is no reason for it (one slow push, a pause), and
//! pushing after a flush.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::threads::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, TwilioCall};

#[test]
fn a_downstream_that_blocks_gets_the_streaming_thread_without_a_warning() {
    init();
    // identity sleeps 30 ms per buffer: longer than a chunk, on the very
    // thread that reads the call.
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=true ! audio/x-raw,rate=8000 \
         ! identity sleep-time=30000 ! fakesink name=sink sync=false async=false",
    );
    let bus = p.bus().unwrap();
    let threads = record_threads(&by_name(&p, "sink"));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let ulaw = vec![0x85u8; 160 * 5];
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        send_chunks(&mut call, &ulaw).await;
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decode(&ulaw));
    // The default way: a fallback is expected (a sink syncing to the
    // clock), so it is logged, not posted.
    let warnings = warnings(&bus);
    assert!(warnings.is_empty(), "{warnings:?}");
    // The second push that blocked in a row was the last one on the
    // network thread: the src's own streaming thread pushed the rest, in
    // order, nothing lost.
    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), 5, "{threads:?}");
    assert_eq!(threads[..2], ["twiliostream"; 2], "{threads:?}");
    assert!(threads[2..].iter().all(|t| t == "src:src"), "{threads:?}");
    set_state(&p, gst::State::Null);
}

/// Plays 20 chunks into a src whose downstream sleeps `sleeps[i]` ms in
/// the push of buffer `i`: the threads each buffer came on.
fn pushed_from_with_sleeps(sleeps: &'static [(usize, u64)]) -> Vec<String> {
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=true ! audio/x-raw,rate=8000 \
         ! fakesink name=sink sync=false async=false",
    );
    let names = Arc::new(Mutex::new(Vec::new()));
    let n = names.clone();
    by_name(&p, "sink").static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER,
        move |_, _| {
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
            let mut names = n.lock().unwrap();
            if let Some(&(_, ms)) = sleeps.iter().find(|(i, _)| *i == names.len()) {
                std::thread::sleep(Duration::from_millis(ms));
            }
            names.push(name.trim_end().to_owned());
            gst::PadProbeReturn::Ok
        },
    );
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let ulaw = test_ulaw();
    play(&url, &ulaw);
    assert_eq!(collector.wait_eos().samples(), decode(&ulaw));
    set_state(&p, gst::State::Null);
    let names = names.lock().unwrap().clone();
    assert_eq!(names.len(), 20);
    names
}

/// Runs `attempt` until it holds, three times at most. The fallback is
/// timed, so a network thread preempted for 20 ms on a busy machine next to
/// a slow push looks like a second one: a real fault fails every attempt.
fn in_one_of_three(attempt: impl Fn() -> Result<(), String>) {
    let mut failures = Vec::new();
    for _ in 0..3 {
        match attempt() {
            Ok(()) => return,
            Err(e) => failures.push(e),
        }
    }
    panic!("three attempts failed: {failures:#?}");
}

#[test]
fn one_slow_push_is_not_a_blocking_downstream() {
    // As when the network thread is preempted on a busy machine: pushing
    // stays on the network threads.
    in_one_of_three(|| {
        let threads = pushed_from_with_sleeps(&[(3, 30)]);
        if all_from_network(&threads) {
            Ok(())
        } else {
            Err(format!("pushed from {threads:?}"))
        }
    });
}

/// Whether the first `network` pushes came from the network threads and
/// the rest from the src's streaming thread.
fn handed_over_after(threads: &[String], network: usize) -> Result<(), String> {
    let (before, after) = threads.split_at(network);
    if all_from_network(before) && after.iter().all(|t| t == "src:src") {
        Ok(())
    } else {
        Err(format!("after {network}: {threads:?}"))
    }
}

#[test]
fn two_slow_pushes_in_a_row_or_one_long_one_hand_over_the_pushing() {
    in_one_of_three(|| handed_over_after(&pushed_from_with_sleeps(&[(3, 30), (4, 30)]), 5));
    in_one_of_three(|| handed_over_after(&pushed_from_with_sleeps(&[(3, 250)]), 4));
}

#[test]
fn a_push_held_up_by_a_pause_is_no_reason_to_fall_back() {
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=true ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false async=false",
    );
    let bus = p.bus().unwrap();
    let sink = by_name(&p, "sink");
    let threads = record_threads(&sink);
    let collector = Collector::attach(&sink);
    // The first buffer stops just before the sink until the test lets it go.
    let (arrived_tx, arrived) = std::sync::mpsc::channel::<()>();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let go_rx = Mutex::new(Some(go_rx));
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if let Some(go) = go_rx.lock().unwrap().take() {
                arrived_tx.send(()).unwrap();
                go.recv().unwrap();
            }
            gst::PadProbeReturn::Ok
        });
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let ulaw: Vec<u8> = (0..800u32).map(|i| (i * 11 % 256) as u8).collect();
    let call = call_sending(&url, &ulaw[..160]);
    arrived.recv_timeout(PATIENCE).expect("the first buffer");

    // Paused with that push under way: the sink prerolls on it and holds
    // the network thread until PLAYING, far longer than a chunk.
    set_state(&p, gst::State::Paused);
    go.send(()).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    set_state(&p, gst::State::Playing);

    finish(call, &ulaw[160..]);
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decode(&ulaw));
    let warnings = warnings(&bus);
    assert!(
        !warnings.iter().any(|w| w.contains("Downstream blocked")),
        "{warnings:?}"
    );
    let threads = threads.lock().unwrap();
    assert!(all_from_network(&threads), "pushed from {threads:?}");
    set_state(&p, gst::State::Null);
}

/// How a test flushes the pipeline while PLAYING.
#[derive(Clone, Copy)]
enum FlushBy {
    /// `gst_element_send_event` on the pipeline: the bin gives it to the src.
    Pipeline,
    /// Upstream from the sink's pad, as a downstream element would.
    SinkPad,
}

/// Plays a call, flushes while PLAYING, then blocks one push 250 ms (a
/// fallback when `shared`): the rest of the call still comes out, from the
/// streaming thread.
fn flush_then_fall_back(by: FlushBy, shared: bool) {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 shared-threads={shared} ! audio/x-raw,rate=8000 \
         ! fakesink name=sink sync=false async=false",
    ));
    let sink = by_name(&p, "sink");
    let threads = record_threads(&sink);
    // Buffer 8 (the third after the flush) holds the network thread 250 ms.
    let seen = Arc::new(Mutex::new(0usize));
    let s = seen.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            let mut seen = s.lock().unwrap();
            *seen += 1;
            if *seen == 8 {
                std::thread::sleep(Duration::from_millis(250));
            }
            gst::PadProbeReturn::Ok
        });
    let collector = Collector::attach(&sink);
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let ulaw = test_ulaw();
    let (before, after) = ulaw.split_at(5 * 160);
    let call = call_sending(&url, before);
    collector.wait_buffers(5);

    let (start, stop) = (
        gst::event::FlushStart::new(),
        gst::event::FlushStop::new(true),
    );
    match by {
        FlushBy::Pipeline => {
            assert!(p.send_event(start));
            assert!(p.send_event(stop));
        }
        FlushBy::SinkPad => {
            let pad = sink.static_pad("sink").unwrap();
            assert!(pad.push_event(start));
            assert!(pad.push_event(stop));
        }
    }

    finish(call, after);
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decode(&ulaw));
    // The push of buffer 8 fell back: the streaming thread pushed the rest.
    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), 20, "{threads:?}");
    let fell_back = if shared { 8 } else { 0 };
    assert_eq!(
        threads[..fell_back],
        ["twiliostream"; 8][..fell_back],
        "{threads:?}"
    );
    assert!(
        threads[fell_back..].iter().all(|t| t == "src:src"),
        "{threads:?}"
    );
    set_state(&p, gst::State::Null);
}

#[test]
fn a_fallback_after_a_flush_of_the_pipeline_still_pushes_the_call() {
    flush_then_fall_back(FlushBy::Pipeline, true);
}

#[test]
fn a_fallback_after_a_flush_from_downstream_still_pushes_the_call() {
    flush_then_fall_back(FlushBy::SinkPad, true);
}

#[test]
fn without_shared_threads_a_flush_from_downstream_leaves_the_streaming_thread_running() {
    // (The streaming thread pushes everything: BaseSrc paused it at the
    // flush-start, and nothing would come out after the flush.)
    flush_then_fall_back(FlushBy::SinkPad, false);
}
