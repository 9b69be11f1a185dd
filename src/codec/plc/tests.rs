//! The concealer on synthetic speech: pitch found, losses concealed close
//! to the signal, fading to silence, blended back, its state fetched ahead.

use super::*;
use std::f64::consts::PI;

/// The ranges a chunk's prefetch covers hold `head`, `phase` and every
/// ring position the chunk writes (wrapping around the ring too), and
/// none of the pitch buffer.
#[test]
fn hot_ranges_cover_what_a_good_chunk_writes_and_not_the_pitch_buffer() {
    let within = |(a, len): (usize, usize), p: usize, n: usize| a <= p && p + n <= a + len;
    let mut c = Concealer::new();
    let mut wrapped = false;
    // Heads 0, 160, 320 (wraps), 90, 250 (wraps), 20...
    for _ in 0..8 {
        let [fields, history] = c.hot_ranges(160);
        assert!(within(fields, &c.head as *const usize as usize, 8));
        assert!(within(fields, &c.phase as *const Phase as usize, 1));
        let ring = c.history.as_ptr() as usize;
        for i in 0..160 {
            let p = ring + 2 * ((c.head + i) % HISTORY);
            assert!(within(fields, p, 2) || within(history, p, 2), "sample {i}");
        }
        wrapped |= c.head + 160 > HISTORY;
        let pitch = c.pitch_buf.as_ptr() as usize;
        assert!(fields.0 + fields.1 <= pitch && history.0 + history.1 <= pitch);
        c.good(&mut [100; 160]);
    }
    assert!(wrapped);
    // A chunk longer than the ring: all of it, in two ranges that meet.
    let [fields, history] = c.hot_ranges(10 * HISTORY);
    let ring = c.history.as_ptr() as usize;
    assert_eq!(fields.0 + fields.1, history.0);
    assert_eq!(history.0 + history.1, ring + 2 * HISTORY);
}

/// A voiced-speech-like signal: harmonics of `f0` up to 3.4 kHz with
/// amplitudes falling as 1/h, fixed phases, peak near `amp`.
fn voiced(f0: f64, len: usize, amp: f64) -> Vec<i16> {
    let harmonics = (3400.0 / f0) as usize;
    let norm: f64 = (1..=harmonics).map(|h| 1.0 / h as f64).sum();
    (0..len)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let v: f64 = (1..=harmonics)
                .map(|h| (2.0 * PI * f0 * h as f64 * t + 0.7 * h as f64).sin() / h as f64)
                .sum();
            (amp * v / norm * 1.8).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Runs `signal` through a concealer in 20 ms chunks, losing the chunks
/// `lost` says; returns the output.
fn run(signal: &[i16], chunk: usize, lost: impl Fn(usize) -> bool) -> Vec<i16> {
    let mut plc = Concealer::new();
    let mut out = signal.to_vec();
    for (i, c) in out.chunks_mut(chunk).enumerate() {
        if lost(i) {
            plc.conceal(c);
        } else {
            plc.good(c);
        }
    }
    out
}

/// SNR in dB of `test` against `reference`.
fn snr(reference: &[i16], test: &[i16]) -> f64 {
    let sig: f64 = reference.iter().map(|&v| f64::from(v).powi(2)).sum();
    let noise: f64 = reference
        .iter()
        .zip(test)
        .map(|(&r, &t)| (f64::from(r) - f64::from(t)).powi(2))
        .sum();
    10.0 * (sig / noise).log10()
}

fn max_step(x: &[i16]) -> i32 {
    x.windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap()
}

#[test]
fn finds_the_pitch_of_a_periodic_signal() {
    for period in [40usize, 57, 83, 120] {
        let x = voiced(8000.0 / period as f64, HISTORY, 8000.0);
        let mut h = [0.0; HISTORY];
        for (h, &v) in h.iter_mut().zip(&x) {
            *h = f32::from(v);
        }
        // A whole multiple of the period predicts as well: the coarse
        // search on every second lag may land on twice an odd period.
        let found = estimate_pitch(&h);
        assert!(
            found == period || found == 2 * period,
            "period {period}: found {found}"
        );
    }
}

#[test]
fn a_lost_chunk_of_a_periodic_signal_is_continued() {
    // 200 Hz (period 40) and 130 Hz (61.5 samples: no whole period).
    // Silence scores 0 dB. With a whole period the repetition is exact
    // and only the fade after 10 ms differs; with 61.5 samples the
    // repetition drifts by half a sample per period.
    for (f0, min_snr) in [(200.0, 20.0), (130.0, 6.0)] {
        let x = voiced(f0, 8000, 8000.0);
        let lost = 20; // 400..420 ms
        let y = run(&x, 160, |i| i == lost);
        let span = lost * 160..(lost + 1) * 160;
        let plc = snr(&x[span.clone()], &y[span.clone()]);
        let silence = snr(&x[span.clone()], &[0; 160]);
        assert!((silence - 0.0).abs() < 1e-9);
        println!("{f0} Hz: concealment {plc:.1} dB");
        assert!(plc > min_snr, "{f0} Hz: {plc:.1} dB");
        // The audio after the loss is back to the original once the
        // overlap-add is over (here at most 10 ms).
        let after = (lost + 1) * 160 + FRAME..(lost + 3) * 160;
        assert_eq!(x[after.clone()], y[after]);
    }
}

#[test]
fn concealment_fades_to_exact_silence_after_60_ms_and_stays() {
    let x = voiced(150.0, 20000, 12000.0);
    // 2 s lost after 200 ms, concealed in 20 ms chunks.
    let y = run(&x, 160, |i| (10..110).contains(&i));
    let loss = &y[1600..1600 + 16000];
    let peak = |r: std::ops::Range<usize>| loss[r].iter().map(|v| v.unsigned_abs()).max();
    let full = peak(0..FRAME).unwrap();
    assert!(full > 8000, "first 10 ms at full level: {full}");
    // Each later 10 ms is at most the gain at its start allows.
    for frame in 1..6 {
        let g = gain(frame * FRAME);
        let p = peak(frame * FRAME..(frame + 1) * FRAME).unwrap();
        assert!(
            f32::from(p) <= g * f32::from(full) * 1.3 + 1.0,
            "{frame}: {p}"
        );
        assert!(p > 0, "not silent before 60 ms ({frame})");
    }
    assert!(loss[SILENT_AFTER..].iter().all(|&v| v == 0));
    assert!(
        loss[SILENT_AFTER - 10..SILENT_AFTER]
            .iter()
            .any(|&v| v != 0)
    );
}

#[test]
fn no_step_where_the_loss_starts() {
    // A tone whose level jumps by 8000 ten samples before the loss: a
    // plain repetition of the period before would jump back by as much.
    // Spread over a quarter period (at least 10 samples here), the jump
    // adds at most 8000 / 11 to a step.
    let mut x = voiced(180.0, 3200, 1000.0);
    for v in &mut x[1590..] {
        *v += 8000;
    }
    let natural = max_step(&x[1200..1590]);
    let y = run(&x, 160, |i| i == 10);
    let start = max_step(&y[1590..1640]);
    assert!(
        start <= natural + 8000 / 11,
        "step at loss start {start}, signal's own {natural}"
    );
}

#[test]
fn no_step_where_the_audio_comes_back() {
    // A 200 Hz cosine returns phase-inverted at one of its peaks: a
    // plain switch back would step by nearly twice the amplitude.
    for lost_chunks in [1usize, 3] {
        let back = 1600 + 160 * lost_chunks;
        let x: Vec<i16> = (0..3200)
            .map(|n| {
                let v = (6000.0 * (2.0 * PI * 200.0 * n as f64 / 8000.0).cos()).round();
                if n < back { v as i16 } else { -v as i16 }
            })
            .collect();
        let natural = max_step(&x[..1600]);
        let y = run(&x, 160, |i| (10..10 + lost_chunks).contains(&i));
        let step = max_step(&y[back - 40..back + 120]);
        assert!(
            step <= natural * 3 / 2,
            "{lost_chunks} lost: step {step}, signal's own {natural}"
        );
    }
}

#[test]
fn silence_conceals_to_silence() {
    let mut plc = Concealer::new();
    let mut out = [7i16; 333];
    plc.conceal(&mut out);
    assert!(out.iter().all(|&v| v == 0));
    let x = vec![0i16; 2000];
    let y = run(&x, 160, |i| i % 3 == 1);
    assert!(y.iter().all(|&v| v == 0));
}

#[test]
fn chunk_sizes_do_not_change_the_output() {
    // Any split of the same good/lost pattern gives the same samples,
    // including a recovery blend that spans several short chunks.
    let x = voiced(110.0, 4800, 9000.0);
    let pattern = |n: usize| (1600..1760).contains(&n) || (2400..2405).contains(&n);
    let whole = {
        let mut plc = Concealer::new();
        let mut y = x.clone();
        let mut n = 0;
        while n < y.len() {
            let lost = pattern(n);
            let end = (n..y.len())
                .find(|&m| pattern(m) != lost)
                .unwrap_or(y.len());
            if lost {
                plc.conceal(&mut y[n..end]);
            } else {
                plc.good(&mut y[n..end]);
            }
            n = end;
        }
        y
    };
    for sizes in [[1usize, 7, 33, 119], [3, 5, 13, 160]] {
        let mut plc = Concealer::new();
        let mut y = x.clone();
        let (mut n, mut k) = (0, 0);
        while n < y.len() {
            let lost = pattern(n);
            let run_end = (n..y.len())
                .find(|&m| pattern(m) != lost)
                .unwrap_or(y.len());
            let end = (n + sizes[k % sizes.len()]).min(run_end);
            k += 1;
            if lost {
                plc.conceal(&mut y[n..end]);
            } else {
                plc.good(&mut y[n..end]);
            }
            n = end;
        }
        assert_eq!(y, whole, "sizes {sizes:?}");
    }
}

#[test]
fn losses_shorter_than_a_pitch_period() {
    // 120 Hz (66.7 samples): lose 1, 10 and 30 samples.
    let x = voiced(120.0, 4000, 8000.0);
    for lost in [1usize, 10, 30] {
        let mut plc = Concealer::new();
        let mut y = x.clone();
        let (a, b) = y.split_at_mut(2000);
        plc.good(a);
        let (gap, rest) = b.split_at_mut(lost);
        plc.conceal(gap);
        plc.good(rest);
        let span = 2000..2000 + lost;
        let err = snr(&x[span.clone()], &y[span]);
        assert!(err > 6.0, "{lost} lost: {err:.1} dB");
        let natural = max_step(&x);
        let step = max_step(&y[1990..2100]);
        assert!(
            step <= natural * 3 / 2,
            "{lost} lost: step {step} vs {natural}"
        );
        assert_eq!(x[2200..], y[2200..]);
    }
}

#[test]
fn reset_forgets_the_history() {
    let mut plc = Concealer::new();
    let mut x = voiced(150.0, 800, 8000.0);
    plc.good(&mut x);
    plc.reset();
    let mut out = [1i16; 160];
    plc.conceal(&mut out);
    assert_eq!(out, [0; 160]);
}
