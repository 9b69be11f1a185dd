//! The src's EOS probes and seqnum probe against stops, flushes and EOS
//! racing each other: each run ends with the EOS promised, and the next
//! run (the next call) streams and ends with an EOS of its own.

mod common;

use common::app::*;
use common::src::*;
use common::*;
use gst::prelude::*;
use std::sync::{Arc, Mutex};

/// The seqnums of the EOS events reaching `sink`, in order.
fn eos_seqnums_at(sink: &gst::Element) -> Arc<Mutex<Vec<gst::Seqnum>>> {
    let seqnums = Arc::new(Mutex::new(Vec::new()));
    let seen = seqnums.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && e.type_() == gst::EventType::Eos
            {
                seen.lock().unwrap().push(e.seqnum());
            }
            gst::PadProbeReturn::Ok
        },
    );
    seqnums
}

/// A src with `props` into a μ-law fakesink `sink`: the pipeline, the src,
/// what reaches the sink and the seqnums of the EOS events reaching it.
fn mulaw_pipeline(
    props: &str,
) -> (
    gst::Pipeline,
    gst::Element,
    Collector,
    Arc<Mutex<Vec<gst::Seqnum>>>,
) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {props} ! audio/x-mulaw ! fakesink name=sink sync=false"
    ));
    let src = by_name(&p, "src");
    let collector = Collector::attach(&by_name(&p, "sink"));
    let seqnums = eos_seqnums_at(&by_name(&p, "sink"));
    (p, src, collector, seqnums)
}

/// Plays `p` with the first buffer `src` pushes held, starts a call that
/// sends one chunk, and once its push is held sends an EOS to the
/// pipeline: the holding probe, the call and the EOS's seqnum.
fn eos_behind_a_held_push(
    p: &gst::Pipeline,
    src: &gst::Element,
) -> (gst::PadProbeId, twilio_emulator::TwilioCall, gst::Seqnum) {
    let (hold, held) = hold_first(src, false);
    set_bounded(p, gst::State::Playing);
    let mut call = instant_call(&url_of(src));
    call.send_media(&pattern(1, 1)).unwrap();
    held.recv_timeout(PATIENCE)
        .expect("the first buffer pushed");
    let eos = gst::event::Eos::new();
    let app = eos.seqnum();
    assert!(send_bounded(p, eos));
    (hold, call, app)
}

/// `send_event` on another thread, failing instead of hanging.
fn send_bounded(p: &gst::Pipeline, event: impl Into<gst::Event>) -> bool {
    let event = event.into();
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        let _ = tx.send(p2.send_event(event));
    });
    rx.recv_timeout(PATIENCE)
        .expect("deadlock: send_event did not return")
}

/// Blocks the first `kind` (buffer or EOS) pushed on `src`'s pad, telling
/// `held` once it is; the probe's removal lets it go.
fn hold_first(src: &gst::Element, eos: bool) -> (gst::PadProbeId, std::sync::mpsc::Receiver<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let first = std::sync::atomic::AtomicBool::new(true);
    let kind = if eos {
        gst::PadProbeType::BLOCK | gst::PadProbeType::EVENT_DOWNSTREAM
    } else {
        gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER
    };
    let id = src
        .static_pad("src")
        .unwrap()
        .add_probe(kind, move |_, info| {
            let ours = match &info.data {
                Some(gst::PadProbeData::Event(e)) => e.type_() == gst::EventType::Eos,
                Some(gst::PadProbeData::Buffer(_)) => true,
                _ => false,
            };
            if ours && first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let _ = tx.send(());
                gst::PadProbeReturn::Ok
            } else {
                gst::PadProbeReturn::Pass
            }
        })
        .unwrap();
    (id, rx)
}

/// The next run after whatever the last one ended in: a call's audio
/// reaches the sink whole, and its end is one EOS not carrying `old`.
fn next_run_streams(
    p: &gst::Pipeline,
    collector: &Collector,
    seqnums: &Mutex<Vec<gst::Seqnum>>,
    old: gst::Seqnum,
    n: usize,
) {
    set_bounded(p, gst::State::Ready);
    drain_messages(&p.bus().unwrap());
    let before = collector.snapshot().bytes().len();
    let eos_before = seqnums.lock().unwrap().len();
    set_bounded(p, gst::State::Playing);
    let mut call = instant_call(&url_of(&by_name(p, "src")));
    let sent = pattern(n, 3);
    for chunk in sent.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    call.send_stop().unwrap();
    wait_eos(&p.bus().unwrap());
    let got = collector.snapshot().bytes();
    assert_eq!(
        got[before..],
        sent[..],
        "run {n}: the call's audio, whole; EOS {:?} (old {old:?})",
        &seqnums.lock().unwrap()[eos_before..]
    );
    let seqnums = seqnums.lock().unwrap();
    assert_eq!(seqnums.len(), eos_before + 1, "run {n}: one EOS");
    assert_ne!(seqnums[eos_before], old, "run {n}: an old EOS's seqnum");
    drop(seqnums);
    rt().block_on(call.close());
}

/// An EOS sent to the pipeline while the src pushes the call's own end:
/// the run ends with one EOS; the next streams.
fn an_eos_sent_while_the_calls_end_is_pushed() {
    init();
    let (p, src, collector, seqnums) = mulaw_pipeline(SRC_PROPS.get());
    let (hold, held) = hold_first(&src, true);
    set_bounded(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    call.send_media(&pattern(1, 1)).unwrap();
    call.send_stop().unwrap();
    held.recv_timeout(PATIENCE).expect("the call's EOS pushed");
    let eos = gst::event::Eos::new();
    let app = eos.seqnum();
    send_bounded(&p, eos);
    src.static_pad("src").unwrap().remove_probe(hold);
    wait_eos(&p.bus().unwrap());
    assert_eq!(seqnums.lock().unwrap().len(), 1);
    rt().block_on(call.close());
    for n in 2..5 {
        next_run_streams(&p, &collector, &seqnums, app, n);
    }
    set_bounded(&p, gst::State::Null);
}

in_both_modes!(an_eos_sent_while_the_calls_end_is_pushed);

/// An EOS sent while the streaming thread is held in a push, then a flush
/// before it is carried out: the flush drops it (as BaseSrc drops its
/// own), the stream goes on, and the call's end is its own EOS.
#[test]
fn a_flush_drops_an_eos_not_carried_out() {
    init();
    let (p, src, collector, seqnums) = mulaw_pipeline("shared-threads=false");
    let (hold, mut call, app) = eos_behind_a_held_push(&p, &src);
    // The flush, from the src down: the held push returns FLUSHING.
    assert!(src.send_event(gst::event::FlushStart::new()));
    src.static_pad("src").unwrap().remove_probe(hold);
    assert!(src.send_event(gst::event::FlushStop::new(true)));
    let sent = pattern(1, 3);
    for chunk in sent[160..].chunks(160) {
        call.send_media(chunk).unwrap();
    }
    call.send_stop().unwrap();
    wait_eos(&p.bus().unwrap());
    let got = collector.snapshot().bytes();
    assert!(
        got.ends_with(&sent[160..]),
        "the audio after the flush reached the sink: {} bytes, {:?}, seqnums {:?} (app {app:?})",
        got.len(),
        &got[got.len().saturating_sub(40)..],
        seqnums.lock().unwrap()
    );
    let ended = seqnums.lock().unwrap().clone();
    assert_eq!(ended.len(), 1);
    assert_ne!(ended[0], app, "the dropped EOS's seqnum");
    rt().block_on(call.close());
    next_run_streams(&p, &collector, &seqnums, app, 2);
    set_bounded(&p, gst::State::Null);
}

/// An EOS sent while a push is held, then a stop to READY before the EOS
/// went out: nothing of it is left for the next run, which streams and
/// ends with its own EOS.
fn a_stop_while_an_eos_waits_for_a_held_push() {
    init();
    let (p, src, collector, seqnums) = mulaw_pipeline(SRC_PROPS.get());
    let (hold, call, app) = eos_behind_a_held_push(&p, &src);
    // READY flushes the pad: the held push returns FLUSHING.
    set_bounded(&p, gst::State::Ready);
    src.static_pad("src").unwrap().remove_probe(hold);
    assert!(seqnums.lock().unwrap().is_empty(), "the premise");
    rt().block_on(call.close());
    for n in 2..4 {
        next_run_streams(&p, &collector, &seqnums, app, n);
    }
    set_bounded(&p, gst::State::Null);
}

in_both_modes!(a_stop_while_an_eos_waits_for_a_held_push);

/// An EOS sent to the pipeline and a stop to READY at once, run after
/// run, each in whatever order they meet: neither hangs, and each next
/// run streams and ends with its own EOS.
fn an_eos_and_a_stop_at_once() {
    init();
    let (p, src, collector, seqnums) = mulaw_pipeline(SRC_PROPS.get());
    for n in 1..8 {
        set_bounded(&p, gst::State::Playing);
        let mut call = instant_call(&url_of(&src));
        call.send_media(&pattern(n, 2)).unwrap();
        let eos = gst::event::Eos::new();
        let app = eos.seqnum();
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let (p2, b2) = (p.clone(), barrier.clone());
        let sender = std::thread::spawn(move || {
            b2.wait();
            send_bounded(&p2, eos)
        });
        barrier.wait();
        set_bounded(&p, gst::State::Ready);
        sender.join().unwrap();
        rt().block_on(call.close());
        next_run_streams(&p, &collector, &seqnums, app, n + 100);
    }
    set_bounded(&p, gst::State::Null);
}

in_both_modes!(an_eos_and_a_stop_at_once);

/// An EOS sent while the src is stopped (READY, as a stop has just taken
/// it there) has no stream to end: it is refused, and the next run
/// streams. (BaseSrc kept it pending: the next run ended at once, with
/// that EOS's seqnum.)
fn an_eos_sent_while_stopped_is_not_kept_for_the_next_run() {
    init();
    let (p, _, collector, seqnums) = mulaw_pipeline(SRC_PROPS.get());
    set_bounded(&p, gst::State::Ready);
    let eos = gst::event::Eos::new();
    let app = eos.seqnum();
    assert!(!send_bounded(&p, eos), "an EOS taken while stopped");
    next_run_streams(&p, &collector, &seqnums, app, 1);
    set_bounded(&p, gst::State::Null);
}

in_both_modes!(an_eos_sent_while_stopped_is_not_kept_for_the_next_run);
