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

use crate::handoff::Handoff;

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

/// Binds a port on 127.0.0.1 and serves echo connections on `runtime`;
/// returns the port. With `handoffs` (1 or 2), each chunk also goes
/// through a GStreamer pad into a sink, directly or through a capsfilter
/// (the `gst-floor` servers, see `handoff.rs`).
pub fn serve(runtime: &tokio::runtime::Runtime, handoffs: usize) -> u16 {
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("cannot bind");
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(echo(tcp, handoffs));
        }
    });
    port
}

async fn echo(tcp: tokio::net::TcpStream, handoffs: usize) {
    // The plugin's read buffer: tungstenite's default (128 KiB) is zeroed
    // before every read, which would make the floor a third dearer.
    let config = WebSocketConfig::default().read_buffer_size(1024);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
        return;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sid = String::new();
    // Reused for every message: the one allocation per echo is the text
    // handed to tungstenite, as in the plugin.
    let (mut audio, mut payload) = (Vec::new(), String::new());
    let handoff = (handoffs > 0).then(|| Handoff::new(handoffs == 2));
    let mut pts = 0;
    while let Some(Ok(msg)) = ws.next().await {
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
            ("start", _) => sid = msg.stream_sid.unwrap_or_default().to_owned(),
            ("media", Some(media)) => {
                FRAMES.fetch_add(1, Ordering::Relaxed);
                audio.clear();
                if b64.decode_vec(media.payload, &mut audio).is_err() {
                    continue;
                }
                if let Some(handoff) = &handoff {
                    handoff.push(&audio, pts);
                    pts += audio.len() as u64 * 125_000;
                }
                payload.clear();
                b64.encode_string(&audio, &mut payload);
                let out = Out {
                    event: "media",
                    stream_sid: &sid,
                    media: OutMedia { payload: &payload },
                };
                let mut json = Vec::with_capacity(payload.len() + sid.len() + 64);
                serde_json::to_writer(&mut json, &out).unwrap();
                let text = String::from_utf8(json).unwrap();
                if ws.send(Message::text(text)).await.is_err() {
                    break;
                }
            }
            // After `stop` the caller closes: as the plugin, wait for that.
            _ => {}
        }
    }
    let _ = ws.close(None).await;
}
