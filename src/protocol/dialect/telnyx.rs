//! Telnyx (Call Control `streaming_start`, TeXML `<Stream>`): Twilio's flow
//! in snake_case. `stream_id` in place of `streamSid`, `sequence_number`,
//! `start.media_format {encoding, sample_rate, channels}` with codec names
//! (`PCMU`, `PCMA`, `L16`, …), `start.call_control_id` for the call, an
//! `error` event, and no stream id in what we send: `{"event":"media",
//! "media":{"payload"}}`, `mark`, `clear`. Telnyx does not guarantee the
//! order of media events; the session's reorder window puts them back.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::Error as _;

use super::Dialect;
use crate::protocol::{
    Counter, Dtmf, Inbound, InboundMedia, Mark, MediaFormat, ProviderError, StartInfo, StopInfo,
    Text,
};

/// Telnyx media streaming.
#[derive(Debug, Clone, Copy)]
pub struct Telnyx;

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    sequence_number: Option<Counter>,
    #[serde(borrow)]
    stream_id: Option<Text<'a>>,
    version: Option<String>,
    start: Option<Start>,
    #[serde(borrow)]
    media: Option<InboundMedia<'a>>,
    dtmf: Option<TelnyxDtmf>,
    mark: Option<Mark>,
    stop: Option<Stop>,
    payload: Option<ErrorPayload>,
}

/// (A field given as `null` is taken as absent.)
#[derive(Deserialize)]
struct Start {
    #[serde(default, deserialize_with = "null_as_default")]
    user_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    call_control_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    call_session_id: String,
    tracks: Option<Vec<String>>,
    #[serde(default, deserialize_with = "null_as_default")]
    custom_parameters: BTreeMap<String, serde_json::Value>,
    media_format: Option<MediaFormat>,
    /// The call's numbers and the application's own: among the custom
    /// parameters, unless one of the same name is there.
    from: Option<serde_json::Value>,
    to: Option<serde_json::Value>,
    client_state: Option<serde_json::Value>,
    tags: Option<serde_json::Value>,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// A JSON value as a custom parameter's text: a string as it is.
fn as_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
struct TelnyxDtmf {
    digit: String,
}

#[derive(Deserialize, Default)]
struct Stop {
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    call_control_id: String,
}

#[derive(Deserialize)]
struct ErrorPayload {
    #[serde(default)]
    code: serde_json::Value,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

fn required<T>(value: Option<T>, field: &'static str) -> Result<T, serde_json::Error> {
    value.ok_or_else(|| serde_json::Error::missing_field(field))
}

impl Dialect for Telnyx {
    fn name(&self) -> &'static str {
        "telnyx"
    }

    fn parse<'a>(&self, text: &'a str) -> Result<Inbound<'a>, serde_json::Error> {
        let e: Envelope<'a> = serde_json::from_str(text)?;
        let sid = |e: Option<Text<'a>>| required(e, "stream_id").map(|t| t.0);
        Ok(match &*e.event {
            "connected" => Inbound::Connected {
                protocol: None,
                version: e.version,
            },
            "start" => {
                let start = required(e.start, "start")?;
                let stream_sid = sid(e.stream_id)?.into_owned();
                // The call: its Call Control id, else the session's.
                let call_sid = if start.call_control_id.is_empty() {
                    start.call_session_id.clone()
                } else {
                    start.call_control_id
                };
                let mut custom_parameters: BTreeMap<String, String> = start
                    .custom_parameters
                    .into_iter()
                    .map(|(k, v)| (k, as_text(v)))
                    .collect();
                let session = Some(start.call_session_id)
                    .filter(|s| !s.is_empty())
                    .map(serde_json::Value::String);
                for (name, value) in [
                    ("from", start.from),
                    ("to", start.to),
                    ("client_state", start.client_state),
                    ("tags", start.tags),
                    ("call_session_id", session),
                ] {
                    if let Some(value) = value.filter(|v| !v.is_null()) {
                        custom_parameters
                            .entry(name.to_owned())
                            .or_insert(as_text(value));
                    }
                }
                Inbound::Start {
                    sequence_number: e.sequence_number,
                    stream_sid: stream_sid.clone(),
                    start: StartInfo {
                        account_sid: start.user_id,
                        stream_sid,
                        call_sid,
                        tracks_unannounced: start.tracks.is_none(),
                        tracks: start.tracks.unwrap_or_default(),
                        custom_parameters,
                        media_format: start.media_format,
                    },
                }
            }
            "media" => Inbound::Media {
                sequence_number: e.sequence_number,
                stream_sid: sid(e.stream_id)?,
                media: required(e.media, "media")?,
            },
            "dtmf" => Inbound::Dtmf {
                sequence_number: e.sequence_number,
                stream_sid: sid(e.stream_id)?.into_owned(),
                dtmf: Dtmf {
                    track: "inbound_track".to_owned(),
                    digit: required(e.dtmf, "dtmf")?.digit,
                },
            },
            "mark" => Inbound::Mark {
                sequence_number: e.sequence_number,
                stream_sid: sid(e.stream_id)?.into_owned(),
                mark: required(e.mark, "mark")?,
            },
            "stop" => {
                let stop = e.stop.unwrap_or_default();
                Inbound::Stop {
                    sequence_number: e.sequence_number,
                    stream_sid: sid(e.stream_id)?.into_owned(),
                    stop: StopInfo {
                        account_sid: stop.user_id,
                        call_sid: stop.call_control_id,
                    },
                }
            }
            "error" => {
                let p = required(e.payload, "payload")?;
                Inbound::Error(ProviderError {
                    code: match p.code {
                        serde_json::Value::String(s) => s,
                        serde_json::Value::Null => String::new(),
                        other => other.to_string(),
                    },
                    title: p.title,
                    detail: p.detail,
                })
            }
            other => Inbound::Unknown {
                name: other.to_owned(),
            },
        })
    }

    fn write_media(&self, _stream_sid: &str, payload: &[u8], out: &mut String) {
        const HEAD: &str = r#"{"event":"media","media":{"payload":""#;
        const TAIL: &str = r#""}}"#;
        out.clear();
        out.reserve_exact(HEAD.len() + payload.len().div_ceil(3) * 4 + TAIL.len());
        out.push_str(HEAD);
        base64::engine::general_purpose::STANDARD.encode_string(payload, out);
        out.push_str(TAIL);
    }

    fn mark(&self, _stream_sid: &str, name: &str) -> String {
        serde_json::json!({"event": "mark", "mark": {"name": name}}).to_string()
    }

    fn clear(&self, _stream_sid: &str) -> String {
        r#"{"event":"clear"}"#.to_owned()
    }

    /// RTP-mode chunks are 20 ms to 30 s.
    fn min_frame_ms(&self) -> u32 {
        20
    }

    /// "The order of events is not guaranteed."
    fn unordered_media(&self) -> bool {
        true
    }

    /// Telnyx announces no tracks, and does not say that a bidirectional
    /// stream cannot carry the outbound track: whatever it announces, the
    /// sink sends.
    fn outbound_track_is_one_way(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = r#"{"event":"start","sequence_number":"1","start":{"user_id":"3e6f995f","call_control_id":"v3:abc","call_session_id":"s1","from":"+13122010094","to":"+13122123456","tags":["t"],"client_state":"aGk=","media_format":{"encoding":"L16","sample_rate":16000,"channels":1}},"stream_id":"32de0dea-53cb-4b21-89a4-9282a42c6d2b"}"#;

    #[test]
    fn documented_messages_become_the_common_ones() {
        let Inbound::Start {
            sequence_number,
            stream_sid,
            start,
        } = Telnyx.parse(START).unwrap()
        else {
            panic!("not a start")
        };
        assert_eq!(sequence_number, Some(Counter(1)));
        assert_eq!(stream_sid, "32de0dea-53cb-4b21-89a4-9282a42c6d2b");
        assert_eq!(start.stream_sid, stream_sid);
        assert_eq!(start.call_sid, "v3:abc");
        assert_eq!(start.account_sid, "3e6f995f");
        assert!(start.tracks.is_empty(), "Telnyx announces no tracks");
        let custom: Vec<(&str, &str)> = start
            .custom_parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            custom,
            [
                ("call_session_id", "s1"),
                ("client_state", "aGk="),
                ("from", "+13122010094"),
                ("tags", r#"["t"]"#),
                ("to", "+13122123456")
            ]
        );
        assert!(start.tracks_unannounced);
        assert_eq!(
            start.media_format,
            Some(MediaFormat {
                encoding: "L16".into(),
                sample_rate: 16000,
                channels: 1
            })
        );

        let media = r#"{"event":"media","sequence_number":"4","media":{"track":"inbound","chunk":"2","timestamp":"5","payload":"AAEC"},"stream_id":"S"}"#;
        let Inbound::Media {
            stream_sid, media, ..
        } = Telnyx.parse(media).unwrap()
        else {
            panic!("not media")
        };
        assert!(matches!(stream_sid, Cow::Borrowed("S")));
        assert_eq!(
            (media.chunk, media.timestamp),
            (Some(Counter(2)), Counter(5))
        );
        assert!(matches!(media.payload, Cow::Borrowed("AAEC")));

        let dtmf = r##"{"event":"dtmf","stream_id":"S","occurred_at":"2022-01-01T00:00:00Z","sequence_number":"5","dtmf":{"digit":"#"}}"##;
        assert!(
            matches!(Telnyx.parse(dtmf).unwrap(), Inbound::Dtmf { dtmf, .. } if dtmf.digit == "#")
        );
        let stop = r#"{"event":"stop","sequence_number":"9","stop":{"user_id":"u","call_control_id":"v3:abc"},"stream_id":"S"}"#;
        assert!(
            matches!(Telnyx.parse(stop).unwrap(), Inbound::Stop { stop, .. } if stop.call_sid == "v3:abc")
        );
        let error = r#"{"event":"error","sequence_number":"3","stream_id":"S","payload":{"code":100003,"title":"malformed_frame","detail":"The received frame was not formed correctly"}}"#;
        assert_eq!(
            Telnyx.parse(error).unwrap(),
            Inbound::Error(ProviderError {
                code: "100003".into(),
                title: "malformed_frame".into(),
                detail: "The received frame was not formed correctly".into()
            })
        );
        assert!(matches!(
            Telnyx
                .parse(r#"{"event":"connected","version":"1.0.0"}"#)
                .unwrap(),
            Inbound::Connected { .. }
        ));
        let err = Telnyx
            .parse(r#"{"event":"media","media":{"timestamp":"0","payload":""}}"#)
            .unwrap_err();
        assert!(
            err.to_string().contains("missing field `stream_id`"),
            "{err}"
        );
    }

    #[test]
    fn writes_without_a_stream_id() {
        let mut out = String::new();
        Telnyx.write_media("S", &[0xFF, 0x7F, 0x00], &mut out);
        assert_eq!(out, r#"{"event":"media","media":{"payload":"/38A"}}"#);
        assert_eq!(out.len(), out.capacity());
        assert_eq!(
            Telnyx.mark("S", "say \"hi\""),
            r#"{"event":"mark","mark":{"name":"say \"hi\""}}"#
        );
        assert_eq!(Telnyx.clear("S"), r#"{"event":"clear"}"#);
    }

    /// A field given as `null` is absent; the application's own custom
    /// parameter wins over Telnyx's field of the same name.
    #[test]
    fn nulls_are_absent_and_custom_parameters_win() {
        let start = r#"{"event":"start","start":{"user_id":null,"call_control_id":null,"call_session_id":null,"from":null,"to":"+1555","custom_parameters":{"to":"mine"},"media_format":{"encoding":"PCMU","sample_rate":8000,"channels":1}},"stream_id":"S"}"#;
        let Inbound::Start { start, .. } = Telnyx.parse(start).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(
            (start.call_sid.as_str(), start.account_sid.as_str()),
            ("", "")
        );
        let custom: Vec<(&str, &str)> = start
            .custom_parameters
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(custom, [("to", "mine")]);
        let nulls = r#"{"event":"start","start":{"custom_parameters":null,"media_format":{"encoding":"PCMU","sample_rate":null,"channels":null}},"stream_id":"S"}"#;
        let Ok(Inbound::Start { start, .. }) = Telnyx.parse(nulls) else {
            panic!("not a start")
        };
        let format = start.media_format.unwrap();
        assert_eq!((format.sample_rate, format.channels), (0, 1));
    }
}
