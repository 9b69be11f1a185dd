//! twiliostreamsrc `track=both` end to end: the caller and what the caller
//! hears in two channels, aligned by `media.timestamp` (8 kHz bit for bit,
//! 16 kHz against an ideal resampler, μ-law untouched), a gap in one track
//! only, a track that stops (the output does not wait for it), a step in
//! one track's timestamps (costs neither channel), chunks sent twice or late
//! (no step), in both push modes. The single-track choices are in `src_track_choice.rs`.

mod common;

use common::both::*;
use common::src::{assert_contiguous, assert_matches_ideal_upsampling, in_both_modes, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::{Inbound, Track};
use twilio_emulator::TwilioCall;
use twilio_emulator::audio::{decode, encode};

in_both_modes!(
    both_at_8k_is_each_track_g191_decoded_in_its_channel,
    both_at_16k_each_channel_matches_an_ideal_resampler,
    both_mulaw_is_the_two_payloads_interleaved,
    tracks_delivered_apart_are_aligned_by_their_timestamps,
    a_gap_in_one_track_is_silence_in_its_channel_only,
    a_track_that_stops_is_not_waited_for,
    a_step_in_one_track_s_timestamps_costs_neither_channel,
    chunks_sent_twice_or_late_move_neither_track,
);

/// Plays the two tracks as Twilio does with both_tracks (a 20 ms chunk of
/// each per frame, inbound first), as fast as possible, then stop.
fn play_both(url: &str, inbound: &[u8], outbound: &[u8]) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, both_tracks()).await.unwrap();
        for (i, o) in inbound.chunks(160).zip(outbound.chunks(160)) {
            call.send_media_on(Track::Inbound, i).unwrap();
            call.send_media_on(Track::Outbound, o).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn sink_caps(p: &gst::Pipeline) -> gst::Caps {
    by_name(p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap()
}

fn both_at_8k_is_each_track_g191_decoded_in_its_channel() {
    let (p, collector, url) = start(&format!(
        "{BOTH} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let (inbound, outbound) = (scrambled(16000, 0), scrambled(16000, 131));
    play_both(&url, &inbound, &outbound);
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    assert_eq!(left, decode(&inbound));
    assert_eq!(right, decode(&outbound));
    assert_eq!(got.buffers.len(), 100);
    assert_contiguous(&got.buffers);
    // One 8 kHz sample per frame: offsets and durations count frames.
    assert_eq!(got.buffers.last().unwrap().offset_end(), 16000);

    let caps = sink_caps(&p);
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("channels").unwrap(), 2);
    assert_eq!(s.get::<i32>("rate").unwrap(), 8000);
    assert_eq!(
        s.get::<gst::Bitmask>("channel-mask").unwrap(),
        gst::Bitmask::new(0x3)
    );

    let src = by_name(&p, "src");
    for (name, value) in [
        ("inbound-chunks-received", 100),
        ("outbound-chunks-received", 100),
        ("chunks-received", 200),
        ("inbound-bytes-received", 16000),
        ("outbound-bytes-received", 16000),
        ("bytes-received", 32000),
        ("chunks-lost", 0),
    ] {
        assert_eq!(counter(&src, name), value, "{name}");
    }
    // The stream's start still names its tracks.
    let start = got
        .events
        .iter()
        .find(|(_, s)| s.name() == "twilio-start")
        .expect("twilio-start")
        .1
        .clone();
    let tracks: Vec<String> = start
        .get::<gst::Array>("tracks")
        .unwrap()
        .iter()
        .map(|v| v.get::<String>().unwrap())
        .collect();
    assert_eq!(tracks, ["inbound", "outbound"]);
    set_state(&p, gst::State::Null);
}

fn both_at_16k_each_channel_matches_an_ideal_resampler() {
    // The default rate is 16 kHz, as for one track.
    let (p, collector, url) = start(&format!("{BOTH} ! fakesink name=sink sync=false"));
    let inbound = encode(&sine(1000.0, 8000.0, 16000.0, 8000));
    let outbound = encode(&sine(1700.0, 8000.0, 12000.0, 8000));
    play_both(&url, &inbound, &outbound);
    let got = collector.wait_eos();
    let s = sink_caps(&p).structure(0).unwrap().to_owned();
    assert_eq!(s.get::<i32>("rate").unwrap(), 16000);
    assert_eq!(s.get::<i32>("channels").unwrap(), 2);

    let (left, right) = split(&got.samples());
    for (ours, ulaw) in [(left, &inbound), (right, &outbound)] {
        // All the audio, plus each upsampler's tail flushed at the end.
        assert_eq!(ours.len(), 2 * ulaw.len() + 42);
        let ideal = ideal_upsample(&decode(ulaw));
        assert_matches_ideal_upsampling(&ideal, &ours);
    }
    assert_contiguous(&got.buffers);
    let total: gst::ClockTime = got.buffers.iter().map(|b| b.duration().unwrap()).sum();
    assert_eq!(total, gst::ClockTime::from_nseconds(1_002_625_000));
    set_state(&p, gst::State::Null);
}

fn both_mulaw_is_the_two_payloads_interleaved() {
    let (p, collector, url) = start(&format!(
        "{BOTH} ! audio/x-mulaw ! fakesink name=sink sync=false"
    ));
    let (inbound, outbound) = (scrambled(4000, 7), scrambled(4000, 200));
    play_both(&url, &inbound, &outbound);
    let got = collector.wait_eos();
    let (left, right) = split(&got.bytes());
    assert_eq!((left, right), (inbound, outbound));
    assert_eq!(
        sink_caps(&p)
            .structure(0)
            .unwrap()
            .get::<i32>("channels")
            .unwrap(),
        2
    );
    assert_contiguous(&got.buffers);
    set_state(&p, gst::State::Null);
}

fn tracks_delivered_apart_are_aligned_by_their_timestamps() {
    let (p, collector, url) = start(&format!(
        "{BOTH} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let (inbound, outbound) = (scrambled(8000, 3), scrambled(8000, 77));
    // Two chunks behind: within the default 60 ms wait.
    play_apart(&url, &inbound, &outbound, 2);
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    assert_eq!(left, decode(&inbound));
    assert_eq!(right, decode(&outbound));
    assert_eq!(by_name(&p, "src").property::<u64>("chunks-lost"), 0);
    set_state(&p, gst::State::Null);
}

fn a_gap_in_one_track_is_silence_in_its_channel_only() {
    let (p, collector, url) = start(&format!(
        "{BOTH} gap-fill=silence ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let inbound = encode(&sine(440.0, 8000.0, 8000.0, 160 * 20));
    let outbound = encode(&sine(700.0, 8000.0, 8000.0, 160 * 20));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, both_tracks()).await.unwrap();
        for (n, (i, o)) in inbound.chunks(160).zip(outbound.chunks(160)).enumerate() {
            call.send_media_on(Track::Inbound, i).unwrap();
            // Three outbound chunks are lost on the way.
            if (10..13).contains(&n) {
                call.lose_media_on(Track::Outbound, 160);
            } else {
                call.send_media_on(Track::Outbound, o).unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    assert_eq!(left, decode(&inbound), "the inbound channel is untouched");
    let mut expected = decode(&outbound);
    expected[1600..2080].fill(0);
    assert_eq!(right, expected);
    assert_contiguous(&got.buffers);
    // DISCONT on the first buffer and where the silence begins.
    let discont: Vec<u64> = got
        .buffers
        .iter()
        .filter(|b| b.flags().contains(gst::BufferFlags::DISCONT))
        .map(|b| b.offset())
        .collect();
    assert_eq!(discont, [0, 1600]);
    let src = by_name(&p, "src");
    assert_eq!(counter(&src, "outbound-chunks-lost"), 3);
    assert_eq!(counter(&src, "inbound-chunks-lost"), 0);
    assert_eq!(counter(&src, "chunks-lost"), 3);
    assert_eq!(counter(&src, "outbound-chunks-received"), 17);
    set_state(&p, gst::State::Null);
}

fn a_track_that_stops_is_not_waited_for() {
    let (p, collector, url) = start(&format!(
        "{BOTH} gap-fill=silence ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let inbound = encode(&sine(440.0, 8000.0, 8000.0, 160 * 50));
    let outbound = encode(&sine(700.0, 8000.0, 8000.0, 160 * 5));
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, both_tracks()).await.unwrap();
        for (n, i) in inbound.chunks(160).enumerate() {
            call.send_media_on(Track::Inbound, i).unwrap();
            // The outbound track stops after 100 ms.
            if let Some(o) = outbound.chunks(160).nth(n) {
                call.send_media_on(Track::Outbound, o).unwrap();
            }
        }
        call
    });
    // Before the call ends, all but the last 60 ms are out.
    let deadline = std::time::Instant::now() + PATIENCE;
    while collector.snapshot().samples().len() < 2 * (160 * 50 - 480) {
        assert!(std::time::Instant::now() < deadline, "the output waits");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The src reports that wait in its latency: one chunk and 60 ms.
    let mut query = gst::query::Latency::new();
    assert!(
        by_name(&p, "src")
            .static_pad("src")
            .unwrap()
            .query(&mut query)
    );
    assert_eq!(query.result().1, gst::ClockTime::from_mseconds(80));
    rt().block_on(async {
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    assert_eq!(left, decode(&inbound));
    let mut expected = decode(&outbound);
    expected.resize(160 * 50, 0);
    assert_eq!(right, expected);
    let src = by_name(&p, "src");
    assert_eq!(counter(&src, "outbound-chunks-lost"), 45);
    assert_eq!(counter(&src, "inbound-chunks-lost"), 0);
    set_state(&p, gst::State::Null);
}

/// The inbound track's timestamps step back 400 ms at its 16th chunk and
/// ahead 3 s at its 36th, the audio going on: each time that track is
/// measured anew, and the outbound track is untouched. Both channels come
/// out whole, sample for sample, nothing counted lost or too late.
fn a_step_in_one_track_s_timestamps_costs_neither_channel() {
    let (p, collector, url) = start(&format!(
        "{BOTH} gap-fill=silence ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let (inbound, outbound) = (scrambled(8000, 11), scrambled(8000, 57));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, both_tracks()).await.unwrap();
        for (n, (i, o)) in inbound.chunks(160).zip(outbound.chunks(160)).enumerate() {
            let mut message = call.media_message_on(Track::Inbound, i);
            if let Inbound::Media { media, .. } = &mut message {
                let step = match n {
                    0..15 => 0,
                    15..35 => -400,
                    _ => 2600,
                };
                media.timestamp.0 = media.timestamp.0.checked_add_signed(step).unwrap();
            }
            call.send(&message).unwrap();
            call.send_media_on(Track::Outbound, o).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    assert_eq!(
        right,
        decode(&outbound),
        "the outbound channel is untouched"
    );
    assert_eq!(left, decode(&inbound), "the inbound channel goes on");
    assert_contiguous(&got.buffers);
    let src = by_name(&p, "src");
    for name in ["chunks-lost", "chunks-too-late", "invalid-messages"] {
        assert_eq!(counter(&src, name), 0, "{name}");
    }
    set_state(&p, gst::State::Null);
}

/// Inbound chunks 10 and 11 sent again after 11, outbound chunk 20 twice,
/// inbound chunks 30 and 31 after 32 (their time filled as a gap): the
/// copies and the late pair are dropped and counted, and neither track is
/// taken to have stepped.
fn chunks_sent_twice_or_late_move_neither_track() {
    let (p, collector, url) = start(&format!(
        "{BOTH} gap-fill=silence ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let (inbound, outbound) = (scrambled(8000, 23), scrambled(8000, 71));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, both_tracks()).await.unwrap();
        let mut kept = Vec::new();
        for (n, (i, o)) in inbound.chunks(160).zip(outbound.chunks(160)).enumerate() {
            let message = call.media_message_on(Track::Inbound, i);
            if n != 30 && n != 31 {
                call.send(&message).unwrap();
            }
            kept.push(message);
            let again = match n {
                11 => 10..12,
                32 => 30..32,
                _ => 0..0,
            };
            for message in &kept[again] {
                call.send(message).unwrap();
            }
            let message = call.media_message_on(Track::Outbound, o);
            call.send(&message).unwrap();
            if n == 20 {
                call.send(&message).unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    let mut expected = decode(&inbound);
    expected[30 * 160..32 * 160].fill(0);
    assert_eq!(left, expected, "the inbound channel stays in place");
    assert_eq!(
        right,
        decode(&outbound),
        "the outbound channel is untouched"
    );
    assert_contiguous(&got.buffers);
    let src = by_name(&p, "src");
    assert_eq!(counter(&src, "chunks-too-late"), 5);
    assert_eq!(counter(&src, "inbound-chunks-lost"), 2);
    assert_eq!(counter(&src, "outbound-chunks-lost"), 0);
    set_state(&p, gst::State::Null);
}
