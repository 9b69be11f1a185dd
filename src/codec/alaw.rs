//! G.711 A-law, bit-exact with the ITU-T G.191 reference implementation
//! (`alaw_compress` / `alaw_expand`).
//!
//! G.191 keeps the top 12 bits of the magnitude (the 16-bit input shifted
//! right by 4, negative inputs one's-complemented first), finds the segment
//! by the position of the leading one, and inverts every even bit of the
//! code (XOR 0x55). Decoding puts each code at the middle of its step. Both
//! directions are table look-ups built at compile time.

/// The A-law code of digital silence (+0).
pub const SILENCE: u8 = 0xD5;

/// Decodes one A-law code to linear 16-bit PCM.
#[inline]
pub fn decode(code: u8) -> i16 {
    DECODE_TABLE[code as usize]
}

/// Encodes one linear 16-bit PCM sample to A-law.
#[inline]
pub fn encode(sample: i16) -> u8 {
    // Only the top 12 bits take part: index the table by them.
    ENCODE_TABLE[((sample >> 4) as u16 & 0x0FFF) as usize]
}

/// Decodes `codes` into `out`, which must be as long.
pub fn decode_slice(codes: &[u8], out: &mut [i16]) {
    assert_eq!(codes.len(), out.len(), "A-law decode: length mismatch");
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = decode(c);
    }
}

/// Encodes `samples` into `out`, which must be as long.
pub fn encode_slice(samples: &[i16], out: &mut [u8]) {
    assert_eq!(samples.len(), out.len(), "A-law encode: length mismatch");
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = encode(s);
    }
}

/// G.191 `alaw_expand` for one code.
const fn expand(code: u8) -> i16 {
    let plain = (code ^ 0x55) & 0x7F;
    let segment = (plain >> 4) as i32;
    let mut step = (plain & 0x0F) as i32;
    if segment > 0 {
        // The leading one the encoder dropped.
        step += 16;
    }
    let mut magnitude = (step << 4) + 8;
    if segment > 1 {
        magnitude <<= segment - 1;
    }
    (if code & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    }) as i16
}

/// G.191 `alaw_compress` for one sample.
const fn compress(sample: i16) -> u8 {
    let folded = if sample < 0 { !sample } else { sample };
    let magnitude = (folded >> 4) as u32;
    let code = if magnitude < 16 {
        magnitude
    } else {
        // Segment: how far the leading one sits above bit 4.
        let segment = 28 - magnitude.leading_zeros();
        let mantissa = (magnitude >> (segment - 1)) & 0x0F;
        (segment << 4) | mantissa
    } as u8;
    let signed = if sample >= 0 { code | 0x80 } else { code };
    signed ^ 0x55
}

static DECODE_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = expand(i as u8);
        i += 1;
    }
    table
};

static ENCODE_TABLE: [u8; 1 << 12] = {
    let mut table = [0u8; 1 << 12];
    let mut i = 0;
    while i < (1 << 12) {
        // Sign-extend the 12-bit index back to the sample it stands for.
        let top12 = ((i as i16) << 4) >> 4;
        table[i] = compress(top12 << 4);
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The G.191 `alaw_compress` steps, written out one by one (a loop
    /// finding the segment by shifting) so the table-driven encoder is
    /// checked against the published algorithm rather than against itself.
    fn g191_compress(linbuf: i16) -> u8 {
        // One's complement of negative inputs, then 12 bits of magnitude.
        let mut ix: i16 = if linbuf < 0 {
            (!linbuf) >> 4
        } else {
            linbuf >> 4
        };
        if ix > 15 {
            let mut iexp: i16 = 1;
            while ix > 16 + 15 {
                ix >>= 1;
                iexp += 1;
            }
            // Drop the leading one, put the segment above the mantissa.
            ix -= 16;
            ix += iexp << 4;
        }
        if linbuf >= 0 {
            ix |= 0x0080;
        }
        (ix ^ 0x0055) as u8
    }

    /// The G.191 `alaw_expand` steps.
    fn g191_expand(logbuf: u8) -> i16 {
        let ix = (logbuf as i16 ^ 0x0055) & 0x007F;
        let iexp = ix >> 4;
        let mut mant = ix & 0x000F;
        if iexp > 0 {
            mant += 16;
        }
        mant = (mant << 4) + 0x0008;
        if iexp > 1 {
            mant <<= iexp - 1;
        }
        if logbuf > 127 { mant } else { -mant }
    }

    #[test]
    fn decode_matches_g191_on_all_codes() {
        for code in 0..=255u8 {
            assert_eq!(decode(code), g191_expand(code), "code {code:#04x}");
        }
    }

    #[test]
    fn encode_matches_g191_on_every_int16() {
        for s in i16::MIN..=i16::MAX {
            assert_eq!(encode(s), g191_compress(s), "sample {s}");
        }
    }

    #[test]
    fn reference_points() {
        // G.711 Table 1/2: the smallest steps and the extremes.
        assert_eq!(decode(0xD5), 8);
        assert_eq!(decode(0x55), -8);
        assert_eq!(decode(0xAA), 32256);
        assert_eq!(decode(0x2A), -32256);
        assert_eq!(encode(0), SILENCE);
        assert_eq!(encode(-1), 0x55);
        assert_eq!(encode(i16::MAX), 0xAA);
        assert_eq!(encode(i16::MIN), 0x2A);
    }

    #[test]
    fn decode_then_encode_is_identity() {
        for code in 0..=255u8 {
            assert_eq!(encode(decode(code)), code, "code {code:#04x}");
        }
    }

    #[test]
    fn decoding_is_symmetric_and_monotonic_in_the_segments() {
        let mut last = 0;
        for plain in 0..=127u8 {
            let positive = decode((plain | 0x80) ^ 0x55);
            assert_eq!(decode(plain ^ 0x55), -positive, "code {plain:#04x}");
            assert!(positive > last, "{plain:#04x}: {positive} after {last}");
            last = positive;
        }
    }

    #[test]
    fn slices() {
        let pcm = [0i16, 1000, -1000, 32767, -32768];
        let mut codes = [0u8; 5];
        encode_slice(&pcm, &mut codes);
        let mut back = [0i16; 5];
        decode_slice(&codes, &mut back);
        for (a, b) in pcm.iter().zip(back) {
            assert!((*a as i32 - b as i32).abs() <= 1024, "{a} vs {b}");
        }
    }
}
