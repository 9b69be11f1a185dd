//! The resampling stage of PCM input: a resampler and the samples it has
//! taken and made, so that its tail is flushed to the sample and a warm-up
//! skipped where a resampler starts mid-stream.

use crate::codec::{Resampler, scratch};

/// A resampler and the samples it has taken and made, so that its tail can
/// be flushed to the sample and a warm-up skipped.
pub(super) struct Stage {
    pub(super) resampler: Resampler,
    /// Input samples taken.
    taken: u64,
    /// Output samples made, skipped ones included.
    made: u64,
    /// Output samples still to drop: the warm-up of a resampler started
    /// mid-stream, whose output goes on from where the last one's ended.
    skip: usize,
}

impl Stage {
    pub(super) fn new(resampler: Resampler) -> Self {
        Stage {
            resampler,
            taken: 0,
            made: 0,
            skip: 0,
        }
    }

    /// The delay in periods of 48 kHz (a whole number of them at every
    /// pair of rates here).
    pub(super) fn delay_units(&self) -> u64 {
        (self.resampler.delay_ns() * 48_000).div_ceil(1_000_000_000)
    }

    /// Has the first `samples` output samples dropped: the warm-up of a
    /// resampler started mid-stream, whose output goes on from where the
    /// last one's ended.
    pub(super) fn skip(&mut self, samples: usize) {
        self.skip = samples;
    }

    /// How much later than its input the next output sample comes out (ns):
    /// the delay less the warm-up still to skip.
    pub(super) fn lag_ns(&self) -> u64 {
        let (_, to) = self.resampler.rates();
        let skip_ns = self.skip as u64 * 1_000_000_000 / to as u64;
        self.resampler.delay_ns().saturating_sub(skip_ns)
    }

    /// Resamples `input`, appending to `output` all but the warm-up to skip.
    pub(super) fn process(&mut self, input: &[i16], output: &mut Vec<i16>) {
        let start = output.len();
        self.resampler.process(input, output);
        self.taken += input.len() as u64;
        self.made += (output.len() - start) as u64;
        if self.skip > 0 {
            let skipped = self.skip.min(output.len() - start);
            output.drain(start..start + skipped);
            self.skip -= skipped;
        }
    }

    /// Pushes silence through so that the last input comes out, and no
    /// more: the output ends where the input did plus the delay (rounded up
    /// to a sample).
    pub(super) fn flush(&mut self, output: &mut Vec<i16>) {
        let delay = self.resampler.delay_ns() as u128;
        // Nothing taken (or flushed already), nothing held back.
        if delay == 0 || self.taken == 0 {
            return;
        }
        let (from, to) = self.resampler.rates();
        let (from, to) = (from as u128, to as u128);
        // Output samples up to the last input's, delayed: ⌈(taken/from + delay)·to⌉.
        let total = (self.taken as u128 * to * 1_000_000_000 + delay * to * from)
            .div_ceil(from * 1_000_000_000);
        let wanted = total.saturating_sub(self.made as u128) as usize;
        let skip = self.skip;
        let zeros = (delay * from).div_ceil(1_000_000_000) as usize + 6;
        let mut pcm = scratch::i16s();
        pcm.resize(zeros, 0);
        let start = output.len();
        self.process(&pcm, output);
        let kept = wanted.saturating_sub(skip - self.skip);
        output.truncate(start + kept.min(output.len() - start));
        // The silence is no input: a second flush adds nothing.
        self.taken = 0;
        self.made = 0;
    }

    /// Forgets all past input, as if new (a warm-up to come is not skipped).
    pub(super) fn reset(&mut self) {
        self.resampler.reset();
        self.taken = 0;
        self.made = 0;
        self.skip = 0;
    }
}
