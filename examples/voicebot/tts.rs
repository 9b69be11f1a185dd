//! Text to speech with GStreamer's `espeak` element (libespeak-ng; Debian
//! `gstreamer1.0-espeak`): a short pipeline per prompt, run to its end, as
//! a bot would call a TTS engine and get its audio back.

use std::sync::{Arc, Mutex};

use gst::prelude::*;

/// The rate prompts are made at, as most TTS engines give it.
pub const RATE: usize = 24000;

/// `text` spoken by espeak (its default voice), mono S16 at [`RATE`].
pub fn synthesize(text: &str) -> Result<Vec<i16>, String> {
    let pipeline = gst::parse::launch(&format!(
        "espeak name=voice ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,rate={RATE},channels=1 ! fakesink name=out sync=false"
    ))
    .map_err(|e| format!("{e} (is gstreamer1.0-espeak installed?)"))?
    .downcast::<gst::Pipeline>()
    .unwrap();
    pipeline
        .by_name("voice")
        .unwrap()
        .set_property("text", text);
    let bytes = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink_bytes = bytes.clone();
    let pad = pipeline.by_name("out").unwrap().static_pad("sink").unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(b)) = &info.data
            && let Ok(map) = b.map_readable()
        {
            sink_bytes.lock().unwrap().extend_from_slice(&map);
        }
        gst::PadProbeReturn::Ok
    });
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| e.to_string())?;
    let msg = pipeline.bus().unwrap().timed_pop_filtered(
        gst::ClockTime::from_seconds(30),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    let _ = pipeline.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => return Err(e.error().to_string()),
        _ => return Err("espeak did not finish".to_owned()),
    }
    let pcm: Vec<i16> = bytes
        .lock()
        .unwrap()
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(pcm)
}
