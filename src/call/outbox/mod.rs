//! What the call's writer sends to Twilio, and when (pure: times are
//! nanoseconds since the call began, given by the caller).
//!
//! Twilio plays the media it gets in order and in real time, from when it
//! gets it, and holds what it has not played yet: a `clear` drops that. So
//! the writer keeps Twilio's queue short. It holds the frames an element
//! hands it, writes one only while the model of Twilio's queue (audio
//! written minus audio played since, at 8000 samples a second) is under
//! the lead, and otherwise says when to look again. An echo goes out at
//! once (the queue is empty when it comes), a source faster than real time
//! is paced without any clock wait, and a `clear` finds at most the lead in
//! Twilio's queue.
//!
//! The same model says, at a `clear`, how much of the outbound stream the
//! caller heard: each written frame keeps the running time of its first
//! sample. Echoed marks correct the model when Twilio is behind it. Kept
//! beside it, the model without corrections (Twilio playing each frame from
//! its write) gives each mark the moment Twilio would reach it. An echo
//! comes back a round trip after Twilio reached its mark (the frames' way
//! there, the echo's way back): the quickest echo so far, counted from that
//! moment, is the round trip. An echo that took longer says Twilio reached
//! its mark that much later, or that the echo was held up on its way back:
//! one echo cannot tell which. Twilio behind stays behind (it plays on
//! from where it is), so the following echoes say the same; a held-up echo
//! is alone, or followed by echoes less late. So the model moves later by
//! the least that the last three echoes agree on, never earlier than
//! without corrections (Twilio cannot play what it has not got). (Taking an
//! echo's arrival for the moment its mark was reached, the model would
//! think Twilio behind by the round trip at every echo; counting from the
//! corrected model, each correction would shorten the round trip measured,
//! and jitter would ratchet the model later and later.)
//!
//! The pacing goes by the model without corrections: it is the least
//! Twilio can hold. An echo late on its way back then never holds audio
//! back from Twilio (the caller would hear the gap), and after a stall on
//! the way there Twilio holds that much more than the lead until its queue
//! runs dry (a `clear` drops it all the same).

use std::collections::VecDeque;

/// Written frames kept past the played position, for marks that correct
/// the model later (about 2 s of 20 ms frames).
const KEEP_PLAYED_NS: u64 = 2_000_000_000;

/// Echoes that must agree that Twilio is behind before the model moves
/// (see the module docs).
const AGREEING_ECHOES: usize = 3;

/// Marks kept waiting for their echo: beyond, the oldest is forgotten
/// (counted as echoed), so that a peer that never echoes does not make the
/// list grow for the whole call (over a minute of a mark every frame).
const MAX_AWAITED_MARKS: usize = 4096;

/// Something an element asks the writer to send.
#[derive(Debug)]
pub enum Outgoing {
    /// A `media` message carrying `bytes` bytes of audio that play for
    /// `duration` (ns), whose first sample is at `running_time` (ns) in the
    /// outbound stream. Its last `padding` (ns) is silence a provider's
    /// shortest frame added: played, but no audio of the stream (a clear
    /// does not count it as dropped, nor as heard).
    Media {
        text: String,
        bytes: u32,
        duration: u64,
        padding: u64,
        running_time: u64,
    },
    /// A `mark` named `name` (its message is `text`): written once all
    /// media before it is.
    Mark { name: String, text: String },
    /// A mark whose echo a clear has accounted for already (its message):
    /// written at once, counted as a mark.
    ClearedMark(String),
    /// Any other message, in order with the rest.
    Text(String),
}

/// What a `clear` found, by the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cleared {
    /// Running time (ns) in the outbound stream up to which the caller
    /// heard it; the running time after the last frame when all was heard.
    /// None if no media was ever written.
    pub played: Option<u64>,
    /// Audio (ns) sent to the writer and never heard: what Twilio held plus
    /// what had not been written yet (padding left out).
    pub dropped: u64,
    /// Of `dropped`, what was still waiting here (never written).
    pub unwritten: u64,
    /// The text bytes of the media dropped here.
    pub unwritten_bytes: usize,
}

/// What [`Outbox::drop_pending`] dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unsent {
    /// Messages of every kind.
    pub messages: u64,
    /// Of them, media frames.
    pub media: u64,
    /// The audio (ns) of those frames.
    pub audio: u64,
    /// The text bytes of all of them.
    pub text_bytes: usize,
}

/// A written frame that may not be played yet.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// Audio written before it (ns).
    position: u64,
    running_time: u64,
    duration: u64,
    /// Of `duration`, the audio before its padding.
    audio: u64,
}

/// The model of Twilio's playout queue.
#[derive(Debug, Default)]
struct Model {
    /// Audio written so far (ns of audio).
    written: u64,
    /// When Twilio will have played all of it (ns since the call began).
    end: u64,
    /// When, without the echoes' corrections (see the module docs).
    base_end: u64,
    spans: VecDeque<Span>,
    /// Marks written and not echoed yet, by name: the audio written before
    /// each and when, without corrections, Twilio would reach it; or None
    /// for a mark a `clear` flushes (its echo says nothing of playout).
    marks: VecDeque<(String, Option<(u64, u64)>)>,
    /// The quickest an echo came back after the moment, without
    /// corrections, for its mark (ns): the round trip to Twilio.
    round_trip: Option<u64>,
    /// When Twilio will have played all of it, by each of the last echoes
    /// before the next, newest first (moved on by writes as `end` is).
    last_echo_ends: [u64; AGREEING_ECHOES - 1],
    /// Marks written that an echo accounted for: its own, or a later one's
    /// (echoes come in the order the marks were sent).
    echoed: u64,
}

impl Model {
    /// A mark written: it waits for its echo (see [`MAX_AWAITED_MARKS`]).
    fn await_echo(&mut self, name: String, written: Option<(u64, u64)>) {
        if self.marks.len() == MAX_AWAITED_MARKS {
            self.marks.pop_front();
            self.echoed += 1;
        }
        self.marks.push_back((name, written));
    }

    fn unplayed(&self, now: u64) -> u64 {
        self.end.saturating_sub(now)
    }

    /// Audio (ns) Twilio has played by `now`.
    fn played(&self, now: u64) -> u64 {
        self.written - self.unplayed(now).min(self.written)
    }

    /// Padding (ns) written after audio position `played`: not heard yet.
    fn unplayed_padding(&self, played: u64) -> u64 {
        self.spans
            .iter()
            .map(|s| {
                let (from, to) = (s.position + s.audio, s.position + s.duration);
                to.saturating_sub(from.max(played))
            })
            .sum()
    }

    fn write_audio(&mut self, now: u64, duration: u64, padding: u64, running_time: u64) {
        let played = self.played(now);
        while self
            .spans
            .front()
            .is_some_and(|s| s.position + s.duration + KEEP_PLAYED_NS <= played)
        {
            self.spans.pop_front();
        }
        self.spans.push_back(Span {
            position: self.written,
            running_time,
            duration,
            audio: duration.saturating_sub(padding),
        });
        self.written += duration;
        self.end = self.end.max(now) + duration;
        self.base_end = self.base_end.max(now) + duration;
        for e in &mut self.last_echo_ends {
            *e = (*e).max(now) + duration;
        }
    }

    /// The running time at audio position `position`.
    fn running_time_at(&self, position: u64) -> Option<u64> {
        let last = self.spans.back()?;
        if position >= last.position + last.duration {
            return Some(last.running_time + last.audio);
        }
        // Spans are in position order: the last one starting at or before.
        let i = self
            .spans
            .partition_point(|s| s.position <= position)
            .saturating_sub(1);
        let span = self.spans[i];
        // Into its padding: heard up to the end of its audio.
        Some(span.running_time + position.saturating_sub(span.position).min(span.audio))
    }
}

/// The writer's queue and its model of Twilio's. See the module docs.
#[derive(Debug)]
pub struct Outbox {
    pending: VecDeque<Outgoing>,
    /// Audio waiting in `pending` (ns).
    pending_audio: u64,
    lead: u64,
    /// The sink is paused: no media goes out (what Twilio holds plays on).
    paused: bool,
    /// Marks handed out to be written (`marks-sent`).
    marks_written: u64,
    model: Model,
}

impl Outbox {
    /// An empty outbox keeping at most `lead` ns in Twilio's queue (and
    /// writing the next frame as soon as it holds less).
    pub fn new(lead: u64) -> Self {
        Outbox {
            pending: VecDeque::new(),
            pending_audio: 0,
            lead,
            paused: false,
            marks_written: 0,
            model: Model::default(),
        }
    }

    /// How many marks [`due`](Self::due) has handed out to be written.
    pub fn marks_written(&self) -> u64 {
        self.marks_written
    }

    /// Asks for the lines the next frame touches to be brought into the
    /// cache (see `call::hot`): the playout model's oldest and newest
    /// spans, where the frame is accounted for.
    pub fn prefetch(&self) {
        let (front, back) = self.model.spans.as_slices();
        super::hot::prefetch(front.as_ptr() as usize, std::mem::size_of::<Span>());
        let last = back.last().or(front.last());
        if let Some(last) = last {
            super::hot::prefetch(
                last as *const Span as usize,
                2 * std::mem::size_of::<Span>(),
            );
        }
    }

    pub fn set_lead(&mut self, lead: u64) {
        self.lead = lead;
    }

    /// Holds the media (and what follows it) while `paused`; a mark or a
    /// clear with no media before it still goes out.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    pub fn push(&mut self, item: Outgoing) {
        if let Outgoing::Media {
            duration, padding, ..
        } = &item
        {
            self.pending_audio += duration - padding;
        }
        self.pending.push_back(item);
    }

    /// Audio waiting to be written (ns).
    pub fn pending_audio(&self) -> u64 {
        self.pending_audio
    }

    /// Audio written that Twilio has not played by `now` (ns).
    pub fn unplayed(&self, now: u64) -> u64 {
        self.model.unplayed(now)
    }

    /// When Twilio will have played everything written (ns since the call began).
    pub fn playout_end(&self) -> u64 {
        self.model.end
    }

    /// Moves what may be written at `now` into `out`, in order: everything
    /// up to the first frame that must wait for Twilio's queue to shrink
    /// (or for the pause to end: then no time to look again is given).
    /// Calls `written` with the bytes and the audio (ns, its padding left
    /// out, as [`pending_audio`](Self::pending_audio) counts it) of each
    /// frame taken. Returns when to look again, if something waits.
    pub fn due(
        &mut self,
        now: u64,
        out: &mut Vec<String>,
        mut written: impl FnMut(u32, u64),
    ) -> Option<u64> {
        while let Some(front) = self.pending.front() {
            if let Outgoing::Media { .. } = front {
                if self.paused {
                    return None;
                }
                // Paced by what Twilio holds at least (see the module docs).
                if self.model.base_end.saturating_sub(now) >= self.lead {
                    return Some(self.model.base_end - self.lead + 1);
                }
            }
            match self.pending.pop_front() {
                Some(Outgoing::Media {
                    text,
                    bytes,
                    duration,
                    padding,
                    running_time,
                }) => {
                    self.pending_audio -= duration - padding;
                    self.model.write_audio(now, duration, padding, running_time);
                    written(bytes, duration - padding);
                    out.push(text);
                }
                Some(Outgoing::Mark { name, text }) => {
                    let reach = self.model.base_end.max(now);
                    let written = self.model.written;
                    self.model.await_echo(name, Some((written, reach)));
                    self.marks_written += 1;
                    out.push(text);
                }
                Some(Outgoing::ClearedMark(text)) => {
                    self.marks_written += 1;
                    out.push(text);
                }
                Some(Outgoing::Text(text)) => out.push(text),
                None => {}
            }
        }
        None
    }

    /// Drops everything not written yet (after Twilio's `stop`: it plays
    /// nothing more), and says what.
    pub fn drop_pending(&mut self) -> Unsent {
        let mut unsent = Unsent::default();
        for item in self.pending.drain(..) {
            unsent.messages += 1;
            unsent.text_bytes += match item {
                Outgoing::Media {
                    text,
                    duration,
                    padding,
                    ..
                } => {
                    unsent.media += 1;
                    unsent.audio += duration - padding;
                    text.len()
                }
                Outgoing::Mark { text, .. }
                | Outgoing::ClearedMark(text)
                | Outgoing::Text(text) => text.len(),
            };
        }
        self.pending_audio = 0;
        unsent
    }

    /// Marks written that Twilio's echoes account for, in the order they
    /// were written: the `n`th mark has been echoed once this is `n`.
    pub fn marks_echoed(&self) -> u64 {
        self.model.echoed
    }

    /// Twilio echoed the mark `name` at `now`: the model moves later if
    /// Twilio is behind it (see the module docs). Marks are echoed in the
    /// order they were sent: older ones not echoed are forgotten (and
    /// count as echoed), and a name never sent (or echoed already) changes
    /// nothing.
    pub fn mark_echoed(&mut self, name: &str, now: u64) {
        let Some(i) = self.model.marks.iter().position(|(n, _)| n == name) else {
            return;
        };
        self.model.echoed += i as u64 + 1;
        let written = self
            .model
            .marks
            .drain(..=i)
            .next_back()
            .and_then(|(_, w)| w);
        if let Some((position, reach)) = written {
            let took = now.saturating_sub(reach);
            let round_trip = self.model.round_trip.map_or(took, |r| r.min(took));
            self.model.round_trip = Some(round_trip);
            let rest = self.model.written - position;
            let model = &mut self.model;
            let by_this_echo = model.base_end.max(now - round_trip + rest);
            let agreed = model
                .last_echo_ends
                .iter()
                .fold(by_this_echo, |a, e| a.min(*e));
            model.end = agreed.max(model.base_end);
            model.last_echo_ends.rotate_right(1);
            model.last_echo_ends[0] = by_this_echo;
        }
    }

    /// A `clear` (its message is `text`) at `now`: drops the frames not
    /// written yet (marks among them stay, and go out before the clear,
    /// so Twilio echoes them), empties the model's queue, and says what
    /// the caller heard and what was dropped.
    pub fn clear(&mut self, now: u64, text: String) -> Cleared {
        let unplayed = self.model.unplayed(now);
        let played = self.model.played(now);
        let unwritten_bytes = self
            .pending
            .iter()
            .map(|item| match item {
                Outgoing::Media { text, .. } => text.len(),
                _ => 0,
            })
            .sum();
        let unplayed_audio = unplayed.saturating_sub(self.model.unplayed_padding(played));
        let cleared = Cleared {
            played: self.model.running_time_at(played),
            dropped: unplayed_audio + self.pending_audio,
            unwritten: self.pending_audio,
            unwritten_bytes,
        };
        self.pending
            .retain(|item| !matches!(item, Outgoing::Media { .. }));
        self.pending_audio = 0;
        // Every mark written or waiting is echoed by the clear, not by playout.
        for (_, position) in &mut self.model.marks {
            *position = None;
        }
        self.pending.push_back(Outgoing::Text(text));
        // Written now, before the clear: those echoes say nothing either.
        for item in &mut self.pending {
            if let Outgoing::Mark { name, text } = item {
                self.model.await_echo(std::mem::take(name), None);
                *item = Outgoing::ClearedMark(std::mem::take(text));
            }
        }
        // Twilio's queue is empty; what it played stays played.
        self.model.written = played;
        self.model.end = now;
        self.model.base_end = now;
        self.model.last_echo_ends = [now; AGREEING_ECHOES - 1];
        self.model.spans.retain(|s| s.position < played);
        if let Some(last) = self.model.spans.back_mut() {
            last.duration = last.duration.min(played - last.position);
            last.audio = last.audio.min(last.duration);
        } else if let Some(running_time) = cleared.played {
            // Nothing of it played: where the caller's hearing stopped
            // stays known (a clear right after says the same, not NONE).
            self.model.spans.push_back(Span {
                position: played,
                running_time,
                duration: 0,
                audio: 0,
            });
        }
        cleared
    }
}

#[cfg(test)]
mod tests;
