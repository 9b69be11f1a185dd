//! What the src pad carries: S16LE at 16, 8 or 24 kHz, or a call's raw
//! bytes (μ-law, A-law, big-endian L16), one channel or two for
//! `track=both`; or, mono, a G.722 or Opus call's payloads as they came
//! (`audio/G722`, `audio/x-opus`), for `avdec_g722` / `opusdec`; and what that means beside the call's own format (rates,
//! delay, latency, whether it passes the wire bytes through). Converting
//! is `convert`'s.

use gst::ClockTime;

use crate::codec::resample;
use crate::codec::{ByteOrder, Codec, WireFormat};

/// A provider's customary chunk: the latency a live source of it has at least.
const CHUNK_DURATION: ClockTime = ClockTime::from_mseconds(20);
/// Where the two channels of `track=both` are: front left the caller
/// (inbound), front right what the caller hears (outbound).
pub const STEREO_MASK: u64 = 0x3;
/// PCM output rates, in order of preference before a call is known.
pub const PCM_RATES: [u32; 3] = [16000, 8000, 24000];

/// How output samples are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    S16le,
    S16be,
    Mulaw,
    Alaw,
    /// `audio/G722` (the call's own, passed through).
    G722,
    /// `audio/x-opus` (the call's own packets, passed through).
    Opus,
}

/// The output format (from the negotiated caps) beside the call's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub encoding: Encoding,
    pub rate: u32,
    /// The call's audio on the wire (8 kHz μ-law until `start` says more).
    pub wire: WireFormat,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            encoding: Encoding::S16le,
            rate: 16000,
            wire: WireFormat::PCMU,
        }
    }
}

impl Output {
    /// The output `caps` name, for a call in `wire`.
    pub fn from_caps(caps: &gst::CapsRef, wire: WireFormat) -> Option<Output> {
        let s = caps.structure(0)?;
        let rate = s.get::<i32>("rate").ok()? as u32;
        let encoding = match s.name().as_str() {
            "audio/x-raw" => match s.get::<&str>("format").ok()? {
                "S16LE" => Encoding::S16le,
                "S16BE" => Encoding::S16be,
                _ => return None,
            },
            "audio/x-mulaw" => Encoding::Mulaw,
            "audio/x-alaw" => Encoding::Alaw,
            "audio/G722" => Encoding::G722,
            "audio/x-opus" => Encoding::Opus,
            _ => return None,
        };
        let output = Output {
            encoding,
            rate,
            wire,
        };
        output.valid().then_some(output)
    }

    fn valid(self) -> bool {
        match self.encoding {
            Encoding::Mulaw | Encoding::Alaw => self.rate == 8000,
            Encoding::S16le | Encoding::S16be => PCM_RATES.contains(&self.rate),
            Encoding::G722 => self.rate == WireFormat::G722.rate,
            Encoding::Opus => self.rate == WireFormat::OPUS.rate,
        }
    }

    /// Compressed output: only the call's own payloads, passed through.
    pub fn compressed(self) -> bool {
        matches!(self.encoding, Encoding::G722 | Encoding::Opus)
    }

    /// Whether this output can be made from a call in `wire`: a compressed
    /// call passes through only, compressed output takes only its own call.
    pub fn fits(self, wire: WireFormat) -> bool {
        let own = Output::own(wire);
        match (self.compressed(), wire.is_compressed()) {
            (false, false) => true,
            _ => self.encoding == own.encoding && self.rate == own.rate,
        }
    }

    /// A call's own format as an output: its bytes as they came.
    pub fn own(wire: WireFormat) -> Output {
        let encoding = match wire.codec {
            Codec::Pcmu => Encoding::Mulaw,
            Codec::Pcma => Encoding::Alaw,
            Codec::L16(ByteOrder::Little) => Encoding::S16le,
            Codec::L16(ByteOrder::Big) => Encoding::S16be,
            Codec::G722 => Encoding::G722,
            Codec::Opus => Encoding::Opus,
        };
        Output {
            encoding,
            rate: wire.rate,
            wire,
        }
    }

    /// The same output for a call in `wire`.
    pub fn for_wire(self, wire: WireFormat) -> Output {
        Output { wire, ..self }
    }

    /// The wire bytes go out as they came.
    pub fn passthrough(self) -> bool {
        Output::own(self.wire) == self
    }

    /// The caps of this one format with `channels`.
    pub fn caps_with(self, channels: u32) -> gst::Caps {
        let builder = match self.encoding {
            Encoding::Mulaw => gst::Caps::builder("audio/x-mulaw"),
            Encoding::Alaw => gst::Caps::builder("audio/x-alaw"),
            Encoding::G722 => gst::Caps::builder("audio/G722"),
            // Mono, no header: opusdec's RTP-style input.
            Encoding::Opus => {
                gst::Caps::builder("audio/x-opus").field("channel-mapping-family", 0i32)
            }
            Encoding::S16le | Encoding::S16be => {
                let format = if self.encoding == Encoding::S16le {
                    "S16LE"
                } else {
                    "S16BE"
                };
                gst::Caps::builder("audio/x-raw")
                    .field("format", format)
                    .field("layout", "interleaved")
            }
        };
        let builder = builder
            .field("rate", self.rate as i32)
            .field("channels", channels as i32);
        if channels == 2 {
            builder
                .field("channel-mask", gst::Bitmask::new(STEREO_MASK))
                .build()
        } else {
            builder.build()
        }
    }

    /// Every format with `channels` (1, or 2 for both tracks), in order of
    /// preference for a call in `wire`: S16LE at the call's own rate when
    /// it is wideband, then at 16, 8 and 24 kHz; then the call's own bytes,
    /// then the other raw formats; mono, the compressed ones last. A
    /// compressed call: its own caps only.
    pub fn caps(channels: u32, wire: WireFormat) -> gst::Caps {
        if wire.is_compressed() {
            return match channels {
                1 => Output::own(wire).caps_with(1),
                _ => gst::Caps::new_empty(),
            };
        }
        let pcm = |rate| Output {
            encoding: Encoding::S16le,
            rate,
            wire,
        };
        let mut order: Vec<Output> = Vec::new();
        if wire.rate > 8000 {
            order.push(pcm(wire.rate));
        }
        order.extend(PCM_RATES.map(pcm));
        order.push(Output::own(wire));
        for encoding in [Encoding::Mulaw, Encoding::Alaw] {
            order.push(Output {
                encoding,
                rate: 8000,
                wire,
            });
        }
        for rate in [8000, 16000, 24000] {
            order.push(Output {
                encoding: Encoding::S16be,
                rate,
                wire,
            });
        }
        if channels == 1 {
            order.extend([WireFormat::G722, WireFormat::OPUS].map(|w| Output {
                wire,
                ..Output::own(w)
            }));
        }
        let mut caps = gst::Caps::new_empty();
        let mut seen: Vec<(Encoding, u32)> = Vec::new();
        for o in order {
            if !seen.contains(&(o.encoding, o.rate)) {
                seen.push((o.encoding, o.rate));
                caps.get_mut().unwrap().append(o.caps_with(channels));
            }
        }
        caps
    }

    /// Every format, mono first (the pad template).
    pub fn template_caps() -> gst::Caps {
        let mut caps = Output::caps(1, WireFormat::PCMU);
        caps.get_mut()
            .unwrap()
            .append(Output::caps(2, WireFormat::PCMU));
        caps
    }

    /// Output samples per 125 µs tick (an 8 kHz sample).
    pub fn factor(self) -> u64 {
        (self.rate / 8000) as u64
    }

    /// Bytes per tick, of one channel.
    pub fn bytes_per_input_sample(self) -> usize {
        self.factor() as usize * self.sample_bytes()
    }

    /// The byte that silence is made of, in a raw output (S16 zero, the
    /// G.711 codes of zero); None for a compressed one.
    pub fn silence_byte(self) -> Option<u8> {
        match self.encoding {
            Encoding::S16le | Encoding::S16be => Some(0),
            Encoding::Mulaw => Some(0xFF),
            Encoding::Alaw => Some(0xD5),
            Encoding::G722 | Encoding::Opus => None,
        }
    }

    /// Bytes per sample, of one channel.
    pub fn sample_bytes(self) -> usize {
        match self.encoding {
            Encoding::S16le | Encoding::S16be => 2,
            Encoding::Mulaw | Encoding::Alaw | Encoding::G722 | Encoding::Opus => 1,
        }
    }

    /// Signal delay added by the element: the resampler's, if any.
    pub fn delay(self) -> ClockTime {
        if self.wire.rate == self.rate || self.compressed() {
            return ClockTime::ZERO;
        }
        ClockTime::from_nseconds(resample::delay_ns(self.wire.rate, self.rate).unwrap_or(0))
    }

    /// Ticks of silence that push the resampler's last audio out.
    pub fn tail_ticks(self) -> usize {
        self.delay().nseconds().div_ceil(125_000) as usize
    }

    /// Whether lost audio can be concealed: an 8 kHz call (the concealer
    /// works at 8 kHz), decoded or in its own bytes (the concealment encoded
    /// into them).
    pub fn conceals(self) -> bool {
        self.wire.rate == 8000 && !self.wire.is_compressed()
    }

    pub fn latency(self) -> ClockTime {
        CHUNK_DURATION + self.delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(encoding: Encoding, rate: u32, wire: WireFormat) -> Output {
        Output {
            encoding,
            rate,
            wire,
        }
    }

    #[test]
    fn formats_have_their_rates_delays_and_sizes() {
        let mulaw = WireFormat::PCMU;
        assert_eq!(
            out(Encoding::S16le, 16000, mulaw).delay(),
            ClockTime::from_nseconds(2_562_500)
        );
        assert_eq!(out(Encoding::S16le, 8000, mulaw).delay(), ClockTime::ZERO);
        assert_eq!(
            out(Encoding::Mulaw, 8000, mulaw).latency(),
            ClockTime::from_mseconds(20)
        );
        assert_eq!(
            [
                out(Encoding::S16le, 16000, mulaw),
                out(Encoding::S16le, 8000, mulaw),
                out(Encoding::Mulaw, 8000, mulaw),
                out(Encoding::S16be, 24000, mulaw),
            ]
            .map(|o| (o.factor(), o.bytes_per_input_sample())),
            [(2, 4), (1, 2), (1, 1), (3, 6)]
        );
        let wide = WireFormat::l16(16000, ByteOrder::Little);
        let own = out(Encoding::S16le, 16000, wide);
        assert!(own.passthrough() && !own.conceals());
        assert!(out(Encoding::Mulaw, 8000, mulaw).conceals());
        assert!(out(Encoding::Alaw, 8000, WireFormat::PCMA).conceals());
        assert_eq!(own.delay(), ClockTime::ZERO);
        assert_eq!(out(Encoding::S16le, 16000, mulaw).tail_ticks(), 21);
        assert!(out(Encoding::S16le, 8000, WireFormat::PCMA).conceals());
        assert!(!out(Encoding::S16le, 8000, wide).conceals());
    }

    #[test]
    fn caps_name_the_format_and_the_channels() {
        gst::init().unwrap();
        let mulaw = WireFormat::PCMU;
        for channels in [1, 2] {
            let caps = Output::caps(channels, mulaw);
            let compressed: &[_] = match channels {
                1 => &[(Encoding::G722, 16000), (Encoding::Opus, 48000)],
                _ => &[],
            };
            let formats: Vec<_> = caps
                .iter()
                .map(|s| {
                    assert_eq!(s.get::<i32>("channels"), Ok(channels as i32));
                    let o = Output::from_caps(&gst::Caps::from(s.to_owned()), mulaw).unwrap();
                    (o.encoding, o.rate)
                })
                .collect();
            assert_eq!(
                formats,
                [
                    (Encoding::S16le, 16000),
                    (Encoding::S16le, 8000),
                    (Encoding::S16le, 24000),
                    (Encoding::Mulaw, 8000),
                    (Encoding::Alaw, 8000),
                    (Encoding::S16be, 8000),
                    (Encoding::S16be, 16000),
                    (Encoding::S16be, 24000),
                ]
                .iter()
                .chain(compressed)
                .copied()
                .collect::<Vec<_>>()
            );
        }
        // A compressed call: its own caps, mono, for its decoder.
        let opus = Output::caps(1, WireFormat::OPUS);
        assert_eq!(
            opus.to_string(),
            "audio/x-opus, channel-mapping-family=(int)0, rate=(int)48000, channels=(int)1"
        );
        assert!(Output::caps(2, WireFormat::G722).is_empty());
        let g722 = Output::from_caps(&Output::caps(1, WireFormat::G722), WireFormat::G722).unwrap();
        assert!(g722.passthrough() && g722.fits(WireFormat::G722));
        assert!(!g722.fits(mulaw) && !g722.for_wire(WireFormat::OPUS).fits(WireFormat::OPUS));
        assert!(!out(Encoding::S16le, 16000, WireFormat::G722).fits(WireFormat::G722));
        assert!(out(Encoding::S16le, 16000, mulaw).fits(mulaw));
        let stereo = Output::caps(2, mulaw);
        let mask = stereo
            .structure(0)
            .unwrap()
            .get::<gst::Bitmask>("channel-mask");
        assert_eq!(mask, Ok(gst::Bitmask::new(STEREO_MASK)));
        // A wideband call prefers its own rate, and its own bytes among raw.
        let wide = WireFormat::l16(24000, ByteOrder::Big);
        let first: Vec<_> = Output::caps(1, wide)
            .iter()
            .take(5)
            .map(|s| Output::from_caps(&gst::Caps::from(s.to_owned()), wide).unwrap())
            .map(|o| (o.encoding, o.rate))
            .collect();
        assert_eq!(
            first,
            [
                (Encoding::S16le, 24000),
                (Encoding::S16le, 16000),
                (Encoding::S16le, 8000),
                (Encoding::S16be, 24000),
                (Encoding::Mulaw, 8000),
            ]
        );
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 48000)
            .build();
        assert_eq!(Output::from_caps(&caps, mulaw), None);
        let caps = gst::Caps::builder("audio/x-alaw")
            .field("rate", 16000)
            .build();
        assert_eq!(Output::from_caps(&caps, mulaw), None);
    }
}
