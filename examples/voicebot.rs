//! A voice-bot-shaped application built on twiliostream.
//!
//! One pipeline per call:
//!
//! ```text
//! twiliostreamsrc ! queue ! level ! fakesink            (speech-to-text would go here)
//! appsrc (prompts, 24 kHz like most TTS) ! queue ! twiliostreamsink
//! ```
//!
//! The bot greets the caller when `twilio-start` arrives, reads a menu, puts
//! a mark after each prompt and follows playback through the `twilio-mark`
//! echoes. A key press during a prompt interrupts it (barge-in: a flush, which
//! the sink turns into Twilio `clear`), then the bot confirms the digit; `#`
//! says goodbye and, once it has been played, ends the stream (the
//! `end-stream` signal), which hands the call back to the TwiML.
//!
//! Prompts are synthesized tones standing in for text-to-speech.
//!
//! ```sh
//! cargo run --release --example voicebot -- --emulate   # against the Twilio emulator
//! cargo run --release --example voicebot -- --port 8080 # wait for a real call
//! ```

use std::f64::consts::PI;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use gst::prelude::*;
use twilio_emulator::{CallParams, Dialer, Ending, Playout, Script, TwilioCall, audio};

/// The rate the bot "speaks" at, as a typical text-to-speech engine.
const TTS_RATE: usize = 24000;

#[derive(Parser, Debug)]
#[command(about = "A voice-bot-shaped twiliostream application")]
struct Args {
    /// Play the caller with the built-in Twilio emulator (presses 2 during
    /// the greeting, then #) instead of waiting for a real call
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

/// Tone bursts at 24 kHz, with 10 ms fades, standing in for speech.
fn tones(parts: &[(f64, f64)]) -> Vec<i16> {
    let mut out = Vec::new();
    for &(freq, secs) in parts {
        let n = (secs * TTS_RATE as f64) as usize;
        let fade = TTS_RATE / 100;
        out.extend((0..n).map(|i| {
            let env = (i.min(n - i) as f64 / fade as f64).min(1.0);
            if freq == 0.0 {
                0
            } else {
                (9000.0 * env * (2.0 * PI * freq * i as f64 / TTS_RATE as f64).sin()) as i16
            }
        }));
    }
    out
}

fn prompt(name: &str) -> Vec<i16> {
    match name {
        "greeting" => tones(&[
            (523.3, 0.35),
            (0.0, 0.05),
            (659.3, 0.35),
            (0.0, 0.05),
            (784.0, 0.5),
        ]),
        "menu" => tones(&[
            (440.0, 0.6),
            (0.0, 0.1),
            (494.0, 0.6),
            (0.0, 0.1),
            (440.0, 0.9),
        ]),
        "goodbye" => tones(&[
            (784.0, 0.3),
            (0.0, 0.05),
            (659.3, 0.3),
            (0.0, 0.05),
            (523.3, 0.6),
        ]),
        digit => {
            // "You pressed N": N short beeps (10 for 0).
            let n = digit
                .trim_start_matches("digit-")
                .parse::<usize>()
                .unwrap_or(1);
            let beeps: Vec<(f64, f64)> = (0..n.max(1))
                .flat_map(|_| [(880.0, 0.12), (0.0, 0.08)])
                .collect();
            tones(&beeps)
        }
    }
}

struct Bot {
    pipeline: gst::Pipeline,
    tts: gst::Element,
    started: Instant,
    /// Running time the next prompt buffer starts at.
    next_pts: gst::ClockTime,
    /// Prompts queued and not yet played (their marks not echoed).
    speaking: Vec<String>,
    /// Prompts a barge-in cut short.
    interrupted: Vec<String>,
    hang_up_after: Option<String>,
}

impl Bot {
    fn say(&self, line: impl AsRef<str>) {
        println!(
            "[bot {:6.2}s] {}",
            self.started.elapsed().as_secs_f64(),
            line.as_ref()
        );
    }

    /// Queues a prompt in real time from now (or after the prompt playing),
    /// followed by a mark named after it.
    fn play(&mut self, name: &str) {
        let pcm = prompt(name);
        let now = self.pipeline.current_running_time().unwrap_or_default();
        self.next_pts = self.next_pts.max(now);
        self.say(format!(
            "saying {name:?} ({:.2} s) and a mark after it",
            pcm.len() as f64 / TTS_RATE as f64
        ));
        for chunk in pcm.chunks(TTS_RATE / 50) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let duration =
                gst::ClockTime::from_nseconds(chunk.len() as u64 * 1_000_000_000 / TTS_RATE as u64);
            let mut buffer = gst::Buffer::from_mut_slice(bytes);
            {
                let b = buffer.get_mut().unwrap();
                b.set_pts(self.next_pts);
                b.set_duration(duration);
            }
            self.next_pts += duration;
            let _ = self
                .tts
                .emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        }
        // A serialized event: it reaches the sink after the prompt's audio.
        let mark = gst::Structure::builder("twilio-mark")
            .field("name", name)
            .build();
        self.tts.send_event(gst::event::CustomDownstream::new(mark));
        self.speaking.push(name.to_owned());
    }

    /// Barge-in: drop what is queued here and in Twilio (the flush becomes a `clear`).
    fn interrupt(&mut self) {
        self.say(format!("barge-in: stopping {:?}", self.speaking));
        // Their marks come back at once if they reached Twilio, or never if
        // the flush dropped them before the sink.
        self.interrupted.append(&mut self.speaking);
        self.tts.send_event(gst::event::FlushStart::new());
        self.tts.send_event(gst::event::FlushStop::new(false));
        self.next_pts = gst::ClockTime::ZERO;
    }

    /// Handles one bus message; false once the call is over.
    fn handle(&mut self, msg: &gst::Message) -> bool {
        match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { return true };
                match s.name().as_str() {
                    "twilio-start" => {
                        let caller = s
                            .get::<gst::Structure>("custom-parameters")
                            .ok()
                            .and_then(|p| p.get::<String>("caller").ok())
                            .unwrap_or_else(|| "an unknown caller".to_owned());
                        self.say(format!(
                            "call {} from {caller} started",
                            s.get::<String>("call-sid").unwrap_or_default()
                        ));
                        self.play("greeting");
                        self.play("menu");
                    }
                    "twilio-dtmf" => {
                        let digit = s.get::<String>("digit").unwrap_or_default();
                        self.say(format!("caller pressed {digit}"));
                        if !self.speaking.is_empty() {
                            self.interrupt();
                        }
                        if digit == "#" {
                            self.play("goodbye");
                            self.hang_up_after = Some("goodbye".to_owned());
                        } else if digit.chars().all(|c| c.is_ascii_digit()) {
                            self.play(&format!("digit-{digit}"));
                        }
                    }
                    "twilio-mark" => {
                        let name = s.get::<String>("name").unwrap_or_default();
                        let cleared = self.interrupted.contains(&name);
                        self.speaking.retain(|n| *n != name);
                        self.interrupted.retain(|n| *n != name);
                        self.say(format!(
                            "mark {name:?} came back: {}",
                            if cleared {
                                "cleared by the barge-in"
                            } else {
                                "played to the end"
                            }
                        ));
                        if self.hang_up_after.as_deref() == Some(name.as_str()) {
                            // Closing the stream hands the call back to the
                            // TwiML after <Connect><Stream> (a <Dial>, <Say>,
                            // or the end of the call).
                            self.say("goodbye played, ending the stream (end-stream)");
                            let out = self.pipeline.by_name("out").unwrap();
                            out.emit_by_name::<bool>("end-stream", &[&false]);
                        }
                    }
                    "twilio-stop" => {
                        self.say("the caller hung up");
                        return false;
                    }
                    "twilio-ended" => {
                        let reason = s.get::<String>("reason").unwrap_or_default();
                        self.say(format!(
                            "stream ended by the bot ({reason}): Twilio goes on with the TwiML"
                        ));
                        return false;
                    }
                    _ => {}
                }
            }
            gst::MessageView::Warning(w) => self.say(format!("warning: {}", w.error())),
            gst::MessageView::Error(e) => {
                self.say(format!("error: {} ({:?})", e.error(), e.debug()));
                return false;
            }
            gst::MessageView::Eos(_) => return false,
            _ => {}
        }
        true
    }
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    gst::init()?;
    gsttwiliostream::plugin_register_static()?;

    let port = args.port.unwrap_or(if args.emulate { 0 } else { 8080 });
    let pipeline = gst::parse::launch(&format!(
        "twiliostreamsrc name=in host={} port={port} path={} ! queue ! level ! fakesink sync=false \
         appsrc name=tts format=time is-live=true \
            caps=audio/x-raw,format=S16LE,rate={TTS_RATE},channels=1,layout=interleaved \
         ! queue ! twiliostreamsink name=out",
        args.host, args.path
    ))?
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline.by_name("in").unwrap();
    let sink = pipeline.by_name("out").unwrap();
    let mut bot = Bot {
        tts: pipeline.by_name("tts").unwrap(),
        pipeline: pipeline.clone(),
        started: Instant::now(),
        next_pts: gst::ClockTime::ZERO,
        speaking: Vec::new(),
        interrupted: Vec::new(),
        hang_up_after: None,
    };
    pipeline.set_state(gst::State::Playing)?;
    let url = format!(
        "ws://127.0.0.1:{}{}",
        src.property::<u32>("bound-port"),
        src.property::<String>("path")
    );
    bot.say(format!("listening on {url}"));

    // The caller: the emulator dials, talks, presses 2 during the greeting
    // (barge-in), later # (goodbye), and listens until the bot hangs up.
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
                    audio: audio::encode(&audio::tone(220.0, 0.1, 15.0)),
                    dtmf: vec![(0.6, "2".to_owned()), (2.4, "#".to_owned())],
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
