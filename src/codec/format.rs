//! The audio a call carries on the wire: codec, byte order and rate
//! ([`WireFormat`]), read from the `start` message's media format, and the
//! conversions between its bytes and linear 16-bit samples at its rate.
//!
//! Time on the wire is counted in ticks of 125 µs (one 8 kHz sample): every
//! sample format here has a whole number of bytes per tick, so the src's
//! timeline places any of them the way it places μ-law. G.722 and Opus are
//! compressed: passed through to GStreamer's decoders, never decoded here.
//! G.722 is 64 kbit/s, a byte per tick; an Opus packet's TOC says how long
//! it plays ([`WireFormat::payload_ticks`]).

use std::fmt;

use super::l16::{self, ByteOrder};
use super::{alaw, g711, opus};

/// Nanoseconds per tick (one 8 kHz sample period).
pub const NS_PER_TICK: u64 = 125_000;

/// A codec a call may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 μ-law (Twilio's only format).
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// Linear 16-bit PCM.
    L16(ByteOrder),
    /// G.722 at 64 kbit/s (16 kHz audio), passed through.
    G722,
    /// Opus packets, passed through.
    Opus,
}

/// The G.722 byte that brings a decoder to silence fastest, whatever its
/// state: the smallest step of both bands (low-band code 0x3F, high-band
/// 3), whose step-size factors are the most negative, so the step shrinks
/// at its fastest. After a loud tone FFmpeg's decoder plays it below
/// −40 dBFS within 6 ms (`tests/compressed.rs`); 0xFA, an encoder's steady
/// output for silence, takes over 20 ms there.
pub const G722_PADDING: u8 = 0xFF;

/// A call's audio on the wire: a codec at a sample rate, mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WireFormat {
    pub codec: Codec,
    pub rate: u32,
}

/// A media format we cannot carry, named as the provider named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "unsupported media format {}", self.0)
    }
}

impl Default for WireFormat {
    fn default() -> Self {
        WireFormat::PCMU
    }
}

impl WireFormat {
    /// 8 kHz μ-law: Twilio's format, and what a call without a media
    /// format is taken to carry.
    pub const PCMU: WireFormat = WireFormat {
        codec: Codec::Pcmu,
        rate: 8000,
    };
    /// 8 kHz A-law.
    pub const PCMA: WireFormat = WireFormat {
        codec: Codec::Pcma,
        rate: 8000,
    };
    /// The rates L16 may have.
    pub const L16_RATES: [u32; 3] = [8000, 16000, 24000];
    /// G.722: 16 kHz audio in 64 kbit/s.
    pub const G722: WireFormat = WireFormat {
        codec: Codec::G722,
        rate: 16000,
    };
    /// Opus, at its 48 kHz clock.
    pub const OPUS: WireFormat = WireFormat {
        codec: Codec::Opus,
        rate: 48000,
    };

    /// L16 at `rate` in `order`.
    pub const fn l16(rate: u32, order: ByteOrder) -> WireFormat {
        WireFormat {
            codec: Codec::L16(order),
            rate,
        }
    }

    /// The format a `start` message announces: `encoding` as Twilio and
    /// SignalWire (`audio/x-mulaw`, `audio/x-L16`) or Telnyx (`PCMU`,
    /// `L16`, `G722`, `OPUS`) spell it, case-insensitive. L16 takes
    /// `l16_order`, which the message does not say. G.722 may be announced
    /// at its RTP clock (8000) or its audio rate (16000), Opus at any of its
    /// rates: both are kept at their own.
    pub fn parse(encoding: &str, rate: u32, l16_order: ByteOrder) -> Result<Self, Unsupported> {
        let name = encoding.trim().to_ascii_lowercase();
        let name = name.strip_prefix("audio/").unwrap_or(&name);
        let name = name.strip_prefix("x-").unwrap_or(name);
        let format = match name {
            "mulaw" | "pcmu" | "ulaw" | "basic" => WireFormat::PCMU,
            "alaw" | "pcma" => WireFormat::PCMA,
            "l16" => WireFormat::l16(rate, l16_order),
            "g722" => WireFormat::G722,
            "opus" => WireFormat::OPUS,
            _ => return Err(Unsupported(format!("{encoding:?} at {rate} Hz"))),
        };
        let rate_ok = match format.codec {
            Codec::L16(_) => WireFormat::L16_RATES.contains(&rate),
            Codec::G722 => [0, 8000, 16000].contains(&rate),
            Codec::Opus => [0, 8000, 12000, 16000, 24000, 48000].contains(&rate),
            // G.711 is 8 kHz; a start that omits the rate means that too.
            Codec::Pcmu | Codec::Pcma => rate == 8000 || rate == 0,
        };
        if !rate_ok {
            return Err(Unsupported(format!("{encoding:?} at {rate} Hz")));
        }
        Ok(format)
    }

    /// Bytes per 125 µs tick (Opus: 1, as a stand-in; its packets say
    /// their own duration).
    pub const fn bytes_per_tick(self) -> usize {
        match self.codec {
            Codec::Pcmu | Codec::Pcma | Codec::G722 | Codec::Opus => 1,
            Codec::L16(_) => 2 * (self.rate / 8000) as usize,
        }
    }

    /// Compressed (G.722, Opus): passed through, never decoded here.
    pub const fn is_compressed(self) -> bool {
        matches!(self.codec, Codec::G722 | Codec::Opus)
    }

    /// How long one media payload plays, in ticks: whole ticks of its bytes,
    /// or an Opus packet's duration (0 if it has none).
    pub fn payload_ticks(self, payload: &[u8]) -> u64 {
        match self.codec {
            Codec::Opus => opus::packet_ticks(payload).unwrap_or(0),
            _ => self.ticks(payload.len()),
        }
    }

    /// How long one media payload plays, in ns.
    pub fn payload_ns(self, payload: &[u8]) -> u64 {
        self.payload_ticks(payload) * NS_PER_TICK
    }

    /// Samples per tick (1, 2 or 3).
    pub const fn samples_per_tick(self) -> usize {
        (self.rate / 8000) as usize
    }

    /// How long `bytes` of this format play.
    pub const fn duration_ns(self, bytes: usize) -> u64 {
        (bytes / self.bytes_per_tick()) as u64 * NS_PER_TICK
    }

    /// Whole ticks in `bytes` (a trailing partial tick is not counted).
    pub const fn ticks(self, bytes: usize) -> u64 {
        (bytes / self.bytes_per_tick()) as u64
    }

    /// The byte that, repeated, is digital silence in this format (none
    /// for a compressed one: 0, never written).
    pub const fn silence(self) -> u8 {
        match self.codec {
            Codec::Pcmu => g711::SILENCE,
            Codec::Pcma => alaw::SILENCE,
            Codec::L16(_) | Codec::G722 | Codec::Opus => 0,
        }
    }

    /// The byte a short last frame is padded with, to a provider's shortest
    /// frame: [`silence`](Self::silence), or for G.722 [`G722_PADDING`]
    /// (ADPCM: no byte is silence whatever state the decoder is in); none
    /// for Opus (a packet plays as long as its frames, whatever its bytes).
    pub const fn padding(self) -> Option<u8> {
        match self.codec {
            Codec::G722 => Some(G722_PADDING),
            Codec::Opus => None,
            _ => Some(self.silence()),
        }
    }

    /// Whether 8 kHz G.711 (a companded byte per sample).
    pub const fn is_g711(self) -> bool {
        matches!(self.codec, Codec::Pcmu | Codec::Pcma)
    }

    /// Appends the whole ticks of `bytes` to `out`, decoded to samples at
    /// [`rate`](Self::rate). A compressed format decodes to nothing: it is
    /// passed through.
    pub fn decode(self, bytes: &[u8], out: &mut Vec<i16>) {
        let whole = self.ticks(bytes.len()) as usize * self.bytes_per_tick();
        let bytes = &bytes[..whole];
        match self.codec {
            Codec::Pcmu => out.extend(bytes.iter().map(|&c| g711::decode(c))),
            Codec::Pcma => out.extend(bytes.iter().map(|&c| alaw::decode(c))),
            Codec::L16(order) => {
                out.extend(bytes.chunks_exact(2).map(|p| order.read([p[0], p[1]])));
            }
            Codec::G722 | Codec::Opus => {}
        }
    }

    /// Writes one sample encoded into `out`: one tick's bytes of an 8 kHz
    /// format (a compressed format writes nothing).
    pub fn encode_sample(self, sample: i16, out: &mut [u8]) {
        match self.codec {
            Codec::Pcmu => out[0] = g711::encode(sample),
            Codec::Pcma => out[0] = alaw::encode(sample),
            Codec::L16(order) => out[..2].copy_from_slice(&order.write(sample)),
            Codec::G722 | Codec::Opus => {}
        }
    }

    /// Appends `samples` (at [`rate`](Self::rate)) to `out`, encoded (a
    /// compressed format appends nothing: the sink passes it through).
    pub fn encode(self, samples: &[i16], out: &mut Vec<u8>) {
        match self.codec {
            Codec::Pcmu => g711::encode_extend(samples, out),
            Codec::Pcma => out.extend(samples.iter().map(|&s| alaw::encode(s))),
            Codec::L16(order) => l16::encode(order, samples, out),
            Codec::G722 | Codec::Opus => {}
        }
    }
}

impl fmt::Display for WireFormat {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.codec {
            Codec::Pcmu => write!(f, "PCMU@{}", self.rate),
            Codec::Pcma => write!(f, "PCMA@{}", self.rate),
            Codec::L16(ByteOrder::Big) => write!(f, "L16@{} (big-endian)", self.rate),
            Codec::L16(ByteOrder::Little) => write!(f, "L16@{} (little-endian)", self.rate),
            Codec::G722 => write!(f, "G722@{}", self.rate),
            Codec::Opus => write!(f, "OPUS@{}", self.rate),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_messages_name_formats_as_each_provider_spells_them() {
        let big = ByteOrder::Big;
        for (encoding, rate, expected) in [
            ("audio/x-mulaw", 8000, WireFormat::PCMU),
            ("PCMU", 8000, WireFormat::PCMU),
            ("audio/x-alaw", 8000, WireFormat::PCMA),
            ("PCMA", 8000, WireFormat::PCMA),
            ("audio/x-L16", 16000, WireFormat::l16(16000, big)),
            ("L16", 24000, WireFormat::l16(24000, big)),
            ("l16", 8000, WireFormat::l16(8000, big)),
            ("G722", 8000, WireFormat::G722),
            ("g722", 16000, WireFormat::G722),
            ("OPUS", 48000, WireFormat::OPUS),
            ("opus", 16000, WireFormat::OPUS),
        ] {
            assert_eq!(
                WireFormat::parse(encoding, rate, big),
                Ok(expected),
                "{encoding}"
            );
        }
        assert_eq!(
            WireFormat::parse("audio/x-L16", 16000, ByteOrder::Little),
            Ok(WireFormat::l16(16000, ByteOrder::Little))
        );
        for (encoding, rate) in [
            ("audio/x-mulaw", 16000),
            ("L16", 44100),
            ("OPUS", 44100),
            ("G722", 24000),
            ("AMR-WB", 16000),
            ("", 8000),
        ] {
            let err = WireFormat::parse(encoding, rate, big).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("unsupported media format {encoding:?} at {rate} Hz")
            );
        }
    }

    #[test]
    fn ticks_durations_and_silence() {
        let cases = [
            (WireFormat::PCMU, 1, 0xFF),
            (WireFormat::PCMA, 1, 0xD5),
            (WireFormat::l16(8000, ByteOrder::Big), 2, 0),
            (WireFormat::l16(16000, ByteOrder::Big), 4, 0),
            (WireFormat::l16(24000, ByteOrder::Little), 6, 0),
        ];
        for (format, width, silence) in cases {
            assert_eq!(format.bytes_per_tick(), width, "{format}");
            assert_eq!(format.silence(), silence, "{format}");
            // 20 ms is 160 ticks whatever the format.
            assert_eq!(format.duration_ns(160 * width), 20_000_000, "{format}");
            assert_eq!(format.ticks(160 * width + width - 1), 160, "{format}");
            let mut decoded = Vec::new();
            format.decode(&vec![silence; 160 * width], &mut decoded);
            assert_eq!(decoded.len(), 160 * format.samples_per_tick());
            assert!(decoded.iter().all(|&s| s.abs() <= 8), "{format}");
        }
    }

    #[test]
    fn compressed_payloads_play_as_long_as_their_bytes_or_packets_say() {
        // G.722: 160 bytes are 20 ms of 16 kHz audio.
        assert!(WireFormat::G722.is_compressed() && WireFormat::OPUS.is_compressed());
        assert_eq!(WireFormat::G722.payload_ticks(&[0; 160]), 160);
        assert_eq!(WireFormat::G722.payload_ns(&[0; 160]), 20_000_000);
        // Opus: CELT FB 20 ms, one frame, whatever its size.
        assert_eq!(WireFormat::OPUS.payload_ticks(&[31 << 3, 1, 2, 3]), 160);
        assert_eq!(WireFormat::OPUS.payload_ticks(&[]), 0);
        assert_eq!(WireFormat::PCMU.payload_ticks(&[0; 80]), 80);
        assert!(!WireFormat::PCMA.is_compressed());
        let mut out = vec![1];
        WireFormat::OPUS.decode(&[1, 2, 3], &mut out);
        assert_eq!(out, [1], "nothing appended");
        assert_eq!(WireFormat::OPUS.to_string(), "OPUS@48000");
    }

    #[test]
    fn decode_and_encode_are_the_codecs() {
        let samples: Vec<i16> = (0..480).map(|i| (i * 131 % 60000 - 30000) as i16).collect();
        for format in [
            WireFormat::PCMU,
            WireFormat::PCMA,
            WireFormat::l16(24000, ByteOrder::Big),
            WireFormat::l16(16000, ByteOrder::Little),
        ] {
            let mut bytes = Vec::new();
            format.encode(&samples, &mut bytes);
            let mut back = Vec::new();
            format.decode(&bytes, &mut back);
            let expected: Vec<i16> = match format.codec {
                Codec::Pcmu => samples
                    .iter()
                    .map(|&s| g711::decode(g711::encode(s)))
                    .collect(),
                Codec::Pcma => samples
                    .iter()
                    .map(|&s| alaw::decode(alaw::encode(s)))
                    .collect(),
                Codec::L16(_) | Codec::G722 | Codec::Opus => samples.clone(),
            };
            assert_eq!(back, expected, "{format}");
        }
        assert_eq!(
            WireFormat::l16(16000, ByteOrder::Big).to_string(),
            "L16@16000 (big-endian)"
        );
    }
}
