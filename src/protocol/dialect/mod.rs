//! Dialects: the providers that speak Twilio's Media Streams protocol with
//! their own spelling. Each one is a [`Dialect`] in a file of its own: it
//! parses the provider's text into the same [`Inbound`] messages and writes
//! `media`, `mark` and `clear` in the provider's shape. The call holds one
//! (`&'static dyn Dialect`), fixed by the elements' `dialect` property or
//! detected from the `start` message ([`detect`]).
//!
//! A provider with binary audio frames or other control messages (Vonage,
//! jambonz, Plivo, Bandwidth) would be one more implementation; the trait
//! takes text in and gives text out, and a binary frame reaches the session
//! on its own path.

use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::Inbound;

mod signalwire;
mod telnyx;
mod twilio;

pub use signalwire::SignalWire;
pub use telnyx::Telnyx;
pub use twilio::Twilio;

/// One provider's spelling of the protocol.
pub trait Dialect: Send + Sync + fmt::Debug {
    /// The name of the `dialect` property value.
    fn name(&self) -> &'static str;

    /// Parses one text frame into the common message.
    fn parse<'a>(&self, text: &'a str) -> Result<Inbound<'a>, serde_json::Error>;

    /// Writes the JSON of a `media` message carrying `payload` (bytes in the
    /// call's codec) into `out` (cleared first): the sink's hot path.
    fn write_media(&self, stream_sid: &str, payload: &[u8], out: &mut String);

    /// The JSON of a `mark` named `name`.
    fn mark(&self, stream_sid: &str, name: &str) -> String;

    /// The JSON of a `clear`.
    fn clear(&self, stream_sid: &str) -> String;

    /// The shortest media frame the provider takes, in milliseconds.
    fn min_frame_ms(&self) -> u32 {
        0
    }

    /// Whether media may arrive out of order (the src then reorders it).
    fn unordered_media(&self) -> bool {
        false
    }

    /// Whether a stream whose `start` names the outbound track is one-way
    /// (nothing may be sent on it): Twilio's and SignalWire's
    /// bidirectional streams carry the inbound track only.
    fn outbound_track_is_one_way(&self) -> bool {
        true
    }
}

/// The `dialect` property: one provider, or detected per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Choice {
    /// From the `start` message's shape ([`detect`]).
    #[default]
    Auto,
    Twilio,
    SignalWire,
    Telnyx,
}

impl Choice {
    /// The dialect fixed by this choice; None for `auto`.
    pub fn fixed(self) -> Option<&'static dyn Dialect> {
        match self {
            Choice::Auto => None,
            Choice::Twilio => Some(&Twilio),
            Choice::SignalWire => Some(&SignalWire),
            Choice::Telnyx => Some(&Telnyx),
        }
    }
}

/// The fields that tell the dialects apart.
#[derive(Deserialize)]
struct Shape {
    event: Option<String>,
    #[serde(rename = "streamSid")]
    stream_sid: Option<String>,
    stream_id: Option<IgnoredAny>,
    #[serde(rename = "rawEvent")]
    raw_event: Option<IgnoredAny>,
    start: Option<StartShape>,
}

#[derive(Deserialize)]
struct StartShape {
    #[serde(rename = "mediaFormat")]
    media_format: Option<FormatShape>,
}

#[derive(Deserialize)]
struct FormatShape {
    encoding: Option<String>,
}

/// The dialect a `start` message is in, from its shape: Telnyx's
/// `stream_id`; SignalWire's `rawEvent` wrapper, its L16 encoding or its
/// UUID stream ids (Twilio's are `MZ` and 32 hex digits); else Twilio.
/// None for any other message (`connected` is the same in all of them).
pub fn detect(text: &str) -> Option<&'static dyn Dialect> {
    let shape: Shape = serde_json::from_str(text).ok()?;
    if shape.raw_event.is_some() {
        return Some(&SignalWire);
    }
    if shape.event.as_deref() != Some("start") {
        return None;
    }
    if shape.stream_id.is_some() {
        return Some(&Telnyx);
    }
    let l16 = shape
        .start
        .and_then(|s| s.media_format)
        .and_then(|f| f.encoding)
        .is_some_and(|e| e.eq_ignore_ascii_case("audio/x-L16"));
    let uuid = shape.stream_sid.as_deref().is_some_and(is_uuid);
    Some(if l16 || uuid { &SignalWire } else { &Twilio })
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_messages_tell_their_dialect() {
        let cases = [
            (
                r#"{"event":"start","streamSid":"MZ18ad3ab5a668481ce02b83e7395059f0","start":{"accountSid":"AC1","callSid":"CA1"}}"#,
                Some("twilio"),
            ),
            (
                r#"{"event":"start","streamSid":"0b3f4a4e-8a4f-4c0e-9d7e-6a2b3c4d5e6f","start":{"accountSid":"a","callSid":"c"}}"#,
                Some("signalwire"),
            ),
            (
                r#"{"event":"start","streamSid":"S1","start":{"accountSid":"a","callSid":"c","mediaFormat":{"encoding":"audio/x-L16","sampleRate":16000,"channels":1}}}"#,
                Some("signalwire"),
            ),
            (
                r#"{"rawEvent":{"event":"start"},"eventType":"start"}"#,
                Some("signalwire"),
            ),
            (
                r#"{"event":"start","sequence_number":"1","start":{"call_control_id":"v3:x","media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}},"stream_id":"32de0dea"}"#,
                Some("telnyx"),
            ),
            (r#"{"event":"connected","version":"1.0.0"}"#, None),
            ("not json", None),
        ];
        for (text, expected) in cases {
            assert_eq!(detect(text).map(|d| d.name()), expected, "{text}");
        }
    }

    #[test]
    fn choices_fix_their_dialect() {
        assert!(Choice::Auto.fixed().is_none());
        assert_eq!(
            [Choice::Twilio, Choice::SignalWire, Choice::Telnyx].map(|c| c.fixed().unwrap().name()),
            ["twilio", "signalwire", "telnyx"]
        );
    }
}
