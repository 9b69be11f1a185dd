//! twiliostreamsrc's call quality end to end: a lost chunk of voiced audio
//! concealed (`gap-fill=plc`, at 8 and 16 kHz, in the call's own μ-law and
//! per track) or left silent (`silence`), the audio around it untouched;
//! `twilio-quality` reports by
//! stream time with the loss injected, and the final figures in
//! `twilio-stop`; `late-chunks` after steps in the timestamps (and one
//! track's audio across a step ahead); in both push modes.

mod common;

use common::src::{assert_contiguous, in_both_modes, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::{Inbound, Track};
use std::time::Duration;
use twilio_emulator::audio::{decode, encode};
use twilio_emulator::{CallParams, TwilioCall};

in_both_modes!(
    a_lost_chunk_is_concealed_close_to_the_signal_at_8k,
    a_lost_chunk_is_silence_with_gap_fill_silence,
    a_lost_chunk_is_concealed_at_16k,
    a_lost_chunk_is_concealed_in_the_calls_own_mulaw,
    a_loss_past_the_fill_deadline_is_not_concealed_late,
    both_tracks_conceal_the_track_that_lost_only,
    quality_reports_follow_stream_time_and_count_the_loss,
    after_a_step_back_on_time_chunks_are_not_late,
    after_a_step_back_in_one_of_both_tracks_on_time_chunks_are_not_late,
    a_chunk_dropped_before_a_step_ahead_is_judged_by_its_own_timestamp,
    timestamps_back_home_after_a_step_back_are_no_gap,
    a_step_ahead_is_no_gap_and_adds_no_latency,
);

/// The chunk lost: 200–220 ms.
const LOST: usize = 10;
/// Samples after the loss the concealment is blended into the audio:
/// a quarter pitch period and 4 ms (at most 10 ms).
const BLEND: usize = 80;

/// A voiced sound: 100 Hz and its next two harmonics, 1 s at 8 kHz.
fn voiced() -> Vec<i16> {
    (0..8000)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let w = 2.0 * std::f64::consts::PI * 100.0 * t;
            (6000.0 * w.sin() + 3000.0 * (2.0 * w).sin() + 1500.0 * (3.0 * w).sin()) as i16
        })
        .collect()
}

/// Plays `ulaw` in 20 ms chunks on `tracks` as fast as possible, losing
/// chunk `LOST` of the inbound track, then stop.
fn play_losing(url: &str, tracks: &[Track], ulaw: &[u8]) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, CallParams::with_tracks(tracks))
            .await
            .unwrap();
        for (i, chunk) in ulaw.chunks(160).enumerate() {
            for &track in tracks {
                if i == LOST && track == Track::Inbound {
                    call.lose_media_on(track, 160);
                } else {
                    call.send_media_on(track, chunk).unwrap();
                }
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

/// Runs one call through `desc` losing chunk `LOST`: the samples out.
fn run(desc: &str, tracks: &[Track], ulaw: &[u8]) -> (gst::Pipeline, Vec<i16>) {
    let (p, collector, url) = start(desc);
    play_losing(&url, tracks, ulaw);
    let got = collector.wait_eos();
    (p, got.samples())
}

fn f64s(x: &[i16]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

fn gap() -> std::ops::Range<usize> {
    LOST * 160..(LOST + 1) * 160
}

/// Concealment at 8 kHz: the audio before the loss and after the blend is
/// the G.191 decode bit for bit; the lost chunk is close to what was lost.
fn assert_concealed(got: &[i16], expected: &[i16]) {
    assert_eq!(got.len(), expected.len());
    let gap = gap();
    assert_eq!(got[..gap.start], expected[..gap.start], "before the loss");
    assert_eq!(got[gap.end + BLEND..], expected[gap.end + BLEND..], "after");
    let snr = snr_db(&f64s(&expected[gap.clone()]), &f64s(&got[gap.clone()]));
    assert!(snr > 10.0, "concealment {snr:.1} dB from the signal");
    let blend = snr_db(
        &f64s(&expected[gap.end..gap.end + BLEND]),
        &f64s(&got[gap.end..gap.end + BLEND]),
    );
    assert!(blend > 10.0, "the blend back {blend:.1} dB from the signal");
}

fn a_lost_chunk_is_concealed_close_to_the_signal_at_8k() {
    let ulaw = encode(&voiced());
    let (p, got) = run(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
        &[Track::Inbound],
        &ulaw,
    );
    assert_concealed(&got, &decode(&ulaw));
    assert_eq!(by_name(&p, "src").property::<u64>("chunks-lost"), 1);
    set_state(&p, gst::State::Null);
}

fn a_lost_chunk_is_silence_with_gap_fill_silence() {
    let ulaw = encode(&voiced());
    let (p, got) = run(
        "twiliostreamsrc name=src port=0 gap-fill=silence ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
        &[Track::Inbound],
        &ulaw,
    );
    let mut expected = decode(&ulaw);
    expected[gap()].fill(0);
    assert_eq!(got, expected);
    set_state(&p, gst::State::Null);
}

fn a_lost_chunk_is_concealed_at_16k() {
    let ulaw = encode(&voiced());
    let desc = |fill: &str| {
        format!(
            "twiliostreamsrc name=src port=0 gap-fill={fill} ! audio/x-raw,rate=16000 ! \
             fakesink name=sink sync=false"
        )
    };
    // What the lost chunk would have been: the same call with nothing lost
    // (silence mode does not touch received audio either).
    let (p, whole) = {
        let (p, collector, url) = start(&desc("silence"));
        rt().block_on(async {
            let mut call = TwilioCall::start(&url, CallParams::default())
                .await
                .unwrap();
            for chunk in ulaw.chunks(160) {
                call.send_media(chunk).unwrap();
            }
            call.send_stop().unwrap();
            call.close().await;
        });
        (p, collector.wait_eos().samples())
    };
    set_state(&p, gst::State::Null);
    let (p, concealed) = run(&desc("plc"), &[Track::Inbound], &ulaw);
    set_state(&p, gst::State::Null);
    let (p, silent) = run(&desc("silence"), &[Track::Inbound], &ulaw);
    set_state(&p, gst::State::Null);
    // The lost 20 ms at 16 kHz, inside the upsampler's delay either side.
    let gap = 2 * gap().start + 100..2 * gap().end;
    let reference = f64s(&whole[gap.clone()]);
    let snr = snr_db(&reference, &f64s(&concealed[gap.clone()]));
    let silence = snr_db(&reference, &f64s(&silent[gap.clone()]));
    assert!(snr > 10.0, "concealment {snr:.1} dB from the signal");
    assert!(silence.abs() < 1.0, "silence {silence:.1} dB");
    assert_eq!(concealed[..2 * LOST * 160], whole[..2 * LOST * 160]);
}

fn a_lost_chunk_is_concealed_in_the_calls_own_mulaw() {
    let ulaw = encode(&voiced());
    for fill in ["plc", "silence"] {
        let (p, collector, url) = start(&format!(
            "twiliostreamsrc name=src port=0 gap-fill={fill} ! audio/x-mulaw ! \
             fakesink name=sink sync=false"
        ));
        play_losing(&url, &[Track::Inbound], &ulaw);
        let got = collector.wait_eos().bytes();
        if fill == "plc" {
            // Byte for byte but where the loss and the blend are encoded.
            assert_concealed(&decode(&got), &decode(&ulaw));
        } else {
            let mut expected = ulaw.clone();
            expected[gap()].fill(0xFF);
            assert_eq!(got, expected);
        }
        set_state(&p, gst::State::Null);
    }
}

/// 400 ms lost (20 chunk numbers skipped), the sender quiet meanwhile: the
/// fill deadline (300 ms) sends a GAP for the first of it; the rest comes
/// with the next chunk. It is silence, as the GAP was: not a concealment
/// of the audio before the loss, starting that late.
fn a_loss_past_the_fill_deadline_is_not_concealed_late() {
    for output in ["audio/x-raw,rate=8000", "audio/x-mulaw"] {
        let (p, collector, url) = start(&format!(
            "twiliostreamsrc name=src port=0 ! {output} ! fakesink name=sink sync=false"
        ));
        let ulaw = encode(&voiced());
        rt().block_on(async {
            let mut call = TwilioCall::start(&url, CallParams::default())
                .await
                .unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for (n, chunk) in ulaw.chunks(160).take(30).enumerate() {
                if n == 20 {
                    call.lose_media(20 * 160);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                }
                tick.tick().await;
                call.send_media(chunk).unwrap();
            }
            call.send_stop().unwrap();
            call.close().await;
        });
        let got = collector.wait_eos();
        let first = got.buffers[0].pts().unwrap();
        let lost =
            first + gst::ClockTime::from_mseconds(400)..first + gst::ClockTime::from_mseconds(800);
        let silence = if output.contains("mulaw") { 0xFF } else { 0 };
        let width = if output.contains("mulaw") { 1 } else { 2 };
        let mut heard = 0;
        for buffer in &got.buffers {
            let pts = buffer.pts().unwrap();
            let map = buffer.map_readable().unwrap();
            for (i, sample) in map.chunks_exact(width).enumerate() {
                let at = pts + gst::ClockTime::from_nseconds(i as u64 * 125_000);
                if lost.contains(&at) {
                    heard += 1;
                    assert!(
                        sample.iter().all(|&b| b == silence),
                        "{output}: {sample:?} at {} ms into the loss",
                        (at - lost.start).mseconds()
                    );
                }
            }
        }
        // The loss's time was partly a GAP, the rest in a buffer.
        assert!((800..3200).contains(&heard), "{output}: {heard} samples");
        set_state(&p, gst::State::Null);
    }
}

fn both_tracks_conceal_the_track_that_lost_only() {
    let ulaw = encode(&voiced());
    let (p, got) = run(
        "twiliostreamsrc name=src port=0 track=both ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
        &[Track::Inbound, Track::Outbound],
        &ulaw,
    );
    let inbound: Vec<i16> = got.iter().step_by(2).copied().collect();
    let outbound: Vec<i16> = got.iter().skip(1).step_by(2).copied().collect();
    assert_concealed(&inbound, &decode(&ulaw));
    assert_eq!(outbound, decode(&ulaw));
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("inbound-chunks-lost"), 1);
    let stats = src.property::<gst::Structure>("stats");
    for field in ["inbound-jitter", "outbound-jitter", "jitter", "mos"] {
        assert!(stats.get::<f64>(field).is_ok(), "{field} in {stats}");
    }
    set_state(&p, gst::State::Null);
}

/// The figures of a `twilio-quality` stretch: (received, lost, loss %).
fn counts(s: &gst::Structure, stretch: &str) -> (u64, u64, f64) {
    let f = s.get::<gst::Structure>(stretch).unwrap();
    (
        f.get("chunks-received").unwrap(),
        f.get("chunks-lost").unwrap(),
        f.get("loss-percent").unwrap(),
    )
}

fn quality_reports_follow_stream_time_and_count_the_loss() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 quality-interval=1 latency=100 ! \
         audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    // 3 s; chunks 60–64 (in the second second) lost.
    let ulaw = encode(&common::sine(440.0, 8000.0, 8000.0, 3 * 8000));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for (i, chunk) in ulaw.chunks(160).enumerate() {
            if (60..65).contains(&i) {
                call.lose_media(160);
            } else {
                call.send_media(chunk).unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    collector.wait_eos();
    let messages = drain_messages(&p.bus().unwrap());
    let reports = element_messages(&messages, "twilio-quality");
    let intervals: Vec<_> = reports.iter().map(|r| counts(r, "interval")).collect();
    assert_eq!(
        intervals,
        [(50, 0, 0.0), (45, 5, 10.0), (50, 0, 0.0)],
        "one report per second of audio"
    );
    let calls: Vec<_> = reports.iter().map(|r| counts(r, "call")).collect();
    assert_eq!(calls[2], (145, 5, 5.0 / 150.0 * 100.0));
    let mos: Vec<f64> = reports
        .iter()
        .map(|r| {
            r.get::<gst::Structure>("interval")
                .unwrap()
                .get("mos")
                .unwrap()
        })
        .collect();
    assert!(mos[1] < mos[0] && mos[0] <= 4.5 && mos[1] >= 1.0, "{mos:?}");
    for r in &reports {
        let interval = r.get::<gst::Structure>("interval").unwrap();
        // Sent as fast as possible, well within 100 ms: none late.
        assert_eq!(interval.get::<u64>("late-chunks").unwrap(), 0);
        assert!(interval.get::<f64>("jitter").unwrap() >= 0.0);
    }
    // twilio-stop carries the call's final figures.
    let stop = element_messages(&messages, "twilio-stop");
    let stats = stop[0].get::<gst::Structure>("stats").unwrap();
    assert_eq!(stats.get::<f64>("loss-percent").unwrap(), calls[2].2);
    let src = by_name(&p, "src");
    assert_eq!(stats.get::<f64>("mos").unwrap(), src.property::<f64>("mos"));
    assert_eq!(src.property::<u64>("late-chunks"), 0);
    set_state(&p, gst::State::Null);
}

/// The step tests' call: 2 s of a tone.
fn step_tone() -> Vec<u8> {
    encode(&common::sine(440.0, 8000.0, 8000.0, 2 * 8000))
}

/// Plays [`step_tone`] on `tracks` in real time (a chunk of each every
/// 20 ms), the inbound track's chunk `n` stamped `shift(n)` ms off, then
/// stop. The src's `late-chunks`, `twilio-stop`'s, and the src's
/// `chunks-lost` and `chunks-too-late`.
fn play_shifted(desc: &str, tracks: &[Track], shift: impl Fn(usize) -> i64) -> [u64; 4] {
    play_shifted_out(desc, tracks, shift).0
}

/// [`play_shifted`], and what reached the sink.
fn play_shifted_out(
    desc: &str,
    tracks: &[Track],
    shift: impl Fn(usize) -> i64,
) -> ([u64; 4], Collected) {
    let (p, collector, url) = start(desc);
    let ulaw = step_tone();
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::with_tracks(tracks))
            .await
            .unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for (n, chunk) in ulaw.chunks(160).enumerate() {
            tick.tick().await;
            for &track in tracks {
                let mut message = call.media_message_on(track, chunk);
                if let Inbound::Media { media, .. } = &mut message
                    && track == Track::Inbound
                {
                    let stamped = media.timestamp.0.checked_add_signed(shift(n));
                    media.timestamp.0 = stamped.unwrap();
                }
                call.send(&message).unwrap();
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let messages = drain_messages(&p.bus().unwrap());
    let stop = element_messages(&messages, "twilio-stop");
    let stats = stop[0].get::<gst::Structure>("stats").unwrap();
    let src = by_name(&p, "src");
    let counts = [
        src.property("late-chunks"),
        stats.get("late-chunks").unwrap(),
        src_counter(&src, "chunks-lost"),
        src_counter(&src, "chunks-too-late"),
    ];
    set_state(&p, gst::State::Null);
    (counts, got)
}

fn src_counter(src: &gst::Element, name: &str) -> u64 {
    src.property::<gst::Structure>("stats").get(name).unwrap()
}

/// The step tests' pipelines: one track against a reported 700 ms; both,
/// against 20 ms, 620 ms and the 60 ms track-wait.
const STEP_MONO: &str = "twiliostreamsrc name=src port=0 latency=680 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false";
const STEP_BOTH: &str = "twiliostreamsrc name=src port=0 track=both latency=620 ! \
     audio/x-raw,rate=8000 ! fakesink name=sink sync=false";

/// The inbound track's timestamps stepped 1 s back from its 51st chunk on.
fn stepping_back(n: usize) -> i64 {
    if n >= 50 { -1000 } else { 0 }
}

/// Chunks sent in real time, judged against a reported latency of 700 ms:
/// without the step taken into account each of the 50 after it would be
/// 1 s late; on time, none is (a chunk would have to be held up 700 ms).
fn after_a_step_back_on_time_chunks_are_not_late() {
    let counts = play_shifted(STEP_MONO, &[Track::Inbound], stepping_back);
    assert_eq!(counts, [0; 4], "late, late at stop, lost, too late");
}

/// One track: its timestamps 1 s back for chunks 51–75, then home again:
/// no gap (no second of silence, no 50 chunks lost), none late.
fn timestamps_back_home_after_a_step_back_are_no_gap() {
    let counts = play_shifted(STEP_MONO, &[Track::Inbound], |n| {
        if (50..75).contains(&n) { -1000 } else { 0 }
    });
    assert_eq!(counts, [0; 4], "late, late at stop, lost, too late");
}

/// One track: its timestamps 1 s ahead from its 51st chunk on, the chunks
/// still sent in real time and numbered on: a step, measured anew. The
/// audio goes on as sent (no second of silence or concealment, none lost),
/// its buffers 2 s long in all (the output no later in running time), none
/// late.
fn a_step_ahead_is_no_gap_and_adds_no_latency() {
    let stepping_ahead = |n: usize| if n >= 50 { 1000 } else { 0 };
    let (counts, got) = play_shifted_out(STEP_MONO, &[Track::Inbound], stepping_ahead);
    assert_eq!(counts, [0; 4], "late, late at stop, lost, too late");
    assert_eq!(got.samples(), decode(&step_tone()));
    assert_contiguous(&got.buffers);
    let first = got.buffers[0].pts().unwrap();
    let last = got.buffers.last().unwrap();
    let end = last.pts().unwrap() + last.duration().unwrap();
    assert_eq!(end - first, gst::ClockTime::from_seconds(2));
    let discont = got.buffers[1..]
        .iter()
        .filter(|b| b.flags().contains(gst::BufferFlags::DISCONT));
    assert_eq!(discont.count(), 0, "DISCONT after the first buffer");
}

/// The same with `track=both`, the outbound track untouched: 20 ms, 620 ms
/// and the 60 ms track-wait reported.
fn after_a_step_back_in_one_of_both_tracks_on_time_chunks_are_not_late() {
    let counts = play_shifted(STEP_BOTH, &[Track::Inbound, Track::Outbound], stepping_back);
    assert_eq!(counts, [0; 4], "late, late at stop, lost, too late");
}

/// `track=both`: the inbound track's 51st chunk stamped 60 ms back (over
/// its audio with other bytes: kept back, then dropped, out of place), the
/// chunks after it 1 s ahead (a step: its audio goes on). The one dropped
/// is judged by its own timestamp, 60 ms off, not by the step's 1 s.
fn a_chunk_dropped_before_a_step_ahead_is_judged_by_its_own_timestamp() {
    let counts = play_shifted(STEP_BOTH, &[Track::Inbound, Track::Outbound], |n| match n {
        50 => -60,
        51.. => 1000,
        _ => 0,
    });
    // (The track one chunk short of the other at the end: one lost.)
    assert_eq!(counts, [0, 0, 1, 1], "late, late at stop, lost, too late");
}

/// gst-inspect's default for `mos` is what a new src reads: the estimate
/// for its reported latency with nothing lost, below the ceiling of 4.5.
#[test]
fn a_new_src_reads_the_declared_default_mos() {
    init();
    let src = gst::ElementFactory::make("twiliostreamsrc")
        .build()
        .unwrap();
    let pspec = src.find_property("mos").unwrap();
    let declared = pspec.default_value().get::<f64>().unwrap();
    assert_eq!(src.property::<f64>("mos"), declared);
    assert!(declared > 4.0 && declared < 4.5, "{declared}");
    // A different latency gives a different estimate, so the default is
    // computed, not a constant that happens to match.
    src.set_property("latency", 400u32);
    assert!(src.property::<f64>("mos") < declared);
}

/// Before a run, `mos` is the estimate for the latency the src would
/// report, which with `track=both` counts the wait for the slower track:
/// as much as that wait added to `latency`.
#[test]
fn before_a_run_mos_counts_the_track_wait_of_track_both() {
    init();
    let both = gst::ElementFactory::make("twiliostreamsrc")
        .property_from_str("track", "both")
        .build()
        .unwrap();
    let wait = both.property::<u32>("track-wait");
    assert!(wait > 0);
    let waiting = gst::ElementFactory::make("twiliostreamsrc")
        .property("latency", wait)
        .build()
        .unwrap();
    let mos = both.property::<f64>("mos");
    assert_eq!(mos, waiting.property::<f64>("mos"));
    let pspec = both.find_property("mos").unwrap();
    assert!(mos < pspec.default_value().get::<f64>().unwrap(), "{mos}");
}
