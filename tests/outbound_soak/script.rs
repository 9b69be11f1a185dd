//! A seeded script for the sink, and what it must make Twilio receive:
//! audio in bursts and in real time, in buffers of any size (samples split
//! between buffers too), marks by event and by signal, clears by signal, by
//! event and by flush, a format chosen anew where a clear leaves the sink
//! nothing to carry over, and an end (EOS, `end-stream`, or NULL anywhere).

use gsttwiliostream::codec::{Resampler, g711};

use crate::common::rng::Rng;

/// What the sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Pcm(u32),
    Mulaw,
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
            Input::Mulaw => gst::Caps::builder("audio/x-mulaw")
                .field("rate", 8000i32)
                .field("channels", 1i32)
                .build(),
        }
    }

    fn rate(self) -> u64 {
        match self {
            Input::Pcm(rate) => rate as u64,
            Input::Mulaw => 8000,
        }
    }

    fn sample_bytes(self) -> usize {
        match self {
            Input::Pcm(_) => 2,
            Input::Mulaw => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClearBy {
    Signal,
    Event,
    /// The event out of band, once the sink has taken what came before.
    OobEvent,
    Flush,
}

impl ClearBy {
    pub fn reason(self) -> &'static str {
        match self {
            ClearBy::Signal => "signal",
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
    /// Its input, as samples (μ-law bytes decoded: the sink sends them as
    /// they are, so only their count matters).
    pub samples: Vec<i16>,
    pub ulaw: Vec<u8>,
    /// Marks placed in it: name, input samples before it.
    pub marks: Vec<(String, usize)>,
    /// Where its running time jumps: input samples before, running time.
    pub pieces: Vec<(usize, u64)>,
    pub ended_by: Option<ClearBy>,
}

impl Segment {
    /// Its input's duration (ns).
    pub fn duration(&self) -> u64 {
        self.samples.len() as u64 * 1_000_000_000 / self.input.rate()
    }

    /// The running time of its 8 kHz output sample `out`.
    pub fn running_time(&self, out: f64) -> u64 {
        let n = out * self.input.rate() as f64 / 8000.0;
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

    /// All Twilio gets of it when nothing cuts it short: a fresh
    /// resampler's output (its warm-up kept), the tail flushed to the
    /// sample, μ-law encoded; μ-law input as it came.
    pub fn expected(&self) -> Vec<u8> {
        let Input::Pcm(rate) = self.input else {
            return self.ulaw.clone();
        };
        let mut r = Resampler::new(rate, 8000).unwrap();
        let mut out = Vec::new();
        r.process(&self.samples, &mut out);
        let delay = r.delay_ns() as u128;
        if delay > 0 && !self.samples.is_empty() {
            let from = rate as u128;
            let total = (self.samples.len() as u128 * 8000 * 1_000_000_000 + delay * 8000 * from)
                .div_ceil(from * 1_000_000_000) as usize;
            r.process(&vec![0; rate as usize / 100], &mut out);
            out.truncate(total);
        }
        out.iter().map(|&s| g711::encode(s)).collect()
    }
}

pub struct Script {
    pub max_lead: u32,
    /// The largest `max-lead` set in the script.
    pub most_lead: u32,
    pub steps: Vec<Step>,
    pub end: Finish,
    pub segments: Vec<Segment>,
    /// Buffers that end inside a sample (`transcode-errors`).
    pub splits: u64,
}

impl Script {
    /// The script of `seed`: about `audio_ms` of audio in all.
    pub fn draw(seed: u64, audio_ms: u64) -> Script {
        let mut rng = Rng::new(seed);
        let max_lead = *rng.pick(&[20, 60, 100, 100, 250]);
        let mut steps = Vec::new();
        let mut segments = Vec::new();
        let mut splits = 0;
        let mut pts = 0u64;
        let mut total_ms = 0;
        let mut marks = 0;
        // PCM bytes pushed since the segment began (a clear drops a split
        // sample's first byte: input after it starts afresh), and the
        // second byte of its last sample when that waits for the next step.
        let mut pushed = 0;
        let mut carry: Option<u8> = None;
        let mut seg = new_segment(&mut rng, &mut steps, pts);
        let mut most_lead = max_lead;
        while total_ms < audio_ms {
            match rng.below(12) {
                0..=4 => {
                    let ms = rng.between(5, 400) as u64;
                    total_ms += ms;
                    let input = seg.input;
                    // Any number of samples, not only whole milliseconds.
                    let n = (ms * input.rate() / 1000) as usize + rng.below(7);
                    // Sometimes a jump in the timestamps: a gap the sink
                    // closes up (a frame may straddle one of 10 ms or less).
                    if rng.chance(15) {
                        pts += rng.between(1, 400) as u64 * 1_000_000;
                    }
                    seg.pieces.push((seg.samples.len(), pts));
                    let samples: Vec<i16> = (0..n).map(|_| signal(&mut rng)).collect();
                    let mut bytes: Vec<u8> = match input {
                        Input::Pcm(_) => carry
                            .take()
                            .into_iter()
                            .chain(samples.iter().flat_map(|s| s.to_le_bytes()))
                            .collect(),
                        Input::Mulaw => samples.iter().map(|&s| g711::encode(s)).collect(),
                    };
                    if matches!(input, Input::Pcm(_)) && rng.chance(25) {
                        carry = bytes.pop();
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
                            pushed += len;
                            splits += pushed as u64 % 2;
                        }
                        buffers.push(bytes[at..at + len].to_vec());
                        at += len;
                    }
                    match input {
                        Input::Pcm(_) => seg.samples.extend(&samples),
                        Input::Mulaw => {
                            seg.ulaw.extend(&bytes);
                            seg.samples.extend(&samples);
                        }
                    }
                    let realtime = rng.chance(30);
                    steps.push(Step::Audio {
                        buffers,
                        pts,
                        realtime,
                    });
                    pts += n as u64 * 1_000_000_000 / input.rate();
                }
                5 | 6 => {
                    marks += 1;
                    let name = mark_name(&mut rng, marks);
                    seg.marks.push((name.clone(), seg.samples.len()));
                    steps.push(match rng.below(2) {
                        0 => Step::MarkEvent(name),
                        _ => Step::MarkSignal(name),
                    });
                }
                7 | 8 => {
                    let by = *rng.pick(&[
                        ClearBy::Signal,
                        ClearBy::Event,
                        ClearBy::OobEvent,
                        ClearBy::Flush,
                    ]);
                    steps.push(Step::Clear(by));
                    seg.ended_by = Some(by);
                    if carry.take().is_some() {
                        seg.samples.pop();
                    }
                    pushed = 0;
                    segments.push(seg);
                    seg = new_segment(&mut rng, &mut steps, pts);
                }
                9 => {
                    let ms = rng.between(10, 300) as u64;
                    let during = match rng.below(3) {
                        0 => {
                            marks += 1;
                            let name = mark_name(&mut rng, marks);
                            seg.marks.push((name.clone(), seg.samples.len()));
                            Some(Box::new(Step::MarkSignal(name)))
                        }
                        1 => Some(Box::new(Step::Clear(ClearBy::Signal))),
                        _ => None,
                    };
                    let cleared = during
                        .as_deref()
                        .is_some_and(|d| matches!(d, Step::Clear(_)));
                    steps.push(Step::Pause { ms, during });
                    if cleared {
                        seg.ended_by = Some(ClearBy::Signal);
                        if carry.take().is_some() {
                            seg.samples.pop();
                        }
                        pushed = 0;
                        segments.push(seg);
                        seg = new_segment(&mut rng, &mut steps, pts);
                    }
                }
                10 => {
                    let lead = *rng.pick(&[20, 40, 100, 300]);
                    most_lead = most_lead.max(lead);
                    steps.push(Step::Lead(lead));
                }
                _ => {}
            }
        }
        if carry.is_some() {
            // Never completed: the sink drops it at the end.
            seg.samples.pop();
        }
        segments.push(seg);
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
                at: rng.below(steps.len()),
                during_eos: false,
            },
            _ => Finish::Null {
                at: steps.len(),
                during_eos: true,
            },
        };
        Script {
            max_lead,
            most_lead,
            steps,
            end,
            segments,
            splits,
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
        ]),
    };
    if last != Some(input) {
        steps.push(Step::Caps(input));
    }
    Segment {
        input,
        pts,
        samples: Vec::new(),
        ulaw: Vec::new(),
        marks: Vec::new(),
        pieces: Vec::new(),
        ended_by: None,
    }
}

/// Noise: every stretch of it tells where it came from.
fn signal(rng: &mut Rng) -> i16 {
    (rng.next() % 16001) as i16 - 8000
}

fn mark_name(rng: &mut Rng, n: usize) -> String {
    let odd = *rng.pick(&["", "\"", "\\", "é", "\n", " ", "😀", "\u{1}"]);
    format!("m{n}{odd}")
}
