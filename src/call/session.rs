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
use crate::codec::{ByteOrder, WireFormat};
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
}

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
                stream_sid, start, ..
            } => {
                if stream_sid.is_empty() || start.stream_sid != stream_sid {
                    out.invalid(format_args!(
                        "start with streamSid {stream_sid:?} and start.streamSid {:?}: \
                         they must be one and not empty",
                        start.stream_sid
                    ));
                    return out;
                }
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
                if self.check_sid(&mut out, "dtmf", &stream_sid) {
                    out.count(Stat::DtmfReceived, 1);
                    out.event = Some(CallEvent::Dtmf(DtmfDigit(dtmf.digit)));
                }
            }
            Inbound::Mark {
                stream_sid, mark, ..
            } => {
                if self.check_sid(&mut out, "mark", &stream_sid) {
                    out.count(Stat::MarksReceived, 1);
                    out.event = Some(CallEvent::Mark(mark.name));
                }
            }
            Inbound::Stop {
                stream_sid, stop, ..
            } => {
                if self.check_sid(&mut out, "stop", &stream_sid) && !self.stopped {
                    out.note(Level::Info, format_args!("stop"));
                    self.stopped = true;
                    out.event = Some(CallEvent::Stop(stop));
                }
            }
            Inbound::Error(e) => out.note(
                Level::Warning,
                format_args!(
                    "{} reports error {} {}: {}",
                    dialect.name(),
                    e.code,
                    e.title,
                    e.detail
                ),
            ),
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
mod tests {
    use super::*;

    const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;

    fn media(sid: &str, track: &str, payload: &str) -> String {
        format!(
            r#"{{"event":"media","streamSid":"{sid}","media":{{"track":"{track}","chunk":"7","timestamp":"140","payload":"{payload}"}}}}"#
        )
    }

    fn counts(h: &Handled) -> Vec<(Stat, u64)> {
        h.counts().collect()
    }

    fn warnings(h: &Handled) -> Vec<&str> {
        h.notes
            .iter()
            .filter(|n| n.level == Level::Warning)
            .map(|n| n.text.as_str())
            .collect()
    }

    fn started() -> Session {
        let mut s = Session::new(64 * 1024);
        let h = s.handle(START, Vec::new);
        assert!(matches!(h.event, Some(CallEvent::Start(ref st)) if st.call_sid == "CA1"));
        assert_eq!(counts(&h), []);
        assert!(warnings(&h).is_empty());
        s
    }

    #[test]
    fn media_becomes_a_chunk_in_the_spare_buffer_and_is_counted() {
        let mut s = started();
        let spare = Vec::with_capacity(160);
        let spare_ptr = spare.as_ptr();
        let h = s.handle(&media("MZ1", "inbound", "/38A"), || spare);
        let Some(CallEvent::Media(chunk)) = h.event else {
            panic!("no media event")
        };
        assert_eq!(chunk.ulaw, [0xFF, 0x7F, 0x00]);
        assert_eq!((chunk.timestamp_ms, chunk.chunk), (140, Some(7)));
        assert_eq!(chunk.track, Track::Inbound);
        assert!(h.media);
        assert!(h.notes.is_empty());
        let h = s.handle(&media("MZ1", "inbound", "AAAA"), Vec::new);
        assert_eq!(
            counts(&h),
            [
                (Stat::InboundChunksReceived, 1),
                (Stat::InboundBytesReceived, 3)
            ]
        );
        let Some(CallEvent::Media(second)) = h.event else {
            panic!("no media event")
        };
        // The second payload was decoded into the spare buffer given before.
        assert_eq!(second.ulaw.as_ptr(), spare_ptr);
    }

    #[test]
    fn messages_before_start_or_for_another_stream_are_invalid() {
        let mut s = Session::new(64 * 1024);
        for text in [
            media("MZ1", "inbound", "AAAA"),
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"a"}}"#.to_owned(),
            r#"{"event":"dtmf","streamSid":"MZ1","dtmf":{"digit":"1"}}"#.to_owned(),
            r#"{"event":"stop","streamSid":"MZ1","stop":{}}"#.to_owned(),
        ] {
            let h = s.handle(&text, Vec::new);
            assert!(h.event.is_none(), "{text}");
            assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)], "{text}");
            assert!(warnings(&h)[0].ends_with("before start"), "{:?}", h.notes);
        }
        let mut s = started();
        let h = s.handle(&media("MZ2", "inbound", "AAAA"), Vec::new);
        assert!(h.event.is_none());
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        assert_eq!(
            warnings(&h),
            [r#"ignoring message: media for streamSid "MZ2", this stream is "MZ1""#]
        );
    }

    #[test]
    fn a_start_with_an_empty_or_two_stream_sids_is_invalid() {
        for text in [
            START.replacen(r#""streamSid":"MZ1""#, r#""streamSid":"""#, 2),
            START.replacen(r#""streamSid":"MZ1""#, r#""streamSid":"MZ2""#, 1),
        ] {
            let mut s = Session::new(64 * 1024);
            let h = s.handle(&text, Vec::new);
            assert!(h.event.is_none(), "{text}");
            assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        }
    }

    #[test]
    fn a_second_start_is_invalid_and_keeps_the_first_stream() {
        let mut s = started();
        let h = s.handle(&START.replace("MZ1", "MZ9"), Vec::new);
        assert!(h.event.is_none());
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        assert!(warnings(&h)[0].contains("duplicate start"));
        assert!(
            s.handle(&media("MZ1", "inbound", "AAAA"), Vec::new)
                .event
                .is_some()
        );
    }

    #[test]
    fn bad_input_is_counted_and_explained() {
        let mut s = Session::new(1024);
        let h = s.handle("not json", Vec::new);
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        assert!(warnings(&h)[0].starts_with("ignoring message: "));
        assert!(warnings(&h)[0].ends_with(r#"in "not json""#));

        let h = s.handle(&"x".repeat(1025), Vec::new);
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        assert_eq!(
            warnings(&h),
            ["ignoring message: 1025 bytes, more than max-message-size (1024)"]
        );

        let h = s.handle(r#"{"event":"party"}"#, Vec::new);
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        assert_eq!(warnings(&h), [r#"ignoring message: unknown event "party""#]);

        let h = s.binary(12);
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        assert_eq!(
            warnings(&h),
            ["ignoring a binary frame of 12 bytes (Twilio sends text)"]
        );
    }

    #[test]
    fn outbound_media_is_a_chunk_of_its_track_and_keeps_the_call_alive() {
        let mut s = started();
        let h = s.handle(&media("MZ1", "outbound", "/38A"), Vec::new);
        let Some(CallEvent::Media(chunk)) = &h.event else {
            panic!("no media event")
        };
        assert_eq!(chunk.track, Track::Outbound);
        assert_eq!(chunk.ulaw, [0xFF, 0x7F, 0x00]);
        assert!(h.media);
        assert_eq!(
            counts(&h),
            [
                (Stat::OutboundChunksReceived, 1),
                (Stat::OutboundBytesReceived, 3)
            ]
        );
        // TwiML's spelling is taken too; a track nobody knows is invalid.
        let h = s.handle(&media("MZ1", "outbound_track", "AAAA"), Vec::new);
        assert!(matches!(h.event, Some(CallEvent::Media(ref c)) if c.track == Track::Outbound));
        let h = s.handle(&media("MZ1", "sideways", "AAAA"), Vec::new);
        assert!(h.event.is_none() && !h.media);
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        assert_eq!(
            warnings(&h),
            [r#"ignoring message: media of an unknown track "sideways""#]
        );
    }

    #[test]
    fn bad_or_empty_payloads_make_no_chunk() {
        let mut s = started();
        let h = s.handle(&media("MZ1", "inbound", "!!!"), Vec::new);
        assert!(h.event.is_none() && !h.media);
        assert_eq!(counts(&h), [(Stat::InboundTranscodeErrors, 1)]);
        assert!(warnings(&h)[0].contains("bad base64 payload"));

        // An empty payload is media (the idle clock restarts) but no chunk.
        let h = s.handle(&media("MZ1", "inbound", ""), Vec::new);
        assert!(h.event.is_none() && h.media);
        assert_eq!(counts(&h), []);
    }

    #[test]
    fn control_events_are_counted_and_stop_comes_once() {
        let mut s = started();
        let h = s.handle(
            r##"{"event":"dtmf","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"#"}}"##,
            Vec::new,
        );
        assert!(matches!(h.event, Some(CallEvent::Dtmf(ref d)) if d.0 == "#"));
        assert_eq!(counts(&h), [(Stat::DtmfReceived, 1)]);

        let h = s.handle(
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"greeting"}}"#,
            Vec::new,
        );
        assert!(matches!(h.event, Some(CallEvent::Mark(ref m)) if m == "greeting"));
        assert_eq!(counts(&h), [(Stat::MarksReceived, 1)]);

        let stop =
            r#"{"event":"stop","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}"#;
        assert!(!s.stopped());
        assert!(matches!(
            s.handle(stop, Vec::new).event,
            Some(CallEvent::Stop(_))
        ));
        assert!(s.stopped());
        let again = s.handle(stop, Vec::new);
        assert!(again.event.is_none());
        assert_eq!(counts(&again), []);
        // Media after stop is neither an event nor counted as received.
        let late = s.handle(&media("MZ1", "inbound", "AAAA"), Vec::new);
        assert!(late.event.is_none() && !late.media);
        assert_eq!(counts(&late), []);
    }

    const TELNYX_START: &str = r#"{"event":"start","sequence_number":"1","start":{"user_id":"u1","call_control_id":"v3:c1","media_format":{"encoding":"PCMA","sample_rate":8000,"channels":1}},"stream_id":"S1"}"#;

    #[test]
    fn auto_detects_the_dialect_at_start_and_keeps_it() {
        let mut s = Session::new(64 * 1024);
        assert_eq!(s.dialect().name(), "twilio");
        let h = s.handle(r#"{"event":"connected","version":"1.0.0"}"#, Vec::new);
        assert_eq!(counts(&h), []);
        let h = s.handle(TELNYX_START, Vec::new);
        assert!(matches!(h.event, Some(CallEvent::Start(ref st)) if st.call_sid == "v3:c1"));
        assert_eq!(s.dialect().name(), "telnyx");
        assert_eq!(s.format(), WireFormat::PCMA);
        assert!(
            h.notes[0]
                .text
                .starts_with("start (telnyx dialect, PCMA@8000)")
        );
        let h = s.handle(
            r#"{"event":"media","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"1dU="},"stream_id":"S1"}"#,
            Vec::new,
        );
        let Some(CallEvent::Media(chunk)) = h.event else {
            panic!("no media event")
        };
        assert_eq!(chunk.ulaw, [0xD5, 0xD5]);
    }

    #[test]
    fn a_fixed_dialect_reads_only_its_own_spelling() {
        let mut s = Session::new(64 * 1024).with_dialect(Choice::Twilio, ByteOrder::Big);
        let h = s.handle(TELNYX_START, Vec::new);
        assert!(h.event.is_none());
        assert!(
            warnings(&h)[0].contains("missing field `accountSid`"),
            "{:?}",
            h.notes
        );
        let mut s = Session::new(64 * 1024).with_dialect(Choice::SignalWire, ByteOrder::Little);
        let h = s.handle(
            &START
                .replace("audio/x-mulaw", "audio/x-L16")
                .replace("8000", "24000"),
            Vec::new,
        );
        assert!(matches!(h.event, Some(CallEvent::Start(_))));
        assert_eq!(s.format(), WireFormat::l16(24000, ByteOrder::Little));
        assert_eq!(s.dialect().name(), "signalwire");
        // SignalWire acknowledges a clear: no warning, no count.
        let h = s.handle(r#"{"event":"clear","streamSid":"MZ1"}"#, Vec::new);
        assert_eq!(counts(&h), []);
        assert!(warnings(&h).is_empty());
    }

    #[test]
    fn a_start_in_a_format_we_cannot_carry_is_refused_with_its_name() {
        let mut s = Session::new(64 * 1024);
        let h = s.handle(&START.replace("audio/x-mulaw", "AMR-WB"), Vec::new);
        assert!(h.event.is_none());
        assert_eq!(counts(&h), [(Stat::InvalidMessages, 1)]);
        assert_eq!(
            warnings(&h),
            [
                r#"ignoring message: start announces an unsupported media format "AMR-WB" at 8000 Hz"#
            ]
        );
        // Opus and G.722 are carried (passed through).
        let h = s.handle(&START.replace("audio/x-mulaw", "OPUS"), Vec::new);
        assert!(matches!(h.event, Some(CallEvent::Start(_))));
        assert_eq!(s.format(), WireFormat::OPUS);
    }

    #[test]
    fn provider_errors_are_warnings() {
        let mut s = Session::new(64 * 1024);
        s.handle(TELNYX_START, Vec::new);
        let h = s.handle(
            r#"{"event":"error","stream_id":"S1","payload":{"code":100004,"title":"invalid_media","detail":"bad payload"}}"#,
            Vec::new,
        );
        assert_eq!(counts(&h), []);
        assert_eq!(
            warnings(&h),
            ["telnyx reports error 100004 invalid_media: bad payload"]
        );
    }
}
