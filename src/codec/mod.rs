//! Pure DSP, no GStreamer: G.711 μ-law and the resamplers between 8 kHz
//! telephone audio and pipeline rates.

pub mod g711;
pub mod resample;

pub use resample::{Downsampler, Upsampler};
