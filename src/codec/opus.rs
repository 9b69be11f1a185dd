//! What the src and sink need of an Opus packet without decoding it: how
//! long it plays, from its TOC byte (RFC 6716 §3.1). Decoding is left to
//! GStreamer's `opusdec`.

/// Ticks (125 µs) per frame for each TOC configuration, 0–31: SILK 10, 20,
/// 40, 60 ms; hybrid 10, 20 ms; CELT 2.5, 5, 10, 20 ms.
const FRAME_TICKS: [u64; 32] = [
    80, 160, 320, 480, 80, 160, 320, 480, 80, 160, 320, 480, // SILK NB, MB, WB
    80, 160, 80, 160, // hybrid SWB, FB
    20, 40, 80, 160, 20, 40, 80, 160, 20, 40, 80, 160, 20, 40, 80, 160, // CELT
];

/// The most a packet may play (RFC 6716 §3.2.5: 120 ms), in ticks.
const MAX_TICKS: u64 = 960;

/// How long `packet` plays, in ticks of 125 µs; None for no Opus packet: an
/// empty one, a code-3 packet without its frame count byte or with a count
/// of 0, or one over 120 ms.
pub fn packet_ticks(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let frames = match toc & 0x3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(packet.get(1)? & 0x3F),
    };
    let ticks = FRAME_TICKS[usize::from(toc >> 3)] * frames;
    (frames > 0 && ticks <= MAX_TICKS).then_some(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_the_toc_byte() {
        // config << 3 | stereo << 2 | code
        let cases: [(&[u8], Option<u64>); 13] = [
            (&[1 << 3, 0xAA], Some(160)),        // SILK NB 20 ms, one frame
            (&[3 << 3], Some(480)),              // SILK NB 60 ms
            (&[13 << 3 | 0x4], Some(160)),       // hybrid SWB 20 ms, stereo
            (&[16 << 3], Some(20)),              // CELT NB 2.5 ms
            (&[31 << 3 | 1, 0, 0], Some(320)),   // CELT FB 20 ms, two frames (code 1)
            (&[27 << 3 | 2, 1, 0], Some(320)),   // CELT SWB 20 ms, two frames (code 2)
            (&[28 << 3 | 3, 0x83, 0], Some(60)), // CELT FB 2.5 ms × 3 (code 3, VBR flag)
            (&[28 << 3 | 3], None),              // code 3 without its count
            (&[28 << 3 | 3, 0x80], None),        // code 3, no frames
            (&[3 << 3 | 3, 2, 0], Some(960)),    // SILK NB 60 ms × 2: 120 ms, the most
            (&[3 << 3 | 3, 3, 0], None),         // × 3: 180 ms
            (&[0x1b, 0xff], None),               // SILK NB 60 ms × 63
            (&[], None),
        ];
        for (packet, ticks) in cases {
            assert_eq!(packet_ticks(packet), ticks, "{packet:?}");
        }
    }
}
