//! Design of the resamplers' filters: Kaiser-windowed sinc low-passes,
//! computed once per process in f64 and stored as f32 polyphase branches.
//! Running them is `fir.rs`'s; which stage uses which is the resamplers'.

use std::sync::LazyLock;

/// Modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let half = x / 2.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while term > sum * 1e-17 {
        term *= (half / k) * (half / k);
        sum += term;
        k += 1.0;
    }
    sum
}

/// Kaiser-windowed sinc low-pass with `taps` coefficients (odd), cutoff as a
/// fraction of the sample rate, normalised to unit DC gain.
fn kaiser_lowpass(taps: usize, cutoff: f64, beta: f64) -> Vec<f64> {
    assert!(taps % 2 == 1);
    let centre = (taps - 1) as f64 / 2.0;
    let norm = bessel_i0(beta);
    let mut h: Vec<f64> = (0..taps)
        .map(|n| {
            let t = n as f64 - centre;
            let x = 2.0 * cutoff * t;
            let sinc = if t == 0.0 {
                1.0
            } else {
                (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
            };
            let r = t / centre;
            let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / norm;
            2.0 * cutoff * sinc * window
        })
        .collect();
    let sum: f64 = h.iter().sum();
    h.iter_mut().for_each(|v| *v /= sum);
    h
}

/// A half-band filter split into its two polyphase branches: the branch of
/// the centre tap is a pure delay, the other one a symmetric FIR.
pub(super) struct Halfband {
    /// Non-zero taps of the FIR branch (2K of a (4K−1)-tap half-band),
    /// normalised to unit sum.
    pub(super) branch: Vec<f32>,
}

impl Halfband {
    fn design(taps: usize, beta: f64) -> Self {
        assert!(taps % 4 == 3, "half-band length must be 4K-1");
        let h = kaiser_lowpass(taps, 0.25, beta);
        let centre = (taps - 1) / 2;
        // Taps at odd distances from the centre; the others are zero.
        let odd: Vec<f64> = (0..taps)
            .filter(|n| (centre + n) % 2 == 1)
            .map(|n| h[n])
            .collect();
        let sum: f64 = odd.iter().sum();
        Halfband {
            branch: odd.iter().map(|v| (v / sum) as f32).collect(),
        }
    }

    /// Delay of the centre branch in low-rate samples: K.
    pub(super) fn centre_delay(&self) -> usize {
        self.branch.len() / 2
    }
}

/// 83 taps, β = 9: ±0.0003 dB to 3.4 kHz, ≤ −90 dB from 4.6 kHz at 16 kHz.
pub(super) static HALFBAND_16K: LazyLock<Halfband> = LazyLock::new(|| Halfband::design(83, 9.0));
/// 23 taps, β = 9.5: ±0.0001 dB to 3.4 kHz, ≤ −96 dB from 19.4 kHz at 48 kHz
/// (what would fold into 0–4.6 kHz at 24 kHz).
pub(super) static HALFBAND_48K: LazyLock<Halfband> = LazyLock::new(|| Halfband::design(23, 9.5));

/// Taps of the 24 kHz → 8 kHz filter.
pub(super) const THIRD_TAPS: usize = 121;
/// Taps per polyphase branch of it (zero-padded at the front to 3 × 41).
pub(super) const THIRD_BRANCH: usize = THIRD_TAPS.div_ceil(3);

/// 121 taps, β = 9.2, cutoff 4 kHz at 24 kHz (≤ −92 dB from 4.6 kHz), as
/// three polyphase branches: `[k]` holds the taps 3j + k of the padded filter.
pub(super) static THIRDBAND_24K: LazyLock<[Vec<f32>; 3]> = LazyLock::new(|| {
    let h = kaiser_lowpass(THIRD_TAPS, 4000.0 / 24000.0, 9.2);
    let pad = 3 * THIRD_BRANCH - THIRD_TAPS;
    let padded: Vec<f32> = std::iter::repeat_n(0.0, pad)
        .chain(h.iter().map(|&v| v as f32))
        .collect();
    std::array::from_fn(|k| padded.iter().skip(k).step_by(3).copied().collect())
});

/// A low-pass for resampling between `from` and `to` Hz through the rate
/// `from · up`: cutoff at half the lower rate, flat (±0.01 dB) to 85 % of
/// it and at least 95 dB down from 115 % (the 8 kHz bar, 3.4 / 4.6 kHz,
/// scaled to the band). The length is Kaiser's estimate, rounded up so the
/// delay is a whole number of samples at both rates. Gain `up`.
pub(super) fn rational_lowpass(from: u32, to: u32, up: usize, down: usize) -> Vec<f32> {
    let proto = from as f64 * up as f64;
    let band = from.min(to) as f64 / 2.0;
    let half = rational_half_length(from, to, up, down);
    let beta = 0.1102 * (RATIONAL_ATTENUATION - 8.7);
    kaiser_lowpass(2 * half + 1, band / proto, beta)
        .iter()
        .map(|&v| (v * up as f64) as f32)
        .collect()
}

/// Stop-band attenuation [`rational_lowpass`] is designed for, in dB.
const RATIONAL_ATTENUATION: f64 = 100.0;

/// Half the length of [`rational_lowpass`] (its delay at `from · up`).
pub(super) fn rational_half_length(from: u32, to: u32, up: usize, down: usize) -> usize {
    let proto = from as f64 * up as f64;
    let band = from.min(to) as f64 / 2.0;
    let transition = 2.0 * std::f64::consts::PI * 0.3 * band / proto;
    let estimate = ((RATIONAL_ATTENUATION - 7.95) / (2.285 * transition)).ceil() as usize;
    estimate.div_ceil(2).div_ceil(up * down) * up * down
}
