//! The hostile peer's call: its signal, its valid chunks in every
//! spelling, chunks lost, sent twice or swapped, and what it must have
//! made the src count and output.

use base64::Engine as _;
use serde_json::{Value, json};
use twilio_emulator::Provider;
use twilio_emulator::audio::decode;

pub use crate::common::rng::Rng;

/// A frame the peer sends.
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

pub fn text(text: String, effect: Effect) -> (Frame, Effect) {
    (Frame::Text(text), effect)
}

/// What a hostile message must do, by README.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Invalid,
    Transcode,
    Mark(String),
    Dtmf(String),
    Nothing,
}

/// The provider's field names.
pub struct Spelling {
    pub provider: Provider,
    pub sid: &'static str,
    pub seq: &'static str,
}

impl Spelling {
    pub fn of(provider: Provider) -> Spelling {
        match provider {
            Provider::Telnyx => Spelling {
                provider,
                sid: "stream_id",
                seq: "sequence_number",
            },
            _ => Spelling {
                provider,
                sid: "streamSid",
                seq: "sequenceNumber",
            },
        }
    }

    pub fn envelope(&self, event: &str, sid: Value, body: Option<(&str, Value)>) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("event".into(), json!(event));
        m.insert(self.seq.into(), json!("7"));
        m.insert(self.sid.into(), sid);
        if let Some((name, value)) = body {
            m.insert(name.into(), value);
        }
        Value::Object(m)
    }

    pub fn media(&self, sid: &str, ts: u64, chunk: u64, payload: &str) -> Value {
        self.media_on("inbound", sid, ts, chunk, payload)
    }

    pub fn media_on(&self, track: &str, sid: &str, ts: u64, chunk: u64, payload: &str) -> Value {
        let media = json!({"track": track, "chunk": chunk.to_string(),
            "timestamp": ts.to_string(), "payload": payload});
        self.envelope("media", json!(sid), Some(("media", media)))
    }
}

/// The call being played: its signal and what it must have counted.
pub struct Peer {
    pub rng: Rng,
    pub spelling: Spelling,
    pub sid: String,
    /// Each chunk's place on the timeline: its bytes, or None if lost.
    pub timeline: Vec<Option<Vec<u8>>>,
    /// The valid chunks' texts as sent, by place (for resending).
    pub texts: Vec<Option<String>>,
    pub effects: Vec<Effect>,
    pub received: u64,
    pub too_late: u64,
    pub reordered: u64,
    pub frames: Vec<Frame>,
}

pub const CHUNK: usize = 160;

impl Peer {
    pub fn new(seed: u64, provider: Provider, sid: &str) -> Peer {
        Peer {
            rng: Rng::new(seed),
            spelling: Spelling::of(provider),
            sid: sid.to_owned(),
            timeline: Vec::new(),
            texts: Vec::new(),
            effects: Vec::new(),
            received: 0,
            too_late: 0,
            reordered: 0,
            frames: Vec::new(),
        }
    }

    pub fn count(&self, effect: Effect) -> u64 {
        self.effects.iter().filter(|e| **e == effect).count() as u64
    }

    /// The next chunk on the timeline: a fresh bit of the signal (no byte
    /// repeated all through, so none reads as digital silence).
    fn next_chunk(&mut self) -> Vec<u8> {
        let n = self.timeline.len();
        (0..CHUNK)
            .map(|i| (((n * CHUNK + i) * 37 + (self.rng.next() as usize & 7)) % 251) as u8)
            .collect()
    }

    pub fn place(&self) -> (u64, u64) {
        let n = self.timeline.len() as u64;
        (n * 20, n + 1)
    }

    /// One chunk of the signal, in a valid spelling drawn at random.
    fn valid_chunk(&mut self) {
        let ulaw = self.next_chunk();
        let (ts, chunk) = self.place();
        let payload = base64::engine::general_purpose::STANDARD.encode(&ulaw);
        let v = self.spelling.media(&self.sid, ts, chunk, &payload);
        let text = self.spelled(v, "inbound");
        self.received += 1;
        self.frames.push(Frame::Text(text.clone()));
        self.timeline.push(Some(ulaw));
        self.texts.push(Some(text));
    }

    /// A valid media message of `track` in a spelling drawn at random.
    pub fn spelled(&mut self, mut v: Value, track: &str) -> String {
        let (ts, chunk) = (
            v["media"]["timestamp"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
            v["media"]["chunk"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap(),
        );
        match self.rng.below(9) {
            0 => {
                v["media"]["timestamp"] = json!(ts);
                v["media"]["chunk"] = json!(chunk);
                v[self.spelling.seq] = json!(u64::MAX);
                v.to_string()
            }
            1 => {
                v["extra"] = json!({"a": [1, {"b": null}], "media": "not this one"});
                v["media"]["new"] = json!([true, 1.5e300]);
                v.to_string()
            }
            2 => serde_json::to_string_pretty(&v).unwrap(),
            3 => {
                // Every character of the id and the payload's '/' escaped.
                let sid: String = self
                    .sid
                    .chars()
                    .map(|c| format!("\\u{:04x}", c as u32))
                    .collect();
                let sid_key = self.spelling.sid;
                v.to_string()
                    .replace(
                        &format!("\"{sid_key}\":\"{}\"", self.sid),
                        &format!("\"{sid_key}\":\"{sid}\""),
                    )
                    .replace('/', "\\/")
                    .replace("\"event\"", "\"\\u0065vent\"")
            }
            4 => {
                v.as_object_mut().unwrap().remove(self.spelling.seq);
                v["media"]["chunk"] = json!(format!(" {chunk} "));
                v.to_string()
            }
            5 => {
                v["media"]["track"] = json!(format!("{track}_track"));
                v.to_string()
            }
            6 => {
                // (A media message without a track is the caller's.)
                if track == "inbound" {
                    v["media"].as_object_mut().unwrap().remove("track");
                }
                // Keys in the other order.
                let m = v.as_object().unwrap();
                let parts: Vec<String> = m
                    .iter()
                    .rev()
                    .map(|(k, x)| format!("{}:{}", json!(k), x))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }
            7 if self.spelling.provider == Provider::SignalWire => {
                json!({"timestamp": "2024", "eventType": "media", "rawEvent": v}).to_string()
            }
            _ => v.to_string(),
        }
    }

    /// A chunk of the signal in its place, with `ts` or `chunk` changed.
    fn odd_chunk(&mut self, ts: Option<u64>, chunk: Option<u64>) -> String {
        let ulaw = self.next_chunk();
        let (t, c) = self.place();
        let payload = base64::engine::general_purpose::STANDARD.encode(&ulaw);
        let text = self
            .spelling
            .media(&self.sid, ts.unwrap_or(t), chunk.unwrap_or(c), &payload)
            .to_string();
        self.received += 1;
        self.timeline.push(Some(ulaw));
        self.texts.push(Some(text.clone()));
        text
    }

    /// The next two places sent in the wrong order: Telnyx's are put back
    /// in order; Twilio's first is lost (silence) by the time it comes,
    /// then dropped.
    fn swapped_pair(&mut self) {
        let first = self.odd_chunk(None, None);
        let second = self.odd_chunk(None, None);
        self.frames.push(Frame::Text(second));
        self.frames.push(Frame::Text(first));
        if self.spelling.provider == Provider::Telnyx {
            self.reordered += 1;
        } else {
            let n = self.timeline.len();
            self.timeline[n - 2] = None;
            self.texts[n - 2] = None;
            self.too_late += 1;
        }
    }

    /// A chunk with a timestamp far beyond the time that passed, or a
    /// chunk number skipping more than it holds: invalid, its audio in
    /// its place all the same.
    fn wild_chunk(&mut self) {
        let (ts, chunk) = self.place();
        let text = match self.rng.below(3) {
            0 => self.odd_chunk(Some(ts + 1_000_000_000), None),
            1 => {
                let back = self.rng.below(1000) as u64;
                self.odd_chunk(Some(u64::MAX - back), None)
            }
            _ => self.odd_chunk(None, Some(chunk + 1_000_000_000_000)),
        };
        self.frames.push(Frame::Text(text));
        self.effects.push(Effect::Invalid);
        // Not sent again: a copy of it is no plain duplicate.
        *self.texts.last_mut().unwrap() = None;
    }

    /// A chunk lost on the way.
    fn lost_chunk(&mut self) {
        self.next_chunk();
        self.timeline.push(None);
        self.texts.push(None);
    }

    /// A valid chunk of 5 to 40 places back sent again, unless a loss in
    /// the last 5 places may still hold chunks back (Telnyx's window).
    fn resend(&mut self) {
        let n = self.texts.len();
        if n < 45 || self.texts[n - 5..].iter().any(Option::is_none) {
            return;
        }
        if let Some(text) = self.texts[n - 5 - self.rng.below(35)].clone() {
            self.frames.push(Frame::Text(text));
            self.received += 1;
            self.too_late += 1;
        }
    }

    fn hostile(&mut self) {
        let (frame, effect) = self.draw();
        self.frames.push(frame);
        self.effects.push(effect);
    }

    /// A call of `chunks` places: 25 clean chunks, then after `per_chunk`
    /// hostile messages on average each place lost (4%), sent after the
    /// next (2% of pairs), with a wild timestamp or number (2%) or plainly;
    /// a chunk sent twice now and then; then 4 clean chunks.
    pub fn play(&mut self, chunks: usize, per_chunk: usize) {
        for _ in 0..25 {
            self.valid_chunk();
        }
        while self.timeline.len() < chunks - 4 {
            for _ in 0..self.rng.below(2 * per_chunk + 1) {
                self.hostile();
            }
            let previous_lost = self.timeline.last().is_some_and(Option::is_none);
            match self.rng.below(100) {
                0..4 => self.lost_chunk(),
                4..6 if !previous_lost => self.swapped_pair(),
                6..8 if !previous_lost => {
                    self.wild_chunk();
                    self.valid_chunk();
                }
                _ => self.valid_chunk(),
            }
            if self.rng.chance(3) {
                self.resend();
            }
        }
        // The last ones in order: nothing held back at the end.
        for _ in 0..4 {
            self.valid_chunk();
        }
    }

    /// The 8 kHz samples that must come out (gap-fill=silence).
    pub fn expected_pcm(&self) -> Vec<i16> {
        self.timeline
            .iter()
            .flat_map(|c| match c {
                Some(ulaw) => decode(ulaw),
                None => vec![0; CHUNK],
            })
            .collect()
    }

    /// The μ-law bytes that must be echoed.
    pub fn expected_ulaw(&self) -> Vec<u8> {
        let silence = gsttwiliostream::codec::g711::encode(0);
        self.timeline
            .iter()
            .flat_map(|c| c.clone().unwrap_or_else(|| vec![silence; CHUNK]))
            .collect()
    }

    pub fn lost(&self) -> u64 {
        self.timeline.iter().filter(|c| c.is_none()).count() as u64
    }
}
