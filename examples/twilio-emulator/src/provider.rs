//! The provider the emulator plays: Twilio, or one that copied its Media
//! Streams protocol (SignalWire, Telnyx), and the codec it streams. Twilio's
//! messages are the emulator's own; here they are spelled as the provider
//! spells them, and what the plugin sends is checked against the
//! provider's documented shapes before it is read as Twilio's.

use gsttwiliostream::codec::{ByteOrder, Codec, WireFormat};
use gsttwiliostream::protocol::{Inbound, MediaFormat, Outbound};
use serde_json::{Map, Value, json};

/// Whose side the emulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    #[default]
    Twilio,
    /// Twilio's messages, UUID stream ids, L16 announced as `audio/x-L16`.
    SignalWire,
    /// snake_case, `stream_id`, codec names, no stream id in what it takes.
    Telnyx,
}

impl Provider {
    /// `start.mediaFormat` (`media_format`) for `format`, as this provider
    /// announces it.
    pub fn media_format(self, format: WireFormat) -> MediaFormat {
        let encoding = match (self, format.codec) {
            (Provider::Telnyx, Codec::Pcmu) => "PCMU",
            (Provider::Telnyx, Codec::Pcma) => "PCMA",
            (Provider::Telnyx, Codec::L16(_)) => "L16",
            (_, Codec::G722) => "G722",
            (_, Codec::Opus) => "OPUS",
            (_, Codec::Pcmu) => "audio/x-mulaw",
            (_, Codec::Pcma) => "audio/x-alaw",
            (_, Codec::L16(_)) => "audio/x-L16",
        };
        MediaFormat {
            encoding: encoding.to_owned(),
            sample_rate: format.rate,
            channels: 1,
        }
    }

    /// The `connected` message this provider opens with: SignalWire's
    /// version is `0.2.0`, Telnyx's names no protocol.
    pub fn connected(self) -> Inbound<'static> {
        let (protocol, version) = match self {
            Provider::Twilio => (Some("Call"), "1.0.0"),
            Provider::SignalWire => (Some("Call"), "0.2.0"),
            Provider::Telnyx => (None, "1.0.0"),
        };
        Inbound::Connected {
            protocol: protocol.map(str::to_owned),
            version: Some(version.to_owned()),
        }
    }

    /// What this provider sends back for a `clear` (after the marks it
    /// flushed): SignalWire acknowledges it with a `clear` event (its
    /// exact fields are not documented: Twilio's spelling, as for the
    /// rest); the others send nothing.
    pub fn clear_ack(self, stream_sid: &str, sequence_number: u64) -> Option<String> {
        (self == Provider::SignalWire).then(|| {
            json!({
                "event": "clear",
                "sequenceNumber": sequence_number.to_string(),
                "streamSid": stream_sid,
            })
            .to_string()
        })
    }

    /// The text of `msg` as this provider sends it.
    pub fn text(self, msg: &Inbound) -> String {
        let json = msg.to_json();
        if self != Provider::Telnyx {
            return json;
        }
        let Ok(Value::Object(twilio)) = serde_json::from_str::<Value>(&json) else {
            return json;
        };
        Value::Object(telnyx(twilio)).to_string()
    }

    /// What the plugin sent, read as Twilio's message after checking it has
    /// exactly the provider's shape; `stream_sid` is the stream's.
    pub fn read(self, text: &str, stream_sid: &str) -> Result<Outbound, String> {
        let out = self.read_shape(text, stream_sid)?;
        if let Outbound::Media { media, .. } = &out {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(&media.payload)
                .map_err(|e| format!("a payload that is not base64 ({e}): {text}"))?;
        }
        Ok(out)
    }

    fn read_shape(self, text: &str, stream_sid: &str) -> Result<Outbound, String> {
        if self != Provider::Telnyx {
            let out: Outbound = serde_json::from_str(text).map_err(|e| format!("{e}: {text}"))?;
            return match out_sid(&out) == stream_sid {
                true => Ok(out),
                false => Err(format!("wrong streamSid in {text}")),
            };
        }
        // Telnyx: {"event":"media","media":{"payload"}}, mark, clear; no id.
        let Ok(Value::Object(mut v)) = serde_json::from_str::<Value>(text) else {
            return Err(format!("not a JSON object: {text}"));
        };
        if v.contains_key("streamSid") || v.contains_key("stream_id") {
            return Err(format!("Telnyx takes no stream id: {text}"));
        }
        v.insert("streamSid".to_owned(), json!(stream_sid));
        serde_json::from_value(Value::Object(v)).map_err(|e| format!("{e}: {text}"))
    }
}

fn out_sid(out: &Outbound) -> &str {
    match out {
        Outbound::Media { stream_sid, .. }
        | Outbound::Mark { stream_sid, .. }
        | Outbound::Clear { stream_sid } => stream_sid,
    }
}

/// Twilio's JSON object in Telnyx's spelling.
fn telnyx(mut m: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let event = m.remove("event").unwrap_or(Value::Null);
    out.insert("event".into(), event.clone());
    if let Some(n) = m.remove("sequenceNumber") {
        out.insert("sequence_number".into(), n);
    }
    if let Some(sid) = m.remove("streamSid") {
        out.insert("stream_id".into(), sid);
    }
    match event.as_str() {
        Some("start") => {
            let start = m.remove("start").unwrap_or_default();
            let format = &start["mediaFormat"];
            out.insert(
                "start".into(),
                json!({
                    "user_id": start["accountSid"],
                    "call_control_id": start["callSid"],
                    "call_session_id": start["callSid"],
                    "from": "+13122010094",
                    "to": "+13122123456",
                    "tags": [],
                    "client_state": null,
                    "media_format": {
                        "encoding": format["encoding"],
                        "sample_rate": format["sampleRate"],
                        "channels": format["channels"],
                    },
                }),
            );
        }
        Some("stop") => {
            let stop = m.remove("stop").unwrap_or_default();
            out.insert(
                "stop".into(),
                json!({"user_id": stop["accountSid"], "call_control_id": stop["callSid"]}),
            );
        }
        // `{event, version}` only.
        Some("connected") => {
            if let Some(version) = m.remove("version") {
                out.insert("version".into(), version);
            }
        }
        Some("dtmf") => {
            let dtmf = m.remove("dtmf").unwrap_or_default();
            out.insert("occurred_at".into(), json!("2025-01-01T00:00:00.000Z"));
            out.insert("dtmf".into(), json!({"digit": dtmf["digit"]}));
        }
        _ => out.extend(m),
    }
    out
}

/// A stream id in the provider's style: Twilio's `MZ` and 32 hex digits,
/// a UUID for the others.
pub fn stream_id(provider: Provider, twilio_style: &str) -> String {
    if provider == Provider::Twilio {
        return twilio_style.to_owned();
    }
    let hex = twilio_style.get(2..).unwrap_or("").to_owned();
    let hex = format!("{hex:0<32}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The codecs `--codec` names.
pub fn codec(name: &str) -> Option<WireFormat> {
    Some(match name {
        "pcmu" => WireFormat::PCMU,
        "pcma" => WireFormat::PCMA,
        "l16-8k" => WireFormat::l16(8000, ByteOrder::Big),
        "l16-16k" => WireFormat::l16(16000, ByteOrder::Big),
        "l16-24k" => WireFormat::l16(24000, ByteOrder::Big),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gsttwiliostream::protocol::dialect::{Dialect, Telnyx};
    use gsttwiliostream::protocol::{Counter, Dtmf, StartInfo};

    #[test]
    fn telnyx_spelling_reads_back_through_the_plugins_dialect() {
        let start = Inbound::Start {
            sequence_number: Some(Counter(1)),
            stream_sid: "S1".into(),
            start: StartInfo {
                account_sid: "u1".into(),
                stream_sid: "S1".into(),
                call_sid: "v3:c".into(),
                tracks: vec!["inbound".into()],
                custom_parameters: Default::default(),
                media_format: Some(Provider::Telnyx.media_format(WireFormat::PCMA)),
                tracks_unannounced: false,
            },
        };
        let text = Provider::Telnyx.text(&start);
        assert!(text.contains(r#""stream_id":"S1""#), "{text}");
        let Inbound::Start { start: read, .. } = Telnyx.parse(&text).unwrap() else {
            panic!("{text}")
        };
        assert_eq!(read.call_sid, "v3:c");
        assert_eq!(read.media_format.unwrap().encoding, "PCMA");
        let dtmf = Inbound::Dtmf {
            sequence_number: Some(Counter(2)),
            stream_sid: "S1".into(),
            dtmf: Dtmf {
                track: "inbound_track".into(),
                digit: "7".into(),
            },
        };
        let text = Provider::Telnyx.text(&dtmf);
        assert!(
            matches!(Telnyx.parse(&text).unwrap(), Inbound::Dtmf { dtmf, .. } if dtmf.digit == "7")
        );
        assert!(
            Provider::Telnyx
                .read(r#"{"event":"clear","streamSid":"S1"}"#, "S1")
                .is_err()
        );
        assert_eq!(
            Provider::Telnyx.read(r#"{"event":"clear"}"#, "S1"),
            Ok(Outbound::Clear {
                stream_sid: "S1".into()
            })
        );
        assert_eq!(
            Provider::Telnyx.text(&Provider::Twilio.connected()),
            r#"{"event":"connected","version":"1.0.0"}"#
        );
        assert_eq!(
            stream_id(Provider::SignalWire, "MZ0123456789abcdef0123456789abcdef"),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
    }

    #[test]
    fn each_provider_opens_and_acknowledges_as_documented() {
        for (provider, text) in [
            (
                Provider::Twilio,
                r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#,
            ),
            (
                Provider::SignalWire,
                r#"{"event":"connected","protocol":"Call","version":"0.2.0"}"#,
            ),
            (
                Provider::Telnyx,
                r#"{"event":"connected","version":"1.0.0"}"#,
            ),
        ] {
            assert_eq!(provider.text(&provider.connected()), text, "{provider:?}");
        }
        assert_eq!(
            Provider::SignalWire.clear_ack("S1", 7).as_deref(),
            Some(r#"{"event":"clear","sequenceNumber":"7","streamSid":"S1"}"#)
        );
        assert_eq!(Provider::Twilio.clear_ack("S1", 7), None);
        assert_eq!(Provider::Telnyx.clear_ack("S1", 7), None);
    }

    #[test]
    fn a_payload_that_is_not_base64_is_refused() {
        assert!(
            Provider::Twilio
                .read(
                    r#"{"event":"media","streamSid":"S1","media":{"payload":"/38A"}}"#,
                    "S1"
                )
                .is_ok()
        );
        for payload in ["/38", "***=", "/38A="] {
            let twilio = format!(
                r#"{{"event":"media","streamSid":"S1","media":{{"payload":"{payload}"}}}}"#
            );
            let err = Provider::Twilio.read(&twilio, "S1").unwrap_err();
            assert!(err.contains("not base64"), "{err}");
            let telnyx = format!(r#"{{"event":"media","media":{{"payload":"{payload}"}}}}"#);
            assert!(Provider::Telnyx.read(&telnyx, "S1").is_err(), "{telnyx}");
        }
    }
}
