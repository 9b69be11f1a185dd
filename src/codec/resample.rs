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
//! Nothing allocates once the buffers have grown to the block size.
//! Arithmetic is `f32`, far below the 16-bit quantisation floor.

use std::sync::LazyLock;

/// Supported input rates of [`Downsampler`].
pub const DOWNSAMPLER_RATES: [u32; 4] = [8000, 16000, 24000, 48000];

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
struct Halfband {
    /// Non-zero taps of the FIR branch (2K of a (4K−1)-tap half-band),
    /// normalised to unit sum.
    branch: Vec<f32>,
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
    fn centre_delay(&self) -> usize {
        self.branch.len() / 2
    }
}

/// 83 taps, β = 9: ±0.0003 dB to 3.4 kHz, ≤ −90 dB from 4.6 kHz at 16 kHz.
static HALFBAND_16K: LazyLock<Halfband> = LazyLock::new(|| Halfband::design(83, 9.0));
/// 23 taps, β = 9.5: ±0.0001 dB to 3.4 kHz, ≤ −96 dB from 19.4 kHz at 48 kHz
/// (what would fold into 0–4.6 kHz at 24 kHz).
static HALFBAND_48K: LazyLock<Halfband> = LazyLock::new(|| Halfband::design(23, 9.5));

/// Taps of the 24 kHz → 8 kHz filter.
const THIRD_TAPS: usize = 121;
/// Taps per polyphase branch of it (zero-padded at the front to 3 × 41).
const THIRD_BRANCH: usize = THIRD_TAPS.div_ceil(3);

/// 121 taps, β = 9.2, cutoff 4 kHz at 24 kHz (≤ −92 dB from 4.6 kHz), as
/// three polyphase branches: `[k]` holds the taps 3j + k of the padded filter.
static THIRDBAND_24K: LazyLock<[Vec<f32>; 3]> = LazyLock::new(|| {
    let h = kaiser_lowpass(THIRD_TAPS, 4000.0 / 24000.0, 9.2);
    let pad = 3 * THIRD_BRANCH - THIRD_TAPS;
    let padded: Vec<f32> = std::iter::repeat_n(0.0, pad)
        .chain(h.iter().map(|&v| v as f32))
        .collect();
    std::array::from_fn(|k| padded.iter().skip(k).step_by(3).copied().collect())
});

/// Outputs computed together, held in registers across the taps: 64 keep
/// eight AVX accumulators busy (enough to hide the FMA latency); 32 and 8
/// take the rest.
const BLOCK: usize = 64;
const MID_BLOCK: usize = 32;
const SMALL_BLOCK: usize = 8;

/// Adds the FIR over `x` to the `N` outputs of `out`, starting at `x[0]`.
#[inline(always)]
fn fir_block<const N: usize, const FMA: bool>(taps: &[f32], x: &[f32], out: &mut [f32]) {
    let mut acc: [f32; N] = (&*out).try_into().unwrap();
    for (k, &h) in taps.iter().enumerate() {
        let xs: &[f32; N] = x[k..k + N].try_into().unwrap();
        for j in 0..N {
            acc[j] = if FMA {
                h.mul_add(xs[j], acc[j])
            } else {
                acc[j] + h * xs[j]
            };
        }
    }
    out.copy_from_slice(&acc);
}

/// `out[m] += Σ_k taps[k] · x[m + k]`, for every `m` of `out`;
/// `x` holds `out.len() + taps.len() − 1` samples.
#[inline(always)]
fn fir_add_impl<const FMA: bool>(taps: &[f32], x: &[f32], out: &mut [f32]) {
    debug_assert_eq!(x.len(), out.len() + taps.len() - 1);
    let mut base = 0;
    while out.len() - base >= BLOCK {
        fir_block::<BLOCK, FMA>(taps, &x[base..], &mut out[base..base + BLOCK]);
        base += BLOCK;
    }
    while out.len() - base >= MID_BLOCK {
        fir_block::<MID_BLOCK, FMA>(taps, &x[base..], &mut out[base..base + MID_BLOCK]);
        base += MID_BLOCK;
    }
    while out.len() - base >= SMALL_BLOCK {
        fir_block::<SMALL_BLOCK, FMA>(taps, &x[base..], &mut out[base..base + SMALL_BLOCK]);
        base += SMALL_BLOCK;
    }
    for m in base..out.len() {
        let window = &x[m..m + taps.len()];
        out[m] =
            taps.iter().zip(window).fold(
                out[m],
                |acc, (&h, &v)| {
                    if FMA { h.mul_add(v, acc) } else { acc + h * v }
                },
            );
    }
}

/// Whether this CPU runs the AVX2 + FMA builds of the hot loops.
#[inline(always)]
fn have_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name` calling `$imp::<FMA>` (an `#[inline(always)]` method), in
/// an AVX2 + FMA build when the CPU has them and a baseline build otherwise:
/// everything inlined into it (conversions, the FIR) is compiled for the CPU.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident(&mut self $(, $arg:ident: $ty:ty)*) => $imp:ident, $fast:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $fast(&mut self $(, $arg: $ty)*) {
            self.$imp::<true>($($arg),*)
        }

        $(#[$meta])*
        $vis fn $name(&mut self $(, $arg: $ty)*) {
            #[cfg(target_arch = "x86_64")]
            if have_avx2_fma() {
                // SAFETY: the CPU has the features the fast build is for.
                return unsafe { self.$fast($($arg),*) };
            }
            self.$imp::<false>($($arg),*)
        }
    };
}

/// Rounds to the nearest integer (ties to even) and saturates to i16, in
/// operations that vectorise on any x86-64: adding and removing 1.5 · 2^23
/// leaves the rounded value for any |v| < 2^22.
#[inline(always)]
fn to_i16(v: f32) -> i16 {
    const MAGIC: f32 = 12_582_912.0;
    // max/min also turn a NaN into a number, so the conversion is in range.
    let clamped = v.max(i16::MIN as f32).min(i16::MAX as f32);
    let rounded = (clamped + MAGIC) - MAGIC;
    // SAFETY: `rounded` is finite and within i16, so within i32.
    unsafe { rounded.to_int_unchecked::<i32>() as i16 }
}

/// A sample the resamplers take as input.
trait Sample: Copy {
    fn f32(self) -> f32;
}

impl Sample for i16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self as f32
    }
}

impl Sample for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

/// Appends `input` to `dest` as f32, without per-sample capacity checks.
#[inline(always)]
fn append<T: Sample>(dest: &mut Vec<f32>, input: &[T]) {
    let start = dest.len();
    dest.resize(start + input.len(), 0.0);
    for (d, &s) in dest[start..].iter_mut().zip(input) {
        *d = s.f32();
    }
}

/// A stream's most recent samples: `history` past ones, then the new ones.
/// After a block is processed, the last `history` samples move to the front.
/// It never reallocates once it has seen the largest block.
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

    /// Keeps the last `history` samples for the next block.
    fn keep_history(&mut self) {
        let from = self.buf.len() - self.history;
        self.buf.copy_within(from.., 0);
        self.buf.truncate(self.history);
    }

    /// The new samples, with the history before them: what a FIR of
    /// `history + 1` taps needs for one output per new sample.
    fn window(&self) -> &[f32] {
        &self.buf
    }

    fn new_samples(&self) -> usize {
        self.buf.len() - self.history
    }
}

/// 8 kHz → 16 kHz half-band interpolator.
pub struct Upsampler {
    /// Input samples, with the FIR branch's history.
    hist: History,
    /// FIR branch outputs (scratch).
    fir: Vec<f32>,
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
            fir: Vec::new(),
        }
    }

    /// Delay in nanoseconds.
    pub const fn delay_ns() -> u64 {
        Self::DELAY as u64 * 1_000_000_000 / 16000
    }

    multiversion! {
        /// Converts `input` (8 kHz) into `output` (16 kHz), which must be
        /// exactly twice as long.
        pub fn process(&mut self, input: &[i16], output: &mut [i16]) => process_impl, process_avx2_fma
    }

    #[inline(always)]
    fn process_impl<const FMA: bool>(&mut self, input: &[i16], output: &mut [i16]) {
        assert_eq!(output.len(), 2 * input.len(), "upsampler: output length");
        let hb = &*HALFBAND_16K;
        let n = input.len();
        append(&mut self.hist.buf, input);
        self.fir.clear();
        self.fir.resize(n, 0.0);
        fir_add_impl::<FMA>(&hb.branch, self.hist.window(), &mut self.fir);
        // The window of output m ends at input m; its centre branch is the
        // input K−1 samples back, at this offset into the buffer.
        let centre = &self.hist.buf[hb.centre_delay()..hb.centre_delay() + n];
        let fir = &self.fir[..n];
        for m in 0..n {
            output[2 * m] = to_i16(fir[m]);
            output[2 * m + 1] = to_i16(centre[m]);
        }
        self.hist.keep_history();
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

    /// Appends one output per input pair to `out`.
    #[inline(always)]
    fn process<T: Sample, const FMA: bool>(&mut self, input: &[T], out: &mut Vec<f32>) {
        let mut input = input;
        if let Some(first) = self.carry.take() {
            match input.split_first() {
                Some((&second, rest)) => {
                    self.even.buf.push(first);
                    self.odd.buf.push(0.5 * second.f32());
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
            self.carry = Some(0.5 * last.f32());
        }
        let start = self.even.buf.len();
        self.even.buf.resize(start + pairs.len(), 0.0);
        self.odd.buf.resize(
            start - self.even.history + self.odd.history + pairs.len(),
            0.0,
        );
        let odd_start = self.odd.buf.len() - pairs.len();
        let evens = self.even.buf[start..].iter_mut();
        let odds = self.odd.buf[odd_start..].iter_mut();
        // Both branches have gain ½ (each is half the filter): it is applied
        // here, once per sample, rather than in a pass over the output.
        for ((e, o), pair) in evens.zip(odds).zip(pairs) {
            *e = 0.5 * pair[0].f32();
            *o = 0.5 * pair[1].f32();
        }
        let outputs = self.even.new_samples();
        let start = out.len();
        // The delay branch: x[2m−(2K−1)] is the odd sample K pairs back.
        out.extend_from_slice(&self.odd.buf[..outputs]);
        fir_add_impl::<FMA>(&self.hb.branch, self.even.window(), &mut out[start..]);
        self.even.keep_history();
        self.odd.keep_history();
    }
}

/// The 121-tap FIR decimating by 3, as three polyphase branches.
///
/// Output q uses the input up to x[3q]. Input arrives in groups
/// (x[3g−2], x[3g−1], x[3g]) whose members feed the three branches, so each
/// branch is a contiguous stream and one output is due per group.
struct ThirdDecimator {
    branches: [History; 3],
    /// Input samples waiting for the rest of their group; starts with the
    /// two zeros before x[0].
    carry: Vec<f32>,
}

impl ThirdDecimator {
    fn new() -> Self {
        ThirdDecimator {
            branches: std::array::from_fn(|_| History::new(THIRD_BRANCH - 1)),
            carry: vec![0.0; 2],
        }
    }

    fn reset(&mut self) {
        self.branches.iter_mut().for_each(History::reset);
        self.carry.clear();
        self.carry.resize(2, 0.0);
    }

    fn delay(&self) -> usize {
        (THIRD_TAPS - 1) / 2
    }

    #[inline(always)]
    fn process<T: Sample, const FMA: bool>(&mut self, input: &[T], out: &mut Vec<f32>) {
        let mut input = input;
        if !self.carry.is_empty() {
            let take = (3 - self.carry.len()).min(input.len());
            self.carry.extend(input[..take].iter().map(|s| s.f32()));
            input = &input[take..];
            if self.carry.len() < 3 {
                return;
            }
            for (b, &v) in self.branches.iter_mut().zip(&self.carry) {
                b.buf.push(v);
            }
            self.carry.clear();
        }
        let groups = input.chunks_exact(3);
        self.carry
            .extend(groups.remainder().iter().map(|s| s.f32()));
        let start = self.branches[0].buf.len();
        for b in &mut self.branches {
            b.buf.resize(start + groups.len(), 0.0);
        }
        let [b0, b1, b2] = &mut self.branches;
        let dests = b0.buf[start..]
            .iter_mut()
            .zip(&mut b1.buf[start..])
            .zip(&mut b2.buf[start..]);
        for (((d0, d1), d2), group) in dests.zip(groups) {
            *d0 = group[0].f32();
            *d1 = group[1].f32();
            *d2 = group[2].f32();
        }
        let outputs = self.branches[0].new_samples();
        let start = out.len();
        out.resize(start + outputs, 0.0);
        for (branch, taps) in self.branches.iter_mut().zip(THIRDBAND_24K.iter()) {
            fir_add_impl::<FMA>(taps, branch.window(), &mut out[start..]);
            branch.keep_history();
        }
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

    multiversion! {
        /// Converts `input` and appends the 8 kHz result to `output`. Any
        /// number of samples may be given; what does not make a whole output
        /// sample yet is kept for the next call.
        pub fn process(&mut self, input: &[i16], output: &mut Vec<i16>) => process_impl, process_avx2_fma
    }

    #[inline(always)]
    fn process_impl<const FMA: bool>(&mut self, input: &[i16], output: &mut Vec<i16>) {
        if let Stages::Passthrough = self.stages {
            output.extend_from_slice(input);
            return;
        }
        self.out.clear();
        match &mut self.stages {
            Stages::Passthrough => unreachable!(),
            Stages::Halfband(hb) => hb.process::<_, FMA>(input, &mut self.out),
            Stages::Third(t) => t.process::<_, FMA>(input, &mut self.out),
            Stages::HalfbandThird(hb, t, mid) => {
                mid.clear();
                hb.process::<_, FMA>(input, mid);
                t.process::<_, FMA>(mid.as_slice(), &mut self.out);
            }
        }
        let start = output.len();
        output.resize(start + self.out.len(), 0);
        for (o, &v) in output[start..].iter_mut().zip(&self.out) {
            *o = to_i16(v);
        }
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
