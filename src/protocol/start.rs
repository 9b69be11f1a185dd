//! The body of a `start` message: the call's ids, its tracks, its custom
//! parameters and its media format, as every dialect reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::Track;

/// `start.mediaFormat`: numbers (taken from strings too, as counters are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaFormat {
    pub encoding: String,
    /// Telnyx spells it `sample_rate`. 0 when absent (or `null`): a codec
    /// of one rate (G.711) is taken at it, L16 refused (`WireFormat::parse`).
    #[serde(
        rename = "sampleRate",
        alias = "sample_rate",
        default,
        deserialize_with = "rate_or_null"
    )]
    pub sample_rate: u32,
    /// 1 when absent (or `null`).
    #[serde(default = "one", deserialize_with = "channels_or_null")]
    pub channels: u32,
}

fn one() -> u32 {
    1
}

fn rate_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::<Counted>::deserialize(d)?.map_or(0, |c| c.0))
}

fn channels_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    Ok(Option::<Counted>::deserialize(d)?.map_or(1, |c| c.0))
}

/// A number (or a string of one) of 32 bits.
struct Counted(u32);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Counted, D::Error> {
        super::number_or_string(d).map(Counted)
    }
}

impl MediaFormat {
    /// Whether this is the only format Media Streams carries: 8 kHz mono μ-law.
    pub fn is_mulaw_8k_mono(&self) -> bool {
        self.encoding == "audio/x-mulaw" && self.sample_rate == 8000 && self.channels == 1
    }
}

/// The body of a `start` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartInfo {
    #[serde(rename = "accountSid")]
    pub account_sid: String,
    #[serde(
        rename = "streamSid",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub stream_sid: String,
    #[serde(rename = "callSid")]
    pub call_sid: String,
    #[serde(default = "default_tracks")]
    pub tracks: Vec<String>,
    /// `<Parameter>` values from the TwiML. Non-string JSON values are
    /// accepted and kept in their JSON text form.
    #[serde(
        rename = "customParameters",
        default,
        deserialize_with = "string_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub custom_parameters: BTreeMap<String, String>,
    #[serde(
        rename = "mediaFormat",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub media_format: Option<MediaFormat>,
    /// The `start` names no tracks at all (Telnyx's: its `stream_track` is
    /// chosen when streaming starts): `tracks` is empty, and either track
    /// may come.
    #[serde(skip)]
    pub tracks_unannounced: bool,
}

impl StartInfo {
    /// Each U+0000 in what is only reported (the ids, track names, custom
    /// parameters' names and values) as U+FFFD: see [`super::replace_nul`].
    pub fn replace_nul(&mut self) {
        for s in [
            &mut self.account_sid,
            &mut self.stream_sid,
            &mut self.call_sid,
        ] {
            super::replace_nul(s);
        }
        self.tracks.iter_mut().for_each(super::replace_nul);
        if self
            .custom_parameters
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            self.custom_parameters = std::mem::take(&mut self.custom_parameters)
                .into_iter()
                .map(|(mut k, mut v)| {
                    super::replace_nul(&mut k);
                    super::replace_nul(&mut v);
                    (k, v)
                })
                .collect();
        }
    }

    /// Whether `tracks` announces `track`.
    pub fn carries(&self, track: Track) -> bool {
        self.tracks
            .iter()
            .any(|t| Track::from_wire(t) == Some(track))
    }
}

fn default_tracks() -> Vec<String> {
    vec!["inbound".to_owned()]
}

pub(super) fn string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}
