//! Lifecycle under stress: 1000 start → call → stop cycles of an echo
//! pipeline, with the state change landing at a different moment of the
//! call each time. Nothing may leak (threads, file descriptors, tasks of
//! the plugin's runtime), RSS must stay flat, and no state change may hang.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, Playout, TwilioCall};

const CYCLES: usize = 1000;
/// Cycles run before the baseline is taken (thread pools, allocator arenas).
const WARM_UP: usize = 100;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[derive(Debug, Clone, Copy)]
struct Usage {
    threads: usize,
    fds: usize,
    tasks: usize,
    rss_kib: u64,
}

fn usage() -> Usage {
    Usage {
        threads: count("/proc/self/task"),
        fds: count("/proc/self/fd"),
        tasks: gsttwiliostream::runtime::RUNTIME
            .handle()
            .metrics()
            .num_alive_tasks(),
        rss_kib: rss_kib(),
    }
}

/// Where in the call the pipeline is stopped.
#[derive(Debug, Clone, Copy)]
enum StopAt {
    BeforeAnyCall,
    AfterConnect,
    MidMedia,
    AfterStop,
    AfterPauseResume,
}

fn cycle(i: usize) {
    let at = [
        StopAt::BeforeAnyCall,
        StopAt::AfterConnect,
        StopAt::MidMedia,
        StopAt::AfterStop,
        StopAt::AfterPauseResume,
    ][i % 5];
    // Every other round of the five, the src pushes from the network threads.
    let shared = (i / 5) % 2 == 1;
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 shared-threads={shared} ! twiliostreamsink name=sink sync=false"
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));

    let call = match at {
        StopAt::BeforeAnyCall => None,
        _ => Some(rt().block_on(async {
            let mut call = TwilioCall::connect_with(&url, CallParams::default(), Playout::Instant)
                .await
                .unwrap();
            if !matches!(at, StopAt::AfterConnect) {
                call.begin().unwrap();
                for _ in 0..5 {
                    call.send_media(&[0xFF; 160]).unwrap();
                }
            }
            call
        })),
    };
    match at {
        StopAt::MidMedia => {
            collector.wait_buffers(1);
        }
        StopAt::AfterStop => {
            let mut call = call.unwrap();
            call.send_stop().unwrap();
            collector.wait_eos();
            rt().block_on(call.close());
            stop(&p);
            return;
        }
        StopAt::AfterPauseResume => {
            collector.wait_buffers(1);
            set_state(&p, gst::State::Paused);
            set_state(&p, gst::State::Playing);
        }
        _ => {}
    }
    stop(&p);
    if let Some(call) = call {
        rt().block_on(call.abort());
    }
}

/// Sets NULL, failing (instead of hanging) if that does not return.
fn stop(p: &gst::Pipeline) {
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || tx.send(p2.set_state(gst::State::Null)).unwrap());
    rx.recv_timeout(PATIENCE)
        .expect("deadlock: NULL did not return")
        .unwrap();
}

#[test]
fn a_thousand_call_cycles_leak_nothing() {
    init();
    let started = Instant::now();
    for i in 0..WARM_UP {
        cycle(i);
    }
    // Let closing sockets and tasks finish before measuring.
    std::thread::sleep(Duration::from_millis(500));
    let before = usage();
    for i in WARM_UP..CYCLES {
        cycle(i);
    }
    // The last cycles' sockets and tasks close on their own time: judge by
    // the first reading back within bounds, or the last one at PATIENCE
    // (the baseline's sleep only gives a chance: a residue there is lenient).
    let settled = |u: &Usage| {
        u.threads <= before.threads + 2
            && u.fds <= before.fds
            && u.tasks <= before.tasks
            && u.rss_kib <= before.rss_kib + 4096
    };
    let deadline = Instant::now() + PATIENCE;
    let mut after = usage();
    while !settled(&after) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        after = usage();
    }
    println!(
        "{CYCLES} cycles in {:.1} s; after {WARM_UP}: {before:?}; after {CYCLES}: {after:?}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        after.threads <= before.threads + 2,
        "threads {before:?} -> {after:?}"
    );
    assert!(
        after.fds <= before.fds,
        "file descriptors {before:?} -> {after:?}"
    );
    assert!(
        after.tasks <= before.tasks,
        "runtime tasks {before:?} -> {after:?}"
    );
    // 900 more calls, about 80 KiB each while active: a leak would show.
    assert!(
        after.rss_kib <= before.rss_kib + 4096,
        "RSS grew by {} KiB over {} cycles",
        after.rss_kib - before.rss_kib,
        CYCLES - WARM_UP
    );
}
