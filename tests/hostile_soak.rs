//! A whole call against a hostile peer, seeded: between the chunks of a
//! known signal (some of them lost on the way, some sent twice), thousands
//! of messages drawn by a PRNG from mutations of the provider's own (fields
//! removed, wrong types, numbers out of range, escapes, duplicate keys,
//! unknown events, odd marks and keys, a second `start`, `stop`s that are
//! no stop, bad base64, binary and empty frames), and valid chunks spelled
//! in every way JSON allows. Per README ("Bad input never costs the call"):
//! the call goes on to its `stop`, nothing posts an ERROR, each counter
//! counts what it says, and the audio comes out sample for sample, lost
//! chunks as silence in their place. Also through a paired sink: the echo
//! is the audio, byte for byte.
//!
//! Timing plays no part: the fill deadline (`latency=5000`) is far beyond
//! the time a call takes, and the peer sends far ahead of real time.

mod common;

use base64::Engine as _;
use common::sink::{media_bytes, receive_until};
use common::*;
use gst::prelude::*;
use serde_json::{Value, json};
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, Playout, Provider, TwilioCall};

/// splitmix64: the test's own PRNG, so that a seed is a call.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A frame the peer sends.
enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

fn text(text: String, effect: Effect) -> (Frame, Effect) {
    (Frame::Text(text), effect)
}

/// What a hostile message must do, by README.
#[derive(Debug, Clone, PartialEq)]
enum Effect {
    Invalid,
    Transcode,
    Mark(String),
    Dtmf(String),
    Nothing,
}

/// The provider's field names.
struct Spelling {
    provider: Provider,
    sid: &'static str,
    seq: &'static str,
}

impl Spelling {
    fn of(provider: Provider) -> Spelling {
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

    fn envelope(&self, event: &str, sid: Value, body: Option<(&str, Value)>) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("event".into(), json!(event));
        m.insert(self.seq.into(), json!("7"));
        m.insert(self.sid.into(), sid);
        if let Some((name, value)) = body {
            m.insert(name.into(), value);
        }
        Value::Object(m)
    }

    fn media(&self, sid: &str, ts: u64, chunk: u64, payload: &str) -> Value {
        let media = json!({"track": "inbound", "chunk": chunk.to_string(),
            "timestamp": ts.to_string(), "payload": payload});
        self.envelope("media", json!(sid), Some(("media", media)))
    }
}

/// The call being played: its signal and what it must have counted.
struct Peer {
    rng: Rng,
    spelling: Spelling,
    sid: String,
    /// Each chunk's place on the timeline: its bytes, or None if lost.
    timeline: Vec<Option<Vec<u8>>>,
    /// The valid chunks' texts as sent, by place (for resending).
    texts: Vec<Option<String>>,
    effects: Vec<Effect>,
    received: u64,
    too_late: u64,
    reordered: u64,
    /// Whether a chunk of a wild timestamp or number is still to be sent
    /// (one a call).
    wild: bool,
    frames: Vec<Frame>,
}

const CHUNK: usize = 160;

impl Peer {
    fn new(seed: u64, provider: Provider, sid: &str) -> Peer {
        Peer {
            rng: Rng(seed),
            spelling: Spelling::of(provider),
            sid: sid.to_owned(),
            timeline: Vec::new(),
            texts: Vec::new(),
            effects: Vec::new(),
            received: 0,
            too_late: 0,
            reordered: 0,
            wild: true,
            frames: Vec::new(),
        }
    }

    fn count(&self, effect: Effect) -> u64 {
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

    fn place(&self) -> (u64, u64) {
        let n = self.timeline.len() as u64;
        (n * 20, n + 1)
    }

    /// One chunk of the signal, in a valid spelling drawn at random.
    fn valid_chunk(&mut self) {
        let ulaw = self.next_chunk();
        let (ts, chunk) = self.place();
        let payload = base64::engine::general_purpose::STANDARD.encode(&ulaw);
        let mut v = self.spelling.media(&self.sid, ts, chunk, &payload);
        let text = match self.rng.below(9) {
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
                v["media"]["track"] = json!("inbound_track");
                v.to_string()
            }
            6 => {
                v["media"].as_object_mut().unwrap().remove("track");
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
        };
        self.received += 1;
        self.frames.push(Frame::Text(text.clone()));
        self.timeline.push(Some(ulaw));
        self.texts.push(Some(text));
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

    /// One hostile message and what it must do.
    fn draw(&mut self) -> (Frame, Effect) {
        let sid = self.sid.clone();
        let (ts, chunk) = self.place();
        let payload = base64::engine::general_purpose::STANDARD.encode([0x55u8; CHUNK]);
        let media = self.spelling.media(&sid, ts, chunk, &payload);
        let sk = self.spelling.sid;
        // Values no field takes: numbers out of range, wrong types.
        const WRONG: &[&str] = &[
            "true",
            "[]",
            "{}",
            "1.5",
            "-1",
            "\"-1\"",
            "\"x\"",
            "\"\"",
            "1e400",
            "18446744073709551616",
            "\"18446744073709551616\"",
            "-9223372036854775809",
            "\"0x10\"",
            "\"1 2\"",
        ];
        match self.rng.below(20) {
            0 => {
                // Any valid message cut short.
                let full = media.to_string();
                let cut = self.rng.below(full.len());
                text(full[..cut].to_owned(), Effect::Invalid)
            }
            1 => {
                let len = self.rng.below(300);
                let bytes = (0..len).map(|_| self.rng.next() as u8).collect();
                (Frame::Binary(bytes), Effect::Invalid)
            }
            2 => {
                let t = self
                    .rng
                    .pick(&[
                        "",
                        " ",
                        "\n",
                        "null",
                        "42",
                        "\"media\"",
                        "[]",
                        "{}",
                        "{\"event\":null}",
                    ])
                    .to_string();
                text(t, Effect::Invalid)
            }
            3 => {
                // A required field removed.
                let mut v = media;
                match self.rng.below(4) {
                    0 => v.as_object_mut().unwrap().remove(sk),
                    1 => v.as_object_mut().unwrap().remove("media"),
                    2 => v["media"].as_object_mut().unwrap().remove("payload"),
                    _ => v["media"].as_object_mut().unwrap().remove("timestamp"),
                };
                text(v.to_string(), Effect::Invalid)
            }
            4 => {
                // A wrong value in a field (as text: some are no f64 either).
                let wrong = *self.rng.pick(WRONG);
                let field = *self.rng.pick(&[
                    "timestamp",
                    "chunk",
                    "payload",
                    "track",
                    "seq",
                    "sid",
                    "event",
                    "media",
                ]);
                let mut v = media;
                let marker = json!("@@WRONG@@");
                match field {
                    "seq" => v[self.spelling.seq] = marker,
                    "sid" => v[sk] = marker,
                    "event" => v["event"] = marker,
                    "media" => v["media"] = marker,
                    f => v["media"][f] = marker,
                }
                // A string is a wrong track, id or event; as a payload,
                // one that is no base64.
                let (wrong, effect) = match (field, wrong.starts_with('"')) {
                    ("payload", true) => ("\"!!\"", Effect::Transcode),
                    _ => (wrong, Effect::Invalid),
                };
                text(v.to_string().replace("\"@@WRONG@@\"", wrong), effect)
            }
            5 => {
                // A key twice, at the top or in the body.
                let t = media.to_string();
                let dup = match self.rng.below(3) {
                    0 => t.replacen('{', &format!("{{\"{sk}\":\"{sid}\","), 1),
                    1 => t.replacen(
                        "\"media\":{",
                        &format!("\"media\":{{\"payload\":\"{payload}\","),
                        1,
                    ),
                    _ => t.replacen('{', "{\"event\":\"media\",", 1),
                };
                text(dup, Effect::Invalid)
            }
            6 => {
                let name = *self.rng.pick(&[
                    "hangup",
                    "transfer",
                    "MEDIA",
                    "Start",
                    "",
                    "mediа",
                    "\u{0}",
                    "stop ",
                    "medi\\u0061x",
                ]);
                let v = self.spelling.envelope(name, json!(sid), None);
                text(v.to_string(), Effect::Invalid)
            }
            7 | 8 => {
                let name: String = match self.rng.below(8) {
                    0 => String::new(),
                    1 => "x".repeat(self.rng.below(30_000)),
                    2 => "ünïcødé 🎉 日本".into(),
                    3 => "\n\t\"\\/\u{7f}".into(),
                    4 => "\u{202e}lrt\u{feff}".into(),
                    5 => format!("a\u{0}{}", self.rng.next()),
                    6 => "{\"event\":\"stop\"}".into(),
                    _ => format!("mark-{}", self.rng.next()),
                };
                let v = self.spelling.envelope(
                    "mark",
                    json!(sid),
                    Some(("mark", json!({"name": name}))),
                );
                let effect = if name.contains('\0') {
                    Effect::Invalid
                } else {
                    Effect::Mark(name)
                };
                text(v.to_string(), effect)
            }
            9 => {
                let v = match self.rng.below(4) {
                    0 => self.spelling.envelope(
                        "mark",
                        json!(sid),
                        Some(("mark", json!({"name": 5}))),
                    ),
                    1 => self
                        .spelling
                        .envelope("mark", json!(sid), Some(("mark", json!({})))),
                    2 => self.spelling.envelope(
                        "mark",
                        json!("MZ-someone-else"),
                        Some(("mark", json!({"name": "a"}))),
                    ),
                    _ => self.spelling.envelope("mark", json!(sid), None),
                };
                text(v.to_string(), Effect::Invalid)
            }
            10 | 11 => {
                let digit = *self.rng.pick(&[
                    "1", "0", "9", "*", "#", "A", "d", "", "10", "x", "E", "١", "１", " 1", "**",
                    "\u{0}",
                ]);
                let v = self.spelling.envelope(
                    "dtmf",
                    json!(sid),
                    Some(("dtmf", json!({"track": "inbound_track", "digit": digit}))),
                );
                let key = digit.chars().count() == 1
                    && matches!(
                        digit.chars().next(),
                        Some('0'..='9' | '*' | '#' | 'A'..='D' | 'a'..='d')
                    );
                text(
                    v.to_string(),
                    if key {
                        Effect::Dtmf(digit.into())
                    } else {
                        Effect::Invalid
                    },
                )
            }
            12 => {
                // A second start: the same stream, another, or none.
                let other = *self.rng.pick(&[sid.as_str(), "MZ0000", "", "MZ\u{0}"]);
                let start = match self.spelling.provider {
                    Provider::Telnyx => {
                        json!({"call_control_id": "v3:x", "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}})
                    }
                    _ => {
                        json!({"accountSid": "AC1", "streamSid": other, "callSid": "CA2", "tracks": ["inbound"],
                        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}})
                    }
                };
                let v = self
                    .spelling
                    .envelope("start", json!(other), Some(("start", start)));
                text(v.to_string(), Effect::Invalid)
            }
            13 => {
                // Stops that are no stop of this stream.
                let body = match self.spelling.provider {
                    Provider::Telnyx => json!({"user_id": 5}),
                    _ => json!({"accountSid": 5, "callSid": "CA1"}),
                };
                let v = match self.rng.below(5) {
                    0 => self
                        .spelling
                        .envelope("stop", json!("MZ-someone-else"), None),
                    1 => self.spelling.envelope("stop", json!(5), None),
                    2 => self
                        .spelling
                        .envelope("stop", json!(sid), Some(("stop", json!("now")))),
                    3 => self
                        .spelling
                        .envelope("stop", json!(sid), Some(("stop", body))),
                    _ => {
                        let mut v = self.spelling.envelope("stop", json!(sid), None);
                        v.as_object_mut().unwrap().remove(sk);
                        v
                    }
                };
                text(v.to_string(), Effect::Invalid)
            }
            14 | 15 => {
                // A payload that is no base64 (or of a length it cannot have).
                let bad = match self.rng.below(5) {
                    0 => payload[..payload.len() - 1 - self.rng.below(2)].to_owned(),
                    1 => format!("{}-_", &payload[..payload.len() - 4]),
                    2 => "A".into(),
                    3 => format!(" {payload}"),
                    _ => "AB=C".into(),
                };
                let mut v = media;
                v["media"]["payload"] = json!(bad);
                text(v.to_string(), Effect::Transcode)
            }
            16 => {
                let mut v = media;
                let t = match self.rng.below(4) {
                    0 => {
                        v[sk] = json!(format!("{sid}é"));
                        v.to_string()
                    }
                    1 => {
                        v["media"]["track"] =
                            json!(*self.rng.pick(&["sideways", "INBOUND", "", "in\u{0}bound"]));
                        v.to_string()
                    }
                    2 => "[".repeat(5000) + &"]".repeat(5000),
                    _ => v.to_string().replacen(
                        '}',
                        &format!(",\"pad\":\"{}\"}}", "p".repeat(70_000)),
                        1,
                    ),
                };
                text(t, Effect::Invalid)
            }
            17 => {
                // Another provider's spelling.
                let v = match self.spelling.provider {
                    Provider::Telnyx => {
                        Spelling::of(Provider::Twilio).media(&sid, ts, chunk, &payload)
                    }
                    _ => Spelling::of(Provider::Telnyx).media(&sid, ts, chunk, &payload),
                };
                let v = match self.spelling.provider {
                    Provider::Twilio => json!({"rawEvent": media}),
                    _ => v,
                };
                text(v.to_string(), Effect::Invalid)
            }
            18 => {
                let v = match self.spelling.provider {
                    Provider::Telnyx => json!({"event": "connected", "version": "1.0.0"}),
                    _ => json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
                };
                text(v.to_string(), Effect::Nothing)
            }
            _ => {
                // An empty payload: skipped, not counted.
                let mut v = media;
                v["media"]["payload"] = json!("");
                text(v.to_string(), Effect::Nothing)
            }
        }
    }

    /// A call of `chunks` places: 25 clean chunks, then each place lost
    /// (4%) or sent, after `per_chunk` hostile messages on average; a
    /// chunk sent twice now and then.
    fn play(&mut self, chunks: usize, per_chunk: usize) {
        for _ in 0..25 {
            self.valid_chunk();
        }
        while self.timeline.len() < chunks - 1 {
            for _ in 0..self.rng.below(2 * per_chunk + 1) {
                self.hostile();
            }
            let previous_lost = self.timeline.last().is_some_and(Option::is_none);
            match self.rng.below(100) {
                0..4 => self.lost_chunk(),
                4..6 if !previous_lost => self.swapped_pair(),
                6..8 if !previous_lost && self.wild => {
                    self.wild = false;
                    self.wild_chunk();
                    self.valid_chunk();
                }
                _ => self.valid_chunk(),
            }
            if self.rng.chance(3) {
                self.resend();
            }
        }
        self.valid_chunk();
    }

    /// The 8 kHz samples that must come out (gap-fill=silence).
    fn expected_pcm(&self) -> Vec<i16> {
        self.timeline
            .iter()
            .flat_map(|c| match c {
                Some(ulaw) => decode(ulaw),
                None => vec![0; CHUNK],
            })
            .collect()
    }

    /// The μ-law bytes that must be echoed.
    fn expected_ulaw(&self) -> Vec<u8> {
        let silence = gsttwiliostream::codec::g711::encode(0);
        self.timeline
            .iter()
            .flat_map(|c| c.clone().unwrap_or_else(|| vec![silence; CHUNK]))
            .collect()
    }

    fn lost(&self) -> u64 {
        self.timeline.iter().filter(|c| c.is_none()).count() as u64
    }
}

fn params(provider: Provider) -> CallParams {
    CallParams::of(provider, gsttwiliostream::codec::WireFormat::PCMU)
}

fn send_all(call: &mut TwilioCall, frames: &[Frame]) {
    for f in frames {
        match f {
            Frame::Text(t) => call.send_text(t).unwrap(),
            Frame::Binary(b) => call.send_binary(b).unwrap(),
        }
    }
}

fn errors(messages: &[gst::Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
            _ => None,
        })
        .collect()
}

/// The soak of one seeded call from `provider` into a src at 8 kHz.
fn soak(seed: u64, provider: Provider, props: &str) {
    let desc = format!(
        "twiliostreamsrc name=src port=0 latency=5000 gap-fill=silence {props} ! \
         audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    );
    let p = pipeline(&desc);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let params = params(provider);
    let mut peer = Peer::new(seed, provider, &params.stream_sid);
    peer.play(300, 10);
    rt().block_on(async {
        let mut call = TwilioCall::start(&url_of(&src), params).await.unwrap();
        send_all(&mut call, &peer.frames);
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let messages = drain_messages(&p.bus().unwrap());
    set_state(&p, gst::State::Null);
    let context = format!("seed {seed}, {provider:?}, {props}");
    assert_eq!(errors(&messages), Vec::<String>::new(), "{context}");
    assert_eq!(
        element_messages(&messages, "twilio-stop").len(),
        1,
        "{context}"
    );
    let counter = |name: &str| src.property::<u64>(name);
    let expected = [
        ("invalid-messages", peer.count(Effect::Invalid)),
        ("transcode-errors", peer.count(Effect::Transcode)),
        ("chunks-received", peer.received),
        ("bytes-received", peer.received * CHUNK as u64),
        ("chunks-lost", peer.lost()),
        ("chunks-too-late", peer.too_late),
        ("chunks-reordered", peer.reordered),
    ];
    for (name, n) in expected {
        assert_eq!(counter(name), n, "{name}: {context}");
    }
    let marks: Vec<String> = element_messages(&messages, "twilio-mark")
        .iter()
        .map(|s| s.get::<String>("name").unwrap())
        .collect();
    let sent_marks: Vec<String> = peer
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Mark(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(marks, sent_marks, "{context}");
    let digits: Vec<String> = element_messages(&messages, "twilio-dtmf")
        .iter()
        .map(|s| s.get::<String>("digit").unwrap())
        .collect();
    let sent_digits: Vec<String> = peer
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Dtmf(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(digits, sent_digits, "{context}");
    assert_eq!(counter("marks-received"), marks.len() as u64);
    assert_eq!(counter("dtmf-received"), digits.len() as u64);
    let samples = got.samples();
    let want = peer.expected_pcm();
    if samples != want {
        let first = samples.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "{context}: {} samples out, {} expected; first difference at {first:?}",
            samples.len(),
            want.len()
        );
    }
    common::src::assert_contiguous(&got.buffers);
    assert_eq!(got.buffers[0].offset(), 0);
}

#[test]
fn a_hostile_twilio_call_keeps_its_audio_and_counts() {
    for seed in 1..=3 {
        soak(seed, Provider::Twilio, "");
    }
    soak(4, Provider::Twilio, "shared-threads=false");
}

#[test]
fn a_hostile_signalwire_call_keeps_its_audio_and_counts() {
    soak(11, Provider::SignalWire, "");
}

#[test]
fn a_hostile_telnyx_call_keeps_its_audio_and_counts() {
    soak(21, Provider::Telnyx, "");
    soak(22, Provider::Telnyx, "shared-threads=false");
}

/// The same through a paired sink: what comes back is the signal, lost
/// chunks as μ-law silence, byte for byte.
#[test]
fn a_hostile_call_echoed_by_a_paired_sink() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 latency=5000 gap-fill=silence ! audio/x-mulaw ! \
         twiliostreamsink name=sink",
    );
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let params = params(Provider::Twilio);
    let mut peer = Peer::new(31, Provider::Twilio, &params.stream_sid);
    peer.play(150, 10);
    let want = peer.expected_ulaw();
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::connect_with(&url_of(&src), params, Playout::Instant)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    });
    send_all(&mut call, &peer.frames);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= want.len());
    let echoed = media_bytes(&got);
    call.send_stop().unwrap();
    rt().block_on(call.close());
    let messages = common::app::wait_eos(&p.bus().unwrap());
    set_state(&p, gst::State::Null);
    assert_eq!(errors(&messages), Vec::<String>::new());
    assert_eq!(
        src.property::<u64>("invalid-messages"),
        peer.count(Effect::Invalid)
    );
    assert_eq!(src.property::<u64>("chunks-lost"), peer.lost());
    if echoed != want {
        let first = echoed.iter().zip(&want).position(|(a, b)| a != b);
        panic!(
            "{} bytes echoed, {} expected; first difference at {first:?}",
            echoed.len(),
            want.len()
        );
    }
}
