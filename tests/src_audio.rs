//! twiliostreamsrc end to end, the audio it puts out: μ-law decode and pass-through,
//! 8 → 16 kHz upsampling, gaps and timestamps (also hostile ones), in both push modes.

mod common;

use std::time::Duration;

use common::src::{assert_contiguous, assert_matches_ideal_upsampling, in_both_modes, start};
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::{decode, encode};
use twilio_emulator::{CallParams, TwilioCall};

in_both_modes!(
    pcm_8k_is_the_g191_decode_bit_for_bit,
    mulaw_output_is_the_payload_untouched,
    pcm_16k_matches_an_ideal_resampler,
    a_gap_becomes_silence_flagged_discont_and_counted,
    a_timestamp_jump_without_a_chunk_gap_is_a_gap_too,
    hostile_timestamps_and_chunk_numbers_cannot_break_the_stream,
    realtime_call_timestamps_follow_twilio,
);

/// Plays `ulaw` in 20 ms chunks as fast as possible, then stop.
fn play(url: &str, params: CallParams, ulaw: &[u8]) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, params).await.unwrap();
        for chunk in ulaw.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn pcm_8k_is_the_g191_decode_bit_for_bit() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    // Every μ-law code, many times over, in a scrambled order.
    let ulaw: Vec<u8> = (0..16000u32).map(|i| (i * 97 % 256) as u8).collect();
    play(&url, CallParams::default(), &ulaw);
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decode(&ulaw));
    assert_eq!(got.buffers.len(), 100);
    assert_contiguous(&got.buffers);
    let caps = by_name(&p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    assert_eq!(caps.structure(0).unwrap().get::<i32>("rate").unwrap(), 8000);
    set_state(&p, gst::State::Null);
}

fn mulaw_output_is_the_payload_untouched() {
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! audio/x-mulaw ! fakesink name=sink sync=false");
    let ulaw: Vec<u8> = (0..4000u32).map(|i| (i * 31 % 256) as u8).collect();
    play(&url, CallParams::default(), &ulaw);
    let got = collector.wait_eos();
    assert_eq!(got.bytes(), ulaw);
    assert_contiguous(&got.buffers);
    set_state(&p, gst::State::Null);
}

fn pcm_16k_matches_an_ideal_resampler() {
    // The default caps are 16 kHz S16LE.
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    let ulaw = encode(&sine(1000.0, 8000.0, 16000.0, 8000));
    play(&url, CallParams::default(), &ulaw);
    let got = collector.wait_eos();
    let caps = by_name(&p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("rate").unwrap(), 16000);
    assert_eq!(s.get::<&str>("format").unwrap(), "S16LE");

    let ours = got.samples();
    // All the audio, plus the filter's tail flushed at the end.
    assert_eq!(ours.len(), 2 * ulaw.len() + 42);
    let ideal = ideal_upsample(&decode(&ulaw));
    assert_matches_ideal_upsampling(&ideal, &ours);

    // The delay is compensated in the timestamps: buffers are contiguous and
    // the stream starts DELAY samples before the first chunk's anchor.
    assert_contiguous(&got.buffers);
    let total: gst::ClockTime = got.buffers.iter().map(|b| b.duration().unwrap()).sum();
    assert_eq!(total, gst::ClockTime::from_nseconds(1_002_625_000));
    set_state(&p, gst::State::Null);
}

fn a_gap_becomes_silence_flagged_discont_and_counted() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 gap-fill=silence ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let ulaw = encode(&sine(440.0, 8000.0, 8000.0, 160 * 20));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for (i, chunk) in ulaw.chunks(160).enumerate() {
            if i == 10 || i == 11 {
                call.lose_media(160);
            } else {
                call.send_media(chunk).unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let mut expected = decode(&ulaw);
    expected[1600..1920].fill(0);
    assert_eq!(got.samples(), expected);
    assert_contiguous(&got.buffers);
    // 18 buffers: the one after the gap carries the 40 ms of silence.
    assert_eq!(got.buffers.len(), 18);
    let discont: Vec<usize> = (0..got.buffers.len())
        .filter(|&i| got.buffers[i].flags().contains(gst::BufferFlags::DISCONT))
        .collect();
    assert_eq!(
        discont,
        [0, 10],
        "DISCONT on the first buffer and after the gap"
    );
    assert_eq!(
        got.buffers[10].duration().unwrap(),
        gst::ClockTime::from_mseconds(60)
    );
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("chunks-lost"), 2);
    assert_eq!(src.property::<u64>("chunks-received"), 18);
    let stats = src.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("chunks-lost").unwrap(), 2);
    set_state(&p, gst::State::Null);
}

fn a_timestamp_jump_without_a_chunk_gap_is_a_gap_too() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 gap-fill=silence ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let ulaw = vec![0x80u8; 160 * 4];
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        let mut msgs = Vec::new();
        for chunk in ulaw.chunks(160) {
            msgs.push(call.media_message(chunk));
        }
        // Chunk numbers stay consecutive, but the sender pauses 200 ms
        // (within the 300 ms fill deadline) before the last chunk, stamped
        // 100 ms late: a gap. (Sent with the others at once it would be a
        // step ahead, see src_quality; the pause outlasts the jump so that
        // the chunks before it read late do not make it look shorter.)
        if let gsttwiliostream::protocol::Inbound::Media { media, .. } = &mut msgs[3] {
            media.timestamp.0 += 100;
        }
        for (i, m) in msgs.iter().enumerate() {
            if i == 3 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            call.send(m).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let samples = got.samples();
    assert_eq!(samples.len(), 640 + 800);
    assert!(samples[480..1280].iter().all(|&s| s == 0));
    assert!(samples[1280..].iter().all(|&s| s == 32124));
    assert_eq!(by_name(&p, "src").property::<u64>("chunks-lost"), 5);
    set_state(&p, gst::State::Null);
}

fn hostile_timestamps_and_chunk_numbers_cannot_break_the_stream() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let ulaw = vec![0x80u8; 160];
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&ulaw).unwrap();
        // Far in the future, then the largest numbers there are.
        let mut far = call.media_message(&ulaw);
        let mut max = call.media_message(&ulaw);
        if let gsttwiliostream::protocol::Inbound::Media { media, .. } = &mut far {
            media.timestamp.0 = 99_999_999_999_999;
        }
        if let gsttwiliostream::protocol::Inbound::Media { media, .. } = &mut max {
            media.timestamp.0 = u64::MAX;
            media.chunk = Some(gsttwiliostream::protocol::Counter(u64::MAX));
        }
        call.send(&far).unwrap();
        call.send(&max).unwrap();
        call.send_media(&ulaw).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    // Every chunk, contiguous, no silence invented.
    assert_eq!(got.samples(), vec![32124; 4 * 160]);
    assert_contiguous(&got.buffers);
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("invalid-messages"), 2);
    set_state(&p, gst::State::Null);
}

fn realtime_call_timestamps_follow_twilio() {
    // A short real-time call: the pipeline clock runs, buffers are placed by
    // media.timestamp, anchored near when the first chunk arrived.
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let script = twilio_emulator::Script {
        audio: vec![0xFF; 160 * 25],
        linger: Duration::ZERO,
        ..Default::default()
    };
    rt().block_on(async {
        let call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        twilio_emulator::play::run(call, &script).await.unwrap();
    });
    let got = collector.wait_eos();
    assert_eq!(got.buffers.len(), 25);
    assert_contiguous(&got.buffers);
    let first = got.buffers[0].pts().unwrap();
    let last = got.buffers.last().unwrap();
    assert_eq!(
        last.pts().unwrap() + last.duration().unwrap() - first,
        gst::ClockTime::from_mseconds(500)
    );
    set_state(&p, gst::State::Null);
}
