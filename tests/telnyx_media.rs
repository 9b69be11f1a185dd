//! Telnyx's media into the src, end to end over real loopback WebSockets:
//! tracks its `start` does not name, chunk numbers that do not follow its
//! timestamps, and a pause behind a lost chunk in the reorder window.
//! (Out-of-order media and the window itself: `providers.rs`.)

mod common;

use common::src::{assert_contiguous, in_both_modes, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::codec::{WireFormat, alaw};
use gsttwiliostream::protocol::Track;
use twilio_emulator::{CallParams, Provider, TwilioCall};

in_both_modes!(
    telnyx_both_tracks_come_out_in_their_channels,
    telnyx_outbound_track_alone_comes_out,
    telnyx_inbound_alone_leaves_a_silent_channel_with_track_both,
);

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

/// Two interleaved channels apart.
fn split(frames: &[i16]) -> (Vec<i16>, Vec<i16>) {
    let left = frames.iter().step_by(2).copied().collect();
    let right = frames.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

fn telnyx_both_tracks_come_out_in_their_channels() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    let (inbound, outbound) = (distinct_chunks(50, 0), distinct_chunks(50, 77));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, telnyx(&[Track::Inbound, Track::Outbound]))
            .await
            .unwrap();
        for (i, o) in inbound.chunks(160).zip(outbound.chunks(160)) {
            call.send_media_on(Track::Inbound, i).unwrap();
            call.send_media_on(Track::Outbound, o).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
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
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, telnyx(&[Track::Outbound]))
            .await
            .unwrap();
        for o in outbound.chunks(160) {
            call.send_media_on(Track::Outbound, o).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
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
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, telnyx(&[Track::Inbound]))
            .await
            .unwrap();
        for i in inbound.chunks(160) {
            call.send_media_on(Track::Inbound, i).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
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
