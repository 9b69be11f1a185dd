//! twiliostreamsrc `track=both` with one track lagging the other, sent in
//! real time: a steady lag past `track-wait` raises the wait for the call
//! (told, with the latency), a lag past the longest wait is told once, a
//! stall raises nothing, and a lag of part of a chunk is warned of. The
//! tracks in step are in `src_both_tracks.rs`.

mod common;

use common::both::*;
use common::src::{in_both_modes, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Track;
use twilio_emulator::TwilioCall;
use twilio_emulator::audio::decode;

in_both_modes!(
    a_track_further_behind_than_track_wait_loses_audio_and_a_longer_wait_keeps_it,
    a_track_lagging_past_the_wait_by_part_of_a_chunk_is_warned_of,
    a_track_lagging_past_the_longest_wait_is_told_once_the_wait_is_at_its_longest,
    a_stall_of_one_track_raises_no_wait,
);

/// Five chunks (100 ms) behind: past the wait (the default's, or 100 ms:
/// a chunk comes 20 ms after its time), the slower channel is filled with
/// silence, its chunks come too late and are dropped, until after half a
/// second of that the wait is raised for the call by as much as they came
/// late, with a WARNING and the latency reported raised: the channel's
/// audio then comes back (it was silence for the whole call). With
/// `track-wait=120` every sample is in its place from the start.
fn a_track_further_behind_than_track_wait_loses_audio_and_a_longer_wait_keeps_it() {
    let (inbound, outbound) = (scrambled(8000, 5), scrambled(8000, 91));
    let run = |wait: &str| {
        let (p, collector, url) = start(&format!(
            "{BOTH} gap-fill=silence {wait} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
        ));
        play_apart_every(&url, &inbound, &outbound, 5, FRAME);
        let got = collector.wait_eos();
        let src = by_name(&p, "src");
        let too_late = counter(&src, "chunks-too-late");
        assert_eq!(counter(&src, "inbound-chunks-lost"), 0);
        let mut query = gst::query::Latency::new();
        assert!(src.static_pad("src").unwrap().query(&mut query));
        let warned = warnings(&p.bus().unwrap());
        set_state(&p, gst::State::Null);
        let (left, right) = split(&got.samples());
        assert_eq!(left, decode(&inbound));
        (right, too_late, query.result().1, warned)
    };

    for (wait, latency) in [("", 60), ("track-wait=100", 100)] {
        let (right, too_late, reported, warned) = run(wait);
        assert_ne!(right, decode(&outbound), "{wait}: the outbound track whole");
        // Its last 10 chunks in their place: the wait was raised.
        let tail = 160 * 10;
        assert_eq!(
            right[right.len() - tail..],
            decode(&outbound)[outbound.len() - tail..],
            "{wait}"
        );
        assert!(too_late > 0, "{wait}: nothing came too late");
        assert_eq!(warned.len(), 1, "{wait}: {warned:?}");
        let said = format!(
            "The outbound track lags the inbound by more than track-wait ({latency} ms): \
             the wait is raised to "
        );
        assert!(warned[0].starts_with(&said), "{wait}: {warned:?}");
        assert!(
            warned[0].contains("25 more of its chunks came too late than in time, over 500 ms")
        );
        // By how late its chunks came, and a chunk: enough for 100 ms.
        let raised: u64 = warned[0][said.len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (120..=160).contains(&raised),
            "{wait}: raised to {raised} ms"
        );
        assert_eq!(reported, gst::ClockTime::from_mseconds(20 + raised));
    }

    let (right, too_late, reported, warned) = run("track-wait=120");
    assert_eq!(right, decode(&outbound));
    assert_eq!(too_late, 0);
    assert_eq!(reported, gst::ClockTime::from_mseconds(20 + 120));
    assert_eq!(warned, Vec::<String>::new());
}

/// A track more than a second behind: the wait is raised to `track-wait`'s
/// longest (1000 ms) at once, told; past that its channel stays silence,
/// told once.
fn a_track_lagging_past_the_longest_wait_is_told_once_the_wait_is_at_its_longest() {
    let (p, collector, url) = start(&format!(
        "{BOTH} gap-fill=silence ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let (inbound, outbound) = (scrambled(8000 * 3, 5), scrambled(8000 * 3, 91));
    // 60 chunks: 1.2 s behind.
    play_apart_every(&url, &inbound, &outbound, 60, FRAME);
    let got = collector.wait_eos();
    let src = by_name(&p, "src");
    let mut query = gst::query::Latency::new();
    assert!(src.static_pad("src").unwrap().query(&mut query));
    assert_eq!(query.result().1, gst::ClockTime::from_mseconds(20 + 1000));
    let warned = warnings(&p.bus().unwrap());
    set_state(&p, gst::State::Null);
    let raised: Vec<_> = warned
        .iter()
        .filter_map(|w| w.split("the wait is raised to ").nth(1))
        .map(|w| w.split(' ').next().unwrap())
        .collect();
    assert_eq!(raised, ["1000"], "{warned:?}");
    assert_eq!(warned.len(), 2, "{warned:?}");
    assert!(
        warned[1].starts_with(
            "The outbound track lags the inbound by more than the longest track-wait (1000 ms)"
        ),
        "{warned:?}"
    );
    let (left, right) = split(&got.samples());
    assert_eq!(left, decode(&inbound));
    assert_ne!(right, decode(&outbound), "the outbound track whole");
}

/// The outbound track held up for 1.2 s and then sent all at once, in step
/// again after it (a stall, not a lag): its held chunks came too late, but
/// the wait is not raised, nothing is warned of, and the latency stays.
fn a_stall_of_one_track_raises_no_wait() {
    let (p, collector, url) = start(&format!(
        "{BOTH} gap-fill=silence ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let (inbound, outbound) = (scrambled(8000 * 3, 5), scrambled(8000 * 3, 91));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, both_tracks()).await.unwrap();
        let chunks: Vec<_> = inbound.chunks(160).zip(outbound.chunks(160)).collect();
        for (n, (i, _)) in chunks.iter().enumerate() {
            call.send_media_on(Track::Inbound, i).unwrap();
            let out = match n {
                20..80 => 0..0,
                80 => 20..81,
                _ => n..n + 1,
            };
            for (_, o) in &chunks[out] {
                call.send_media_on(Track::Outbound, o).unwrap();
            }
            tokio::time::sleep(FRAME).await;
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let src = by_name(&p, "src");
    assert!(counter(&src, "chunks-too-late") > 0);
    let mut query = gst::query::Latency::new();
    assert!(src.static_pad("src").unwrap().query(&mut query));
    assert_eq!(query.result().1, gst::ClockTime::from_mseconds(20 + 60));
    let warned = warnings(&p.bus().unwrap());
    assert_eq!(warned, Vec::<String>::new());
    set_state(&p, gst::State::Null);
    // In step again after the stall: in place.
    let (_, right) = split(&got.samples());
    let from = 160 * 90;
    assert_eq!(right[from..], decode(&outbound)[from..]);
}

/// The outbound track's chunks 10 ms out of step with the inbound ones (a
/// first chunk of 10 ms) and each sent 70 ms after its end's time: past
/// the default wait by half a chunk, so that the first half of each is too
/// late and dropped, the rest kept. The channel is chopped, never wholly
/// late, and warned of all the same; `track-wait=100` keeps it whole.
fn a_track_lagging_past_the_wait_by_part_of_a_chunk_is_warned_of() {
    let (inbound, outbound) = (scrambled(8000, 5), scrambled(8000, 91));
    // 10 ms, then 20 ms chunks.
    let pieces: Vec<&[u8]> = std::iter::once(&outbound[..80])
        .chain(outbound[80..].chunks(160))
        .collect();
    let run = |wait: &str| {
        let (p, collector, url) = start(&format!(
            "{BOTH} gap-fill=silence {wait} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
        ));
        rt().block_on(async {
            let mut call = TwilioCall::start(&url, both_tracks()).await.unwrap();
            // After inbound chunk n (its end at 20n + 20 ms), the outbound
            // piece n - 2 (from 20n - 50 to 20n - 30 ms).
            for n in 0..inbound.len() / 160 + 2 {
                if let Some(chunk) = inbound.chunks(160).nth(n) {
                    call.send_media_on(Track::Inbound, chunk).unwrap();
                }
                if let Some(piece) = n.checked_sub(2).and_then(|j| pieces.get(j)) {
                    call.send_media_on(Track::Outbound, piece).unwrap();
                }
                // In real time: a lag is one only over half a second.
                tokio::time::sleep(FRAME).await;
            }
            // The last piece, of 10 ms.
            call.send_media_on(Track::Outbound, pieces[pieces.len() - 1])
                .unwrap();
            call.send_stop().unwrap();
            call.close().await;
        });
        let got = collector.wait_eos();
        let src = by_name(&p, "src");
        let too_late = counter(&src, "chunks-too-late");
        let warned = warnings(&p.bus().unwrap());
        set_state(&p, gst::State::Null);
        let (left, right) = split(&got.samples());
        let first_difference = left.iter().zip(decode(&inbound)).position(|(a, b)| *a != b);
        assert_eq!(first_difference, None, "{wait}: {} samples", left.len());
        assert_eq!(left.len(), inbound.len(), "{wait}");
        (right == decode(&outbound), too_late, warned)
    };

    let (whole, too_late, warned) = run("");
    assert!(!whole, "the outbound track whole");
    assert!(too_late >= 25, "{too_late} too late");
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].starts_with("The outbound track lags the inbound by more than track-wait"));

    let (whole, too_late, warned) = run("track-wait=100");
    assert!(whole, "the outbound track not whole");
    assert_eq!(too_late, 0);
    assert_eq!(warned, Vec::<String>::new());
}
