//! The hostile call with `track=both`: Twilio's two tracks interleaved,
//! each with its own signal, timestamps and losses (README "Both sides of
//! the call"). Per track: chunks lost (silence in its channel only),
//! swapped (the first dropped as late), sent twice (dropped), a timestamp
//! far ahead (invalid, its audio in its place; the next chunk is kept back
//! until the one after it shows the timestamps came back), a wild chunk
//! number (not used with two tracks: a plain chunk), timestamps stepping
//! back over the track's audio (measured anew, nothing lost). Chunk numbers count
//! per track or across both (which Twilio does is unconfirmed). Between
//! them, the same hostile messages as the one-track soak.

use base64::Engine as _;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, Provider, TwilioCall};

use crate::common::{self, *};
use crate::peer::{CHUNK, Effect, Frame, Peer};

const TRACKS: [&str; 2] = ["inbound", "outbound"];

/// What one track sent, and must come out of its channel.
#[derive(Default)]
pub struct Lane {
    /// Each place's bytes, or None if lost (silence).
    pub timeline: Vec<Option<Vec<u8>>>,
    /// The plain chunks' texts as sent, by place (for resending).
    texts: Vec<Option<String>>,
    pub received: u64,
    /// Chunks that must come plainly next: after a timestamp far ahead,
    /// the first is kept back until the second tells a step back.
    plain: usize,
    /// How far its timestamps stepped back in all (ms).
    shift_ms: u64,
}

impl Lane {
    pub fn lost(&self) -> u64 {
        self.timeline.iter().filter(|c| c.is_none()).count() as u64
    }
}

pub struct Both {
    pub peer: Peer,
    pub lanes: [Lane; 2],
    /// One `media.chunk` counter for both tracks (else one per track).
    shared_numbers: bool,
    numbered: u64,
    pub too_late: u64,
}

impl Both {
    pub fn new(seed: u64, sid: &str) -> Both {
        let mut peer = Peer::new(seed, Provider::Twilio, sid);
        let shared_numbers = peer.rng.chance(50);
        Both {
            peer,
            lanes: [Lane::default(), Lane::default()],
            shared_numbers,
            numbered: 0,
            too_late: 0,
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
        let n = self.lanes[t].timeline.len();
        let ulaw: Vec<u8> = (0..CHUNK)
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
            ts.unwrap_or(n as u64 * 20 - self.lanes[t].shift_ms),
            number.unwrap_or(chunk),
            &payload,
        );
        let text = match spell {
            true => self.peer.spelled(v, TRACKS[t]),
            false => v.to_string(),
        };
        let lane = &mut self.lanes[t];
        lane.received += 1;
        lane.timeline.push(Some(ulaw));
        lane.texts.push(Some(text.clone()));
        text
    }

    fn send(&mut self, text: String) {
        self.peer.frames.push(Frame::Text(text));
    }

    fn valid(&mut self, t: usize) {
        let text = self.chunk(t, None, None, true);
        self.send(text);
        self.lanes[t].plain = self.lanes[t].plain.saturating_sub(1);
    }

    fn lost(&mut self, t: usize) {
        self.number(t);
        self.lanes[t].timeline.push(None);
        self.lanes[t].texts.push(None);
    }

    /// The next two places of track `t` in the wrong order: the first is
    /// silence (a gap) by the time it comes, then dropped as late.
    fn swapped(&mut self, t: usize) {
        let first = self.chunk(t, None, None, false);
        let second = self.chunk(t, None, None, false);
        self.send(second);
        self.send(first);
        let n = self.lanes[t].timeline.len();
        self.lanes[t].timeline[n - 2] = None;
        self.lanes[t].texts[n - 2] = None;
        self.too_late += 1;
    }

    /// A timestamp far ahead (invalid, placed after the track's last) or
    /// a wild chunk number (unused with two tracks).
    fn wild(&mut self, t: usize) {
        let ts = self.lanes[t].timeline.len() as u64 * 20 - self.lanes[t].shift_ms;
        let text = match self.peer.rng.below(3) {
            0 => self.chunk(t, Some(ts + 1_000_000_000), None, false),
            1 => {
                let back = self.peer.rng.below(1000) as u64;
                self.chunk(t, Some(u64::MAX - back), None, false)
            }
            _ => {
                let text = self.chunk(t, None, Some(1_000_000_000_000 + ts), false);
                self.send(text);
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
        lane.shift_ms += 20 * (1 + self.peer.rng.below(3)) as u64;
        // Earlier chunks sent again would be on the old measure.
        lane.texts.iter_mut().for_each(|text| *text = None);
        let text = self.chunk(t, None, None, false);
        self.send(text);
        self.lanes[t].plain = 1;
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
            self.lanes[t].received += 1;
            self.too_late += 1;
        }
    }

    /// One step of track `t`: hostile messages, then a chunk lost (4%),
    /// swapped with the next (2%), wild (2%) or plain, now and then one
    /// sent again.
    fn step(&mut self, t: usize, per_chunk: usize) {
        for _ in 0..self.peer.rng.below(per_chunk + 1) {
            let (frame, effect) = self.peer.draw();
            self.peer.frames.push(frame);
            self.peer.effects.push(effect);
        }
        let lane = &self.lanes[t];
        // (Two losses in a row could read as a step ahead: only one.)
        let quiet = lane.plain == 0 && !lane.timeline.last().is_some_and(Option::is_none);
        // (A step back lies over audio only: over silence, it is late.)
        let n = lane.timeline.len();
        let over_audio = lane.plain == 0
            && lane.timeline[n - 3..].iter().all(Option::is_some)
            && lane.shift_ms + 60 < n as u64 * 20;
        match self.peer.rng.below(100) {
            0..4 if quiet => self.lost(t),
            4..6 if quiet => self.swapped(t),
            6..8 if quiet => self.wild(t),
            8..10 if over_audio => self.stepped_back(t),
            _ => self.valid(t),
        }
        if self.peer.rng.chance(3) {
            self.resend(t);
        }
    }

    /// A call of `chunks` places per track: 25 clean of each, then the
    /// track that is behind (either when level) takes a step, then 4 clean
    /// of each.
    pub fn play(&mut self, chunks: usize, per_chunk: usize) {
        for _ in 0..25 {
            self.valid(0);
            self.valid(1);
        }
        let len = |b: &Both, t: usize| b.lanes[t].timeline.len();
        while len(self, 0).min(len(self, 1)) < chunks - 4 {
            let t = match len(self, 0).cmp(&len(self, 1)) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Greater => 1,
                _ => self.peer.rng.below(2),
            };
            self.step(t, per_chunk);
        }
        // (Still in step: a track more than track-wait ahead would cost
        // the other its audio.)
        while len(self, 0).min(len(self, 1)) < chunks {
            for t in [0, 1] {
                if len(self, t) < chunks {
                    self.valid(t);
                }
            }
        }
    }

    /// The two channels' 8 kHz samples, interleaved.
    pub fn expected_pcm(&self) -> Vec<i16> {
        let channel = |lane: &Lane| -> Vec<i16> {
            lane.timeline
                .iter()
                .flat_map(|c| c.as_deref().map_or(vec![0; CHUNK], decode))
                .collect()
        };
        let (a, b) = (channel(&self.lanes[0]), channel(&self.lanes[1]));
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).flat_map(|(x, y)| [*x, *y]).collect()
    }
}

/// The soak of one seeded `both_tracks` Twilio call into a src at 8 kHz.
pub fn soak(seed: u64, props: &str) {
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
        ..crate::params(Provider::Twilio)
    };
    let mut both = Both::new(seed, &params.stream_sid);
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
        "seed {seed}, both tracks, shared numbers {}, {props}",
        both.shared_numbers
    );
    crate::assert_events(&src, &both.peer, &messages, &context);
    let [inbound, outbound] = &both.lanes;
    let counter = |name: &str| src.property::<u64>(name);
    let received = inbound.received + outbound.received;
    let expected = [
        ("invalid-messages", both.peer.count(Effect::Invalid)),
        ("transcode-errors", both.peer.count(Effect::Transcode)),
        ("chunks-received", received),
        ("bytes-received", received * CHUNK as u64),
        ("inbound-chunks-received", inbound.received),
        ("outbound-chunks-received", outbound.received),
        ("chunks-lost", inbound.lost() + outbound.lost()),
        ("inbound-chunks-lost", inbound.lost()),
        ("outbound-chunks-lost", outbound.lost()),
        ("chunks-too-late", both.too_late),
        ("chunks-reordered", 0),
        ("chunks-filled-late", 0),
    ];
    for (name, n) in expected {
        assert_eq!(counter(name), n, "{name}: {context}");
    }
    crate::assert_samples(&got.samples(), &both.expected_pcm(), &context);
    common::src::assert_contiguous(&got.buffers);
    assert_eq!(got.buffers[0].offset(), 0);
}
