//! The README's recording (`twiliostreamsrc ! wavenc ! filesink`) keeps the
//! time of audio lost for longer than the fill deadline: the fill's silence
//! goes out as buffers flagged GAP, which `wavenc` writes. (As GAP events,
//! which `wavenc` ignores, it left the file short by the time the fill
//! covered, and the audio after the loss that much early.)

mod common;

use std::time::Duration;

use common::app::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, TwilioCall};

#[test]
fn a_recording_keeps_the_time_of_a_long_loss() {
    let dir = temp_dir("gap-recording");
    let wav = dir.join("call.wav");
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 gap-fill=silence ! audio/x-raw,rate=8000 \
         ! wavenc ! filesink location={}",
        wav.display()
    ));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let (before, after) = (pattern(1, 10), pattern(2, 10));
    rt().block_on(async {
        let mut call = TwilioCall::start(&url_of(&src), CallParams::default())
            .await
            .unwrap();
        // In real time: 10 chunks, then a second lost (50 chunks), then 10
        // more, each sent when it is due.
        let start = tokio::time::Instant::now();
        let due = |chunk: u64| start + Duration::from_millis(20 * chunk);
        for (i, chunk) in before.chunks(160).enumerate() {
            tokio::time::sleep_until(due(i as u64)).await;
            call.send_media(chunk).unwrap();
        }
        call.lose_media(50 * 160);
        for (i, chunk) in after.chunks(160).enumerate() {
            tokio::time::sleep_until(due(60 + i as u64)).await;
            call.send_media(chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    wait_eos(&p.bus().unwrap());
    set_state(&p, gst::State::Null);
    let samples: Vec<i16> = hound::WavReader::open(&wav)
        .unwrap()
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    // 70 chunks' time at least (more if the audio after the loss came late
    // for time the fill had covered: it goes out after the fill).
    assert!(
        samples.len() >= 70 * 160,
        "{} samples for a call of {}",
        samples.len(),
        70 * 160
    );
    let (head, rest) = samples.split_at(before.len());
    let (silence, tail) = rest.split_at(rest.len() - after.len());
    assert_eq!(head, decode(&before), "the audio before the loss");
    assert!(silence.iter().all(|&s| s == 0), "not silent in the loss");
    assert_eq!(tail, decode(&after), "the audio after the loss");
}
