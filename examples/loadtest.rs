//! Whole-call load test: N concurrent echo calls in real time.
//!
//! The driver (this process) runs the Twilio emulator's load driver (one
//! thread for all calls): N calls, each sending 50 chunks of 20 ms a second
//! and timing the echo of every chunk. A server child process (this binary
//! with `--serve N`) runs N echo pipelines, `twiliostreamsrc
//! shared-threads=true ! twiliostreamsink sync=false`, all on one port
//! (`--streaming-threads`, `--queue` and `--sync` change that). Per N it reports
//! frames sent and echoed (and lost), p50/p99/max time from sending a chunk
//! to receiving its echo, the server's CPU per call, and its RSS per idle
//! (listening) and per active call.
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
    /// Keep the sink's default sync=true: echo 20 ms after arrival, paced by
    /// the clock (one more wake-up per frame). Without it the echo pipelines
    /// use sync=false: the caller's audio is already real-time.
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
        use gst::prelude::*;
        p.set_state(gst::State::Playing).unwrap();
        port = p.by_name("src").unwrap().property::<u32>("bound-port");
        pipelines.push(p);
    }
    writeln!(out.lock(), "READY {port} {base_rss}").unwrap();
    for line in std::io::stdin().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "stats" => {
                use gst::prelude::*;
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
    use gst::prelude::*;
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

    fn stats(&mut self) -> Vec<u64> {
        writeln!(self.stdin, "stats").unwrap();
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
        "| calls | frames sent | echoed | lost | p50 ms | p99 ms | max ms | server CPU/call | server CPU | emulator CPU | RSS/idle call | RSS/active call |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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
        let (s0, _) = usage(server_pid);
        let (e0, _) = usage(me);
        let t0 = Instant::now();
        std::thread::sleep(window);
        let wall = t0.elapsed().as_secs_f64();
        let (s1, active_rss) = usage(server_pid);
        let (e1, _) = usage(me);
        let results = (
            calls.join().expect("the load driver panicked"),
            (s1 - s0) / wall,
            (e1 - e0) / wall,
            active_rss,
        );
        let (results, server_cpu, emulator_cpu, active_rss) = results;
        let stats = server.stats();
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
            "| {n} | {sent} | {echoed} | {lost} | {:.1} | {:.1} | {:.1} | {:.2} % | {:.0} % | {:.0} % | {} KiB | {} KiB |",
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
                "|   | {} call error(s) {:?}; server: {invalid} invalid message(s), chunks-lost {}, overruns {} | | | | | | | | | | |",
                errors.len(),
                errors.first(),
                stats.get(1).unwrap_or(&0),
                stats.get(2).unwrap_or(&0)
            );
        }
    }
}
