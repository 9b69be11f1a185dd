//! The codec on arbitrary audio split at arbitrary places: never panics,
//! gives the same output however the input is split, and μ-law round trips
//! stay within one quantisation step.

#![no_main]

use gsttwiliostream::codec::{Downsampler, Upsampler, g711, resample::DOWNSAMPLER_RATES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((&split_seed, rest)) = rest.split_first() else {
        return;
    };
    let samples: Vec<i16> = rest
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    // Chunk sizes 1..=64 from the seed, cycling.
    let sizes: Vec<usize> = (0..8).map(|i| ((split_seed as usize >> i) & 0x3F) + 1).collect();
    let split = |input: &[i16]| -> Vec<Vec<i16>> {
        let mut out = Vec::new();
        let mut rest = input;
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at((*size).min(rest.len()));
            out.push(a.to_vec());
            rest = b;
        }
        out
    };

    let rate = DOWNSAMPLER_RATES[selector as usize % DOWNSAMPLER_RATES.len()];
    let mut whole = Vec::new();
    Downsampler::new(rate).unwrap().process(&samples, &mut whole);
    let mut pieces = Vec::new();
    let mut down = Downsampler::new(rate).unwrap();
    for piece in split(&samples) {
        down.process(&piece, &mut pieces);
    }
    assert_eq!(whole, pieces);

    let mut up_whole = vec![0; 2 * samples.len()];
    Upsampler::new().process(&samples, &mut up_whole);
    let mut up = Upsampler::new();
    let mut up_pieces = Vec::new();
    for piece in split(&samples) {
        let mut out = vec![0; 2 * piece.len()];
        up.process(&piece, &mut out);
        up_pieces.extend(out);
    }
    assert_eq!(up_whole, up_pieces);

    for &s in &samples {
        let back = g711::decode(g711::encode(s)) as i32;
        // The largest μ-law step is 1024 (half of it either way), plus the clip at ±32124.
        assert!((back - s as i32).abs() <= 1024 + 644, "{s} -> {back}");
    }
});
