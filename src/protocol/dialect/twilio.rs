//! Twilio's own spelling: camelCase, `streamSid` on every message.

use super::Dialect;
use crate::protocol::{Inbound, Mark, Outbound, write_media_json};

/// Twilio Media Streams.
#[derive(Debug, Clone, Copy)]
pub struct Twilio;

impl Dialect for Twilio {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn parse<'a>(&self, text: &'a str) -> Result<Inbound<'a>, serde_json::Error> {
        Inbound::parse(text)
    }

    fn write_media(&self, stream_sid: &str, payload: &[u8], out: &mut String) {
        write_media_json(stream_sid, payload, out);
    }

    fn mark(&self, stream_sid: &str, name: &str) -> String {
        Outbound::Mark {
            stream_sid: stream_sid.to_owned(),
            mark: Mark {
                name: name.to_owned(),
            },
        }
        .to_json()
    }

    fn clear(&self, stream_sid: &str) -> String {
        Outbound::Clear {
            stream_sid: stream_sid.to_owned(),
        }
        .to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_documented_shapes() {
        let mut out = String::new();
        Twilio.write_media("MZ1", &[0xFF, 0x7F, 0x00], &mut out);
        assert_eq!(
            out,
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"/38A"}}"#
        );
        assert_eq!(
            Twilio.mark("MZ1", "a"),
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"a"}}"#
        );
        assert_eq!(
            Twilio.clear("MZ1"),
            r#"{"event":"clear","streamSid":"MZ1"}"#
        );
    }
}
