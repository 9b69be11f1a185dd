//! Many echo calls from one thread, for load tests.
//!
//! A thousand calls must cost the machine little next to what they measure,
//! so there is no task per call and no timer per call: one thread keeps
//! every call's next send in a heap, sends what is due, and reads whatever
//! epoll (via mio) says is readable. The WebSocket framing is tungstenite's,
//! on non-blocking sockets, handshakes included: a call waiting for the
//! server's upgrade answer holds up no other call's sends or reads. Only
//! `ws://` URLs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, ErrorKind};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use base64::Engine as _;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::MidHandshake;
use tokio_tungstenite::tungstenite::handshake::client::ClientHandshake;
use tokio_tungstenite::tungstenite::protocol::{WebSocket, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, HandshakeError, Message};

use crate::call::CallParams;
use gsttwiliostream::protocol::{Counter, Inbound, MediaFormat, StartInfo, StopInfo};

/// What one echo call measured.
#[derive(Debug, Default, Clone)]
pub struct EchoStats {
    /// Chunks sent.
    pub sent: usize,
    /// Media messages received back.
    pub echoed: usize,
    /// Time from sending chunk k to receiving echoed frame k, in ms.
    pub latencies_ms: Vec<f64>,
    /// Time from sending chunk k to when Twilio would start playing echoed
    /// frame k, in ms: each frame plays for its 20 ms, after the one
    /// before it, and not before it arrives. What the caller hears, and
    /// the same for a server that paces (the echo waits in its writer)
    /// and one that does not (it would wait in Twilio's queue).
    pub heard_ms: Vec<f64>,
    /// Why the call ended early, if it did.
    pub error: Option<String>,
}

/// How long a call waits for the rest of its echo after its last chunk,
/// before it sends `stop` (after which nothing is played any more).
const ECHO_GRACE: Duration = Duration::from_secs(5);
/// How long a call waits for the server to answer its upgrade.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// When within the ramp each call is dialled. That sets the call's phase:
/// the moment in every chunk's time at which it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// At moments drawn at random (from a fixed seed: the same every run),
    /// as independent callers dial: phases spread over the chunk's time, a
    /// few close together by chance. A server then wakes for most chunks.
    Random,
    /// One every `ramp / calls`: with 400 calls over a second that is every
    /// 2.5 ms, so 8 phases of 50 calls that send together, and a server
    /// handles a phase's chunks in one wake-up. No real callers dial so.
    Lockstep,
}

impl Arrival {
    /// When call `i` of `calls` is dialled, from the start of the ramp.
    pub fn dial_at(self, ramp: Duration, i: usize, calls: usize) -> Duration {
        match self {
            Arrival::Random => {
                // The top 53 bits as a fraction in [0, 1).
                let unit = (crate::impair::splitmix(i as u64) >> 11) as f64 / (1u64 << 53) as f64;
                ramp.mul_f64(unit)
            }
            Arrival::Lockstep => ramp.mul_f64(i as f64 / calls.max(1) as f64),
        }
    }
}

/// The load: `calls` calls, call i to `urls[i % urls.len()]`, dialled
/// over `ramp` as `arrival` says, each sending `frames` chunks of `ulaw` (160 bytes:
/// 20 ms) in real time, then `stop` once the echo came (or had its time).
#[derive(Debug, Clone)]
pub struct Load {
    pub urls: Vec<String>,
    pub calls: usize,
    pub frames: usize,
    pub ulaw: Vec<u8>,
    pub ramp: Duration,
    pub arrival: Arrival,
    /// Poll without sleeping (a core of its own, busy): a server's echo
    /// then never has to wake this thread's idle CPU (see the load test).
    pub spin: bool,
}

/// A handshake waiting for the server's answer.
type Handshake = MidHandshake<ClientHandshake<TcpStream>>;

struct Leg {
    ws: Option<WebSocket<TcpStream>>,
    /// Dialled, upgrade not answered yet.
    handshake: Option<Handshake>,
    stats: EchoStats,
    sent_at: Vec<Instant>,
    /// When the call is dialled; then when its `start` went out: its sends
    /// are due at `t0 + k * chunk`.
    t0: Instant,
    /// Once the last chunk is sent: when it gives up waiting for the echo
    /// (and sends `stop`).
    deadline: Option<Instant>,
    /// When Twilio would have played out the echo received so far.
    played_until: Option<Instant>,
    /// A chunk's duration.
    chunk: Duration,
    /// When its next step is due: an entry of the heap for another time
    /// is stale (a handshake's timeout, once answered).
    next: Instant,
    done: bool,
}

/// Runs the load on the calling thread; returns each call's stats.
pub fn echo_calls(load: &Load, params: &CallParams) -> Vec<EchoStats> {
    let chunk = Duration::from_secs_f64(load.ulaw.len() as f64 / 8000.0);
    let chunk_ms = load.ulaw.len() as u64 / 8;
    let payload = base64::engine::general_purpose::STANDARD.encode(&load.ulaw);
    let mut poll = Poll::new().expect("epoll");
    let mut events = Events::with_capacity(1024);
    let start = Instant::now();
    let mut legs: Vec<Leg> = (0..load.calls)
        .map(|i| start + load.arrival.dial_at(load.ramp, i, load.calls))
        .map(|dial| Leg {
            ws: None,
            handshake: None,
            stats: EchoStats::default(),
            sent_at: Vec::with_capacity(load.frames),
            t0: dial,
            deadline: None,
            played_until: None,
            chunk,
            next: dial,
            done: false,
        })
        .collect();
    // (when, call): the call's next step, dial or send, is due.
    let mut due: BinaryHeap<Reverse<(Instant, usize)>> = legs
        .iter()
        .enumerate()
        .map(|(i, l)| Reverse((l.t0, i)))
        .collect();
    let mut open = load.calls;
    let mut text = String::new();

    while open > 0 {
        let now = Instant::now();
        while let Some(&Reverse((when, i))) = due.peek() {
            if when > now {
                break;
            }
            due.pop();
            let leg = &mut legs[i];
            if leg.done || when != leg.next {
                continue;
            }
            if leg.handshake.is_some() {
                let e = format!(
                    "no answer to the upgrade in {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                );
                leg.finish(&poll, Some(e), &mut open);
                continue;
            }
            if leg.deadline.is_some() {
                // The echo had its time.
                leg.hang_up(&poll, params, load.frames, &mut open);
                continue;
            }
            if leg.ws.is_none() {
                // Sends are due once the upgrade is answered (below).
                match dial(&load.urls[i % load.urls.len()], &poll, i) {
                    Ok(handshake) => leg.handshaking(handshake, params, &mut due, i),
                    Err(e) => leg.finish(&poll, Some(e), &mut open),
                }
                continue;
            }
            let step = {
                let n = leg.sent_at.len() as u64;
                media_text(&mut text, params, n, chunk_ms, &payload);
                leg.send(&text).map(|_| {
                    leg.sent_at.push(Instant::now());
                    leg.stats.sent += 1;
                })
            };
            let next = step.map(|_| {
                if leg.sent_at.len() < load.frames {
                    return leg.t0 + chunk * (leg.sent_at.len() as u32 + 1);
                }
                // As a caller still on the line: `stop` once the echo came.
                let deadline = Instant::now() + ECHO_GRACE;
                leg.deadline = Some(deadline);
                deadline
            });
            match next {
                Ok(next) => {
                    leg.next = next;
                    due.push(Reverse((next, i)));
                }
                Err(e) => leg.finish(&poll, Some(e), &mut open),
            }
        }

        if open == 0 {
            // The last call ended above (its echo had its time): nothing is
            // due any more, and no event will come.
            break;
        }
        // epoll counts in milliseconds: round up rather than spin, unless
        // spinning is asked for.
        let timeout = if load.spin {
            Some(Duration::ZERO)
        } else {
            due.peek().map(|Reverse((when, _))| {
                let wait = when.saturating_duration_since(Instant::now());
                Duration::from_millis(wait.as_micros().div_ceil(1000) as u64)
            })
        };
        if let Err(e) = poll.poll(&mut events, timeout)
            && e.kind() != ErrorKind::Interrupted
        {
            panic!("epoll: {e}");
        }
        for event in events.iter() {
            let i = event.token().0;
            let leg = &mut legs[i];
            if leg.done {
                continue;
            }
            if let Some(handshake) = leg.handshake.take() {
                match handshake.handshake() {
                    Ok((ws, _)) => leg.connected(ws, params, &mut due, i),
                    Err(HandshakeError::Interrupted(handshake)) => {
                        leg.handshake = Some(handshake);
                    }
                    Err(HandshakeError::Failure(e)) => {
                        leg.finish(&poll, Some(e.to_string()), &mut open);
                    }
                }
                continue;
            }
            if let Err(e) = leg.read() {
                leg.finish(&poll, Some(e), &mut open);
            } else if leg.deadline.is_some() && leg.stats.echoed >= leg.stats.sent {
                leg.hang_up(&poll, params, load.frames, &mut open);
            }
        }
    }
    legs.into_iter().map(|l| l.stats).collect()
}

impl Leg {
    /// Where `dial` left the call: connected, or waiting for the answer.
    fn handshaking(
        &mut self,
        handshake: Result<WebSocket<TcpStream>, Handshake>,
        params: &CallParams,
        due: &mut BinaryHeap<Reverse<(Instant, usize)>>,
        i: usize,
    ) {
        match handshake {
            Ok(ws) => self.connected(ws, params, due, i),
            Err(handshake) => {
                self.handshake = Some(handshake);
                // Not answered by then: the call fails (see the due loop).
                self.next = Instant::now() + HANDSHAKE_TIMEOUT;
                due.push(Reverse((self.next, i)));
            }
        }
    }

    /// The upgrade was answered: `start` goes out, and the call's audio
    /// is due from now.
    fn connected(
        &mut self,
        ws: WebSocket<TcpStream>,
        params: &CallParams,
        due: &mut BinaryHeap<Reverse<(Instant, usize)>>,
        i: usize,
    ) {
        self.ws = Some(ws);
        // A failed send shows up as the next one's error.
        let _ = self.send(&start_text(params));
        self.t0 = Instant::now();
        self.next = self.t0;
        due.push(Reverse((self.t0, i)));
    }

    fn send(&mut self, text: &str) -> Result<(), String> {
        let ws = self.ws.as_mut().ok_or("not connected")?;
        match ws.send(Message::text(text)) {
            Ok(()) => Ok(()),
            // Buffered by tungstenite; the next send or flush writes it.
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Reads everything there is; counts and times the echoed media.
    fn read(&mut self) -> Result<(), String> {
        let Some(ws) = self.ws.as_mut() else {
            return Ok(());
        };
        loop {
            match ws.read() {
                Ok(Message::Text(text)) if text.starts_with(r#"{"event":"media""#) => {
                    if let Some(&sent) = self.sent_at.get(self.stats.echoed) {
                        let now = Instant::now();
                        let plays = plays_at(&mut self.played_until, now, self.chunk);
                        let ms = |t: Instant| t.duration_since(sent).as_secs_f64() * 1000.0;
                        self.stats.latencies_ms.push(ms(now));
                        self.stats.heard_ms.push(ms(plays));
                    }
                    self.stats.echoed += 1;
                }
                Ok(Message::Close(_)) => return Err("the plugin closed the call".into()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    // Anything tungstenite still holds goes out now.
                    return match ws.flush() {
                        Err(tungstenite::Error::Io(e)) if e.kind() != ErrorKind::WouldBlock => {
                            Err(e.to_string())
                        }
                        _ => Ok(()),
                    };
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The echo came, or had its time: `stop` (the call is over), then the
    /// end of the call.
    fn hang_up(&mut self, poll: &Poll, params: &CallParams, frames: usize, open: &mut usize) {
        let sent = self.send(&stop_text(params, frames));
        self.finish(poll, sent.err(), open);
    }

    /// Ends the call (a close frame if it went well), stops watching it and
    /// counts it off `open`.
    fn finish(&mut self, poll: &Poll, error: Option<String>, open: &mut usize) {
        if self.done {
            return;
        }
        self.done = true;
        *open -= 1;
        if let Some(handshake) = self.handshake.take() {
            let _ = poll
                .registry()
                .deregister(&mut SourceFd(&handshake.get_ref().get_ref().as_raw_fd()));
        }
        if let Some(mut ws) = self.ws.take() {
            let _ = poll
                .registry()
                .deregister(&mut SourceFd(&ws.get_ref().as_raw_fd()));
            if error.is_none() {
                let _ = ws.close(None);
                let _ = ws.flush();
            }
        }
        if self.stats.error.is_none() {
            self.stats.error = error;
        }
    }
}

/// Connects (loopback: at once), then starts the upgrade without blocking
/// and watches the socket: the connected WebSocket, or the handshake that
/// waits for the server's answer.
fn dial(
    url: &str,
    poll: &Poll,
    token: usize,
) -> Result<Result<WebSocket<TcpStream>, Handshake>, String> {
    let request = url.into_client_request().map_err(|e| e.to_string())?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(format!("{url}: the load driver speaks ws:// only"));
    }
    let host = uri.host().ok_or("no host")?;
    let addr = (host, uri.port_u16().unwrap_or(80))
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    // Each chunk is one small write that must leave at once.
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
    poll.registry()
        .register(
            &mut SourceFd(&tcp.as_raw_fd()),
            Token(token),
            Interest::READABLE,
        )
        .map_err(|e: io::Error| e.to_string())?;
    // tungstenite zero-fills its read buffer before every read: the default
    // 128 KiB made that memset an eighth of the driver's CPU.
    let config = WebSocketConfig::default().read_buffer_size(4096);
    match tungstenite::client::client_with_config(request, tcp, Some(config)) {
        Ok((ws, _)) => Ok(Ok(ws)),
        Err(HandshakeError::Interrupted(handshake)) => Ok(Err(handshake)),
        Err(HandshakeError::Failure(e)) => Err(e.to_string()),
    }
}

/// When Twilio starts playing a frame of `chunk` that arrives `now`: at
/// once, or when what it holds (`played_until`) is played out.
fn plays_at(played_until: &mut Option<Instant>, now: Instant, chunk: Duration) -> Instant {
    let plays = played_until.map_or(now, |t| t.max(now));
    *played_until = Some(plays + chunk);
    plays
}

fn start_text(params: &CallParams) -> String {
    Inbound::Start {
        sequence_number: Some(Counter(1)),
        stream_sid: params.stream_sid.clone(),
        start: StartInfo {
            account_sid: params.account_sid.clone(),
            stream_sid: params.stream_sid.clone(),
            call_sid: params.call_sid.clone(),
            tracks: params.tracks.clone(),
            custom_parameters: params.custom_parameters.clone(),
            media_format: Some(MediaFormat {
                encoding: "audio/x-mulaw".into(),
                sample_rate: 8000,
                channels: 1,
            }),
            tracks_unannounced: false,
        },
    }
    .to_json()
}

/// Media message `n` (from 0) of a call, as Twilio numbers and stamps it.
fn media_text(out: &mut String, params: &CallParams, n: u64, chunk_ms: u64, payload: &str) {
    use std::fmt::Write as _;
    out.clear();
    let _ = write!(
        out,
        r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{payload}"}}}}"#,
        n + 2,
        params.stream_sid,
        n + 1,
        params.first_timestamp_ms + n * chunk_ms
    );
}

fn stop_text(params: &CallParams, frames: usize) -> String {
    Inbound::Stop {
        sequence_number: Some(Counter(frames as u64 + 2)),
        stream_sid: params.stream_sid.clone(),
        stop: StopInfo {
            account_sid: params.account_sid.clone(),
            call_sid: params.call_sid.clone(),
        },
    }
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_heard_one_frame_after_another_and_a_gap_resets() {
        let t = Instant::now();
        let ms = |n: u64| Duration::from_millis(n);
        let mut played = None;
        // On time: heard as it comes.
        assert_eq!(plays_at(&mut played, t, ms(20)), t);
        assert_eq!(plays_at(&mut played, t + ms(20), ms(20)), t + ms(20));
        // Three frames at once, 60 ms late: each waits for the one before.
        let late = t + ms(100);
        assert_eq!(plays_at(&mut played, late, ms(20)), late);
        assert_eq!(plays_at(&mut played, late, ms(20)), late + ms(20));
        assert_eq!(plays_at(&mut played, late, ms(20)), late + ms(40));
        // After Twilio ran dry, the next plays when it comes.
        let after = t + ms(500);
        assert_eq!(plays_at(&mut played, after, ms(20)), after);
    }

    /// Where in a 20 ms chunk each of 400 calls dialled over a second sends,
    /// in 2.5 ms bins.
    fn phases(arrival: Arrival) -> [usize; 8] {
        let mut bins = [0; 8];
        for i in 0..400 {
            let at = arrival.dial_at(Duration::from_secs(1), i, 400);
            assert!(at < Duration::from_secs(1));
            let phase = at.as_micros() % 20_000;
            bins[(phase / 2500) as usize] += 1;
            if arrival == Arrival::Lockstep {
                assert!(phase.is_multiple_of(2500), "call {i}");
            }
        }
        bins
    }

    #[test]
    fn random_arrivals_spread_the_phases_and_lockstep_ones_bunch_them() {
        // Lockstep: 8 phases of 50 calls, every call on a 2.5 ms mark.
        assert_eq!(phases(Arrival::Lockstep), [50; 8]);
        // Random: every bin near its 50 (binomial, sd 6.6), none on the marks.
        let random = phases(Arrival::Random);
        assert!(random.iter().all(|&n| (25..=75).contains(&n)), "{random:?}");
        let on_marks = (0..400)
            .filter(|&i| {
                let at = Arrival::Random.dial_at(Duration::from_secs(1), i, 400);
                at.as_micros().is_multiple_of(2500)
            })
            .count();
        assert!(on_marks <= 2, "{on_marks}");
        // The same every run.
        assert_eq!(random, phases(Arrival::Random));
    }
}
