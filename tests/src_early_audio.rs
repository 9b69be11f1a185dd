//! What a call says before its src first plays it (it waited for a free
//! element, or came while the pipeline started): kept up to `early-audio`
//! and put out first, from the running time of PLAYING; what came earlier
//! is dropped, counted and warned of. A pause mid-call still drops.

mod common;

use std::time::Duration;

use common::src::{SRC_PROPS, assert_contiguous, in_both_modes};
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Track;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, TwilioCall};

in_both_modes!(
    a_call_taken_before_playing_keeps_what_it_said,
    audio_older_than_early_audio_is_dropped_and_warned_of,
    a_pause_while_the_early_audio_plays_loses_none_of_it,
);

/// `got` is `want`; said briefly when not (where they part, how long each
/// is, and the src's counters).
fn assert_audio(src: &gst::Element, got: &[i16], want: &[i16]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        let stats = src.property::<gst::Structure>("stats");
        panic!(
            "{} samples, want {}; first difference at {at:?}; {stats}",
            got.len(),
            want.len()
        );
    }
}

/// 20 ms chunks of μ-law, each unlike its neighbours.
fn distinct(chunks: usize, seed: usize) -> Vec<u8> {
    (0..chunks * 160)
        .map(|i| ((i * 31 + seed) % 253 + i / 160) as u8)
        .collect()
}

/// A recorder's pipeline with the src's `props`, left PAUSED: it takes a
/// call, but plays nothing of it yet.
fn paused(props: &str) -> (gst::Pipeline, gst::Element, Collector, String) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {} {props} ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
        SRC_PROPS.get()
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Paused);
    let src = by_name(&p, "src");
    let url = url_of(&src);
    (p, src, collector, url)
}

/// Starts a call on `url` and sends `early` before the src plays (once
/// all of it has come: counted), then, `wait` later, sets `p` PLAYING and
/// sends `late`, then stop.
fn call_across_playing(p: &gst::Pipeline, url: &str, early: &[u8], wait: Duration, late: &[u8]) {
    let src = by_name(p, "src");
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(url, CallParams::default()).await.unwrap();
        for chunk in early.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call
    });
    counter_reaches(&src, "chunks-received", (early.len() / 160) as u64);
    std::thread::sleep(wait);
    set_state(p, gst::State::Playing);
    rt().block_on(async {
        for chunk in late.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn a_call_taken_before_playing_keeps_what_it_said() {
    let (p, src, collector, url) = paused("");
    let bus = p.bus().unwrap();
    let (early, late) = (distinct(50, 1), distinct(10, 2));
    call_across_playing(&p, &url, &early, Duration::ZERO, &late);
    let got = collector.wait_eos();
    // All of it, in order, one stream from the first chunk on.
    assert_audio(&src, &got.samples(), &decode(&[early, late].concat()));
    assert_contiguous(&got.buffers);
    assert_eq!(src.property::<u64>("chunks-dropped-paused"), 0);
    assert_eq!(src.property::<u64>("chunks-lost"), 0);
    assert_eq!(warnings(&bus), Vec::<String>::new());
    set_state(&p, gst::State::Null);
}

fn audio_older_than_early_audio_is_dropped_and_warned_of() {
    let (p, src, collector, url) = paused("early-audio=100");
    let bus = p.bus().unwrap();
    let (early, late) = (distinct(25, 3), distinct(10, 4));
    // All of `early` came at least 300 ms before PLAYING: past the 100 ms.
    call_across_playing(&p, &url, &early, Duration::from_millis(300), &late);
    let got = collector.wait_eos();
    assert_audio(&src, &got.samples(), &decode(&late));
    assert_eq!(src.property::<u64>("chunks-dropped-paused"), 25);
    let warnings = warnings(&bus);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "Dropped the first 500 ms of the call's audio: it came more than \
             early-audio (100 ms) before the src went to PLAYING with the call"
        ),
        "{warnings:?}"
    );
    set_state(&p, gst::State::Null);
}

/// `early-audio=0` drops it all, as a pause does, and says nothing: chosen.
#[test]
fn early_audio_0_starts_the_stream_at_playing() {
    let (p, src, collector, url) = paused("early-audio=0");
    let bus = p.bus().unwrap();
    let (early, late) = (distinct(5, 5), distinct(10, 6));
    call_across_playing(&p, &url, &early, Duration::from_millis(5), &late);
    assert_audio(&src, &collector.wait_eos().samples(), &decode(&late));
    assert_eq!(src.property::<u64>("chunks-dropped-paused"), 5);
    assert_eq!(warnings(&bus), Vec::<String>::new());
    set_state(&p, gst::State::Null);
}

/// Early audio that a syncing sink is still playing out when the pipeline
/// pauses is not what came during the pause: it goes on after it, and the
/// first chunk after the pause anchors anew.
fn a_pause_while_the_early_audio_plays_loses_none_of_it() {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=true",
        SRC_PROPS.get()
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Paused);
    let src = by_name(&p, "src");
    let url = url_of(&src);
    // 1 s said while it waited, played out in real time from PLAYING.
    let (early, late) = (distinct(50, 7), distinct(10, 8));
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for chunk in early.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call
    });
    counter_reaches(&src, "chunks-received", 50);
    set_state(&p, gst::State::Playing);
    collector.wait_buffers(5);
    set_state(&p, gst::State::Paused);
    std::thread::sleep(Duration::from_millis(200));
    set_state(&p, gst::State::Playing);
    rt().block_on(async {
        for chunk in late.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    assert_audio(&src, &got.samples(), &decode(&[early, late].concat()));
    assert_eq!(src.property::<u64>("chunks-dropped-paused"), 0);
    set_state(&p, gst::State::Null);
}

/// With both tracks, the WARNING gives the time dropped (not both tracks'
/// sum), once.
#[test]
fn early_audio_of_both_tracks_is_told_once_in_time() {
    let (p, src, collector, url) = paused("track=both early-audio=100");
    let bus = p.bus().unwrap();
    let (early, late) = (distinct(25, 9), distinct(10, 10));
    let both = [Track::Inbound, Track::Outbound];
    let send = |call: &mut TwilioCall, audio: &[u8]| {
        for chunk in audio.chunks(160) {
            for track in both {
                call.send_media_on(track, chunk).unwrap();
            }
        }
    };
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::with_tracks(&both))
            .await
            .unwrap();
        send(&mut call, &early);
        call
    });
    counter_reaches(&src, "chunks-received", 50);
    std::thread::sleep(Duration::from_millis(300));
    set_state(&p, gst::State::Playing);
    rt().block_on(async {
        send(&mut call, &late);
        call.send_stop().unwrap();
        call.close().await;
    });
    let frames = collector.wait_eos().samples();
    let left: Vec<i16> = frames.iter().step_by(2).copied().collect();
    assert_audio(&src, &left, &decode(&late));
    let warnings = warnings(&bus);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("Dropped the first 500 ms of the call's audio"),
        "{warnings:?}"
    );
    set_state(&p, gst::State::Null);
}
