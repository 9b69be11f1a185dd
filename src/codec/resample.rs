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
//!   for 16 kHz, a 121-tap FIR decimating by 3 for 24 kHz, and for 48 kHz a short
//!   23-tap half-band to 24 kHz followed by the 24 kHz stage.
//!
//! The filters are linear-phase, so the delay is a whole number of samples and
//! the same at every frequency: see [`Upsampler::DELAY`] and
//! [`Downsampler::delay_ns`]. State carries across calls: feeding a signal in
//! pieces of any size gives exactly what feeding it in one piece gives.
//! Arithmetic is `f32`, far below the 16-bit quantisation floor.

use std::sync::LazyLock;

/// Supported input rates of [`Downsampler`].
pub const DOWNSAMPLER_RATES: [u32; 4] = [8000, 16000, 24000, 48000];

/// Lanes of the dot-product accumulators; every filter is padded to a multiple.
const LANES: usize = 8;

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

/// Pads `taps` with leading zeros to a multiple of [`LANES`].
fn padded(taps: impl ExactSizeIterator<Item = f64>) -> Vec<f32> {
    let pad = (LANES - taps.len() % LANES) % LANES;
    std::iter::repeat_n(0.0, pad)
        .chain(taps.map(|v| v as f32))
        .collect()
}

/// A half-band filter split into its two polyphase branches: the branch of
/// the centre tap is a pure delay, the other one a symmetric FIR `branch`.
struct Halfband {
    /// Non-zero taps of the FIR branch, normalised to unit sum, zero-padded at
    /// the front to a multiple of [`LANES`].
    branch: Vec<f32>,
    /// Number of real (unpadded) branch taps, 2K for a (4K−1)-tap half-band.
    len: usize,
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
        let len = odd.len();
        Halfband {
            branch: padded(odd.into_iter().map(|v| v / sum)),
            len,
        }
    }

    /// Delay of the centre branch in input (low-rate) samples: K.
    fn centre_delay(&self) -> usize {
        self.len / 2
    }
}

/// 83 taps, β = 9: ±0.0003 dB to 3.4 kHz, ≤ −90 dB from 4.6 kHz at 16 kHz.
static HALFBAND_16K: LazyLock<Halfband> = LazyLock::new(|| Halfband::design(83, 9.0));
/// 23 taps, β = 9.5: ±0.0001 dB to 3.4 kHz, ≤ −96 dB from 19.4 kHz at 48 kHz
/// (what would fold into 0–4.6 kHz at 24 kHz).
static HALFBAND_48K: LazyLock<Halfband> = LazyLock::new(|| Halfband::design(23, 9.5));
/// 121 taps, β = 9.2, cutoff 4 kHz at 24 kHz: ≤ −92 dB from 4.6 kHz.
static THIRDBAND_24K: LazyLock<Vec<f32>> =
    LazyLock::new(|| padded(kaiser_lowpass(121, 4000.0 / 24000.0, 9.2).into_iter()));
const THIRDBAND_24K_TAPS: usize = 121;

/// Dot product of two equally long slices whose length is a multiple of
/// [`LANES`], with independent accumulators so the loop vectorises.
#[inline]
fn dot(taps: &[f32], window: &[f32]) -> f32 {
    debug_assert_eq!(taps.len(), window.len());
    let mut acc = [0f32; LANES];
    for (t, w) in taps.chunks_exact(LANES).zip(window.chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += t[i] * w[i];
        }
    }
    acc.iter().sum()
}

#[inline]
fn to_i16(v: f32) -> i16 {
    // `as` saturates; adding ±0.5 rounds half away from zero.
    (v + 0.5f32.copysign(v)) as i16
}

/// A sliding window of the most recent input samples as `f32`.
///
/// `buf` holds `history` samples of past input followed by the new ones; after
/// a block is processed, the last `history` samples move to the front. It
/// never reallocates once it has seen the largest block.
struct History {
    buf: Vec<f32>,
    history: usize,
}

impl History {
    fn new(history: usize) -> Self {
        History {
            buf: vec![0.0; history],
            history,
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.buf.resize(self.history, 0.0);
    }

    /// Keeps everything from `from` on for the next block.
    fn consume(&mut self, from: usize) {
        self.buf.copy_within(from.., 0);
        self.buf.truncate(self.buf.len() - from);
    }
}

/// 8 kHz → 16 kHz half-band interpolator.
pub struct Upsampler {
    hist: History,
}

impl Default for Upsampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Upsampler {
    /// Delay in output (16 kHz) samples: input sample `k` comes out at output
    /// index `2k + DELAY`. 41 samples = 2.5625 ms.
    pub const DELAY: usize = 41;

    pub fn new() -> Self {
        let hb = &*HALFBAND_16K;
        debug_assert_eq!(2 * hb.centre_delay() - 1, Self::DELAY);
        Upsampler {
            hist: History::new(hb.branch.len() - 1),
        }
    }

    /// Delay in nanoseconds.
    pub const fn delay_ns() -> u64 {
        Self::DELAY as u64 * 1_000_000_000 / 16000
    }

    /// Converts `input` (8 kHz) into `output` (16 kHz), which must be exactly
    /// twice as long.
    pub fn process(&mut self, input: &[i16], output: &mut [i16]) {
        assert_eq!(output.len(), 2 * input.len(), "upsampler: output length");
        let hb = &*HALFBAND_16K;
        let n = hb.branch.len();
        let k = hb.centre_delay();
        let start = self.hist.buf.len() + 1 - n;
        self.hist.buf.extend(input.iter().map(|&s| s as f32));
        let buf = &self.hist.buf;
        for (m, pair) in output.chunks_exact_mut(2).enumerate() {
            // The window ends at the newest input sample x[m].
            let window = &buf[start + m..start + m + n];
            pair[0] = to_i16(dot(&hb.branch, window));
            pair[1] = window[n - k] as i16; // x[m-(K-1)]
        }
        let len = self.hist.buf.len();
        self.hist.consume(len - self.hist.history);
    }

    /// Forgets all past input, as if newly created.
    pub fn reset(&mut self) {
        self.hist.reset();
    }
}

/// A half-band 2:1 decimator, as a stage of [`Downsampler`].
struct HalfbandDecimator {
    hb: &'static Halfband,
    /// Even-indexed input samples, the FIR branch's input.
    even: History,
    /// Odd-indexed input samples, the delay branch's input.
    odd: History,
    /// An input sample waiting for its partner.
    carry: Option<f32>,
}

impl HalfbandDecimator {
    fn new(hb: &'static Halfband) -> Self {
        HalfbandDecimator {
            hb,
            even: History::new(hb.branch.len() - 1),
            odd: History::new(hb.centre_delay()),
            carry: None,
        }
    }

    fn reset(&mut self) {
        self.even.reset();
        self.odd.reset();
        self.carry = None;
    }

    /// Input-rate samples of delay.
    fn delay(&self) -> usize {
        2 * self.hb.centre_delay() - 1
    }

    fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let mut input = input;
        if let Some(first) = self.carry.take() {
            match input.split_first() {
                Some((&second, rest)) => {
                    self.even.buf.push(first);
                    self.odd.buf.push(second);
                    input = rest;
                }
                None => {
                    self.carry = Some(first);
                    return;
                }
            }
        }
        let pairs = input.chunks_exact(2);
        if let [last] = pairs.remainder() {
            self.carry = Some(*last);
        }
        for pair in pairs {
            self.even.buf.push(pair[0]);
            self.odd.buf.push(pair[1]);
        }
        let n = self.hb.branch.len();
        let k = self.hb.centre_delay();
        let outputs = self.even.buf.len() + 1 - n;
        out.reserve(outputs);
        for m in 0..outputs {
            let fir = dot(&self.hb.branch, &self.even.buf[m..m + n]);
            // x[2m-(2K-1)] is the odd sample K pairs back.
            let centre = self.odd.buf[m];
            out.push(0.5 * (fir + centre));
        }
        debug_assert_eq!(self.odd.buf.len(), outputs + k);
        self.even.consume(outputs);
        self.odd.consume(outputs);
    }
}

/// A plain FIR decimating by 3, as a stage of [`Downsampler`].
struct ThirdDecimator {
    hist: History,
    /// Input samples still to skip before the next output.
    skip: usize,
}

impl ThirdDecimator {
    fn new() -> Self {
        ThirdDecimator {
            hist: History::new(THIRDBAND_24K.len() - 1),
            skip: 0,
        }
    }

    fn reset(&mut self) {
        self.hist.reset();
        self.skip = 0;
    }

    fn delay(&self) -> usize {
        (THIRDBAND_24K_TAPS - 1) / 2
    }

    fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let taps = &*THIRDBAND_24K;
        let n = taps.len();
        self.hist.buf.extend_from_slice(input);
        // An output is due whenever the window's newest sample is at an index
        // ≡ 0 (mod 3) of the input stream.
        let mut end = n - 1 + self.skip; // index of the newest sample in the window
        while end < self.hist.buf.len() {
            out.push(dot(taps, &self.hist.buf[end + 1 - n..=end]));
            end += 3;
        }
        let consumed = end + 1 - n; // first window start not yet used
        let keep_from = consumed.min(self.hist.buf.len() + 1 - n);
        self.skip = consumed - keep_from;
        self.hist.consume(keep_from);
    }
}

enum Stages {
    Passthrough,
    Halfband(HalfbandDecimator),
    Third(ThirdDecimator),
    HalfbandThird(HalfbandDecimator, ThirdDecimator, Vec<f32>),
}

/// Any supported rate → 8 kHz, anti-aliased.
pub struct Downsampler {
    rate: u32,
    stages: Stages,
    scratch: Vec<f32>,
    out: Vec<f32>,
}

impl Downsampler {
    /// A downsampler from `rate` (one of [`DOWNSAMPLER_RATES`]) to 8 kHz.
    pub fn new(rate: u32) -> Option<Self> {
        let stages = match rate {
            8000 => Stages::Passthrough,
            16000 => Stages::Halfband(HalfbandDecimator::new(&HALFBAND_16K)),
            24000 => Stages::Third(ThirdDecimator::new()),
            48000 => Stages::HalfbandThird(
                HalfbandDecimator::new(&HALFBAND_48K),
                ThirdDecimator::new(),
                Vec::new(),
            ),
            _ => return None,
        };
        Some(Downsampler {
            rate,
            stages,
            scratch: Vec::new(),
            out: Vec::new(),
        })
    }

    pub fn input_rate(&self) -> u32 {
        self.rate
    }

    /// Delay in nanoseconds: input at time t comes out at t + delay.
    pub fn delay_ns(&self) -> u64 {
        let ns = |samples: usize, rate: u64| samples as u64 * 1_000_000_000 / rate;
        match &self.stages {
            Stages::Passthrough => 0,
            Stages::Halfband(hb) => ns(hb.delay(), 16000),
            Stages::Third(t) => ns(t.delay(), 24000),
            Stages::HalfbandThird(hb, t, _) => ns(hb.delay(), 48000) + ns(t.delay(), 24000),
        }
    }

    /// Converts `input` and appends the 8 kHz result to `output`. Any number
    /// of samples may be given; what does not make a whole output sample yet
    /// is kept for the next call.
    pub fn process(&mut self, input: &[i16], output: &mut Vec<i16>) {
        if let Stages::Passthrough = self.stages {
            output.extend_from_slice(input);
            return;
        }
        self.scratch.clear();
        self.scratch.extend(input.iter().map(|&s| s as f32));
        self.out.clear();
        match &mut self.stages {
            Stages::Passthrough => unreachable!(),
            Stages::Halfband(hb) => hb.process(&self.scratch, &mut self.out),
            Stages::Third(t) => t.process(&self.scratch, &mut self.out),
            Stages::HalfbandThird(hb, t, mid) => {
                mid.clear();
                hb.process(&self.scratch, mid);
                t.process(mid, &mut self.out);
            }
        }
        output.extend(self.out.iter().map(|&v| to_i16(v)));
    }

    /// Forgets all past input, as if newly created.
    pub fn reset(&mut self) {
        match &mut self.stages {
            Stages::Passthrough => {}
            Stages::Halfband(hb) => hb.reset(),
            Stages::Third(t) => t.reset(),
            Stages::HalfbandThird(hb, t, _) => {
                hb.reset();
                t.reset();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn tone(freq: f64, rate: f64, amp: f64, len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| (amp * (2.0 * PI * freq * n as f64 / rate).sin()).round() as i16)
            .collect()
    }

    /// Amplitude of the component at `freq` in `x`, which must hold a whole
    /// number of its periods (coherent sampling: no leakage between bins).
    fn amplitude(x: &[i16], freq: f64, rate: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &v) in x.iter().enumerate() {
            let ph = 2.0 * PI * freq * n as f64 / rate;
            re += v as f64 * ph.cos();
            im += v as f64 * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.log10()
    }

    fn upsample(x: &[i16]) -> Vec<i16> {
        let mut up = Upsampler::new();
        let mut out = vec![0; 2 * x.len()];
        up.process(x, &mut out);
        out
    }

    fn downsample(rate: u32, x: &[i16]) -> Vec<i16> {
        let mut down = Downsampler::new(rate).unwrap();
        let mut out = Vec::new();
        down.process(x, &mut out);
        out
    }

    const AMP: f64 = 16000.0;

    #[test]
    fn upsampler_passband_is_flat_to_3400_hz() {
        for f in [100.0, 300.0, 1000.0, 2000.0, 3000.0, 3400.0] {
            let out = upsample(&tone(f, 8000.0, AMP, 16000));
            // Skip the start-up transient; one second at 16 kHz is coherent.
            let gain = db(amplitude(&out[8000..24000], f, 16000.0) / AMP);
            assert!(gain.abs() < 0.01, "{f} Hz: {gain} dB");
        }
    }

    #[test]
    fn upsampler_images_are_80_db_down() {
        for f in [300.0, 1000.0, 2000.0, 3000.0, 3400.0] {
            let out = upsample(&tone(f, 8000.0, AMP, 16000));
            let image = amplitude(&out[8000..24000], 8000.0 - f, 16000.0);
            let level = db(image / AMP);
            assert!(
                level < -80.0,
                "{f} Hz: image at {} Hz is {level} dB",
                8000.0 - f
            );
        }
    }

    #[test]
    fn upsampler_keeps_input_samples_and_documents_its_delay() {
        let x = tone(1234.0, 8000.0, AMP, 400);
        let y = upsample(&x);
        for k in 0..(400 - Upsampler::DELAY / 2 - 1) {
            assert_eq!(y[2 * k + Upsampler::DELAY], x[k], "sample {k}");
        }
        // The impulse response peaks at the delay.
        let mut impulse = vec![0i16; 64];
        impulse[0] = 10000;
        let y = upsample(&impulse);
        let peak = (0..y.len()).max_by_key(|&i| y[i]).unwrap();
        assert_eq!(peak, Upsampler::DELAY);
        assert_eq!(Upsampler::delay_ns(), 2_562_500);
    }

    #[test]
    fn upsampler_is_stateful_across_chunks() {
        let x = tone(777.0, 8000.0, AMP, 8000);
        let whole = upsample(&x);
        let mut up = Upsampler::new();
        let mut pieces = Vec::new();
        for chunk in x.chunks(160) {
            let mut out = vec![0; 2 * chunk.len()];
            up.process(chunk, &mut out);
            pieces.extend(out);
        }
        assert_eq!(whole, pieces);
        // Odd sizes too.
        let mut up = Upsampler::new();
        let mut pieces = Vec::new();
        let mut rest = &x[..];
        for size in [1usize, 7, 33, 160, 1, 400].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at((*size).min(rest.len()));
            let mut out = vec![0; 2 * chunk.len()];
            up.process(chunk, &mut out);
            pieces.extend(out);
            rest = tail;
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn downsampler_passband_is_flat_to_3400_hz() {
        for rate in [16000, 24000, 48000] {
            for f in [100.0, 1000.0, 2000.0, 3000.0, 3400.0] {
                let out = downsample(rate, &tone(f, rate as f64, AMP, 2 * rate as usize));
                let gain = db(amplitude(&out[4000..12000], f, 8000.0) / AMP);
                assert!(gain.abs() < 0.01, "{rate} Hz input, {f} Hz: {gain} dB");
            }
        }
    }

    #[test]
    fn downsampler_rejects_what_would_alias_below_3400_hz() {
        for rate in [16000u32, 24000, 48000] {
            let nyquist = rate as f64 / 2.0;
            let mut f = 4600.0;
            while f < nyquist {
                let out = downsample(rate, &tone(f, rate as f64, AMP, 2 * rate as usize));
                // Where the tone lands after decimation to 8 kHz.
                let folded = {
                    let r = f % 8000.0;
                    if r > 4000.0 { 8000.0 - r } else { r }
                };
                let level = db(amplitude(&out[4000..12000], folded, 8000.0) / AMP);
                assert!(
                    level < -80.0,
                    "{rate} Hz input, {f} Hz folds to {folded} Hz at {level} dB"
                );
                f += 700.0;
            }
        }
    }

    #[test]
    fn downsampler_is_stateful_across_chunks() {
        for rate in DOWNSAMPLER_RATES {
            let x = tone(555.0, rate as f64, AMP, rate as usize);
            let whole = downsample(rate, &x);
            assert_eq!(whole.len(), 8000);
            let mut down = Downsampler::new(rate).unwrap();
            let mut pieces = Vec::new();
            let mut rest = &x[..];
            for size in [1usize, 7, 320, 2, 5, 961].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                down.process(chunk, &mut pieces);
                rest = tail;
            }
            assert_eq!(whole, pieces, "{rate} Hz");
        }
    }

    #[test]
    fn downsampler_delay_is_as_documented() {
        for rate in [16000u32, 24000, 48000] {
            let mut down = Downsampler::new(rate).unwrap();
            // An impulse at input time 0, output peak must sit at the delay.
            let mut x = vec![0i16; rate as usize / 50];
            x[0] = 20000;
            let mut y = Vec::new();
            down.process(&x, &mut y);
            let peak = (0..y.len()).max_by_key(|&i| y[i]).unwrap();
            let delay_out = down.delay_ns() as f64 * 8000.0 / 1e9;
            assert!(
                (peak as f64 - delay_out).abs() <= 0.5,
                "{rate}: peak at {peak}, delay {delay_out} samples"
            );
        }
    }

    #[test]
    fn downsampler_passthrough_and_unsupported() {
        assert!(Downsampler::new(44100).is_none());
        let x = tone(440.0, 8000.0, AMP, 100);
        assert_eq!(downsample(8000, &x), x);
    }

    #[test]
    fn reset_forgets_history() {
        let x = tone(900.0, 8000.0, AMP, 320);
        let mut up = Upsampler::new();
        let mut a = vec![0; 640];
        up.process(&x, &mut a);
        up.reset();
        let mut b = vec![0; 640];
        up.process(&x, &mut b);
        assert_eq!(a, b);
        let mut down = Downsampler::new(48000).unwrap();
        let y = tone(900.0, 48000.0, AMP, 1001);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        down.process(&y, &mut a);
        down.reset();
        down.process(&y, &mut b);
        assert_eq!(a, b);
    }
}
