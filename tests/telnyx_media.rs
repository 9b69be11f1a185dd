//! Telnyx's media into the src, end to end over real loopback WebSockets:
//! tracks its `start` does not name, chunk numbers that do not follow its
//! timestamps, and a pause behind a lost chunk in the reorder window (one
//! track, and both: the wait for the slower track outlasts the window).
//! (Out-of-order media and the window itself: `providers.rs`.)

mod common;

use common::both::split;
use common::src::{assert_contiguous, in_both_modes, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::codec::{WireFormat, alaw};
use gsttwiliostream::protocol::{Counter, Inbound, Track};
use twilio_emulator::{CallParams, Provider, TwilioCall};

in_both_modes!(
    telnyx_both_tracks_come_out_in_their_channels,
    telnyx_outbound_track_alone_comes_out,
    telnyx_inbound_alone_leaves_a_silent_channel_with_track_both,
    telnyx_outbound_asked_of_an_inbound_stream_is_silence_with_a_warning,
    a_chunk_number_far_off_loses_nothing,
    a_chunk_counter_that_restarts_loses_nothing,
    a_chunk_counter_that_sticks_loses_nothing,
    a_pause_behind_a_lost_chunk_does_not_delay_the_rest,
    with_both_tracks_a_lost_chunk_costs_only_itself,
);

const PCM8K: &str = "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! \
                     fakesink name=sink sync=false";

/// A Telnyx A-law call carrying `tracks` (its `start` names none).
fn telnyx(tracks: &[Track]) -> CallParams {
    CallParams {
        tracks: CallParams::with_tracks(tracks).tracks,
        ..CallParams::of(Provider::Telnyx, WireFormat::PCMA)
    }
}

/// A-law codes, every chunk of 160 different from its neighbours.
fn distinct_chunks(chunks: usize, seed: usize) -> Vec<u8> {
    (0..chunks * 160)
        .map(|i| ((i * 97 + seed) % 251 + i / 160) as u8)
        .collect()
}

fn decoded(codes: &[u8]) -> Vec<i16> {
    codes.iter().map(|&c| alaw::decode(c)).collect()
}

/// A Telnyx call carrying `tracks`, each with its audio: 20 ms of each in
/// turn, as fast as they go, then stop.
fn play(url: &str, tracks: &[(Track, &[u8])]) {
    let params = telnyx(&tracks.iter().map(|&(t, _)| t).collect::<Vec<_>>());
    rt().block_on(async {
        let mut call = TwilioCall::start(url, params).await.unwrap();
        let chunks = tracks.iter().map(|(_, a)| a.len().div_ceil(160)).max();
        for i in 0..chunks.unwrap_or(0) {
            for &(track, audio) in tracks {
                if let Some(chunk) = audio.chunks(160).nth(i) {
                    call.send_media_on(track, chunk).unwrap();
                }
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn telnyx_both_tracks_come_out_in_their_channels() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    let (inbound, outbound) = (distinct_chunks(50, 0), distinct_chunks(50, 77));
    play(
        &url,
        &[(Track::Inbound, &inbound), (Track::Outbound, &outbound)],
    );
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    assert_eq!(left, decoded(&inbound));
    assert_eq!(right, decoded(&outbound), "what the caller hears");
    assert_contiguous(&got.buffers);
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("outbound-chunks-received"), 50);
    assert_eq!(src.property::<u64>("chunks-lost"), 0);
    // Telnyx names no tracks: nothing to warn about.
    assert_eq!(warnings(&bus), Vec::<String>::new());
    set_state(&p, gst::State::Null);
}

fn telnyx_outbound_track_alone_comes_out() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=outbound ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
    );
    let outbound = distinct_chunks(30, 5);
    play(&url, &[(Track::Outbound, &outbound)]);
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decoded(&outbound));
    set_state(&p, gst::State::Null);
}

fn telnyx_inbound_alone_leaves_a_silent_channel_with_track_both() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
    );
    let inbound = distinct_chunks(30, 9);
    play(&url, &[(Track::Inbound, &inbound)]);
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    assert_eq!(left, decoded(&inbound));
    // A-law's silence, decoded.
    let silence = alaw::decode(WireFormat::PCMA.silence());
    assert_eq!(right.len(), left.len());
    assert!(
        right.iter().all(|&s| s == silence),
        "channel 1 is not silent"
    );
    assert_contiguous(&got.buffers);
    // A track that never came is not lost audio.
    assert_eq!(by_name(&p, "src").property::<u64>("chunks-lost"), 0);
    set_state(&p, gst::State::Null);
}

fn telnyx_outbound_asked_of_an_inbound_stream_is_silence_with_a_warning() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=outbound ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    let inbound = distinct_chunks(30, 2);
    play(&url, &[(Track::Inbound, &inbound)]);
    let got = collector.wait_eos();
    // Once the inbound track ran track-wait (60 ms: 3 chunks) ahead with no
    // outbound audio, silence timed by it.
    assert_eq!(got.samples(), vec![0; 28 * 160]);
    assert_contiguous(&got.buffers);
    let warnings = warnings(&bus);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("track=outbound gets silence"),
        "{warnings:?}"
    );
    set_state(&p, gst::State::Null);
}

/// Chunk `i` of `codes` (from 0), as the next media message, its chunk
/// number replaced by `number`.
fn renumbered(call: &mut TwilioCall, chunk: &[u8], number: u64) -> Inbound<'static> {
    let mut msg = call.media_message_on(Track::Inbound, chunk);
    if let Inbound::Media { media, .. } = &mut msg {
        media.chunk = Some(Counter(number));
    }
    msg
}

/// Plays 100 distinct chunks, chunk `i` (from 0) numbered `number(i)`;
/// what came out and the counts of invalid messages, chunks too late and
/// lost.
fn play_numbered(number: impl Fn(u64) -> u64) -> (Vec<i16>, Vec<i16>, [u64; 3]) {
    let (p, collector, url) = start(PCM8K);
    let codes = distinct_chunks(100, 3);
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, telnyx(&[Track::Inbound]))
            .await
            .unwrap();
        for (i, c) in codes.chunks(160).enumerate() {
            let msg = renumbered(&mut call, c, number(i as u64));
            call.send(&msg).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    assert_contiguous(&got.buffers);
    let src = by_name(&p, "src");
    let counts =
        ["invalid-messages", "chunks-too-late", "chunks-lost"].map(|c| src.property::<u64>(c));
    set_state(&p, gst::State::Null);
    (got.samples(), decoded(&codes), counts)
}

fn a_chunk_number_far_off_loses_nothing() {
    // Chunk 51 (from 1) claims to be chunk 1000000, its timestamp right.
    let (got, sent, counts) = play_numbered(|i| if i == 50 { 1_000_000 } else { i + 1 });
    assert_eq!(got, sent);
    assert_eq!(counts, [1, 0, 0], "invalid, too late, lost");
}

fn a_chunk_counter_that_restarts_loses_nothing() {
    let (got, sent, counts) = play_numbered(|i| if i < 50 { i + 1 } else { i - 49 });
    assert_eq!(got, sent);
    assert_eq!(counts, [1, 0, 0], "invalid, too late, lost");
}

fn a_chunk_counter_that_sticks_loses_nothing() {
    // Stuck from chunk 51 on, then from the first chunk: each chunk is a
    // new one by its timestamp, not a duplicate.
    for stuck_from in [50, 0] {
        let (got, sent, counts) = play_numbered(|i| {
            if i < stuck_from {
                i + 1
            } else {
                stuck_from.max(1)
            }
        });
        assert_eq!(got.len(), sent.len(), "stuck from {stuck_from}");
        assert!(got == sent, "stuck from {stuck_from}: other audio");
        assert_eq!(counts, [1, 0, 0], "invalid, too late, lost");
    }
}

fn a_pause_behind_a_lost_chunk_does_not_delay_the_rest() {
    // (Silence for the lost chunk: concealment would blend into the next.)
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 gap-fill=silence ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
    );
    let codes = distinct_chunks(30, 1);
    let chunks: Vec<&[u8]> = codes.chunks(160).collect();
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, telnyx(&[Track::Inbound]))
            .await
            .unwrap();
        for c in &chunks[..20] {
            call.send_media(c).unwrap();
        }
        // Chunk 21 is lost; 22 and 23 wait behind it in the reorder window.
        call.lose_media(160);
        for c in &chunks[21..23] {
            call.send_media(c).unwrap();
        }
        // Then nothing for 2 s (a provider quiet when idle), its timestamps
        // going on; the fill deadline passes meanwhile.
        call.lose_media(16000);
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        for c in &chunks[23..] {
            call.send_media(c).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    // Everything but chunk 21, in place: the last chunk ends where its
    // timestamp says (30 chunks and the 2 s), not later by the pause.
    let first = got.buffers.first().unwrap().pts().unwrap();
    let last = got.buffers.last().unwrap();
    let end = last.pts().unwrap() + last.duration().unwrap() - first;
    let expected = gst::ClockTime::from_mseconds(30 * 20 + 2000);
    assert!(
        end.nseconds().abs_diff(expected.nseconds()) < 100_000_000,
        "the stream ends at {end}, its timestamps at {expected}"
    );
    // Every chunk but the lost one, once, in order (between them what
    // stands in for chunk 21 and the pause).
    let samples = got.samples();
    let mut from = 0;
    for (i, chunk) in chunks.iter().enumerate().filter(|&(i, _)| i != 20) {
        let chunk = decoded(chunk);
        let at = samples[from..]
            .windows(160)
            .position(|w| w == chunk)
            .unwrap_or_else(|| panic!("chunk {} missing or out of order", i + 1));
        from += at + 160;
        assert!(
            !samples[from..].windows(160).any(|w| w == chunk),
            "chunk {} twice",
            i + 1
        );
    }
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("chunks-too-late"), 0);
    set_state(&p, gst::State::Null);
}

fn with_both_tracks_a_lost_chunk_costs_only_itself() {
    // The chunks after a lost one wait in the reorder window; the aligner
    // must wait for them as long, or it fills their time and drops them.
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both gap-fill=silence ! \
         audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let (inbound, outbound) = (distinct_chunks(50, 0), distinct_chunks(50, 77));
    rt().block_on(async {
        let params = telnyx(&[Track::Inbound, Track::Outbound]);
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        for (i, (a, b)) in inbound.chunks(160).zip(outbound.chunks(160)).enumerate() {
            call.send_media_on(Track::Inbound, a).unwrap();
            match i {
                20 => call.lose_media_on(Track::Outbound, 160),
                _ => call.send_media_on(Track::Outbound, b).unwrap(),
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let (left, right) = split(&got.samples());
    assert_eq!(left, decoded(&inbound));
    let mut heard = decoded(&outbound);
    heard[20 * 160..21 * 160].fill(alaw::decode(alaw::SILENCE));
    let differs = right.iter().zip(&heard).position(|(r, h)| r != h);
    assert!(
        right.len() == heard.len() && differs.is_none(),
        "what the caller hears: chunk 21 alone lost; {} samples, first wrong at {differs:?}",
        right.len()
    );
    let src = by_name(&p, "src");
    let counts = [
        "outbound-chunks-lost",
        "inbound-chunks-lost",
        "chunks-too-late",
    ]
    .map(|c| src.property::<u64>(c));
    assert_eq!(counts, [1, 0, 0], "outbound lost, inbound lost, too late");
    // The wait (100 ms for the default window of 3) is in the latency.
    let mut latency = gst::query::Latency::new();
    assert!(src.query(&mut latency));
    let (live, min, _) = latency.result();
    assert!(live);
    assert_eq!(
        min,
        gst::ClockTime::from_mseconds(20 + 100),
        "a chunk and the wait"
    );
    set_state(&p, gst::State::Null);
}

/// Telnyx's `error` events reach the application: a WARNING on the bus for
/// the first of each code in the call (a flood of one code is one WARNING),
/// and the call goes on.
#[test]
fn telnyx_errors_are_warnings_on_the_bus_once_per_code() {
    let (p, collector, url) = start(PCM8K);
    let bus = p.bus().unwrap();
    let error = |code: u32, title: &str| {
        format!(r#"{{"event":"error","payload":{{"code":{code},"title":"{title}","detail":"d"}}}}"#)
    };
    let codes = distinct_chunks(3, 4);
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, telnyx(&[Track::Inbound]))
            .await
            .unwrap();
        call.send_media(&codes[..160]).unwrap();
        for _ in 0..50 {
            call.send_text(&error(100005, "rate_limit_reached"))
                .unwrap();
        }
        call.send_text(&error(100004, "invalid_media")).unwrap();
        call.send_media(&codes[160..]).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    assert_eq!(collector.wait_eos().samples(), decoded(&codes));
    let told: Vec<String> = drain_messages(&bus)
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        told,
        [
            "telnyx reports error 100005 rate_limit_reached: d",
            "telnyx reports error 100004 invalid_media: d"
        ]
    );
    set_state(&p, gst::State::Null);
}
