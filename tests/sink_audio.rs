//! twiliostreamsink end to end, the audio it plays: resampling to 8 kHz without aliasing,
//! a file played into a call until Twilio played it all (EOS), pacing with and without sync.

mod common;

use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{Playout, Received};

/// Plays `pcm` at `rate` into a sink on its own and returns what Twilio got.
fn play_at_rate(rate: u32, pcm: &[i16]) -> Vec<i16> {
    let mut h = sink_harness(&format!(
        "audio/x-raw,format=S16LE,rate={rate},channels=1,layout=interleaved"
    ));
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    for chunk in pcm.chunks(1024) {
        h.push(pcm_buffer(chunk)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    // Everything, plus the resampler's tail flushed at EOS.
    let expected = pcm.len() * 8000 / rate as usize;
    let got = receive_until(&mut call, |got| media_bytes(got).len() > expected);
    decode(&media_bytes(&got))
}

#[test]
fn pcm_at_16_24_48_khz_becomes_8khz_with_the_right_tone() {
    for rate in [16000u32, 24000, 48000] {
        let out = play_at_rate(rate, &sine(1000.0, rate as f64, 16000.0, rate as usize));
        assert!(
            out.len() >= 8000 && out.len() < 8040,
            "{rate}: {} samples",
            out.len()
        );
        let window = &out[1000..7000];
        let tone = amplitude(window, 1000.0);
        assert!(
            (tone / 16000.0 - 1.0).abs() < 0.02,
            "{rate}: 1 kHz at {tone}"
        );
        for other in [500.0, 2000.0, 3000.0] {
            let level = 20.0 * (amplitude(window, other) / 16000.0).log10();
            assert!(level < -40.0, "{rate}: {other} Hz at {level} dB");
        }
    }
}

#[test]
fn a_5khz_tone_at_16khz_does_not_fold_to_3khz() {
    // Dropping every second sample would put this tone at 3 kHz, full scale.
    let out = play_at_rate(16000, &sine(5000.0, 16000.0, 16000.0, 16000));
    let level = 20.0 * (amplitude(&out[1000..7000], 3000.0) / 16000.0).log10();
    // μ-law of silence is exact zeros: anything here would be aliasing.
    assert!(level < -80.0, "3 kHz at {level} dB");
    assert!(
        out[1000..7000].iter().all(|&s| s.abs() <= 16),
        "residue {:?}",
        &out[1000..1010]
    );
}

#[test]
fn a_lone_sink_plays_a_file_into_a_call() {
    init();
    let dir = std::env::temp_dir().join(format!("twiliostream-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("prompt.wav");
    let pcm = sine(700.0, 16000.0, 12000.0, 16000);
    twilio_emulator::audio::write_wav(&wav, &pcm, 16000).unwrap();

    let p = pipeline(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! twiliostreamsink name=sink port=0 path=/play",
        wav.display()
    ));
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let sink = by_name(&p, "sink");
    let mut call = dial(&sink, Playout::RealTime);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 8000);
    let heard = decode(&media_bytes(&got));
    let tone = amplitude(&heard[1000..7000], 700.0);
    assert!((tone / 12000.0 - 1.0).abs() < 0.02, "700 Hz at {tone}");
    // Paced in real time (sync=true): Twilio's queue never held much.
    assert!(
        call.playback().max_queued < 4000,
        "queue {}",
        call.playback().max_queued
    );
    let mut messages = Vec::new();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(PATIENCE.as_secs()))
            .expect("no EOS");
        let eos = matches!(msg.view(), gst::MessageView::Eos(_));
        messages.push(msg);
        if eos {
            break;
        }
    }
    // The sink took the call itself, so it posts the call's messages.
    let start = element_messages(&messages, "twilio-start");
    assert_eq!(
        start[0].get::<String>("call-sid").unwrap(),
        call.params.call_sid
    );
    // EOS came only once Twilio had played everything: hanging up now cuts nothing.
    p.set_state(gst::State::Null).unwrap();
    let rest = receive_until(&mut call, |got| {
        matches!(got.last(), Some(Received::Closed(_)))
    });
    let sent = media_bytes(&got).len() + media_bytes(&rest).len();
    assert!(sent >= 8000, "{sent}");
    let playback = call.playback();
    assert_eq!(
        playback.played.len(),
        sent,
        "Twilio had not played everything"
    );
    assert_eq!(playback.marks.last().unwrap().name, "twiliostream-eos");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_source_faster_than_real_time_is_paced_by_max_lead() {
    for (lead_ms, frames_over) in [(100u64, 2u64), (500, 2)] {
        let mut h =
            sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
        let sink = h.element().unwrap();
        sink.set_property("max-lead", lead_ms as u32);
        let mut call = dial(&sink, Playout::RealTime);
        // Two seconds at once: the sink takes them without waiting.
        h.push(pcm_buffer(&vec![1000; 8000])).unwrap();
        h.push(pcm_buffer(&vec![1000; 8000])).unwrap();
        receive_until(&mut call, |got| media_bytes(got).len() >= 16000);
        // Twilio never held more than the lead, plus the frame that went
        // out just under it and the 20 ms its playout steps by.
        let max_queued = call.playback().max_queued as u64;
        assert!(
            max_queued <= 8 * (lead_ms + 20 * frames_over),
            "lead {lead_ms} ms: Twilio held {max_queued} samples"
        );
        assert!(
            max_queued >= 8 * lead_ms,
            "lead {lead_ms} ms: Twilio held only {max_queued} samples"
        );
    }
}

#[test]
fn a_buffer_longer_than_the_writer_holds_goes_out_whole_and_paced() {
    init();
    // 45 s in one buffer, in 1 ms frames: about 6 MB of messages, past the
    // writer's 4 MiB limit had they gone to it at once.
    let p = pipeline(
        "appsrc name=app format=time \
         caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved ! \
         twiliostreamsink name=sink port=0 chunk-duration=1",
    );
    set_state(&p, gst::State::Playing);
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    let mut call = dial(&sink, Playout::RealTime);
    let tone = sine(440.0, 8000.0, 8000.0, 45 * 8000);
    let ret = app.emit_by_name::<gst::FlowReturn>("push-buffer", &[&pcm_buffer(&tone)]);
    assert_eq!(ret, gst::FlowReturn::Ok);
    // The first 2 s come in order, and nothing was dropped on the way.
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 2 * 8000);
    assert_eq!(sink.property::<u64>("chunks-dropped"), 0);
    let sent = media_bytes(&got);
    let expected = twilio_emulator::audio::encode(&tone[..sent.len()]);
    assert_eq!(sent, expected);
    // Stopping does not wait for the rest.
    set_state(&p, gst::State::Null);
}

/// PLAYING → PAUSED stops the audio: the writer holds what the sink gave
/// it, Twilio plays out only what it held (the lead), and PLAYING again
/// goes on where it stopped, nothing lost.
#[test]
fn pausing_the_sink_pauses_the_call_and_playing_goes_on() {
    init();
    let p = pipeline(
        "appsrc name=app format=time \
         caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved ! \
         twiliostreamsink name=sink port=0 async=false",
    );
    set_state(&p, gst::State::Playing);
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    let mut call = dial(&sink, Playout::RealTime);
    // 2 s at once: the writer paces it to real time.
    let tone = sine(440.0, 8000.0, 8000.0, 2 * 8000);
    let ret = app.emit_by_name::<gst::FlowReturn>("push-buffer", &[&pcm_buffer(&tone)]);
    assert_eq!(ret, gst::FlowReturn::Ok);
    let first = receive_until(&mut call, |got| !media_bytes(got).is_empty());
    let began = std::time::Instant::now();
    let mut got = receive_until(&mut call, |got| media_bytes(got).len() >= 4000);
    set_state(&p, gst::State::Paused);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    set_state(&p, gst::State::Playing);
    got.extend(receive_until(&mut call, |more| {
        media_bytes(&first).len() + media_bytes(&got).len() + media_bytes(more).len() >= 2 * 8000
    }));
    // Without the pause the last frame would come about 1.9 s after the
    // first (the lead ahead of real time); the pause adds its 1.5 s less
    // the lead Twilio played out meanwhile.
    let took = began.elapsed();
    assert!(took >= std::time::Duration::from_millis(2900), "{took:?}");
    let mut sent = media_bytes(&first);
    sent.extend(media_bytes(&got));
    assert_eq!(
        sent,
        twilio_emulator::audio::encode(&tone),
        "all of it, once, in order"
    );
    set_state(&p, gst::State::Null);
}
