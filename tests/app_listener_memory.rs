//! A long-lived listener keeps nothing of the connections it is done
//! with: after hundreds of them (health checks answered 426, upgrades
//! refused 404, calls, calls that waited for a free element), the process
//! holds no more allocations, file descriptors or threads than before.
//! Alone in its binary: it counts every allocation of the process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use common::app::*;
use common::sink::{media_bytes, receive_until};
use common::*;
use gst::prelude::*;

/// The system allocator, counting the allocations alive.
struct Counting;

static ALIVE: AtomicI64 = AtomicI64::new(0);
/// Their bytes.
static ALIVE_BYTES: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALIVE.fetch_add(1, Ordering::Relaxed);
        ALIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALIVE.fetch_sub(1, Ordering::Relaxed);
        ALIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
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
    bytes: i64,
    fds: usize,
    threads: usize,
}

fn held() -> Held {
    Held {
        allocations: ALIVE.load(Ordering::Relaxed),
        bytes: ALIVE_BYTES.load(Ordering::Relaxed),
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
        "twiliostreamsrc port={port} pending-timeout=15 ! audio/x-mulaw ! twiliostreamsink"
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
    // (The baseline may have caught a pipeline's thread on its way out.)
    assert!(
        after.fds <= before.fds && after.threads <= before.threads,
        "file descriptors, threads: {before:?}, then {after:?}"
    );
    calls_that_waited_are_not_kept(port, &p);
    set_bounded(&p, gst::State::Null);
    set_bounded(&other, gst::State::Null);
}

/// Calls that waited for the busy echo (`pending-timeout`, 15 s here),
/// taken and ended long before it: nothing of them is kept until then.
fn calls_that_waited_are_not_kept(port: u16, p: &gst::Pipeline) {
    const WAITED: usize = 12;
    let bus = p.bus().unwrap();
    let url = format!("ws://127.0.0.1:{port}/");
    let mut first = instant_call(&url);
    echo_once(&mut first, 0);
    // Another element on the path, busy all along: a call that comes
    // while the echo is between READY and PLAYING waits too (with no
    // element on the path it would be refused).
    let holder = pipeline(&format!(
        "twiliostreamsrc name=src port={port} idle-timeout=0 ! fakesink"
    ));
    set_bounded(&holder, gst::State::Playing);
    let held_call = instant_call(&url);
    let holder_src = by_name(&holder, "src");
    let deadline = Instant::now() + PATIENCE;
    while !holder_src.property::<bool>("connected") {
        assert!(Instant::now() < deadline, "the holder took no call");
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = held();
    for n in 1..=WAITED {
        // Both elements are busy: this call waits, for the echo.
        let mut next = instant_call(&url);
        first.send_stop().unwrap();
        rt().block_on(first.close());
        wait_eos(&bus);
        set_bounded(p, gst::State::Ready);
        set_bounded(p, gst::State::Playing);
        echo_once(&mut next, n);
        first = next;
    }
    first.send_stop().unwrap();
    rt().block_on(first.close());
    wait_eos(&bus);
    // A call kept until its timeout held about 17 allocations (3.7 KB)
    // after it ended; nothing now.
    let allowed = 2 * WAITED as i64;
    // Well within the timeout, which would free them too.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = held();
    while after.allocations - before.allocations >= allowed && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        after = held();
    }
    println!("calls that waited: before {before:?}, after {after:?}");
    assert!(
        after.allocations - before.allocations < allowed,
        "{} more allocations ({} bytes) alive after {WAITED} calls that waited",
        after.allocations - before.allocations,
        after.bytes - before.bytes
    );
    drop(held_call);
    set_bounded(&holder, gst::State::Null);
}

/// One chunk of call `n`'s pattern, echoed back unchanged.
fn echo_once(call: &mut twilio_emulator::TwilioCall, n: usize) {
    let sent = pattern(n, 1);
    call.send_media(&sent).unwrap();
    let got = receive_until(call, |got| media_bytes(got).len() >= sent.len());
    assert_eq!(media_bytes(&got), sent, "{got:?}");
}
