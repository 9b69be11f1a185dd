//! The sink's audio path without GStreamer or a call: input bytes (S16LE at
//! a pipeline rate, μ-law or A-law) become the call's format (μ-law by
//! default; A-law or L16 at 8/16/24 kHz when the call carries it), cut into
//! `chunk-duration` frames. G.722 and Opus input pass through to a call in
//! the same codec only: G.722 bytes cut into frames like G.711, each Opus
//! packet a frame of its own. Sending the frames, counting them, marks and
//! `clear` messages are the element's (`imp.rs`).
//!
//! What goes out is as long as what came in: a resampler's warm-up stands
//! for the tail its delay holds back, so frames (and marks) fall where the
//! input's samples do. A change of input flushes the old resampler's tail
//! and skips the new one's warm-up; where that puts the output ahead of
//! the input (into pass-through, or a shorter delay), what is ahead is
//! held back as the delay was (`Framer::set_input`).
//!
//! Frames are slices of one pending buffer, and the scratch buffers are
//! reused: once they have grown, pushing and framing allocate nothing.

use self::stage::Stage;
use crate::codec::resample::RATES;
use crate::codec::{Resampler, WireFormat, alaw, g711, scratch};

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
    /// An Opus packet played shorter than the provider's shortest media
    /// (its length, in ticks): sent as it is, told once per call.
    pub short_packet: Option<u64>,
}

/// Which frames [`Framer::send_frames`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Whole frames only; the partial rest stays pending.
    WholeFrames,
    /// At most this many whole frames; the rest stays pending.
    AtMost(usize),
    /// Everything pending, the partial rest as a last, shorter frame (before
    /// a mark, at EOS), padded with silence to the provider's minimum (G.722:
    /// with the code that decodes to silence soonest; Opus: not at all); in
    /// whole ticks (samples short of one wait), all but what is ahead of
    /// the input (see [`Framer::set_input`]).
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
    Pcm { input: Input, stage: Stage },
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
    /// Encoded audio not handed out yet (less than a frame after `send_frames`).
    pending: Vec<u8>,
    /// With Opus, where each pending packet ends in `pending`.
    packet_ends: Vec<usize>,
    /// The first byte of a 16-bit sample split across pushes.
    odd_byte: Option<u8>,
    /// A short Opus packet was told (see [`Pushed::short_packet`]).
    short_packet_told: bool,
    /// Samples handed out so far: the index of the first pending one.
    emitted: u64,
    /// The input taken since the count was last made level (a clear, the
    /// call's format, the end), and the output (`emitted` and pending) then,
    /// in periods of 48 kHz (every rate here divides it).
    input_units: u64,
    base_units: u64,
    /// How much later than the input the output's audio plays, in periods
    /// of 48 kHz, as the first resampler since the count was made level
    /// set it (its delay, which its warm-up stood for): each later
    /// resampler's warm-up is skipped to keep to it.
    lag_units: u64,
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
            pending: Vec::new(),
            packet_ends: Vec::new(),
            odd_byte: None,
            short_packet_told: false,
            emitted: 0,
            input_units: 0,
            base_units: 0,
            lag_units: 0,
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

    /// Sets what the input is (from new caps). The same input again (caps
    /// that differ in nothing the framer uses) changes nothing: the
    /// resampler's history goes on. Another drops a pending split sample
    /// and goes on without a hole: the last resampler's tail (the input its
    /// delay holds back) joins the pending audio, and a new resampler's
    /// warm-up is skipped, so its output follows on. Where the tail puts the
    /// output ahead of the input (no warm-up, or a shorter one, makes up
    /// for it) that much waits at the end of the pending audio, as the
    /// delay did, until the input catches up or ends. With no input since
    /// a clear, a new resampler starts afresh, its warm-up kept. On error
    /// nothing changes.
    pub fn set_input(&mut self, input: Input) -> Result<(), UnsupportedRate> {
        if let Input::Pcm(rate) = input
            && !RATES.contains(&rate)
        {
            return Err(UnsupportedRate(rate));
        }
        if self.input == Some(input) && self.encoding.is_some() {
            return Ok(());
        }
        // Input since a clear (or the start) goes on: skip the warm-up.
        let changed = self.encoding.is_some() && self.input_units > 0;
        self.flush();
        self.input = Some(input);
        let mut encoding = self.encoding_for(input);
        if !changed {
            self.lag_units = lag_units(&encoding);
        } else if let Encoding::Pcm { stage, .. } = &mut encoding
            && stage.delay_units() > 0
        {
            // Where the new input's first sample would come out, against
            // where it must (the lag kept since the count was made level),
            // to the nearest sample, so that rounding does not add up over
            // changes. (Without a delay there
            // is no warm-up, and nothing of the input is skipped.)
            let output = self.output_units().saturating_sub(self.base_units) as i64;
            let late =
                output + stage.delay_units() as i64 - (self.input_units + self.lag_units) as i64;
            let per_sample = self.units_per_sample() as i64;
            let nearest = (late + per_sample / 2).div_euclid(per_sample);
            stage.skip(nearest.max(0) as usize);
        }
        self.encoding = Some(encoding);
        self.odd_byte = None;
        Ok(())
    }

    /// Sets the call's format, and the provider's shortest frame in ticks
    /// (frames are made at least that long). Pending audio is dropped.
    pub fn set_target(&mut self, target: WireFormat, min_ticks: usize) {
        self.target = target;
        self.min_ticks = min_ticks;
        self.frame_ticks = self.frame_ticks.max(min_ticks);
        self.short_packet_told = false;
        self.pending.clear();
        self.packet_ends.clear();
        self.level();
        if let Some(input) = self.input {
            let encoding = self.encoding_for(input);
            self.lag_units = lag_units(&encoding);
            self.encoding = Some(encoding);
        }
    }

    /// 48 kHz periods per sample of the call's format.
    fn units_per_sample(&self) -> u64 {
        (48_000 / self.target.rate) as u64
    }

    /// Bytes per sample of the call's format.
    fn sample_bytes(&self) -> usize {
        (self.target.bytes_per_tick() / self.target.samples_per_tick()).max(1)
    }

    /// The output so far (handed out and pending), in 48 kHz periods.
    fn output_units(&self) -> u64 {
        self.emitted * 6 + self.bytes_units(self.pending.len())
    }

    /// How long `bytes` of the call's format play, in 48 kHz periods.
    fn bytes_units(&self, bytes: usize) -> u64 {
        (bytes * 6 / self.target.bytes_per_tick()) as u64
    }

    /// By how many whole samples the output is ahead of the input: a
    /// resampler's tail flushed at a change, while nothing makes up for it.
    fn ahead_samples(&self) -> usize {
        let output = self.output_units().saturating_sub(self.base_units);
        (output.saturating_sub(self.input_units) / self.units_per_sample()) as usize
    }

    /// Counts input and output as level from here (nothing ahead).
    fn level(&mut self) {
        self.input_units = 0;
        self.base_units = self.output_units();
    }

    /// Pending bytes that may go before the end: those not ahead of the input.
    fn sendable(&self) -> usize {
        let held = self.ahead_samples() * self.sample_bytes();
        self.pending.len().saturating_sub(held)
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
            stage: Stage::new(Resampler::new(rate, self.target.rate).expect("supported rates")),
        }
    }

    /// The resampler's delay, 0 without one (or before an input is set).
    pub fn delay_ns(&self) -> u64 {
        match &self.encoding {
            Some(Encoding::Pcm { stage, .. }) => stage.resampler.delay_ns(),
            _ => 0,
        }
    }

    /// How much later than the next input pushed its output comes out
    /// (ns): the resampler's delay, less the warm-up still to skip after a
    /// change of input.
    pub fn lag_ns(&self) -> u64 {
        match &self.encoding {
            Some(Encoding::Pcm { stage, .. }) => stage.lag_ns(),
            _ => 0,
        }
    }

    /// Encoded audio not handed out yet.
    #[cfg(test)]
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Bytes of encoded audio not handed out yet.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }

    /// How long the pending audio plays (ns).
    pub fn pending_ns(&self) -> u64 {
        self.pending_ticks(&self.pending) * 125_000
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
        let units = self.bytes_units(data.len());
        match self.encoding.as_mut().ok_or(NotNegotiated::NoInput)? {
            Encoding::Passthrough => {
                self.pending.extend_from_slice(data);
                self.input_units += units;
            }
            Encoding::Packets => {
                let ticks = target.payload_ticks(data);
                if (1..self.min_ticks as u64).contains(&ticks) && !self.short_packet_told {
                    self.short_packet_told = true;
                    pushed.short_packet = Some(ticks);
                }
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
                stage,
            } => {
                let decode = match input {
                    Input::Mulaw => g711::decode,
                    _ => alaw::decode,
                };
                let mut pcm = scratch::i16s();
                pcm.extend(data.iter().map(|&c| decode(c)));
                self.input_units += 6 * pcm.len() as u64;
                let mut pcm8k = scratch::i16s();
                stage.process(&pcm, &mut pcm8k);
                target.encode(&pcm8k, &mut self.pending);
            }
            Encoding::Pcm { stage, .. } => {
                let mut data = data;
                let mut pcm = scratch::i16s();
                if let Some(first) = self.odd_byte.take() {
                    match data.split_first() {
                        Some((&second, rest)) => {
                            pcm.push(i16::from_le_bytes([first, second]));
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
                pcm.extend(samples.map(|b| i16::from_le_bytes([b[0], b[1]])));
                let (rate, _) = stage.resampler.rates();
                self.input_units += (48_000 / rate) as u64 * pcm.len() as u64;
                let mut pcm8k = scratch::i16s();
                stage.process(&pcm, &mut pcm8k);
                target.encode(&pcm8k, &mut self.pending);
            }
        }
        Ok(pushed)
    }

    /// The end of the input (EOS, `end-stream`): pushes the resampler's
    /// tail out with silence, to the sample, so that the last input is
    /// pending too, and lets all of it go (nothing waits for more input).
    pub fn push_resampler_tail(&mut self) {
        self.flush();
        if !self.target.is_compressed() {
            // Whole ticks: the last one padded with silence.
            let whole = self
                .pending
                .len()
                .next_multiple_of(self.target.bytes_per_tick());
            self.pending.resize(whole, self.target.silence());
        }
        self.level();
    }

    /// Pushes the resampler's tail out, to the sample.
    fn flush(&mut self) {
        let Some(Encoding::Pcm { stage, .. }) = self.encoding.as_mut() else {
            return;
        };
        let mut pcm8k = scratch::i16s();
        stage.flush(&mut pcm8k);
        self.target.encode(&pcm8k, &mut self.pending);
    }

    /// Hands the pending frames to `send` in order, with the index (in
    /// ticks) of each one's first sample and the bytes of silence padding
    /// its end (see [`Take::All`]), and drops them. The first error stops it:
    /// the frame that failed and the rest stay pending.
    pub fn send_frames<E>(
        &mut self,
        take: Take,
        mut send: impl FnMut(u64, &[u8], usize) -> Result<(), E>,
    ) -> Result<(), E> {
        if matches!(self.encoding, Some(Encoding::Packets)) {
            return self.send_packets(|start, packet| send(start, packet, 0));
        }
        let width = self.target.bytes_per_tick();
        let frame = self.frame_bytes().max(width);
        let all = take == Take::All;
        // What is ahead of the input waits, as in a resampler's delay.
        let mut end = self.sendable();
        let mut padding = 0;
        if all && let Some(pad) = self.target.padding() {
            // Whole ticks only, and at least the provider's minimum.
            let partial = end % frame;
            let short = (self.min_ticks * width).saturating_sub(partial);
            if partial > 0 && short > 0 {
                let silence = std::iter::repeat_n(pad, short);
                self.pending.splice(end..end, silence);
                // Taken as input: nothing after it waits for it.
                self.input_units += self.bytes_units(short);
                end += short;
                padding = short;
            }
        }
        if all {
            // Whole ticks: samples short of one wait for the next frame.
            end -= end % width;
        }
        let limit = match take {
            Take::AtMost(n) => n.saturating_mul(frame),
            _ => usize::MAX,
        };
        let mut sent = 0;
        let mut result = Ok(());
        while (end - sent >= frame && sent < limit) || (all && sent < end) {
            let stop = (sent + frame).min(end);
            result = send(
                self.emitted + (sent / width) as u64,
                &self.pending[sent..stop],
                if stop == end { padding } else { 0 },
            );
            if result.is_err() {
                break;
            }
            sent = stop;
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

    /// A whole frame is pending (one [`Take::AtMost`] left).
    pub fn whole_frame_pending(&self) -> bool {
        !matches!(self.encoding, Some(Encoding::Packets))
            && self.sendable() >= self.frame_bytes().max(self.target.bytes_per_tick())
    }

    /// Drops the pending audio (the call it was for is gone).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
        self.packet_ends.clear();
        self.level();
    }

    /// Drops everything not handed out yet, a split sample included, and
    /// forgets the resampler's history (a `clear`, a flush).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.packet_ends.clear();
        self.odd_byte = None;
        self.level();
        if let Some(encoding) = self.encoding.as_mut() {
            if let Encoding::Pcm { stage, .. } = encoding {
                stage.reset();
            }
            self.lag_units = lag_units(encoding);
        }
    }
}

/// The lag a new `encoding` sets, its warm-up kept: its delay.
fn lag_units(encoding: &Encoding) -> u64 {
    match encoding {
        Encoding::Pcm { stage, .. } => stage.delay_units(),
        _ => 0,
    }
}

#[cfg(test)]
mod compressed_tests;
mod stage;
#[cfg(test)]
mod tests;
