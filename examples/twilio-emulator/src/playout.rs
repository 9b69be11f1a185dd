//! Twilio's playout queue, as documented: outbound audio is queued and played
//! in order, in real time; a `mark` comes back when playback passes it (at
//! once if nothing is queued); `clear` empties the queue and sends back every
//! pending mark.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use gsttwiliostream::protocol::Outbound;

/// Twilio plays its queue 20 ms at a time.
pub const FRAME: Duration = Duration::from_millis(20);
pub const FRAME_SAMPLES: usize = 160;

/// How the emulated Twilio plays the audio it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playout {
    /// In real time, 20 ms at a time, like a phone call.
    RealTime,
    /// At once: everything received counts as played immediately.
    Instant,
}

/// A mark Twilio echoed back.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkEcho {
    pub name: String,
    /// Samples played (8 kHz) when the mark was echoed.
    /// (Bytes of the stream's format; μ-law: samples.)
    pub played_samples: usize,
    /// Time since the call connected.
    pub at: Duration,
    /// Echoed because a `clear` flushed it, not because playback reached it.
    pub cleared: bool,
}

/// What the emulated caller heard.
#[derive(Debug, Clone, Default)]
pub struct Playback {
    /// μ-law played, in order (the silence between audio is not kept).
    pub played: Vec<u8>,
    pub marks: Vec<MarkEcho>,
    pub clears: usize,
    /// Samples a `clear` dropped before they were played.
    pub cleared_samples: usize,
    /// For each `clear`: samples played in all when it came, and samples it dropped.
    pub clear_points: Vec<(usize, usize)>,
    /// The most audio ever queued at once, in samples.
    pub max_queued: usize,
}

enum Queued {
    Audio(Vec<u8>),
    Mark(String),
}

/// The queue of one stream. `echo` sends a mark back to the plugin.
pub struct Player<E: FnMut(&str)> {
    queue: VecDeque<Queued>,
    queued: usize,
    playback: Arc<Mutex<Playback>>,
    started: tokio::time::Instant,
    echo: E,
}

impl<E: FnMut(&str)> Player<E> {
    pub fn new(playback: Arc<Mutex<Playback>>, echo: E) -> Self {
        Player {
            queue: VecDeque::new(),
            queued: 0,
            playback,
            started: tokio::time::Instant::now(),
            echo,
        }
    }

    /// Records the echo, then sends it: whoever learns of it from the
    /// plugin (a counter, a bus message) finds it in the playback already.
    fn echo(&mut self, name: String, cleared: bool) {
        {
            let mut playback = self.playback.lock().unwrap();
            let played_samples = playback.played.len();
            playback.marks.push(MarkEcho {
                name: name.clone(),
                played_samples,
                at: self.started.elapsed(),
                cleared,
            });
        }
        (self.echo)(&name);
    }

    /// Takes one message from the plugin.
    pub fn take(&mut self, msg: &Outbound) {
        match msg {
            Outbound::Media { media, .. } => {
                if let Ok(audio) = base64::engine::general_purpose::STANDARD.decode(&media.payload)
                {
                    self.queued += audio.len();
                    self.queue.push_back(Queued::Audio(audio));
                    let mut playback = self.playback.lock().unwrap();
                    playback.max_queued = playback.max_queued.max(self.queued);
                }
            }
            Outbound::Mark { mark, .. } => {
                if self.queue.is_empty() {
                    self.echo(mark.name.clone(), false);
                } else {
                    self.queue.push_back(Queued::Mark(mark.name.clone()));
                }
            }
            Outbound::Clear { .. } => {
                let dropped = std::mem::take(&mut self.queue);
                {
                    let mut playback = self.playback.lock().unwrap();
                    playback.clears += 1;
                    playback.cleared_samples += self.queued;
                    let played = playback.played.len();
                    playback.clear_points.push((played, self.queued));
                }
                self.queued = 0;
                for item in dropped {
                    if let Queued::Mark(name) = item {
                        self.echo(name, true);
                    }
                }
            }
        }
    }

    /// Plays up to `budget` samples (everything with None), echoing the marks
    /// playback reaches.
    pub fn play(&mut self, budget: Option<usize>) {
        let mut budget = budget.unwrap_or(usize::MAX);
        loop {
            match self.queue.front_mut() {
                None => break,
                Some(Queued::Mark(_)) => {
                    if let Some(Queued::Mark(name)) = self.queue.pop_front() {
                        self.echo(name, false);
                    }
                }
                Some(Queued::Audio(_)) if budget == 0 => break,
                Some(Queued::Audio(audio)) => {
                    let n = audio.len().min(budget);
                    self.playback
                        .lock()
                        .unwrap()
                        .played
                        .extend(audio.drain(..n));
                    budget -= n;
                    self.queued -= n;
                    if audio.is_empty() {
                        self.queue.pop_front();
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gsttwiliostream::protocol::Mark;

    fn media(bytes: &[u8]) -> Outbound {
        Outbound::media("MZ1", bytes)
    }

    fn mark(name: &str) -> Outbound {
        Outbound::Mark {
            stream_sid: "MZ1".into(),
            mark: Mark { name: name.into() },
        }
    }

    type Echo = Box<dyn FnMut(&str)>;
    type Names = Arc<Mutex<Vec<String>>>;

    /// A player whose echoes are recorded, with its playback.
    fn player() -> (Player<Echo>, Arc<Mutex<Playback>>, Names) {
        let playback = Arc::new(Mutex::new(Playback::default()));
        let echoed = Names::default();
        let e = echoed.clone();
        let echo: Echo = Box::new(move |n: &str| e.lock().unwrap().push(n.to_owned()));
        (Player::new(playback.clone(), echo), playback, echoed)
    }

    #[tokio::test]
    async fn marks_echo_when_playback_passes_them() {
        let (mut p, playback, echoed) = player();
        p.take(&mark("empty"));
        assert_eq!(*echoed.lock().unwrap(), ["empty"]);
        p.take(&media(&[1; 300]));
        p.take(&mark("after-300"));
        p.take(&media(&[2; 100]));
        p.play(Some(160));
        assert_eq!(echoed.lock().unwrap().len(), 1);
        p.play(Some(160));
        assert_eq!(*echoed.lock().unwrap(), ["empty", "after-300"]);
        let pb = playback.lock().unwrap().clone();
        assert_eq!(pb.marks[1].played_samples, 300);
        assert_eq!(pb.played.len(), 320);
        assert_eq!(pb.max_queued, 400);
    }

    #[tokio::test]
    async fn clear_drops_audio_and_echoes_pending_marks() {
        let (mut p, playback, echoed) = player();
        p.take(&media(&[1; 480]));
        p.take(&mark("a"));
        p.take(&media(&[1; 160]));
        p.take(&mark("b"));
        p.play(Some(160));
        p.take(&Outbound::Clear {
            stream_sid: "MZ1".into(),
        });
        assert_eq!(*echoed.lock().unwrap(), ["a", "b"]);
        let pb = playback.lock().unwrap().clone();
        assert!(
            pb.marks
                .iter()
                .all(|m| m.cleared && m.played_samples == 160)
        );
        assert_eq!(pb.cleared_samples, 480);
        assert_eq!(pb.clear_points, [(160, 480)]);
        p.play(None);
        assert_eq!(playback.lock().unwrap().played.len(), 160);
    }
}
