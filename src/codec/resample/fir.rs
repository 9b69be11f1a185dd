//! The hot loops: a FIR computed for a block of outputs at once, its
//! AVX2 + FMA build picked at run time (`multiversion!`), the f32 ↔ i16
//! conversions, and the [`History`] a FIR carries between blocks. No filter
//! design (`filter_design.rs`) and no resampling logic here.

use crate::codec::scratch::{self, Scratch};

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
pub(super) fn fir_add_impl<const FMA: bool>(taps: &[f32], x: &[f32], out: &mut [f32]) {
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
pub(super) fn have_avx2_fma() -> bool {
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
            if $crate::codec::resample::fir::have_avx2_fma() {
                // SAFETY: the CPU has the features the fast build is for.
                return unsafe { self.$fast($($arg),*) };
            }
            self.$imp::<false>($($arg),*)
        }
    };
}
pub(super) use multiversion;

/// Rounds to the nearest integer (ties to even) and saturates to i16, in
/// operations that vectorise on any x86-64: adding and removing 1.5 · 2^23
/// leaves the rounded value for any |v| < 2^22.
#[inline(always)]
pub(super) fn to_i16(v: f32) -> i16 {
    const MAGIC: f32 = 12_582_912.0;
    // max/min also turn a NaN into a number, so the conversion is in range.
    let clamped = v.max(i16::MIN as f32).min(i16::MAX as f32);
    let rounded = (clamped + MAGIC) - MAGIC;
    // SAFETY: `rounded` is finite and within i16, so within i32.
    unsafe { rounded.to_int_unchecked::<i32>() as i16 }
}

/// A sample the resamplers take as input.
pub(super) trait Sample: Copy {
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
pub(super) fn append<T: Sample>(dest: &mut Vec<f32>, input: &[T]) {
    let start = dest.len();
    dest.resize(start + input.len(), 0.0);
    for (d, &s) in dest[start..].iter_mut().zip(input) {
        *d = s.f32();
    }
}

/// A stream's last `history` samples, kept between blocks: all a FIR of
/// `history + 1` taps needs to carry on. A block runs over a [`Window`]
/// (the history, then the new samples) in a buffer of the thread's scratch
/// pool, so a call's own state is these few samples (see `codec::scratch`).
pub(super) struct History {
    tail: Vec<f32>,
}

impl History {
    pub(super) fn new(history: usize) -> Self {
        History {
            tail: vec![0.0; history],
        }
    }

    pub(super) fn reset(&mut self) {
        self.tail.fill(0.0);
    }

    /// A window holding the history, for the new samples to be appended.
    pub(super) fn open(&self) -> Window {
        let mut buf = scratch::f32s();
        buf.extend_from_slice(&self.tail);
        Window {
            buf,
            history: self.tail.len(),
        }
    }

    /// Keeps the last samples of `window` for the next block.
    pub(super) fn close(&mut self, window: Window) {
        let from = window.buf.len() - self.tail.len();
        self.tail.copy_from_slice(&window.buf[from..]);
    }
}

/// The history of a [`History`] and the samples appended to it.
pub(super) struct Window {
    pub(super) buf: Scratch<f32>,
    history: usize,
}

impl Window {
    /// The new samples, with the history before them: what a FIR of
    /// `history + 1` taps needs for one output per new sample.
    pub(super) fn window(&self) -> &[f32] {
        &self.buf
    }

    pub(super) fn new_samples(&self) -> usize {
        self.buf.len() - self.history
    }
}
