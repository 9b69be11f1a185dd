//! The resampler's tail around a pause of the src (PLAYING → PAUSED →
//! PLAYING mid-call): the audio before the pause ends with its own tail,
//! at its own time, and the stream anchored anew after it starts from a
//! fresh resampler, not with the end of the audio before the pause.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use common::src::{
    assert_items_contiguous, check_fresh_stretches, in_both_modes, items_at_sink, start, stretches,
};
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Track;
use twilio_emulator::audio::encode;
use twilio_emulator::{CallParams, TwilioCall};

in_both_modes!(
    a_pause_ends_the_audio_with_its_tail,
    a_pause_ends_both_tracks_with_their_tails,
);

/// Chunks sent before the pause, while paused (dropped), and after it.
const BEFORE: usize = 25;
const PAUSED: usize = 10;
const AFTER: usize = 25;

/// Where the test is, for the sender: it sends `BEFORE` chunks, then
/// (at `PAUSING`) the `PAUSED` ones, then (at `RESUMED`) the rest.
const PAUSING: u8 = 1;
const RESUMED: u8 = 2;

fn a_pause_ends_the_audio_with_its_tail() {
    let ulaw = encode(&sine(
        440.0,
        8000.0,
        8000.0,
        (BEFORE + PAUSED + AFTER) * 160,
    ));
    run("", &[Track::Inbound], &[&ulaw]);
}

fn a_pause_ends_both_tracks_with_their_tails() {
    let chunks = (BEFORE + PAUSED + AFTER) * 160;
    let inbound = encode(&sine(440.0, 8000.0, 8000.0, chunks));
    let outbound = encode(&sine(660.0, 8000.0, 6000.0, chunks));
    run(
        "track=both",
        &[Track::Inbound, Track::Outbound],
        &[&inbound, &outbound],
    );
}

/// A call of `tracks` (`ulaws`, one per channel) at 16 kHz through a src
/// with `props`, paused after `BEFORE` chunks. Each phase is sent at once
/// (the output then runs ahead of the running time: no fill is due), and
/// the chunks sent while paused are read before the return, so the first
/// chunk after it is known.
fn run(props: &str, tracks: &[Track], ulaws: &[&[u8]]) {
    init();
    let (p, collector, url) = start(&format!(
        "twiliostreamsrc name=src port=0 {props} gap-fill=silence ! audio/x-raw,rate=16000 \
         ! fakesink name=sink sync=false"
    ));
    let items = items_at_sink(&p);
    let src = by_name(&p, "src");
    let phase = Arc::new(AtomicU8::new(0));
    let sender = {
        let (phase, tracks) = (phase.clone(), tracks.to_vec());
        let ulaws: Vec<Vec<u8>> = ulaws.iter().map(|u| u.to_vec()).collect();
        rt().spawn(async move {
            let params = CallParams::with_tracks(&tracks);
            let mut call = TwilioCall::start(&url, params).await.unwrap();
            let mut send = |chunks: std::ops::Range<usize>| {
                for n in chunks {
                    for (track, ulaw) in tracks.iter().zip(&ulaws) {
                        call.send_media_on(*track, &ulaw[n * 160..][..160]).unwrap();
                    }
                }
            };
            send(0..BEFORE);
            let until = |want: u8| {
                let phase = phase.clone();
                async move {
                    while phase.load(Ordering::SeqCst) < want {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            };
            until(PAUSING).await;
            send(BEFORE..BEFORE + PAUSED);
            until(RESUMED).await;
            send(BEFORE + PAUSED..BEFORE + PAUSED + AFTER);
            call.send_stop().unwrap();
            call.close().await;
        })
    };
    // One buffer per chunk (of each track) before the pause.
    collector.wait_buffers(BEFORE);
    set_state(&p, gst::State::Paused);
    phase.store(PAUSING, Ordering::SeqCst);
    let per_chunk = tracks.len() as u64;
    counter_at_least(
        &src,
        "chunks-received",
        (BEFORE + PAUSED) as u64 * per_chunk,
    );
    set_state(&p, gst::State::Playing);
    phase.store(RESUMED, Ordering::SeqCst);
    let got = collector.wait_eos();
    rt().block_on(sender).unwrap();
    let dropped = src.property::<u64>("chunks-dropped-paused");
    assert_eq!(dropped, PAUSED as u64 * per_chunk);

    // The stream anchored anew at the first buffer flagged DISCONT after
    // those of the pause: the items before it are the audio before the
    // pause, from it on the audio after it (the first of the items is a
    // GAP only if a fill came, which the test does not expect).
    let anew = (BEFORE..got.buffers.len())
        .find(|&i| got.buffers[i].flags().contains(gst::BufferFlags::DISCONT))
        .expect("no DISCONT after the pause");
    let items = items.lock().unwrap();
    let split = items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.2.is_some())
        .nth(anew)
        .unwrap()
        .0;
    let (before, after) = items.split_at(split);
    assert_items_contiguous(before);
    assert_items_contiguous(after);
    // Before: the first chunks, then a tail of silence, at its time (the
    // position went on).
    let end = check_fresh_stretches(&stretches(before), ulaws, 16000, 0);
    assert_eq!(end, BEFORE * 160, "the audio before the pause");
    // After: the chunks sent after the return, from a new resampler, the
    // first buffer (the first of them) included.
    let end = check_fresh_stretches(&stretches(after), ulaws, 16000, (BEFORE + PAUSED) * 160);
    assert_eq!(end, ulaws[0].len(), "the audio after the pause");
    set_state(&p, gst::State::Null);
}
