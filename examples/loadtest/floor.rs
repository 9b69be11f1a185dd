//! The floor: a bare tokio-tungstenite echo server doing the JSON and
//! base64 work of a Twilio echo and nothing else (no GStreamer, no
//! codec, no pacing). What the plugin's pipelines cost is compared with
//! it, in the same run on the same core.
//!
//! Per connection: read each text message, parse it with serde_json, and
//! for `media` decode the base64 payload and answer with a `media` message
//! carrying it encoded again (one write and flush each, as a plain server
//! would). The caller's close ends the connection.

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Media messages received, by all connections.
pub static FRAMES: AtomicU64 = AtomicU64::new(0);

#[derive(Deserialize)]
struct In {
    event: String,
    #[serde(rename = "streamSid")]
    stream_sid: Option<String>,
    media: Option<InMedia>,
}

#[derive(Deserialize)]
struct InMedia {
    payload: String,
}

#[derive(Serialize)]
struct Out<'a> {
    event: &'static str,
    #[serde(rename = "streamSid")]
    stream_sid: &'a str,
    media: OutMedia,
}

#[derive(Serialize)]
struct OutMedia {
    payload: String,
}

/// Binds a port on 127.0.0.1 and serves echo connections on `runtime`;
/// returns the port.
pub fn serve(runtime: &tokio::runtime::Runtime) -> u16 {
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("cannot bind");
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            tokio::spawn(echo(tcp));
        }
    });
    port
}

async fn echo(tcp: tokio::net::TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut sid = String::new();
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
        match (msg.event.as_str(), msg.media) {
            ("start", _) => sid = msg.stream_sid.unwrap_or_default(),
            ("media", Some(media)) => {
                FRAMES.fetch_add(1, Ordering::Relaxed);
                let Ok(audio) = b64.decode(&media.payload) else {
                    continue;
                };
                let out = Out {
                    event: "media",
                    stream_sid: &sid,
                    media: OutMedia {
                        payload: b64.encode(&audio),
                    },
                };
                let text = serde_json::to_string(&out).unwrap();
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
