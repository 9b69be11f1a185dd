//! Every Twilio Media Streams message, both directions, as serde types.
//!
//! Inbound messages (Twilio → us) are parsed leniently: unknown fields and
//! unknown events are accepted, counters may be JSON strings (as Twilio sends
//! them) or numbers, and only what the plugin cannot work without is required.
//! A missing required field is an error naming it (`missing field `payload``).
//!
//! Outbound messages (us → Twilio) serialise to exactly the documented shapes;
//! Twilio rejects extra fields.
//!
//! Both directions also implement the other serde trait, so the Twilio
//! emulator and the tests can play Twilio's side with the same types.
//!
//! Other providers' spellings of the same protocol are `dialect/`'s.
//!
//! Here: what both directions share ([`Counter`], [`Mark`], [`Track`]). Parsing Twilio's
//! messages is in `inbound.rs`, what we send (and [`write_media_json`]) in
//! `outbound.rs`; every type is re-exported here.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

pub mod dialect;
mod fast;
mod inbound;
mod outbound;
mod start;

pub use dialect::Dialect;
use inbound::Text;
pub use inbound::{Dtmf, Inbound, InboundMedia, ProviderError, StopInfo};
pub use outbound::{Outbound, OutboundMedia, write_media_json};
pub use start::{MediaFormat, StartInfo};

/// `s` with each U+0000 replaced by U+FFFD (no copy when there is none).
/// GLib's strings end at a U+0000, and a debug build of glib-rs panics on
/// one: what the peer sends that is only reported goes through this first.
pub fn replace_nul(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

/// A counter Twilio sends as a JSON string (`"sequenceNumber":"12"`).
/// Deserialises from a string or a number (a whole one written with a
/// fraction, `8000.0`, too), serialises as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Counter(pub u64);

impl Serialize for Counter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Counter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Counter;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a non-negative integer, as a string or a number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Counter, E> {
                Ok(Counter(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Counter, E> {
                // Whole, and exact in an f64.
                match v.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&v) {
                    true => Ok(Counter(v as u64)),
                    false => Err(E::invalid_value(de::Unexpected::Float(v), &self)),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Counter, E> {
                v.trim()
                    .parse()
                    .map(Counter)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `u32` field given as a number or, like a [`Counter`], as a string.
fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let Counter(n) = Counter::deserialize(d)?;
    u32::try_from(n)
        .map_err(|_| de::Error::invalid_value(de::Unexpected::Unsigned(n), &"a 32-bit number"))
}

/// The body of a `mark` message, either direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub name: String,
}

/// One side of a call's audio, as `media.track` and `start.tracks` name it:
/// the caller (`inbound`) or what Twilio plays to the caller (`outbound`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    Inbound = 0,
    Outbound = 1,
}

impl Track {
    /// Both tracks, in channel order.
    pub const ALL: [Track; 2] = [Track::Inbound, Track::Outbound];

    /// The track `name` stands for: `inbound` or `outbound` (as in `media`
    /// and `start.tracks`), also with the `_track` suffix of TwiML and `dtmf`.
    pub fn from_wire(name: &str) -> Option<Track> {
        match name.strip_suffix("_track").unwrap_or(name) {
            "inbound" => Some(Track::Inbound),
            "outbound" => Some(Track::Outbound),
            _ => None,
        }
    }

    /// The name in `media.track`.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Inbound => "inbound",
            Track::Outbound => "outbound",
        }
    }

    /// 0 for inbound, 1 for outbound: the channel of a two-channel output.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn other(self) -> Track {
        match self {
            Track::Inbound => Track::Outbound,
            Track::Outbound => Track::Inbound,
        }
    }
}

impl fmt::Display for Track {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter as a number, a string, or a whole number with a fraction
    /// (`"sampleRate": 8000.0`); never a fraction, a negative or a number
    /// an f64 does not hold exactly.
    #[test]
    fn counters_are_read_as_any_sender_writes_a_whole_number() {
        let read = |json: &str| serde_json::from_str::<Counter>(json).map(|c| c.0);
        for (json, n) in [
            ("8000", 8000),
            ("\"8000\"", 8000),
            ("\" 12 \"", 12),
            ("8000.0", 8000),
            ("0.0", 0),
            ("9007199254740992.0", 1 << 53),
            ("18446744073709551615", u64::MAX),
        ] {
            assert_eq!(read(json).unwrap(), n, "{json}");
        }
        for json in ["8000.5", "-1", "-1.0", "1e300", "\"8000.0\"", "null", "[]"] {
            assert!(read(json).is_err(), "{json}");
        }
    }

    #[test]
    fn tracks_are_named_as_twilio_names_them() {
        for (name, track) in [
            ("inbound", Some(Track::Inbound)),
            ("outbound", Some(Track::Outbound)),
            ("inbound_track", Some(Track::Inbound)),
            ("outbound_track", Some(Track::Outbound)),
            ("both_tracks", None),
            ("", None),
        ] {
            assert_eq!(Track::from_wire(name), track, "{name}");
        }
        assert_eq!(
            Track::ALL.map(|t| (t.index(), t.as_str(), t.other())),
            [
                (0, "inbound", Track::Outbound),
                (1, "outbound", Track::Inbound)
            ]
        );
    }
}
