//! Stateful, anti-aliased sample-rate conversion between telephone audio
//! (8 kHz) and the rates a pipeline works at.
//!
//! Every filter is a Kaiser-windowed sinc low-pass at 4 kHz, designed once per
//! process: flat within ±0.001 dB up to 3.4 kHz and at least 90 dB down from
//! 4.6 kHz, so nothing that would alias (or image) below 3.4 kHz survives.
//!
//! * [`Upsampler`], 8 kHz → 16 kHz: an 83-tap half-band interpolator. Every
//!   second output sample is an input sample, unchanged; the others come from a
//!   42-tap polyphase branch.
//! * [`Downsampler`], 16/24/48 kHz → 8 kHz: the same half-band as a decimator
//!   for 16 kHz, a 121-tap FIR decimating by 3 (as three 41-tap polyphase
//!   branches) for 24 kHz, and for 48 kHz a short 23-tap half-band to 24 kHz
//!   followed by the 24 kHz stage.
//!
//! The filters are linear-phase, so the delay is a whole number of samples and
//! the same at every frequency: see [`Upsampler::DELAY`] and
//! [`Downsampler::delay_ns`]. State carries across calls: feeding a signal in
//! pieces of any size gives exactly what feeding it in one piece gives.
//!
//! Speed: every branch is a plain FIR over a contiguous stream, computed for
//! a block of outputs at once (`fir_add_impl`): the inner loop runs across
//! outputs, so it vectorises without horizontal sums. On x86-64 CPUs with
//! AVX2 and FMA, a build of each `process` for them is picked at run time.
//! A resampler keeps only its filters' last samples; each block is worked
//! in the thread's scratch buffers (`codec::scratch`), which stay in cache
//! from one call's chunk to the next. Nothing allocates once they have
//! grown to the block size.
//! Arithmetic is `f32`, far below the 16-bit quantisation floor.
//!
//! * [`Resampler`], any of 8/16/24/48 kHz to any other: the two above where
//!   they fit, otherwise (wideband L16 calls: 8 → 24, 16 ↔ 24, 48 → 16/24
//!   kHz) a polyphase FIR designed per pair to the same bar scaled to the
//!   band (flat to 85 % of half the lower rate, ≥ 95 dB down from 115 %).
//!
//! Where things live: the filters' design in `filter_design.rs`, the FIR
//! kernels, their AVX2 + FMA builds and the sample buffers they run over in
//! `fir.rs`, then [`Upsampler`] and [`Downsampler`] (with its decimating
//! stages) in files of their own.

mod filter_design;
mod fir;

mod downsampler;
mod rational;
mod upsampler;

pub use downsampler::Downsampler;
pub use rational::{RATES, Resampler, delay_ns};
pub use upsampler::Upsampler;

/// Supported input rates of [`Downsampler`].
pub const DOWNSAMPLER_RATES: [u32; 4] = [8000, 16000, 24000, 48000];

/// Test signals and their measurement, for the tests of both directions.
#[cfg(test)]
mod test_signals {
    use std::f64::consts::PI;

    pub const AMP: f64 = 16000.0;

    pub fn tone(freq: f64, rate: f64, amp: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| (amp * (2.0 * PI * freq * n as f64 / rate).sin()).round() as i16)
            .collect()
    }

    /// Amplitude of the component at `freq` in `x`, which must hold a whole
    /// number of its periods (coherent sampling: no leakage between bins).
    pub fn amplitude(x: &[i16], freq: f64, rate: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &v) in x.iter().enumerate() {
            let ph = 2.0 * PI * freq * n as f64 / rate;
            re += v as f64 * ph.cos();
            im += v as f64 * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    pub fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }
}
