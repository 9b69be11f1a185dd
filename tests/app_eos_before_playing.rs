//! An application's EOS event sent before the pipeline reached PLAYING,
//! while a sink is still prerolling the src's first buffer: that sink
//! holds the pushing thread until PLAYING, which waits for another sink
//! (here one fed by an `appsrc` with nothing to push yet), and
//! `gst_element_send_event` holds the pipeline's state lock meanwhile. The
//! call returns all the same; the EOS completes the other sink's preroll,
//! the pipeline plays, and the src's stream ends after what it pushed.
//! The call's messages are still posted after the stream's end.

mod common;

use common::app::*;
use common::sink::*;
use common::src::*;
use common::*;
use gst::prelude::*;
use std::sync::{Arc, Mutex};

/// Sends `event` to `p` on another thread; fails if that does not return.
fn send_bounded(p: &gst::Pipeline, event: impl Into<gst::Event>) -> bool {
    let event = event.into();
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        let _ = tx.send(p2.send_event(event));
    });
    rx.recv_timeout(PATIENCE)
        .expect("deadlock: send_event(eos) did not return")
}

/// The seqnum of the EOS event that reaches `sink`.
fn eos_seqnum_at(sink: &gst::Element) -> Arc<Mutex<Option<gst::Seqnum>>> {
    let seqnum = Arc::new(Mutex::new(None));
    let seen = seqnum.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && e.type_() == gst::EventType::Eos
            {
                *seen.lock().unwrap() = Some(e.seqnum());
            }
            gst::PadProbeReturn::Ok
        },
    );
    seqnum
}

fn eos_while_a_sink_prerolls() {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {} ! audio/x-mulaw ! fakesink name=sink sync=false \
         appsrc name=idle ! fakesink name=other sync=false",
        SRC_PROPS.get()
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    let eos_seqnum = eos_seqnum_at(&by_name(&p, "sink"));
    let bus = p.bus().unwrap();
    set_state(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&by_name(&p, "src")));
    let sent = pattern(1, 5);
    for chunk in sent.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    // The first buffer is in its sink, which waits for PLAYING: the other
    // sink has had nothing.
    collector.wait_buffers(1);
    let (_, current, _) = p.state(gst::ClockTime::ZERO);
    assert_ne!(current, gst::State::Playing, "the premise");

    let eos = gst::event::Eos::new();
    let seqnum = eos.seqnum();
    assert!(send_bounded(&p, eos));
    call.send_dtmf("7").unwrap();
    call.send_stop().unwrap();

    let messages = messages_until(&bus, |m| {
        if let Some(gst::MessageView::Error(e)) = m.last().map(|m| m.view()) {
            panic!("ERROR {} ({:?})", e.error(), e.debug());
        }
        has_eos(m) && has_element(m, "twilio-stop")
    });
    let got = collector.wait_eos();
    assert!(!got.buffers.is_empty());
    assert!(
        sent.starts_with(&got.bytes()),
        "what the sink got is the call's audio up to the EOS"
    );
    // The EOS is the application's, as BaseSrc would push it.
    assert_eq!(*eos_seqnum.lock().unwrap(), Some(seqnum));
    let dtmf = element_messages(&messages, "twilio-dtmf");
    assert_eq!(dtmf.len(), 1, "{messages:?}");
    assert_eq!(dtmf[0].get::<String>("digit").unwrap(), "7");
    set_bounded(&p, gst::State::Null);
    rt().block_on(call.close());
}

in_both_modes!(eos_while_a_sink_prerolls);

/// The same in PAUSED, where a live src pushes nothing (and has not taken
/// the call yet): the call returns, and the stream ends once the pipeline
/// plays, before any of the call's audio.
fn eos_while_paused() {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {} ! audio/x-mulaw ! fakesink name=sink sync=false",
        SRC_PROPS.get()
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    let eos_seqnum = eos_seqnum_at(&by_name(&p, "sink"));
    set_bounded(&p, gst::State::Paused);
    let mut call = instant_call(&url_of(&by_name(&p, "src")));
    call.send_media(&pattern(2, 1)).unwrap();
    let eos = gst::event::Eos::new();
    let seqnum = eos.seqnum();
    assert!(send_bounded(&p, eos));
    set_bounded(&p, gst::State::Playing);
    wait_eos(&p.bus().unwrap());
    let got = collector.wait_eos();
    assert!(got.buffers.is_empty(), "{} buffers", got.buffers.len());
    assert_eq!(*eos_seqnum.lock().unwrap(), Some(seqnum));
    set_bounded(&p, gst::State::Null);
    rt().block_on(call.close());
}

in_both_modes!(eos_while_paused);

/// An EOS sent to the element whose push is refused (the element stopped
/// while its streaming thread pushed it): a later EOS of the element's own
/// (the next call's end, after a restart) carries a seqnum of its own, not
/// the application's old one.
fn refused_eos_leaves_no_seqnum_behind() {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {} ! audio/x-mulaw ! fakesink name=sink sync=false",
        SRC_PROPS.get()
    ));
    let src = by_name(&p, "src");
    let eos_seqnum = eos_seqnum_at(&by_name(&p, "sink"));
    // Holds the first EOS on the src's pad until the stop flushes it.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let first = std::sync::atomic::AtomicBool::new(true);
    src.static_pad("src").unwrap().add_probe(
        gst::PadProbeType::BLOCK | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| match &info.data {
            Some(gst::PadProbeData::Event(e))
                if e.type_() == gst::EventType::Eos
                    && first.swap(false, std::sync::atomic::Ordering::SeqCst) =>
            {
                let _ = held_tx.send(());
                gst::PadProbeReturn::Ok
            }
            _ => gst::PadProbeReturn::Pass,
        },
    );
    set_bounded(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    call.send_media(&pattern(1, 1)).unwrap();
    let eos = gst::event::Eos::new();
    let seqnum = eos.seqnum();
    assert!(send_bounded(&p, eos));
    held_rx.recv_timeout(PATIENCE).expect("the EOS was pushed");
    set_bounded(&p, gst::State::Ready);
    assert_eq!(*eos_seqnum.lock().unwrap(), None, "the premise");
    rt().block_on(call.close());

    set_bounded(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    call.send_media(&pattern(2, 1)).unwrap();
    call.send_stop().unwrap();
    wait_eos(&p.bus().unwrap());
    let own = eos_seqnum.lock().unwrap().expect("an EOS reached the sink");
    assert_ne!(own, seqnum, "the call's end carries the old EOS's seqnum");
    set_bounded(&p, gst::State::Null);
}

in_both_modes!(refused_eos_leaves_no_seqnum_behind);
