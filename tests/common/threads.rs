//! What the `shared-threads` tests share: which thread each buffer came
//! on, and calls of distinct μ-law played into a src.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

use twilio_emulator::{CallParams, TwilioCall};

use super::rt;

/// The names of the threads buffers arrived on, in order.
pub type Threads = Arc<Mutex<Vec<String>>>;

/// Every buffer of `threads` came from the plugin's network threads (its
/// runtime names them; BaseSrc's streaming thread would be "src:src").
pub fn all_from_network(threads: &[String]) -> bool {
    threads.iter().all(|t| t == "twiliostream")
}

/// Records the name of the thread each buffer arrives on at `element`'s sink pad.
pub fn record_threads(element: &gst::Element) -> Threads {
    let names = Arc::new(Mutex::new(Vec::new()));
    let n = names.clone();
    element
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            // The OS's name: GStreamer's threads have no Rust name.
            let name = std::fs::read_to_string("/proc/thread-self/comm")
                .unwrap_or_default()
                .trim_end()
                .to_owned();
            n.lock().unwrap().push(name);
            gst::PadProbeReturn::Ok
        });
    names
}

/// 3200 bytes of μ-law (20 chunks) that differ from chunk to chunk.
pub fn test_ulaw() -> Vec<u8> {
    (0..3200u32).map(|i| (i * 13 % 256) as u8).collect()
}

/// A call started on `url` that has sent `ulaw`.
pub fn call_sending(url: &str, ulaw: &[u8]) -> TwilioCall {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, CallParams::default()).await.unwrap();
        send_chunks(&mut call, ulaw).await;
        call
    })
}

pub async fn send_chunks(call: &mut TwilioCall, ulaw: &[u8]) {
    for chunk in ulaw.chunks(160) {
        call.send_media(chunk).unwrap();
    }
}

/// One call to `url`: `ulaw` in 20 ms chunks as fast as they go, then stop.
pub fn play(url: &str, ulaw: &[u8]) {
    finish(call_sending(url, &[]), ulaw);
}

/// The rest of `call`: `ulaw`, then stop and the close.
pub fn finish(mut call: TwilioCall, ulaw: &[u8]) {
    rt().block_on(async {
        send_chunks(&mut call, ulaw).await;
        call.send_stop().unwrap();
        call.close().await;
    });
}
