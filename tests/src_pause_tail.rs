//! The resampler's tail around a pause of the src (PLAYING → PAUSED →
//! PLAYING mid-call): the audio before the pause ends with its own tail,
//! at its own time, and the stream anchored anew after it starts from a
//! fresh resampler, not with the end of the audio before the pause. With
//! `track=both`, what the src held for the slower track at the pause goes
//! out before that tail, the slower channel padded with silence (its wait
//! given up, as at a fill), not thrown away with the aligner. The first
//! buffer of the stretch anchored anew is flagged DISCONT, even when a fill
//! lets it out. A track lagging the other at the pause stays aligned with
//! it after the pause.

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
    a_pause_lets_out_what_waited_for_the_slower_track,
    a_fill_after_the_pause_starts_the_new_stretch,
    a_track_lagging_at_a_pause_stays_aligned_after_it,
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
    run("", &[Track::Inbound], &[&ulaw], 0);
}

fn a_pause_ends_both_tracks_with_their_tails() {
    let chunks = (BEFORE + PAUSED + AFTER) * 160;
    let inbound = encode(&sine(440.0, 8000.0, 8000.0, chunks));
    let outbound = encode(&sine(660.0, 8000.0, 6000.0, chunks));
    run(
        "track=both",
        &[Track::Inbound, Track::Outbound],
        &[&inbound, &outbound],
        0,
    );
}

/// The outbound track two chunks behind at the pause (within `track-wait`:
/// the src holds the inbound track's last two, waiting for it); its two
/// come while paused, dropped. The inbound audio before the pause comes out
/// whole, the outbound channel's missing end as silence (counted lost, as
/// when the wait gives up), then the tails.
fn a_pause_lets_out_what_waited_for_the_slower_track() {
    const LAG: usize = 2;
    let chunks = (BEFORE + PAUSED + AFTER) * 160;
    let inbound = encode(&sine(440.0, 8000.0, 8000.0, chunks));
    let outbound = encode(&sine(660.0, 8000.0, 6000.0, chunks));
    let src = run(
        "track=both",
        &[Track::Inbound, Track::Outbound],
        &[&inbound, &outbound],
        LAG,
    );
    assert_eq!(src.property::<u64>("outbound-chunks-lost"), LAG as u64);
    assert_eq!(src.property::<u64>("inbound-chunks-lost"), 0);
}

/// A call of `tracks` (`ulaws`, one per channel) at 16 kHz through a src
/// with `props`, paused after `BEFORE` chunks. Each phase is sent at once
/// (the output then runs ahead of the running time, and `latency` puts
/// the fill deadline 10 s on: no fill is due however slow the machine),
/// and the chunks sent while paused are read before the return, so the
/// first chunk after it is known. The second track's last `lag` chunks
/// before the pause come while paused instead (each of its chunks sent
/// after the first track's `lag` later, so the last message before the
/// pause, the second track's, lets out the last buffer before it, with
/// everything before it placed). The src, once the call ended.
fn run(props: &str, tracks: &[Track], ulaws: &[&[u8]], lag: usize) -> gst::Element {
    init();
    let (p, collector, url) = start(&format!(
        "twiliostreamsrc name=src port=0 {props} gap-fill=silence latency=10000 \
         ! audio/x-raw,rate=16000 ! fakesink name=sink sync=false"
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
            let send = |call: &mut TwilioCall, chunks: std::ops::Range<usize>, lag: usize| {
                for n in chunks {
                    for (c, (track, ulaw)) in tracks.iter().zip(&ulaws).enumerate() {
                        let Some(n) = n.checked_sub(if c > 0 { lag } else { 0 }) else {
                            continue;
                        };
                        call.send_media_on(*track, &ulaw[n * 160..][..160]).unwrap();
                    }
                }
            };
            send(&mut call, 0..BEFORE, lag);
            let until = |want: u8| {
                let phase = phase.clone();
                async move {
                    while phase.load(Ordering::SeqCst) < want {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            };
            until(PAUSING).await;
            // The second track's last `lag` before the pause first.
            if let (Some(track), Some(ulaw)) = (tracks.get(1), ulaws.get(1)) {
                for n in BEFORE - lag..BEFORE {
                    call.send_media_on(*track, &ulaw[n * 160..][..160]).unwrap();
                }
            }
            send(&mut call, BEFORE..BEFORE + PAUSED, 0);
            until(RESUMED).await;
            send(&mut call, BEFORE + PAUSED..BEFORE + PAUSED + AFTER, 0);
            call.send_stop().unwrap();
            call.close().await;
        })
    };
    // One buffer per chunk (of each track) before the pause, but for those
    // of the first track held for the second.
    assert!(lag == 0 || tracks.len() == 2);
    collector.wait_buffers(BEFORE - lag);
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
    assert_eq!(dropped, PAUSED as u64 * per_chunk + lag as u64);

    // The stream anchored anew at the last buffer flagged DISCONT (nothing
    // is lost after it; before it, the second track's silence may be): the
    // items before it are the audio before the pause, from it on the audio
    // after it (no GAP: no fill is due).
    let anew = got
        .buffers
        .iter()
        .rposition(|b| b.flags().contains(gst::BufferFlags::DISCONT))
        .expect("no DISCONT after the pause");
    assert!(
        anew >= BEFORE - lag,
        "the anchor anew among the first buffers"
    );
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
    // Before: the first chunks (silence for the second track's that came
    // while paused), then a tail of silence, at its time (the position
    // went on).
    let mut heard: Vec<Vec<u8>> = ulaws.iter().map(|u| u.to_vec()).collect();
    if lag > 0 {
        heard[1][(BEFORE - lag) * 160..BEFORE * 160].fill(0xFF);
    }
    let heard: Vec<&[u8]> = heard.iter().map(|u| &u[..]).collect();
    let end = check_fresh_stretches(&stretches(before), &heard, 16000, 0);
    assert_eq!(end, BEFORE * 160, "the audio before the pause");
    // After: the chunks sent after the return, from a new resampler, the
    // first buffer (the first of them) included.
    let end = check_fresh_stretches(&stretches(after), ulaws, 16000, (BEFORE + PAUSED) * 160);
    assert_eq!(end, ulaws[0].len(), "the audio after the pause");
    set_state(&p, gst::State::Null);
    src
}

/// With `track=both`, the first chunk after the pause comes on the inbound
/// track alone, and the fill (nothing more comes) lets it out of the
/// aligner: that buffer starts the stretch anchored anew, so it is the one
/// flagged DISCONT, its outbound channel silence; the fill's GAP buffers
/// follow it.
fn a_fill_after_the_pause_starts_the_new_stretch() {
    init();
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both gap-fill=silence \
         ! audio/x-raw,rate=16000 ! fakesink name=sink sync=false",
    );
    // (flags, whether the left channel is silent, whether the right is).
    type Seen = Vec<(gst::BufferFlags, bool, bool)>;
    let seen = Arc::new(std::sync::Mutex::new(Seen::new()));
    {
        let seen = seen.clone();
        let pad = by_name(&p, "sink").static_pad("sink").unwrap();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                let map = b.map_readable().unwrap();
                let silent = |channel: usize| {
                    map.chunks_exact(4)
                        .all(|f| f[2 * channel] == 0 && f[2 * channel + 1] == 0)
                };
                let item = (b.flags(), silent(0), silent(1));
                seen.lock().unwrap().push(item);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let ulaw = encode(&sine(440.0, 8000.0, 8000.0, (BEFORE + 1) * 160));
    let tracks = [Track::Inbound, Track::Outbound];
    let mut call = rt()
        .block_on(TwilioCall::start(&url, CallParams::with_tracks(&tracks)))
        .unwrap();
    for n in 0..BEFORE {
        for track in tracks {
            call.send_media_on(track, &ulaw[n * 160..][..160]).unwrap();
        }
    }
    collector.wait_buffers(BEFORE);
    set_state(&p, gst::State::Paused);
    set_state(&p, gst::State::Playing);
    let resumed = seen.lock().unwrap().len();
    call.send_media_on(Track::Inbound, &ulaw[BEFORE * 160..])
        .unwrap();
    // The fill's silence after the chunk's audio.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let after = seen.lock().unwrap()[resumed..].to_vec();
        let heard = after.iter().position(|(_, left, _)| !left);
        if heard.is_some_and(|at| {
            after[at..]
                .iter()
                .any(|(flags, _, _)| flags.contains(gst::BufferFlags::GAP))
        }) {
            break after;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no fill after the chunk"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    call.send_stop().unwrap();
    rt().block_on(call.close());
    collector.wait_eos();
    set_state(&p, gst::State::Null);
    let disconts: Vec<_> = after
        .iter()
        .filter(|(flags, _, _)| flags.contains(gst::BufferFlags::DISCONT))
        .collect();
    assert_eq!(disconts.len(), 1, "one DISCONT after the pause: {after:?}");
    let (flags, left_silent, right_silent) = disconts[0];
    assert!(!flags.contains(gst::BufferFlags::GAP), "{after:?}");
    assert!(
        !left_silent && *right_silent,
        "the chunk, the outbound track silent"
    );
}

/// With `track=both`, the outbound track two chunks behind the inbound
/// (within the wait) all through the call. After the pause the stream is
/// anchored anew at the inbound chunk that comes first: the outbound
/// chunks for time before it are too late, and from there on both
/// channels stay aligned, chunk for chunk (the payloads, as μ-law).
fn a_track_lagging_at_a_pause_stays_aligned_after_it() {
    const LAG: usize = 2;
    init();
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both gap-fill=silence latency=10000 \
         ! audio/x-mulaw ! fakesink name=sink sync=false",
    );
    let chunks = BEFORE + AFTER;
    // Chunks no two alike (a chunk is found in its channel by its bytes).
    let track = |seed: u64| -> Vec<Vec<u8>> {
        let mut x = seed;
        let mut byte = move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        };
        (0..chunks)
            .map(|_| (0..160).map(|_| byte()).collect())
            .collect()
    };
    let (inbound, outbound) = (track(1), track(2));
    let mut call = rt()
        .block_on(TwilioCall::start(
            &url,
            CallParams::with_tracks(&[Track::Inbound, Track::Outbound]),
        ))
        .unwrap();
    // The inbound chunks of frames `from..to`, and the outbound ones
    // `LAG` frames behind them.
    let mut send = |from: usize, to: usize| {
        for n in from..to {
            if let Some(chunk) = inbound.get(n) {
                call.send_media_on(Track::Inbound, chunk).unwrap();
            }
            if let Some(chunk) = n.checked_sub(LAG).and_then(|m| outbound.get(m)) {
                call.send_media_on(Track::Outbound, chunk).unwrap();
            }
        }
    };
    // Before the pause, the inbound chunks up to `BEFORE` and the outbound
    // ones `LAG` behind: the outbound track's next come after the pause.
    send(0, BEFORE);
    collector.wait_buffers(BEFORE - LAG);
    set_state(&p, gst::State::Paused);
    set_state(&p, gst::State::Playing);
    send(BEFORE, chunks + LAG);
    call.send_stop().unwrap();
    rt().block_on(call.close());
    let got = collector.wait_eos();
    set_state(&p, gst::State::Null);
    let bytes = got.bytes();
    let channel = |c: usize| -> Vec<u8> { bytes.iter().skip(c).step_by(2).copied().collect() };
    let (left, right) = (channel(0), channel(1));
    let find = |channel: &[u8], chunk: &[u8]| channel.windows(160).position(|w| w == chunk);
    for k in BEFORE..chunks {
        let at = find(&left, &inbound[k]);
        assert!(at.is_some(), "inbound chunk {k} missing");
        assert_eq!(find(&right, &outbound[k]), at, "chunk {k}");
    }
}
