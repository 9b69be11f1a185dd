//! A spoken caller: text to speech with GStreamer's `espeak` element
//! (libespeak-ng; Debian `gstreamer1.0-espeak`), as 8 kHz PCM ready for
//! μ-law, the way Twilio would carry a voice.

use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gsttwiliostream::codec::Downsampler;

/// The voice the emulated caller speaks with by default (the bots in
/// `examples/` speak espeak's default, British English).
pub const CALLER_VOICE: &str = "en-us";

/// `text` spoken by espeak in `voice`, 8 kHz mono: espeak's 22.05 kHz
/// resampled to 16 kHz by `audioresample`, then to 8 kHz by the plugin's
/// anti-aliasing downsampler (as a WAV file would be).
///
/// eSpeak is one engine per process, not safe to drive from two pipelines at
/// once (a second `espeak` element fails to link meanwhile): calls here are
/// serialized, and an application speaking itself too should not run its
/// own `espeak` pipeline at the same time.
pub fn speak(text: &str, voice: &str) -> Result<Vec<i16>, String> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _engine = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    gst::init().map_err(|e| format!("GStreamer: {e}"))?;
    let espeak = gst::ElementFactory::make("espeak")
        .property("text", text)
        .property("voice", voice)
        .build()
        .map_err(|_| {
            "no espeak element: install Debian's gstreamer1.0-espeak (scripts/lib.sh does)"
                .to_owned()
        })?;
    let pipeline = gst::Pipeline::new();
    let make = |name: &str| {
        gst::ElementFactory::make(name)
            .build()
            .map_err(|e| format!("{name}: {e}"))
    };
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("rate", 16000i32)
                .field("channels", 1i32)
                .build(),
        )
        .build()
        .map_err(|e| format!("capsfilter: {e}"))?;
    let sink = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .map_err(|e| format!("fakesink: {e}"))?;
    let elements = [&espeak, &convert, &resample, &caps, &sink];
    pipeline
        .add_many(elements)
        .and_then(|()| gst::Element::link_many(elements))
        .map_err(|e| format!("espeak pipeline: {e}"))?;

    let bytes = Arc::new(Mutex::new(Vec::<u8>::new()));
    let collected = bytes.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data
                && let Ok(map) = b.map_readable()
            {
                collected.lock().unwrap().extend_from_slice(&map);
            }
            gst::PadProbeReturn::Ok
        });

    let result = run_to_eos(&pipeline);
    let _ = pipeline.set_state(gst::State::Null);
    result?;
    let pcm: Vec<i16> = bytes
        .lock()
        .unwrap()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    if pcm.is_empty() {
        return Err(format!("espeak said nothing for {text:?}"));
    }
    let mut out = Vec::with_capacity(pcm.len() / 2);
    Downsampler::new(16000)
        .expect("16 kHz is supported")
        .process(&pcm, &mut out);
    Ok(out)
}

fn run_to_eos(pipeline: &gst::Pipeline) -> Result<(), String> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("espeak pipeline: {e}"))?;
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .ok_or("espeak did not finish within 30 s")?;
    match msg.view() {
        gst::MessageView::Error(e) => Err(format!("espeak: {} ({:?})", e.error(), e.debug())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Speech has energy in the voice band and pauses between words: the
    /// short-time level varies a lot, unlike a tone or noise.
    #[test]
    fn speaks_a_sentence_at_8k() {
        let pcm = speak("Hello, I would like to book a table for two.", CALLER_VOICE).unwrap();
        let secs = pcm.len() as f64 / 8000.0;
        assert!((1.5..6.0).contains(&secs), "{secs} s");
        let rms: Vec<f64> = pcm
            .chunks(160)
            .map(|c| (c.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / c.len() as f64).sqrt())
            .collect();
        let loud = rms.iter().filter(|&&r| r > 1000.0).count();
        let quiet = rms.iter().filter(|&&r| r < 100.0).count();
        assert!(loud > rms.len() / 3, "{loud} of {} frames loud", rms.len());
        assert!(quiet > 0, "no pause at all");
    }

    #[test]
    fn two_texts_give_different_audio() {
        let a = speak("yes", CALLER_VOICE).unwrap();
        let b = speak("a much longer sentence than yes", CALLER_VOICE).unwrap();
        assert!(b.len() > a.len() * 2, "{} vs {}", a.len(), b.len());
    }
}
