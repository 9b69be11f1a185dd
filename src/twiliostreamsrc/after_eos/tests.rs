//! A flush that drops an EOS sent to the element, with `shared-threads`
//! pushing from the network threads: the race played on the src's own
//! steps, in the order that loses (the stream marked ended as `take_eos`
//! marks it, the streaming thread not yet woken, as when it is preempted;
//! the fill timer looking meanwhile; the flush's unlock undoing the end).
//! The end-to-end test of the same, with the streaming thread held, is
//! tests/src_eos_flush_fill.rs; there the timer is woken by the streaming
//! thread's hand-back, here only the undoing can wake it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::super::fill_timer::LOOKED_ENDED;
use crate::contain::peer::{Caller, PATIENCE, next_message, pipeline, url};
use crate::lock::Locked;

/// What reached the sink: a buffer (true) or a GAP (false).
type Seen = Arc<Mutex<Vec<bool>>>;

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_fill_timer_fills_again_once_a_flush_drops_the_eos() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=true ! audio/x-mulaw \
         ! fakesink name=sink sync=false",
    );
    let seen = Seen::default();
    let s = seen.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => s
                        .lock()
                        .unwrap()
                        .push(!b.flags().contains(gst::BufferFlags::GAP)),
                    Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Gap => {
                        s.lock().unwrap().push(false)
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Ok
            },
        );
    p.set_state(gst::State::Playing).unwrap();
    let src = p.by_name("src").unwrap();
    let imp = src
        .downcast_ref::<super::super::TwilioStreamSrc>()
        .unwrap()
        .imp();
    let mut call = Caller::start(&url(&src), 1);
    for _ in 0..3 {
        call.media(&[0x55; 160]);
    }
    // The pipeline plays, the network threads push, the timer fills.
    until("a GAP from the network threads", || {
        !imp.shared.streaming() && seen.lock().unwrap().iter().any(|b| !b)
    });
    // `take_eos`'s mark; the timer looks while it stands.
    imp.read_after_eos();
    let address = src.as_ptr() as usize;
    until("the fill timer looked at the ended stream", || {
        LOOKED_ENDED.locked().contains(&address)
    });
    // The flush's unlock drops the EOS: the stream goes on.
    let before = seen.lock().unwrap().len();
    imp.resume_after_dropped_eos();
    call.media(&[0x66; 160]);
    until("a GAP after the chunk after the flush", || {
        let seen = seen.lock().unwrap();
        let tail = &seen[before.min(seen.len())..];
        tail.iter()
            .position(|b| *b)
            .is_some_and(|chunk| tail[chunk..].iter().any(|b| !b))
    });
    call.stop();
    next_message(&p, &[gst::MessageType::Eos]);
    p.set_state(gst::State::Null).unwrap();
}
