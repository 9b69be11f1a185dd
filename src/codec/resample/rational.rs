//! [`Resampler`]: any supported rate to any other. The pairs the half-band
//! and third-band stages cover go through [`Upsampler`] and
//! [`Downsampler`]; the others (wideband L16: 8 → 24, 16 ↔ 24, 48 → 16/24
//! kHz) through a polyphase FIR (`Polyphase`) whose low-pass is designed
//! for the pair to the same bar, scaled to the band (`rational_lowpass`).

use super::filter_design::{rational_half_length, rational_lowpass};
use super::fir::to_i16;
use super::{Downsampler, Upsampler};

/// Rates a [`Resampler`] converts between.
pub const RATES: [u32; 4] = [8000, 16000, 24000, 48000];

/// Up by `up`, low-pass, down by `down`, as `up` polyphase branches.
struct Polyphase {
    up: usize,
    down: usize,
    /// `branches[p][j]` is tap `p + j·up` of the low-pass.
    branches: Vec<Vec<f32>>,
    taps: usize,
    /// Input from `buf_start` on (history included), as f32.
    buf: Vec<f32>,
    buf_start: u64,
    /// Input samples received.
    received: u64,
    /// Output samples produced.
    produced: u64,
    /// Delay of the low-pass at the intermediate rate.
    centre: usize,
}

impl Polyphase {
    fn new(from: u32, to: u32) -> Polyphase {
        let g = gcd(from, to);
        let (up, down) = ((to / g) as usize, (from / g) as usize);
        let h = rational_lowpass(from, to, up, down);
        let per_branch = h.len().div_ceil(up);
        let branches: Vec<Vec<f32>> = (0..up)
            .map(|p| {
                (0..per_branch)
                    .map(|j| h.get(p + j * up).copied().unwrap_or(0.0))
                    .collect()
            })
            .collect();
        let mut resampler = Polyphase {
            up,
            down,
            branches,
            taps: per_branch,
            buf: Vec::new(),
            buf_start: 0,
            received: 0,
            produced: 0,
            centre: (h.len() - 1) / 2,
        };
        resampler.reset();
        resampler
    }

    fn reset(&mut self) {
        // History before the first sample is silence.
        self.buf.clear();
        self.buf.resize(self.taps - 1, 0.0);
        self.buf_start = 0;
        self.received = self.taps as u64 - 1;
        self.produced = 0;
    }

    fn process(&mut self, input: &[i16], output: &mut Vec<i16>) {
        self.buf.extend(input.iter().map(|&s| s as f32));
        self.received += input.len() as u64;
        loop {
            // Output n is at intermediate time n·down, past input i.
            let t = self.produced * self.down as u64;
            let i = t / self.up as u64 + self.taps as u64 - 1;
            if i >= self.received {
                break;
            }
            let taps = &self.branches[(t % self.up as u64) as usize];
            let end = (i - self.buf_start) as usize + 1;
            let window = &self.buf[end - self.taps..end];
            // Tap j meets input i − j: the window read backwards.
            let acc = taps
                .iter()
                .zip(window.iter().rev())
                .fold(0.0f32, |acc, (&h, &x)| h.mul_add(x, acc));
            output.push(to_i16(acc));
            self.produced += 1;
        }
        // Keep what the next output's window reaches back to.
        let next = (self.produced * self.down as u64) / self.up as u64;
        let keep_from = next.max(self.buf_start);
        let drop = (keep_from - self.buf_start) as usize;
        if drop > 0 {
            self.buf.drain(..drop);
            self.buf_start = keep_from;
        }
    }

    fn delay_ns(&self, from: u32) -> u64 {
        self.centre as u64 * 1_000_000_000 / (from as u64 * self.up as u64)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per stream, held inline like the others"
)]
enum Kind {
    Same,
    Up(Upsampler),
    Down(Downsampler),
    Poly(Polyphase),
}

/// The delay of a [`Resampler`] from `from` to `to`, in nanoseconds,
/// without making one; None for a pair it does not take.
pub fn delay_ns(from: u32, to: u32) -> Option<u64> {
    if !RATES.contains(&from) || !RATES.contains(&to) {
        return None;
    }
    Some(match (from, to) {
        _ if from == to => 0,
        (8000, 16000) => Upsampler::delay_ns(),
        (_, 8000) => Downsampler::new(from)?.delay_ns(),
        _ => {
            let g = gcd(from, to);
            let (up, down) = ((to / g) as usize, (from / g) as usize);
            let half = rational_half_length(from, to, up, down);
            half as u64 * 1_000_000_000 / (from as u64 * up as u64)
        }
    })
}

/// A stateful, anti-aliased converter from one rate of [`RATES`] to another.
pub struct Resampler {
    from: u32,
    to: u32,
    kind: Kind,
}

impl Resampler {
    /// None if either rate is not one of [`RATES`].
    pub fn new(from: u32, to: u32) -> Option<Resampler> {
        if !RATES.contains(&from) || !RATES.contains(&to) {
            return None;
        }
        let kind = match (from, to) {
            _ if from == to => Kind::Same,
            (8000, 16000) => Kind::Up(Upsampler::new()),
            (_, 8000) => Kind::Down(Downsampler::new(from)?),
            _ => Kind::Poly(Polyphase::new(from, to)),
        };
        Some(Resampler { from, to, kind })
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.from, self.to)
    }

    /// Delay in nanoseconds: input at time t comes out at t + delay.
    pub fn delay_ns(&self) -> u64 {
        match &self.kind {
            Kind::Same => 0,
            Kind::Up(..) => Upsampler::delay_ns(),
            Kind::Down(down) => down.delay_ns(),
            Kind::Poly(poly) => poly.delay_ns(self.from),
        }
    }

    /// Converts `input` and appends the result to `output`. Any number of
    /// samples may be given; what does not make an output sample yet is
    /// kept for the next call.
    pub fn process(&mut self, input: &[i16], output: &mut Vec<i16>) {
        match &mut self.kind {
            Kind::Same => output.extend_from_slice(input),
            Kind::Up(up) => {
                let start = output.len();
                output.resize(start + 2 * input.len(), 0);
                up.process(input, &mut output[start..]);
            }
            Kind::Down(down) => down.process(input, output),
            Kind::Poly(poly) => poly.process(input, output),
        }
    }

    /// Forgets all past input, as if newly created.
    pub fn reset(&mut self) {
        match &mut self.kind {
            Kind::Same => {}
            Kind::Up(up) => up.reset(),
            Kind::Down(down) => down.reset(),
            Kind::Poly(poly) => poly.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_signals::*;
    use super::*;

    /// The pairs the polyphase FIR serves.
    const NEW_PAIRS: [(u32, u32); 6] = [
        (8000, 24000),
        (16000, 24000),
        (24000, 16000),
        (48000, 16000),
        (48000, 24000),
        (8000, 48000),
    ];

    fn convert(from: u32, to: u32, x: &[i16]) -> Vec<i16> {
        let mut r = Resampler::new(from, to).unwrap();
        let mut out = Vec::new();
        r.process(x, &mut out);
        out
    }

    /// One second of output after the first half second, as a whole
    /// number of periods of anything at whole Hz.
    fn steady(out: &[i16], to: u32) -> &[i16] {
        let rate = to as usize;
        &out[rate / 2..rate / 2 + rate / 2]
    }

    #[test]
    fn passband_is_flat_to_85_percent_of_the_band() {
        for (from, to) in NEW_PAIRS {
            let band = from.min(to) as f64 / 2.0;
            let mut f = 100.0;
            while f <= 0.85 * band {
                let out = convert(from, to, &tone(f, from as f64, AMP, 2 * from as usize));
                let gain = db(amplitude(steady(&out, to), f, to as f64) / AMP);
                assert!(gain.abs() < 0.01, "{from} → {to}, {f} Hz: {gain} dB");
                f += 700.0;
            }
        }
    }

    #[test]
    fn nothing_folds_or_images_into_the_passband() {
        for (from, to) in NEW_PAIRS {
            let band = from.min(to) as f64 / 2.0;
            let from_nyquist = from as f64 / 2.0;
            let to_rate = to as f64;
            // Decimation: tones above the band fold down. Interpolation:
            // tones in the passband make images at k·from ± f.
            let mut f = 50.0;
            while f < from_nyquist {
                let out = convert(from, to, &tone(f, from as f64, AMP, 2 * from as usize));
                let out = steady(&out, to);
                let mut unwanted = Vec::new();
                if f >= 1.15 * band {
                    let r = f % to_rate;
                    unwanted.push(if r > to_rate / 2.0 { to_rate - r } else { r });
                } else if to > from && f <= 0.85 * band {
                    let mut k = 1.0;
                    while k * from as f64 - f < to_rate / 2.0 {
                        unwanted.push(k * from as f64 - f);
                        if k * from as f64 + f < to_rate / 2.0 {
                            unwanted.push(k * from as f64 + f);
                        }
                        k += 1.0;
                    }
                }
                for u in unwanted.into_iter().filter(|&u| u > 1.0) {
                    let level = db(amplitude(out, u, to_rate) / AMP);
                    assert!(
                        level < -90.0,
                        "{from} → {to}: {f} Hz gives {u} Hz at {level} dB"
                    );
                }
                f += 650.0;
            }
        }
    }

    #[test]
    fn stateful_across_pieces_of_any_size() {
        for (from, to) in NEW_PAIRS.into_iter().chain([(8000, 16000), (24000, 8000)]) {
            let x = tone(555.0, from as f64, AMP, from as usize / 2);
            let whole = convert(from, to, &x);
            assert_eq!(whole.len(), to as usize / 2, "{from} → {to}");
            let mut r = Resampler::new(from, to).unwrap();
            let mut pieces = Vec::new();
            let mut rest = &x[..];
            for size in [1usize, 7, 320, 2, 5, 961].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                r.process(chunk, &mut pieces);
                rest = tail;
            }
            assert_eq!(whole, pieces, "{from} → {to}");
            r.reset();
            let mut again = Vec::new();
            r.process(&x, &mut again);
            assert_eq!(again, whole, "{from} → {to} after reset");
        }
    }

    #[test]
    fn delay_is_as_documented() {
        for (from, to) in NEW_PAIRS {
            let r = Resampler::new(from, to).unwrap();
            // A band-limited click: a tone burst would smear; a windowed
            // sinc at the band keeps one clear peak.
            let band = from.min(to) as f64 / 2.0;
            let mut x = vec![0i16; from as usize / 10];
            let at = from as usize / 50;
            for (n, v) in x.iter_mut().enumerate() {
                let t = n as f64 - at as f64;
                let arg = std::f64::consts::PI * 1.6 * band / from as f64 * t;
                let sinc = if t == 0.0 { 1.0 } else { arg.sin() / arg };
                *v = (12000.0 * sinc * (-(t / 40.0).powi(2)).exp()) as i16;
            }
            let mut y = Vec::new();
            let mut r = r;
            r.process(&x, &mut y);
            let peak = (0..y.len()).max_by_key(|&i| y[i]).unwrap();
            let expected = (at as f64 / from as f64 + r.delay_ns() as f64 / 1e9) * to as f64;
            assert!(
                (peak as f64 - expected).abs() <= 0.5,
                "{from} → {to}: peak at {peak}, expected {expected}"
            );
        }
        for from in RATES {
            for to in RATES {
                let r = Resampler::new(from, to).unwrap();
                assert_eq!(delay_ns(from, to), Some(r.delay_ns()), "{from} → {to}");
            }
        }
        assert_eq!(delay_ns(8000, 16000), Some(Upsampler::delay_ns()));
        assert_eq!(delay_ns(8000, 44100), None);
    }

    #[test]
    fn same_rate_is_the_identity_and_odd_rates_are_refused() {
        let x = tone(440.0, 16000.0, AMP, 333);
        assert_eq!(convert(16000, 16000, &x), x);
        assert!(Resampler::new(44100, 16000).is_none());
        assert!(Resampler::new(16000, 11025).is_none());
    }
}
