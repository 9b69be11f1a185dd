//! G.711 μ-law, bit-exact with the ITU-T G.191 reference implementation
//! (`ulaw_compress` / `ulaw_expand`).
//!
//! The encoder follows G.191: the 16-bit input is truncated to 14 bits and then
//! companded. GStreamer's `mulawenc` and CPython's `audioop.lin2ulaw` round a
//! few hundred negative inputs differently; decoding is the same everywhere.
//! Decoding is a table look-up built at compile time; encoding is computed
//! (see [`encode`]).

/// The μ-law code of digital silence (+0).
pub const SILENCE: u8 = 0xFF;

/// Decodes one μ-law code to linear 16-bit PCM.
#[inline]
pub fn decode(code: u8) -> i16 {
    DECODE_TABLE[code as usize]
}

/// Encodes one linear 16-bit PCM sample to μ-law.
///
/// Computed rather than looked up: a 16 KiB table is cold at every frame
/// when a core serves hundreds of calls, and this form (no branches, no
/// variable shifts) vectorises over a slice. G.191 biases the magnitude,
/// then takes its segment (the position of its leading one) and the four
/// bits after that one: exactly the exponent and the top of the mantissa
/// of the magnitude as an `f32`.
#[inline(always)]
pub fn encode(sample: i16) -> u8 {
    let s = sample as i32;
    // 0 for positive inputs, -1 for negative: G.191 folds these by one's complement.
    let sign = s >> 31;
    let magnitude = (((s ^ sign) >> 2) + 33).min(0x1FFF);
    // Exponent e (5..=12 for 33..=8191) and the 4 bits below the leading
    // one, as e·16 + bits: G.191's code is (12 − e)·16 + (15 − bits),
    // inverted as μ-law stores it.
    let top = ((magnitude as f32).to_bits() >> 19) as i32;
    let code = (127 + 12) * 16 + 15 - top;
    (code | (!sign & 0x80)) as u8
}

/// Decodes `codes` into `out`, which must be as long.
pub fn decode_slice(codes: &[u8], out: &mut [i16]) {
    assert_eq!(codes.len(), out.len(), "μ-law decode: length mismatch");
    for (o, &c) in out.iter_mut().zip(codes) {
        *o = decode(c);
    }
}

/// Encodes `samples` into `out`, which must be as long.
pub fn encode_slice(samples: &[i16], out: &mut [u8]) {
    assert_eq!(samples.len(), out.len(), "μ-law encode: length mismatch");
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = encode(s);
    }
}

/// Appends the μ-law codes of `samples` to `out`.
pub fn encode_extend(samples: &[i16], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + samples.len(), 0);
    encode_slice(samples, &mut out[start..]);
}

/// G.191 `ulaw_expand` for one code.
const fn expand(code: u8) -> i16 {
    let negative = code < 0x80;
    // The code is stored inverted: complement to get segment and mantissa.
    let inverted = !code;
    let exponent = ((inverted >> 4) & 0x07) as i32;
    let mantissa = (inverted & 0x0F) as i32;
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    (if negative { -magnitude } else { magnitude }) as i16
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal transcription of the G.191 `ulaw_compress` loop, kept
    /// deliberately naive so the computed encoder is checked against the
    /// algorithm as published rather than against itself.
    fn g191_compress(linbuf: i16) -> u8 {
        let mut absno: i16 = if linbuf < 0 {
            ((!linbuf) >> 2) + 33
        } else {
            (linbuf >> 2) + 33
        };
        if absno > 0x1FFF {
            absno = 0x1FFF;
        }
        let mut i = absno >> 6;
        let mut segno: i16 = 1;
        while i != 0 {
            segno += 1;
            i >>= 1;
        }
        let high_nibble = 0x0008 - segno;
        let mut low_nibble = (absno >> segno) & 0x000F;
        low_nibble = 0x000F - low_nibble;
        let mut out = (high_nibble << 4) | low_nibble;
        if linbuf >= 0 {
            out |= 0x0080;
        }
        out as u8
    }

    /// A literal transcription of G.191 `ulaw_expand`.
    fn g191_expand(logbuf: u8) -> i16 {
        let logbuf = logbuf as i16;
        let sign: i16 = if logbuf < 0x0080 { -1 } else { 1 };
        let mut mantissa = !logbuf;
        let exponent = (mantissa >> 4) & 0x0007;
        let segment = exponent + 1;
        mantissa &= 0x000F;
        let step = 4i16 << segment;
        sign * ((0x0080 << exponent) + step * mantissa + step / 2 - 4 * 33)
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
        assert_eq!(decode(0xFF), 0);
        assert_eq!(decode(0x7F), 0);
        assert_eq!(decode(0x80), 32124);
        assert_eq!(decode(0x00), -32124);
        assert_eq!(encode(0), SILENCE);
        assert_eq!(encode(-1), 0x7F);
        assert_eq!(encode(i16::MAX), 0x80);
        assert_eq!(encode(i16::MIN), 0x00);
    }

    #[test]
    fn decode_then_encode_is_identity_except_negative_zero() {
        for code in 0..=255u8 {
            let back = encode(decode(code));
            // 0x7F (-0) decodes to 0 and re-encodes as +0.
            let expect = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, expect, "code {code:#04x}");
        }
    }

    #[test]
    fn round_trip_error_matches_the_published_figure() {
        // twilio-protocol.md: mean |error| ≈ 170 over all int16 for every encoder.
        let total: u64 = (i16::MIN..=i16::MAX)
            .map(|s| (decode(encode(s)) as i32 - s as i32).unsigned_abs() as u64)
            .sum();
        let mean = total as f64 / 65536.0;
        assert!((160.0..180.0).contains(&mean), "mean |error| {mean}");
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
