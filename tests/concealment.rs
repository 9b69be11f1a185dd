//! What concealment buys on real speech: 5 % of the 20 ms μ-law chunks of a
//! spoken prompt are lost (single chunks, at random), and the output with
//! `plc` and with silence in their place is compared with the undamaged
//! decode. The concealer's own behaviour is unit-tested in src/codec/plc/tests.rs.

use std::f64::consts::PI;
use std::sync::LazyLock;

use gsttwiliostream::codec::{Concealer, Downsampler, g711};

/// "Thank you for calling. For sales, press one. For support, press two.",
/// 16 kHz mono, made with espeak-ng.
const SPEECH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/speech-16k.wav");
/// Twilio's chunk: 20 ms at 8 kHz.
const CHUNK: usize = 160;
/// Loss patterns measured, each from its own seed: 14 losses each, about
/// 350 of them in speech in all. One pattern alone is too few to judge by.
const SEEDS: u64 = 40;
/// Per-frame scores are clamped to this range (the usual limits of
/// segmental SNR), so one perfect or hopeless frame cannot dominate.
const CLAMP_DB: (f64, f64) = (-10.0, 35.0);
/// Frames quieter than this RMS (about -50 dBFS) are pauses, not speech:
/// any fill is as good as any other there.
const SPEECH_RMS: f64 = 100.0;

/// The prompt as the src would decode it: 16 kHz → 8 kHz → μ-law chunks.
fn chunks() -> Vec<Vec<i16>> {
    let mut reader = hound::WavReader::open(SPEECH).unwrap();
    assert_eq!(reader.spec().sample_rate, 16000);
    let wide: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let mut narrow = Vec::new();
    Downsampler::new(16000).unwrap().process(&wide, &mut narrow);
    narrow
        .chunks_exact(CHUNK)
        .map(|c| c.iter().map(|&s| g711::decode(g711::encode(s))).collect())
        .collect()
}

/// xorshift64: a fixed, dependency-free sequence for a given seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// 5 % of `n` chunk indices, none next to another (single losses), none
/// the first or last chunk (there must be audio before and after).
fn losses(n: usize, seed: u64) -> Vec<bool> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut lost = vec![false; n];
    let mut left = n * 5 / 100;
    while left > 0 {
        let i = 1 + (rng.next() % (n as u64 - 2)) as usize;
        if !lost[i - 1] && !lost[i] && !lost[i + 1] {
            lost[i] = true;
            left -= 1;
        }
    }
    lost
}

/// The decode with the lost chunks filled by the concealer, or by silence.
fn damaged(chunks: &[Vec<i16>], lost: &[bool], conceal: bool) -> Vec<i16> {
    let mut plc = Concealer::new();
    let mut out = Vec::with_capacity(chunks.len() * CHUNK);
    for (chunk, &lost) in chunks.iter().zip(lost) {
        let mut c = chunk.clone();
        match (lost, conceal) {
            (true, true) => plc.conceal(&mut c),
            (true, false) => c.fill(0),
            (false, _) => plc.good(&mut c),
        }
        out.extend_from_slice(&c);
    }
    out
}

fn clamp_db(db: f64) -> f64 {
    db.clamp(CLAMP_DB.0, CLAMP_DB.1)
}

/// Waveform SNR of one frame, in dB.
fn snr(reference: &[i16], test: &[i16]) -> f64 {
    let (mut sig, mut noise) = (0.0, 0.0);
    for (&r, &t) in reference.iter().zip(test) {
        sig += f64::from(r).powi(2);
        noise += (f64::from(r) - f64::from(t)).powi(2);
    }
    clamp_db(10.0 * (sig / noise.max(1e-9)).log10())
}

/// Magnitude spectrum of a Hann-windowed chunk-long frame (256-point DFT,
/// 0–4 kHz).
fn spectrum(frame: &[i16]) -> Vec<f64> {
    const N: usize = 256;
    static WINDOW: LazyLock<Vec<f64>> = LazyLock::new(|| {
        (0..CHUNK)
            .map(|n| 0.5 - 0.5 * (2.0 * PI * (n as f64 + 0.5) / CHUNK as f64).cos())
            .collect()
    });
    /// e^(−2πi m / N) as (cos, −sin).
    static TWIDDLES: LazyLock<Vec<(f64, f64)>> = LazyLock::new(|| {
        (0..N)
            .map(|m| (2.0 * PI * m as f64 / N as f64).sin_cos())
            .map(|(s, c)| (c, -s))
            .collect()
    });
    assert_eq!(frame.len(), CHUNK);
    (0..=N / 2)
        .map(|k| {
            let (mut re, mut im) = (0.0, 0.0);
            for (n, (&v, w)) in frame.iter().zip(WINDOW.iter()).enumerate() {
                let (c, s) = TWIDDLES[k * n % N];
                re += w * f64::from(v) * c;
                im += w * f64::from(v) * s;
            }
            re.hypot(im)
        })
        .collect()
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Frames are a chunk long and start every half chunk (10 ms).
const HOP: usize = CHUNK / 2;

/// The undamaged decode, with the spectra of its frames computed once.
struct Reference {
    samples: Vec<i16>,
    spectra: Vec<Vec<f64>>,
}

impl Reference {
    fn new(samples: Vec<i16>) -> Self {
        let spectra = (0..=(samples.len() - CHUNK) / HOP)
            .map(|j| spectrum(&samples[j * HOP..j * HOP + CHUNK]))
            .collect();
        Self { samples, spectra }
    }

    /// Spectral energy of the reference frame starting at `start` and of
    /// the difference between its magnitude spectrum and `test`'s.
    fn frame(&self, test: &[i16], start: usize) -> (f64, f64) {
        let r = &self.spectra[start / HOP];
        let sig = r.iter().map(|v| v * v).sum();
        let range = start..start + CHUNK;
        if test[range.clone()] == self.samples[range.clone()] {
            return (sig, 0.0);
        }
        let t = spectrum(&test[range]);
        (sig, r.iter().zip(&t).map(|(a, b)| (a - b).powi(2)).sum())
    }

    /// Spectral SNR of the chunk-long frame at `start`, in dB: the
    /// reference's spectral energy over the energy of the difference of the
    /// magnitude spectra. Silence scores exactly 0 dB.
    fn spectral_snr(&self, test: &[i16], start: usize) -> f64 {
        let (sig, err) = self.frame(test, start);
        clamp_db(10.0 * (sig / err.max(1e-9)).log10())
    }

    /// Spectral energy and error of the stretch a loss damages, from 10 ms
    /// before the lost chunk to the end of the chunk after it, so the
    /// concealer pays for its blends at both edges.
    fn stretch(&self, test: &[i16], lost: usize) -> (f64, f64) {
        (lost * CHUNK - HOP..=(lost + 1) * CHUNK)
            .step_by(HOP)
            .map(|start| self.frame(test, start))
            .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

/// Scores of one fill over the lost chunks that fall in speech.
#[derive(Default)]
struct Scores {
    /// Lost chunks in speech.
    chunks: usize,
    /// Sum of the lost chunks' spectral SNR.
    spectral: f64,
    /// Sum of the lost chunks' waveform SNR.
    waveform: f64,
    /// Sum of the spectral SNR of the chunks after them.
    after: f64,
    /// Pooled reference and error energy of the damaged stretches.
    stretch: (f64, f64),
}

impl Scores {
    fn add(&mut self, reference: &Reference, test: &[i16], lost: &[bool]) {
        for (i, _) in lost.iter().enumerate().filter(|(_, l)| **l) {
            let this = i * CHUNK..(i + 1) * CHUNK;
            if rms(&reference.samples[this.clone()]) < SPEECH_RMS {
                continue;
            }
            self.chunks += 1;
            self.spectral += reference.spectral_snr(test, i * CHUNK);
            self.waveform += snr(&reference.samples[this.clone()], &test[this]);
            self.after += reference.spectral_snr(test, (i + 1) * CHUNK);
            let (sig, err) = reference.stretch(test, i);
            self.stretch.0 += sig;
            self.stretch.1 += err;
        }
    }

    fn mean(&self, sum: f64) -> f64 {
        sum / self.chunks as f64
    }

    fn stretch_db(&self) -> f64 {
        10.0 * (self.stretch.0 / self.stretch.1).log10()
    }
}

/// The measure is spectral, not waveform SNR: a concealment continues the
/// voice but cannot keep its exact phase, and waveform SNR rates any fill
/// whose phase drifted below silence (it does here), though it sounds far
/// better. The magnitude spectrum, like the ear, ignores phase; silence
/// scores exactly 0 dB on a lost chunk.
#[test]
fn concealment_is_clearly_better_than_silence_on_speech() {
    let chunks = chunks();
    let reference = Reference::new(chunks.concat());
    let (mut plc, mut silence) = (Scores::default(), Scores::default());
    for seed in 1..=SEEDS {
        let lost = losses(chunks.len(), seed);
        plc.add(&reference, &damaged(&chunks, &lost, true), &lost);
        silence.add(&reference, &damaged(&chunks, &lost, false), &lost);
    }
    let row = |name: &str, s: &Scores| {
        println!(
            "{name:8} {:6.2} dB {:6.2} dB {:6.2} dB {:6.2} dB",
            s.mean(s.spectral),
            s.stretch_db(),
            s.mean(s.after),
            s.mean(s.waveform)
        )
    };
    println!(
        "{} chunks, 5 % lost (single chunks) with {SEEDS} seeds: {} lost chunks in speech",
        chunks.len(),
        plc.chunks
    );
    println!(
        "fill     spectral SNR of: lost chunk, damaged stretch, chunk after; waveform SNR of the lost chunk"
    );
    row("plc", &plc);
    row("silence", &silence);

    // The lost chunks themselves: 3 dB means the concealment's spectral
    // error is at most half the energy silence leaves out.
    let lost_chunks = plc.mean(plc.spectral);
    assert!(
        lost_chunks >= 3.0,
        "plc on lost chunks: {lost_chunks:.2} dB"
    );
    assert_eq!(silence.mean(silence.spectral), 0.0);
    // The whole damaged stretch, blends included: 2 dB is an error at most
    // 63 % of silence's. Pooled, the margin is 3.3 dB with 10 seeds as with
    // 40; one seed's 9 or so losses alone range from 0.3 to 5.8 dB.
    let (p, s) = (plc.stretch_db(), silence.stretch_db());
    assert!(
        p >= s + 2.0,
        "damaged stretch: plc {p:.2} dB, silence {s:.2} dB"
    );
    // The blend into the audio after a loss costs little of that chunk.
    let after = plc.mean(plc.after);
    assert!(after >= 15.0, "chunk after a loss: {after:.2} dB");
}
