//! The sink paired with a src: `twiliostreamsrc ! queue !
//! twiliostreamsink`, the peer ([`Peer`]) dialling the src and hearing
//! its own audio back in the same call. The peer sends random audio in
//! bursts and in real time, with DTMF keys and pauses among it; the
//! application emits `send-mark` and `clear` at random points (maybe once
//! everything sent came back), pauses the pipeline for a while (maybe with
//! audio coming meanwhile, which the src drops), and the call ends by
//! Twilio's `stop`, an EOS sent to the pipeline, `end-stream`, or NULL
//! anywhere. The checks are in [`crate::echo_checks`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use gsttwiliostream::codec::{ByteOrder, Codec, WireFormat};
use twilio_emulator::Provider;

use crate::common::app::set_bounded;
use crate::common::peer::{Echo, Peer};
use crate::common::rng::Rng;
use crate::common::sink::{has_element, messages_until};
use crate::common::*;
use crate::echo_checks::{Fed, check};
use crate::run::Lateness;

/// One chunk of the caller's audio: 20 ms.
pub const CHUNK_MS: u64 = 20;

#[derive(Debug, Clone, Copy)]
pub struct EchoVariant {
    pub provider: Provider,
    pub format: WireFormat,
    pub late: Duration,
}

impl EchoVariant {
    fn draw(rng: &mut Rng) -> EchoVariant {
        let (le, be) = (ByteOrder::Little, ByteOrder::Big);
        let (provider, format) = *rng.pick(&[
            (Provider::Twilio, WireFormat::PCMU),
            (Provider::Twilio, WireFormat::PCMU),
            (Provider::SignalWire, WireFormat::PCMU),
            (Provider::SignalWire, WireFormat::l16(16000, le)),
            (Provider::SignalWire, WireFormat::l16(24000, be)),
            (Provider::Telnyx, WireFormat::PCMA),
            (Provider::Telnyx, WireFormat::PCMU),
            (Provider::Telnyx, WireFormat::l16(8000, be)),
            (Provider::Telnyx, WireFormat::l16(16000, be)),
        ]);
        let late = Duration::from_millis(*rng.pick(&[0, 0, 40, 200]));
        EchoVariant {
            provider,
            format,
            late,
        }
    }

    /// The pipeline: the call's own format between the two, so that what
    /// comes back is what was sent, byte for byte.
    fn launch(&self) -> String {
        let order = match self.format.codec {
            Codec::L16(ByteOrder::Little) => "little-endian",
            _ => "big-endian",
        };
        let caps = match self.format.codec {
            Codec::Pcmu => "audio/x-mulaw".to_owned(),
            Codec::Pcma => "audio/x-alaw".to_owned(),
            _ => format!("audio/x-raw,format=S16LE,rate={}", self.format.rate),
        };
        format!(
            "twiliostreamsrc name=src port=0 l16-byte-order={order} ! {caps} ! queue ! \
             twiliostreamsink name=sink"
        )
    }

    /// Bytes of a chunk.
    pub fn chunk_bytes(&self) -> usize {
        CHUNK_MS as usize * 8 * self.format.bytes_per_tick()
    }

    /// Bytes of the shortest frame the provider takes (Telnyx pads to it).
    pub fn min_frame(&self) -> usize {
        match self.provider {
            Provider::Telnyx => self.chunk_bytes(),
            _ => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub enum EchoStep {
    /// Chunks from the peer, each at its time or all at once.
    Send {
        chunks: usize,
        realtime: bool,
    },
    /// Nothing from the peer for a while.
    Quiet(u64),
    Dtmf(char),
    /// `send-mark`, maybe once all sent came back (but a frame).
    Mark {
        settled: bool,
    },
    /// `clear`, the same.
    Clear {
        settled: bool,
    },
    /// The pipeline PAUSED for `ms`, `chunks` sent meanwhile (the src drops
    /// them) and maybe a mark, then PLAYING.
    Pause {
        ms: u64,
        chunks: usize,
        mark: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoEnd {
    /// Twilio's `stop` (the caller hung up).
    Stop,
    /// EOS sent to the pipeline once the sink took all: played out.
    Eos,
    EndStream {
        after_playout: bool,
    },
    /// NULL before step `at`.
    Null {
        at: usize,
    },
}

pub struct EchoScript {
    pub variant: EchoVariant,
    pub max_lead: u32,
    pub steps: Vec<EchoStep>,
    pub end: EchoEnd,
}

impl EchoScript {
    /// `pauses`: the variant of pauses mid-call (else none).
    pub fn draw(seed: u64, pauses: bool) -> EchoScript {
        let mut rng = Rng::new(seed ^ 0xec40_5eed);
        let variant = EchoVariant::draw(&mut rng);
        let max_lead = *rng.pick(&[20, 60, 100, 250]);
        let mut steps = Vec::new();
        let mut audio_ms = 0;
        let mut paused = false;
        while audio_ms < 1500 || (pauses && !paused) {
            let step = match rng.below(10) {
                0..=3 => {
                    let chunks = rng.between(1, 25);
                    audio_ms += chunks as u64 * CHUNK_MS;
                    EchoStep::Send {
                        chunks,
                        realtime: rng.chance(50),
                    }
                }
                4 => EchoStep::Quiet(rng.between(10, 400) as u64),
                5 => EchoStep::Dtmf(*rng.pick(&['1', '5', '9', '#', '*'])),
                6 | 7 => EchoStep::Mark {
                    settled: rng.chance(50),
                },
                8 => EchoStep::Clear {
                    settled: rng.chance(50),
                },
                _ if pauses => {
                    paused = true;
                    EchoStep::Pause {
                        ms: rng.between(10, 500) as u64,
                        chunks: *rng.pick(&[0, 0, 1, 5]),
                        mark: rng.chance(40),
                    }
                }
                _ => continue,
            };
            steps.push(step);
        }
        let end = match rng.below(8) {
            0 | 1 => EchoEnd::Stop,
            2 | 3 => EchoEnd::Eos,
            4 | 5 => EchoEnd::EndStream {
                after_playout: true,
            },
            6 => EchoEnd::EndStream {
                after_playout: false,
            },
            _ => EchoEnd::Null {
                at: rng.below(steps.len() + 1),
            },
        };
        EchoScript {
            variant,
            max_lead,
            steps,
            end,
        }
    }
}

/// What the application did, for the checks.
#[derive(Debug, Default)]
pub struct Record {
    /// Every chunk sent, in order.
    pub sent: Vec<Vec<u8>>,
    /// Per mark: its name, the bytes the peer had got back before it was
    /// asked for, and the bytes the sink had been given by then.
    pub marks: Vec<(String, usize, usize)>,
    /// Per pause: chunks the sink had been given (at least) before it,
    /// and chunks sent by its end.
    pub pauses: Vec<(usize, usize)>,
    /// Clears asked for.
    pub clears: usize,
}

struct EchoRun {
    p: gst::Pipeline,
    src: gst::Element,
    sink: gst::Element,
    peer: Peer,
    fed: Arc<Mutex<Fed>>,
    rng: Rng,
    rec: Record,
    /// When the next real-time chunk is due.
    due: Instant,
    silence: u8,
    /// What the sink had been given when the last clear was asked for.
    fed_at_clear: usize,
}

impl EchoRun {
    fn new(script: &EchoScript, seed: u64) -> EchoRun {
        let v = script.variant;
        let p = pipeline(&v.launch());
        let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
        sink.set_property("max-lead", script.max_lead);
        let fed = Arc::new(Mutex::new(Fed::default()));
        let swap = matches!(v.format.codec, Codec::L16(ByteOrder::Big));
        let f = fed.clone();
        sink.static_pad("sink")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                let Some(gst::PadProbeData::Buffer(b)) = &info.data else {
                    return gst::PadProbeReturn::Ok;
                };
                // The src's fill (silence flagged GAP): the sink sends nothing
                // of it, as of a GAP event.
                if b.flags().contains(gst::BufferFlags::GAP) {
                    return gst::PadProbeReturn::Ok;
                }
                let rt = pad
                    .sticky_event::<gst::event::Segment>(0)
                    .and_then(|s| {
                        let s = s.segment().downcast_ref::<gst::ClockTime>()?.clone();
                        s.to_running_time(b.pts()?)
                    })
                    .map(|t| t.nseconds());
                let map = b.map_readable().unwrap();
                let mut bytes = map.to_vec();
                if swap {
                    bytes.chunks_exact_mut(2).for_each(|s| s.swap(0, 1));
                }
                let mut f = f.lock().unwrap();
                let at = f.bytes.len();
                f.buffers.push((at, rt));
                f.bytes.extend(bytes);
                gst::PadProbeReturn::Ok
            });
        set_state(&p, gst::State::Playing);
        let peer = Peer::dial_as(
            &url_of(&src),
            Echo::OnPlayout { late: v.late },
            v.provider,
            v.format,
        );
        // The sink has the call once its `start` came.
        let deadline = Instant::now() + PATIENCE;
        while !sink.property::<bool>("connected") {
            assert!(Instant::now() < deadline, "no call");
            std::thread::sleep(Duration::from_millis(1));
        }
        EchoRun {
            p,
            src,
            sink,
            peer,
            fed,
            rng: Rng::new(seed ^ 0xa0d1_0000),
            rec: Record::default(),
            due: Instant::now(),
            silence: v.format.silence(),
            fed_at_clear: 0,
        }
    }

    fn send(&mut self, realtime: bool) {
        let n = self.rec.sent.len() as u64;
        let len = self.script_chunk_bytes();
        let chunk: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
        if realtime {
            std::thread::sleep(self.due.saturating_duration_since(Instant::now()));
        }
        self.peer.send_media(&chunk, n + 1, n * CHUNK_MS);
        self.due = Instant::now().max(self.due) + Duration::from_millis(CHUNK_MS);
        self.rec.sent.push(chunk);
    }

    fn script_chunk_bytes(&self) -> usize {
        self.fed.lock().unwrap().chunk_bytes
    }

    /// Waits until the sink took all sent (but chunks the src dropped
    /// around a pause) and the last bytes that came back are of its last
    /// frame: all came back but the frame the sink holds.
    fn settle(&self, frame: usize) {
        let sent: usize = self.rec.sent.iter().map(Vec::len).sum();
        let silence = self.silence;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let fed = self.fed.lock().unwrap().bytes.clone();
            let media = self.peer.state().media;
            // (Telnyx pads a short frame with silence.)
            let end = media
                .iter()
                .rposition(|&b| b != silence)
                .map_or(0, |i| i + 1);
            let tail = &media[end.saturating_sub(8)..end];
            let recent = &fed[fed.len().saturating_sub(2 * frame + 8)..];
            // (Nothing since the last clear but what the sink holds.)
            let cleared = fed.len() <= self.fed_at_clear + frame;
            let back = !tail.is_empty() && recent.windows(tail.len()).any(|w| w == tail);
            if fed.len() + self.dropped_paused() >= sent && (cleared || back) {
                return;
            }
            assert!(Instant::now() < deadline, "the echo did not come back");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn dropped_paused(&self) -> usize {
        self.src.property::<u64>("chunks-dropped-paused") as usize * self.script_chunk_bytes()
    }

    fn mark(&mut self) {
        let name = format!("e{}", self.rec.marks.len() + 1);
        let back = self.peer.state().media.len();
        assert!(self.sink.emit_by_name::<bool>("send-mark", &[&name]));
        let fed = self.fed.lock().unwrap().bytes.len();
        self.rec.marks.push((name, back, fed));
    }

    fn step(&mut self, step: &EchoStep, frame: usize) {
        match *step {
            EchoStep::Send { chunks, realtime } => {
                self.due = Instant::now();
                for _ in 0..chunks {
                    self.send(realtime);
                }
            }
            EchoStep::Quiet(ms) => std::thread::sleep(Duration::from_millis(ms)),
            EchoStep::Dtmf(d) => self.peer.send_dtmf(d),
            EchoStep::Mark { settled } => {
                if settled {
                    self.settle(frame);
                }
                self.mark();
            }
            EchoStep::Clear { settled } => {
                if settled {
                    self.settle(frame);
                }
                assert!(self.sink.emit_by_name::<bool>("clear", &[]));
                self.fed_at_clear = self.fed.lock().unwrap().bytes.len();
                self.rec.clears += 1;
            }
            EchoStep::Pause { ms, chunks, mark } => {
                // What the src had not pushed yet waits, and is dropped
                // on the return (README "Pausing").
                let fed = self.fed.lock().unwrap().bytes.len();
                let before = fed / self.script_chunk_bytes();
                set_bounded(&self.p, gst::State::Paused);
                for _ in 0..chunks {
                    self.send(false);
                }
                if mark {
                    self.mark();
                }
                std::thread::sleep(Duration::from_millis(ms));
                set_bounded(&self.p, gst::State::Playing);
                self.rec.pauses.push((before, self.rec.sent.len()));
            }
        }
    }
}

impl Drop for EchoRun {
    fn drop(&mut self) {
        let _ = self.p.set_state(gst::State::Null);
    }
}

/// Runs the echo of `seed` and checks it.
pub fn echo_soak(seed: u64, pauses: bool) {
    let script = EchoScript::draw(seed, pauses);
    let v = script.variant;
    let ctx = format!(
        "echo seed {seed}{} ({:?} {}, max-lead {}, echoes {:?} late, end {:?})",
        if pauses { " with pauses" } else { "" },
        v.provider,
        v.format,
        script.max_lead,
        v.late,
        script.end
    );
    eprintln!("{ctx}");
    let lateness = Lateness::start();
    let mut run = EchoRun::new(&script, seed);
    run.fed.lock().unwrap().chunk_bytes = v.chunk_bytes();
    let bus = run.p.bus().unwrap();
    let frame = v.chunk_bytes();
    let trace = std::env::var_os("OUTBOUND_SOAK_TRACE").is_some();
    for (i, step) in script.steps.iter().enumerate() {
        if script.end == (EchoEnd::Null { at: i }) {
            break;
        }
        if trace {
            eprintln!("echo seed {seed} step {i}: {step:?}");
        }
        run.step(step, frame);
    }
    let mut dropped_paused = run.src.property::<u64>("chunks-dropped-paused");
    let (st, messages, complete) = match script.end {
        EchoEnd::Null { .. } => {
            set_bounded(&run.p, gst::State::Null);
            (run.peer.state(), None, false)
        }
        EchoEnd::Stop => {
            run.peer.stop();
            let messages = until_eos(&bus, &ctx);
            assert!(
                has_element(&messages, "twilio-stop"),
                "{ctx}: no twilio-stop"
            );
            dropped_paused = run.src.property::<u64>("chunks-dropped-paused");
            set_bounded(&run.p, gst::State::Null);
            (run.peer.state(), None, false)
        }
        EchoEnd::Eos | EchoEnd::EndStream { .. } => {
            let after_playout = script.end
                != (EchoEnd::EndStream {
                    after_playout: false,
                });
            if after_playout {
                run.settle(frame);
            }
            dropped_paused = run.src.property::<u64>("chunks-dropped-paused");
            match script.end {
                EchoEnd::Eos => assert!(run.p.send_event(gst::event::Eos::new())),
                _ => assert!(
                    run.sink
                        .emit_by_name::<bool>("end-stream", &[&after_playout])
                ),
            }
            let messages = until_eos(&bus, &ctx);
            let eos_at = Instant::now();
            let st = run.peer.wait_closed();
            assert_eq!(st.closed.unwrap().1, Some(1000), "{ctx}: the close");
            // (An EOS sent to the pipeline ends the src's stream before the
            // call: the src still posts the call's last messages.)
            let ended = element_messages(&messages, "twilio-ended");
            assert_eq!(ended.len(), 1, "{ctx}: twilio-ended");
            if after_playout {
                let end = st.playout_end().unwrap_or(eos_at);
                assert!(eos_at >= end, "{ctx}: EOS before the playout's end");
                let closed = st.closed.unwrap().0;
                assert!(closed >= end, "{ctx}: closed before the playout's end");
                let ours = match script.end {
                    EchoEnd::Eos => "twiliostream-eos",
                    _ => "twiliostream-end",
                };
                assert_eq!(
                    st.marks.last().map(|m| (m.0.as_str(), m.1)),
                    Some((ours, st.media.len())),
                    "{ctx}"
                );
            }
            set_bounded(&run.p, gst::State::Null);
            (st, after_playout.then_some(messages), after_playout)
        }
    };
    let fed = run.fed.lock().unwrap();
    check(
        &script,
        &run.rec,
        &fed,
        &st,
        messages.as_deref(),
        dropped_paused,
        lateness.worst(),
        complete,
        &ctx,
    );
}

/// The bus until EOS; an ERROR fails.
fn until_eos(bus: &gst::Bus, ctx: &str) -> Vec<gst::Message> {
    messages_until(bus, |m| {
        if let Some(gst::MessageView::Error(e)) = m.last().map(|m| m.view()) {
            panic!("{ctx}: ERROR {} ({:?})", e.error(), e.debug());
        }
        matches!(m.last().map(|m| m.view()), Some(gst::MessageView::Eos(_)))
    })
}
