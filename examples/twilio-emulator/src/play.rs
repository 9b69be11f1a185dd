//! Scripted calls: play audio (with DTMF at chosen times) into a stream in
//! real time or as fast as possible, listen to what comes back, hang up.
//! A stream with both tracks gets one chunk of each per frame, inbound
//! first, on one clock, the shorter track going on in silence (Twilio
//! streams both continuously). [`Impairments`] lose, delay, skew and swap
//! the chunks on the way, reproducibly.

use std::time::Duration;

use base64::Engine as _;
use gsttwiliostream::protocol::{Inbound, Outbound, Track};
use tokio::time::Instant;

use crate::call::{Disconnected, Received, TwilioCall};
use crate::impair::{Impairer, Impairments};
use crate::playout::Playback;

/// How an emulated call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Send `stop`, then close the WebSocket, as Twilio does on hang-up.
    Stop,
    /// Drop the TCP connection without `stop` or close frame.
    Drop,
}

/// What to play into a call: the tracks its `start.tracks` names.
#[derive(Debug, Clone)]
pub struct Script {
    /// The inbound track (the caller), in the stream's format (8 kHz
    /// μ-law unless the call's params say otherwise).
    pub audio: Vec<u8>,
    /// The outbound track (what the caller hears), for a stream that has one.
    pub outbound: Vec<u8>,
    /// Ticks (8 kHz samples, 125 µs) per media message (160 = 20 ms).
    pub chunk_samples: usize,
    /// Pace the chunks in real time, or send them as fast as possible.
    pub realtime: bool,
    /// DTMF digits and when to press them, in seconds of audio.
    pub dtmf: Vec<(f64, String)>,
    /// How long to keep listening after the audio before hanging up.
    pub linger: Duration,
    pub ending: Ending,
    /// Loss, jitter and clock skew on the way (jitter and skew need
    /// `realtime`).
    pub impairments: Impairments,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            audio: Vec::new(),
            outbound: Vec::new(),
            chunk_samples: 160,
            realtime: true,
            dtmf: Vec::new(),
            linger: Duration::from_millis(500),
            ending: Ending::Stop,
            impairments: Impairments::default(),
        }
    }
}

/// What came back during a call.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub media_messages: usize,
    /// μ-law received in `media` messages, in order.
    pub media: Vec<u8>,
    pub marks: Vec<String>,
    pub clears: usize,
    /// Messages Twilio would have rejected.
    pub invalid: Vec<String>,
    /// Whether the plugin closed the WebSocket (and with which code).
    pub closed_by_plugin: Option<Option<u16>>,
    /// The reason in the plugin's close frame, if it gave one.
    pub close_reason: Option<String>,
    /// What Twilio's playout made of it: what the caller heard, mark times.
    pub playback: Playback,
}

impl Report {
    /// What is read from the call once it is over.
    fn ended(&mut self, call: &TwilioCall) {
        self.playback = call.playback();
        self.close_reason = call.close_reason();
    }

    fn take(&mut self, item: Received) {
        match item {
            Received::Message(Outbound::Media { media, .. }, _) => {
                self.media_messages += 1;
                match base64::engine::general_purpose::STANDARD.decode(&media.payload) {
                    Ok(bytes) => self.media.extend(bytes),
                    Err(e) => self.invalid.push(format!("bad base64 payload: {e}")),
                }
            }
            Received::Message(Outbound::Mark { mark, .. }, _) => self.marks.push(mark.name),
            Received::Message(Outbound::Clear { .. }, _) => self.clears += 1,
            Received::Invalid(why) => self.invalid.push(why),
            Received::Closed(code) => self.closed_by_plugin = Some(code),
        }
    }

    fn drain(&mut self, call: &mut TwilioCall) {
        while let Some(item) = call.try_recv() {
            self.take(item);
        }
    }
}

/// Chunks sent as fast as possible between two turns given to the
/// runtime's other tasks: the call's writer (on a busy runtime it may sit
/// in this thread's queue alone) and reader, other calls.
const FAST_CHUNKS_PER_TURN: usize = 64;

/// How far ahead of real time `--fast` sends at most: the plugin takes a
/// timestamp over 10 s ahead of the time the call has lasted for invalid
/// (and its audio as following on, which would hide later losses).
pub const FAST_AHEAD: Duration = Duration::from_secs(5);

/// When chunk `n` (of `chunk_time` each) may go out with `--fast`: at
/// once, until the audio is [`FAST_AHEAD`] ahead of the time since
/// `started`; then as real time goes on.
fn fast_due(started: Instant, chunk_time: Duration, n: u32) -> Instant {
    started + (chunk_time * n).saturating_sub(FAST_AHEAD)
}

/// Why the audio stopped before its end.
enum Cut {
    /// A send failed: the connection is gone.
    SendFailed,
    /// The plugin closed the call.
    ClosedByPlugin,
}

/// Plays `script` into a started call and hangs up.
pub async fn run(mut call: TwilioCall, script: &Script) -> Result<Report, Disconnected> {
    let mut report = Report::default();
    match send_audio(&mut call, script, &mut report).await {
        Ok(()) => {}
        // A send that fails because the plugin has just closed the call (its
        // close frame not seen yet) ends the script as that close does.
        Err(Cut::SendFailed) => return closed(call, report).await,
        Err(Cut::ClosedByPlugin) => {
            report.ended(&call);
            return Ok(report);
        }
    }

    let deadline = Instant::now() + script.linger;
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, call.recv()).await {
        report.take(item);
        if report.closed_by_plugin.is_some() {
            report.ended(&call);
            return Ok(report);
        }
    }
    report.ended(&call);
    match script.ending {
        Ending::Stop => {
            call.send_stop()?;
            call.close().await;
        }
        Ending::Drop => call.abort().await,
    }
    Ok(report)
}

/// Sends the script's audio and DTMF, taking what comes back meanwhile.
async fn send_audio(
    call: &mut TwilioCall,
    script: &Script,
    report: &mut Report,
) -> Result<(), Cut> {
    macro_rules! send {
        ($sent:expr) => {
            if $sent.is_err() {
                return Err(Cut::SendFailed);
            }
        };
    }
    let chunk_time = Duration::from_secs_f64(script.chunk_samples as f64 / 8000.0);
    // The sender's clock (skewed) paces the chunks; each may go out late by
    // its jitter, but never before the one ahead of it (TCP keeps order).
    let interval = script.impairments.chunk_interval(chunk_time);
    let mut impairer = Impairer::new(script.impairments);
    let started = Instant::now();
    let mut last_send = started;
    let mut dtmf = script.dtmf.clone();
    dtmf.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut dtmf = dtmf.into_iter().peekable();

    let tracks: Vec<(Track, &[u8])> = [
        (Track::Inbound, &script.audio),
        (Track::Outbound, &script.outbound),
    ]
    .into_iter()
    .filter(|(track, _)| call.params.carries(*track))
    .map(|(track, audio)| (track, audio.as_slice()))
    .collect();
    let width = call.params.format.bytes_per_tick();
    let silence = call.params.format.silence();
    let chunk_samples = script.chunk_samples.max(1) * width;
    let longest = tracks.iter().map(|(_, a)| a.len()).max().unwrap_or(0);
    let mut padded = Vec::with_capacity(chunk_samples);
    // Per track, a chunk held back to go after the next one.
    let mut held: [Option<Inbound<'static>>; 2] = [None, None];
    for (n, start) in (0..longest).step_by(chunk_samples).enumerate() {
        if script.realtime {
            let due = started + interval * n as u32 + impairer.delay();
            last_send = last_send.max(due);
            tokio::time::sleep_until(last_send).await;
        } else {
            let due = fast_due(started, chunk_time, n as u32);
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            } else if n % FAST_CHUNKS_PER_TURN == FAST_CHUNKS_PER_TURN - 1 {
                // Sending never waits (the writer's queue is unbounded):
                // without a turn, the writer would write nothing until the
                // end.
                tokio::task::yield_now().await;
            }
        }
        while let Some((_, digit)) = dtmf.next_if(|(at, _)| *at <= call.audio_seconds()) {
            send!(call.send_dtmf(&digit));
        }
        let len = chunk_samples.min(longest - start);
        for &(track, audio) in &tracks {
            // A track that ended goes on in silence.
            let have = audio.get(start..).unwrap_or_default();
            let chunk = if have.len() >= len {
                &have[..len]
            } else {
                padded.clear();
                padded.extend_from_slice(have);
                padded.resize(len, silence);
                &padded[..]
            };
            if impairer.lose_on(track) {
                call.lose_media_on(track, chunk.len() / width);
                continue;
            }
            let message = call.media_message_on(track, chunk);
            if impairer.swapped(n) {
                held[track.index()] = Some(message);
                continue;
            }
            send!(call.send(&message));
            if let Some(late) = held[track.index()].take() {
                send!(call.send(&late));
            }
        }
        report.drain(call);
        if report.closed_by_plugin.is_some() {
            return Err(Cut::ClosedByPlugin);
        }
    }
    for late in held.iter().flatten() {
        send!(call.send(late));
    }
    for (_, digit) in dtmf {
        send!(call.send_dtmf(&digit));
    }
    Ok(())
}

/// The call's connection is gone: what it received until then, if the
/// plugin closed it; else the call was lost.
async fn closed(mut call: TwilioCall, mut report: Report) -> Result<Report, Disconnected> {
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(1), call.recv()).await {
        report.take(item);
    }
    if report.closed_by_plugin.is_none() {
        return Err(Disconnected);
    }
    report.ended(&call);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use futures::StreamExt;
    use tokio::net::TcpListener;

    use super::*;
    use crate::call::CallParams;

    /// A fast call on a one-thread runtime gives the runtime's other tasks
    /// turns while it sends: its writer writes, and a task beside it runs,
    /// before the last chunk is queued (not only once all are).
    #[test]
    fn fast_audio_gives_other_tasks_turns() {
        let peer_rt = tokio::runtime::Runtime::new().unwrap();
        let listener = peer_rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let url = format!("ws://{}/", listener.local_addr().unwrap());
        peer_rt.spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
        });

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut call = TwilioCall::connect(&url, CallParams::default())
                .await
                .unwrap();
            call.begin().unwrap();
            let turns = Arc::new(AtomicU64::new(0));
            let counter = turns.clone();
            tokio::spawn(async move {
                loop {
                    counter.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            });
            let script = Script {
                audio: vec![0xFF; 160 * 10 * FAST_CHUNKS_PER_TURN],
                realtime: false,
                ..Script::default()
            };
            let mut report = Report::default();
            assert!(send_audio(&mut call, &script, &mut report).await.is_ok());
            assert!(turns.load(Ordering::Relaxed) > 0, "the task beside it ran");
            assert!(call.writes() > 0, "the writer wrote");
            call.abort().await;
        });
    }

    /// `--fast` sends the first 5 s of audio at once, then keeps 5 s ahead
    /// of real time.
    #[test]
    fn fast_keeps_at_most_five_seconds_ahead() {
        let t0 = Instant::now();
        let chunk = Duration::from_millis(20);
        assert_eq!(fast_due(t0, chunk, 0), t0);
        assert_eq!(fast_due(t0, chunk, 250), t0);
        assert_eq!(fast_due(t0, chunk, 251), t0 + chunk);
        assert_eq!(fast_due(t0, chunk, 1500), t0 + Duration::from_secs(25));
    }
}
