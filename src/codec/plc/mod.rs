//! Packet loss concealment for 8 kHz speech in the manner of ITU-T G.711
//! Appendix I: pitch-period repetition from recent history, overlap-added at
//! both edges of the loss, fading to silence 60 ms in. Finding losses and
//! other rates are not here: conceal at 8 kHz, before any upsampling.

/// Shortest pitch period searched: 5 ms (200 Hz).
const PITCH_MIN: usize = 40;
/// Longest pitch period searched: 15 ms (about 66 Hz).
const PITCH_MAX: usize = 120;
/// Audio correlated against its past to find the pitch: 20 ms.
const CORR_LEN: usize = 160;
/// Floor of the lagged energy in the correlation, so silence scores 0.
const CORR_MIN_POWER: f64 = 250.0;
/// Enough for three periods of the longest pitch and a quarter more: all
/// of the past a loss is concealed from.
pub const HISTORY: usize = 3 * PITCH_MAX + PITCH_MAX / 4;
/// Appendix I's unit of time, 10 ms: the schedule below counts in it.
const FRAME: usize = 80;
/// The overlap-add into the audio after a loss grows by 4 ms for each
/// 10 ms lost beyond the first (up to `FRAME`).
const END_OVERLAP_STEP: usize = 32;
/// Gain lost per sample after the first 10 ms: 20 % per 10 ms.
const FADE_PER_SAMPLE: f32 = 0.2 / FRAME as f32;
/// Concealment is silent from here on (60 ms): 10 ms full, 50 ms fading.
const SILENT_AFTER: usize = FRAME + 5 * FRAME;

/// Where the concealer is between losses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Audio is arriving; nothing to blend.
    Good,
    /// Inside a loss.
    Lost,
    /// The first audio after a loss is being overlap-added with the
    /// continued concealment: `done` of `len` samples so far.
    Recovering { len: usize, done: usize },
}

/// Conceals lost stretches of one 8 kHz track (one instance per track).
///
/// Feed every received chunk through [`good`](Self::good) and fill every
/// lost one with [`conceal`](Self::conceal), in stream order. Adds no delay
/// and never allocates: all state is fixed-size. Appendix I holds output
/// back 3.75 ms so it can overlap-add the audio just before a loss; this
/// instead spreads the step at the loss start over the first quarter pitch
/// period of the concealment, as a decaying offset.
#[derive(Debug, Clone)]
#[repr(C)] // what a chunk after no loss touches first: see `hot_ranges`
pub struct Concealer {
    /// Where the next sample goes in `history` (its oldest sample).
    head: usize,
    phase: Phase,
    /// Samples concealed in the current loss (saturating).
    lost: usize,
    pitch: usize,
    /// A quarter pitch period: the length of every overlap-add but the last.
    overlap: usize,
    /// Pitch periods being repeated: 1, then 2 after 10 ms, 3 after 20 ms.
    periods: usize,
    /// Read position within the repeated periods.
    pos: usize,
    /// While widening to more periods, the old repetition fading out:
    /// its periods, its position, and samples of fade left.
    widening: (usize, usize, usize),
    /// The step between the last sample before the loss and where the
    /// repetition starts, removed over the first `overlap` samples.
    start_step: f32,
    /// The most recent output, as a ring whose oldest sample is at `head`:
    /// each chunk overwrites only its own length, in as few cache lines as
    /// it can (this is the concealer's only work on a chunk after no loss).
    history: [i16; HISTORY],
    /// The history as the loss began, its last quarter period overlap-added
    /// with the quarter before one period earlier, so repeating it loops
    /// without a step.
    pitch_buf: [f32; HISTORY],
}

impl Default for Concealer {
    fn default() -> Self {
        Self::new()
    }
}

impl Concealer {
    /// A concealer with a silent history: concealment before any good audio
    /// is silence.
    pub fn new() -> Self {
        Self {
            history: [0; HISTORY],
            head: 0,
            pitch_buf: [0.0; HISTORY],
            phase: Phase::Good,
            lost: 0,
            pitch: PITCH_MIN,
            overlap: PITCH_MIN / 4,
            periods: 1,
            pos: 0,
            widening: (0, 0, 0),
            start_step: 0.0,
        }
    }

    /// Where the state the next chunk of `next` samples touches lies
    /// after no loss (address, bytes), for prefetching: the fields before
    /// the history (with the start of the history, should the chunk wrap
    /// around the ring), and the part of the history it overwrites. Not
    /// the pitch buffer, which only a loss reads.
    pub fn hot_ranges(&self, next: usize) -> [(usize, usize); 2] {
        let this = self as *const Self as usize;
        let history = self.history.as_ptr() as usize;
        let sample = std::mem::size_of::<i16>();
        let wrapped = (self.head + next).saturating_sub(HISTORY).min(self.head);
        let ahead = next.min(HISTORY - self.head);
        [
            (this, history - this + wrapped * sample),
            (history + self.head * sample, ahead * sample),
        ]
    }

    /// No loss in progress or being blended into the audio: the next
    /// received chunk goes through [`good`](Self::good) untouched.
    pub fn settled(&self) -> bool {
        self.phase == Phase::Good
    }

    /// Forgets all audio and any loss in progress (a new stream).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Takes a received chunk. The first samples after a loss are rewritten
    /// in place: overlap-added with the continued concealment over a quarter
    /// pitch period, plus 4 ms per 10 ms lost beyond the first (at most
    /// 10 ms), so the audio comes back without a step. The blend may run
    /// on into the next chunks when this one is short.
    pub fn good(&mut self, chunk: &mut [i16]) {
        if self.phase == Phase::Lost {
            let frames = self.lost.div_ceil(FRAME).max(1);
            let len = (self.overlap + END_OVERLAP_STEP * (frames - 1)).min(FRAME);
            self.phase = Phase::Recovering { len, done: 0 };
        }
        if let Phase::Recovering { len, mut done } = self.phase {
            for s in chunk.iter_mut() {
                if done == len {
                    break;
                }
                let w = (done + 1) as f32 / (len + 1) as f32;
                let synthetic = self.next_synthetic();
                *s = to_i16(w * f32::from(*s) + (1.0 - w) * synthetic);
                done += 1;
            }
            self.phase = if done == len {
                Phase::Good
            } else {
                Phase::Recovering { len, done }
            };
        }
        self.remember(chunk);
    }

    /// Fills `out` with concealment for lost audio, continuing any loss
    /// already in progress. After 60 ms of continuous loss it is exact
    /// silence.
    pub fn conceal(&mut self, out: &mut [i16]) {
        if self.phase != Phase::Lost {
            self.begin_loss();
        }
        for s in out.iter_mut() {
            if self.lost >= SILENT_AFTER {
                *s = 0;
                self.lost = self.lost.saturating_add(1);
            } else {
                *s = to_i16(self.next_synthetic());
            }
        }
        self.remember(out);
    }

    /// Starts a loss: estimates the pitch and prepares the repetition.
    fn begin_loss(&mut self) {
        let history = self.history();
        let pitch = estimate_pitch(&history);
        let overlap = pitch / 4;
        self.pitch_buf = history;
        // Make the end of the history run into the period after it: the last
        // `overlap` samples fade into those one period earlier.
        let end = HISTORY - overlap;
        for j in 0..overlap {
            let w = (j + 1) as f32 / (overlap + 1) as f32;
            self.pitch_buf[end + j] = (1.0 - w) * history[end + j] + w * history[end + j - pitch];
        }
        // The repetition starts at one period back, which naturally follows
        // the sample before it; what actually came before was the last one.
        self.start_step = history[HISTORY - 1] - history[HISTORY - 1 - pitch];
        self.pitch = pitch;
        self.overlap = overlap;
        self.periods = 1;
        self.pos = 0;
        self.widening = (0, 0, 0);
        self.lost = 0;
        self.phase = Phase::Lost;
    }

    /// The next concealment sample (also the one blended in after a loss).
    fn next_synthetic(&mut self) -> f32 {
        let k = self.lost;
        if (k == FRAME || k == 2 * FRAME) && self.periods < 3 {
            // Widen to one more period, starting in the oldest one at the
            // same place in the pitch cycle, and cross-fade into it.
            self.widening = (self.periods, self.pos, self.overlap);
            self.periods += 1;
            self.pos %= self.pitch;
        }
        let mut v = self.read_periods(self.periods, Posn::Main);
        let (old_periods, _, left) = self.widening;
        if left > 0 {
            let old = self.read_periods(old_periods, Posn::Widening);
            let w = (self.overlap - left + 1) as f32 / (self.overlap + 1) as f32;
            v = w * v + (1.0 - w) * old;
            self.widening.2 -= 1;
        }
        if k < self.overlap {
            v += self.start_step * (self.overlap - k) as f32 / (self.overlap + 1) as f32;
        }
        self.lost = k.saturating_add(1);
        v * gain(k)
    }

    /// Reads the next sample of the last `periods` pitch periods of the
    /// pitch buffer, looping, and advances the chosen read position.
    fn read_periods(&mut self, periods: usize, which: Posn) -> f32 {
        let span = periods * self.pitch;
        let pos = match which {
            Posn::Main => &mut self.pos,
            Posn::Widening => &mut self.widening.1,
        };
        let v = self.pitch_buf[HISTORY - span + *pos];
        *pos = (*pos + 1) % span;
        v
    }

    /// Appends output to the history.
    fn remember(&mut self, samples: &[i16]) {
        let mut rest = &samples[samples.len() - samples.len().min(HISTORY)..];
        while !rest.is_empty() {
            let n = rest.len().min(HISTORY - self.head);
            self.history[self.head..self.head + n].copy_from_slice(&rest[..n]);
            self.head = (self.head + n) % HISTORY;
            rest = &rest[n..];
        }
    }

    /// The history, oldest first.
    fn history(&self) -> [f32; HISTORY] {
        let (newer, older) = self.history.split_at(self.head);
        let mut out = [0.0; HISTORY];
        for (o, &s) in out.iter_mut().zip(older.iter().chain(newer)) {
            *o = f32::from(s);
        }
        out
    }
}

/// Which read position [`Concealer::read_periods`] advances.
#[derive(Debug, Clone, Copy)]
enum Posn {
    Main,
    Widening,
}

/// Gain `k` samples into a loss: 1 for 10 ms, then down 20 % per 10 ms.
fn gain(k: usize) -> f32 {
    if k < FRAME {
        1.0
    } else {
        (1.0 - (k - FRAME) as f32 * FADE_PER_SAMPLE).max(0.0)
    }
}

fn to_i16(v: f32) -> i16 {
    v.round().clamp(-32768.0, 32767.0) as i16
}

/// The pitch period (in samples) that best predicts the last 20 ms of
/// `history` from the audio one period before it: the highest normalised
/// cross-correlation, searched coarsely on every second sample and lag,
/// then refined around the winner. Ties go to the shortest period.
fn estimate_pitch(history: &[f32; HISTORY]) -> usize {
    let best_of = |lags: &mut dyn Iterator<Item = usize>, step: usize| {
        let mut best = (f64::NEG_INFINITY, PITCH_MIN);
        for lag in lags {
            let score = correlation(history, lag, step);
            if score > best.0 {
                best = (score, lag);
            }
        }
        best.1
    };
    let coarse = best_of(&mut (PITCH_MIN..=PITCH_MAX).step_by(2), 2);
    let fine = coarse.saturating_sub(1).max(PITCH_MIN)..=(coarse + 1).min(PITCH_MAX);
    best_of(&mut fine.into_iter(), 1)
}

/// Cross-correlation of the last `CORR_LEN` samples with those `lag`
/// earlier (every `step`-th sample), divided by the root of the lagged
/// energy: the gain-independent match of the two.
fn correlation(history: &[f32; HISTORY], lag: usize, step: usize) -> f64 {
    let start = HISTORY - CORR_LEN;
    let (mut corr, mut energy) = (0.0f64, 0.0f64);
    for i in (start..HISTORY).step_by(step) {
        let (a, b) = (f64::from(history[i]), f64::from(history[i - lag]));
        corr += a * b;
        energy += b * b;
    }
    corr / energy.max(CORR_MIN_POWER).sqrt()
}

#[cfg(test)]
mod tests;
