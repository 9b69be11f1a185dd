//! Pure DSP, no GStreamer: G.711 μ-law and A-law, L16, Opus packet
//! durations, the call's wire format, the resamplers between telephone audio and pipeline rates, and
//! packet loss concealment.

pub mod alaw;
pub mod format;
pub mod g711;
pub mod l16;
pub mod opus;
pub mod plc;
pub mod resample;
pub mod scratch;

pub use format::{Codec, G722_PADDING, Unsupported, WireFormat};
pub use l16::ByteOrder;
pub use plc::Concealer;
pub use resample::{Downsampler, Resampler, Upsampler};
