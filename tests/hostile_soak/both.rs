//! The hostile call with `track=both`: Twilio's two tracks interleaved,
//! each with its own signal, timestamps and losses (README "Both sides of
//! the call"). Per track: chunks lost (silence in its channel only),
//! swapped (the first dropped as late), sent twice (dropped), a timestamp
//! far ahead (invalid, its audio in its place; the next chunk is kept back
//! until the one after it shows the timestamps came back), a wild chunk
//! number (not used with two tracks: a plain chunk), timestamps stepping
//! back over the track's audio (measured anew, nothing lost). Chunk numbers count
//! per track or across both (which Twilio does is unconfirmed). Between
//! them, the same hostile messages as the one-track soak. With steps ahead
//! (README "Steps"): timestamps stepping ahead far beyond the wait less a
//! chunk (measured anew, the audio following on, nothing lost), or within
//! it (a gap: silence of its length, counted lost in whole chunks), and a
//! track running ahead of the other, past the wait (the other channel
//! filled, what comes for that time dropped as too late).
//!
//! A Telnyx call's media is put back in order per track first (README
//! "Other providers", `reorder-window`): there a swapped pair is put back
//! (counted reordered, its audio kept), also behind a lost chunk the
//! window still waits for; a lost chunk holds the next ones back until
//! the window gives it up; a wild chunk number is not believed (invalid,
//! the chunk placed by its timestamp); sent twice is dropped by the
//! window. The wait for the slower track is then at least the window and
//! two chunks (README "Waiting for the slower track"). Left out there: steps
//! ahead, and with chunk numbers shared by both tracks, timestamps far
//! ahead and steps back (a track's chunk whose number skips and whose
//! timestamp jumps is held as after a loss: not documented), and a wild
//! chunk right after a wild number (the window takes the next wild number
//! as the counter going on from it).

use base64::Engine as _;
use gst::prelude::*;
use twilio_emulator::{CallParams, Provider, TwilioCall};

use crate::common::{self, *};
use crate::lane::Lane;
use crate::peer::{CHUNK, Effect, Frame, Peer};

const TRACKS: [&str; 2] = ["inbound", "outbound"];
/// The default `track-wait` (60 ms), in samples.
const WAIT: usize = 480;
/// Telnyx's default `reorder-window`, in chunks.
const WINDOW: usize = 3;

pub struct Both {
    pub peer: Peer,
    pub lanes: [Lane; 2],
    /// One `media.chunk` counter for both tracks (else one per track).
    shared_numbers: bool,
    /// Steps ahead in the tracks' timestamps, above the threshold and
    /// below it (gaps), among the other perturbations.
    pub steps_ahead: bool,
    numbered: u64,
    pub too_late: u64,
    /// Telnyx: the reorder window (chunks); 0 for Twilio, not reordered.
    window: usize,
    pub reordered: u64,
}

impl Both {
    pub fn new(seed: u64, provider: Provider, sid: &str) -> Both {
        let mut peer = Peer::new(seed, provider, sid);
        let shared_numbers = peer.rng.chance(50);
        Both {
            peer,
            lanes: [Lane::default(), Lane::default()],
            shared_numbers,
            steps_ahead: false,
            numbered: 0,
            too_late: 0,
            window: if provider == Provider::Telnyx {
                WINDOW
            } else {
                0
            },
            reordered: 0,
        }
    }

    /// How far (samples) the faster track may lead: `track-wait`, raised
    /// under a reorder window to the window and two chunks.
    fn wait(&self) -> usize {
        match self.window {
            0 => WAIT,
            w => WAIT.max((w + 2) * CHUNK),
        }
    }

    fn number(&mut self, t: usize) -> u64 {
        self.numbered += 1;
        match self.shared_numbers {
            true => self.numbered,
            false => self.lanes[t].timeline.len() as u64 + 1,
        }
    }

    /// The next chunk of track `t` in its place (ts, number changed if
    /// told), spelled plainly or in any valid way: its text.
    fn chunk(&mut self, t: usize, ts: Option<u64>, number: Option<u64>, spell: bool) -> String {
        self.chunk_of(t, CHUNK, ts, number, spell)
    }

    /// [`chunk`](Self::chunk) of `len` samples.
    fn chunk_of(
        &mut self,
        t: usize,
        len: usize,
        ts: Option<u64>,
        number: Option<u64>,
        spell: bool,
    ) -> String {
        let n = self.lanes[t].timeline.len();
        let ulaw: Vec<u8> = (0..len)
            .map(|i| {
                let noise = self.peer.rng.next() as usize & 7;
                (((n * CHUNK + i) * (37 + 22 * t) + 90 * t + noise) % 251) as u8
            })
            .collect();
        let payload = base64::engine::general_purpose::STANDARD.encode(&ulaw);
        let chunk = self.number(t);
        let v = self.peer.spelling.media_on(
            TRACKS[t],
            &self.peer.sid,
            ts.unwrap_or(self.lanes[t].ts),
            number.unwrap_or(chunk),
            &payload,
        );
        let text = match spell {
            true => self.peer.spelled(v, TRACKS[t]),
            false => v.to_string(),
        };
        let lane = &mut self.lanes[t];
        lane.placed(self.window);
        lane.resent = false;
        lane.ts += len as u64 / 8;
        lane.received += 1;
        lane.bytes += len as u64;
        lane.timeline.push(Some(ulaw));
        lane.texts.push(Some(text.clone()));
        text
    }

    fn send(&mut self, text: String) {
        self.peer.frames.push(Frame::Text(text));
    }

    fn valid(&mut self, t: usize) {
        self.valid_of(t, CHUNK);
    }

    /// A plain chunk of `len` samples, in any valid spelling.
    fn valid_of(&mut self, t: usize, len: usize) {
        let text = self.chunk_of(t, len, None, None, true);
        self.send(text);
        self.lanes[t].plain = self.lanes[t].plain.saturating_sub(1);
    }

    /// A chunk lost: under a reorder window, the next ones held until
    /// more than the window wait behind it.
    fn lost(&mut self, t: usize) {
        self.number(t);
        self.lanes[t].hold = usize::from(self.window > 0);
        self.lanes[t].ts += 20;
        self.lanes[t].timeline.push(None);
        self.lanes[t].texts.push(None);
    }

    /// The next two places of track `t` in the wrong order: the first is
    /// silence (a gap) by the time it comes, then dropped as late; under a
    /// reorder window, put back in order (the second held until the first
    /// comes, also behind a lost one).
    fn swapped(&mut self, t: usize) {
        let first = self.chunk(t, None, None, false);
        let second = self.chunk(t, None, None, false);
        self.send(second);
        self.send(first);
        if self.window > 0 {
            self.reordered += 1;
            return;
        }
        let n = self.lanes[t].timeline.len();
        self.lanes[t].timeline[n - 2] = None;
        self.lanes[t].texts[n - 2] = None;
        self.too_late += 1;
    }

    /// A timestamp far ahead (invalid, placed after the track's last) or
    /// a wild chunk number (unused with two tracks; under a reorder window
    /// invalid, the chunk placed by its timestamp). (With numbers shared by
    /// both tracks, a reorder window holds a timestamp far ahead as after a
    /// loss: not played.)
    fn wild(&mut self, t: usize) {
        let ts = self.lanes[t].ts;
        let timestamps = self.window == 0 || !self.shared_numbers;
        let pick = match timestamps {
            true => self.peer.rng.below(3),
            false => 2,
        };
        let text = match pick {
            0 => self.chunk(t, Some(ts + 1_000_000_000), None, false),
            1 => {
                let back = self.peer.rng.below(1000) as u64;
                self.chunk(t, Some(u64::MAX - back), None, false)
            }
            _ => {
                let text = self.chunk(t, None, Some(1_000_000_000_000 + ts), false);
                self.send(text);
                if self.window > 0 {
                    let lane = &mut self.lanes[t];
                    lane.wild_number = Some(lane.timeline.len() - 1);
                    self.peer.effects.push(Effect::Invalid);
                    // (Sent again, its number would be doubted again.)
                    *self.lanes[t].texts.last_mut().unwrap() = None;
                }
                return;
            }
        };
        self.send(text);
        self.peer.effects.push(Effect::Invalid);
        *self.lanes[t].texts.last_mut().unwrap() = None;
        self.lanes[t].plain = 2;
    }

    /// The track's timestamps step back by 1 to 3 chunks over its audio:
    /// the chunk is kept back until the next one, which follows it, shows
    /// the step; both go on after the track's audio, nothing lost.
    fn stepped_back(&mut self, t: usize) {
        let lane = &mut self.lanes[t];
        lane.ts -= 20 * (1 + self.peer.rng.below(3)) as u64;
        // Earlier chunks sent again would be on the old measure.
        lane.texts.iter_mut().for_each(|text| *text = None);
        let text = self.chunk(t, None, None, false);
        self.send(text);
        self.lanes[t].plain = 1;
    }

    /// The track's timestamps step ahead far beyond the wait less a chunk
    /// past where both tracks have reached (0.5 to 3 s: a stall of the src,
    /// which is time that passed, cannot make it less): the track is
    /// measured anew and its audio follows on; a chunk lost just before is
    /// part of the step, no silence. Nothing lost.
    fn stepped_ahead(&mut self, t: usize) {
        let lead = self.lanes[1 - t]
            .samples()
            .saturating_sub(self.lanes[t].src_end())
            / 8;
        let lost_last = self.lanes[t].timeline.last().is_some_and(Option::is_none);
        let ms = self.step_ms(t, 500 + lead, 20 * u64::from(lost_last));
        let lane = &mut self.lanes[t];
        if lost_last {
            lane.timeline.pop();
            lane.texts.pop();
        }
        lane.ts += ms;
        lane.steps_ahead += 1;
        // Earlier chunks sent again would be on the old measure.
        lane.texts.iter_mut().for_each(|text| *text = None);
        self.valid(t);
    }

    /// A step ahead of track `t` of `least` to 3000 ms, that the src
    /// measures as `also` ms more (a chunk lost just before it), and not
    /// within 100 ms of the other track's last step. (Sent far ahead of
    /// real time, the two steps' chunks come together: one that, moved by
    /// the other's step, lands within the wait of it is both tracks
    /// stepping at once, README "Steps", which this soak does not play.)
    fn step_ms(&mut self, t: usize, least: usize, also: u64) -> u64 {
        let other = self.lanes[1 - t].last_step;
        let near = |ms: u64| other.is_some_and(|o| (ms + also).abs_diff(o) <= 100);
        let mut ms = self.peer.rng.between(least, 3000) as u64;
        if near(ms) {
            // (Above the other's: the range may lie all below it.)
            ms = other.unwrap_or(0) + 101;
        }
        self.lanes[t].last_step = Some(ms + also);
        ms
    }

    /// The track's timestamps step ahead by 11 ms (past the tolerance) up
    /// to a chunk past the other track's audio: within the wait less a
    /// chunk of where both have reached, a gap, silence of its length.
    /// (Measured from the other track: the track's own reach leaves out
    /// what an earlier gap put its audio ahead of real time, and here,
    /// sent far ahead of real time, every gap does.)
    fn gap(&mut self, t: usize) {
        let room = (CHUNK + self.lanes[1 - t].src_end()).saturating_sub(self.lanes[t].samples());
        if room < 11 * 8 {
            return self.valid(t);
        }
        let ms = self.peer.rng.between(11, room / 8);
        let lane = &mut self.lanes[t];
        lane.ts += ms as u64;
        lane.gaps.push((lane.timeline.len(), ms * 8));
        self.valid(t);
    }

    /// Track `t` runs 1 to 8 chunks ahead before the other sends its own:
    /// once it leads by more than the wait, the other channel is filled
    /// with silence up to the wait behind it (lost), and what of the other
    /// track comes for that time is dropped (too late; the rest of a chunk
    /// goes in). The other track then goes on plainly, or its timestamps
    /// step ahead: by a gap (up to a chunk past the leading track's audio),
    /// or far (measured anew: its audio follows the silence filled).
    fn run_ahead(&mut self, t: usize) {
        let o = 1 - t;
        let k = self.peer.rng.between(1, 8);
        let (a, b) = (self.lanes[t].samples(), self.lanes[o].samples());
        let given_up = (a + k * CHUNK).saturating_sub(self.wait());
        let lead_ms = (a + k * CHUNK).saturating_sub(b) / 8;
        // (A gap up to a chunk past the leading track's audio.)
        let room = (CHUNK + a + k * CHUNK).saturating_sub(b) / 8;
        let (gap_ms, far) = match self.peer.rng.below(4) {
            0 if room >= 11 => (self.peer.rng.between(11, room), false),
            1 => (0, true),
            _ => (0, false),
        };
        for _ in 0..k {
            self.valid(t);
        }
        let lane = &mut self.lanes[o];
        if far {
            if given_up > b {
                lane.gaps.push((lane.timeline.len(), given_up - b));
            }
            let ms = self.step_ms(o, 500 + lead_ms, 0);
            let lane = &mut self.lanes[o];
            lane.ts += ms;
            lane.steps_ahead += 1;
            lane.texts.iter_mut().for_each(|text| *text = None);
            return self.valid(o);
        }
        if gap_ms > 0 {
            lane.ts += gap_ms as u64;
            lane.gaps.push((lane.timeline.len(), gap_ms * 8));
        }
        // (A gap is in the timestamps of the chunk after it: that one at
        // least is sent.)
        let mut gap = gap_ms > 0;
        while std::mem::take(&mut gap) || self.lanes[o].samples() <= given_up {
            let start = self.lanes[o].samples();
            self.valid(o);
            let lane = &mut self.lanes[o];
            let n = lane.timeline.len() - 1;
            if start < given_up {
                self.too_late += 1;
                match given_up - start {
                    late if late >= CHUNK => lane.timeline[n] = None,
                    late => lane.cut.push((n, late)),
                }
            }
        }
    }

    /// A plain chunk of 5 to 40 places back sent again: dropped (its bytes
    /// where the track had them, or kept back and dropped as out of place).
    fn resend(&mut self, t: usize) {
        let n = self.lanes[t].texts.len();
        if n < 45 || self.lanes[t].plain > 0 {
            return;
        }
        let back = 5 + self.peer.rng.below(35);
        if let Some(text) = self.lanes[t].texts[n - back].clone() {
            self.send(text);
            let lane = &mut self.lanes[t];
            lane.resent = true;
            lane.received += 1;
            lane.bytes += lane.timeline[n - back].as_ref().map_or(CHUNK, Vec::len) as u64;
            self.too_late += 1;
        }
    }

    /// One step of track `t`: hostile messages, then a chunk lost (4%),
    /// swapped with the next (2%), wild (2%), stepped back (2%), with steps
    /// ahead: stepped ahead (3%), a gap (4%), run ahead (3%); or plain, now
    /// and then one sent again.
    fn step(&mut self, t: usize, per_chunk: usize) {
        for _ in 0..self.peer.rng.below(per_chunk + 1) {
            let (frame, effect) = self.peer.draw();
            self.peer.frames.push(frame);
            self.peer.effects.push(effect);
        }
        let lane = &self.lanes[t];
        // (Two losses in a row could read as a step ahead: only one. Under
        // a reorder window, one at a time: while the window waits for a
        // lost chunk, its track's audio is that much behind.)
        let quiet =
            lane.plain == 0 && !lane.timeline.last().is_some_and(Option::is_none) && lane.hold == 0;
        // (A step back lies over audio only: over silence, it is late.)
        let n = lane.timeline.len();
        // (A gap lies before the place it names, a cut at its start.)
        let near =
            |silence: &[(usize, usize)], back| silence.last().is_some_and(|&(at, _)| at + back > n);
        let gap_near = near(&lane.gaps, 3) || near(&lane.cut, 4);
        let over_audio = lane.plain == 0
            && lane.timeline[n - 3..].iter().all(Option::is_some)
            && !gap_near
            && lane.ts > 60
            && (self.window == 0 || !self.shared_numbers);
        // (A loss just before a step ahead is part of it; before a gap, the
        // two could read as a step.)
        let ahead = self.steps_ahead && lane.plain == 0;
        let other = &self.lanes[1 - t];
        let both_quiet = quiet
            && other.plain == 0
            && !other.resent
            && !other.timeline.last().is_some_and(Option::is_none);
        // (Sent far ahead of real time, every gap leaves its track's audio
        // ahead of it, which its reach then leaves out: a lost chunk is a
        // gap, not a step, only as far as the other track's audio reaches.)
        let lossy = quiet && other.src_end() >= lane.samples();
        // (Under a reorder window, a wild number right after one is the
        // counter going on from it, believed, and the next plain one
        // counted as going back instead: not played.)
        let last_audio = lane.timeline.iter().rposition(Option::is_some);
        let after_wild_number = self.window > 0 && last_audio == lane.wild_number;
        // (Under a reorder window a swap loses nothing: put back in order,
        // also behind a lost chunk it waits for.)
        let swappable = match self.window {
            0 => lossy,
            _ => lane.plain == 0,
        };
        match self.peer.rng.below(100) {
            0..4 if lossy => self.lost(t),
            4..6 if swappable => self.swapped(t),
            6..8 if quiet && !after_wild_number => self.wild(t),
            8..10 if over_audio => self.stepped_back(t),
            10..13 if ahead => self.stepped_ahead(t),
            13..17 if ahead && quiet => self.gap(t),
            17..20 if ahead && both_quiet => self.run_ahead(t),
            _ => self.valid(t),
        }
        if self.peer.rng.chance(3) {
            self.resend(t);
        }
    }

    /// A call of `chunks` places per track: 25 clean of each, then the
    /// track that is behind (either when level) takes a step, then clean
    /// chunks (the last of the track behind shorter) until each has at
    /// least 4 more and they end level.
    pub fn play(&mut self, chunks: usize, per_chunk: usize) {
        for _ in 0..25 {
            self.valid(0);
            self.valid(1);
        }
        let len = |b: &Both, t: usize| b.lanes[t].timeline.len();
        let samples = |b: &Both, t: usize| b.lanes[t].samples();
        while len(self, 0).min(len(self, 1)) < chunks - 4 {
            let t = match samples(self, 0).cmp(&samples(self, 1)) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Greater => 1,
                _ => self.peer.rng.below(2),
            };
            self.step(t, per_chunk);
        }
        // (Still in step: a track more than track-wait ahead would cost
        // the other its audio. At the end, the shorter one would be padded.)
        loop {
            let (a, b) = (samples(self, 0), samples(self, 1));
            if a == b && len(self, 0).min(len(self, 1)) >= chunks {
                break;
            }
            let short = a.abs_diff(b);
            let len = if short == 0 { CHUNK } else { short.min(CHUNK) };
            self.valid_of(usize::from(b < a), len);
        }
    }

    /// The two channels' 8 kHz samples, interleaved.
    pub fn expected_pcm(&self) -> Vec<i16> {
        let (a, b) = (self.lanes[0].pcm(), self.lanes[1].pcm());
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).flat_map(|(x, y)| [*x, *y]).collect()
    }
}

/// The soak of one seeded call of both tracks from `provider` (Twilio's
/// `both_tracks`, or Telnyx's) into a src at 8 kHz (with steps ahead if
/// told: Twilio's only).
pub fn soak(seed: u64, provider: Provider, props: &str, steps_ahead: bool) {
    assert!(!steps_ahead || provider == Provider::Twilio);
    let desc = format!(
        "twiliostreamsrc name=src port=0 latency=5000 gap-fill=silence track=both {props} ! \
         audio/x-raw,rate=8000,channels=2 ! fakesink name=sink sync=false"
    );
    let p = pipeline(&desc);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let params = CallParams {
        tracks: TRACKS.map(String::from).to_vec(),
        ..crate::params(provider)
    };
    let mut both = Both::new(seed, provider, &params.stream_sid);
    both.steps_ahead = steps_ahead;
    both.play(300, 10);
    rt().block_on(async {
        let mut call = TwilioCall::start(&url_of(&src), params).await.unwrap();
        crate::send_all(&mut call, &both.peer.frames);
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let messages = drain_messages(&p.bus().unwrap());
    set_state(&p, gst::State::Null);
    let context = format!(
        "seed {seed}, {provider:?}, both tracks, shared numbers {}, steps ahead {steps_ahead}, {props}",
        both.shared_numbers
    );
    crate::assert_events(&src, &both.peer, &messages, &context);
    if steps_ahead {
        // (The perturbations this soak is for did happen.)
        let [a, b] = &both.lanes;
        let took = |f: fn(&Lane) -> usize| f(a) + f(b) > 0;
        assert!(
            took(|l| l.steps_ahead) && took(|l| l.gaps.len()),
            "{context}"
        );
    }
    let [inbound, outbound] = &both.lanes;
    if provider == Provider::Telnyx {
        // (The window had pairs to put back and losses to give up.)
        let lost = inbound.lost() + outbound.lost();
        assert!(both.reordered > 0 && lost > 0, "{context}");
    }
    let counter = |name: &str| src.property::<u64>(name);
    let received = inbound.received + outbound.received;
    let expected = [
        ("invalid-messages", both.peer.count(Effect::Invalid)),
        ("transcode-errors", both.peer.count(Effect::Transcode)),
        ("chunks-received", received),
        ("bytes-received", inbound.bytes + outbound.bytes),
        ("inbound-chunks-received", inbound.received),
        ("outbound-chunks-received", outbound.received),
        ("chunks-lost", inbound.lost() + outbound.lost()),
        ("inbound-chunks-lost", inbound.lost()),
        ("outbound-chunks-lost", outbound.lost()),
        ("chunks-too-late", both.too_late),
        ("chunks-reordered", both.reordered),
        ("chunks-filled-late", 0),
    ];
    for (name, n) in expected {
        assert_eq!(counter(name), n, "{name}: {context}");
    }
    crate::assert_samples(&got.samples(), &both.expected_pcm(), &context);
    common::src::assert_contiguous(&got.buffers);
    assert_eq!(got.buffers[0].offset(), 0);
}
