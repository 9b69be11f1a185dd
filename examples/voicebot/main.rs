//! A voice bot built on twiliostream.
//!
//! One pipeline per call:
//!
//! ```text
//! twiliostreamsrc ! queue ! level ! fakesink      (voice activity; speech-to-text would go here)
//! appsrc (prompts: espeak at 24 kHz, like most TTS) ! queue ! twiliostreamsink
//! ```
//!
//! The bot greets the caller when `twilio-start` arrives, reads a menu, puts
//! a mark after each prompt and follows playback through the `twilio-mark`
//! echoes. When the caller starts speaking (`level` against a threshold, with
//! a hang time: `vad.rs`) or presses a key during a prompt, the bot stops
//! talking (barge-in: a flush, which the sink turns into Twilio `clear`) and
//! reports from `twilio-clear` how much of the prompt the caller heard; it
//! answers the end of the caller's turn and confirms digits; `#` says
//! goodbye and, once it has been played, ends the stream (the `end-stream`
//! signal), which hands the call back to the TwiML.
//!
//! Prompts are spoken by GStreamer's `espeak` element (`tts.rs`).
//!
//! ```sh
//! cargo run --release --example voicebot -- --emulate   # against the Twilio emulator
//! cargo run --release --example voicebot -- --port 8080 # wait for a real call
//! ```

mod bot;
mod tts;
mod vad;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gst::prelude::*;
use twilio_emulator::{CallParams, Dialer, Ending, Playout, Script, TwilioCall, audio, speech};

use bot::Bot;

/// What the emulated caller says, and when (seconds into the call).
const CALLER_SAYS: &str = "Hi, I would like to book a table for two, please.";
const CALLER_SPEAKS_AT: f64 = 4.5;
/// The keys the emulated caller presses, and when.
const CALLER_KEYS: [(f64, &str); 2] = [(10.0, "2"), (12.0, "#")];

#[derive(Parser, Debug)]
#[command(about = "A voice-bot-shaped twiliostream application")]
struct Args {
    /// Play the caller with the built-in Twilio emulator (speaks during the
    /// menu, presses 2 during the answer, then #) instead of waiting for a
    /// real call
    #[arg(long)]
    emulate: bool,
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port; the default with --emulate)
    #[arg(long)]
    port: Option<u16>,
    /// URL path of the stream
    #[arg(long, default_value = "/")]
    path: String,
    /// With --emulate: where to write what the caller heard
    #[arg(long, default_value = "target/demo/caller-heard.wav")]
    record: PathBuf,
}

fn stats(element: &gst::Element) -> String {
    let s = element.property::<gst::Structure>("stats");
    s.iter()
        .map(|(k, v)| match (v.get::<u64>(), v.get::<f64>()) {
            (Ok(n), _) => format!("{k}={n}"),
            (_, Ok(x)) => format!("{k}={x:.2}"),
            _ => format!("{k}={v:?}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The bot's pipeline: the caller's audio to `level`, the prompts from the
/// appsrc `tts` into the call.
fn pipeline(host: &str, port: u16, path: &str) -> Result<gst::Pipeline, gst::glib::Error> {
    Ok(gst::parse::launch(&format!(
        "twiliostreamsrc name=in host={host} port={port} path={path} \
            ! queue ! level interval=20000000 ! fakesink sync=false async=false \
         appsrc name=tts format=time is-live=true \
            caps=audio/x-raw,format=S16LE,rate={},channels=1,layout=interleaved \
         ! queue ! twiliostreamsink name=out",
        tts::RATE
    ))?
    .downcast::<gst::Pipeline>()
    .unwrap())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    gst::init()?;
    gsttwiliostream::plugin_register_static()?;

    let port = args.port.unwrap_or(if args.emulate { 0 } else { 8080 });
    // The caller's voice, made before the call: eSpeak is one engine per
    // process, and the bot's prompts use it during the call.
    let caller_audio = if args.emulate {
        let mut pcm = vec![0i16; (CALLER_SPEAKS_AT * 8000.0) as usize];
        pcm.extend(speech::speak(CALLER_SAYS, speech::CALLER_VOICE)?);
        pcm.resize(16 * 8000, 0);
        audio::encode(&pcm)
    } else {
        Vec::new()
    };

    let pipeline = pipeline(&args.host, port, &args.path)?;
    let src = pipeline.by_name("in").unwrap();
    let sink = pipeline.by_name("out").unwrap();
    let mut bot = Bot::new(&pipeline);
    pipeline.set_state(gst::State::Playing)?;
    let url = format!(
        "ws://127.0.0.1:{}{}",
        src.property::<u32>("bound-port"),
        src.property::<String>("path")
    );
    bot.say(format!("listening on {url}"));

    // The caller: the emulator dials, listens, talks during the menu
    // (barge-in), presses 2 during the answer (barge-in), later # (goodbye),
    // and listens until the bot hangs up.
    let caller = args.emulate.then(|| {
        let url = url.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let params = CallParams {
                    custom_parameters: [("caller".to_owned(), "+15550100".to_owned())].into(),
                    ..CallParams::default()
                };
                // Signed, if TWILIO_AUTH_TOKEN makes the plugin check signatures.
                let mut call =
                    TwilioCall::connect_via(&Dialer::from_env(), &url, params, Playout::RealTime)
                        .await
                        .map_err(|e| e.to_string())?;
                call.begin().map_err(|e| e.to_string())?;
                let script = Script {
                    audio: caller_audio,
                    dtmf: CALLER_KEYS
                        .iter()
                        .map(|&(at, key)| (at, key.to_owned()))
                        .collect(),
                    linger: Duration::from_secs(5),
                    ending: Ending::Stop,
                    ..Script::default()
                };
                twilio_emulator::play::run(call, &script)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    });

    let bus = pipeline.bus().unwrap();
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        if !bot.handle(&msg) {
            break;
        }
    }
    bot.say(format!("caller side (twiliostreamsrc): {}", stats(&src)));
    bot.say(format!("bot side (twiliostreamsink): {}", stats(&sink)));
    pipeline.set_state(gst::State::Null)?;

    if let Some(caller) = caller {
        let report = caller.join().unwrap()?;
        let heard = audio::decode(&report.playback.played);
        println!();
        println!("What the emulated caller got (Twilio's playout):");
        for m in &report.playback.marks {
            println!(
                "  mark {:<10} echoed at {:5.2} s, after {:5.2} s of bot audio{}",
                format!("{:?}", m.name),
                m.at.as_secs_f64(),
                m.played_samples as f64 / 8000.0,
                if m.cleared {
                    " (cleared by barge-in)"
                } else {
                    ""
                }
            );
        }
        println!(
            "  {} clear(s) dropped {:.2} s of queued audio",
            report.playback.clears,
            report.playback.cleared_samples as f64 / 8000.0
        );
        if let Some(dir) = args.record.parent() {
            std::fs::create_dir_all(dir)?;
        }
        audio::write_wav(&args.record, &heard, 8000)?;
        println!(
            "  heard {:.2} s of audio: {}",
            heard.len() as f64 / 8000.0,
            args.record.display()
        );
        if !report.invalid.is_empty() {
            return Err(format!("Twilio would have rejected: {:?}", report.invalid).into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A call that ends without `stop` (the connection dropped, or silent
    /// for `idle-timeout`) ends the src's branch with a WARNING and EOS, but
    /// the appsrc's branch goes on, so no EOS reaches the bus: the bot ends
    /// at the src's WARNING instead of waiting for good.
    #[test]
    fn the_bot_ends_when_its_call_drops_without_stop() {
        gst::init().unwrap();
        gsttwiliostream::plugin_register_static().unwrap();
        let pipeline = pipeline("127.0.0.1", 0, "/").unwrap();
        let mut bot = Bot::new(&pipeline);
        pipeline.set_state(gst::State::Playing).unwrap();
        let src = pipeline.by_name("in").unwrap();
        let url = format!("ws://127.0.0.1:{}/", src.property::<u32>("bound-port"));
        let caller = std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async {
                let params = CallParams::default();
                let mut call =
                    TwilioCall::connect_via(&Dialer::default(), &url, params, Playout::RealTime)
                        .await
                        .unwrap();
                call.begin().unwrap();
                // The caller talks over the greeting (the bot stops feeding
                // its appsrc, which the sink would otherwise answer with
                // EOS), then the connection drops.
                let script = Script {
                    audio: audio::encode(&audio::tone(440.0, 0.5, 2.0)),
                    linger: Duration::ZERO,
                    ending: Ending::Drop,
                    ..Script::default()
                };
                twilio_emulator::play::run(call, &script).await.unwrap()
            })
        });

        let bus = pipeline.bus().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while last.is_none() && Instant::now() < deadline {
            if let Some(msg) = bus.timed_pop(gst::ClockTime::from_seconds(1))
                && !bot.handle(&msg)
            {
                last = Some(msg);
            }
        }
        pipeline.set_state(gst::State::Null).unwrap();
        let report = caller.join().unwrap();
        assert!(report.invalid.is_empty(), "{:?}", report.invalid);
        let last = last.expect("the bot went on after its call dropped");
        assert_eq!(report.playback.clears, 1, "no barge-in before the drop");
        assert!(
            matches!(last.view(), gst::MessageView::Warning(w)
                if w.error().matches(gst::ResourceError::Read)),
            "the bot ended at {last:?}"
        );
    }
}
