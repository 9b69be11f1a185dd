//! The sink's audio path without GStreamer or a call: input bytes (S16LE at
//! a pipeline rate, μ-law or A-law) become the call's format (μ-law by
//! default; A-law or L16 at 8/16/24 kHz when the call carries it), cut into
//! `chunk-duration` frames. G.722 and Opus input pass through to a call in
//! the same codec only: G.722 bytes cut into frames like G.711, each Opus
//! packet a frame of its own. Sending the frames, counting them, marks and
//! `clear` messages are the element's (`imp.rs`).
//!
//! Frames are slices of one pending buffer, and the scratch buffers are
//! reused: once they have grown, pushing and framing allocate nothing.

use crate::codec::resample::RATES;
use crate::codec::{Resampler, WireFormat, alaw, g711};

/// What the sink pad receives, from the caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// Mono S16LE at this rate (one of the resampler's rates).
    Pcm(u32),
    /// 8 kHz mono μ-law; framed as it is for a μ-law call.
    Mulaw,
    /// 8 kHz mono A-law; framed as it is for an A-law call.
    Alaw,
    /// G.722 (64 kbit/s): for a G.722 call only, framed as it is.
    G722,
    /// Opus packets: for an Opus call only, one frame each.
    Opus,
}

/// A PCM rate the resampler does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsupportedRate(pub u32);

/// Why [`Framer::push`] took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotNegotiated {
    /// Input pushed before [`Framer::set_input`].
    NoInput,
    /// Compressed input for a call in another codec, or input the call's
    /// compressed codec cannot be made from: nothing converts them.
    Mismatch(Input, WireFormat),
}

/// What [`Framer::push`] noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pushed {
    /// The input ended inside a 16-bit sample: its first byte waits for the
    /// next push. Buffers should hold whole samples.
    pub split_sample: bool,
}

/// Which frames [`Framer::send_frames`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Whole frames only; the partial rest stays pending.
    WholeFrames,
    /// Everything pending, the partial rest as a last, shorter frame (before
    /// a mark, at EOS), padded with silence to the provider's minimum.
    All,
}

/// Input to the call's format: bytes as they are, or through PCM.
#[allow(
    clippy::large_enum_variant,
    reason = "one per sink, held inline as the downsampler always was"
)]
enum Encoding {
    /// G.711 or G.722 input in the call's own codec.
    Passthrough,
    /// Opus packets for an Opus call: each pushed one is a frame.
    Packets,
    /// Nothing converts this input to the call's codec.
    Mismatch,
    /// Decoded (if G.711) to PCM at `rate`, resampled, encoded.
    Pcm { input: Input, resampler: Resampler },
}

/// Turns input into frames of `frame_ticks` ticks (125 µs) of the call's
/// format.
pub struct Framer {
    input: Option<Input>,
    target: WireFormat,
    encoding: Option<Encoding>,
    frame_ticks: usize,
    /// Shorter last frames are padded to this many ticks.
    min_ticks: usize,
    /// Input as samples, and resampled to the call's rate (scratch, reused).
    pcm: Vec<i16>,
    pcm8k: Vec<i16>,
    /// Encoded audio not handed out yet (less than a frame after `send_frames`).
    pending: Vec<u8>,
    /// With Opus, where each pending packet ends in `pending`.
    packet_ends: Vec<usize>,
    /// The first byte of a 16-bit sample split across pushes.
    odd_byte: Option<u8>,
    /// Samples handed out so far: the index of the first pending one.
    emitted: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new(0)
    }
}

impl Framer {
    /// A framer cutting `frame_ticks` ticks per frame (8 per millisecond;
    /// as many μ-law bytes), for a μ-law call until [`set_target`](Self::set_target).
    pub fn new(frame_ticks: usize) -> Self {
        Framer {
            input: None,
            target: WireFormat::PCMU,
            encoding: None,
            frame_ticks,
            min_ticks: 0,
            pcm: Vec::new(),
            pcm8k: Vec::new(),
            pending: Vec::new(),
            packet_ends: Vec::new(),
            odd_byte: None,
            emitted: 0,
        }
    }

    /// Bytes per whole frame of the call's format.
    pub fn frame_bytes(&self) -> usize {
        self.frame_ticks * self.target.bytes_per_tick()
    }

    /// How long a whole frame plays, in milliseconds.
    pub fn frame_ms(&self) -> u64 {
        self.frame_ticks as u64 / 8
    }

    /// The call's format, which frames are in.
    #[cfg(test)]
    pub fn target(&self) -> WireFormat {
        self.target
    }

    /// Sets what the input is (from new caps). A pending split sample is
    /// dropped; pending audio is kept. On error nothing changes.
    pub fn set_input(&mut self, input: Input) -> Result<(), UnsupportedRate> {
        if let Input::Pcm(rate) = input
            && !RATES.contains(&rate)
        {
            return Err(UnsupportedRate(rate));
        }
        self.input = Some(input);
        self.encoding = Some(self.encoding_for(input));
        self.odd_byte = None;
        Ok(())
    }

    /// Sets the call's format, and the provider's shortest frame in ticks
    /// (frames are made at least that long). Pending audio is dropped.
    pub fn set_target(&mut self, target: WireFormat, min_ticks: usize) {
        self.target = target;
        self.min_ticks = min_ticks;
        self.frame_ticks = self.frame_ticks.max(min_ticks);
        self.pending.clear();
        self.packet_ends.clear();
        if let Some(input) = self.input {
            self.encoding = Some(self.encoding_for(input));
        }
    }

    fn encoding_for(&self, input: Input) -> Encoding {
        let own = match input {
            Input::Mulaw => self.target == WireFormat::PCMU,
            Input::Alaw => self.target == WireFormat::PCMA,
            Input::G722 => self.target == WireFormat::G722,
            Input::Opus if self.target == WireFormat::OPUS => return Encoding::Packets,
            Input::Opus | Input::Pcm(_) => false,
        };
        if own {
            return Encoding::Passthrough;
        }
        let rate = match input {
            Input::Pcm(rate) => rate,
            Input::Mulaw | Input::Alaw => 8000,
            Input::G722 | Input::Opus => return Encoding::Mismatch,
        };
        if self.target.is_compressed() {
            return Encoding::Mismatch;
        }
        Encoding::Pcm {
            input,
            resampler: Resampler::new(rate, self.target.rate).expect("supported rates"),
        }
    }

    /// The resampler's delay, 0 without one (or before an input is set).
    pub fn delay_ns(&self) -> u64 {
        match &self.encoding {
            Some(Encoding::Pcm { resampler, .. }) => resampler.delay_ns(),
            _ => 0,
        }
    }

    /// Encoded audio not handed out yet.
    #[cfg(test)]
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// The index, in ticks, of the next audio [`push`](Self::push) will
    /// produce (ticks handed out and pending so far).
    pub fn produced(&self) -> u64 {
        self.emitted + self.pending_ticks(&self.pending)
    }

    /// How long pending `bytes` play, in ticks (Opus: packet by packet).
    fn pending_ticks(&self, bytes: &[u8]) -> u64 {
        if self.target.codec != crate::codec::Codec::Opus {
            return (bytes.len() / self.target.bytes_per_tick()) as u64;
        }
        let mut start = 0;
        let mut ticks = 0;
        for &end in self.packet_ends.iter().take_while(|&&e| e <= bytes.len()) {
            ticks += self.target.payload_ticks(&bytes[start..end]);
            start = end;
        }
        ticks
    }

    /// Converts `data` and appends it to the pending audio.
    pub fn push(&mut self, data: &[u8]) -> Result<Pushed, NotNegotiated> {
        let mut pushed = Pushed::default();
        let target = self.target;
        match self.encoding.as_mut().ok_or(NotNegotiated::NoInput)? {
            Encoding::Passthrough => self.pending.extend_from_slice(data),
            Encoding::Packets => {
                if !data.is_empty() {
                    self.pending.extend_from_slice(data);
                    self.packet_ends.push(self.pending.len());
                }
            }
            Encoding::Mismatch => {
                let input = self.input.ok_or(NotNegotiated::NoInput)?;
                return Err(NotNegotiated::Mismatch(input, target));
            }
            Encoding::Pcm {
                input: input @ (Input::Mulaw | Input::Alaw),
                resampler,
            } => {
                let decode = match input {
                    Input::Mulaw => g711::decode,
                    _ => alaw::decode,
                };
                self.pcm.clear();
                self.pcm.extend(data.iter().map(|&c| decode(c)));
                self.pcm8k.clear();
                resampler.process(&self.pcm, &mut self.pcm8k);
                target.encode(&self.pcm8k, &mut self.pending);
            }
            Encoding::Pcm { resampler, .. } => {
                let mut data = data;
                self.pcm.clear();
                if let Some(first) = self.odd_byte.take() {
                    match data.split_first() {
                        Some((&second, rest)) => {
                            self.pcm.push(i16::from_le_bytes([first, second]));
                            data = rest;
                        }
                        // An empty buffer: the byte still waits.
                        None => self.odd_byte = Some(first),
                    }
                }
                let samples = data.chunks_exact(2);
                if let [last] = samples.remainder() {
                    self.odd_byte = Some(*last);
                    pushed.split_sample = true;
                }
                self.pcm
                    .extend(samples.map(|b| i16::from_le_bytes([b[0], b[1]])));
                self.pcm8k.clear();
                resampler.process(&self.pcm, &mut self.pcm8k);
                target.encode(&self.pcm8k, &mut self.pending);
            }
        }
        Ok(pushed)
    }

    /// Pushes the resampler's tail out with silence, so that the last input
    /// is pending too (at EOS). Nothing without a resampler delay.
    pub fn push_resampler_tail(&mut self) {
        let Some(Encoding::Pcm { resampler, .. }) = self.encoding.as_mut() else {
            return;
        };
        if resampler.delay_ns() == 0 {
            return;
        }
        let rate = resampler.rates().0 as u64;
        let zeros = (resampler.delay_ns() * rate).div_ceil(1_000_000_000) as usize + 6;
        self.pcm.clear();
        self.pcm.resize(zeros, 0);
        self.pcm8k.clear();
        resampler.process(&self.pcm, &mut self.pcm8k);
        self.target.encode(&self.pcm8k, &mut self.pending);
    }

    /// Hands the pending frames to `send` in order, with the index (in
    /// ticks) of each one's first sample, and drops them. The first error stops it:
    /// the frame that failed and the rest stay pending.
    pub fn send_frames<E>(
        &mut self,
        take: Take,
        mut send: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if matches!(self.encoding, Some(Encoding::Packets)) {
            return self.send_packets(send);
        }
        let width = self.target.bytes_per_tick();
        let frame = self.frame_bytes().max(width);
        let all = take == Take::All;
        if all && !self.target.is_compressed() {
            // Whole ticks only, and at least the provider's minimum.
            let partial = self.pending.len() % frame;
            let short = (self.min_ticks * width).saturating_sub(partial);
            if partial > 0 && short > 0 {
                let silence = self.target.silence();
                self.pending.resize(self.pending.len() + short, silence);
            }
        }
        if all {
            let odd = self.pending.len() % width;
            self.pending.truncate(self.pending.len() - odd);
        }
        let mut sent = 0;
        let mut result = Ok(());
        while self.pending.len() - sent >= frame || (all && sent < self.pending.len()) {
            let end = (sent + frame).min(self.pending.len());
            result = send(
                self.emitted + (sent / width) as u64,
                &self.pending[sent..end],
            );
            if result.is_err() {
                break;
            }
            sent = end;
        }
        self.pending.drain(..sent);
        self.emitted += (sent / width) as u64;
        result
    }

    /// [`Self::send_frames`] for Opus: each packet as it came.
    fn send_packets<E>(
        &mut self,
        mut send: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = 0;
        let mut sent = 0;
        let mut result = Ok(());
        for &end in &self.packet_ends {
            let packet = &self.pending[start..end];
            result = send(self.emitted, packet);
            if result.is_err() {
                break;
            }
            self.emitted += self.target.payload_ticks(packet);
            start = end;
            sent += 1;
        }
        self.pending.drain(..start);
        self.packet_ends.drain(..sent);
        self.packet_ends.iter_mut().for_each(|e| *e -= start);
        result
    }

    /// Drops the pending audio (the call it was for is gone).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
        self.packet_ends.clear();
    }

    /// Drops everything not handed out yet, a split sample included, and
    /// forgets the resampler's history (a `clear`, a flush).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.packet_ends.clear();
        self.odd_byte = None;
        if let Some(Encoding::Pcm { resampler, .. }) = self.encoding.as_mut() {
            resampler.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Downsampler;
    use std::convert::Infallible;

    /// A deterministic, non-trivial signal.
    fn signal(len: usize) -> Vec<i16> {
        (0..len)
            .map(|n| ((n as i64 * 7919 % 20011) - 10005) as i16 * 3)
            .collect()
    }

    fn s16le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn encode(pcm: &[i16]) -> Vec<u8> {
        pcm.iter().map(|&s| g711::encode(s)).collect()
    }

    /// What the downsampler alone makes of `pcm`, as μ-law.
    fn reference(rate: u32, pcm: &[i16]) -> Vec<u8> {
        let mut down = Downsampler::new(rate).unwrap();
        let mut out = Vec::new();
        down.process(pcm, &mut out);
        encode(&out)
    }

    fn framer(input: Input, frame_bytes: usize) -> Framer {
        let mut f = Framer::new(frame_bytes);
        f.set_input(input).unwrap();
        f
    }

    fn frames(f: &mut Framer, take: Take) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        f.send_frames(take, |_, frame| {
            out.push(frame.to_vec());
            Ok::<_, Infallible>(())
        })
        .unwrap();
        out
    }

    /// Pushes `bytes` in pieces of uneven sizes (splitting samples), collecting
    /// whole frames.
    fn push_in_pieces(f: &mut Framer, bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut rest = bytes;
        for size in [2usize, 641, 5, 322, 1001].iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*size).min(rest.len()));
            f.push(piece).unwrap();
            out.extend(frames(f, Take::WholeFrames));
            rest = tail;
        }
        out
    }

    #[test]
    fn pcm_is_cut_into_frames_of_its_downsampled_mulaw() {
        for rate in [8000u32, 16000, 48000] {
            let ratio = rate as usize / 8000;
            // 3 frames of 160 and 100 bytes more, at 8 kHz.
            let pcm = signal(ratio * (3 * 160 + 100));
            let mut f = framer(Input::Pcm(rate), 160);
            let got = push_in_pieces(&mut f, &s16le(&pcm));
            let want = reference(rate, &pcm);
            assert_eq!(want.len(), 580, "{rate} Hz");
            assert_eq!(got.len(), 3, "{rate} Hz");
            for (i, frame) in got.iter().enumerate() {
                assert_eq!(
                    frame[..],
                    want[160 * i..160 * (i + 1)],
                    "{rate} Hz frame {i}"
                );
            }
            assert_eq!(f.pending(), &want[480..], "{rate} Hz");
        }
    }

    #[test]
    fn mulaw_is_cut_into_frames_as_it_is() {
        let ulaw: Vec<u8> = (0..500u32).map(|i| (i * 31 % 256) as u8).collect();
        let mut f = framer(Input::Mulaw, 160);
        let got = push_in_pieces(&mut f, &ulaw);
        assert_eq!(got, [&ulaw[..160], &ulaw[160..320], &ulaw[320..480]]);
        assert_eq!(f.pending(), &ulaw[480..]);
    }

    #[test]
    fn other_chunk_durations_set_the_frame_size() {
        // 8 bytes per millisecond: 1 ms, 30 ms, 100 ms.
        for frame_bytes in [8usize, 240, 800] {
            let pcm = signal(2 * 1700);
            let mut f = framer(Input::Pcm(16000), frame_bytes);
            let got = push_in_pieces(&mut f, &s16le(&pcm));
            let want = reference(16000, &pcm);
            assert_eq!(got.len(), 1700 / frame_bytes, "{frame_bytes}");
            assert!(got.iter().all(|fr| fr.len() == frame_bytes));
            assert_eq!(got.concat(), want[..got.len() * frame_bytes]);
            assert_eq!(f.pending().len(), 1700 % frame_bytes);
        }
    }

    #[test]
    fn all_hands_out_the_partial_frame_before_a_mark() {
        let pcm = signal(200);
        let mut f = framer(Input::Pcm(8000), 160);
        f.push(&s16le(&pcm)).unwrap();
        assert_eq!(frames(&mut f, Take::WholeFrames), [encode(&pcm[..160])]);
        // What a mark sends first: the 40 samples left, exactly.
        assert_eq!(frames(&mut f, Take::All), [encode(&pcm[160..])]);
        assert!(f.pending().is_empty());
        assert!(frames(&mut f, Take::All).is_empty());
        // A short frame, then framing goes on from there.
        f.push(&s16le(&pcm[..170])).unwrap();
        assert_eq!(frames(&mut f, Take::WholeFrames), [encode(&pcm[..160])]);
    }

    #[test]
    fn the_resampler_tail_comes_out_at_eos() {
        // (rate, μ-law bytes of tail): enough silence to flush the delay.
        for (rate, tail) in [(16000u32, 23usize), (24000, 22), (48000, 23)] {
            let ratio = rate as usize / 8000;
            let pcm = signal(ratio * 250);
            let mut f = framer(Input::Pcm(rate), 160);
            f.push(&s16le(&pcm)).unwrap();
            let whole = frames(&mut f, Take::WholeFrames);
            let delay_ns = f.delay_ns();
            f.push_resampler_tail();
            let rest = frames(&mut f, Take::All);
            assert_eq!(rest.len(), 1, "{rate} Hz");
            assert_eq!(rest[0].len(), 250 - 160 + tail, "{rate} Hz");
            // The tail covers the delay: the last input has come out.
            assert!(tail as u64 * 125_000 >= delay_ns, "{rate} Hz");
            // And it is the downsampler's answer to that silence.
            let mut padded = pcm.clone();
            padded.resize(pcm.len() + ratio * 100, 0);
            let want = reference(rate, &padded);
            let got = [whole.concat(), rest.concat()].concat();
            assert_eq!(got[..], want[..got.len()], "{rate} Hz");
        }
        // Nothing to flush without a resampler delay.
        for input in [Input::Pcm(8000), Input::Mulaw] {
            let mut f = framer(input, 160);
            f.push(&[1, 2, 3, 4]).unwrap();
            f.push_resampler_tail();
            assert_eq!(f.pending().len(), if input == Input::Mulaw { 4 } else { 2 });
        }
    }

    #[test]
    fn a_split_sample_is_reported_and_carried_to_the_next_push() {
        let pcm = signal(4);
        let bytes = s16le(&pcm);
        let mut f = framer(Input::Pcm(8000), 160);
        assert_eq!(f.push(&bytes[..3]).unwrap(), Pushed { split_sample: true });
        assert_eq!(f.pending(), encode(&pcm[..1]));
        assert_eq!(f.push(&bytes[3..4]).unwrap(), Pushed::default());
        assert_eq!(f.pending(), encode(&pcm[..2]));
        assert_eq!(f.push(&bytes[4..5]).unwrap(), Pushed { split_sample: true });
        // An empty buffer in between neither loses the byte nor splits anything.
        assert_eq!(f.push(&[]).unwrap(), Pushed::default());
        assert_eq!(f.push(&bytes[5..]).unwrap(), Pushed::default());
        assert_eq!(f.pending(), encode(&pcm));
        // New caps drop a split sample.
        f.push(&bytes[..1]).unwrap();
        f.set_input(Input::Pcm(8000)).unwrap();
        f.push(&bytes[2..4]).unwrap();
        assert_eq!(f.pending(), [encode(&pcm), encode(&pcm[1..2])].concat());
    }

    #[test]
    fn clear_drops_pending_audio_and_resets_the_resampler() {
        let pcm = signal(2 * 300);
        let bytes = s16le(&pcm);
        let mut f = framer(Input::Pcm(16000), 160);
        f.push(&bytes[..501]).unwrap();
        assert!(!f.pending().is_empty());
        f.clear();
        assert!(f.pending().is_empty());
        // No history, no split byte: as from a new framer.
        f.push(&bytes).unwrap();
        assert_eq!(f.pending(), reference(16000, &pcm));
    }

    #[test]
    fn input_must_be_set_and_supported() {
        let mut f = Framer::new(160);
        assert_eq!(f.push(&[0, 0]), Err(NotNegotiated::NoInput));
        assert_eq!(f.delay_ns(), 0);
        assert_eq!(f.set_input(Input::Pcm(44100)), Err(UnsupportedRate(44100)));
        assert_eq!(f.push(&[0, 0]), Err(NotNegotiated::NoInput));
        f.set_input(Input::Pcm(16000)).unwrap();
        assert_eq!(f.delay_ns(), 2_562_500);
        assert_eq!(f.set_input(Input::Pcm(11025)), Err(UnsupportedRate(11025)));
        assert_eq!(f.delay_ns(), 2_562_500);
    }

    #[test]
    fn g722_is_cut_into_20_ms_frames_and_opus_goes_packet_by_packet() {
        let mut f = Framer::new(160);
        f.set_input(Input::G722).unwrap();
        f.set_target(WireFormat::G722, 160);
        let g722: Vec<u8> = (0..400u32).map(|i| (i * 7) as u8).collect();
        f.push(&g722).unwrap();
        assert_eq!(
            frames(&mut f, Take::WholeFrames),
            [&g722[..160], &g722[160..320]]
        );
        // The end: the rest as it is, no padding (no byte is G.722 silence).
        assert_eq!(frames(&mut f, Take::All), [&g722[320..]]);

        let mut f = Framer::new(160);
        f.set_input(Input::Opus).unwrap();
        f.set_target(WireFormat::OPUS, 160);
        // CELT FB 20 ms and 10 ms packets of different sizes.
        let packets: [&[u8]; 3] = [&[31 << 3, 1, 2], &[30 << 3, 3], &[31 << 3, 4, 5, 6, 7]];
        for p in packets {
            f.push(p).unwrap();
        }
        assert_eq!(f.produced(), 160 + 80 + 160);
        let mut sent = Vec::new();
        f.send_frames(Take::WholeFrames, |start, frame| {
            sent.push((start, frame.to_vec()));
            Ok::<_, Infallible>(())
        })
        .unwrap();
        let expected: Vec<(u64, Vec<u8>)> = [0, 160, 240]
            .into_iter()
            .zip(packets.map(<[u8]>::to_vec))
            .collect();
        assert_eq!(sent, expected);
        assert_eq!(f.produced(), 400);
    }

    #[test]
    fn compressed_input_takes_only_its_own_call_and_such_calls_nothing_else() {
        let mut f = framer(Input::G722, 160);
        assert_eq!(
            f.push(&[1, 2]),
            Err(NotNegotiated::Mismatch(Input::G722, WireFormat::PCMU))
        );
        f.set_target(WireFormat::OPUS, 160);
        assert_eq!(
            f.push(&[1, 2]),
            Err(NotNegotiated::Mismatch(Input::G722, WireFormat::OPUS))
        );
        f.set_input(Input::Pcm(16000)).unwrap();
        assert_eq!(
            f.push(&[1, 2]),
            Err(NotNegotiated::Mismatch(Input::Pcm(16000), WireFormat::OPUS))
        );
        assert!(f.pending().is_empty());
    }

    #[test]
    fn frames_carry_the_index_of_their_first_sample() {
        let mut f = framer(Input::Mulaw, 160);
        f.push(&[0x55; 400]).unwrap();
        assert_eq!(f.produced(), 400);
        let mut starts = Vec::new();
        f.send_frames(Take::WholeFrames, |start, frame| {
            starts.push((start, frame.len()));
            Ok::<_, Infallible>(())
        })
        .unwrap();
        assert_eq!(starts, [(0, 160), (160, 160)]);
        // A clear drops the 80 pending samples: they were never handed out.
        f.clear();
        assert_eq!(f.produced(), 320);
        f.push(&[0x55; 100]).unwrap();
        starts.clear();
        f.send_frames(Take::All, |start, frame| {
            starts.push((start, frame.len()));
            Ok::<_, Infallible>(())
        })
        .unwrap();
        assert_eq!(starts, [(320, 100)]);
        assert_eq!(f.produced(), 420);
    }

    #[test]
    fn a_failed_send_keeps_that_frame_and_the_rest() {
        let ulaw: Vec<u8> = (0..=255).collect();
        let mut f = framer(Input::Mulaw, 100);
        f.push(&ulaw).unwrap();
        let mut calls = 0;
        let result = f.send_frames(Take::All, |_, _| {
            calls += 1;
            if calls == 2 { Err("closed") } else { Ok(()) }
        });
        assert_eq!(result, Err("closed"));
        assert_eq!(f.pending(), &ulaw[100..]);
        f.discard_pending();
        assert!(f.pending().is_empty());
    }

    #[test]
    fn a_zero_frame_size_sends_byte_frames() {
        // As the element's state before it is connected.
        let mut f = framer(Input::Mulaw, 0);
        f.push(&[1, 2]).unwrap();
        assert_eq!(frames(&mut f, Take::WholeFrames), [[1], [2]]);
    }

    #[test]
    fn steady_state_reuses_its_buffers() {
        let pcm = signal(960 * 20);
        let bytes = s16le(&pcm);
        let mut f = framer(Input::Pcm(48000), 160);
        let push = |f: &mut Framer, i: usize| {
            f.push(&bytes[1920 * (i % 10)..][..1920]).unwrap();
            f.send_frames(Take::WholeFrames, |_, _| Ok::<_, Infallible>(()))
                .unwrap();
        };
        for i in 0..4 {
            push(&mut f, i);
        }
        let buffers = |f: &Framer| {
            [
                f.pcm.as_ptr() as usize,
                f.pcm8k.as_ptr() as usize,
                f.pending.as_ptr() as usize,
            ]
        };
        let before = buffers(&f);
        for i in 4..200 {
            push(&mut f, i);
        }
        assert_eq!(buffers(&f), before);
    }

    #[test]
    fn the_calls_codec_and_rate_set_the_frames() {
        use crate::codec::ByteOrder;
        let pcm = signal(3 * 580);
        // 48 kHz PCM into each format: the resampler's output, encoded, in
        // frames of 20 ms (160 ticks) of that format.
        for target in [
            WireFormat::PCMA,
            WireFormat::l16(8000, ByteOrder::Big),
            WireFormat::l16(16000, ByteOrder::Little),
            WireFormat::l16(24000, ByteOrder::Big),
        ] {
            let mut f = framer(Input::Pcm(24000), 160);
            f.set_target(target, 0);
            assert_eq!(f.target(), target);
            assert_eq!(f.frame_bytes(), 160 * target.bytes_per_tick(), "{target}");
            let got = push_in_pieces(&mut f, &s16le(&pcm));
            let mut resampled = Vec::new();
            Resampler::new(24000, target.rate)
                .unwrap()
                .process(&pcm, &mut resampled);
            let mut want = Vec::new();
            target.encode(&resampled, &mut want);
            assert_eq!(got.len(), want.len() / f.frame_bytes(), "{target}");
            assert_eq!(got.concat(), want[..got.concat().len()], "{target}");
        }
    }

    #[test]
    fn g711_input_passes_through_into_its_own_codec_and_is_transcoded_otherwise() {
        let alaw_bytes: Vec<u8> = (0..=255).collect();
        let mut f = framer(Input::Alaw, 160);
        f.set_target(WireFormat::PCMA, 0);
        f.push(&alaw_bytes).unwrap();
        assert_eq!(f.pending(), alaw_bytes);
        // A-law into a μ-law call: decoded and encoded again.
        let mut f = framer(Input::Alaw, 160);
        f.push(&alaw_bytes).unwrap();
        let want: Vec<u8> = alaw_bytes
            .iter()
            .map(|&c| g711::encode(alaw::decode(c)))
            .collect();
        assert_eq!(f.pending(), want);
        // μ-law into a 16 kHz L16 call: decoded and upsampled.
        let ulaw: Vec<u8> = (0..160u32).map(|i| (i * 7) as u8).collect();
        let target = WireFormat::l16(16000, crate::codec::ByteOrder::Big);
        let mut f = framer(Input::Mulaw, 160);
        f.set_target(target, 0);
        f.push(&ulaw).unwrap();
        let decoded: Vec<i16> = ulaw.iter().map(|&c| g711::decode(c)).collect();
        let mut up = Vec::new();
        Resampler::new(8000, 16000)
            .unwrap()
            .process(&decoded, &mut up);
        let mut want = Vec::new();
        target.encode(&up, &mut want);
        assert_eq!(f.pending(), want);
    }

    #[test]
    fn a_provider_minimum_lengthens_frames_and_pads_the_last() {
        let mut f = framer(Input::Mulaw, 80);
        // Telnyx: at least 20 ms.
        f.set_target(WireFormat::PCMA, 160);
        assert_eq!(f.frame_bytes(), 160);
        f.push(&[0xFF; 200]).unwrap();
        let got = frames(&mut f, Take::All);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), 160);
        // 40 bytes of audio, then A-law silence up to 20 ms.
        assert_eq!(got[1].len(), 160);
        assert!(got[1][40..].iter().all(|&b| b == alaw::SILENCE));
    }
}
