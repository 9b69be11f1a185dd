//! What BaseSrc's loop does between buffers, in both push modes (with
//! `shared-threads` that loop waits for the whole call: each was skipped).
//! Downstream asks the src for other caps mid-call (a capsfilter's caps
//! changed): the src negotiates again before its next buffer and goes on
//! in the new format; caps it cannot give end the stream with
//! not-negotiated. `do-timestamp` stamps every buffer's DTS. The position
//! query follows the buffers.

mod common;

use common::src::{call_of_chunks, in_both_modes, start};
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, TwilioCall};

in_both_modes!(
    caps_changed_downstream_mid_call_are_taken,
    caps_downstream_cannot_get_mid_call_end_with_not_negotiated,
    do_timestamp_stamps_every_buffer,
    the_position_follows_the_buffers,
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
    let (p, _collector, mut call) = five_chunks(DESC);
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

/// Five chunks, and the buffers they made.
fn five_chunks(desc: &str) -> (gst::Pipeline, Collector, TwilioCall) {
    let (p, collector, url) = start(desc);
    let call = call_of_chunks(&url, &collector, 5);
    (p, collector, call)
}

fn do_timestamp_stamps_every_buffer() {
    let (p, collector, call) = five_chunks(
        "twiliostreamsrc name=src port=0 do-timestamp=true ! fakesink name=sink sync=false",
    );
    let dts: Vec<_> = collector
        .snapshot()
        .buffers
        .iter()
        .map(|b| b.dts())
        .collect();
    assert!(dts.iter().all(Option::is_some), "{dts:?}");
    assert!(dts.is_sorted(), "{dts:?}");
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}

fn the_position_follows_the_buffers() {
    let (p, collector, call) =
        five_chunks("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    let end = |b: &gst::Buffer| b.pts().unwrap() + b.duration().unwrap();
    let fifth = end(&collector.snapshot().buffers[4]);
    let position = by_name(&p, "src")
        .query_position::<gst::ClockTime>()
        .expect("a position");
    // (The fill may have pushed silence since: no further than that.)
    let got = collector.snapshot();
    let last = got.buffers.iter().chain(&got.gaps).map(end).max().unwrap();
    assert!(
        position >= fifth && position <= last,
        "{position} against {fifth}..{last}"
    );
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}
