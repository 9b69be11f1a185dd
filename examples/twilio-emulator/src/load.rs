//! A lean echo call for load tests: one task per call owns its socket, sends
//! a chunk every 20 ms and times each echoed frame. No playout model and no
//! parsing beyond recognising a `media` message, so that a thousand calls
//! cost the machine little next to what they measure.

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::call::CallParams;
use crate::dial::{Dialer, Stream};
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
    /// Why the call ended early, if it did.
    pub error: Option<String>,
}

/// Runs one call: `frames` chunks of `ulaw` (160 bytes for 20 ms) in real
/// time, then `stop`, then waits (up to 5 s) for the rest of the echo.
pub async fn echo_call(
    dialer: &Dialer,
    url: &str,
    params: CallParams,
    ulaw: &[u8],
    frames: usize,
) -> EchoStats {
    let mut stats = EchoStats::default();
    let result = match dialer.dial(url).await {
        Ok(dialed) => {
            crate::with_ws!(dialed, ws => run(ws, params, ulaw, frames, &mut stats).await)
        }
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = result {
        stats.error = Some(e);
    }
    stats
}

async fn run<S: Stream>(
    mut ws: WebSocketStream<S>,
    params: CallParams,
    ulaw: &[u8],
    frames: usize,
    stats: &mut EchoStats,
) -> Result<(), String> {
    let sid = params.stream_sid.clone();
    let start = Inbound::Start {
        sequence_number: Some(Counter(1)),
        stream_sid: sid.clone(),
        start: StartInfo {
            account_sid: params.account_sid.clone(),
            stream_sid: sid.clone(),
            call_sid: params.call_sid.clone(),
            tracks: params.tracks.clone(),
            custom_parameters: params.custom_parameters.clone(),
            media_format: Some(MediaFormat {
                encoding: "audio/x-mulaw".into(),
                sample_rate: 8000,
                channels: 1,
            }),
        },
    };
    let send_err = |e: tokio_tungstenite::tungstenite::Error| e.to_string();
    ws.send(Message::text(start.to_json()))
        .await
        .map_err(send_err)?;

    let payload = base64::engine::general_purpose::STANDARD.encode(ulaw);
    let samples = ulaw.len() as u64;
    let mut sent_at: Vec<Instant> = Vec::with_capacity(frames);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(samples as f64 / 8000.0));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let on_message = |msg: Message, sent_at: &[Instant], stats: &mut EchoStats| {
        if let Message::Text(text) = msg
            && text.starts_with(r#"{"event":"media""#)
        {
            if let Some(t) = sent_at.get(stats.echoed) {
                stats.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            stats.echoed += 1;
        }
    };

    while sent_at.len() < frames {
        tokio::select! {
            _ = ticks.tick() => {
                let n = sent_at.len() as u64;
                let text = format!(
                    r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{sid}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{payload}"}}}}"#,
                    n + 2,
                    n + 1,
                    params.first_timestamp_ms + n * samples / 8
                );
                ws.send(Message::text(text)).await.map_err(send_err)?;
                sent_at.push(Instant::now());
                stats.sent = sent_at.len();
            }
            // Reading is cancel-safe: a partly read frame stays buffered.
            msg = ws.next() => match msg {
                Some(Ok(msg)) => on_message(msg, &sent_at, stats),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("the plugin closed the call".into()),
            },
        }
    }

    let stop = Inbound::Stop {
        sequence_number: Some(Counter(frames as u64 + 2)),
        stream_sid: sid.clone(),
        stop: StopInfo {
            account_sid: params.account_sid,
            call_sid: params.call_sid,
        },
    };
    ws.send(Message::text(stop.to_json()))
        .await
        .map_err(send_err)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stats.echoed < stats.sent {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(msg))) => on_message(msg, &sent_at, stats),
            _ => break,
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}
