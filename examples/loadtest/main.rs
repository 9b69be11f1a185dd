//! Whole-call load test: N concurrent echo calls in real time, against the
//! plugin's echo pipelines and against the floor, in one run.
//!
//! The driver (this process) runs the Twilio emulator's load driver (one
//! thread for all calls): N calls, each sending 50 chunks of 20 ms a second
//! and timing the echo of every chunk. For each server kind in turn, a
//! server child process (this binary with `--serve N --server KIND`) runs N
//! echo pipelines on one port, or the floor: a bare tokio-tungstenite echo
//! doing the JSON and base64 work and nothing else (`floor.rs`), or the
//! floor with one GStreamer hand-off per chunk (`gst-floor`, `handoff.rs`;
//! `gst-floor2`: two, through a capsfilter; `gst-floor-queue`: through a
//! queue, echoed from the sink's thread). On a
//! machine with two CPUs or more the server is pinned to the last one and
//! the driver to the first (`taskset`), so the server's CPU is one core's.
//!
//! Per N and kind it reports frames sent and echoed (and lost), p50/p99/max
//! time from sending a chunk to receiving its echo, p50/p99 time from
//! sending it to when Twilio would start playing its echo (heard: a frame
//! plays after the one before it, so a backlog is heard whether it waits in
//! a pacing server or in Twilio's queue), the server's CPU per
//! echoed frame and its ratio to the floor's in the same run, CPU per call,
//! RSS per idle (listening) and per active call, and what the server
//! allocates per echoed frame. The ratios hold when the machine's speed
//! drifts between runs; the absolute figures do not. `--side-by-side` runs
//! each kind at the same time as a floor of its own (both on the server
//! CPU, each with the N calls), for a ratio over the same seconds.
//!
//! ```sh
//! cargo run --release --example loadtest -- --calls 200
//! cargo run --release --example loadtest -- --calls 1000 --servers default --no-pin
//! cargo run --release --example loadtest -- --calls 200 --side-by-side --rounds 3
//! ```

mod floor;
mod handoff;
mod heap;
mod serve;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use twilio_emulator::{CallParams, audio, load};

/// What serves the echo calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A bare tokio-tungstenite echo, JSON + base64 only: the floor.
    Floor,
    /// The floor plus one GStreamer buffer per chunk, pushed from a pad
    /// into a fakesink: what GStreamer's hand-off alone costs.
    GstFloor,
    /// As `gst-floor`, through a capsfilter first: the two hand-offs that
    /// `tuned` makes (its caps are a capsfilter between src and sink).
    GstFloor2,
    /// As `gst-floor`, through a queue, the echo sent once the buffer
    /// reached the sink: the two thread hand-offs that `queue` makes.
    GstFloorQueue,
    /// `twiliostreamsrc ! twiliostreamsink`, all defaults.
    Default,
    /// `twiliostreamsrc ! queue ! twiliostreamsink`, all defaults.
    Queue,
    /// μ-law through, no transcoding, no quality reports.
    Tuned,
    /// The streaming threads and the clock, as before pacing in the writer:
    /// `shared-threads=false ! queue ! sync=true`.
    Streaming,
}

/// `load::Arrival` as a command-line choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ArrivalArg {
    Random,
    Lockstep,
}

impl From<ArrivalArg> for load::Arrival {
    fn from(arrival: ArrivalArg) -> Self {
        match arrival {
            ArrivalArg::Random => load::Arrival::Random,
            ArrivalArg::Lockstep => load::Arrival::Lockstep,
        }
    }
}

#[derive(Parser, Debug)]
#[command(about = "N concurrent echo calls against twiliostream and the floor, in real time")]
struct Args {
    /// Numbers of concurrent calls to run, one after the other
    #[arg(long, value_delimiter = ',', default_value = "200")]
    calls: Vec<usize>,
    /// Seconds of audio per call
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The servers to run, in this order, for each number of calls
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "floor,default,queue,tuned"
    )]
    servers: Vec<Kind>,
    /// Run the list of servers this many times over (per number of calls)
    /// and end with each kind's median ratio to the floor run before it:
    /// this VM's speed drifts by a fifth within seconds, so one run's ratio
    /// is not to be trusted
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Run each server at the same time as a floor server of its own, both
    /// on the server CPU, each with the N calls: the ratio is then of CPU
    /// over the same seconds, which the VM's drift does not move
    #[arg(long)]
    side_by_side: bool,
    /// When the calls are dialled within their first second, which sets
    /// when in each 20 ms a call sends: `random` as independent callers
    /// dial (the server wakes for most chunks), or `lockstep`, one every
    /// 1/N s, so that with 200 calls per server the chunks come in 8 bunches
    /// (one wake-up handles each bunch: a cheaper floor, and higher ratios)
    #[arg(long, value_enum, default_value = "random")]
    arrival: ArrivalArg,
    /// Do not pin the server and the driver to CPUs of their own
    #[arg(long)]
    no_pin: bool,
    /// Let the pinned driver sleep between sends (by default it spins on its
    /// own CPU, so that no echo has to wake that CPU: see `spin`)
    #[arg(long)]
    idle_driver: bool,
    /// Run each server under this command, for profiling (e.g.
    /// "valgrind --tool=callgrind": instructions per frame do not drift
    /// with the VM's speed as CPU time does)
    #[arg(long, default_value = "")]
    server_wrapper: String,
    /// Run the server side for N calls (used by the driver)
    #[arg(long, hide = true)]
    serve: Option<usize>,
    /// The server kind to run with --serve (used by the driver)
    #[arg(long, hide = true, value_enum, default_value = "default")]
    server: Kind,
}

fn main() {
    let args = Args::parse();
    match args.serve {
        Some(n) => serve::serve(n, args.server),
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

// ---------------------------------------------------------------- driver --

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts the server for `n` calls of `kind`, on CPU `cpu` if given.
    fn start(n: usize, kind: Kind, cpu: Option<usize>, wrapper: &str) -> (Server, u16, u64) {
        let exe = std::env::current_exe().unwrap();
        let mut words: Vec<String> = match cpu {
            Some(cpu) => vec!["taskset".into(), "-c".into(), cpu.to_string()],
            None => Vec::new(),
        };
        words.extend(wrapper.split_whitespace().map(str::to_owned));
        let mut cmd = match words.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.arg("--serve").arg(n.to_string());
        cmd.arg("--server")
            .arg(kind.to_possible_value().unwrap().get_name());
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

/// The CPUs the server and the driver are pinned to, if they are. Asked
/// once, before the driver pins itself (it then sees one CPU).
fn pinning(args: &Args) -> Option<(usize, usize)> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (!args.no_pin && cpus >= 2).then_some((cpus - 1, 0))
}

/// Whether the driver spins rather than sleeps between sends: when it is
/// pinned to a CPU of its own. A send to a sleeping CPU wakes it with an
/// interrupt the sender pays for; on this VM (nested virtualization) that
/// costs the server more per echo than its own work on a message, the
/// slower its echo (the later, the likelier the driver sleeps). A server
/// answering Twilio over the network never wakes its peer's CPU, so that
/// cost belongs to the test rig, not to the server being measured.
fn spin(args: &Args, pinned: bool) -> bool {
    pinned && !args.idle_driver
}

/// What one server kind measured for N calls.
struct Row {
    kind: Kind,
    sent: usize,
    echoed: usize,
    lat: Vec<f64>,
    /// Sorted: when the caller would hear each echo (`EchoStats::heard_ms`).
    heard: Vec<f64>,
    /// Server CPU seconds per second, over the window.
    server_cpu: f64,
    emulator_cpu: f64,
    /// Server CPU per echoed frame, µs.
    per_frame_us: f64,
    idle_rss: u64,
    active_rss: u64,
    allocs_per_frame: f64,
    bytes_per_frame: f64,
    trouble: Option<String>,
}

/// Runs `n` calls against a server of `kind`, on CPU `cpu` if given.
fn run(n: usize, kind: Kind, args: &Args, cpu: Option<usize>) -> Row {
    run_together(n, &[kind], args, cpu).remove(0)
}

/// Runs `n` calls against a server of each of `kinds`, all at the same
/// time (the calls dialled in turn), on CPU `cpu` if given: one row each,
/// measured over the same seconds.
fn run_together(n: usize, kinds: &[Kind], args: &Args, cpu: Option<usize>) -> Vec<Row> {
    let frames = (args.seconds * 50.0).round() as usize;
    let mut servers: Vec<(Server, u16, u64)> = kinds
        .iter()
        .map(|&kind| Server::start(n, kind, cpu, &args.server_wrapper))
        .collect();
    let pids: Vec<u32> = servers.iter().map(|(s, _, _)| s.child.id()).collect();
    std::thread::sleep(Duration::from_millis(500));
    let idle_rss: Vec<u64> = pids.iter().map(|&pid| usage(pid).1).collect();

    let me = std::process::id();
    let load = load::Load {
        urls: servers
            .iter()
            .map(|(_, port, _)| format!("ws://127.0.0.1:{port}/echo"))
            .collect(),
        calls: n * kinds.len(),
        frames,
        ulaw: audio::encode(&audio::tone(440.0, 0.3, 0.02)),
        // Calls arrive over one second, at moments as `--arrival` says.
        ramp: Duration::from_secs(1),
        arrival: args.arrival.into(),
        spin: spin(args, cpu.is_some()),
    };
    let calls = std::thread::spawn(move || load::echo_calls(&load, &CallParams::default()));
    // Measure the steady state: from 2 s in to 1 s before the end.
    std::thread::sleep(Duration::from_secs(2));
    let window = Duration::from_secs_f64((args.seconds - 3.0).max(1.0));
    let heap0: Vec<Vec<u64>> = servers.iter_mut().map(|(s, _, _)| s.ask("heap")).collect();
    let s0: Vec<f64> = pids.iter().map(|&pid| usage(pid).0).collect();
    let (e0, _) = usage(me);
    let t0 = Instant::now();
    std::thread::sleep(window);
    let wall = t0.elapsed().as_secs_f64();
    let s1: Vec<(f64, u64)> = pids.iter().map(|&pid| usage(pid)).collect();
    let (e1, _) = usage(me);
    let heap1: Vec<Vec<u64>> = servers.iter_mut().map(|(s, _, _)| s.ask("heap")).collect();
    let results = calls.join().expect("the load driver panicked");
    let mut rows = Vec::new();
    for (k, (mut server, _, base_rss)) in servers.into_iter().enumerate() {
        let stats = server.ask("stats");
        server.stop();
        // This server's calls: every kinds.len()-th, from the k-th.
        let mine = || results.iter().skip(k).step_by(kinds.len());
        // Per echoed frame (a chunk in and its echo out), over the window.
        let delta = |i: usize| heap1[k][i].saturating_sub(heap0[k][i]) as f64;
        let frames_in_window = delta(2).max(1.0);
        let sent: usize = mine().map(|r| r.sent).sum();
        let echoed: usize = mine().map(|r| r.echoed.min(r.sent)).sum();
        let errors: Vec<&String> = mine().filter_map(|r| r.error.as_ref()).collect();
        let invalid = stats.get(3).copied().unwrap_or(0);
        let mut lat: Vec<f64> = mine()
            .flat_map(|r| r.latencies_ms.iter().copied())
            .collect();
        lat.sort_by(f64::total_cmp);
        let mut heard: Vec<f64> = mine().flat_map(|r| r.heard_ms.iter().copied()).collect();
        heard.sort_by(f64::total_cmp);
        let trouble = (!errors.is_empty()
            || invalid > 0
            || stats.get(1..3).is_some_and(|s| s.iter().any(|&v| v > 0)))
        .then(|| {
            format!(
                "{} call error(s) {:?}; server: {invalid} invalid message(s), chunks-lost {}, overruns {}",
                errors.len(),
                errors.first(),
                stats.get(1).unwrap_or(&0),
                stats.get(2).unwrap_or(&0)
            )
        });
        let (cpu1, active_rss) = s1[k];
        rows.push(Row {
            kind: kinds[k],
            sent,
            echoed,
            lat,
            heard,
            server_cpu: (cpu1 - s0[k]) / wall,
            emulator_cpu: (e1 - e0) / wall,
            per_frame_us: (cpu1 - s0[k]) * 1e6 / frames_in_window,
            idle_rss: idle_rss[k].saturating_sub(base_rss) / n as u64,
            active_rss: active_rss.saturating_sub(base_rss) / n as u64,
            allocs_per_frame: delta(0) / frames_in_window,
            bytes_per_frame: delta(1) / frames_in_window,
            trouble,
        });
    }
    rows
}

/// One row of the table; `floor_us`: the floor's CPU per frame to compare.
fn print_row(n: usize, row: &Row, floor_us: Option<f64>) {
    let ratio = floor_us.map_or("".to_owned(), |f| format!("{:.2}×", row.per_frame_us / f));
    println!(
        "| {n} | {:?} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} µs | {ratio} | {:.2} % | {:.0} % | {:.0} % | {} KiB | {} KiB | {:.1} | {:.0} |",
        row.kind,
        row.sent,
        row.echoed,
        row.sent - row.echoed,
        percentile(&row.lat, 0.5),
        percentile(&row.lat, 0.99),
        row.lat.last().copied().unwrap_or(f64::NAN),
        percentile(&row.heard, 0.5),
        percentile(&row.heard, 0.99),
        row.per_frame_us,
        100.0 * row.server_cpu / n as f64,
        100.0 * row.server_cpu,
        100.0 * row.emulator_cpu,
        row.idle_rss,
        row.active_rss,
        row.allocs_per_frame,
        row.bytes_per_frame,
    );
    if let Some(trouble) = &row.trouble {
        println!("|   | {trouble} | | | | | | | | | | | | | | | | | |");
    }
}

fn drive(args: &Args) {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let pin = pinning(args);
    if let Some((_, driver_cpu)) = pin {
        // Every thread of the driver, and those it starts later.
        let pinned = Command::new("taskset")
            .args([
                "-a",
                "-cp",
                &driver_cpu.to_string(),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            pinned,
            "taskset failed: install util-linux, or pass --no-pin"
        );
    }
    println!(
        "Load test: echo calls of {:.0} s in real time (50 chunks/s each way), dialled {}, {} CPUs, {}",
        args.seconds,
        match args.arrival {
            ArrivalArg::Random => "at random moments",
            ArrivalArg::Lockstep => "in lockstep",
        },
        cpus,
        match pin {
            Some((server, driver)) => format!(
                "server pinned to CPU {server}, driver to CPU {driver} ({})",
                if spin(args, true) {
                    "spinning"
                } else {
                    "sleeping between sends"
                }
            ),
            None => "not pinned".to_owned(),
        }
    );
    for &kind in &args.servers {
        println!("- {:?}: {}", kind, serve::describe(kind));
    }
    println!();
    println!(
        "| calls | server | frames sent | echoed | lost | p50 ms | p99 ms | max ms | heard p50 ms | heard p99 ms | CPU/frame | vs floor | server CPU/call | server CPU | driver CPU | RSS/idle call | RSS/active call | allocs/frame | bytes/frame |"
    );
    println!(
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for &n in &args.calls {
        let mut floor_us = None;
        // Each kind's ratios to the floor, one per round.
        let mut ratios: Vec<(Kind, Vec<f64>)> = Vec::new();
        let servers = args
            .servers
            .iter()
            .cycle()
            .take(args.servers.len() * args.rounds.max(1));
        for &kind in servers {
            let cpu = pin.map(|(server, _)| server);
            let row = if args.side_by_side {
                if kind == Kind::Floor {
                    // Each kind runs beside a floor of its own.
                    continue;
                }
                let mut rows = run_together(n, &[Kind::Floor, kind], args, cpu);
                let row = rows.pop().unwrap();
                let floor = rows.pop().unwrap();
                floor_us = Some(floor.per_frame_us);
                print_row(n, &floor, floor_us);
                row
            } else {
                let row = run(n, kind, args, cpu);
                if kind == Kind::Floor {
                    floor_us = Some(row.per_frame_us);
                }
                row
            };
            if let Some(f) = floor_us.filter(|_| kind != Kind::Floor) {
                match ratios.iter_mut().find(|(k, _)| *k == kind) {
                    Some((_, r)) => r.push(row.per_frame_us / f),
                    None => ratios.push((kind, vec![row.per_frame_us / f])),
                }
            }
            print_row(n, &row, floor_us);
        }
        if args.rounds > 1 {
            println!();
            println!("| calls | server | rounds | median vs floor | lowest | highest |");
            println!("|---:|---|---:|---:|---:|---:|");
            for (kind, mut r) in ratios {
                r.sort_by(f64::total_cmp);
                let mid = r.len() / 2;
                let median = if r.len() % 2 == 1 {
                    r[mid]
                } else {
                    (r[mid - 1] + r[mid]) / 2.0
                };
                println!(
                    "| {n} | {kind:?} | {} | {median:.2}× | {:.2}× | {:.2}× |",
                    r.len(),
                    r[0],
                    r[r.len() - 1]
                );
            }
            println!();
        }
    }
}
