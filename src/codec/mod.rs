//! Pure DSP, no GStreamer: G.711 μ-law, the resamplers between 8 kHz
//! telephone audio and pipeline rates, and packet loss concealment.

pub mod g711;
pub mod plc;
pub mod resample;

pub use plc::Concealer;
pub use resample::{Downsampler, Upsampler};
