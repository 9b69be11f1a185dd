//! The provider settings both elements share, beside the listening ones of
//! `endpoint.rs`: which dialect calls speak (`dialect`), the byte order of
//! L16 audio (`l16-byte-order`) and the token SignalWire sends as a bearer
//! token and Telnyx in its own header (`auth-bearer-token`), with their
//! GLib enums and property specs.

use gst::glib;
use gst::prelude::*;

use crate::codec::ByteOrder;
use crate::protocol::dialect::Choice;

/// The `dialect` property.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTwilioStreamDialect")]
pub enum DialectProp {
    #[default]
    #[enum_value(
        name = "Detected per call from the start message (stream_id: Telnyx; UUID stream ids or L16: SignalWire; else Twilio)",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "Twilio Media Streams", nick = "twilio")]
    Twilio = 1,
    #[enum_value(name = "SignalWire cXML <Stream>", nick = "signalwire")]
    SignalWire = 2,
    #[enum_value(name = "Telnyx media streaming (Call Control, TeXML)", nick = "telnyx")]
    Telnyx = 3,
}

impl From<DialectProp> for Choice {
    fn from(d: DialectProp) -> Choice {
        match d {
            DialectProp::Auto => Choice::Auto,
            DialectProp::Twilio => Choice::Twilio,
            DialectProp::SignalWire => Choice::SignalWire,
            DialectProp::Telnyx => Choice::Telnyx,
        }
    }
}

/// The `l16-byte-order` property.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTwilioStreamL16ByteOrder")]
pub enum L16Order {
    #[default]
    #[enum_value(
        name = "Big-endian (network order, RFC 2586; Telnyx)",
        nick = "big-endian"
    )]
    Big = 0,
    #[enum_value(name = "Little-endian", nick = "little-endian")]
    Little = 1,
}

impl From<L16Order> for ByteOrder {
    fn from(o: L16Order) -> ByteOrder {
        match o {
            L16Order::Big => ByteOrder::Big,
            L16Order::Little => ByteOrder::Little,
        }
    }
}

/// The provider settings of an element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provider {
    pub dialect: DialectProp,
    pub l16_order: L16Order,
    /// SignalWire's `authBearerToken`, Telnyx's `stream_auth_token`; None
    /// or empty: no check.
    pub bearer_token: Option<String>,
}

impl Provider {
    /// The properties; `when` ends each blurb, as for the endpoint's.
    pub fn pspecs(when: &str) -> Vec<glib::ParamSpec> {
        vec![
            glib::ParamSpecEnum::builder::<DialectProp>("dialect")
                .nick("Dialect")
                .blurb(&format!(
                    "The provider's spelling of the Media Streams protocol: how its messages \
                     are read and ours written (auto: detected per call from its start \
                     message){when}"
                ))
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder::<L16Order>("l16-byte-order")
                .nick("L16 byte order")
                .blurb(&format!(
                    "Byte order of L16 audio on the wire, both ways, which the start message \
                     does not say: big-endian per RFC 2586 (Telnyx); SignalWire's is not \
                     documented{when}"
                ))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("auth-bearer-token")
                .nick("Auth bearer token")
                .blurb(&format!(
                    "SignalWire's authBearerToken or Telnyx's stream_auth_token: the WebSocket \
                     upgrade must then carry Authorization: Bearer <token> (or, with dialect \
                     telnyx or auto, x-telnyx-streaming-auth-token: <token>), or it gets HTTP \
                     403 (compared in constant time). Unset or empty: no check. \
                     Write-only{when}"
                ))
                .write_only()
                .mutable_ready()
                .build(),
        ]
    }

    /// Sets one of the properties; false if `name` is not one of them.
    pub fn set_property(&mut self, name: &str, value: &glib::Value) -> bool {
        match name {
            "dialect" => self.dialect = value.get().unwrap(),
            "l16-byte-order" => self.l16_order = value.get().unwrap(),
            "auth-bearer-token" => {
                self.bearer_token = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|t| !t.is_empty())
            }
            _ => return false,
        }
        true
    }

    /// Reads one of the properties (the token is never readable).
    pub fn property(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "dialect" => self.dialect.to_value(),
            "l16-byte-order" => self.l16_order.to_value(),
            _ => return None,
        })
    }
}
