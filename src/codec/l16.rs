//! L16: linear 16-bit PCM on the wire, in either byte order. RFC 2586
//! (and Telnyx) send it big-endian (network order); others little-endian.

/// The byte order of L16 samples on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ByteOrder {
    /// Network order, as RFC 2586 specifies.
    #[default]
    Big,
    Little,
}

impl ByteOrder {
    /// Reads one sample from its two bytes.
    #[inline]
    pub fn read(self, bytes: [u8; 2]) -> i16 {
        match self {
            ByteOrder::Big => i16::from_be_bytes(bytes),
            ByteOrder::Little => i16::from_le_bytes(bytes),
        }
    }

    /// The two bytes of one sample.
    #[inline]
    pub fn write(self, sample: i16) -> [u8; 2] {
        match self {
            ByteOrder::Big => sample.to_be_bytes(),
            ByteOrder::Little => sample.to_le_bytes(),
        }
    }
}

/// Decodes whole samples of `bytes` into `out` (cleared first); a trailing
/// odd byte is ignored. Returns whether there was one.
pub fn decode(order: ByteOrder, bytes: &[u8], out: &mut Vec<i16>) -> bool {
    out.clear();
    let pairs = bytes.chunks_exact(2);
    let odd = !pairs.remainder().is_empty();
    out.extend(pairs.map(|p| order.read([p[0], p[1]])));
    odd
}

/// Appends `samples` to `out` as L16 in `order`.
pub fn encode(order: ByteOrder, samples: &[i16], out: &mut Vec<u8>) {
    out.reserve(2 * samples.len());
    for &s in samples {
        out.extend_from_slice(&order.write(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_round_trips_in_both_orders() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        for order in [ByteOrder::Big, ByteOrder::Little] {
            let mut bytes = Vec::new();
            encode(order, &all, &mut bytes);
            assert_eq!(bytes.len(), 2 * all.len());
            let mut back = Vec::new();
            assert!(!decode(order, &bytes, &mut back));
            assert_eq!(back, all, "{order:?}");
        }
    }

    #[test]
    fn byte_orders_are_as_named() {
        let mut big = Vec::new();
        encode(ByteOrder::Big, &[0x1234, -2], &mut big);
        assert_eq!(big, [0x12, 0x34, 0xFF, 0xFE]);
        let mut little = Vec::new();
        encode(ByteOrder::Little, &[0x1234, -2], &mut little);
        assert_eq!(little, [0x34, 0x12, 0xFE, 0xFF]);
        let mut out = Vec::new();
        assert!(decode(ByteOrder::Big, &[0x12, 0x34, 0x56], &mut out));
        assert_eq!(out, [0x1234]);
    }
}
