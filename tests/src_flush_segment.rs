//! A flush from downstream (FLUSH_START and FLUSH_STOP sent upstream from
//! the sink's pad, as a downstream element would) takes the SEGMENT off the
//! pads on its way: the stream goes on with a SEGMENT before its next
//! buffer, whichever thread pushes it.

mod common;

use common::app::{instant_call, pattern, wait_eos};
use common::src::{SRC_PROPS, in_both_modes};
use common::*;
use gst::prelude::*;
use std::sync::{Arc, Mutex};

/// At the sink's pad: the stream's first SEGMENT; from the FLUSH_STOP it
/// sends upstream on, the SEGMENT that came since, and the buffers that
/// came without one, of all.
#[derive(Default)]
struct AfterFlush {
    first: Option<gst::Segment>,
    flushed: bool,
    segment: Option<gst::Segment>,
    buffers: usize,
    without_segment: usize,
}

fn a_flush_from_downstream_is_followed_by_a_segment() {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {} ! audio/x-mulaw ! fakesink name=sink sync=false",
        SRC_PROPS.get()
    ));
    let sink = by_name(&p, "sink");
    let collector = Collector::attach(&sink);
    let seen = Arc::new(Mutex::new(AfterFlush::default()));
    let s = seen.clone();
    let pad = sink.static_pad("sink").unwrap();
    // (The FLUSH_STOP meets the probe before the src, whose pad refuses
    // pushes until it is there: no buffer after the flush comes before.)
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_BOTH | gst::PadProbeType::EVENT_FLUSH,
        move |_, info| {
            let mut s = s.lock().unwrap();
            match &info.data {
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::FlushStop => {
                    (s.flushed, s.segment) = (true, None);
                }
                Some(gst::PadProbeData::Event(e)) => {
                    if let gst::EventView::Segment(segment) = e.view() {
                        let segment = Some(segment.segment().clone());
                        if s.first.is_none() {
                            s.first = segment;
                        } else if s.flushed {
                            s.segment = segment;
                        }
                    }
                }
                Some(gst::PadProbeData::Buffer(_)) if s.flushed => {
                    s.buffers += 1;
                    if s.segment.is_none() {
                        s.without_segment += 1;
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    set_state(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&by_name(&p, "src")));
    let audio = pattern(1, 10);
    let (before, after) = audio.split_at(5 * 160);
    for chunk in before.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    collector.wait_buffers(5);
    assert!(pad.push_event(gst::event::FlushStart::new()));
    assert!(pad.push_event(gst::event::FlushStop::new(true)));
    for chunk in after.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    call.send_stop().unwrap();
    wait_eos(&p.bus().unwrap());
    let got = collector.snapshot().bytes();
    assert!(got.ends_with(after), "the audio after the flush came out");
    let s = seen.lock().unwrap();
    assert_eq!(s.buffers, 5, "buffers after the flush");
    assert_eq!(
        s.without_segment, 0,
        "buffers after the flush before a SEGMENT"
    );
    drop(s);
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}

in_both_modes!(a_flush_from_downstream_is_followed_by_a_segment);
