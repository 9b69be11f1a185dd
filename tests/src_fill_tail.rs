//! The resampler's tail before a fill's GAP, beyond `src_timing`'s two
//! cases: 24 kHz, `gap-fill=plc` (one track and both), a loss concealed
//! after the fill, and a last chunk before the silence shorter than the
//! resampler's delay (the tail then goes out over several fills).

mod common;

use std::time::Duration;

use common::src::{check_tails_before_gaps, in_both_modes, items_at_sink, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Track;
use twilio_emulator::audio::encode;
use twilio_emulator::{CallParams, TwilioCall};

in_both_modes!(
    tail_at_24k,
    tail_with_plc,
    tail_after_a_short_last_chunk,
    both_tracks_plc_24k,
    plc_conceals_a_loss_after_the_fill,
);

/// Sends `sizes` chunks (bytes) of `ulaw` every 20 ms, stalling 1.5 s
/// before chunk `stall_at` (the rest then in one write).
fn play(url: &str, ulaw: &[u8], sizes: &[usize], stall_at: usize) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, CallParams::default()).await.unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut at = 0;
        for (n, &size) in sizes.iter().enumerate() {
            if n == stall_at {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                call.hold();
            }
            tick.tick().await;
            call.send_media_on(Track::Inbound, &ulaw[at..at + size])
                .unwrap();
            at += size;
        }
        call.release().unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn run(desc: &str, rate: u32, ulaw: &[u8], sizes: &[usize], stall_at: usize) {
    init();
    let (p, collector, url) = start(desc);
    let items = items_at_sink(&p);
    play(&url, ulaw, sizes, stall_at);
    collector.wait_eos();
    check_tails_before_gaps(&items.lock().unwrap(), &[ulaw], rate);
    set_state(&p, gst::State::Null);
}

fn tail_at_24k() {
    let ulaw = encode(&sine(440.0, 8000.0, 8000.0, 40 * 160));
    run(
        "twiliostreamsrc name=src port=0 gap-fill=silence ! audio/x-raw,rate=24000 \
         ! fakesink name=sink sync=false",
        24000,
        &ulaw,
        &[160; 40],
        20,
    );
}

fn tail_with_plc() {
    let ulaw = encode(&sine(440.0, 8000.0, 8000.0, 40 * 160));
    run(
        "twiliostreamsrc name=src port=0 gap-fill=plc ! audio/x-raw,rate=16000 \
         ! fakesink name=sink sync=false",
        16000,
        &ulaw,
        &[160; 40],
        20,
    );
}

/// The last chunk before the silence is one tick (1 byte): the fill comes
/// a chunk's worth (125 µs) at a time, its first far shorter than the
/// upsampler's delay (21 ticks) unless the timer wakes 2.6 ms late.
fn tail_after_a_short_last_chunk() {
    let mut sizes = vec![160; 20];
    sizes.push(1);
    sizes.extend([160; 19]);
    let total: usize = sizes.iter().sum();
    let ulaw = encode(&sine(440.0, 8000.0, 8000.0, total));
    run(
        "twiliostreamsrc name=src port=0 gap-fill=silence ! audio/x-raw,rate=16000 \
         ! fakesink name=sink sync=false",
        16000,
        &ulaw,
        &sizes,
        21,
    );
}

/// `track=both`, `gap-fill=plc`, 24 kHz: both channels' tails before the GAP.
fn both_tracks_plc_24k() {
    init();
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both gap-fill=plc \
         ! audio/x-raw,rate=24000 ! fakesink name=sink sync=false",
    );
    let items = items_at_sink(&p);
    let inbound = encode(&sine(440.0, 8000.0, 8000.0, 40 * 160));
    let outbound = encode(&sine(660.0, 8000.0, 6000.0, 40 * 160));
    rt().block_on(async {
        let params = CallParams::with_tracks(&[Track::Inbound, Track::Outbound]);
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for n in 0..40 {
            if n == 20 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                call.hold();
            }
            tick.tick().await;
            call.send_media_on(Track::Inbound, &inbound[n * 160..][..160])
                .unwrap();
            call.send_media_on(Track::Outbound, &outbound[n * 160..][..160])
                .unwrap();
        }
        call.release().unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    collector.wait_eos();
    check_tails_before_gaps(&items.lock().unwrap(), &[&inbound, &outbound], 24000);
    set_state(&p, gst::State::Null);
}

/// `gap-fill=plc`, 16 kHz: after the fill (tail out, resampler afresh), a
/// chunk lost in the late audio is still concealed (not silence).
fn plc_conceals_a_loss_after_the_fill() {
    init();
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 gap-fill=plc ! audio/x-raw,rate=16000 \
         ! fakesink name=sink sync=false",
    );
    let items = items_at_sink(&p);
    let ulaw = encode(&sine(440.0, 8000.0, 8000.0, 40 * 160));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for n in 0..40 {
            if n == 20 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
            }
            tick.tick().await;
            if n == 30 {
                call.lose_media_on(Track::Inbound, 160);
                continue;
            }
            call.send_media_on(Track::Inbound, &ulaw[n * 160..][..160])
                .unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    collector.wait_eos();
    let src = by_name(&p, "src");
    assert_eq!(src.property::<u64>("chunks-lost"), 1);
    let items = items.lock().unwrap();
    // The audio after the last GAP: chunks 20.. from its start.
    let last_gap = items.iter().rposition(|i| i.2.is_none()).unwrap();
    let after: Vec<i16> = items[last_gap + 1..]
        .iter()
        .flat_map(|i| i.2.clone().unwrap())
        .collect();
    let lost = &after[10 * 320 + 40..11 * 320];
    let rms = (lost.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / lost.len() as f64).sqrt();
    assert!(
        rms > 1000.0,
        "the loss after the fill was not concealed: rms {rms}"
    );
    set_state(&p, gst::State::Null);
}
