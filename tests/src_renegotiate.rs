//! Downstream asks the src for other caps mid-call (a capsfilter's caps
//! changed): the src negotiates again before its next buffer and goes on
//! in the new format, as any GStreamer source does; caps it cannot give
//! end the stream with not-negotiated. In both push modes (with
//! `shared-threads`, BaseSrc's loop, which negotiates again, waits for the
//! whole call: the change was ignored).

mod common;

use common::src::{in_both_modes, start};
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, TwilioCall};

in_both_modes!(
    caps_changed_downstream_mid_call_are_taken,
    caps_downstream_cannot_get_mid_call_end_with_not_negotiated,
);

const DESC: &str = "twiliostreamsrc name=src port=0 ! capsfilter name=cf caps=audio/x-raw,rate=16000 ! \
                    fakesink name=sink sync=false";

fn caps_changed_downstream_mid_call_are_taken() {
    let (p, collector, url) = start(DESC);
    let audio: Vec<u8> = (0..1600).map(|i| (i * 7 % 251) as u8).collect();
    let mut call = rt()
        .block_on(TwilioCall::start(&url, CallParams::default()))
        .unwrap();
    for chunk in audio[..800].chunks(160) {
        call.send_media(chunk).unwrap();
    }
    collector.wait_buffers(5);
    by_name(&p, "cf").set_property(
        "caps",
        gst::Caps::builder("audio/x-raw")
            .field("rate", 8000)
            .build(),
    );
    for chunk in audio[800..].chunks(160) {
        call.send_media(chunk).unwrap();
    }
    call.send_stop().unwrap();
    rt().block_on(call.close());
    let got = collector.wait_eos();
    let caps = by_name(&p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    assert_eq!(caps.structure(0).unwrap().get::<i32>("rate").unwrap(), 8000);
    // The last chunks at 8 kHz, sample for sample: 320 bytes a chunk.
    let sizes: Vec<usize> = got.buffers.iter().map(|b| b.size()).collect();
    assert_eq!(sizes[sizes.len() - 4..], [320; 4], "{sizes:?}");
    let tail: Vec<i16> = got.buffers[sizes.len() - 4..]
        .iter()
        .flat_map(|b| {
            let map = b.map_readable().unwrap();
            map.chunks(2)
                .map(|s| i16::from_le_bytes([s[0], s[1]]))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(tail, decode(&audio[960..]));
    set_state(&p, gst::State::Null);
}

fn caps_downstream_cannot_get_mid_call_end_with_not_negotiated() {
    let (p, collector, url) = start(DESC);
    let mut call = rt()
        .block_on(TwilioCall::start(&url, CallParams::default()))
        .unwrap();
    for _ in 0..5 {
        call.send_media(&[0x55; 160]).unwrap();
    }
    collector.wait_buffers(5);
    by_name(&p, "cf").set_property(
        "caps",
        gst::Caps::builder("audio/x-raw")
            .field("rate", 44100)
            .build(),
    );
    for _ in 0..5 {
        call.send_media(&[0x55; 160]).unwrap();
    }
    let error = p
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(20), &[gst::MessageType::Error])
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => format!("{} {:?}", e.error(), e.debug()),
            _ => unreachable!(),
        });
    let error = error.expect("an ERROR");
    assert!(error.contains("not-negotiated"), "{error}");
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}
