//! What a seed's call is besides its script: the provider and the format
//! its `start` announces (README "Other providers"), the sink's `sync` and
//! `chunk-duration`, and how the peer echoes marks (on playout, maybe late;
//! never, maybe sending `stop` at the EOS mark instead). And Telnyx's
//! padding taken off what the peer got, so that the bytes compare with a
//! fresh codec's output.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gsttwiliostream::codec::{ByteOrder, Codec, WireFormat};
use twilio_emulator::Provider;

use crate::common::peer::{Echo, PeerState};
use crate::common::rng::Rng;
use crate::script::Script;

#[derive(Debug, Clone, Copy)]
pub struct Variant {
    pub provider: Provider,
    pub format: WireFormat,
    /// The sink's `dialect`: fixed to the provider, or `auto`.
    pub fixed_dialect: bool,
    pub sync: bool,
    pub chunk_ms: u32,
    pub echo: Echo,
    /// A peer that never echoes sends `stop` once the EOS mark came.
    pub stop_at_eos: bool,
}

impl Variant {
    pub fn draw(seed: u64) -> Variant {
        let mut rng = Rng::new(seed ^ 0x7a41_a9e7);
        let le = ByteOrder::Little;
        let be = ByteOrder::Big;
        let (provider, format) = *rng.pick(&[
            (Provider::Twilio, WireFormat::PCMU),
            (Provider::Twilio, WireFormat::PCMU),
            (Provider::Twilio, WireFormat::PCMU),
            (Provider::SignalWire, WireFormat::PCMU),
            (Provider::SignalWire, WireFormat::l16(16000, le)),
            (Provider::SignalWire, WireFormat::l16(24000, be)),
            (Provider::Telnyx, WireFormat::PCMA),
            (Provider::Telnyx, WireFormat::PCMU),
            (Provider::Telnyx, WireFormat::l16(8000, be)),
            (Provider::Telnyx, WireFormat::l16(16000, be)),
            (Provider::Telnyx, WireFormat::l16(24000, le)),
        ]);
        let fixed_dialect = rng.chance(50);
        let sync = rng.chance(25);
        let chunk_ms = match rng.chance(60) {
            true => 20,
            false => *rng.pick(&[5, 10, 30, 60]),
        };
        let (echo, stop_at_eos) = match rng.below(10) {
            0 => (Echo::Never, false),
            1 => (Echo::Never, true),
            _ => {
                let late = Duration::from_millis(*rng.pick(&[0, 0, 40, 200]));
                (Echo::OnPlayout { late }, false)
            }
        };
        Variant {
            provider,
            format,
            fixed_dialect,
            sync,
            chunk_ms,
            echo,
            stop_at_eos,
        }
    }

    /// The sink's properties for it.
    pub fn props(&self) -> String {
        let dialect = match (self.fixed_dialect, self.provider) {
            (false, _) => "auto",
            (true, Provider::Twilio) => "twilio",
            (true, Provider::SignalWire) => "signalwire",
            (true, Provider::Telnyx) => "telnyx",
        };
        let order = match self.format.codec {
            Codec::L16(ByteOrder::Little) => "little-endian",
            _ => "big-endian",
        };
        format!(
            "dialect={dialect} l16-byte-order={order} sync={} chunk-duration={}",
            self.sync, self.chunk_ms
        )
    }

    /// The shortest frame the provider takes (ms): shorter last frames are
    /// padded with silence to it.
    pub fn min_frame_ms(&self) -> u32 {
        match self.provider {
            Provider::Telnyx => 20,
            _ => 0,
        }
    }

    /// A whole frame (ms).
    pub fn frame_ms(&self) -> u32 {
        self.chunk_ms.max(self.min_frame_ms())
    }

    /// Whether G.711 input at 8 kHz reaches the wire sample for sample, so
    /// that a racing clear's cut is found in the bytes (and no padding
    /// hides it).
    pub fn racing_clears(&self) -> bool {
        self.format.rate == 8000 && self.min_frame_ms() == 0
    }
}

/// Padding the sink added: where (bytes of the padded stream before it)
/// and how many bytes.
#[derive(Debug, Default, Clone)]
pub struct Padding(Vec<(usize, usize)>);

impl Padding {
    /// Where padded byte `at` is in the stream without the padding (a byte
    /// of padding: where the padding was inserted).
    pub fn unpadded(&self, at: usize) -> usize {
        let mut less = 0;
        for &(pos, len) in &self.0 {
            if pos >= at {
                break;
            }
            less += len.min(at - pos);
        }
        at - less
    }
}

/// What the peer got without the silence a provider minimum padded short
/// frames with: a frame of exactly the minimum whose bytes leave `want`
/// (its segment's bytes) only for silence to its end is padded there.
/// `wants` are the segments' bytes, `cuts` where each segment's bytes are.
pub fn unpad(
    v: &Variant,
    st: &PeerState,
    cuts: &[(usize, usize)],
    wants: &[Vec<u8>],
) -> (PeerState, Padding) {
    let min = v.min_frame_ms() as usize * 8 * v.format.bytes_per_tick();
    let silence = v.format.silence();
    // A padded frame may end in a sample short of a tick.
    let width = v.format.bytes_per_tick() / v.format.samples_per_tick();
    let mut padding = Padding::default();
    // Frames never straddle a clear: each is in one segment.
    let (mut k, mut pos, mut at) = (0, 0, 0);
    for &(len, _) in &st.frames {
        while k < cuts.len() && at >= cuts[k].1 {
            k += 1;
            pos = 0;
        }
        let m = &st.media[at..at + len];
        let rest = wants.get(k).map_or(&[][..], |w| &w[pos.min(w.len())..]);
        let same = m.iter().zip(rest).take_while(|(a, b)| a == b).count();
        let same = same - same % width;
        if same < len && len == min && m[same..].iter().all(|&b| b == silence) {
            padding.0.push((at + same, len - same));
            pos += same;
        } else {
            pos += len;
        }
        at += len;
    }
    let mut out = st.clone();
    if padding.0.is_empty() || min == 0 {
        return (out, Padding::default());
    }
    out.media.clear();
    let mut last = 0;
    for &(pos, len) in &padding.0 {
        out.media.extend(&st.media[last..pos]);
        last = pos + len;
    }
    out.media.extend(&st.media[last..]);
    for m in &mut out.marks {
        m.1 = padding.unpadded(m.1);
    }
    for c in &mut out.clears {
        c.received = padding.unpadded(c.received);
    }
    (out, padding)
}

/// The pipeline's running time, sampled every millisecond.
pub type Clock = Arc<Mutex<Vec<(Instant, u64)>>>;

/// With `sync=true` each buffer is rendered at its running time, less
/// `render-delay` (a frame and the resampler's delay) and BaseSink's
/// `processing-deadline` (20 ms): no frame reaches the peer before the
/// running time of the buffer its first sample came in (at most 50 ms
/// before it) less those (README "Pacing"), and 10 ms.
/// `raw` is what the peer got, `cuts` where each segment's bytes are in
/// it; the running time when a frame arrived is the first sample after (an
/// upper bound: a pause only loosens it).
pub fn check_on_time(
    script: &Script,
    raw: &PeerState,
    cuts: &[(usize, usize)],
    padding: &Padding,
    clock: &Clock,
    ctx: &str,
) {
    let clock = clock.lock().unwrap().clone();
    let w = raw.width;
    let ahead = (script.variant.frame_ms() as u64 + 3 + 20 + 50 + 10) * 1_000_000;
    let mut at = 0;
    for &(len, arrived) in &raw.frames {
        let b = at;
        at += len;
        let Some(k) = cuts.iter().position(|c| c.0 <= b && b < c.1) else {
            continue;
        };
        let (seg, from) = (&script.segments[k], cuts[k].0);
        if !seg.cut_known {
            continue;
        }
        let ticks = (padding.unpadded(b) - padding.unpadded(from)) / w;
        let t = seg.running_time(ticks as f64);
        let Some(&(_, now)) = clock.iter().find(|c| c.0 >= arrived) else {
            continue;
        };
        assert!(
            now + ahead >= t,
            "{ctx}: the frame of running time {t} at byte {b} arrived at {now}"
        );
    }
}
