//! twiliostreamsrc `track=inbound|outbound` end to end: one track of a
//! stream that may carry two (the other ignored, chunk numbers counted per
//! track or shared), a stream that lacks the track asked for (a warning and
//! silence), outbound media keeping a call alive, and the emulator's
//! numbering of two tracks. `track=both` is in `src_both_tracks.rs`.

mod common;

use std::time::Duration;

use common::both::scrambled;
use common::src::{in_both_modes, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::{Inbound, Track};
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, Received, TwilioCall};

in_both_modes!(
    outbound_is_the_outbound_track_of_a_two_track_stream,
    inbound_is_the_caller_whatever_the_chunk_numbering,
    an_outbound_only_stream_is_output_by_track_outbound,
    a_stream_without_the_asked_track_warns_once_and_gets_silence,
    both_on_a_caller_only_stream_has_a_silent_second_channel,
);

/// Plays `tracks` (the stream's, each with its audio; equally long) a
/// 20 ms chunk of each per frame, as fast as possible, then stop.
fn play(url: &str, params: CallParams, tracks: &[(Track, &[u8])]) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, params).await.unwrap();
        for n in 0..tracks[0].1.len().div_ceil(160) {
            for (track, audio) in tracks {
                call.send_media_on(*track, &audio[160 * n..160 * (n + 1)])
                    .unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn outbound_is_the_outbound_track_of_a_two_track_stream() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=outbound ! audio/x-raw,rate=8000 \
         ! fakesink name=sink sync=false",
    );
    let (inbound, outbound) = (scrambled(8000, 0), scrambled(8000, 99));
    let params = CallParams::with_tracks(&[Track::Inbound, Track::Outbound]);
    play(
        &url,
        params,
        &[(Track::Inbound, &inbound), (Track::Outbound, &outbound)],
    );
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decode(&outbound));
    assert_eq!(got.buffers.len(), 50);
    let caps = by_name(&p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps();
    assert_eq!(
        caps.unwrap().structure(0).unwrap().get::<i32>("channels"),
        Ok(1)
    );
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("outbound-chunks-received"), 50);
    assert_eq!(src.property::<u64>("inbound-chunks-received"), 50);
    assert_eq!(src.property::<u64>("chunks-lost"), 0);
    assert!(warnings(&p.bus().unwrap()).is_empty());
    set_state(&p, gst::State::Null);
}

fn inbound_is_the_caller_whatever_the_chunk_numbering() {
    for shared_chunk_counter in [false, true] {
        let (p, collector, url) = start(
            "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 \
             ! fakesink name=sink sync=false",
        );
        let (inbound, outbound) = (scrambled(8000, 5), scrambled(8000, 55));
        let params = CallParams {
            shared_chunk_counter,
            ..CallParams::with_tracks(&[Track::Inbound, Track::Outbound])
        };
        play(
            &url,
            params,
            &[(Track::Inbound, &inbound), (Track::Outbound, &outbound)],
        );
        let got = collector.wait_eos();
        assert_eq!(got.samples(), decode(&inbound));
        // Chunk numbers counting both tracks are no gap.
        let src = by_name(&p, "src");
        assert_eq!(src.property::<u64>("chunks-lost"), 0);
        assert_eq!(src.property::<u64>("chunks-received"), 100);
        set_state(&p, gst::State::Null);
    }
}

fn an_outbound_only_stream_is_output_by_track_outbound() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=outbound ! audio/x-mulaw \
         ! fakesink name=sink sync=false",
    );
    let outbound = scrambled(4000, 11);
    play(
        &url,
        CallParams::with_tracks(&[Track::Outbound]),
        &[(Track::Outbound, &outbound)],
    );
    let got = collector.wait_eos();
    assert_eq!(got.bytes(), outbound);
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("outbound-bytes-received"), 4000);
    assert_eq!(src.property::<u64>("inbound-bytes-received"), 0);
    assert!(warnings(&p.bus().unwrap()).is_empty());
    set_state(&p, gst::State::Null);
}

fn a_stream_without_the_asked_track_warns_once_and_gets_silence() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=outbound ! audio/x-raw,rate=8000 \
         ! fakesink name=sink sync=false",
    );
    let inbound = scrambled(1600, 1);
    play(&url, CallParams::default(), &[(Track::Inbound, &inbound)]);
    let got = collector.wait_eos();
    // Silence as long as the call, on the caller's clock.
    assert_eq!(got.samples(), vec![0; 1600]);
    let warnings = warnings(&p.bus().unwrap());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("The stream carries only [inbound]; track=outbound gets silence"),
        "{warnings:?}"
    );
    assert_eq!(by_name(&p, "src").property::<u64>("chunks-lost"), 0);
    set_state(&p, gst::State::Null);
}

fn both_on_a_caller_only_stream_has_a_silent_second_channel() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both ! audio/x-raw,rate=8000 \
         ! fakesink name=sink sync=false",
    );
    let inbound = scrambled(1600, 2);
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for chunk in inbound.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call
    });
    // Nothing is waited for: every chunk is out before the call ends.
    collector.wait_buffers(10);
    rt().block_on(async {
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let samples = got.samples();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    assert_eq!(left, decode(&inbound));
    assert!(samples.iter().skip(1).step_by(2).all(|&s| s == 0));
    let warnings = warnings(&p.bus().unwrap());
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "The stream carries only [inbound]; track=both gets silence in channel 1 (outbound)"
        ),
        "{warnings:?}"
    );
    assert_eq!(
        by_name(&p, "src").property::<u64>("outbound-chunks-lost"),
        0
    );
    set_state(&p, gst::State::Null);
}

#[test]
fn outbound_media_keeps_a_call_alive_past_the_idle_timeout() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 idle-timeout=1 track=outbound \
         ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    // 2.5 s of outbound media only, in real time: over twice the timeout.
    let script = twilio_emulator::Script {
        outbound: vec![0xFF; 160 * 125],
        linger: Duration::ZERO,
        ..Default::default()
    };
    rt().block_on(async {
        let call = TwilioCall::start(&url, CallParams::with_tracks(&[Track::Outbound]))
            .await
            .unwrap();
        let report = twilio_emulator::play::run(call, &script).await.unwrap();
        assert_eq!(report.closed_by_plugin, None);
    });
    let got = collector.wait_eos();
    assert_eq!(got.samples().len(), 160 * 125);
    let warnings = warnings(&p.bus().unwrap());
    assert!(warnings.is_empty(), "{warnings:?}");
    set_state(&p, gst::State::Null);
}

#[test]
fn the_emulator_numbers_chunks_per_track_or_with_one_counter() {
    let (p, _collector, url) =
        start("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    for (shared, expected) in [(false, [1, 1, 2, 2]), (true, [1, 2, 3, 4])] {
        let params = CallParams {
            shared_chunk_counter: shared,
            first_timestamp_ms: 100,
            ..CallParams::with_tracks(&[Track::Inbound, Track::Outbound])
        };
        let (numbers, stamps) = rt().block_on(async {
            let mut call = TwilioCall::connect(&url, params).await.unwrap();
            let mut numbers = Vec::new();
            let mut stamps = Vec::new();
            for track in [
                Track::Inbound,
                Track::Outbound,
                Track::Inbound,
                Track::Outbound,
            ] {
                let Inbound::Media { media, .. } = call.media_message_on(track, &[0xFF; 160])
                else {
                    unreachable!()
                };
                assert_eq!(media.track, track.as_str());
                numbers.push(media.chunk.unwrap().0);
                stamps.push(media.timestamp.0);
            }
            call.abort().await;
            (numbers, stamps)
        });
        assert_eq!(numbers, expected, "shared counter: {shared}");
        // One clock: a frame's two chunks carry the same timestamp.
        assert_eq!(stamps, [100, 100, 120, 120]);
    }
    set_state(&p, gst::State::Null);
}

/// A SignalWire call of wideband L16 with both tracks.
fn wideband_call() -> CallParams {
    use gsttwiliostream::codec::{ByteOrder, WireFormat};
    let format = WireFormat::l16(16000, ByteOrder::Big);
    CallParams {
        tracks: CallParams::with_tracks(&[Track::Inbound, Track::Outbound]).tracks,
        ..CallParams::of(twilio_emulator::Provider::SignalWire, format)
    }
}

/// The close code and reason `url` answers a wideband call's `start` with.
fn refused_wideband(url: &str) -> (Option<Received>, Option<String>) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, wideband_call()).await.unwrap();
        (call.recv_timeout(PATIENCE).await, call.close_reason())
    })
}

const BOTH_REASON: &str = "track=both takes 8 kHz G.711 calls only; \
                           this call carries L16@16000 (big-endian)";

/// `track=both` aligns G.711 chunks only: a call of another format is
/// refused when its wait for an element that takes it ends (close 1003,
/// the reason, a WARNING on the bus, `refused-calls`), and the pipeline
/// goes on to take the next call.
#[test]
fn both_refuses_a_wideband_call_and_takes_the_next() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both pending-timeout=1 ! \
         audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    assert_eq!(
        refused_wideband(&url),
        (
            Some(Received::Closed(Some(1003))),
            Some(BOTH_REASON.to_owned())
        )
    );
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("refused-calls"), 1);
    let told: Vec<String> = drain_messages(&bus)
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            gst::MessageView::Error(e) => Some(format!("ERROR {}", e.error())),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        [format!("Refused a call (close code 1003): {BOTH_REASON}")]
    );
    // The next call, μ-law, comes out in both channels.
    let (inbound, outbound) = (scrambled(1600, 3), scrambled(1600, 33));
    play(
        &url,
        CallParams::with_tracks(&[Track::Inbound, Track::Outbound]),
        &[(Track::Inbound, &inbound), (Track::Outbound, &outbound)],
    );
    let frames = collector.wait_eos().samples();
    let left: Vec<i16> = frames.iter().step_by(2).copied().collect();
    let right: Vec<i16> = frames.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left, decode(&inbound));
    assert_eq!(right, decode(&outbound));
    set_state(&p, gst::State::Null);
}

/// A wideband call on a path a `track=both` src alone serves waits for an
/// element that takes it (a pipeline of a pool started meanwhile).
#[test]
fn a_wideband_call_waits_for_an_element_that_takes_it() {
    use common::waiting::{debug_log, wait_until_waiting};
    debug_log();
    let both = pipeline(
        "twiliostreamsrc name=src port=0 path=/later track=both pending-timeout=15 ! fakesink",
    );
    set_state(&both, gst::State::Playing);
    let port = by_name(&both, "src").property::<u32>("bound-port");
    let url = format!("ws://127.0.0.1:{port}/later");
    let params = wideband_call();
    let pcm: Vec<i16> = (0..3200).map(|i| ((i * 53) % 3000) as i16 - 1500).collect();
    let mut wire = Vec::new();
    params.format.encode(&pcm, &mut wire);
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        for chunk in wire.chunks(640) {
            call.send_media_on(Track::Inbound, chunk).unwrap();
        }
        call
    });
    wait_until_waiting("/later");
    let (later, collector, _) = start(&format!(
        "twiliostreamsrc name=src port={port} path=/later ! fakesink name=sink sync=false"
    ));
    rt().block_on(async {
        call.send_stop().unwrap();
        call.close().await;
    });
    // All it said while it waited (early-audio).
    assert_eq!(collector.wait_eos().samples(), pcm);
    assert_eq!(by_name(&both, "src").property::<u64>("refused-calls"), 0);
    assert!(warnings(&both.bus().unwrap()).is_empty());
    set_state(&later, gst::State::Null);
    set_state(&both, gst::State::Null);
}

/// On a path served by a `track=both` src and another, a wideband call
/// goes to the other, even though the `track=both` one is older and free.
#[test]
fn a_wideband_call_goes_to_the_element_that_takes_it() {
    init();
    let both = pipeline(
        "twiliostreamsrc name=src port=0 path=/s track=both ! fakesink name=sink sync=false",
    );
    set_state(&both, gst::State::Playing);
    let port = by_name(&both, "src").property::<u32>("bound-port");
    let (one, collector, _) = start(&format!(
        "twiliostreamsrc name=src port={port} path=/s ! fakesink name=sink sync=false"
    ));
    let url = format!("ws://127.0.0.1:{port}/s");
    let pcm: Vec<i16> = (0..3200).map(|i| ((i * 37) % 2000) as i16 - 1000).collect();
    rt().block_on(async {
        let params = wideband_call();
        let mut wire = Vec::new();
        params.format.encode(&pcm, &mut wire);
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        for chunk in wire.chunks(640) {
            call.send_media_on(Track::Inbound, chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    assert_eq!(collector.wait_eos().samples(), pcm);
    assert!(warnings(&both.bus().unwrap()).is_empty());
    assert_eq!(by_name(&both, "src").property::<u64>("refused-calls"), 0);
    set_state(&one, gst::State::Null);
    set_state(&both, gst::State::Null);
}
