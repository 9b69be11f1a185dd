//! [`Downsampler`], any supported rate → 8 kHz: its decimating stages (a
//! half-band 2:1, a 3:1 polyphase FIR, or both for 48 kHz), and its tests.
//! The filters are designed in `filter_design.rs`, the FIRs run in `fir.rs`.

use super::filter_design::{
    HALFBAND_16K, HALFBAND_48K, Halfband, THIRD_BRANCH, THIRD_TAPS, THIRDBAND_24K,
};
use super::fir::{History, Sample, fir_add_impl, multiversion, to_i16};
use crate::codec::scratch;

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
        let (mut even, mut odd) = (self.even.open(), self.odd.open());
        if let Some(first) = self.carry.take() {
            match input.split_first() {
                Some((&second, rest)) => {
                    even.buf.push(first);
                    odd.buf.push(0.5 * second.f32());
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
        // Both branches have gain ½ (each is half the filter): it is applied
        // here, once per sample, rather than in a pass over the output.
        even.buf
            .extend(pairs.clone().map(|pair| 0.5 * pair[0].f32()));
        odd.buf.extend(pairs.map(|pair| 0.5 * pair[1].f32()));
        let outputs = even.new_samples();
        let start = out.len();
        // The delay branch: x[2m−(2K−1)] is the odd sample K pairs back.
        out.extend_from_slice(&odd.window()[..outputs]);
        fir_add_impl::<FMA>(&self.hb.branch, even.window(), &mut out[start..]);
        self.even.close(even);
        self.odd.close(odd);
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
        let [b0, b1, b2] = &self.branches;
        let mut windows = [b0.open(), b1.open(), b2.open()];
        if !self.carry.is_empty() {
            let take = (3 - self.carry.len()).min(input.len());
            self.carry.extend(input[..take].iter().map(|s| s.f32()));
            input = &input[take..];
            if self.carry.len() < 3 {
                return;
            }
            for (w, &v) in windows.iter_mut().zip(&self.carry) {
                w.buf.push(v);
            }
            self.carry.clear();
        }
        let groups = input.chunks_exact(3);
        self.carry
            .extend(groups.remainder().iter().map(|s| s.f32()));
        for (k, w) in windows.iter_mut().enumerate() {
            w.buf.extend(groups.clone().map(|group| group[k].f32()));
        }
        let outputs = windows[0].new_samples();
        let start = out.len();
        out.resize(start + outputs, 0.0);
        for ((branch, taps), window) in self
            .branches
            .iter_mut()
            .zip(THIRDBAND_24K.iter())
            .zip(windows)
        {
            fir_add_impl::<FMA>(taps, window.window(), &mut out[start..]);
            branch.close(window);
        }
    }
}

enum Stages {
    Passthrough,
    Halfband(HalfbandDecimator),
    Third(ThirdDecimator),
    HalfbandThird(HalfbandDecimator, ThirdDecimator),
}

/// Any supported rate → 8 kHz, anti-aliased.
pub struct Downsampler {
    rate: u32,
    stages: Stages,
}

impl Downsampler {
    /// A downsampler from `rate` (one of [`DOWNSAMPLER_RATES`](super::DOWNSAMPLER_RATES)) to 8 kHz.
    pub fn new(rate: u32) -> Option<Self> {
        let stages = match rate {
            8000 => Stages::Passthrough,
            16000 => Stages::Halfband(HalfbandDecimator::new(&HALFBAND_16K)),
            24000 => Stages::Third(ThirdDecimator::new()),
            48000 => {
                Stages::HalfbandThird(HalfbandDecimator::new(&HALFBAND_48K), ThirdDecimator::new())
            }
            _ => return None,
        };
        Some(Downsampler { rate, stages })
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
            Stages::HalfbandThird(hb, t) => ns(hb.delay(), 48000) + ns(t.delay(), 24000),
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
        let mut out = scratch::f32s();
        match &mut self.stages {
            Stages::Passthrough => unreachable!(),
            Stages::Halfband(hb) => hb.process::<_, FMA>(input, &mut out),
            Stages::Third(t) => t.process::<_, FMA>(input, &mut out),
            Stages::HalfbandThird(hb, t) => {
                let mut mid = scratch::f32s();
                hb.process::<_, FMA>(input, &mut mid);
                t.process::<_, FMA>(mid.as_slice(), &mut out);
            }
        }
        output.extend(out.iter().map(|&v| to_i16(v)));
    }

    /// Forgets all past input, as if newly created.
    pub fn reset(&mut self) {
        match &mut self.stages {
            Stages::Passthrough => {}
            Stages::Halfband(hb) => hb.reset(),
            Stages::Third(t) => t.reset(),
            Stages::HalfbandThird(hb, t) => {
                hb.reset();
                t.reset();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::DOWNSAMPLER_RATES;
    use super::super::test_signals::*;
    use super::*;

    fn downsample(rate: u32, x: &[i16]) -> Vec<i16> {
        let mut down = Downsampler::new(rate).unwrap();
        let mut out = Vec::new();
        down.process(x, &mut out);
        out
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
        let mut down = Downsampler::new(48000).unwrap();
        let y = tone(900.0, 48000.0, AMP, 1001);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        down.process(&y, &mut a);
        down.reset();
        down.process(&y, &mut b);
        assert_eq!(a, b);
    }
}
