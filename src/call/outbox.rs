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
//! sample. An echoed mark corrects the model when Twilio is behind it. An
//! echo comes back a round trip after the model's moment for its mark (the
//! frames' way there, the echo's way back) when Twilio is on time: the
//! quickest echo so far measures that. One that takes longer says Twilio
//! played the mark no earlier than its arrival less that round trip, so the
//! rest plays no earlier than that plus its length. (Taking the arrival
//! itself for the moment, the model would think Twilio behind by the round
//! trip at every echo and hold the audio back as long: gaps for the caller
//! once the round trip passes the lead.)

use std::collections::VecDeque;

/// Written frames kept past the played position, for marks that correct
/// the model later (about 2 s of 20 ms frames).
const KEEP_PLAYED_NS: u64 = 2_000_000_000;

/// Something an element asks the writer to send.
#[derive(Debug)]
pub enum Outgoing {
    /// A `media` message carrying `bytes` bytes of audio that play for
    /// `duration` (ns), whose first sample is at `running_time` (ns) in the
    /// outbound stream.
    Media {
        text: String,
        bytes: u32,
        duration: u64,
        running_time: u64,
    },
    /// A `mark` named `name` (its message is `text`): written once all
    /// media before it is.
    Mark { name: String, text: String },
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
    /// what had not been written yet.
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
}

/// The model of Twilio's playout queue.
#[derive(Debug, Default)]
struct Model {
    /// Audio written so far (ns of audio).
    written: u64,
    /// When Twilio will have played all of it (ns since the call began).
    end: u64,
    spans: VecDeque<Span>,
    /// Marks written and not echoed yet, by name: the audio written before
    /// each and when the model said Twilio would reach it, or None for a
    /// mark a `clear` flushes (its echo says nothing of playout).
    marks: VecDeque<(String, Option<(u64, u64)>)>,
    /// The quickest an echo came back after the model's moment for its
    /// mark (ns): the round trip to Twilio, with Twilio on time.
    round_trip: Option<u64>,
    /// Marks written that an echo accounted for: its own, or a later one's
    /// (echoes come in the order the marks were sent).
    echoed: u64,
}

impl Model {
    fn unplayed(&self, now: u64) -> u64 {
        self.end.saturating_sub(now)
    }

    /// Audio (ns) Twilio has played by `now`.
    fn played(&self, now: u64) -> u64 {
        self.written - self.unplayed(now).min(self.written)
    }

    fn write_audio(&mut self, now: u64, duration: u64, running_time: u64) {
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
        });
        self.written += duration;
        self.end = self.end.max(now) + duration;
    }

    /// The running time at audio position `position`.
    fn running_time_at(&self, position: u64) -> Option<u64> {
        let last = self.spans.back()?;
        if position >= last.position + last.duration {
            return Some(last.running_time + last.duration);
        }
        // Spans are in position order: the last one starting at or before.
        let i = self
            .spans
            .partition_point(|s| s.position <= position)
            .saturating_sub(1);
        let span = self.spans[i];
        Some(span.running_time + position.saturating_sub(span.position))
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
            model: Model::default(),
        }
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
        if let Outgoing::Media { duration, .. } = &item {
            self.pending_audio += duration;
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
    /// Calls `written` with the bytes and duration of each frame taken.
    /// Returns when to look again, if something waits.
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
                if self.model.unplayed(now) >= self.lead {
                    return Some(self.model.end - self.lead + 1);
                }
            }
            match self.pending.pop_front() {
                Some(Outgoing::Media {
                    text,
                    bytes,
                    duration,
                    running_time,
                }) => {
                    self.pending_audio -= duration;
                    self.model.write_audio(now, duration, running_time);
                    written(bytes, duration);
                    out.push(text);
                }
                Some(Outgoing::Mark { name, text }) => {
                    let reach = self.model.end.max(now);
                    self.model
                        .marks
                        .push_back((name, Some((self.model.written, reach))));
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
                Outgoing::Media { text, duration, .. } => {
                    unsent.media += 1;
                    unsent.audio += duration;
                    text.len()
                }
                Outgoing::Mark { text, .. } | Outgoing::Text(text) => text.len(),
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
            self.model.end = self.model.end.max(now - round_trip + rest);
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
        let cleared = Cleared {
            played: self.model.running_time_at(played),
            dropped: unplayed + self.pending_audio,
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
                self.model.marks.push_back((std::mem::take(name), None));
                *item = Outgoing::Text(std::mem::take(text));
            }
        }
        // Twilio's queue is empty; what it played stays played.
        self.model.written = played;
        self.model.end = now;
        self.model.spans.retain(|s| s.position < played);
        if let Some(last) = self.model.spans.back_mut() {
            last.duration = last.duration.min(played - last.position);
        }
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn mark(name: &str) -> Outgoing {
        Outgoing::Mark {
            name: name.to_owned(),
            text: name.to_owned(),
        }
    }

    fn media(n: u32, running_time: u64) -> Outgoing {
        Outgoing::Media {
            text: format!("m{n}@{}", running_time / MS),
            bytes: 160,
            duration: 20 * MS,
            running_time,
        }
    }

    /// Pushes `frames` frames of 20 ms from running time `from`.
    fn push_frames(o: &mut Outbox, frames: u32, from: u64) {
        for i in 0..frames {
            o.push(media(i, from + i as u64 * 20 * MS));
        }
    }

    fn due(o: &mut Outbox, now: u64) -> (Vec<String>, Option<u64>) {
        let mut out = Vec::new();
        let next = o.due(now, &mut out, |_, _| {});
        (out, next)
    }

    #[test]
    fn frames_go_out_while_twilio_holds_less_than_the_lead() {
        let mut o = Outbox::new(100 * MS);
        push_frames(&mut o, 50, 0);
        assert_eq!(o.pending_audio(), 1000 * MS);
        let (out, next) = due(&mut o, 0);
        // 0, 20, 40, 60, 80 ms queued: the fifth brings it to 100 ms.
        assert_eq!(out.len(), 5);
        assert_eq!(next, Some(1));
        assert_eq!(o.unplayed(0), 100 * MS);
        assert_eq!(o.pending_audio(), 900 * MS);
        // 10 ms later Twilio holds 90 ms: one more frame.
        let (out, next) = due(&mut o, 10 * MS);
        assert_eq!(out, ["m5@100"]);
        assert_eq!(next, Some(20 * MS + 1));
        // Nothing is due before then.
        assert!(due(&mut o, 20 * MS).0.is_empty());
        assert_eq!(due(&mut o, 20 * MS + 1).0.len(), 1);
    }

    #[test]
    fn paused_media_waits_and_goes_on_from_where_it_was() {
        let mut o = Outbox::new(100 * MS);
        push_frames(&mut o, 10, 0);
        assert_eq!(due(&mut o, 0).0.len(), 5);
        o.set_paused(true);
        // Nothing more, and no time to look again: the pause ends it.
        assert_eq!(due(&mut o, 500 * MS), (vec![], None));
        // A clear goes out at once; what it found: all of it written played.
        o.push(mark("before"));
        let cleared = o.clear(600 * MS, "clear".into());
        assert_eq!(cleared.played, Some(100 * MS));
        assert_eq!(cleared.unwritten, 100 * MS);
        assert_eq!(due(&mut o, 600 * MS).0, ["before", "clear"]);
        // Media after it waits for the pause to end, then goes on.
        push_frames(&mut o, 2, 200 * MS);
        o.push(mark("after"));
        assert_eq!(due(&mut o, 700 * MS), (vec![], None));
        o.set_paused(false);
        assert_eq!(due(&mut o, 700 * MS).0, ["m0@200", "m1@220", "after"]);
    }

    #[test]
    fn a_real_time_stream_goes_out_at_once() {
        let mut o = Outbox::new(100 * MS);
        for i in 0..100u64 {
            o.push(media(i as u32, i * 20 * MS));
            let (out, next) = due(&mut o, i * 20 * MS);
            assert_eq!(out.len(), 1, "frame {i}");
            assert_eq!(next, None);
            assert_eq!(o.unplayed(i * 20 * MS), 20 * MS);
        }
    }

    #[test]
    fn marks_and_text_keep_their_place_behind_media() {
        let mut o = Outbox::new(40 * MS);
        push_frames(&mut o, 3, 0);
        o.push(mark("mark"));
        o.push(Outgoing::Text("text".into()));
        let (out, _) = due(&mut o, 0);
        assert_eq!(out, ["m0@0", "m1@20"]);
        let (out, next) = due(&mut o, 40 * MS);
        assert_eq!(out, ["m2@40", "mark", "text"]);
        assert_eq!(next, None);
    }

    #[test]
    fn drop_pending_drops_only_what_is_not_written() {
        let mut o = Outbox::new(40 * MS);
        push_frames(&mut o, 3, 0);
        o.push(mark("mark"));
        let (out, _) = due(&mut o, 0);
        assert_eq!(out, ["m0@0", "m1@20"]);
        assert_eq!(
            o.drop_pending(),
            Unsent {
                messages: 2,
                media: 1,
                audio: 20 * MS,
                text_bytes: "m2@40".len() + "mark".len(),
            }
        );
        assert_eq!(o.pending_audio(), 0);
        assert_eq!(due(&mut o, 100 * MS), (vec![], None));
        // What was written is still modelled.
        assert_eq!(o.unplayed(0), 40 * MS);
    }

    #[test]
    fn clear_reports_what_was_heard_and_dropped() {
        let mut o = Outbox::new(100 * MS);
        // A prompt from running time 5 s, 1 s long.
        push_frames(&mut o, 50, 5000 * MS);
        let mut now = 0;
        while now < 330 * MS {
            due(&mut o, now);
            now += 10 * MS;
        }
        // At 330 ms: 330 ms played, 100 ms (minus what is under way) held.
        let cleared = o.clear(330 * MS, "clear".into());
        assert_eq!(cleared.played, Some(5330 * MS));
        assert_eq!(cleared.dropped, 1000 * MS - 330 * MS);
        assert_eq!(cleared.unwritten, 1000 * MS - 420 * MS);
        // 29 frames of text "m<i>@<ms>" were dropped unwritten.
        let texts: usize = (21..50u64)
            .map(|i| format!("m{i}@{}", 5000 + i * 20).len())
            .sum();
        assert_eq!(cleared.unwritten_bytes, texts);
        assert_eq!(o.pending_audio(), 0);
        assert_eq!(o.unplayed(330 * MS), 0);
        let (out, next) = due(&mut o, 330 * MS);
        assert_eq!(out, ["clear"]);
        assert_eq!(next, None);
        // The next prompt, from 9 s, is written at once and reported from there.
        push_frames(&mut o, 10, 9000 * MS);
        assert_eq!(due(&mut o, 400 * MS).0.len(), 5);
        let cleared = o.clear(450 * MS, "clear".into());
        assert_eq!(cleared.played, Some(9050 * MS));
        assert_eq!(cleared.dropped, 150 * MS);
    }

    #[test]
    fn everything_heard_reports_the_end_of_the_last_frame() {
        let mut o = Outbox::new(100 * MS);
        push_frames(&mut o, 3, 700 * MS);
        due(&mut o, 0);
        let cleared = o.clear(500 * MS, "clear".into());
        assert_eq!(cleared.played, Some(760 * MS));
        assert_eq!(cleared.dropped, 0);
        let mut fresh = Outbox::new(100 * MS);
        assert_eq!(fresh.clear(0, "c".into()).played, None);
    }

    #[test]
    fn an_echo_slower_than_the_round_trip_moves_the_model_later() {
        let mut o = Outbox::new(1000 * MS);
        push_frames(&mut o, 5, 0);
        o.push(mark("a"));
        push_frames(&mut o, 5, 100 * MS);
        o.push(mark("b"));
        push_frames(&mut o, 5, 200 * MS);
        due(&mut o, 0);
        assert_eq!(o.playout_end(), 300 * MS);
        // "a" (100 ms of audio) comes back 30 ms after the model reached
        // it: the round trip, no news.
        o.mark_echoed("a", 130 * MS);
        assert_eq!(o.playout_end(), 300 * MS);
        // "b" takes 80 ms: Twilio reached it only at 250 ms.
        o.mark_echoed("b", 280 * MS);
        assert_eq!(o.playout_end(), 350 * MS);
        let cleared = o.clear(300 * MS, "clear".into());
        assert_eq!(cleared.played, Some(250 * MS));
        assert_eq!(cleared.dropped, 50 * MS);
        // An early echo never moves it earlier.
        let mut o = Outbox::new(1000 * MS);
        push_frames(&mut o, 5, 0);
        o.push(mark("end"));
        due(&mut o, 0);
        o.mark_echoed("end", 50 * MS);
        assert_eq!(o.playout_end(), 100 * MS);
    }

    #[test]
    fn echoes_a_round_trip_late_leave_the_model_and_the_pacing_alone() {
        // Every echo comes back 150 ms after Twilio played its mark, the
        // lead is 100 ms: the writer goes on at the pace of real time.
        let mut o = Outbox::new(100 * MS);
        let mut now = 0;
        let mut written = 0;
        for k in 0..50u64 {
            push_frames(&mut o, 1, k * 20 * MS);
            o.push(mark(&format!("m{k}")));
        }
        let mut echoes = VecDeque::new();
        while now <= 1000 * MS {
            let (out, _) = due(&mut o, now);
            for text in out {
                match text.strip_prefix('m').and_then(|t| t.split_once('@')) {
                    Some(_) => written += 1,
                    // A mark: echoed once what was written before it played.
                    None => echoes.push_back((text, (written * 20 * MS).max(now) + 150 * MS)),
                }
            }
            while echoes.front().is_some_and(|(_, at)| *at <= now) {
                let (name, _) = echoes.pop_front().unwrap();
                o.mark_echoed(&name, now);
            }
            // Twilio never holds less than a frame: no gap.
            assert!(
                written * 20 * MS >= now,
                "at {now} ns only {written} frames"
            );
            now += MS;
        }
        assert!(o.marks_echoed() > 40);
    }

    #[test]
    fn echoes_are_matched_by_name() {
        let mut o = Outbox::new(1000 * MS);
        // A first mark, echoed at once: no round trip.
        o.push(mark("start"));
        due(&mut o, 0);
        o.mark_echoed("start", 0);
        push_frames(&mut o, 5, 0);
        o.push(mark("a"));
        push_frames(&mut o, 5, 100 * MS);
        o.push(mark("b"));
        push_frames(&mut o, 5, 200 * MS);
        due(&mut o, 0);
        assert_eq!(o.playout_end(), 300 * MS);
        // A stranger's name and a lost echo of "a": "b" (200 ms in) still
        // corrects the model, and accounts for both marks.
        o.mark_echoed("stranger", 100 * MS);
        assert_eq!(o.playout_end(), 300 * MS);
        assert_eq!(o.marks_echoed(), 1);
        o.mark_echoed("b", 250 * MS);
        assert_eq!(o.playout_end(), 350 * MS);
        assert_eq!(o.marks_echoed(), 3);
        // "a" comes late: forgotten already, it changes nothing.
        o.mark_echoed("a", 400 * MS);
        assert_eq!(o.playout_end(), 350 * MS);
        assert_eq!(o.marks_echoed(), 3);
    }

    #[test]
    fn marks_a_clear_flushes_correct_nothing() {
        let mut o = Outbox::new(40 * MS);
        push_frames(&mut o, 2, 0);
        o.push(mark("written"));
        push_frames(&mut o, 5, 40 * MS);
        o.push(mark("waiting"));
        push_frames(&mut o, 1, 140 * MS);
        let (out, _) = due(&mut o, 0);
        assert_eq!(out, ["m0@0", "m1@20", "written"]);
        o.clear(10 * MS, "clear".into());
        let (out, _) = due(&mut o, 10 * MS);
        // The waiting mark goes out before the clear, its media does not.
        assert_eq!(out, ["waiting", "clear"]);
        // Both echoes arrive at once; the model stays empty.
        o.mark_echoed("written", 11 * MS);
        o.mark_echoed("waiting", 11 * MS);
        assert_eq!(o.unplayed(11 * MS), 0);
        assert_eq!(o.marks_echoed(), 2);
        push_frames(&mut o, 1, 500 * MS);
        due(&mut o, 20 * MS);
        assert_eq!(o.playout_end(), 40 * MS);
    }

    #[test]
    fn underruns_restart_the_queue_from_the_next_write() {
        let mut o = Outbox::new(100 * MS);
        push_frames(&mut o, 1, 0);
        due(&mut o, 0);
        push_frames(&mut o, 1, 20 * MS);
        due(&mut o, 500 * MS);
        assert_eq!(o.playout_end(), 520 * MS);
        let cleared = o.clear(510 * MS, "c".into());
        assert_eq!(cleared.played, Some(30 * MS));
    }
}
