//! Helpers of the `track=both` tests: a stream of both tracks, audio that
//! covers every μ-law code, the two channels apart, and the tracks sent
//! out of step.

use std::time::Duration;

use gst::prelude::*;
use gsttwiliostream::protocol::Track;
use twilio_emulator::{CallParams, TwilioCall};

use super::rt;

/// A src of both tracks, on a port of its own.
pub const BOTH: &str = "twiliostreamsrc name=src port=0 track=both";

/// A frame of Twilio's: both tracks' chunks sent every 20 ms.
pub const FRAME: Duration = Duration::from_millis(20);

pub fn both_tracks() -> CallParams {
    CallParams::with_tracks(&[Track::Inbound, Track::Outbound])
}

/// Scrambled μ-law covering every code, different per `seed`.
pub fn scrambled(len: u32, seed: u32) -> Vec<u8> {
    (0..len).map(|i| ((i * 97 + seed) % 256) as u8).collect()
}

/// Two interleaved channels (samples or μ-law bytes) apart.
pub fn split<T: Copy>(frames: &[T]) -> (Vec<T>, Vec<T>) {
    let left = frames.iter().step_by(2).copied().collect();
    let right = frames.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

/// A counter of the src's, checked against its `stats`.
pub fn counter(src: &gst::Element, name: &str) -> u64 {
    let stats = src.property::<gst::Structure>("stats");
    let value = src.property::<u64>(name);
    assert_eq!(stats.get::<u64>(name).unwrap(), value, "{name}");
    value
}

/// Sends the outbound track `behind` chunks after the inbound one, with
/// the timestamps of its audio, then stop.
pub fn play_apart(url: &str, inbound: &[u8], outbound: &[u8], behind: usize) {
    play_apart_every(url, inbound, outbound, behind, Duration::ZERO);
}

/// [`play_apart`], a frame every `pace` (a lag the src takes for one lasts
/// half a second at least).
pub fn play_apart_every(url: &str, inbound: &[u8], outbound: &[u8], behind: usize, pace: Duration) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, both_tracks()).await.unwrap();
        let chunks: Vec<_> = inbound.chunks(160).zip(outbound.chunks(160)).collect();
        for n in 0..chunks.len() + behind {
            if let Some((i, _)) = chunks.get(n) {
                call.send_media_on(Track::Inbound, i).unwrap();
            }
            if let Some((_, o)) = n.checked_sub(behind).and_then(|m| chunks.get(m)) {
                call.send_media_on(Track::Outbound, o).unwrap();
            }
            if !pace.is_zero() {
                tokio::time::sleep(pace).await;
            }
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}
