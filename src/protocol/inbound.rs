//! Messages from Twilio: the serde types and the lenient one-pass parser
//! ([`Inbound::parse`]). What we send is in `outbound.rs`; the types both
//! directions share are in `mod.rs`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::{Counter, Mark, StartInfo};

/// An `error` event from the provider (Telnyx): what it refused of ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderError {
    pub code: String,
    pub title: String,
    pub detail: String,
}

/// The body of a `media` message from Twilio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMedia<'a> {
    #[serde(default = "default_track", borrow)]
    pub track: Cow<'a, str>,
    /// Chunk number, counting from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<Counter>,
    /// Milliseconds since the stream started.
    pub timestamp: Counter,
    /// Base64 of raw μ-law.
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

fn default_track() -> Cow<'static, str> {
    Cow::Borrowed("inbound")
}

impl InboundMedia<'_> {
    /// Decodes the base64 payload into `out` (cleared first).
    pub fn decode_payload(&self, out: &mut Vec<u8>) -> Result<(), base64::DecodeError> {
        out.clear();
        base64::engine::general_purpose::STANDARD.decode_vec(self.payload.as_bytes(), out)
    }
}

/// The body of a `dtmf` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dtmf {
    #[serde(default = "default_dtmf_track")]
    pub track: String,
    pub digit: String,
}

fn default_dtmf_track() -> String {
    "inbound_track".to_owned()
}

/// The body of a `stop` message.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StopInfo {
    #[serde(rename = "accountSid", default)]
    pub account_sid: String,
    #[serde(rename = "callSid", default)]
    pub call_sid: String,
}

impl StopInfo {
    /// Each U+0000 in the ids as U+FFFD: see [`super::replace_nul`].
    pub fn replace_nul(&mut self) {
        super::replace_nul(&mut self.account_sid);
        super::replace_nul(&mut self.call_sid);
    }
}

/// A message from Twilio.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Inbound<'a> {
    Connected {
        #[serde(skip_serializing_if = "Option::is_none")]
        protocol: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        version: Option<String>,
    },
    Start {
        #[serde(rename = "sequenceNumber", skip_serializing_if = "Option::is_none")]
        sequence_number: Option<Counter>,
        #[serde(rename = "streamSid")]
        stream_sid: String,
        start: StartInfo,
    },
    Media {
        #[serde(rename = "sequenceNumber", skip_serializing_if = "Option::is_none")]
        sequence_number: Option<Counter>,
        #[serde(rename = "streamSid")]
        stream_sid: Cow<'a, str>,
        media: InboundMedia<'a>,
    },
    Dtmf {
        #[serde(rename = "sequenceNumber", skip_serializing_if = "Option::is_none")]
        sequence_number: Option<Counter>,
        #[serde(rename = "streamSid")]
        stream_sid: String,
        dtmf: Dtmf,
    },
    Mark {
        #[serde(rename = "sequenceNumber", skip_serializing_if = "Option::is_none")]
        sequence_number: Option<Counter>,
        #[serde(rename = "streamSid")]
        stream_sid: String,
        mark: Mark,
    },
    Stop {
        #[serde(rename = "sequenceNumber", skip_serializing_if = "Option::is_none")]
        sequence_number: Option<Counter>,
        #[serde(rename = "streamSid")]
        stream_sid: String,
        #[serde(default)]
        stop: StopInfo,
    },
    /// The provider reports an error (Telnyx's `error` event).
    #[serde(skip_serializing)]
    Error(ProviderError),
    /// An event this version does not know; tolerated.
    #[serde(skip_serializing)]
    Unknown { name: String },
}

impl<'a> Inbound<'a> {
    /// Parses one text frame: a `media` message in Twilio's plain shape
    /// on a fast path of its own (`fast.rs`), the rest with serde.
    pub fn parse(text: &'a str) -> Result<Self, serde_json::Error> {
        match super::fast::media(text) {
            Some(media) => Ok(media),
            None => Self::parse_with_serde(text),
        }
    }

    /// [`Inbound::parse`] without the fast path: what it must agree with.
    #[doc(hidden)]
    pub fn parse_with_serde(text: &'a str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The `event` name.
    pub fn event(&self) -> &str {
        match self {
            Inbound::Connected { .. } => "connected",
            Inbound::Start { .. } => "start",
            Inbound::Media { .. } => "media",
            Inbound::Dtmf { .. } => "dtmf",
            Inbound::Mark { .. } => "mark",
            Inbound::Stop { .. } => "stop",
            Inbound::Error(_) => "error",
            Inbound::Unknown { name } => name,
        }
    }

    /// The top-level `streamSid`, absent only on `connected` and unknown events.
    pub fn stream_sid(&self) -> Option<&str> {
        match self {
            Inbound::Connected { .. } | Inbound::Unknown { .. } | Inbound::Error(_) => None,
            Inbound::Start { stream_sid, .. }
            | Inbound::Dtmf { stream_sid, .. }
            | Inbound::Mark { stream_sid, .. }
            | Inbound::Stop { stream_sid, .. } => Some(stream_sid),
            Inbound::Media { stream_sid, .. } => Some(stream_sid),
        }
    }

    /// Serialises to the JSON Twilio would send.
    pub fn to_json(&self) -> String {
        match self {
            Inbound::Unknown { name } => serde_json::json!({ "event": name }).to_string(),
            Inbound::Error(e) => serde_json::json!({ "event": "error", "payload": e }).to_string(),
            known => serde_json::to_string(known).expect("serialising plain data cannot fail"),
        }
    }
}

/// A string borrowed from the frame when it has no escapes (serde's own
/// `Option<Cow<str>>` always copies).
pub(in crate::protocol) struct Text<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// All fields any inbound message may carry, parsed in one pass (no
/// intermediate buffering, strings borrowed from the frame where possible);
/// [`Inbound`] is built from it according to `event`.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(rename = "sequenceNumber")]
    sequence_number: Option<Counter>,
    #[serde(rename = "streamSid", borrow)]
    stream_sid: Option<Text<'a>>,
    protocol: Option<String>,
    version: Option<String>,
    start: Option<StartInfo>,
    /// Somleng (a Twilio clone) sends `start`'s custom parameters beside
    /// it, not in it.
    #[serde(
        rename = "customParameters",
        default,
        deserialize_with = "super::start::string_map"
    )]
    custom_parameters: BTreeMap<String, String>,
    #[serde(borrow)]
    media: Option<InboundMedia<'a>>,
    dtmf: Option<Dtmf>,
    mark: Option<Mark>,
    stop: Option<StopInfo>,
}

fn required<T, E: de::Error>(value: Option<T>, field: &'static str) -> Result<T, E> {
    value.ok_or_else(|| E::missing_field(field))
}

impl<'de: 'a, 'a> Deserialize<'de> for Inbound<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = Envelope::deserialize(d)?;
        Ok(match &*e.event {
            "connected" => Inbound::Connected {
                protocol: e.protocol,
                version: e.version,
            },
            "start" => {
                let mut start: StartInfo = required(e.start, "start")?;
                // Twilio repeats streamSid inside `start`; either place will do.
                let stream_sid = match e.stream_sid {
                    Some(s) => s.0.into_owned(),
                    None if !start.stream_sid.is_empty() => start.stream_sid.clone(),
                    None => return Err(de::Error::missing_field("streamSid")),
                };
                if start.stream_sid.is_empty() {
                    start.stream_sid = stream_sid.clone();
                }
                if start.custom_parameters.is_empty() {
                    start.custom_parameters = e.custom_parameters;
                }
                Inbound::Start {
                    sequence_number: e.sequence_number,
                    stream_sid,
                    start,
                }
            }
            "media" => Inbound::Media {
                sequence_number: e.sequence_number,
                stream_sid: required(e.stream_sid, "streamSid")?.0,
                media: required(e.media, "media")?,
            },
            "dtmf" => Inbound::Dtmf {
                sequence_number: e.sequence_number,
                stream_sid: required(e.stream_sid, "streamSid")?.0.into_owned(),
                dtmf: required(e.dtmf, "dtmf")?,
            },
            "mark" => Inbound::Mark {
                sequence_number: e.sequence_number,
                stream_sid: required(e.stream_sid, "streamSid")?.0.into_owned(),
                mark: required(e.mark, "mark")?,
            },
            "stop" => Inbound::Stop {
                sequence_number: e.sequence_number,
                stream_sid: required(e.stream_sid, "streamSid")?.0.into_owned(),
                stop: e.stop.unwrap_or_default(),
            },
            other => Inbound::Unknown {
                name: other.to_owned(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MediaFormat, Track};

    const CONNECTED: &str = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","start":{"accountSid":"AC123","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","callSid":"CA456","tracks":["inbound"],"customParameters":{"caller":"x"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
    const MEDIA: &str = r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"155","payload":"/38A"}}"#;
    const DTMF: &str = r#"{"event":"dtmf","sequenceNumber":"5","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"1"}}"#;
    const MARK: &str =
        r#"{"event":"mark","sequenceNumber":"4","streamSid":"MZ1","mark":{"name":"my label"}}"#;
    const STOP: &str = r#"{"event":"stop","sequenceNumber":"378","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;

    #[test]
    fn documented_examples_parse() {
        assert_eq!(
            Inbound::parse(CONNECTED).unwrap(),
            Inbound::Connected {
                protocol: Some("Call".into()),
                version: Some("1.0.0".into())
            }
        );

        let Inbound::Start {
            sequence_number,
            stream_sid,
            start,
        } = Inbound::parse(START).unwrap()
        else {
            panic!("not a start")
        };
        assert_eq!(sequence_number, Some(Counter(1)));
        assert_eq!(stream_sid, "MZ18ad3ab5a668481ce02b83e7395059f0");
        assert_eq!(start.account_sid, "AC123");
        assert_eq!(start.call_sid, "CA456");
        assert_eq!(start.stream_sid, stream_sid);
        assert_eq!(start.tracks, vec!["inbound"]);
        assert!(start.carries(Track::Inbound) && !start.carries(Track::Outbound));
        assert_eq!(start.custom_parameters["caller"], "x");
        let fmt = start.media_format.unwrap();
        assert_eq!(fmt.sample_rate, 8000);
        assert_eq!(fmt.channels, 1);
        assert!(fmt.is_mulaw_8k_mono());

        let msg = Inbound::parse(MEDIA).unwrap();
        assert_eq!(msg.stream_sid(), Some("MZ1"));
        assert!(matches!(
            &msg,
            Inbound::Media {
                stream_sid: Cow::Borrowed(_),
                ..
            }
        ));
        let Inbound::Media {
            sequence_number,
            media,
            ..
        } = msg
        else {
            panic!("not media")
        };
        assert_eq!(sequence_number, Some(Counter(2)));
        assert_eq!(media.track, "inbound");
        assert_eq!(media.chunk, Some(Counter(1)));
        assert_eq!(media.timestamp, Counter(155));
        let mut ulaw = Vec::new();
        media.decode_payload(&mut ulaw).unwrap();
        assert_eq!(ulaw, [0xFF, 0x7F, 0x00]);
        // The payload is borrowed from the frame, not copied.
        assert!(matches!(media.payload, Cow::Borrowed(_)));

        assert_eq!(
            Inbound::parse(DTMF).unwrap(),
            Inbound::Dtmf {
                sequence_number: Some(Counter(5)),
                stream_sid: "MZ1".into(),
                dtmf: Dtmf {
                    track: "inbound_track".into(),
                    digit: "1".into()
                }
            }
        );
        assert_eq!(
            Inbound::parse(MARK).unwrap(),
            Inbound::Mark {
                sequence_number: Some(Counter(4)),
                stream_sid: "MZ1".into(),
                mark: Mark {
                    name: "my label".into()
                }
            }
        );
        assert_eq!(
            Inbound::parse(STOP).unwrap(),
            Inbound::Stop {
                sequence_number: Some(Counter(378)),
                stream_sid: "MZ1".into(),
                stop: StopInfo {
                    account_sid: "AC1".into(),
                    call_sid: "CA1".into()
                }
            }
        );
    }

    #[test]
    fn inbound_round_trips_through_json() {
        for text in [CONNECTED, START, MEDIA, DTMF, MARK, STOP] {
            let msg = Inbound::parse(text).unwrap();
            let again = msg.to_json();
            assert_eq!(Inbound::parse(&again).unwrap(), msg, "{text}");
        }
        // Counters go out as strings, mediaFormat numbers as numbers.
        let json = Inbound::parse(START).unwrap().to_json();
        assert!(json.contains(r#""sequenceNumber":"1""#), "{json}");
        assert!(json.contains(r#""sampleRate":8000"#), "{json}");
        assert!(json.starts_with(r#"{"event":"start""#), "{json}");
        let json = Inbound::parse(MEDIA).unwrap().to_json();
        assert_eq!(json, MEDIA);
    }

    #[test]
    fn unknown_events_and_fields_are_tolerated() {
        let msg = Inbound::parse(r#"{"event":"hangup","foo":1}"#).unwrap();
        assert_eq!(
            msg,
            Inbound::Unknown {
                name: "hangup".into()
            }
        );
        assert_eq!(msg.event(), "hangup");
        let msg = Inbound::parse(
            r#"{"event":"media","extra":{"a":[1,2]},"streamSid":"MZ1","media":{"timestamp":"0","payload":"","new":true}}"#,
        )
        .unwrap();
        let Inbound::Media { media, .. } = msg else {
            panic!()
        };
        assert_eq!(media.track, "inbound");
        assert_eq!(media.chunk, None);
    }

    #[test]
    fn counters_accept_numbers_too() {
        let msg = Inbound::parse(
            r#"{"event":"media","sequenceNumber":7,"streamSid":"MZ1","media":{"chunk":3,"timestamp":60,"payload":""}}"#,
        )
        .unwrap();
        let Inbound::Media {
            sequence_number,
            media,
            ..
        } = msg
        else {
            panic!()
        };
        assert_eq!(sequence_number, Some(Counter(7)));
        assert_eq!(media.chunk, Some(Counter(3)));
        assert_eq!(media.timestamp, Counter(60));
    }

    #[test]
    fn media_format_numbers_may_be_strings_too() {
        let start = |format: &str| {
            let text = format!(
                r#"{{"event":"start","streamSid":"MZ1","start":{{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{format}}}}}"#
            );
            match Inbound::parse(&text) {
                Ok(Inbound::Start { start, .. }) => Ok(start.media_format.unwrap()),
                Ok(other) => panic!("not a start: {other:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        let mulaw = MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        };
        for format in [
            r#"{"encoding":"audio/x-mulaw","sampleRate":"8000","channels":"1"}"#,
            r#"{"encoding":"audio/x-mulaw","sampleRate":" 8000","channels":1}"#,
            r#"{"encoding":"audio/x-mulaw","sampleRate":8000}"#,
        ] {
            assert_eq!(start(format), Ok(mulaw.clone()), "{format}");
        }
        // No rate: 0, which `WireFormat::parse` takes for a codec of one
        // rate (G.711 is 8 kHz) and refuses for L16.
        let format = start(r#"{"encoding":"audio/x-mulaw"}"#).unwrap();
        assert_eq!(format.sample_rate, 0);
        let parsed = |f: &MediaFormat| {
            crate::codec::WireFormat::parse(&f.encoding, f.sample_rate, Default::default())
        };
        assert_eq!(parsed(&format), Ok(crate::codec::WireFormat::PCMU));
        let l16 = start(r#"{"encoding":"audio/x-L16"}"#).unwrap();
        assert!(parsed(&l16).is_err());
        for format in [
            r#"{"encoding":"audio/x-mulaw","sampleRate":"8 kHz"}"#,
            r#"{"encoding":"audio/x-mulaw","sampleRate":4294967296}"#,
            r#"{"encoding":"audio/x-mulaw","sampleRate":-8000}"#,
        ] {
            assert!(start(format).is_err(), "{format}");
        }
    }

    #[test]
    fn missing_required_fields_are_named() {
        let cases = [
            (r#"{"streamSid":"MZ1"}"#, "event"),
            (
                r#"{"event":"media","media":{"timestamp":"0","payload":""}}"#,
                "streamSid",
            ),
            (r#"{"event":"media","streamSid":"MZ1"}"#, "media"),
            (
                r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"0"}}"#,
                "payload",
            ),
            (
                r#"{"event":"media","streamSid":"MZ1","media":{"payload":""}}"#,
                "timestamp",
            ),
            (
                r#"{"event":"start","streamSid":"MZ1","start":{"accountSid":"AC1"}}"#,
                "callSid",
            ),
            (
                r#"{"event":"start","start":{"accountSid":"AC1","callSid":"CA1"}}"#,
                "streamSid",
            ),
            (
                r#"{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track"}}"#,
                "digit",
            ),
            (r#"{"event":"mark","streamSid":"MZ1"}"#, "mark"),
        ];
        for (text, field) in cases {
            let err = Inbound::parse(text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("missing field `{field}`")),
                "{text}: {err}"
            );
        }
        let err = Inbound::parse(
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"soon","payload":""}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("soon"), "{err}");
        assert!(Inbound::parse("{not json").is_err());
        assert!(Inbound::parse("[1,2]").is_err());
    }

    #[test]
    fn custom_parameters_may_come_beside_start() {
        // Somleng's spelling: customParameters at the top level.
        let msg = Inbound::parse(
            r#"{"event":"start","streamSid":"MZ9","customParameters":{"caller":"x","n":1},"start":{"accountSid":"AC1","callSid":"CA1","streamSid":"MZ9"}}"#,
        )
        .unwrap();
        let Inbound::Start { start, .. } = msg else {
            panic!("not a start")
        };
        assert_eq!(start.custom_parameters["caller"], "x");
        assert_eq!(start.custom_parameters["n"], "1");
        // Twilio's place wins when both are there.
        let msg = Inbound::parse(
            r#"{"event":"start","streamSid":"MZ9","customParameters":{"a":"top"},"start":{"accountSid":"AC1","callSid":"CA1","customParameters":{"a":"in"}}}"#,
        )
        .unwrap();
        let Inbound::Start { start, .. } = msg else {
            panic!("not a start")
        };
        assert_eq!(start.custom_parameters.len(), 1);
        assert_eq!(start.custom_parameters["a"], "in");
    }

    #[test]
    fn streamsid_may_come_from_inside_start() {
        let msg = Inbound::parse(
            r#"{"event":"start","start":{"accountSid":"AC1","callSid":"CA1","streamSid":"MZ9"}}"#,
        )
        .unwrap();
        assert_eq!(msg.stream_sid(), Some("MZ9"));
    }
}
