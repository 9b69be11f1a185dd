//! Whole-call load test: N concurrent echo calls in real time.
//!
//! The driver (this process) runs the Twilio emulator's load driver (one
//! thread for all calls): N calls, each sending 50 chunks of 20 ms a second
//! and timing the echo of every chunk. A server child process (this binary
//! with `--serve N`) runs N echo pipelines, `twiliostreamsrc
//! shared-threads=true ! twiliostreamsink sync=false`, all on one port
//! (`--streaming-threads`, `--queue` and `--sync` change that). Per N it reports
//! frames sent and echoed (and lost), p50/p99/max time from sending a chunk
//! to receiving its echo, the server's CPU per call, its RSS per idle
//! (listening) and per active call, and what it allocates per echoed frame.
//!
//! ```sh
//! cargo run --release --example loadtest -- --calls 100,500,1000
//! ```

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use twilio_emulator::{CallParams, audio, load};

#[derive(Parser, Debug)]
#[command(about = "N concurrent echo calls against twiliostream, in real time")]
struct Args {
    /// Numbers of concurrent calls to run, one after the other
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000")]
    calls: Vec<usize>,
    /// Seconds of audio per call
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Put a queue between src and sink (a second streaming thread per call)
    #[arg(long)]
    queue: bool,
    /// Keep the sink's default sync=true: echo one pipeline latency (~60 ms)
    /// after arrival, paced by the clock. With shared-threads each src then
    /// falls back to its streaming thread after its first push. Without it
    /// the echo pipelines use sync=false: the caller's audio is already
    /// real-time.
    #[arg(long)]
    sync: bool,
    /// Leave the src's default shared-threads=false: each call's audio is
    /// pushed by a streaming thread of its own (two thread hand-offs per frame)
    #[arg(long)]
    streaming_threads: bool,
    /// Run the server side for N calls (used by the driver)
    #[arg(long, hide = true)]
    serve: Option<usize>,
}

fn main() {
    let args = Args::parse();
    match args.serve {
        Some(n) => serve(n, &args),
        None => drive(&args),
    }
}

/// CPU seconds (user + system) and RSS in KiB of a process, from /proc.
fn usage(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15, i.e. 11 and 12 after the name.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (cpu, rss)
}

// ------------------------------------------------------------------ heap --

/// Counts every heap allocation of the process: Rust's, GStreamer's and
/// GLib's alike. The executable's own `malloc` family comes first in symbol
/// resolution, so every library loaded calls it; it counts and hands the
/// work to glibc's entry points. (`free` stays glibc's.) Two relaxed atomic
/// additions per allocation: a few nanoseconds against the ~20 µs an echoed
/// frame costs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod heap {
    use std::ffi::{c_int, c_void};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    static CALLS: AtomicU64 = AtomicU64::new(0);
    static BYTES: AtomicU64 = AtomicU64::new(0);

    /// Allocations and bytes allocated so far (a `realloc` counts as an
    /// allocation of its new size).
    pub fn allocated() -> (u64, u64) {
        (CALLS.load(Relaxed), BYTES.load(Relaxed))
    }

    fn count(bytes: usize) {
        CALLS.fetch_add(1, Relaxed);
        BYTES.fetch_add(bytes as u64, Relaxed);
    }

    unsafe extern "C" {
        fn __libc_malloc(size: usize) -> *mut c_void;
        fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
        fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
        fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
        count(size);
        // SAFETY: the same contract as malloc.
        unsafe { __libc_malloc(size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
        count(n.saturating_mul(size));
        // SAFETY: the same contract as calloc.
        unsafe { __libc_calloc(n, size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
        count(size);
        // SAFETY: the same contract as realloc.
        unsafe { __libc_realloc(ptr, size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
        count(size);
        // SAFETY: the same contract as memalign.
        unsafe { __libc_memalign(align, size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
        count(size);
        // SAFETY: glibc's aligned_alloc is its memalign.
        unsafe { __libc_memalign(align, size) }
    }

    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn posix_memalign(
        out: *mut *mut c_void,
        align: usize,
        size: usize,
    ) -> c_int {
        const EINVAL: c_int = 22;
        const ENOMEM: c_int = 12;
        if !align.is_power_of_two() || !align.is_multiple_of(size_of::<*mut c_void>()) {
            return EINVAL;
        }
        count(size);
        // SAFETY: align is valid for memalign; `out` is the caller's to fill.
        unsafe {
            let p = __libc_memalign(align, size);
            if p.is_null() {
                return ENOMEM;
            }
            *out = p;
        }
        0
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod heap {
    /// Not counted off glibc.
    pub fn allocated() -> (u64, u64) {
        (0, 0)
    }
}

// ---------------------------------------------------------------- server --

/// The server's pipeline for one call, on `port`.
fn pipeline(args: &Args, port: u32) -> String {
    format!(
        "twiliostreamsrc name=src port={port} path=/echo shared-threads={} {} twiliostreamsink name=sink sync={}",
        !args.streaming_threads,
        if args.queue { "! queue !" } else { "!" },
        args.sync
    )
}

fn serve(n: usize, args: &Args) {
    gst::init().unwrap();
    gsttwiliostream::plugin_register_static().unwrap();
    let out = std::io::stdout();
    let (_, base_rss) = usage(std::process::id());
    let mut pipelines = Vec::with_capacity(n);
    let mut port = 0;
    for _ in 0..n {
        let p = gst::parse::launch(&pipeline(args, port))
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        port = p.by_name("src").unwrap().property::<u32>("bound-port");
        pipelines.push(p);
    }
    writeln!(out.lock(), "READY {port} {base_rss}").unwrap();
    use gst::prelude::*;
    let srcs: Vec<gst::Element> = pipelines
        .iter()
        .map(|p| p.by_name("src").unwrap())
        .collect();
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "heap" => {
                // The counters first: what reading the properties allocates
                // falls in the next interval (and is far below its noise).
                let (calls, bytes) = heap::allocated();
                let chunks: u64 = srcs
                    .iter()
                    .map(|s| s.property::<u64>("chunks-received"))
                    .sum();
                writeln!(out.lock(), "HEAP {calls} {bytes} {chunks}").unwrap();
            }
            "stats" => {
                let mut totals = [0u64; 5];
                for p in &pipelines {
                    let src = p.by_name("src").unwrap();
                    let sink = p.by_name("sink").unwrap();
                    totals[0] += src.property::<u64>("chunks-received");
                    totals[1] += src.property::<u64>("chunks-lost");
                    totals[2] += src.property::<u64>("overruns");
                    totals[3] += src.property::<u64>("invalid-messages");
                    totals[4] += sink.property::<u64>("chunks-sent");
                }
                let t = totals.map(|v| v.to_string()).join(" ");
                writeln!(out.lock(), "STATS {t}").unwrap();
            }
            _ => break,
        }
    }
    for p in &pipelines {
        p.set_state(gst::State::Null).unwrap();
    }
}

// ---------------------------------------------------------------- driver --

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    fn start(n: usize, args: &Args) -> (Server, u16, u64) {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.arg("--serve").arg(n.to_string());
        for (set, flag) in [
            (args.queue, "--queue"),
            (args.sync, "--sync"),
            (args.streaming_threads, "--streaming-threads"),
        ] {
            if set {
                cmd.arg(flag);
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start the server");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let mut words = line.split_whitespace().skip(1);
        let port = words.next().and_then(|p| p.parse().ok()).expect("no port");
        let base_rss = words.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (
            Server {
                child,
                stdin,
                stdout,
            },
            port,
            base_rss,
        )
    }

    /// The server's answer to `command`: the numbers of its reply line.
    fn ask(&mut self, command: &str) -> Vec<u64> {
        writeln!(self.stdin, "{command}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect()
    }

    fn stop(mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn drive(args: &Args) {
    let frames = (args.seconds * 50.0).round() as usize;
    println!(
        "Load test: echo calls of {:.0} s in real time (50 chunks/s each way), server pipelines `{}` ({} CPUs)",
        args.seconds,
        pipeline(args, 0)
            .replace(" name=src port=0 path=/echo", "")
            .replace(" name=sink", ""),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!();
    println!(
        "| calls | frames sent | echoed | lost | p50 ms | p99 ms | max ms | server CPU/call | server CPU | emulator CPU | RSS/idle call | RSS/active call | allocs/frame | bytes/frame |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &n in &args.calls {
        let (mut server, port, base_rss) = Server::start(n, args);
        let server_pid = server.child.id();
        std::thread::sleep(Duration::from_millis(500));
        let (_, idle_rss) = usage(server_pid);

        let me = std::process::id();
        let load = load::Load {
            url: format!("ws://127.0.0.1:{port}/echo"),
            calls: n,
            frames,
            ulaw: audio::encode(&audio::tone(440.0, 0.3, 0.02)),
            // Calls arrive spread over one second, as they would.
            ramp: Duration::from_secs(1),
        };
        let calls = std::thread::spawn(move || load::echo_calls(&load, &CallParams::default()));
        // Measure the steady state: from 2 s in to 1 s before the end.
        std::thread::sleep(Duration::from_secs(2));
        let window = Duration::from_secs_f64((args.seconds - 3.0).max(1.0));
        let heap0 = server.ask("heap");
        let (s0, _) = usage(server_pid);
        let (e0, _) = usage(me);
        let t0 = Instant::now();
        std::thread::sleep(window);
        let wall = t0.elapsed().as_secs_f64();
        let (s1, active_rss) = usage(server_pid);
        let (e1, _) = usage(me);
        let heap1 = server.ask("heap");
        let server_cpu = (s1 - s0) / wall;
        let emulator_cpu = (e1 - e0) / wall;
        let results = calls.join().expect("the load driver panicked");
        // Per echoed frame (a chunk in and its echo out), over the window.
        let delta = |i: usize| heap1[i].saturating_sub(heap0[i]) as f64;
        let frames_in_window = delta(2).max(1.0);
        let (allocs_per_frame, bytes_per_frame) =
            (delta(0) / frames_in_window, delta(1) / frames_in_window);
        let stats = server.ask("stats");
        server.stop();

        let sent: usize = results.iter().map(|r| r.sent).sum();
        let echoed: usize = results.iter().map(|r| r.echoed.min(r.sent)).sum();
        let errors: Vec<&String> = results.iter().filter_map(|r| r.error.as_ref()).collect();
        let invalid = stats.get(3).copied().unwrap_or(0);
        let mut lat: Vec<f64> = results
            .iter()
            .flat_map(|r| r.latencies_ms.iter().copied())
            .collect();
        lat.sort_by(f64::total_cmp);
        let lost = sent - echoed;
        println!(
            "| {n} | {sent} | {echoed} | {lost} | {:.1} | {:.1} | {:.1} | {:.2} % | {:.0} % | {:.0} % | {} KiB | {} KiB | {allocs_per_frame:.1} | {bytes_per_frame:.0} |",
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            100.0 * server_cpu / n as f64,
            100.0 * server_cpu,
            100.0 * emulator_cpu,
            idle_rss.saturating_sub(base_rss) / n as u64,
            active_rss.saturating_sub(base_rss) / n as u64,
        );
        if !errors.is_empty()
            || invalid > 0
            || stats.get(1..3).is_some_and(|s| s.iter().any(|&v| v > 0))
        {
            println!(
                "|   | {} call error(s) {:?}; server: {invalid} invalid message(s), chunks-lost {}, overruns {} | | | | | | | | | | | | |",
                errors.len(),
                errors.first(),
                stats.get(1).unwrap_or(&0),
                stats.get(2).unwrap_or(&0)
            );
        }
    }
}
