//! One echo pipeline of a long-running application taking 300 calls in a
//! row on a fixed port (NULL and READY in turn at each call's EOS, the
//! src pushing from the network threads and from its streaming thread in
//! turn): nothing a call leaves behind (a Call, a task, a timer, a thread,
//! a path table, a slot) piles up. Alone in its binary: it measures the
//! process.

mod common;

use std::time::{Duration, Instant};

use common::app::*;
use common::*;
use gst::prelude::*;

const CALLS: usize = 300;
/// Calls before the baseline is taken (thread pools, allocator arenas).
const WARM_UP: usize = 30;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn tasks() -> usize {
    gsttwiliostream::runtime::RUNTIME
        .handle()
        .metrics()
        .num_alive_tasks()
}

#[test]
fn one_pipeline_takes_hundreds_of_calls_and_leaks_nothing() {
    let port = free_port();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port={port} ! audio/x-mulaw ! twiliostreamsink name=sink"
    ));
    let src = by_name(&p, "src");
    let bus = p.bus().unwrap();
    let mut before = None;
    for n in 0..CALLS {
        src.set_property("shared-threads", n % 4 < 2);
        set_bounded(&p, gst::State::Playing);
        let chunks = 3 + n % 3;
        let echoed = echo_call(&format!("ws://127.0.0.1:{port}/"), n, chunks);
        assert_eq!(echoed, pattern(n, chunks), "call {n}");
        wait_eos(&bus);
        set_bounded(
            &p,
            if n % 2 == 0 {
                gst::State::Ready
            } else {
                gst::State::Null
            },
        );
        if n + 1 == WARM_UP {
            std::thread::sleep(Duration::from_millis(300));
            before = Some((threads(), tasks(), rss_kib()));
        }
    }
    set_bounded(&p, gst::State::Null);
    assert!(port_is_free(port));
    let (t0, k0, r0) = before.unwrap();
    // The last calls' sockets and tasks close on their own time.
    let settled = || threads() <= t0 + 2 && tasks() <= k0 && rss_kib() <= r0 + 4096;
    let deadline = Instant::now() + PATIENCE;
    while !settled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (t1, k1, r1) = (threads(), tasks(), rss_kib());
    println!(
        "after {WARM_UP} calls: {t0} threads, {k0} tasks, {r0} KiB; after {CALLS}: {t1}, {k1}, {r1} KiB"
    );
    assert!(t1 <= t0 + 2, "threads {t0} -> {t1}");
    assert!(k1 <= k0, "runtime tasks {k0} -> {k1}");
    assert!(r1 <= r0 + 4096, "RSS grew by {} KiB", r1 - r0);
}
