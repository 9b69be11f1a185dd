//! A panic in a drain on a network thread, made by the test-only trigger
//! (`shared_threads::PANIC_IN_DRAIN`): contained to its element.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

use super::super::shared_threads::PANIC_IN_DRAIN;
use crate::codec::g711;
use crate::contain::peer::{Caller, next_message, panic_posted, pipeline, stops, url};

/// A PLAYING pipeline of a src (`shared-threads` as given) into a fakesink
/// at 8 kHz: the pipeline, its src, the bytes that reached the sink.
fn recording(shared_threads: bool) -> (gst::Pipeline, gst::Element, Arc<Mutex<Vec<u8>>>) {
    let pipeline = pipeline(&format!(
        "twiliostreamsrc name=src port=0 shared-threads={shared_threads} ! \
         audio/x-raw,format=S16LE,rate=8000,channels=1 ! fakesink name=sink sync=false",
    ));
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
    (pipeline, src, bytes)
}

#[test]
fn a_panic_on_a_network_thread_stays_in_its_element() {
    let (pa, src_a, _) = recording(true);
    let (pb, src_b, bytes_b) = recording(true);
    let mut call_a = Caller::start(&url(&src_a), 1);
    let mut call_b = Caller::start(&url(&src_b), 2);

    // A's next drain panics, holding its state's lock: with the start or
    // with this chunk, on a network thread either way.
    PANIC_IN_DRAIN.store(src_a.as_ptr() as usize, Ordering::SeqCst);
    call_a.media(&[0x55; 160]);
    panic_posted(&pa, &src_a, "a drain panicked (test)");
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
