//! The hostile messages: each drawn from the provider's own, broken in
//! one way, with what it must do by README.

use base64::Engine as _;
use serde_json::json;
use twilio_emulator::Provider;

use crate::peer::{CHUNK, Effect, Frame, Peer, Spelling, text};

impl Peer {
    /// One hostile message and what it must do.
    pub fn draw(&mut self) -> (Frame, Effect) {
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
}
