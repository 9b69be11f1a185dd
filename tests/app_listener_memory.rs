//! A long-lived listener keeps nothing of the connections it is done
//! with: after hundreds of them (health checks answered 426, upgrades
//! refused 404, calls), the process holds no more allocations, file
//! descriptors or threads than before. Alone in its binary: it counts
//! every allocation of the process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::app::*;
use common::*;
use gst::prelude::*;

/// The system allocator, counting the allocations alive.
struct Counting;

static ALIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALIVE.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALIVE.fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONNECTIONS: usize = 600;
/// Connections before the baseline is taken (pools, tables).
const WARM_UP: usize = 60;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

fn tasks() -> usize {
    gsttwiliostream::runtime::RUNTIME
        .handle()
        .metrics()
        .num_alive_tasks()
}

/// One connection that is done with once its answer is read: a health
/// check (426), an upgrade on a path nobody serves (404), or a call.
fn connection(port: u16, n: usize) {
    let (request, status) = match n % 3 {
        0 => ("GET /health HTTP/1.1\r\nHost: x\r\n\r\n", " 426 "),
        1 => (
            "GET /nobody HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            " 404 ",
        ),
        _ => {
            echo_call(&format!("ws://127.0.0.1:{port}/"), n, 1);
            return;
        }
    };
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.contains(status), "{answer:?}");
}

/// What the process holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    allocations: i64,
    fds: usize,
    threads: usize,
}

fn held() -> Held {
    Held {
        allocations: ALIVE.load(Ordering::Relaxed),
        fds: count("/proc/self/fd"),
        threads: count("/proc/self/task"),
    }
}

/// What the process holds once only the listener's accept loop runs on
/// the plugin's runtime (every connection's task is over) and `enough`
/// says so, or PATIENCE has passed (the emulator's last tasks end on
/// their own time).
fn settled(enough: impl Fn(&Held) -> bool) -> Held {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let now = held();
        if tasks() <= 1 && enough(&now) || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_listener_keeps_nothing_of_the_connections_it_is_done_with() {
    // The echo goes to READY after each call; another src keeps the
    // listener on their port (as a pool of pipelines or a call arriving
    // meanwhile does).
    let port = free_port();
    let other = pipeline(&format!(
        "twiliostreamsrc port={port} path=/other ! fakesink"
    ));
    set_bounded(&other, gst::State::Playing);
    let p = pipeline(&format!(
        "twiliostreamsrc port={port} ! audio/x-mulaw ! twiliostreamsink"
    ));
    let bus = p.bus().unwrap();
    set_bounded(&p, gst::State::Playing);
    let serve = |n: usize| {
        connection(port, n);
        if n % 3 == 2 {
            // The src takes the next call after READY.
            wait_eos(&bus);
            set_bounded(&p, gst::State::Ready);
            set_bounded(&p, gst::State::Playing);
        }
    };
    for n in 0..WARM_UP {
        serve(n);
    }
    let before = settled(|_| true);
    for n in WARM_UP..CONNECTIONS {
        serve(n);
    }
    // Each connection the listener kept a trace of would leave at least
    // one allocation.
    let allowed = ((CONNECTIONS - WARM_UP) / 10) as i64;
    let after = settled(|now| {
        now.allocations - before.allocations < allowed
            && now.fds <= before.fds
            && now.threads <= before.threads
    });
    println!("after {WARM_UP} connections: {before:?}; after {CONNECTIONS}: {after:?}");
    assert!(
        after.allocations - before.allocations < allowed,
        "{} more allocations alive after {} connections",
        after.allocations - before.allocations,
        CONNECTIONS - WARM_UP
    );
    assert_eq!(
        (after.fds, after.threads),
        (before.fds, before.threads),
        "file descriptors, threads"
    );
    set_bounded(&p, gst::State::Null);
    set_bounded(&other, gst::State::Null);
}
