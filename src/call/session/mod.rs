//! The protocol state of one call: turns each of Twilio's text messages into
//! at most one validated [`CallEvent`], counter updates and log notes.
//!
//! It checks what only the sequence can tell (media or marks before `start`,
//! a wrong streamSid, a duplicate `start`, size limits) and decodes media
//! payloads of both tracks (which track an element outputs is its own
//! business; media of any track keeps the call alive). Pure: no tokio, no socket, no call; the call's task applies
//! what [`Session::handle`] returns.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::events::{CallEvent, DtmfDigit, MediaChunk};
use super::stats::Stat;
use crate::codec::{ByteOrder, Codec, Unsupported, WireFormat, opus};
use crate::protocol::dialect::{self, Choice, Dialect, Twilio};
use crate::protocol::{Inbound, Track};

/// How loud a [`Note`] is, as the call's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warning,
}

/// A line for the call's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: Level,
    pub text: String,
}

/// What one message did.
#[derive(Debug, Default)]
pub struct Handled {
    /// The event for the consuming element, if the message makes one.
    pub event: Option<CallEvent>,
    /// Counter increments (at most two per message; no allocation).
    pub counts: [Option<(Stat, u64)>; 2],
    /// Log lines, in order (none on the media path).
    pub notes: Vec<Note>,
    /// A media message with a valid payload arrived: the idle clock restarts.
    pub media: bool,
    /// A `start` of a media format the plugin cannot carry: no call.
    pub unsupported: Option<Unsupported>,
}

impl Handled {
    fn count(&mut self, stat: Stat, n: u64) {
        let free = self.counts.iter_mut().find(|c| c.is_none());
        *free.expect("at most two counts per message") = Some((stat, n));
    }

    fn note(&mut self, level: Level, text: fmt::Arguments) {
        self.notes.push(Note {
            level,
            text: text.to_string(),
        });
    }

    fn invalid(&mut self, why: fmt::Arguments) {
        self.count(Stat::InvalidMessages, 1);
        self.note(Level::Warning, format_args!("ignoring message: {why}"));
    }

    /// The counter increments, without the empty places.
    pub fn counts(&self) -> impl Iterator<Item = (Stat, u64)> + '_ {
        self.counts.iter().flatten().copied()
    }
}

/// What is known about the stream so far. See the module documentation.
#[derive(Debug)]
pub struct Session {
    stream_sid: Option<String>,
    stopped: bool,
    /// The next payload is decoded into this (a recycled buffer).
    payload: Vec<u8>,
    max_message_size: usize,
    /// The provider's spelling: fixed, or detected at `start`.
    dialect: Option<&'static dyn Dialect>,
    /// L16's byte order, which `start` does not say.
    l16_order: ByteOrder,
    /// The call's audio, from `start`.
    format: WireFormat,
    /// The codes of the provider's errors told so far (at most
    /// [`ERROR_CODES_TOLD`]).
    errors_told: Vec<String>,
}

/// How many of a provider's error codes are told in a call; the rest, and
/// each error again, go to the log only.
const ERROR_CODES_TOLD: usize = 8;

impl Session {
    /// A session whose text messages longer than `max_message_size` are
    /// counted as invalid and ignored.
    pub fn new(max_message_size: usize) -> Session {
        Session {
            stream_sid: None,
            stopped: false,
            payload: Vec::new(),
            max_message_size,
            dialect: None,
            l16_order: ByteOrder::default(),
            format: WireFormat::PCMU,
            errors_told: Vec::new(),
        }
    }

    /// Parses in `choice`'s dialect (`auto`: the one `start` looks like),
    /// taking L16 in `l16_order`.
    pub fn with_dialect(mut self, choice: Choice, l16_order: ByteOrder) -> Session {
        self.dialect = choice.fixed();
        self.l16_order = l16_order;
        self
    }

    /// The dialect, once fixed or detected (Twilio's until then).
    pub fn dialect(&self) -> &'static dyn Dialect {
        self.dialect.unwrap_or(&Twilio)
    }

    /// The dialect fixed by `dialect` or detected at `start`: before a
    /// `start`, None for `auto`.
    pub fn known_dialect(&self) -> Option<&'static dyn Dialect> {
        self.dialect
    }

    /// The call's wire format, from `start` (8 kHz μ-law until then).
    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// Whether Twilio has sent `stop`.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// A binary frame: Twilio sends only text, so it is counted and ignored.
    pub fn binary(&self, len: usize) -> Handled {
        let mut handled = Handled::default();
        handled.count(Stat::InvalidMessages, 1);
        handled.note(
            Level::Warning,
            format_args!("ignoring a binary frame of {len} bytes (Twilio sends text)"),
        );
        handled
    }

    /// Handles one text message. `spare` gives the buffer the payload after
    /// this one is decoded into (the decoded one leaves with the event).
    pub fn handle(&mut self, text: &str, spare: impl FnOnce() -> Vec<u8>) -> Handled {
        let mut out = Handled::default();
        if text.len() > self.max_message_size {
            out.invalid(format_args!(
                "{} bytes, more than max-message-size ({})",
                text.len(),
                self.max_message_size
            ));
            return out;
        }
        let dialect = match self.dialect {
            Some(fixed) => fixed,
            None => dialect::detect(text).unwrap_or(&Twilio),
        };
        let msg = match dialect.parse(text) {
            Ok(msg) => msg,
            Err(e) => {
                let shown: String = text.chars().take(120).collect();
                out.invalid(format_args!("{e} in {shown:?}"));
                return out;
            }
        };
        match msg {
            Inbound::Connected { protocol, version } => out.note(
                Level::Debug,
                format_args!("connected: protocol {protocol:?}, version {version:?}"),
            ),
            Inbound::Start {
                stream_sid,
                mut start,
                ..
            } => {
                // Sent back in every message of ours: it must be one we can
                // write as Twilio wrote it (JSON escapes it; GLib could not).
                if stream_sid.is_empty()
                    || start.stream_sid != stream_sid
                    || stream_sid.contains('\0')
                {
                    out.invalid(format_args!(
                        "start with streamSid {stream_sid:?} and start.streamSid {:?}: \
                         they must be one, not empty, without U+0000",
                        start.stream_sid
                    ));
                    return out;
                }
                start.replace_nul();
                if let Some(ours) = &self.stream_sid {
                    out.invalid(format_args!(
                        "duplicate start (streamSid {stream_sid:?}, already {ours:?})"
                    ));
                    return out;
                }
                let format = match &start.media_format {
                    None => Ok(WireFormat::PCMU),
                    Some(f) => WireFormat::parse(&f.encoding, f.sample_rate, self.l16_order),
                };
                let format = match format {
                    Ok(format) => format,
                    Err(e) => {
                        out.invalid(format_args!("start announces an {e}"));
                        out.unsupported = Some(e);
                        return out;
                    }
                };
                if let Some(f) = start.media_format.as_ref().filter(|f| f.channels != 1) {
                    out.note(
                        Level::Warning,
                        format_args!(
                            "start announces {} channels; each media chunk is taken as one track's mono audio",
                            f.channels
                        ),
                    );
                }
                out.note(
                    Level::Info,
                    format_args!(
                        "start ({} dialect, {format}): streamSid {stream_sid}, callSid {}, tracks {:?}",
                        dialect.name(),
                        start.call_sid,
                        start.tracks
                    ),
                );
                self.dialect = Some(dialect);
                self.format = format;
                self.stream_sid = Some(stream_sid);
                out.event = Some(CallEvent::Start(Arc::new(start)));
            }
            Inbound::Media {
                stream_sid, media, ..
            } => {
                if !self.check_sid(&mut out, "media", &stream_sid) {
                    return out;
                }
                if self.stopped {
                    out.note(Level::Debug, format_args!("ignoring media after stop"));
                    return out;
                }
                let Some(track) = Track::from_wire(&media.track) else {
                    out.invalid(format_args!("media of an unknown track {:?}", media.track));
                    return out;
                };
                if let Err(e) = media.decode_payload(&mut self.payload) {
                    out.count(Stat::InboundTranscodeErrors, 1);
                    out.note(
                        Level::Warning,
                        format_args!(
                            "skipping media chunk {:?}: bad base64 payload: {e}",
                            media.chunk
                        ),
                    );
                    return out;
                }
                out.media = true;
                if self.payload.is_empty() {
                    out.note(Level::Debug, format_args!("skipping an empty media chunk"));
                    return out;
                }
                let tick = self.format.bytes_per_tick();
                if !self.format.is_compressed() && !self.payload.len().is_multiple_of(tick) {
                    // The timeline counts 125 µs ticks: 2 or 3 samples of
                    // wideband L16 (a split sample is no audio either).
                    out.note(
                        Level::Debug,
                        format_args!(
                            "media chunk {:?}: the last {} bytes make no whole 125 µs of audio: dropped",
                            media.chunk,
                            self.payload.len() % tick
                        ),
                    );
                }
                if self.format.codec == Codec::Opus && opus::packet_ticks(&self.payload).is_none() {
                    // Its length, from its TOC, would move the timeline.
                    out.count(Stat::InboundTranscodeErrors, 1);
                    out.note(
                        Level::Warning,
                        format_args!(
                            "skipping media chunk {:?}: no Opus packet (RFC 6716: a TOC byte, \
                             at most 120 ms)",
                            media.chunk
                        ),
                    );
                    return out;
                }
                out.count(Stat::ChunksReceived.of_track(track), 1);
                out.count(
                    Stat::BytesReceived.of_track(track),
                    self.payload.len() as u64,
                );
                out.event = Some(CallEvent::Media(MediaChunk {
                    track,
                    timestamp_ms: media.timestamp.0,
                    chunk: media.chunk.map(|c| c.0),
                    ulaw: std::mem::replace(&mut self.payload, spare()),
                    arrival: Instant::now(),
                }));
            }
            Inbound::Dtmf {
                stream_sid, dtmf, ..
            } => {
                let digit = DtmfDigit(dtmf.digit);
                if !self.check_sid(&mut out, "dtmf", &stream_sid) {
                } else if digit.number().is_none() {
                    // Not a key of a phone's keypad: nothing to tell.
                    out.invalid(format_args!("dtmf of an unknown digit {:?}", digit.0));
                } else {
                    out.count(Stat::DtmfReceived, 1);
                    out.event = Some(CallEvent::Dtmf(digit));
                }
            }
            Inbound::Mark {
                stream_sid, mark, ..
            } => {
                if !self.check_sid(&mut out, "mark", &stream_sid) {
                } else if mark.name.contains('\0') {
                    // No mark of ours holds one (a GLib string cannot), and
                    // posted it would be cut there, maybe to a name we did send.
                    out.invalid(format_args!("mark {:?}: a name with U+0000", mark.name));
                } else {
                    out.count(Stat::MarksReceived, 1);
                    out.event = Some(CallEvent::Mark(mark.name));
                }
            }
            Inbound::Stop {
                stream_sid,
                mut stop,
                ..
            } => {
                if self.check_sid(&mut out, "stop", &stream_sid) && !self.stopped {
                    out.note(Level::Info, format_args!("stop"));
                    self.stopped = true;
                    stop.replace_nul();
                    out.event = Some(CallEvent::Stop(stop));
                }
            }
            Inbound::Error(e) => {
                let text = format!(
                    "{} reports error {} {}: {}",
                    dialect.name(),
                    e.code,
                    e.title,
                    e.detail
                );
                out.note(Level::Warning, format_args!("{text}"));
                let told = self.errors_told.contains(&e.code);
                if !told && self.errors_told.len() < ERROR_CODES_TOLD {
                    self.errors_told.push(e.code);
                    out.event = Some(CallEvent::ProviderError(text));
                }
            }
            // SignalWire acknowledges our clear.
            Inbound::Unknown { name } if name == "clear" && self.stream_sid.is_some() => {
                out.note(Level::Debug, format_args!("clear acknowledged"))
            }
            Inbound::Unknown { name } => out.invalid(format_args!("unknown event {name:?}")),
        }
        out
    }

    /// Checks the message belongs to the started stream.
    fn check_sid(&self, out: &mut Handled, event: &str, sid: &str) -> bool {
        match &self.stream_sid {
            None => {
                out.invalid(format_args!("{event} before start"));
                false
            }
            Some(ours) if ours != sid => {
                out.invalid(format_args!(
                    "{event} for streamSid {sid:?}, this stream is {ours:?}"
                ));
                false
            }
            Some(_) => true,
        }
    }
}

#[cfg(test)]
mod tests;
