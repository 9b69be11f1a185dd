//! [`Upsampler`], 8 kHz → 16 kHz: the half-band interpolator, and its tests.
//! The filter is designed in `filter_design.rs`, the FIR runs in `fir.rs`.

use super::filter_design::HALFBAND_16K;
use super::fir::{History, append, fir_add_impl, multiversion, to_i16};
use crate::codec::scratch;

/// 8 kHz → 16 kHz half-band interpolator.
pub struct Upsampler {
    /// The FIR branch's history of input samples.
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
        let mut x = self.hist.open();
        append(&mut x.buf, input);
        let mut fir = scratch::f32s();
        fir.resize(n, 0.0);
        fir_add_impl::<FMA>(&hb.branch, x.window(), &mut fir);
        // The window of output m ends at input m; its centre branch is the
        // input K−1 samples back, at this offset into the window.
        let centre = &x.window()[hb.centre_delay()..hb.centre_delay() + n];
        for ((pair, &f), &c) in output.chunks_exact_mut(2).zip(fir.iter()).zip(centre) {
            pair[0] = to_i16(f);
            pair[1] = to_i16(c);
        }
        self.hist.close(x);
    }

    /// Forgets all past input, as if newly created.
    pub fn reset(&mut self) {
        self.hist.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_signals::*;
    use super::*;

    fn upsample(x: &[i16]) -> Vec<i16> {
        let mut up = Upsampler::new();
        let mut out = vec![0; 2 * x.len()];
        up.process(x, &mut out);
        out
    }

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
    fn reset_forgets_history() {
        let x = tone(900.0, 8000.0, AMP, 320);
        let mut up = Upsampler::new();
        let mut a = vec![0; 640];
        up.process(&x, &mut a);
        up.reset();
        let mut b = vec![0; 640];
        up.process(&x, &mut b);
        assert_eq!(a, b);
    }
}
