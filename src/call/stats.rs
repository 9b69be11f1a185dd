//! A call's counters: [`Stat`], the atomic [`Stats`] a call holds, and how
//! each element shows them ([`Counter`]: a read-only property and a field of
//! its `stats` structure). Nothing here counts by itself: the call's task and
//! the elements do. What Twilio sends per track is counted per track; the
//! totals (`chunks-received` …) are the sums.

use std::sync::atomic::{AtomicU64, Ordering};

use gst::glib;
use gst::prelude::*;

use crate::protocol::Track;

/// The counters of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// The sum of the inbound and outbound counts (see [`Stat::of_track`]):
    /// never counted itself.
    BytesReceived,
    /// A sum, like `BytesReceived`.
    ChunksReceived,
    /// A sum, like `BytesReceived`.
    ChunksLost,
    /// Inbound payloads that could not be decoded (bad base64).
    InboundTranscodeErrors,
    InvalidMessages,
    Overruns,
    /// Mark messages Twilio sent, whatever their names.
    MarksReceived,
    DtmfReceived,
    BytesSent,
    ChunksSent,
    MarksSent,
    ClearsSent,
    /// Outbound input that could not be encoded.
    OutboundTranscodeErrors,
    /// Outbound frames dropped because the peer was not reading.
    ChunksDropped,
    InboundBytesReceived,
    OutboundBytesReceived,
    InboundChunksReceived,
    OutboundChunksReceived,
    InboundChunksLost,
    OutboundChunksLost,
    /// Media chunks that arrived while the src was PAUSED, dropped.
    ChunksDroppedPaused,
    /// Media chunks that arrived for time already filled.
    ChunksFilledLate,
    /// Media chunks put back in order by the src's reorder window.
    ChunksReordered,
    /// Media chunks that came after the reorder window gave up their place
    /// (or twice), dropped.
    ChunksTooLate,
    /// Marks sent that Twilio's echoes account for (see
    /// `Outbox::marks_echoed`): echoes of names never sent, or echoed
    /// already, are not among them.
    MarksPlayed,
}

const STAT_COUNT: usize = 25;

impl Stat {
    /// The per-track counters a total is the sum of (inbound, outbound).
    fn parts(self) -> Option<[Stat; 2]> {
        match self {
            Stat::BytesReceived => Some([Stat::InboundBytesReceived, Stat::OutboundBytesReceived]),
            Stat::ChunksReceived => {
                Some([Stat::InboundChunksReceived, Stat::OutboundChunksReceived])
            }
            Stat::ChunksLost => Some([Stat::InboundChunksLost, Stat::OutboundChunksLost]),
            _ => None,
        }
    }

    /// The part of a total that counts `track` (`ChunksLost` of outbound:
    /// `OutboundChunksLost`); any other counter is itself.
    pub fn of_track(self, track: Track) -> Stat {
        self.parts().map_or(self, |parts| parts[track.index()])
    }
}

/// A counter as an element shows it: a read-only `u64` property and a field
/// of the element's `stats` structure.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    pub stat: Stat,
    pub name: &'static str,
    pub nick: &'static str,
    pub blurb: &'static str,
}

const fn counter(
    stat: Stat,
    name: &'static str,
    nick: &'static str,
    blurb: &'static str,
) -> Counter {
    Counter {
        stat,
        name,
        nick,
        blurb,
    }
}

/// The counters twiliostreamsrc reports.
pub const SRC_COUNTERS: &[Counter] = &[
    counter(
        Stat::BytesReceived,
        "bytes-received",
        "Bytes received",
        "Audio bytes received, in the call's codec (μ-law from Twilio: 8000 per second of audio), of both tracks",
    ),
    counter(
        Stat::ChunksReceived,
        "chunks-received",
        "Chunks received",
        "Media messages received from Twilio, of both tracks",
    ),
    counter(
        Stat::ChunksLost,
        "chunks-lost",
        "Chunks lost",
        "Media chunks missing from the track(s) this element outputs (by chunk number or \
         timestamp); each gap is concealed or silent (gap-fill) and flagged DISCONT",
    ),
    counter(
        Stat::InboundBytesReceived,
        "inbound-bytes-received",
        "Inbound bytes received",
        "Audio bytes of the inbound track (the caller) received, in the call's codec",
    ),
    counter(
        Stat::OutboundBytesReceived,
        "outbound-bytes-received",
        "Outbound bytes received",
        "Audio bytes of the outbound track (what the caller hears) received, in the call's codec",
    ),
    counter(
        Stat::InboundChunksReceived,
        "inbound-chunks-received",
        "Inbound chunks received",
        "Media messages of the inbound track (the caller) received",
    ),
    counter(
        Stat::OutboundChunksReceived,
        "outbound-chunks-received",
        "Outbound chunks received",
        "Media messages of the outbound track (what the caller hears) received",
    ),
    counter(
        Stat::InboundChunksLost,
        "inbound-chunks-lost",
        "Inbound chunks lost",
        "Chunks missing from the inbound track, concealed or silent (counted when \
         this element outputs that track)",
    ),
    counter(
        Stat::OutboundChunksLost,
        "outbound-chunks-lost",
        "Outbound chunks lost",
        "Chunks missing from the outbound track, concealed or silent (counted when \
         this element outputs that track)",
    ),
    counter(
        Stat::InboundTranscodeErrors,
        "transcode-errors",
        "Transcode errors",
        "Media payloads that could not be decoded (bad base64, or no Opus packet in an \
         Opus call); they are skipped",
    ),
    counter(
        Stat::InvalidMessages,
        "invalid-messages",
        "Invalid messages",
        "Messages of a started call ignored as invalid: malformed JSON, unknown events, \
         binary frames, a wrong streamSid, a duplicate start, an unknown track; also media \
         whose timestamp or chunk number is impossible (the audio is kept). Before \
         start, anything but connected makes the connection no call: rejected-connections",
    ),
    counter(
        Stat::Overruns,
        "overruns",
        "Overruns",
        "Call events dropped because the pipeline did not take them fast enough: media \
         once 1024 chunks (about 20 s of one track, 10 s of two) or 4 MiB of payloads \
         wait; control events (start, marks, DTMF) only in a flood (8192 events or 8 MiB)",
    ),
    counter(
        Stat::ChunksDroppedPaused,
        "chunks-dropped-paused",
        "Chunks dropped while paused",
        "Media chunks that arrived while the element was PAUSED, dropped on the return to \
         PLAYING (the stream is anchored anew at the next chunk, flagged DISCONT); and chunks \
         of a call from more than early-audio before the src first played with it",
    ),
    counter(
        Stat::ChunksFilledLate,
        "chunks-filled-late",
        "Chunks late after fill",
        "Media chunks that arrived for time already filled (a gap or GAP buffer pushed when \
         nothing came for the fill deadline); they go out after the fill, flagged DISCONT",
    ),
    counter(
        Stat::ChunksReordered,
        "chunks-reordered",
        "Chunks reordered",
        "Media chunks of a Telnyx call that came after a later chunk of their track and were \
         put back in order by the reorder window",
    ),
    counter(
        Stat::ChunksTooLate,
        "chunks-too-late",
        "Chunks too late",
        "Media chunks that came after their place was given up (their time already filled, \
         and counted lost once their track had started): of a Telnyx call after the reorder \
         window, with track=both after track-wait; or twice. Dropped (what of them came too \
         late)",
    ),
    counter(
        Stat::MarksReceived,
        "marks-received",
        "Marks received",
        "Mark messages received from Twilio (marks echoed: played, or flushed by a clear)",
    ),
    counter(
        Stat::DtmfReceived,
        "dtmf-received",
        "DTMF received",
        "DTMF digits received from Twilio",
    ),
];

/// The counters twiliostreamsink reports.
pub const SINK_COUNTERS: &[Counter] = &[
    counter(
        Stat::BytesSent,
        "bytes-sent",
        "Bytes sent",
        "Audio bytes sent, in the call's codec (μ-law to Twilio: 8000 per second of audio)",
    ),
    counter(
        Stat::ChunksSent,
        "chunks-sent",
        "Chunks sent",
        "Media messages sent to Twilio",
    ),
    counter(
        Stat::MarksSent,
        "marks-sent",
        "Marks sent",
        "Mark messages sent to Twilio",
    ),
    counter(
        Stat::MarksPlayed,
        "marks-played",
        "Marks played",
        "Marks sent that Twilio has played: echoed back, or followed by a later mark's echo \
         (the audio before them was played, or cleared). Echoes of names never sent, or \
         echoed already, do not count",
    ),
    counter(
        Stat::MarksReceived,
        "marks-received",
        "Marks received",
        "Mark messages received from Twilio, whatever their names (echoes of marks sent, \
         of names never sent, or repeated)",
    ),
    counter(
        Stat::ClearsSent,
        "clears-sent",
        "Clears sent",
        "Clear messages sent to Twilio",
    ),
    counter(
        Stat::OutboundTranscodeErrors,
        "transcode-errors",
        "Transcode errors",
        "Input buffers that split a 16-bit sample (raw audio should hold whole samples; \
         the odd byte waits for the next buffer)",
    ),
    counter(
        Stat::ChunksDropped,
        "chunks-dropped",
        "Chunks dropped",
        "Media messages dropped because Twilio was not reading (4 MiB waiting to be sent)",
    ),
];

/// The read-only properties of `counters`.
pub fn counter_pspecs(counters: &[Counter]) -> impl Iterator<Item = glib::ParamSpec> + '_ {
    counters.iter().map(|c| {
        glib::ParamSpecUInt64::builder(c.name)
            .nick(c.nick)
            .blurb(c.blurb)
            .read_only()
            .build()
    })
}

/// The counter called `name`, if it is one of `counters`.
pub fn find_counter(counters: &[Counter], name: &str) -> Option<Stat> {
    counters.iter().find(|c| c.name == name).map(|c| c.stat)
}

/// Atomic counters, one per [`Stat`].
#[derive(Default)]
pub struct Stats([AtomicU64; STAT_COUNT]);

impl Stats {
    /// Counts `n` more. A total (`ChunksLost` …) is counted by its parts:
    /// given one, this counts its inbound part.
    pub fn add(&self, stat: Stat, n: u64) {
        debug_assert!(stat.parts().is_none(), "{stat:?} is a sum: count a track");
        // Callers count what may be nothing on every chunk (reordered, too
        // late): a locked add of 0 would still serialise the CPU.
        if n != 0 {
            self.0[stat.of_track(Track::Inbound) as usize].fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds `n` to a counter that is no total; returns the new value.
    pub fn add_get(&self, stat: Stat, n: u64) -> u64 {
        debug_assert!(stat.parts().is_none(), "{stat:?} is a sum: count a track");
        self.0[stat as usize].fetch_add(n, Ordering::Relaxed) + n
    }

    /// The count of `stat`; of a total, the sum of its parts.
    pub fn get(&self, stat: Stat) -> u64 {
        match stat.parts() {
            Some(parts) => parts.iter().map(|&p| self.get(p)).sum(),
            None => self.0[stat as usize].load(Ordering::Relaxed),
        }
    }

    /// A structure named `name` holding `counters` as `u64` fields (zeros
    /// without a call).
    pub fn structure(stats: Option<&Stats>, name: &str, counters: &[Counter]) -> gst::Structure {
        let mut s = gst::Structure::new_empty(name);
        for c in counters {
            s.set(c.name, stats.map_or(0, |st| st.get(c.stat)));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_names_are_unique_per_element() {
        for list in [SRC_COUNTERS, SINK_COUNTERS] {
            let mut names: Vec<_> = list.iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), list.len());
        }
    }

    #[test]
    fn totals_are_the_sums_of_their_tracks() {
        let stats = Stats::default();
        stats.add(Stat::ChunksReceived.of_track(Track::Inbound), 3);
        stats.add(Stat::ChunksReceived.of_track(Track::Outbound), 4);
        stats.add(Stat::OutboundChunksLost, 2);
        stats.add(Stat::DtmfReceived, 1);
        assert_eq!(stats.get(Stat::InboundChunksReceived), 3);
        assert_eq!(stats.get(Stat::OutboundChunksReceived), 4);
        assert_eq!(stats.get(Stat::ChunksReceived), 7);
        assert_eq!(stats.get(Stat::ChunksLost), 2);
        assert_eq!(stats.get(Stat::BytesReceived), 0);
        assert_eq!(
            Stat::DtmfReceived.of_track(Track::Outbound),
            Stat::DtmfReceived
        );
        assert_eq!(
            Stat::BytesReceived.of_track(Track::Outbound),
            Stat::OutboundBytesReceived
        );
    }
}
