//! The floor: a bare tokio-tungstenite echo server doing the JSON and
//! base64 work of a Twilio echo and nothing else (no GStreamer, no
//! codec, no pacing). What the plugin's pipelines cost is compared with
//! it, in the same run on the same core.
//!
//! It is configured as the plugin is (Nagle off, a 1 KiB read buffer, a
//! runtime from the plugin's own builder: `runtime::builder`, with the
//! same wait before a thread sleeps) and allocates as little: one text per
//! echo.
//!
//! Per connection: read each text message, parse it with serde_json, and
//! for `media` decode the base64 payload and answer with a `media` message
//! carrying it encoded again (one write and flush each, as a plain server
//! would). The caller's close ends the connection.
//!
//! The `gst-floor` server is the same echo, each chunk also pushed through
//! a GStreamer pad into a sink (`handoff.rs`): what GStreamer's hand-off
//! adds to the floor, with nothing of the plugin. `gst-floor2` pushes it
//! through a capsfilter first: two hand-offs.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::handoff::{Between, Handoff};

/// Media messages received, by all connections.
pub static FRAMES: AtomicU64 = AtomicU64::new(0);

/// Borrowed from the message's text: no copy of the fields.
#[derive(Deserialize)]
struct In<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(rename = "streamSid", borrow)]
    stream_sid: Option<&'a str>,
    #[serde(borrow)]
    media: Option<InMedia<'a>>,
}

#[derive(Deserialize)]
struct InMedia<'a> {
    #[serde(borrow)]
    payload: &'a str,
}

#[derive(Serialize)]
struct Out<'a> {
    event: &'static str,
    #[serde(rename = "streamSid")]
    stream_sid: &'a str,
    media: OutMedia<'a>,
}

#[derive(Serialize)]
struct OutMedia<'a> {
    payload: &'a str,
}

/// What each chunk goes through besides the echo (see `handoff.rs`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Nothing: the floor.
    Nothing,
    /// A pad into a fakesink (`gst-floor`).
    Pad,
    /// A pad through a capsfilter into a fakesink (`gst-floor2`).
    Capsfilter,
    /// A pad through a queue into a fakesink, the echo sent once the
    /// buffer reached the sink (`gst-floor-queue`).
    Queue,
}

/// Binds a port on 127.0.0.1 and serves echo connections on `runtime`;
/// returns the port.
pub fn serve(runtime: &tokio::runtime::Runtime, via: Via) -> u16 {
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("cannot bind");
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(echo(tcp, via));
        }
    });
    port
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Reused for every message: the one allocation per echo is the text
/// handed to tungstenite, as in the plugin.
#[derive(Default)]
struct Echo {
    sid: String,
    audio: Vec<u8>,
    payload: String,
}

impl Echo {
    /// Sends `audio` back as a `media` message.
    async fn send(&mut self, ws: &mut Ws, audio: &[u8]) -> bool {
        let b64 = base64::engine::general_purpose::STANDARD;
        self.payload.clear();
        b64.encode_string(audio, &mut self.payload);
        let out = Out {
            event: "media",
            stream_sid: &self.sid,
            media: OutMedia {
                payload: &self.payload,
            },
        };
        let mut json = Vec::with_capacity(self.payload.len() + self.sid.len() + 64);
        serde_json::to_writer(&mut json, &out).unwrap();
        let text = String::from_utf8(json).unwrap();
        ws.send(Message::text(text)).await.is_ok()
    }
}

async fn echo(tcp: tokio::net::TcpStream, via: Via) {
    // The plugin's read buffer: tungstenite's default (128 KiB) is zeroed
    // before every read, which would make the floor a third dearer.
    let config = WebSocketConfig::default().read_buffer_size(1024);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
        return;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut echo = Echo::default();
    let (queued, mut reached_sink) = tokio::sync::mpsc::unbounded_channel();
    let handoff = match via {
        Via::Nothing => None,
        Via::Pad => Some(Handoff::new(Between::Nothing)),
        Via::Capsfilter => Some(Handoff::new(Between::Capsfilter)),
        Via::Queue => Some(Handoff::new(Between::Queue(queued))),
    };
    let mut pts = 0;
    loop {
        // The other servers do not poll the channel: the floor's loop is
        // exactly a plain echo's.
        let msg = if via == Via::Queue {
            tokio::select! {
                msg = ws.next() => msg,
                Some(buffer) = reached_sink.recv() => {
                    let map = buffer.map_readable().unwrap();
                    if !echo.send(&mut ws, &map).await {
                        break;
                    }
                    continue;
                }
            }
        } else {
            ws.next().await
        };
        let Some(Ok(msg)) = msg else { break };
        let Message::Text(text) = msg else {
            if msg.is_close() {
                break;
            }
            continue;
        };
        let Ok(msg) = serde_json::from_str::<In>(&text) else {
            continue;
        };
        match (msg.event, msg.media) {
            ("start", _) => echo.sid = msg.stream_sid.unwrap_or_default().to_owned(),
            ("media", Some(media)) => {
                FRAMES.fetch_add(1, Ordering::Relaxed);
                let mut audio = std::mem::take(&mut echo.audio);
                audio.clear();
                if b64.decode_vec(media.payload, &mut audio).is_ok() {
                    if let Some(handoff) = &handoff {
                        handoff.push(&audio, pts);
                        pts += audio.len() as u64 * 125_000;
                    }
                    // Through a queue, the echo goes once the buffer is out.
                    if via != Via::Queue && !echo.send(&mut ws, &audio).await {
                        break;
                    }
                }
                echo.audio = audio;
            }
            // After `stop` the caller closes: as the plugin, wait for that.
            _ => {}
        }
    }
    let _ = ws.close(None).await;
}
