//! The bot's turn-taking: what it says when, barge-in when the caller speaks
//! or presses a key, and the transcript (printed as it goes).

use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;

use crate::tts;
use crate::vad::{Turn, Vad};

/// A prompt sent to the call, in running time of the outbound stream.
#[derive(Debug, Clone)]
struct Prompt {
    name: String,
    start: gst::ClockTime,
    duration: gst::ClockTime,
}

pub struct Bot {
    pipeline: gst::Pipeline,
    /// The appsrc the prompts are pushed into.
    tts: gst::Element,
    started: Instant,
    /// Running time the next prompt buffer starts at.
    next_pts: gst::ClockTime,
    /// Prompts queued and not yet played (their marks not echoed).
    speaking: Vec<Prompt>,
    /// Prompts a barge-in cut short, until `twilio-clear` says how much of
    /// them was heard.
    interrupted: Vec<Prompt>,
    hang_up_after: Option<String>,
    vad: Vad,
}

fn secs(t: impl Into<Duration>) -> f64 {
    t.into().as_secs_f64()
}

impl Bot {
    pub fn new(pipeline: &gst::Pipeline) -> Bot {
        Bot {
            tts: pipeline.by_name("tts").unwrap(),
            pipeline: pipeline.clone(),
            started: Instant::now(),
            next_pts: gst::ClockTime::ZERO,
            speaking: Vec::new(),
            interrupted: Vec::new(),
            hang_up_after: None,
            // Speech: 60 ms above -35 dBFS; a turn ends after 600 ms below.
            vad: Vad::new(-35.0, Duration::from_millis(60), Duration::from_millis(600)),
        }
    }

    pub fn say(&self, line: impl AsRef<str>) {
        println!(
            "[bot {:6.2}s] {}",
            self.started.elapsed().as_secs_f64(),
            line.as_ref()
        );
    }

    /// Speaks `text` (espeak) in real time from now, or after what is
    /// playing, followed by a mark named `name`.
    fn play(&mut self, name: &str, text: &str) {
        let pcm = match tts::synthesize(text) {
            Ok(pcm) => pcm,
            Err(e) => return self.say(format!("text-to-speech failed for {name:?}: {e}")),
        };
        let now = self.pipeline.current_running_time().unwrap_or_default();
        self.next_pts = self.next_pts.max(now);
        let start = self.next_pts;
        for chunk in pcm.chunks(tts::RATE / 50) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let duration = gst::ClockTime::from_nseconds(
                chunk.len() as u64 * 1_000_000_000 / tts::RATE as u64,
            );
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
        let duration = self.next_pts - start;
        self.say(format!(
            "saying {name:?} ({:.2} s): \"{text}\"",
            secs(duration)
        ));
        self.speaking.push(Prompt {
            name: name.to_owned(),
            start,
            duration,
        });
    }

    /// Barge-in: drop what is queued here and in Twilio (the flush becomes
    /// a `clear`, and the sink posts `twilio-clear`).
    fn interrupt(&mut self, why: &str) {
        let names: Vec<&str> = self.speaking.iter().map(|p| p.name.as_str()).collect();
        self.say(format!("barge-in ({why}): stopping {names:?}"));
        self.interrupted.append(&mut self.speaking);
        self.tts.send_event(gst::event::FlushStart::new());
        self.tts.send_event(gst::event::FlushStop::new(false));
        self.next_pts = gst::ClockTime::ZERO;
    }

    /// The caller's level every 20 ms: voice activity.
    fn level(&mut self, s: &gst::StructureRef) {
        let (Ok(start), Ok(duration)) = (
            s.get::<gst::ClockTime>("running-time"),
            s.get::<gst::ClockTime>("duration"),
        ) else {
            return;
        };
        let Some(rms) = s
            .get::<glib::ValueArray>("rms")
            .ok()
            .and_then(|a| a.iter().next().and_then(|v| v.get::<f64>().ok()))
        else {
            return;
        };
        match self.vad.feed(start.into(), (start + duration).into(), rms) {
            Some(Turn::Started(at)) => {
                self.say(format!(
                    "the caller started speaking (running time {:.2} s)",
                    secs(at)
                ));
                if !self.speaking.is_empty() {
                    self.interrupt("the caller speaks");
                }
            }
            Some(Turn::Ended { from, to }) => {
                let spoke = secs(to - from);
                self.say(format!("the caller stopped speaking ({spoke:.1} s)"));
                self.play(
                    "heard-you",
                    &format!(
                        "I heard you talk for {:.0} seconds, but I only understand keys. \
                         Please press one.",
                        spoke.max(1.0)
                    ),
                );
            }
            None => {}
        }
    }

    /// `twilio-clear`: how much of the interrupted prompts the caller heard.
    fn cleared(&mut self, s: &gst::StructureRef) {
        let reason = s.get::<String>("reason").unwrap_or_default();
        let played = s.get::<Option<gst::ClockTime>>("played").ok().flatten();
        let dropped = s.get::<gst::ClockTime>("dropped").unwrap_or_default();
        self.say(format!(
            "Twilio cleared ({reason}): {:.2} s sent and never heard",
            secs(dropped)
        ));
        for p in self.interrupted.drain(..) {
            let heard = played
                .map(|t| t.saturating_sub(p.start).min(p.duration))
                .unwrap_or_default();
            println!(
                "[bot {:6.2}s]   the caller heard {:.2} s of {:?} ({:.0} % of {:.2} s)",
                self.started.elapsed().as_secs_f64(),
                secs(heard),
                p.name,
                100.0 * secs(heard) / secs(p.duration).max(1e-9),
                secs(p.duration)
            );
        }
    }

    /// Handles one bus message; false once the call is over.
    pub fn handle(&mut self, msg: &gst::Message) -> bool {
        match msg.view() {
            gst::MessageView::Element(e) => {
                let Some(s) = e.structure() else { return true };
                match s.name().as_str() {
                    "level" => self.level(s),
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
                        self.play(
                            "greeting",
                            "Hello, and thanks for calling the twiliostream demo.",
                        );
                        self.play(
                            "menu",
                            "You can talk to me, or press a key on your phone. \
                             Press the hash key when you want to hang up.",
                        );
                    }
                    "twilio-dtmf" => {
                        let digit = s.get::<String>("digit").unwrap_or_default();
                        self.say(format!("the caller pressed {digit}"));
                        if !self.speaking.is_empty() {
                            self.interrupt(&format!("key {digit}"));
                        }
                        if digit == "#" {
                            self.play("goodbye", "Goodbye, and thanks for calling.");
                            self.hang_up_after = Some("goodbye".to_owned());
                        } else {
                            self.play(&format!("digit-{digit}"), &format!("You pressed {digit}."));
                        }
                    }
                    "twilio-clear" => self.cleared(s),
                    "twilio-mark" => {
                        let name = s.get::<String>("name").unwrap_or_default();
                        let played = self.speaking.iter().any(|p| p.name == name);
                        self.speaking.retain(|p| p.name != name);
                        self.say(format!(
                            "mark {name:?} came back: {}",
                            if played {
                                "played to the end"
                            } else {
                                "flushed by the barge-in"
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
            gst::MessageView::Warning(w) => {
                self.say(format!("warning: {}", w.error()));
                // The call ended without stop (dropped, or no media for
                // idle-timeout): the src goes EOS, but the appsrc branch
                // goes on, so no EOS reaches the bus.
                let from_src = w.src().is_some_and(|s| s.name() == "in");
                if from_src && w.error().matches(gst::ResourceError::Read) {
                    self.say("the call dropped");
                    return false;
                }
            }
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
