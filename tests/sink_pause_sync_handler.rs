//! A twiliostreamsink paused from a bus sync handler, on the network
//! thread that posted the message, in the middle of the src's drain
//! (`shared-threads`): the sink cannot wait for that drain (it is this very
//! thread), so the src keeps what it made from the event but had not
//! pushed yet, and pushes it first once the sink plays. Nothing reaches
//! the paused sink (prerolled there, it would hold the network thread,
//! with every call on it, until PLAYING), nothing is lost or reordered, and
//! a stop drops what was kept.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};

use common::app::*;
use common::echo::*;
use common::*;
use gst::prelude::*;

/// The echo with a quality report each second.
const REPORTING: &str = "twiliostreamsrc name=src port=0 quality-interval=1 ! audio/x-mulaw ! \
                         twiliostreamsink name=sink";

/// The first tag of [`tagged`] chunks.
const TAG: u8 = 0x40;

/// `n` chunks, each of one byte value: `TAG + from`, `TAG + from + 1`, …
fn tagged(from: usize, n: usize) -> Vec<u8> {
    (from..from + n)
        .flat_map(|k| [TAG + k as u8; 160])
        .collect()
}

/// What reached the sink's pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// A buffer of one byte value (a [`tagged`] chunk, or [`FIRST`]).
    Chunk(u8),
    Audio,
    Gap,
    Dtmf,
    Eos,
}

/// What reaches the sink's pad, and what reaches it while `paused` is set.
struct Watch {
    seen: Arc<Mutex<Vec<Seen>>>,
    while_paused: Arc<Mutex<Vec<Seen>>>,
    paused: Arc<AtomicBool>,
}

impl Watch {
    fn on(sink: &gst::Element) -> Watch {
        let watch = Watch {
            seen: Default::default(),
            while_paused: Default::default(),
            paused: Default::default(),
        };
        let (seen, while_paused, paused) = (
            watch.seen.clone(),
            watch.while_paused.clone(),
            watch.paused.clone(),
        );
        let types = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
        sink.static_pad("sink")
            .unwrap()
            .add_probe(types, move |_, info| {
                let item = match (info.buffer(), info.event()) {
                    (Some(buffer), _) if buffer.flags().contains(gst::BufferFlags::GAP) => {
                        Some(Seen::Gap)
                    }
                    (Some(buffer), _) => {
                        let map = buffer.map_readable().unwrap();
                        match map.first() {
                            Some(&b) if map.iter().all(|&x| x == b) => Some(Seen::Chunk(b)),
                            _ => Some(Seen::Audio),
                        }
                    }
                    (_, Some(event)) => match event.view() {
                        gst::EventView::Gap(_) => Some(Seen::Gap),
                        gst::EventView::Eos(_) => Some(Seen::Eos),
                        gst::EventView::CustomDownstream(c)
                            if c.structure().is_some_and(|s| s.name() == "dtmf-event") =>
                        {
                            Some(Seen::Dtmf)
                        }
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(item) = item {
                    seen.lock().unwrap().push(item);
                    if paused.load(Ordering::SeqCst) {
                        while_paused.lock().unwrap().push(item);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        watch
    }

    /// The sink is to play again: nothing reached it while it was paused.
    fn played(&self) {
        self.paused.store(false, Ordering::SeqCst);
        let while_paused = self.while_paused.lock().unwrap().clone();
        assert!(
            while_paused.is_empty(),
            "pushed into the paused sink: {while_paused:?}"
        );
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The tags of the [`tagged`] chunks seen, in order (k for `TAG + k`).
    fn tags(&self) -> Vec<usize> {
        self.seen()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Chunk(b) if b >= TAG => Some((b - TAG) as usize),
                _ => None,
            })
            .collect()
    }
}

/// Has `target` (the pipeline or an element) pause from `p`'s bus sync
/// handler (on the thread that posts) at the first element message called
/// `name`, `paused` set from just before; what that `set_state` returned
/// comes on the receiver.
fn pause_at_first(
    p: &gst::Pipeline,
    target: &gst::Element,
    name: &'static str,
    paused: Arc<AtomicBool>,
) -> Receiver<gst::StateChangeReturn> {
    let (done, pause_done) = std::sync::mpsc::channel::<gst::StateChangeReturn>();
    let done = Mutex::new(done);
    let armed = AtomicBool::new(true);
    let weak = target.downgrade();
    p.bus().unwrap().set_sync_handler(move |_, msg| {
        if let gst::MessageView::Element(e) = msg.view()
            && e.structure().is_some_and(|s| s.name() == name)
            && armed.swap(false, Ordering::SeqCst)
            && let Some(target) = weak.upgrade()
        {
            // (Only this thread pushes meanwhile: it is the src's drain.)
            paused.store(true, Ordering::SeqCst);
            let ret = target.set_state(gst::State::Paused).into();
            let _ = done.lock().unwrap().send(ret);
        }
        gst::BusSyncReply::Pass
    });
    pause_done
}

/// The pause of [`pause_at_first`] did not fail, and the call's network
/// thread reads on (the drain that posted the message returned).
fn paused(
    pause_done: &Receiver<gst::StateChangeReturn>,
    call: &mut twilio_emulator::TwilioCall,
    src: &gst::Element,
) {
    let ret = pause_done.recv_timeout(PATIENCE).expect("paused");
    assert_ne!(ret, gst::StateChangeReturn::Failure);
    assert_reads_on(call, src);
}

/// The pipeline paused at a DTMF key (posted as the src takes it; its
/// events go into the paused sink, which they do not preroll): no hang,
/// and the echo goes on once the application plays it again.
#[test]
fn paused_from_a_sync_handler_on_the_network_thread() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let bus = p.bus().unwrap();
    let pause_done = pause_at_first(&p, p.upcast_ref(), "twilio-dtmf", Default::default());
    let mut call = echoing_call(&p, &src);
    call.send_dtmf("5").unwrap();
    call.send_media(&pattern(1, 1)).unwrap();
    paused(&pause_done, &mut call, &src);
    set_bounded(&p, gst::State::Playing);
    echo_round(&mut call, 2);
    assert_playing(&sink);
    bus.unset_sync_handler();
    hang_up(call, &p);
}

/// The pipeline paused at `twilio-quality`, which the src posts between
/// turning a chunk into a buffer and pushing it: that buffer does not go
/// into the paused sink, and goes out, right after the one before it, once
/// the pipeline plays. (What queued meanwhile is dropped, as after any
/// pause of the src.)
#[test]
fn paused_from_a_sync_handler_at_a_quality_report() {
    let (p, src, sink) = echo_pipeline(REPORTING);
    let bus = p.bus().unwrap();
    let watch = Watch::on(&sink);
    let pause_done = pause_at_first(&p, p.upcast_ref(), "twilio-quality", watch.paused.clone());
    let mut call = echoing_call(&p, &src);
    // A second of the call's audio: the report is due.
    send_chunks(&mut call, &tagged(0, 55));
    paused(&pause_done, &mut call, &src);
    let before = watch.tags();
    watch.played();

    set_bounded(&p, gst::State::Playing);
    let round = pattern(2, 3);
    send_chunks(&mut call, &round);
    // The chunk whose report paused the pipeline: neither lost nor moved.
    let held = before.len();
    assert!(held < 55, "no chunk was held back");
    let held_chunk = tagged(held, 1);
    let echoes: Vec<&[u8]> = std::iter::once(&held_chunk[..])
        .chain(round.chunks(160))
        .collect();
    wait_until_echoed(&mut call, &echoes);
    let tags = watch.tags();
    assert_eq!(tags[..=held], (0..=held).collect::<Vec<_>>()[..]);
    assert_playing(&sink);
    bus.unset_sync_handler();
    hang_up(call, &p);
}

/// The sink alone paused at `twilio-quality` (its src PLAYING), a DTMF
/// key and more chunks sent meanwhile, long enough for the fill to be due
/// when it plays: afterwards everything reaches the sink in the order sent,
/// the chunk held back first, no GAP among them.
#[test]
fn the_sink_alone_paused_at_a_quality_report_keeps_the_order() {
    let (p, src, sink) = echo_pipeline(REPORTING);
    let bus = p.bus().unwrap();
    let watch = Watch::on(&sink);
    let pause_done = pause_at_first(&p, &sink, "twilio-quality", watch.paused.clone());
    let mut call = echoing_call(&p, &src);
    let sent = tagged(0, 55);
    send_chunks(&mut call, &sent);
    paused(&pause_done, &mut call, &src);
    call.send_dtmf("7").unwrap();
    let later = tagged(55, 5);
    send_chunks(&mut call, &later);
    call.send_text("not json").unwrap();
    counter_reaches(&src, "invalid-messages", 2);
    // (The audio ran out by then: the fill timer wakes with the release.)
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_paused_now(&sink);
    watch.played();

    set_element_bounded(&sink, gst::State::Playing);
    wait_until_all_echoed(&mut call, &[sent, later].concat());
    let seen = watch.seen();
    let from = seen.iter().position(|s| *s == Seen::Chunk(TAG)).unwrap();
    let to = seen
        .iter()
        .position(|s| *s == Seen::Chunk(TAG + 59))
        .unwrap();
    let expected: Vec<Seen> = (0..55)
        .map(|k| Seen::Chunk(TAG + k))
        .chain([Seen::Dtmf, Seen::Dtmf])
        .chain((55..60).map(|k| Seen::Chunk(TAG + k)))
        .collect();
    assert_eq!(seen[from..=to], expected[..]);
    assert_playing(&sink);
    bus.unset_sync_handler();
    hang_up(call, &p);
}

/// The pipeline, or the sink alone, paused at `twilio-stop` (posted before
/// the src pushes EOS): the EOS does not go into the paused sink; it comes
/// once the sink plays.
#[test]
fn paused_from_a_sync_handler_at_the_stop() {
    for sink_alone in [false, true] {
        let (p, src, sink) = echo_pipeline(ECHO);
        let bus = p.bus().unwrap();
        let watch = Watch::on(&sink);
        let target: gst::Element = if sink_alone {
            sink.clone()
        } else {
            p.clone().upcast()
        };
        let pause_done = pause_at_first(&p, &target, "twilio-stop", watch.paused.clone());
        let mut call = echoing_call(&p, &src);
        call.send_stop().unwrap();
        paused(&pause_done, &mut call, &src);
        watch.played();

        if sink_alone {
            set_element_bounded(&sink, gst::State::Playing);
        } else {
            set_bounded(&p, gst::State::Playing);
        }
        wait_eos(&bus);
        assert_eq!(
            watch.seen().last(),
            Some(&Seen::Eos),
            "sink alone: {sink_alone}"
        );
        bus.unset_sync_handler();
        rt().block_on(call.close());
        set_bounded(&p, gst::State::Null);
    }
}

/// A stop while the src keeps a buffer back (the sink alone paused at
/// `twilio-quality`) drops it: the next run does not push it into its call.
#[test]
fn a_stop_drops_what_was_held_back() {
    let (p, src, sink) = echo_pipeline(REPORTING);
    let bus = p.bus().unwrap();
    let watch = Watch::on(&sink);
    let pause_done = pause_at_first(&p, &sink, "twilio-quality", watch.paused.clone());
    let mut call = echoing_call(&p, &src);
    send_chunks(&mut call, &tagged(0, 55));
    paused(&pause_done, &mut call, &src);
    watch.played();
    bus.unset_sync_handler();
    rt().block_on(call.abort());
    set_bounded(&p, gst::State::Ready);

    watch.seen.lock().unwrap().clear();
    let mut call = echoing_call(&p, &src);
    echo_round(&mut call, 2);
    assert_eq!(watch.tags(), Vec::<usize>::new(), "the last run's chunks");
    assert_eq!(watch.seen().first(), Some(&Seen::Chunk(FIRST[0])));
    drop_call(call, &p);
}
