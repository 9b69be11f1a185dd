//! SignalWire (cXML `<Stream>`): Twilio's messages and field names, UUID
//! stream ids, a `codec` attribute (`PCMU@8000h`, `L16@16000h`,
//! `L16@24000h`) announced in `start.mediaFormat`, a `clear` event sent
//! back as an acknowledgement, and `duration` in `dtmf`. Its documentation
//! wraps examples in `{"rawEvent":{…}}`; whether the wire does is not
//! confirmed, so the wrapper is taken off when present.

use serde::Deserialize;

use super::{Dialect, Twilio};
use crate::protocol::Inbound;

/// SignalWire's Twilio-compatible streams.
#[derive(Debug, Clone, Copy)]
pub struct SignalWire;

#[derive(Deserialize)]
struct Wrapped<'a> {
    #[serde(rename = "rawEvent", borrow)]
    raw_event: &'a serde_json::value::RawValue,
}

impl Dialect for SignalWire {
    fn name(&self) -> &'static str {
        "signalwire"
    }

    fn parse<'a>(&self, text: &'a str) -> Result<Inbound<'a>, serde_json::Error> {
        // Cheap test first: the wrapper is the exception.
        if text.contains("\"rawEvent\"")
            && let Ok(wrapped) = serde_json::from_str::<Wrapped<'a>>(text)
        {
            return Inbound::parse(wrapped.raw_event.get());
        }
        Twilio.parse(text)
    }

    fn write_media(&self, stream_sid: &str, payload: &[u8], out: &mut String) {
        Twilio.write_media(stream_sid, payload, out);
    }

    fn mark(&self, stream_sid: &str, name: &str) -> String {
        Twilio.mark(stream_sid, name)
    }

    fn clear(&self, stream_sid: &str) -> String {
        Twilio.clear(stream_sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Counter, MediaFormat};
    use std::borrow::Cow;

    fn borrowed(msg: &Inbound) -> bool {
        matches!(msg, Inbound::Media { media, .. } if matches!(media.payload, Cow::Borrowed(_)))
    }

    const UUID: &str = "0b3f4a4e-8a4f-4c0e-9d7e-6a2b3c4d5e6f";

    #[test]
    fn parses_twilio_messages_wrapped_or_not() {
        let start = format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{UUID}","start":{{"accountSid":"p1","streamSid":"{UUID}","callSid":"c1","tracks":["inbound"],"mediaFormat":{{"encoding":"audio/x-L16","sampleRate":16000,"channels":1}}}}}}"#
        );
        let Inbound::Start { start, .. } = SignalWire.parse(&start).unwrap() else {
            panic!("not a start")
        };
        assert_eq!(
            start.media_format,
            Some(MediaFormat {
                encoding: "audio/x-L16".into(),
                sample_rate: 16000,
                channels: 1
            })
        );
        let media = format!(
            r#"{{"timestamp":"2024-01-01","direction":"inbound","eventType":"media","rawEvent":{{"event":"media","sequenceNumber":"2","streamSid":"{UUID}","media":{{"track":"inbound","chunk":"1","timestamp":"20","payload":"AAA="}}}}}}"#
        );
        let msg = SignalWire.parse(&media).unwrap();
        assert!(borrowed(&msg), "the wrapped payload is borrowed too");
        let Inbound::Media {
            stream_sid, media, ..
        } = msg
        else {
            panic!("not media")
        };
        assert_eq!(stream_sid, UUID);
        assert_eq!(media.timestamp, Counter(20));
        let dtmf = format!(
            r#"{{"event":"dtmf","streamSid":"{UUID}","dtmf":{{"track":"inbound_track","digit":"5","duration":120}}}}"#
        );
        assert!(
            matches!(SignalWire.parse(&dtmf).unwrap(), Inbound::Dtmf { dtmf, .. } if dtmf.digit == "5")
        );
        let clear = format!(r#"{{"event":"clear","streamSid":"{UUID}"}}"#);
        let ack = SignalWire.parse(&clear).unwrap();
        // The session takes it for an acknowledgement.
        assert_eq!(
            ack,
            Inbound::Unknown {
                name: "clear".into()
            }
        );
    }

    #[test]
    fn writes_what_twilio_writes() {
        let mut out = String::new();
        SignalWire.write_media(UUID, &[0, 1, 2], &mut out);
        assert_eq!(
            out,
            format!(r#"{{"event":"media","streamSid":"{UUID}","media":{{"payload":"AAEC"}}}}"#)
        );
        assert_eq!(
            SignalWire.mark(UUID, "m"),
            format!(r#"{{"event":"mark","streamSid":"{UUID}","mark":{{"name":"m"}}}}"#)
        );
        assert_eq!(
            SignalWire.clear(UUID),
            format!(r#"{{"event":"clear","streamSid":"{UUID}"}}"#)
        );
    }
}
