//! A panic in a drain on a network thread, made by the test-only trigger
//! (`shared_threads::PANIC_IN_DRAIN`): contained to its element.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

use super::super::shared_threads::PANIC_IN_DRAIN;
use crate::codec::g711;

/// Generous bound for what should happen soon: only a hang reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

/// The emulated Twilio side's runtime, apart from the plugin's.
static TWILIO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
});

/// Twilio's side of a call, as a plain WebSocket client (the emulator links
/// a second copy of this crate, which a unit test cannot).
struct Caller {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    sid: String,
    sequence: u64,
    chunk: u64,
}

impl Caller {
    /// Connects to `url` and sends `connected` and `start`.
    fn start(url: &str, n: u32) -> Caller {
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
    fn media(&mut self, ulaw: &[u8]) {
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

    fn stop(&mut self) {
        self.sequence += 1;
        let text = format!(
            r#"{{"event":"stop","sequenceNumber":"{}","streamSid":"{}","stop":{{"accountSid":"AC","callSid":"CA"}}}}"#,
            self.sequence, self.sid
        );
        TWILIO.block_on(self.send(text));
    }

    /// The close code the plugin closed the call with.
    fn closed(&mut self) -> Option<u16> {
        TWILIO.block_on(async {
            loop {
                match tokio::time::timeout(PATIENCE, self.ws.next()).await {
                    Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code.into()),
                    Ok(Some(Ok(_))) => continue,
                    Ok(other) => panic!("no close frame: {other:?}"),
                    Err(_) => panic!("the call is still open after {PATIENCE:?}"),
                }
            }
        })
    }
}

/// A PLAYING pipeline of a shared-threads src into a fakesink at 8 kHz: the
/// pipeline, its src, the bytes that reached the sink, the src's URL.
fn recording() -> (gst::Pipeline, gst::Element, Arc<Mutex<Vec<u8>>>, String) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        crate::plugin_register_static().unwrap();
    });
    let pipeline: gst::Pipeline = gst::parse::launch(
        "twiliostreamsrc name=src port=0 shared-threads=true ! \
         audio/x-raw,format=S16LE,rate=8000,channels=1 ! fakesink name=sink sync=false",
    )
    .unwrap()
    .downcast()
    .unwrap();
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let collected = bytes.clone();
    let sink = pipeline.by_name("sink").unwrap();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let map = buffer.map_readable().unwrap();
                collected.lock().unwrap().extend_from_slice(&map);
            }
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let src = pipeline.by_name("src").unwrap();
    let port = src.property::<u32>("bound-port");
    let url = format!("ws://127.0.0.1:{port}{}", src.property::<String>("path"));
    (pipeline, src, bytes, url)
}

/// The first message of `types` on `pipeline`'s bus, within [`PATIENCE`].
fn next_message(pipeline: &gst::Pipeline, types: &[gst::MessageType]) -> gst::Message {
    pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_nseconds(PATIENCE.as_nanos() as u64),
            types,
        )
        .unwrap_or_else(|| panic!("no {types:?} within {PATIENCE:?}"))
}

/// Sets `pipeline` to NULL on a thread of its own: false if that does not
/// return within [`PATIENCE`].
fn stops(pipeline: &gst::Pipeline) -> bool {
    let (done, returned) = std::sync::mpsc::channel();
    let p = pipeline.clone();
    std::thread::spawn(move || {
        let _ = p.set_state(gst::State::Null);
        let _ = done.send(());
    });
    returned.recv_timeout(PATIENCE).is_ok()
}

#[test]
fn a_panic_on_a_network_thread_stays_in_its_element() {
    let (pa, src_a, _, url_a) = recording();
    let (pb, _, bytes_b, url_b) = recording();
    let mut call_a = Caller::start(&url_a, 1);
    let mut call_b = Caller::start(&url_b, 2);

    // A's next drain panics, holding its state's lock: with the start or
    // with this chunk, on a network thread either way.
    PANIC_IN_DRAIN.store(src_a.as_ptr() as usize, Ordering::SeqCst);
    call_a.media(&[0x55; 160]);
    let error = next_message(&pa, &[gst::MessageType::Error]);
    assert_eq!(error.src(), Some(src_a.upcast_ref::<gst::Object>()));
    let gst::MessageView::Error(error) = error.view() else {
        unreachable!()
    };
    assert!(
        error
            .error()
            .to_string()
            .contains("a drain panicked (test)"),
        "{error:?}"
    );
    assert_eq!(PANIC_IN_DRAIN.load(Ordering::SeqCst), 0, "taken by A");
    // A's call is hung up by its task, as an internal error.
    let closed = call_a.closed();
    assert_eq!(closed, Some(1011));

    // B's call goes on, sample for sample.
    let ulaw: Vec<u8> = (0..3200u32).map(|i| (i * 13 % 256) as u8).collect();
    for chunk in ulaw.chunks(160) {
        call_b.media(chunk);
    }
    call_b.stop();
    next_message(&pb, &[gst::MessageType::Eos]);
    let samples: Vec<i16> = (bytes_b.lock().unwrap().chunks_exact(2))
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let expected: Vec<i16> = ulaw.iter().map(|&c| g711::decode(c)).collect();
    assert_eq!(samples, expected);

    assert!(stops(&pa), "A's pipeline did not stop");
    assert!(stops(&pb), "B's pipeline did not stop");
    assert_eq!(call_b.closed(), Some(1000));
}
