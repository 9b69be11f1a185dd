//! Messages to Twilio: the serde types, and the allocation-lean writer of
//! `media` messages the sink sends on its hot path. Parsing Twilio's
//! messages is in `inbound.rs`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::Mark;

/// The body of an outbound `media` message: nothing but the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundMedia {
    pub payload: String,
}

/// A message to Twilio (bidirectional streams only). Serialises to exactly
/// the documented shape; deserialisation (for the emulator) rejects extra
/// fields the way Twilio does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase", deny_unknown_fields)]
pub enum Outbound {
    Media {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        media: OutboundMedia,
    },
    Mark {
        #[serde(rename = "streamSid")]
        stream_sid: String,
        mark: Mark,
    },
    Clear {
        #[serde(rename = "streamSid")]
        stream_sid: String,
    },
}

impl Outbound {
    /// A `media` message carrying `ulaw` (raw μ-law bytes).
    pub fn media(stream_sid: &str, ulaw: &[u8]) -> Self {
        Outbound::Media {
            stream_sid: stream_sid.to_owned(),
            media: OutboundMedia {
                payload: base64::engine::general_purpose::STANDARD.encode(ulaw),
            },
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serialising plain data cannot fail")
    }
}

/// Writes the JSON of an outbound `media` message into `out` (cleared first)
/// without intermediate allocations: the hot path of the sink. Byte for byte
/// what `Outbound::media(stream_sid, ulaw).to_json()` gives.
///
/// Into an empty `String`, it allocates exactly the message's length (for a
/// `stream_sid` that needs no escaping), so the text becomes WebSocket bytes
/// without a further allocation.
pub fn write_media_json(stream_sid: &str, ulaw: &[u8], out: &mut String) {
    const HEAD: &str = r#"{"event":"media","streamSid":"#;
    const MIDDLE: &str = r#","media":{"payload":""#;
    const TAIL: &str = r#""}}"#;
    out.clear();
    let quoted_sid = stream_sid.len() + 2;
    let payload = ulaw.len().div_ceil(3) * 4;
    out.reserve_exact(HEAD.len() + quoted_sid + MIDDLE.len() + payload + TAIL.len());
    out.push_str(HEAD);
    write_json_str(stream_sid, out);
    out.push_str(MIDDLE);
    base64::engine::general_purpose::STANDARD.encode_string(ulaw, out);
    out.push_str(TAIL);
}

fn write_json_str(s: &str, out: &mut String) {
    if s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("a str always serialises"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_serialises_to_exactly_the_documented_shapes() {
        assert_eq!(
            Outbound::media("MZ1", &[0xFF, 0x7F, 0x00]).to_json(),
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"/38A"}}"#
        );
        assert_eq!(
            Outbound::Mark {
                stream_sid: "MZ1".into(),
                mark: Mark {
                    name: "my label".into()
                }
            }
            .to_json(),
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"my label"}}"#
        );
        assert_eq!(
            Outbound::Clear {
                stream_sid: "MZ1".into()
            }
            .to_json(),
            r#"{"event":"clear","streamSid":"MZ1"}"#
        );
    }

    #[test]
    fn fast_media_writer_matches_serde() {
        let mut out = String::new();
        for sid in ["MZ18ad3ab5a668481ce02b83e7395059f0", "odd \"sid\"\\é", ""] {
            for len in [0usize, 1, 2, 3, 160, 161] {
                let ulaw: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
                write_media_json(sid, &ulaw, &mut out);
                assert_eq!(out, Outbound::media(sid, &ulaw).to_json());
            }
        }
    }

    #[test]
    fn fast_media_writer_fills_a_new_string_exactly() {
        // Length equal to capacity: the text becomes WebSocket bytes as it is.
        for len in [0usize, 1, 2, 3, 160, 161, 8000] {
            let mut out = String::new();
            write_media_json(
                "MZ18ad3ab5a668481ce02b83e7395059f0",
                &vec![0xff; len],
                &mut out,
            );
            assert_eq!(out.len(), out.capacity(), "{len} bytes of payload");
        }
    }

    #[test]
    fn outbound_parsing_rejects_extra_fields() {
        assert!(
            serde_json::from_str::<Outbound>(r#"{"event":"clear","streamSid":"MZ1","extra":1}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<Outbound>(
                r#"{"event":"media","streamSid":"MZ1","media":{"payload":"","track":"x"}}"#
            )
            .is_err()
        );
        assert_eq!(
            serde_json::from_str::<Outbound>(r#"{"event":"clear","streamSid":"MZ1"}"#).unwrap(),
            Outbound::Clear {
                stream_sid: "MZ1".into()
            }
        );
    }
}
