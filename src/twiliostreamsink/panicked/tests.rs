//! A panic in the sink, made by the test-only triggers: on a network thread
//! (`panicked::PANIC_ON_NETWORK`), contained to its element; in `render()`
//! (`panicked::PANIC_IN_RENDER`), a vfunc's; in a property read
//! (`panicked::PANIC_IN_PROPERTY`), which GLib cannot unwind from. Either
//! way the sink stops on its own. And a panic in the task of a call the
//! sink took itself (`call::PANIC_TEXT`), no element's code.

use std::sync::atomic::Ordering;

use gst::prelude::*;

use super::{PANIC_BEFORE_CALL, PANIC_IN_PROPERTY, PANIC_IN_RENDER, PANIC_ON_NETWORK};
use crate::contain::peer::{
    Caller, address, next_message, panic_posted, pipeline, released, stops, url, warned,
};

/// A PLAYING echo: a src into the sink paired with it, μ-law passed
/// through. The pipeline, its src and sink.
fn echo() -> (gst::Pipeline, gst::Element, gst::Element) {
    let pipeline = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw,rate=8000,channels=1 ! \
         twiliostreamsink name=sink",
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let src = pipeline.by_name("src").unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    (pipeline, src, sink)
}

/// Waits for the element message `name` on `pipeline`'s bus.
fn element_message(pipeline: &gst::Pipeline, name: &str) {
    loop {
        let message = next_message(pipeline, &[gst::MessageType::Element]);
        if message.structure().is_some_and(|s| s.name() == name) {
            return;
        }
    }
}

/// The callback of a clear runs on the call's task: its panic ends
/// neither that task (the call is closed politely, as an internal error)
/// nor any other call's.
#[test]
fn a_panic_in_the_callback_of_a_clear_closes_its_call_only() {
    let (pa, src_a, sink_a) = echo();
    let (pb, src_b, _) = echo();
    let mut call_a = Caller::start(&url(&src_a), 11);
    let mut call_b = Caller::start(&url(&src_b), 12);

    element_message(&pa, "twilio-start");
    PANIC_ON_NETWORK.store(sink_a.as_ptr() as usize, Ordering::SeqCst);
    assert!(sink_a.emit_by_name::<bool>("clear", &[]));
    panic_posted(&pa, &sink_a, "a sink's network code panicked (test)");
    assert_eq!(PANIC_ON_NETWORK.load(Ordering::SeqCst), 0, "taken by A");
    assert_eq!(call_a.closed(), Some(1011));

    // B's call goes on, both ways, sample for sample.
    let ulaw: Vec<u8> = (0..3200u32).map(|i| (i * 13 % 256) as u8).collect();
    for chunk in ulaw.chunks(160) {
        call_b.media(chunk);
    }
    assert_eq!(call_b.received(ulaw.len()), ulaw);
    call_b.stop();

    assert!(stops(&pa), "A's pipeline did not stop");
    assert!(stops(&pb), "B's pipeline did not stop");
    assert_eq!(call_b.closed(), Some(1000));
}

/// A PLAYING pipeline of live silence into a sink listening itself: the
/// pipeline and its sink. (A sine too faint for a sample: silence that
/// is not flagged GAP, as `wave=silence` or `volume=0` would be.)
fn listening() -> (gst::Pipeline, gst::Element) {
    let pipeline = pipeline(
        "audiotestsrc is-live=true wave=sine volume=0.00001 samplesperbuffer=160 ! \
         audio/x-raw,format=S16LE,rate=8000,channels=1 ! twiliostreamsink name=sink port=0",
    );
    pipeline.set_state(gst::State::Playing).unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    (pipeline, sink)
}

/// A sink listening itself posts its call's messages from a task: a panic
/// there closes the call and lets go of the sink's port at once (not when
/// the element is finalized).
#[test]
fn a_panic_in_a_listening_sinks_poster_lets_go_of_its_port() {
    let (pipeline, sink) = listening();
    let listening = address(&sink);

    // Its first message, the call's start, panics.
    PANIC_ON_NETWORK.store(sink.as_ptr() as usize, Ordering::SeqCst);
    let mut call = Caller::start(&url(&sink), 13);
    panic_posted(&pipeline, &sink, "a sink's network code panicked (test)");
    assert_eq!(call.closed(), Some(1011));
    assert!(released(&listening), "{listening:?} is still listened on");

    assert!(stops(&pipeline), "the pipeline did not stop");
}

/// A panic in `render()` (gstreamer-rs catches it, and no state change of
/// the sink runs again): the sink stops on its own all the same.
#[test]
fn a_panic_in_render_closes_the_call_and_lets_go_of_the_port() {
    let (pipeline, sink) = listening();
    let listening = address(&sink);

    // Its first buffer once the call has started panics.
    PANIC_IN_RENDER.store(sink.as_ptr() as usize, Ordering::SeqCst);
    let mut call = Caller::start(&url(&sink), 14);
    panic_posted(&pipeline, &sink, "render panicked (test)");
    assert_eq!(call.closed(), Some(1011));
    assert!(released(&listening), "{listening:?} is still listened on");
    // Its properties read on its state, which the panic poisoned.
    assert_eq!(sink.property::<u32>("bound-port"), 0);
    let _ = sink.property_value("connected");
    let _ = sink.property_value("stats");

    assert!(stops(&pipeline), "the pipeline did not stop");
}

/// A panic in a property read (GLib's trampoline cannot unwind: the
/// process would abort): the read gives the property's default, and the
/// sink stops as after any panic, readable from then on.
#[test]
fn a_panic_in_a_property_read_gives_the_default_and_stops_the_sink() {
    let (pipeline, sink) = listening();
    let listening = address(&sink);
    let mut call = Caller::start(&url(&sink), 15);
    // The sink plays into the call: it has taken it.
    assert_eq!(call.received(160), [0xff; 160]);

    PANIC_IN_PROPERTY.store(sink.as_ptr() as usize, Ordering::SeqCst);
    assert_eq!(sink.property::<u32>("bound-port"), 0, "the default");
    panic_posted(&pipeline, &sink, "a property read panicked (test)");
    assert_eq!(call.closed(), Some(1011));
    assert!(released(&listening), "{listening:?} is still listened on");
    // Read again, on the state the panic poisoned: the last values.
    let stats = sink.property::<gst::Structure>("stats");
    assert_eq!(stats.name(), "twiliostreamsink-stats");
    assert_eq!(sink.property::<u32>("bound-port"), 0, "not listening");

    assert!(stops(&pipeline), "the pipeline did not stop");
}

/// A panic in the task of the sink's own call: the call ends as an
/// internal error (1011), and the sink posts that end as a WARNING. Left to
/// tokio, the socket was dropped without a close frame, and the call still
/// looked open to the sink.
#[test]
fn a_panic_in_the_task_of_its_own_call_ends_the_call() {
    let (pipeline, sink) = listening();
    let mut call = Caller::start(&url(&sink), 16);
    call.text(crate::call::PANIC_TEXT);
    warned(&pipeline, &sink, "the call's task panicked");
    assert_eq!(call.closed(), Some(1011));
    assert!(stops(&pipeline), "the pipeline did not stop");
}

/// The same in an echo's call: the src reads the end (WARNING, EOS), the
/// sink playing into the call waits for it no more, and the pipeline ends.
#[test]
fn a_panic_in_the_task_of_an_echos_call_ends_the_echo() {
    let (pipeline, src, _) = echo();
    let mut call = Caller::start(&url(&src), 17);
    let ulaw = [0x55; 160];
    call.media(&ulaw);
    assert_eq!(call.received(ulaw.len()), ulaw);
    call.text(crate::call::PANIC_TEXT);
    warned(&pipeline, &src, "the call's task panicked");
    next_message(&pipeline, &[gst::MessageType::Eos]);
    assert_eq!(call.closed(), Some(1011));
    assert!(stops(&pipeline), "the pipeline did not stop");
}

/// A paired sink that panics before it takes the src's call (as it looks
/// for it): that call, which it would have played into, is closed as an
/// internal error, as after a panic once it has taken it. It stayed open,
/// the caller hearing nothing, until the application stopped the pipeline.
#[test]
fn a_panic_before_taking_the_srcs_call_closes_that_call() {
    let (pipeline, src, sink) = echo();
    PANIC_BEFORE_CALL.store(sink.as_ptr() as usize, Ordering::SeqCst);
    let mut call = Caller::start(&url(&src), 18);
    call.media(&[0x55; 160]);
    panic_posted(
        &pipeline,
        &sink,
        "the sink panicked before taking its call (test)",
    );
    assert_eq!(call.closed(), Some(1011));
    assert!(stops(&pipeline), "the pipeline did not stop");
}
