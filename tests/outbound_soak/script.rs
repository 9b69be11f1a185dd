//! A seeded script for the sink, and what it must make Twilio receive:
//! audio in bursts and in real time, in buffers of any size (samples split
//! between buffers too), marks by event and by signal, clears by signal, by
//! event and by flush, a format chosen anew where a clear leaves the sink
//! nothing to carry over, and an end (EOS, `end-stream`, or NULL anywhere).

use gsttwiliostream::codec::{Codec, Resampler, WireFormat, alaw, g711};

use crate::common::rng::Rng;
use crate::variant::Variant;

/// What the sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Pcm(u32),
    Mulaw,
    Alaw,
}

impl Input {
    pub fn caps(self) -> gst::Caps {
        match self {
            Input::Pcm(rate) => gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("rate", rate as i32)
                .field("channels", 1i32)
                .field("layout", "interleaved")
                .build(),
            Input::Mulaw | Input::Alaw => {
                let name = match self {
                    Input::Mulaw => "audio/x-mulaw",
                    _ => "audio/x-alaw",
                };
                gst::Caps::builder(name)
                    .field("rate", 8000i32)
                    .field("channels", 1i32)
                    .build()
            }
        }
    }

    pub fn rate(self) -> u64 {
        match self {
            Input::Pcm(rate) => rate as u64,
            Input::Mulaw | Input::Alaw => 8000,
        }
    }

    pub fn sample_bytes(self) -> usize {
        match self {
            Input::Pcm(_) => 2,
            Input::Mulaw | Input::Alaw => 1,
        }
    }

    /// G.711 input the call's own codec: its bytes go out as they are.
    fn passes_to(self, format: WireFormat) -> bool {
        matches!(
            (self, format.codec),
            (Input::Mulaw, Codec::Pcmu) | (Input::Alaw, Codec::Pcma)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearBy {
    Signal,
    Event,
    /// The event out of band, once the sink has taken what came before.
    OobEvent,
    Flush,
    /// The signal at once, wherever the sink is (G.711 input to an 8 kHz
    /// call only: what the sink had not taken plays after it, sample for
    /// sample).
    Racing,
}

impl ClearBy {
    pub fn reason(self) -> &'static str {
        match self {
            ClearBy::Signal | ClearBy::Racing => "signal",
            ClearBy::Event | ClearBy::OobEvent => "event",
            ClearBy::Flush => "flush",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Step {
    /// Caps, at a segment's start only (nothing for the sink to carry over).
    Caps(Input),
    /// Buffers, their bytes cut anywhere, from `pts` (ns) on; pushed as
    /// fast as the sink takes them, or each at its time.
    Audio {
        buffers: Vec<Vec<u8>>,
        pts: u64,
        realtime: bool,
    },
    MarkEvent(String),
    MarkSignal(String),
    Clear(ClearBy),
    /// PLAYING → PAUSED for `ms`, `during` done meanwhile (a mark or a
    /// clear by signal), → PLAYING.
    Pause {
        ms: u64,
        during: Option<Box<Step>>,
    },
    /// `max-lead` set anew.
    Lead(u32),
    /// Waits until the sink has taken everything before.
    Sync,
    /// Waits until the appsrc holds at most this many bytes.
    AwaitTaken {
        queued_at_most: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// EOS, maybe while paused for `paused_ms` (it waits for PLAYING).
    Eos {
        paused_ms: Option<u64>,
    },
    EndStream {
        after_playout: bool,
    },
    /// NULL mid-script (after step `at`), or while the EOS waits.
    Null {
        at: usize,
        during_eos: bool,
    },
}

/// The audio between two clears: what Twilio must get of it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub input: Input,
    /// Running time of its first sample (ns).
    pub pts: u64,
    /// Its input, as samples (G.711 input: before encoding; its bytes are
    /// `g711`).
    pub samples: Vec<i16>,
    pub g711: Vec<u8>,
    /// Marks placed in it: name, input samples before it.
    pub marks: Vec<(String, usize)>,
    /// Where its running time jumps: input samples before, running time.
    pub pieces: Vec<(usize, u64)>,
    pub ended_by: Option<ClearBy>,
    /// False where a racing clear's cut could not be found (nothing came
    /// after it): its duration and running times are not known.
    pub cut_known: bool,
}

impl Segment {
    pub fn new(input: Input, pts: u64) -> Segment {
        Segment {
            input,
            pts,
            samples: Vec::new(),
            g711: Vec::new(),
            marks: Vec::new(),
            pieces: Vec::new(),
            ended_by: None,
            cut_known: true,
        }
    }

    /// Splits it at input sample `p` (G.711 only): it keeps what came
    /// before, and returns the rest.
    pub fn split_off(&mut self, p: usize) -> Segment {
        let mut tail = Segment::new(self.input, self.running_time(p as f64));
        tail.samples = self.samples.split_off(p);
        tail.g711 = self.g711.split_off(p);
        tail.pieces.push((0, tail.pts));
        tail.pieces.extend(
            self.pieces
                .iter()
                .filter(|q| q.0 > p)
                .map(|&(n, t)| (n - p, t)),
        );
        self.pieces.retain(|q| q.0 < p);
        tail
    }

    /// Puts `rest` after this segment's audio (the same format).
    pub fn append(&mut self, rest: &Segment) {
        let n = self.samples.len();
        if n == 0 {
            self.pts = rest.pts;
        }
        self.samples.extend(&rest.samples);
        self.g711.extend(&rest.g711);
        self.pieces
            .extend(rest.pieces.iter().map(|&(m, t)| (m + n, t)));
        self.marks
            .extend(rest.marks.iter().map(|(name, m)| (name.clone(), m + n)));
        self.ended_by = rest.ended_by;
    }

    /// Its input's duration (ns).
    pub fn duration(&self) -> u64 {
        self.samples.len() as u64 * 1_000_000_000 / self.input.rate()
    }

    /// The running time of its 8 kHz output sample `out`.
    pub fn running_time(&self, out: f64) -> u64 {
        let n = out.max(0.0) * self.input.rate() as f64 / 8000.0;
        let &(before, pts) = self
            .pieces
            .iter()
            .rev()
            .find(|p| p.0 as f64 <= n)
            .unwrap_or(&(0, self.pts));
        pts + ((n - before as f64) * 1e9 / self.input.rate() as f64) as u64
    }

    /// The audio (ns) before running time `t`: what a caller heard up to
    /// it, its gaps left out.
    pub fn audio_before(&self, t: u64) -> u64 {
        let rate = self.input.rate();
        let mut ends: Vec<usize> = self.pieces.iter().skip(1).map(|p| p.0).collect();
        ends.push(self.samples.len());
        self.pieces
            .iter()
            .zip(ends)
            .map(|(&(before, pts), end)| {
                let len = (end - before) as u64 * 1_000_000_000 / rate;
                t.saturating_sub(pts).min(len)
            })
            .sum()
    }

    /// 8 kHz output samples before input sample `n` (the warm-up stands
    /// for the delay).
    pub fn out_at(&self, n: usize) -> usize {
        (n as u64 * 8000 / self.input.rate()) as usize
    }

    /// All the call gets of it when nothing cuts it short: a fresh
    /// resampler's output at the call's rate (its warm-up kept), the tail
    /// flushed to the sample (and to a whole 8 kHz tick), encoded in the
    /// call's format; G.711 input in
    /// the call's own codec as it came (in another: decoded first).
    pub fn expected(&self, format: WireFormat) -> Vec<u8> {
        if self.input.passes_to(format) {
            return self.g711.clone();
        }
        let samples: Vec<i16> = match self.input {
            Input::Pcm(_) => self.samples.clone(),
            Input::Mulaw => self.g711.iter().map(|&c| g711::decode(c)).collect(),
            Input::Alaw => self.g711.iter().map(|&c| alaw::decode(c)).collect(),
        };
        let rate = self.input.rate() as u32;
        let to = format.rate as u128;
        let mut r = Resampler::new(rate, format.rate).unwrap();
        let mut out = Vec::new();
        r.process(&samples, &mut out);
        let delay = r.delay_ns() as u128;
        if delay > 0 && !samples.is_empty() {
            let from = rate as u128;
            let total = (samples.len() as u128 * to * 1_000_000_000 + delay * to * from)
                .div_ceil(from * 1_000_000_000) as usize;
            r.process(&vec![0; rate as usize / 100], &mut out);
            out.truncate(total);
        }
        // The end in whole ticks, the last one padded with silence.
        out.resize(out.len().next_multiple_of(format.samples_per_tick()), 0);
        let mut bytes = Vec::new();
        format.encode(&out, &mut bytes);
        bytes
    }
}

pub struct Script {
    pub variant: Variant,
    pub max_lead: u32,
    /// The largest `max-lead` set in the script.
    pub most_lead: u32,
    pub steps: Vec<Step>,
    pub end: Finish,
    pub segments: Vec<Segment>,
    /// Buffers that end inside a sample (`transcode-errors`).
    pub splits: u64,
}

/// The script as it is drawn.
struct Draw {
    rng: Rng,
    steps: Vec<Step>,
    segments: Vec<Segment>,
    splits: u64,
    pts: u64,
    /// PCM bytes pushed since the segment began (a clear drops a split
    /// sample's first byte: input after it starts afresh), and the second
    /// byte of its last sample when that waits for the next step.
    pushed: usize,
    carry: Option<u8>,
    seg: Segment,
}

impl Draw {
    /// About `ms` of audio in buffers of any size, maybe after a jump in
    /// the timestamps, in real time or not (drawn unless `realtime`).
    fn audio(&mut self, ms: u64, realtime: Option<bool>) {
        let rng = &mut self.rng;
        let seg = &mut self.seg;
        let input = seg.input;
        // Any number of samples, not only whole milliseconds.
        let n = (ms * input.rate() / 1000) as usize + rng.below(7);
        // Sometimes a jump in the timestamps: a gap the sink closes up (a
        // frame may straddle one of 10 ms or less).
        if rng.chance(15) {
            self.pts += rng.between(1, 400) as u64 * 1_000_000;
        }
        seg.pieces.push((seg.samples.len(), self.pts));
        let samples: Vec<i16> = (0..n).map(|_| signal(rng)).collect();
        let mut bytes: Vec<u8> = match input {
            Input::Pcm(_) => self
                .carry
                .take()
                .into_iter()
                .chain(samples.iter().flat_map(|s| s.to_le_bytes()))
                .collect(),
            Input::Mulaw => samples.iter().map(|&s| g711::encode(s)).collect(),
            Input::Alaw => samples.iter().map(|&s| alaw::encode(s)).collect(),
        };
        if matches!(input, Input::Pcm(_)) && rng.chance(25) {
            self.carry = bytes.pop();
        }
        let mut buffers = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let most = (input.rate() as usize / 20) * input.sample_bytes();
            let mut len = match rng.below(4) {
                0 => rng.between(1, 8),
                _ => rng.between(1, most),
            };
            len = len.min(bytes.len() - at);
            if matches!(input, Input::Pcm(_)) {
                self.pushed += len;
                self.splits += self.pushed as u64 % 2;
            }
            buffers.push(bytes[at..at + len].to_vec());
            at += len;
        }
        if matches!(input, Input::Mulaw | Input::Alaw) {
            seg.g711.extend(&bytes);
        }
        seg.samples.extend(&samples);
        let realtime = realtime.unwrap_or_else(|| rng.chance(30));
        self.steps.push(Step::Audio {
            buffers,
            pts: self.pts,
            realtime,
        });
        self.pts += n as u64 * 1_000_000_000 / input.rate();
    }

    /// Ends the segment with a clear; the next in the format drawn, or
    /// in the same.
    fn clear(&mut self, by: ClearBy, same_format: bool) {
        self.steps.push(Step::Clear(by));
        self.end_segment(by, same_format);
    }

    /// Ends the segment (its clear's step pushed already).
    fn end_segment(&mut self, by: ClearBy, same_format: bool) {
        self.seg.ended_by = Some(by);
        if self.carry.take().is_some() {
            self.seg.samples.pop();
        }
        self.pushed = 0;
        let next = match same_format {
            true => Segment::new(self.seg.input, self.pts),
            false => new_segment(&mut self.rng, &mut self.steps, self.pts),
        };
        self.segments.push(std::mem::replace(&mut self.seg, next));
    }
}

impl Script {
    /// The script of `seed`: about `audio_ms` of audio in all.
    pub fn draw(seed: u64, audio_ms: u64, variant: Variant) -> Script {
        let mut rng = Rng::new(seed);
        let max_lead = *rng.pick(&[20, 60, 100, 100, 250]);
        let mut steps = Vec::new();
        let seg = new_segment(&mut rng, &mut steps, 0);
        let mut d = Draw {
            rng,
            steps,
            segments: Vec::new(),
            splits: 0,
            pts: 0,
            pushed: 0,
            carry: None,
            seg,
        };
        let mut total_ms = 0;
        let mut marks = 0;
        let mut most_lead = max_lead;
        while total_ms < audio_ms {
            match d.rng.below(12) {
                0..=4 => {
                    let ms = d.rng.between(5, 400) as u64;
                    total_ms += ms;
                    d.audio(ms, None);
                }
                5 | 6 => {
                    marks += 1;
                    let name = mark_name(&mut d.rng, marks);
                    d.seg.marks.push((name.clone(), d.seg.samples.len()));
                    d.steps.push(match d.rng.below(2) {
                        0 => Step::MarkEvent(name),
                        _ => Step::MarkSignal(name),
                    });
                }
                7 | 8 => {
                    let by = *d.rng.pick(&[
                        ClearBy::Signal,
                        ClearBy::Event,
                        ClearBy::OobEvent,
                        ClearBy::Flush,
                    ]);
                    d.clear(by, false);
                }
                9 => {
                    let ms = d.rng.between(10, 300) as u64;
                    let during = match d.rng.below(3) {
                        0 => {
                            marks += 1;
                            let name = mark_name(&mut d.rng, marks);
                            d.seg.marks.push((name.clone(), d.seg.samples.len()));
                            Some(Box::new(Step::MarkSignal(name)))
                        }
                        1 => Some(Box::new(Step::Clear(ClearBy::Signal))),
                        _ => None,
                    };
                    let cleared = during
                        .as_deref()
                        .is_some_and(|d| matches!(d, Step::Clear(_)));
                    d.steps.push(Step::Pause { ms, during });
                    if cleared {
                        d.end_segment(ClearBy::Signal, false);
                    }
                }
                10 => {
                    let lead = *d.rng.pick(&[20, 40, 100, 300]);
                    most_lead = most_lead.max(lead);
                    d.steps.push(Step::Lead(lead));
                }
                11 => {
                    // A barge-in while the sink waits for the writer: more
                    // than a second ahead, the clear comes at once (no
                    // wait for the sink to take what came before), so
                    // where it cuts is found from what Twilio got. In a
                    // G.711 segment of no marks of its own, to a call
                    // that takes it sample for sample.
                    if !variant.racing_clears() {
                        continue;
                    }
                    let g711 = match variant.format.codec {
                        Codec::Pcma => Input::Alaw,
                        _ => Input::Mulaw,
                    };
                    if d.seg.input != g711 || !d.seg.marks.is_empty() {
                        d.clear(ClearBy::Signal, true);
                        if d.seg.input != g711 {
                            d.seg.input = g711;
                            d.steps.push(Step::Caps(g711));
                        }
                    }
                    let ms = d.rng.between(1000, 1500) as u64;
                    total_ms += ms;
                    // It races the burst only: events before it (a clear
                    // serialized behind audio) reach the sink first.
                    d.steps.push(Step::Sync);
                    d.audio(ms, Some(false));
                    // At once (the sink may have taken nothing yet), or
                    // once it took a second: its render then waits.
                    if d.rng.chance(50) {
                        let burst = (ms * 8) as usize;
                        d.steps.push(Step::AwaitTaken {
                            queued_at_most: (burst - 8000) as u64,
                        });
                    }
                    d.clear(ClearBy::Racing, true);
                    let ms = d.rng.between(20, 200) as u64;
                    d.audio(ms, None);
                }
                _ => {}
            }
        }
        if d.carry.is_some() {
            // Never completed: the sink drops it at the end.
            d.seg.samples.pop();
        }
        d.segments.push(d.seg);
        let steps = d.steps.len();
        let mut rng = d.rng;
        let end = match rng.below(10) {
            0..=4 => Finish::Eos { paused_ms: None },
            5 => Finish::Eos {
                paused_ms: Some(rng.between(10, 300) as u64),
            },
            6 => Finish::EndStream {
                after_playout: true,
            },
            7 => Finish::EndStream {
                after_playout: false,
            },
            8 => Finish::Null {
                at: rng.below(steps),
                during_eos: false,
            },
            _ => Finish::Null {
                at: steps,
                during_eos: true,
            },
        };
        Script {
            variant,
            max_lead,
            most_lead,
            steps: d.steps,
            end,
            segments: d.segments,
            splits: d.splits,
        }
    }
}

/// A new segment from `pts`, maybe in another format (caps then).
fn new_segment(rng: &mut Rng, steps: &mut Vec<Step>, pts: u64) -> Segment {
    let last = steps.iter().rev().find_map(|s| match s {
        Step::Caps(input) => Some(*input),
        _ => None,
    });
    let input = match (last, rng.chance(40)) {
        (Some(input), false) => input,
        _ => *rng.pick(&[
            Input::Pcm(8000),
            Input::Pcm(16000),
            Input::Pcm(24000),
            Input::Pcm(48000),
            Input::Mulaw,
            Input::Alaw,
        ]),
    };
    if last != Some(input) {
        steps.push(Step::Caps(input));
    }
    Segment::new(input, pts)
}

/// Noise: every stretch of it tells where it came from.
fn signal(rng: &mut Rng) -> i16 {
    (rng.next() % 16001) as i16 - 8000
}

fn mark_name(rng: &mut Rng, n: usize) -> String {
    let odd = *rng.pick(&["", "\"", "\\", "é", "\n", " ", "😀", "\u{1}"]);
    format!("m{n}{odd}")
}
