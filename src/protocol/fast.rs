//! The fast path for the one message that comes 50 times a second per call:
//! `media`. It reads the plain shape Twilio sends (any key order, JSON
//! whitespace, counters as digit strings or numbers) with no serde
//! machinery, and gives up (None) on anything else: escapes, `null`, keys
//! it does not know, repeated keys, other events. Whatever it gives up on,
//! and only that, goes through serde (`Inbound::parse`), so the two can
//! never disagree: where it answers, serde would answer the same
//! (`fast_and_serde_agree` below, and the `parse_message` fuzz target).
//!
//! Why: serde's derive for the envelope of every event cost about 5 k
//! instructions and 8 KiB of code per message, a fifth of what the plugin
//! adds to a frame beyond the floor (README, "Whole calls").

use std::borrow::Cow;

use super::{Counter, Inbound, InboundMedia};

/// A `media` message in the plain shape, or None (then serde decides).
pub(super) fn media(text: &str) -> Option<Inbound<'_>> {
    let mut p = Reader {
        s: text.as_bytes(),
        text,
        at: 0,
    };
    let (mut event, mut seq, mut sid, mut media) = (false, None, None, None);
    p.object(|p, key| match key {
        "event" if !event => {
            event = true;
            (p.string()? == "media").then_some(())
        }
        "sequenceNumber" if seq.is_none() => {
            seq = Some(p.counter()?);
            Some(())
        }
        "streamSid" if sid.is_none() => {
            sid = Some(p.string()?);
            Some(())
        }
        "media" if media.is_none() => {
            media = Some(p.media()?);
            Some(())
        }
        _ => None,
    })?;
    p.ws();
    if p.at != p.s.len() || !event {
        return None;
    }
    Some(Inbound::Media {
        sequence_number: seq,
        stream_sid: Cow::Borrowed(sid?),
        media: media?,
    })
}

struct Reader<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.at) {
            self.at += 1;
        }
    }

    /// Skips whitespace, then takes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        self.ws();
        if self.s.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// `{ "key": value, … }`, each value read by `field` (None: give up).
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if !self.eat(b'{') {
            return None;
        }
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            let key = self.string()?;
            if !self.eat(b':') {
                return None;
            }
            field(self, key)?;
            if self.eat(b'}') {
                return Some(());
            }
            if !self.eat(b',') {
                return None;
            }
        }
    }

    /// A string with no escapes and no control characters, borrowed.
    fn string(&mut self) -> Option<&'a str> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let len = plain_len(&self.s[start..])?;
        if self.s[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // Both ends are ASCII quotes: char boundaries of the &str.
        Some(&self.text[start..start + len])
    }

    /// A counter: digits in a string (`"12"`) or a JSON integer (`12`).
    fn counter(&mut self) -> Option<Counter> {
        self.ws();
        let quoted = self.s.get(self.at) == Some(&b'"');
        let digits = if quoted {
            self.string()?
        } else {
            let start = self.at;
            let len = self.s[start..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .unwrap_or(self.s.len() - start);
            // JSON allows no leading zero; a fraction or exponent is not a counter.
            if len > 1 && self.s[start] == b'0' {
                return None;
            }
            if let Some(b'.' | b'e' | b'E') = self.s.get(start + len) {
                return None;
            }
            self.at = start + len;
            &self.text[start..start + len]
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok().map(Counter)
    }

    /// The `media` object: `track` (default `inbound`), `chunk`,
    /// `timestamp` and `payload`.
    fn media(&mut self) -> Option<InboundMedia<'a>> {
        let (mut track, mut chunk, mut timestamp, mut payload) = (None, None, None, None);
        self.object(|p, key| {
            match key {
                "track" if track.is_none() => track = Some(p.string()?),
                "chunk" if chunk.is_none() => chunk = Some(p.counter()?),
                "timestamp" if timestamp.is_none() => timestamp = Some(p.counter()?),
                "payload" if payload.is_none() => payload = Some(p.string()?),
                _ => return None,
            }
            Some(())
        })?;
        Some(InboundMedia {
            track: Cow::Borrowed(track.unwrap_or("inbound")),
            chunk,
            timestamp: timestamp?,
            payload: Cow::Borrowed(payload?),
        })
    }
}

/// Where the first `"`, `\\` or control character is in `s`, if anywhere:
/// sixteen bytes at a time with SSE2 (part of every x86-64), the rest
/// eight at a time (a payload is a few hundred plain bytes).
fn plain_len(s: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut at = 0;
        while at + 16 <= s.len() {
            // SAFETY: SSE2 is in x86-64's baseline; the load is unaligned
            // and within `s`.
            let mask = unsafe {
                let x = _mm_loadu_si128(s.as_ptr().add(at).cast());
                let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
                let backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
                // x ≤ 0x1F (unsigned) exactly when min(x, 0x1F) is x.
                let control = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1F)), x);
                _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control))
            };
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at += 16;
        }
        plain_len_swar(&s[at..]).map(|i| at + i)
    }
    #[cfg(not(target_arch = "x86_64"))]
    plain_len_swar(s)
}

/// [`plain_len`] eight bytes at a time in a `u64`.
fn plain_len_swar(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte of `x` that is zero: exact up to the first
    // such byte (a borrow only runs on past a zero byte).
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().unwrap());
        let special = zero(x ^ (ONES * b'"' as u64))
            | zero(x ^ (ONES * b'\\' as u64))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGHS);
        if special != 0 {
            // Little-endian: the lowest flagged byte is the first.
            return Some(at + special.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(text: &str) -> Option<Inbound<'_>> {
        serde_json::from_str(text).ok()
    }

    /// The fast path answers `text`, and as serde does.
    fn agrees(text: &str) -> Inbound<'_> {
        let fast = media(text).unwrap_or_else(|| panic!("fast path gave up on {text}"));
        assert_eq!(Some(&fast), serde(text).as_ref(), "{text}");
        fast
    }

    /// The fast path leaves `text` to serde.
    fn declines(text: &str) {
        assert_eq!(media(text), None, "{text}");
    }

    const PLAIN: &str = r#"{"event":"media","sequenceNumber":"3","streamSid":"MZ1","media":{"track":"inbound","chunk":"2","timestamp":"20","payload":"/38A"}}"#;

    #[test]
    fn reads_twilios_media_message() {
        let Inbound::Media {
            sequence_number,
            stream_sid,
            media,
        } = agrees(PLAIN)
        else {
            panic!("not media")
        };
        assert_eq!(sequence_number, Some(Counter(3)));
        assert_eq!(stream_sid, "MZ1");
        assert_eq!(media.track, "inbound");
        assert_eq!(media.chunk, Some(Counter(2)));
        assert_eq!(media.timestamp, Counter(20));
        assert_eq!(media.payload, "/38A");
        // Borrowed from the frame, as serde's are.
        assert!(matches!(stream_sid, Cow::Borrowed(_)));
        assert!(matches!(media.payload, Cow::Borrowed(_)));
    }

    #[test]
    fn reads_other_orders_spacing_numbers_and_defaults() {
        for text in [
            r#"{"media":{"payload":"/38A","timestamp":"20","chunk":"2","track":"outbound"},"streamSid":"MZ1","event":"media","sequenceNumber":"3"}"#,
            " {\n\t\"event\" : \"media\" ,\r\n \"streamSid\":\"MZ1\", \"media\": { \"timestamp\" : 20 , \"payload\" : \"\" } } \n",
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":0,"chunk":18446744073709551615,"payload":"AA=="}}"#,
            r#"{"event":"media","streamSid":"","media":{"timestamp":"007","payload":"AA=="}}"#,
            r#"{"event":"media","streamSid":"MZé","media":{"track":"ünbound","timestamp":"1","payload":"AA=="}}"#,
        ] {
            agrees(text);
        }
    }

    #[test]
    fn leaves_everything_else_to_serde() {
        for text in [
            // Other events, and what serde reads differently or refuses.
            r#"{"event":"mark","streamSid":"MZ1","mark":{"name":"a"}}"#,
            r#"{"event":"stop","streamSid":"MZ1"}"#,
            r#"{"event":"media","streamSid":"MZ1"}"#,
            r#"{"streamSid":"MZ1","media":{"timestamp":"1","payload":""}}"#,
            r#"{"event":"media","media":{"timestamp":"1","payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"1"}}"#,
            // Escapes, control characters, null, unknown and repeated keys.
            r#"{"event":"media","streamSid":"MZ\u0031","media":{"timestamp":"1","payload":""}}"#,
            r#"{"event":"me\dia","streamSid":"MZ1","media":{"timestamp":"1","payload":""}}"#,
            "{\"event\":\"media\",\"streamSid\":\"MZ\t1\",\"media\":{\"timestamp\":\"1\",\"payload\":\"\"}}",
            r#"{"event":"media","sequenceNumber":null,"streamSid":"MZ1","media":{"timestamp":"1","payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","extra":1,"media":{"timestamp":"1","payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"1","payload":"","x":[]}}"#,
            r#"{"event":"media","streamSid":"MZ1","streamSid":"MZ2","media":{"timestamp":"1","payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"1","timestamp":"2","payload":""}}"#,
            // Counters serde reads its own way (or refuses).
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":" 1 ","payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"+1","payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"","payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":01,"payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":1.0,"payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":1e3,"payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":-1,"payload":""}}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"18446744073709551616","payload":""}}"#,
            // Not one whole object.
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"1","payload":""}} x"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"1","payload":""}"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"1","payload":""},}"#,
            r#"{"event":"media" "streamSid":"MZ1","media":{"timestamp":"1","payload":""}}"#,
            r#"[{"event":"media"}]"#,
            "",
            "{",
            r#"{"event":"#,
            r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"1","payload":"#,
        ] {
            declines(text);
        }
    }

    #[test]
    fn plain_len_finds_the_first_special_byte_wherever_it_is() {
        for plain_len in [plain_len, plain_len_swar] {
            first_special_found_by(plain_len);
        }
    }

    fn first_special_found_by(plain_len: fn(&[u8]) -> Option<usize>) {
        // Plain bytes next to the special ones, and UTF-8 bytes.
        let neighbours = [0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x80, 0xC3, 0xFF, b'a'];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| neighbours[i % neighbours.len()]).collect();
            assert_eq!(plain_len(&plain), None);
            for at in 0..len {
                for special in [b'"', b'\\', 0x00, 0x1F, b'\n'] {
                    let mut s = plain.clone();
                    s[at] = special;
                    // A later special byte does not hide the first.
                    if at + 1 < len {
                        s[len - 1] = b'"';
                    }
                    assert_eq!(plain_len(&s), Some(at), "{len} {at} {special}");
                }
            }
        }
        // Every byte value, in and around each block of either width.
        let special = |s: &[u8]| s.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        for byte in 0..=255u8 {
            for at in [0, 1, 7, 8, 15, 16, 17, 31, 32, 39] {
                let mut s = vec![b'a'; 40];
                s[at] = byte;
                assert_eq!(plain_len(&s), special(&s), "{byte:#x} at {at}");
            }
        }
    }

    /// Every prefix, and every one-byte change, of the plain message:
    /// wherever the fast path answers, serde answers the same.
    #[test]
    fn fast_and_serde_agree() {
        let check = |text: &str| {
            if let Some(fast) = media(text) {
                assert_eq!(Some(fast), serde(text), "{text}");
            }
        };
        let spaced = PLAIN.replace(',', " , ").replace(':', " : ");
        for base in [PLAIN, spaced.as_str()] {
            for end in 0..=base.len() {
                check(&base[..end]);
            }
            for i in 0..base.len() {
                for b in [
                    b' ', b'"', b'\\', b'0', b'9', b'{', b'}', b',', b':', b'x', b'\n',
                ] {
                    let mut bytes = base.as_bytes().to_vec();
                    bytes[i] = b;
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        check(text);
                    }
                    bytes.insert(i, b);
                    if let Ok(text) = std::str::from_utf8(&bytes) {
                        check(text);
                    }
                }
            }
        }
    }
}
