//! Tests only: what the panic tests of both elements share. Twilio's side of
//! a call as a plain WebSocket client (the emulator links a second copy of
//! this crate, which a unit test cannot), and waits bounded by [`PATIENCE`].

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// Generous bound for what should happen soon: only a hang reaches it.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// The emulated Twilio side's runtime, apart from the plugin's.
static TWILIO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
});

/// `description` launched, with the plugin registered.
pub(crate) fn pipeline(description: &str) -> gst::Pipeline {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        crate::plugin_register_static().unwrap();
    });
    gst::parse::launch(description).unwrap().downcast().unwrap()
}

/// The address a listening element took: host and bound port.
pub(crate) fn address(element: &gst::Element) -> (String, u16) {
    (
        element.property("host"),
        element.property::<u32>("bound-port") as u16,
    )
}

/// The WebSocket URL of a listening element.
pub(crate) fn url(element: &gst::Element) -> String {
    let (host, port) = address(element);
    format!("ws://{host}:{port}{}", element.property::<String>("path"))
}

/// Twilio's side of a call.
pub(crate) struct Caller {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    sid: String,
    sequence: u64,
    chunk: u64,
}

impl Caller {
    /// Connects to `url` and sends `connected` and `start` (a μ-law call).
    pub(crate) fn start(url: &str, n: u32) -> Caller {
        TWILIO.block_on(async {
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let mut caller = Caller {
                ws,
                sid: format!("MZ{n:032x}"),
                sequence: 1,
                chunk: 1,
            };
            caller.send(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_owned()).await;
            let start = format!(
                r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC{n:032x}","callSid":"CA{n:032x}","streamSid":"{sid}","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#,
                sid = caller.sid
            );
            caller.send(start).await;
            caller
        })
    }

    async fn send(&mut self, text: String) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// One chunk of μ-law, numbered and timestamped in order.
    pub(crate) fn media(&mut self, ulaw: &[u8]) {
        self.sequence += 1;
        let text = format!(
            r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":"{}"}}}}"#,
            self.sequence,
            self.sid,
            self.chunk,
            (self.chunk - 1) * 20,
            base64::engine::general_purpose::STANDARD.encode(ulaw)
        );
        self.chunk += 1;
        TWILIO.block_on(self.send(text));
    }

    /// A text message as it is.
    pub(crate) fn text(&mut self, text: &str) {
        TWILIO.block_on(self.send(text.to_owned()));
    }

    pub(crate) fn stop(&mut self) {
        self.sequence += 1;
        let text = format!(
            r#"{{"event":"stop","sequenceNumber":"{}","streamSid":"{}","stop":{{"accountSid":"AC","callSid":"CA"}}}}"#,
            self.sequence, self.sid
        );
        TWILIO.block_on(self.send(text));
    }

    /// The next message from the plugin, within [`PATIENCE`].
    async fn next(&mut self) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
        match tokio::time::timeout(PATIENCE, self.ws.next()).await {
            Ok(next) => next,
            Err(_) => panic!("nothing from the plugin for {PATIENCE:?}"),
        }
    }

    /// The first `len` bytes of the media the plugin sent into the call.
    pub(crate) fn received(&mut self, len: usize) -> Vec<u8> {
        TWILIO.block_on(async {
            let mut audio = Vec::new();
            while audio.len() < len {
                let Some(Ok(Message::Text(text))) = self.next().await else {
                    continue;
                };
                let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                if message["event"] == "media" {
                    let payload = message["media"]["payload"].as_str().unwrap();
                    let payload = base64::engine::general_purpose::STANDARD.decode(payload);
                    audio.extend(payload.unwrap());
                }
            }
            audio.truncate(len);
            audio
        })
    }

    /// The close code the plugin closed the call with.
    pub(crate) fn closed(&mut self) -> Option<u16> {
        TWILIO.block_on(async {
            loop {
                match self.next().await {
                    Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code.into()),
                    Some(Ok(_)) => continue,
                    other => panic!("no close frame: {other:?}"),
                }
            }
        })
    }
}

/// The first message of `types` on `pipeline`'s bus, within [`PATIENCE`].
pub(crate) fn next_message(pipeline: &gst::Pipeline, types: &[gst::MessageType]) -> gst::Message {
    pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_nseconds(PATIENCE.as_nanos() as u64),
            types,
        )
        .unwrap_or_else(|| panic!("no {types:?} within {PATIENCE:?}"))
}

/// Waits for an ERROR from `element` naming `panic` on `pipeline`'s bus
/// (others may come first: from threads that met a lock the panic
/// poisoned, from elements upstream told of the error).
pub(crate) fn panic_posted(pipeline: &gst::Pipeline, element: &gst::Element, panic: &str) {
    loop {
        let message = next_message(pipeline, &[gst::MessageType::Error]);
        let gst::MessageView::Error(error) = message.view() else {
            unreachable!()
        };
        let text = error.error().to_string();
        if message.src() == Some(element.upcast_ref()) && text.contains(panic) {
            return;
        }
        eprintln!("before the panic's ERROR: {text}");
    }
}

/// Waits for a WARNING from `element` naming `text` (in its message or
/// its debug text) on `pipeline`'s bus.
pub(crate) fn warned(pipeline: &gst::Pipeline, element: &gst::Element, text: &str) {
    loop {
        let message = next_message(pipeline, &[gst::MessageType::Warning]);
        let gst::MessageView::Warning(warning) = message.view() else {
            unreachable!()
        };
        let said = format!("{} ({:?})", warning.error(), warning.debug());
        if message.src() == Some(element.upcast_ref()) && said.contains(text) {
            return;
        }
        eprintln!("before the WARNING: {said}");
    }
}

/// Sets `pipeline` to NULL on a thread of its own: false if that does not
/// return within [`PATIENCE`].
pub(crate) fn stops(pipeline: &gst::Pipeline) -> bool {
    let (done, returned) = std::sync::mpsc::channel();
    let p = pipeline.clone();
    std::thread::spawn(move || {
        let _ = p.set_state(gst::State::Null);
        let _ = done.send(());
    });
    returned.recv_timeout(PATIENCE).is_ok()
}

/// Whether `address` can be bound (its listener gone) within [`PATIENCE`].
pub(crate) fn released(address: &(String, u16)) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpListener::bind((address.0.as_str(), address.1)).is_err() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}
