//! One seed's run: the script played into an appsrc → twiliostreamsink
//! pipeline, the peer's record, and the checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::checks::*;
use crate::common::app::set_bounded;
use crate::common::peer::{Echo, Peer, PeerState};
use crate::common::sink::{has_element, messages_until};
use crate::common::*;
use crate::script::{ClearBy, Finish, Script, Step};
use crate::variant::{Clock, Padding, check_on_time, unpad};

const NS: u64 = 1_000_000_000;
/// `twilio-clear`'s `played` against the peer (README: within 40 ms), the
/// peer's lateness added (see [`Lateness`]).
const PLAYED_SLACK: u64 = 40_000_000;
/// The queue's bound past `max-lead` and a frame: rounding and the
/// loopback, the peer's lateness added (see [`Lateness`]). On a quiet
/// machine the peer never held more than a frame past the lead, to the
/// millisecond; the exact bound is the outbox's unit tests'.
const QUEUE_SLACK: u64 = 10_000_000;

/// How late the peer's runtime woke at worst during a run (a 1 ms timer's
/// overshoot). The peer counts playout from when it read a frame, the
/// writer's model from the write: after an underrun, a frame read that
/// late starts the peer's playout that much later, so it plays less than
/// the model says and holds more. On a loaded machine (load 5 on two
/// cores) that reached 50 ms.
pub struct Lateness {
    worst: Arc<AtomicU64>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Lateness {
    pub fn start() -> Lateness {
        let worst = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (w, s) = (worst.clone(), stop.clone());
        rt().spawn(async move {
            while !s.load(Ordering::SeqCst) {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(1)).await;
                let over = t.elapsed().saturating_sub(Duration::from_millis(1));
                w.fetch_max(over.as_nanos() as u64, Ordering::SeqCst);
            }
        });
        Lateness { worst, stop }
    }

    pub fn worst(&self) -> u64 {
        self.worst.load(Ordering::SeqCst)
    }
}

impl Drop for Lateness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

struct Run {
    p: gst::Pipeline,
    app: gst::Element,
    sink: gst::Element,
    bus: gst::Bus,
    peer: Peer,
    /// Sync events sent, and seen at the sink's pad (all rendered before).
    syncs: u64,
    synced: Arc<AtomicU64>,
    clock: Clock,
    sampling: Arc<std::sync::atomic::AtomicBool>,
}

impl Run {
    fn new(script: &Script) -> Run {
        let v = &script.variant;
        let p = pipeline(&format!(
            "appsrc name=app format=time ! twiliostreamsink name=sink port=0 max-lead={} {}",
            script.max_lead,
            v.props()
        ));
        let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
        let synced = Arc::new(AtomicU64::new(0));
        let seen = synced.clone();
        sink.static_pad("sink").unwrap().add_probe(
            gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let Some(gst::PadProbeData::Event(e)) = &info.data else {
                    return gst::PadProbeReturn::Ok;
                };
                // The sink ignores it.
                if let Some(s) = e.structure().filter(|s| s.name() == "soak-sync") {
                    seen.store(s.get::<u64>("n").unwrap(), Ordering::SeqCst);
                }
                gst::PadProbeReturn::Ok
            },
        );
        set_state(&p, gst::State::Playing);
        let bus = p.bus().unwrap();
        let peer = Peer::dial_as(&url_of(&sink), v.echo, v.provider, v.format);
        let deadline = Instant::now() + PATIENCE;
        while !sink.property::<bool>("connected") {
            assert!(Instant::now() < deadline, "no call");
            std::thread::sleep(Duration::from_millis(1));
        }
        let clock = Clock::default();
        let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
        {
            let (p, clock, sampling) = (p.clone(), clock.clone(), sampling.clone());
            std::thread::spawn(move || {
                while sampling.load(Ordering::SeqCst) {
                    if let Some(t) = p.current_running_time() {
                        clock.lock().unwrap().push((Instant::now(), t.nseconds()));
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
        }
        Run {
            p,
            app,
            sink,
            bus,
            peer,
            syncs: 0,
            synced,
            clock,
            sampling,
        }
    }

    /// Waits until the sink has rendered everything pushed so far.
    fn sync(&mut self) {
        self.syncs += 1;
        let s = gst::Structure::builder("soak-sync")
            .field("n", self.syncs)
            .build();
        assert!(self.app.send_event(gst::event::CustomDownstream::new(s)));
        let deadline = Instant::now() + PATIENCE;
        while self.synced.load(Ordering::SeqCst) < self.syncs {
            assert!(Instant::now() < deadline, "the sink took nothing");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn event(&self, name: &str, mark: Option<&str>) {
        let mut s = gst::Structure::builder(name);
        if let Some(m) = mark {
            s = s.field("name", m);
        }
        let event = gst::event::CustomDownstream::new(s.build());
        assert!(self.app.send_event(event));
    }

    fn step(&mut self, step: &Step, rate: &mut u64, sample_bytes: &mut usize) {
        match step {
            Step::Caps(input) => {
                self.app.set_property("caps", input.caps());
                *rate = input.rate();
                *sample_bytes = input.sample_bytes();
            }
            Step::Audio {
                buffers,
                pts,
                realtime,
            } => {
                let began = Instant::now();
                let mut bytes = 0;
                for b in buffers {
                    let mut buffer = gst::Buffer::from_mut_slice(b.clone());
                    let at = (bytes / *sample_bytes) as u64 * NS / *rate;
                    buffer
                        .get_mut()
                        .unwrap()
                        .set_pts(gst::ClockTime::from_nseconds(pts + at));
                    let ret = self
                        .app
                        .emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
                    assert_eq!(ret, gst::FlowReturn::Ok);
                    bytes += b.len();
                    if *realtime {
                        let end = (bytes / *sample_bytes) as u64 * NS / *rate;
                        let due = began + Duration::from_nanos(end);
                        std::thread::sleep(due.saturating_duration_since(Instant::now()));
                    }
                }
            }
            Step::MarkEvent(name) => self.event("twilio-mark", Some(name)),
            Step::MarkSignal(name) => {
                self.sync();
                assert!(self.sink.emit_by_name::<bool>("send-mark", &[name]));
            }
            Step::Clear(ClearBy::Signal) => {
                self.sync();
                assert!(self.sink.emit_by_name::<bool>("clear", &[]));
            }
            Step::Sync => self.sync(),
            Step::AwaitTaken { queued_at_most } => {
                let deadline = Instant::now() + PATIENCE;
                while self.app.property::<u64>("current-level-bytes") > *queued_at_most {
                    assert!(Instant::now() < deadline, "the sink took nothing");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Step::Clear(ClearBy::Racing) => {
                assert!(self.sink.emit_by_name::<bool>("clear", &[]));
            }
            Step::Clear(ClearBy::Event) => self.event("twilio-clear", None),
            Step::Clear(ClearBy::OobEvent) => {
                self.sync();
                let s = gst::Structure::new_empty("twilio-clear");
                assert!(self.app.send_event(gst::event::CustomDownstreamOob::new(s)));
            }
            Step::Pause { ms, during } => {
                self.sync();
                set_bounded(&self.p, gst::State::Paused);
                if let Some(step) = during {
                    self.step(step, rate, sample_bytes);
                }
                std::thread::sleep(Duration::from_millis(*ms));
                set_bounded(&self.p, gst::State::Playing);
            }
            Step::Lead(ms) => self.sink.set_property("max-lead", *ms),
            Step::Clear(ClearBy::Flush) => {
                self.sync();
                assert!(self.app.send_event(gst::event::FlushStart::new()));
                assert!(self.app.send_event(gst::event::FlushStop::new(false)));
            }
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.sampling.store(false, Ordering::SeqCst);
        let _ = self.p.set_state(gst::State::Null);
    }
}

/// Runs the script of `seed` and checks what the peer got.
pub fn soak(seed: u64) {
    let v = crate::variant::Variant::draw(seed);
    // A peer that never echoes holds the EOS (or the end after the
    // playout) for 5 s past the playout, and a syncing sink takes the
    // script in real time: shorter scripts then.
    let audio_ms = match (v.echo, v.stop_at_eos, v.sync) {
        (Echo::Never, false, _) => 600,
        (_, _, true) => 1000,
        _ => 2000,
    };
    let script = Script::draw(seed, audio_ms, v);
    let ctx = format!(
        "seed {seed} (max-lead {}, {:?} {}, {}, echoes {:?}{}, end {:?})",
        script.max_lead,
        v.provider,
        v.format,
        v.props(),
        v.echo,
        if v.stop_at_eos { ", stop at EOS" } else { "" },
        script.end
    );
    eprintln!("{ctx}");
    let lateness = Lateness::start();
    let mut run = Run::new(&script);
    let (mut rate, mut sample_bytes) = (8000, 2);
    for (i, step) in script.steps.iter().enumerate() {
        if let Finish::Null {
            at,
            during_eos: false,
        } = script.end
            && at == i
        {
            set_bounded(&run.p, gst::State::Null);
            let (st, _) = observed(&script, &run.peer.state());
            let script = &as_the_sink_saw_it(&script, &st, &ctx);
            check_media(script, &st, false, &ctx);
            check_marks(script, &st, false, &ctx);
            return;
        }
        if std::env::var_os("OUTBOUND_SOAK_TRACE").is_some() {
            eprintln!("seed {seed} step {i}: {}", brief(step));
        }
        run.step(step, &mut rate, &mut sample_bytes);
    }
    let complete = match script.end {
        Finish::Eos { paused_ms } => {
            let mut messages = Vec::new();
            if paused_ms.is_some() {
                run.sync();
                set_bounded(&run.p, gst::State::Paused);
            }
            assert!(
                run.app
                    .emit_by_name::<gst::FlowReturn>("end-of-stream", &[])
                    == gst::FlowReturn::Ok
            );
            if let Some(ms) = paused_ms {
                // The EOS waits for PLAYING (README "Ending the stream").
                std::thread::sleep(Duration::from_millis(ms));
                messages.extend(std::iter::from_fn(|| run.bus.pop()));
                assert!(
                    !messages
                        .iter()
                        .any(|m| matches!(m.view(), gst::MessageView::Eos(_))),
                    "{ctx}: EOS while paused"
                );
                set_bounded(&run.p, gst::State::Playing);
            }
            if v.stop_at_eos {
                // Twilio's `stop` ends the wait for the echo.
                run.peer.wait_for("the EOS mark", |st| {
                    st.marks.iter().any(|m| m.0 == "twiliostream-eos")
                });
                run.peer.stop();
            }
            messages.extend(messages_until(&run.bus, |m| {
                if let Some(gst::MessageView::Error(e)) = m.last().map(|m| m.view()) {
                    panic!("{ctx}: ERROR {} ({:?})", e.error(), e.debug());
                }
                matches!(m.last().map(|m| m.view()), Some(gst::MessageView::Eos(_)))
            }));
            let eos_at = Instant::now();
            let st = match v.stop_at_eos {
                // Nothing to end: the socket stays until the sink stops.
                true => {
                    assert!(
                        has_element(&messages, "twilio-stop"),
                        "{ctx}: no twilio-stop"
                    );
                    assert!(!has_element(&messages, "twilio-ended"), "{ctx}: ended");
                    run.peer.state()
                }
                // With no echo, once the bound after the playout passed.
                false => {
                    let st = run.peer.wait_closed();
                    let end = st.playout_end().unwrap_or(eos_at);
                    assert!(
                        eos_at >= end,
                        "{ctx}: EOS {:?} before the playout's end",
                        end - eos_at
                    );
                    assert_eq!(st.closed.unwrap().1, Some(1000), "{ctx}: the close");
                    st
                }
            };
            assert_eq!(
                st.marks.last().map(|m| (m.0.as_str(), m.1)),
                Some(("twiliostream-eos", st.media.len())),
                "{ctx}"
            );
            Some(messages)
        }
        Finish::EndStream { after_playout } => {
            run.sync();
            assert!(
                run.sink
                    .emit_by_name::<bool>("end-stream", &[&after_playout])
            );
            let st = run.peer.wait_closed();
            assert_eq!(st.closed.unwrap().1, Some(1000), "{ctx}: the close");
            if after_playout {
                let closed = st.closed.unwrap().0;
                assert!(
                    closed >= st.playout_end().unwrap_or(closed),
                    "{ctx}: closed before the playout's end"
                );
            }
            let messages = messages_until(&run.bus, |m| {
                !element_messages(m, "twilio-ended").is_empty()
            });
            after_playout.then_some(messages)
        }
        Finish::Null { .. } => {
            assert!(
                run.app
                    .emit_by_name::<gst::FlowReturn>("end-of-stream", &[])
                    == gst::FlowReturn::Ok
            );
            run.peer.wait_for("the EOS mark", |st| {
                st.marks.iter().any(|m| m.0 == "twiliostream-eos")
            });
            set_bounded(&run.p, gst::State::Null);
            None
        }
    };
    let raw = run.peer.state();
    let (st, padding) = observed(&script, &raw);
    let script = &as_the_sink_saw_it(&script, &st, &ctx);
    check_media(script, &st, complete.is_some(), &ctx);
    check_marks(script, &st, complete.is_some(), &ctx);
    if v.sync {
        check_on_time(script, &raw, &cuts(&raw), &padding, &run.clock, &ctx);
    }
    let late = lateness.worst();
    let lead = Duration::from_millis((script.most_lead + v.frame_ms()) as u64)
        + Duration::from_nanos(QUEUE_SLACK + late);
    eprintln!(
        "{ctx}: most queued {:?} (max-lead + a frame + slack {lead:?}), {} clears, \
         the peer up to {:?} late",
        st.most_queued,
        st.clears.len(),
        Duration::from_nanos(late)
    );
    assert!(
        st.most_queued <= lead,
        "{ctx}: the peer held {:?}",
        st.most_queued
    );
    assert!(st.invalid.is_empty(), "{ctx}: {:?}", st.invalid);
    if let Some(messages) = complete {
        // What the peer played of segment k, in samples, without padding.
        let (raw_cuts, w) = (cuts(&raw), raw.width);
        let heard = |k: usize, h: f64| {
            let from = raw_cuts[k].0;
            let at = from + h.floor() as usize * w;
            ((padding.unpadded(at) - padding.unpadded(from)) / w) as f64 + h.fract()
        };
        check_reports(script, &st, &messages, PLAYED_SLACK + late, heard, &ctx);
        check_counters(script, &run.sink, &raw, &messages, &ctx);
    }
    set_bounded(&run.p, gst::State::Null);
}

/// What the peer got, the padding of short frames taken off (Telnyx).
fn observed(script: &Script, raw: &PeerState) -> (PeerState, Padding) {
    let format = script.variant.format;
    let wants: Vec<Vec<u8>> = script.segments.iter().map(|s| s.expected(format)).collect();
    unpad(&script.variant, raw, &cuts(raw), &wants)
}

/// A step, its buffers only counted.
fn brief(step: &Step) -> String {
    match step {
        Step::Audio {
            buffers,
            pts,
            realtime,
        } => format!(
            "{} buffers, {} bytes from {pts} ns{}",
            buffers.len(),
            buffers.iter().map(Vec::len).sum::<usize>(),
            if *realtime { " in real time" } else { "" }
        ),
        other => format!("{other:?}"),
    }
}
