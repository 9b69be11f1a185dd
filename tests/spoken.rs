//! The README's spoken one-liner, `espeak text="…" ! audioconvert !
//! audioresample ! twiliostreamsink`: the caller hears the sentence, all of
//! it, and the stream ends once it has been played.

mod common;

use std::time::Duration;

use common::*;
use gst::prelude::*;
use twilio_emulator::{Ending, Playout, Script, audio, speech};

const SENTENCE: &str = "Hello, your table for two is booked for eight tonight.";

#[test]
fn espeak_into_a_call_is_heard_whole_then_the_stream_ends() {
    let p = pipeline(&format!(
        "espeak text=\"{SENTENCE}\" ! audioconvert ! audioresample ! twiliostreamsink name=out port=0"
    ));
    set_state(&p, gst::State::Playing);
    let out = by_name(&p, "out");
    // Started by dial(): the sink prerolls and plays.
    let call = sink::dial(&out, Playout::RealTime);
    let script = Script {
        audio: audio::encode(&vec![0; 8 * 8000]),
        linger: Duration::from_secs(2),
        ending: Ending::Stop,
        ..Script::default()
    };
    let report = rt()
        .block_on(twilio_emulator::play::run(call, &script))
        .unwrap();
    let bus = p.bus().unwrap();
    let eos = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(PATIENCE.as_secs()),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    assert!(
        matches!(
            eos.as_ref().map(|m| m.view()),
            Some(gst::MessageView::Eos(_))
        ),
        "{eos:?}"
    );
    set_state(&p, gst::State::Null);

    assert!(report.invalid.is_empty(), "{:?}", report.invalid);
    assert_eq!(
        report.closed_by_plugin,
        Some(Some(1000)),
        "ended after playout"
    );
    assert_eq!(report.marks, ["twiliostream-eos"]);
    // All of the sentence: as long as espeak says it (here through another
    // resampling path), within the resamplers' delays and a partial frame.
    let expected = speech::speak(SENTENCE, "english").unwrap().len() as f64 / 8000.0;
    let heard = audio::decode(&report.playback.played);
    let secs = heard.len() as f64 / 8000.0;
    println!("heard {secs:.3} s, espeak says it in {expected:.3} s");
    assert!(
        (secs - expected).abs() < 0.03,
        "heard {secs} s of {expected} s"
    );
    let rms = (heard.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / heard.len() as f64).sqrt();
    assert!(rms > 1000.0, "rms {rms}: not speech");
}
