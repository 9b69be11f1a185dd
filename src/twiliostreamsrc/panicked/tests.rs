//! A panic in the src, made by the test-only triggers: in a drain on a
//! network thread (`shared_threads::PANIC_IN_DRAIN`), contained to its
//! element; in `create()` (`create::PANIC_IN_CREATE`), `start` and `stop`
//! (`panicked::PANIC_IN_START`, `PANIC_IN_STOP`), vfuncs'; in the call's
//! own task (`call::PANIC_TEXT`), no element's code.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use gst::prelude::*;

use super::super::create::PANIC_IN_CREATE;
use super::super::panicked::{PANIC_IN_START, PANIC_IN_STOP};
use super::super::shared_threads::PANIC_IN_DRAIN;
use crate::codec::g711;
use crate::contain::ON_CAUGHT;
use crate::contain::peer::{
    Caller, PATIENCE, address, next_message, panic_posted, pipeline, released, stops, url, warned,
};

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

/// Without `shared-threads`, a panic in `create()` (gstreamer-rs catches
/// it, and no state change of the src runs again): the src stops on its
/// own all the same, while the element lives on.
#[test]
fn a_panic_in_create_closes_the_call_and_lets_go_of_the_port() {
    let (pipeline, src, _) = recording(false);
    let listening = address(&src);
    let mut call = Caller::start(&url(&src), 3);

    // The chunk's create() returns; the next one panics.
    PANIC_IN_CREATE.store(src.as_ptr() as usize, Ordering::SeqCst);
    call.media(&[0x55; 160]);
    panic_posted(&pipeline, &src, "create panicked (test)");
    assert_eq!(call.closed(), Some(1011));
    assert!(released(&listening), "{listening:?} is still listened on");

    assert!(stops(&pipeline), "the pipeline did not stop");
}

/// Waits (bounded) until the recording has the call's first chunk.
fn first_chunk_recorded(bytes: &Mutex<Vec<u8>>) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while bytes.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the chunk did not come"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A panic in `stop`, in both push modes: the src stops on its own (left to
/// gstreamer-rs, it would go on listening, the call open, and the state
/// change would fail).
#[test]
fn a_panic_in_stop_closes_the_call_and_lets_go_of_the_port() {
    for shared_threads in [true, false] {
        let (pipeline, src, bytes) = recording(shared_threads);
        let listening = address(&src);
        let mut call = Caller::start(&url(&src), 4);
        call.media(&[0x55; 160]);
        first_chunk_recorded(&bytes);

        // Told of the panic in a sync handler, the application finds the
        // src stopped, and its properties (on its poisoned state) readable.
        let (told, seen) = std::sync::mpsc::channel();
        let watched = src.clone();
        let bus = pipeline.bus().unwrap();
        bus.set_sync_handler(move |_, message| {
            if message.type_() == gst::MessageType::Error {
                let stats = watched.property::<gst::Structure>("stats");
                let _ = told.send((watched.property::<u32>("bound-port"), stats));
            }
            gst::BusSyncReply::Pass
        });
        PANIC_IN_STOP.store(src.as_ptr() as usize, Ordering::SeqCst);
        // READY, not NULL: the bus is not flushed there.
        assert_eq!(
            pipeline.set_state(gst::State::Ready),
            Ok(gst::StateChangeSuccess::Success),
            "shared-threads={shared_threads}"
        );
        panic_posted(&pipeline, &src, "stop panicked (test)");
        let (port, stats) = seen.recv_timeout(PATIENCE).unwrap();
        assert_eq!(port, 0, "still listening when told");
        assert_eq!(stats.get::<u64>("chunks-received"), Ok(1), "{stats}");
        bus.unset_sync_handler();
        assert_eq!(call.closed(), Some(1011));
        assert!(released(&listening), "{listening:?} is still listened on");
        assert_eq!(src.property::<u32>("bound-port"), 0);
        assert!(src.property::<f64>("mos") > 4.0);
        assert!(stops(&pipeline), "the pipeline did not stop");
    }
}

/// Read on another thread while a panic that poisoned the src's state is
/// being caught, before the src has stopped: its properties give their
/// last values (a lock a panic poisoned is taken all the same), not their
/// defaults, and nothing panics again.
#[test]
fn a_read_while_a_panic_is_caught_gives_the_last_values() {
    let (pipeline, src, bytes) = recording(false);
    let listening = address(&src);
    let mut call = Caller::start(&url(&src), 5);
    call.media(&[0x55; 160]);
    first_chunk_recorded(&bytes);

    let (told, seen) = std::sync::mpsc::channel();
    let watched = src.clone();
    let read = move || {
        let reader = std::thread::spawn(move || {
            let port = watched.property::<u32>("bound-port");
            let stats = watched.property::<Option<gst::Structure>>("stats");
            (port, stats)
        });
        let _ = told.send(reader.join().unwrap());
    };
    *ON_CAUGHT.lock().unwrap() = Some((src.as_ptr() as usize, Box::new(read)));
    // `stop` panics holding the src's state.
    PANIC_IN_STOP.store(src.as_ptr() as usize, Ordering::SeqCst);
    assert_eq!(
        pipeline.set_state(gst::State::Ready),
        Ok(gst::StateChangeSuccess::Success)
    );
    let (port, stats) = seen.recv_timeout(PATIENCE).expect("not read");
    assert_eq!(port, listening.1 as u32, "still listening then");
    let stats = stats.expect("no stats");
    assert_eq!(stats.get::<u64>("chunks-received"), Ok(1), "{stats}");
    // The one panic, `stop`'s: the read did not panic.
    let error = next_message(&pipeline, &[gst::MessageType::Error]);
    let gst::MessageView::Error(error) = error.view() else {
        unreachable!()
    };
    assert!(error.error().to_string().contains("stop panicked (test)"));
    assert_eq!(call.closed(), Some(1011));
    assert!(released(&listening), "{listening:?} is still listened on");
    assert_eq!(src.property::<u32>("bound-port"), 0);
    assert!(stops(&pipeline), "the pipeline did not stop");
}

/// A panic in `start` once the src listens: the port is let go of.
#[test]
fn a_panic_in_start_lets_go_of_the_port() {
    let pipeline = pipeline("twiliostreamsrc name=src port=0 ! fakesink");
    let src = pipeline.by_name("src").unwrap();
    let listening = Arc::new(Mutex::new(None));
    let noted = listening.clone();
    src.connect_notify(Some("bound-port"), move |src, _| {
        noted.lock().unwrap().get_or_insert(address(src));
    });
    PANIC_IN_START.store(src.as_ptr() as usize, Ordering::SeqCst);
    assert!(pipeline.set_state(gst::State::Playing).is_err());
    panic_posted(&pipeline, &src, "start panicked (test)");
    let listening = listening
        .lock()
        .unwrap()
        .take()
        .expect("the src did not listen");
    assert_ne!(listening.1, 0, "the src did not listen");
    assert!(released(&listening), "{listening:?} is still listened on");
    // Not listening: its port reads 0.
    assert_eq!(src.property::<u32>("bound-port"), 0);
    assert!(stops(&pipeline), "the pipeline did not stop");
}

/// A panic in the call's own task, in both push modes: the call ends as an
/// internal error (1011) and the src reads that end (WARNING, EOS). Left to
/// tokio, the socket was dropped without a close frame, and a
/// shared-threads src, never told of the end, waited for it for good.
#[test]
fn a_panic_in_the_calls_task_ends_the_call() {
    calls_task_panics(crate::call::PANIC_TEXT, 6, true);
}

/// The same when closing the WebSocket after the panic panics too (the
/// socket's own code may be what panicked): the src still reads the end,
/// the socket dropped rather than closed.
#[test]
fn a_panic_in_the_calls_task_and_in_its_close_ends_the_call() {
    calls_task_panics(crate::call::PANIC_TWICE_TEXT, 8, false);
}

/// A call whose task panics at `text`, in both push modes (`sid`, `sid`+1);
/// `closes`: the WebSocket is closed with 1011 (else it may be dropped).
fn calls_task_panics(text: &str, sid: u32, closes: bool) {
    for shared_threads in [true, false] {
        let (pipeline, src, _) = recording(shared_threads);
        let mut call = Caller::start(&url(&src), sid + u32::from(shared_threads));
        call.media(&[0x55; 160]);
        call.text(text);
        warned(&pipeline, &src, "the call's task panicked");
        next_message(&pipeline, &[gst::MessageType::Eos]);
        if closes {
            assert_eq!(call.closed(), Some(1011));
        }
        assert!(stops(&pipeline), "the pipeline did not stop");
    }
}
