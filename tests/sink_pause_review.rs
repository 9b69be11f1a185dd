//! Hostile cases around a twiliostreamsink holding the pushes of the srcs
//! that feed it from a network thread while it pauses (`push_gate.rs`):
//! state changes in unusual orders, relinks, a tee, the call's end.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;

use common::app::*;
use common::echo::*;
use common::sink::*;
use common::*;
use gst::prelude::*;

/// Twilio's `stop`, then the pipeline's EOS (its messages), the close,
/// the pipeline stopped.
fn hang_up_at_eos(mut call: twilio_emulator::TwilioCall, p: &gst::Pipeline) -> Vec<gst::Message> {
    call.send_stop().unwrap();
    let messages = wait_eos(&p.bus().unwrap());
    rt().block_on(call.close());
    set_bounded(p, gst::State::Null);
    messages
}

/// Counts the buffers reaching `element`'s sink pad.
fn count_buffers(element: &gst::Element) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    element
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            n2.fetch_add(1, Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        });
    n
}

fn wait_count(n: &AtomicUsize, at_least: usize, what: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while n.load(Ordering::SeqCst) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {} buffers, not {at_least}",
            n.load(Ordering::SeqCst)
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Pauses and plays the pipeline many times in a row, with chunks on
/// their way throughout; the echo goes on after, the call's end comes.
#[test]
fn many_fast_pauses_then_the_echo_and_the_end() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);
    for round in 0..40 {
        call.send_media(&pattern(100 + round, 1)).unwrap();
        set_bounded(&p, gst::State::Paused);
        call.send_media(&pattern(200 + round, 1)).unwrap();
        set_bounded(&p, gst::State::Playing);
    }
    echo_round(&mut call, 1);
    assert_playing(&sink);
    let messages = hang_up_at_eos(call, &p);
    assert!(has_element(&messages, "twilio-stop"));
}

/// The sink paused alone, then the whole pipeline paused and played (the
/// sink goes PAUSED → PAUSED, then PLAYING): the echo goes on.
#[test]
fn sink_paused_alone_then_the_pipeline_paused_and_played() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);
    set_element_bounded(&sink, gst::State::Paused);
    call.send_media(&pattern(1, 2)).unwrap();
    set_bounded(&p, gst::State::Paused);
    set_bounded(&p, gst::State::Playing);
    echo_round(&mut call, 2);
    assert_playing(&sink);
    assert_playing(p.upcast_ref());
    hang_up(call, &p);
}

/// The pipeline paused, then its sink alone played (its src still
/// PAUSED), then the pipeline played: the echo goes on.
#[test]
fn pipeline_paused_then_the_sink_alone_played_then_the_pipeline() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);
    set_bounded(&p, gst::State::Paused);
    set_element_bounded(&sink, gst::State::Playing);
    call.send_media(&pattern(1, 2)).unwrap();
    set_element_bounded(&src, gst::State::Playing);
    set_bounded(&p, gst::State::Playing);
    echo_round(&mut call, 3);
    assert_playing(&sink);
    // And a pause of the src alone, then back.
    set_element_bounded(&src, gst::State::Paused);
    set_element_bounded(&src, gst::State::Playing);
    echo_round(&mut call, 4);
    hang_up(call, &p);
}

/// A src feeding the sink and a fakesink through a tee, with no queue:
/// pauses of the pipeline and of the sink alone; both branches get the
/// audio after.
#[test]
fn a_tee_into_the_sink_and_a_fakesink() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! tee name=t ! twiliostreamsink name=sink \
         t. ! fakesink name=fk sync=false async=false",
    );
    let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
    let fk = count_buffers(&by_name(&p, "fk"));
    let mut call = echoing_call(&p, &src);
    for round in 0..5 {
        set_bounded(&p, gst::State::Paused);
        set_bounded(&p, gst::State::Playing);
        let before = fk.load(Ordering::SeqCst);
        echo_round(&mut call, 10 + round);
        wait_count(&fk, before + 3, "fakesink after a pause");
    }
    set_element_bounded(&sink, gst::State::Paused);
    let sent = pattern(20, 3);
    send_chunks(&mut call, &sent);
    set_element_bounded(&sink, gst::State::Playing);
    wait_until_all_echoed(&mut call, &sent);
    assert_playing(&sink);
    hang_up(call, &p);
}

/// The call ends while the whole pipeline is paused: on PLAYING, its end
/// (twilio-stop, EOS) comes.
#[test]
fn the_call_ends_while_the_pipeline_is_paused() {
    let (p, src, _) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);
    set_bounded(&p, gst::State::Paused);
    call.send_media(&pattern(1, 2)).unwrap();
    call.send_stop().unwrap();
    rt().block_on(call.close());
    let bus = p.bus().unwrap();
    set_bounded(&p, gst::State::Playing);
    let messages = wait_eos(&bus);
    assert!(has_element(&messages, "twilio-stop"));
    set_bounded(&p, gst::State::Null);
}

/// A src once fed the sink, then was relinked to a fakesink (the sink
/// unlinked): pausing the sink must not hold that src, whose audio goes
/// to the fakesink now.
#[test]
fn a_sink_paused_after_a_relink_does_not_hold_its_former_src() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! identity name=id ! \
         twiliostreamsink name=sink fakesink name=fk sync=false async=false",
    );
    let src = by_name(&p, "src");
    let sink = by_name(&p, "sink");
    let id = by_name(&p, "id");
    let fk_el = by_name(&p, "fk");
    let fk = count_buffers(&fk_el);
    let mut call = echoing_call(&p, &src);
    // Relinked while idle: id → fakesink.
    let (done, relinked) = std::sync::mpsc::channel();
    {
        let (sink_pad, fk_pad) = (
            sink.static_pad("sink").unwrap(),
            fk_el.static_pad("sink").unwrap(),
        );
        let done = std::sync::Mutex::new(done);
        id.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::IDLE, move |pad, _| {
                pad.unlink(&sink_pad).unwrap();
                pad.link(&fk_pad).unwrap();
                let _ = done.lock().unwrap().send(());
                gst::PadProbeReturn::Remove
            });
    }
    relinked.recv_timeout(PATIENCE).expect("relinked");
    call.send_media(&pattern(1, 1)).unwrap();
    wait_count(&fk, 1, "fakesink after the relink");
    // The sink is fed by nothing now; pausing it holds nothing.
    sink.set_state(gst::State::Paused).unwrap();
    send_chunks(&mut call, &pattern(2, 3));
    wait_count(&fk, 4, "fakesink while the former sink is paused");
    hang_up(call, &p);
}

/// A sink paused alone (holding its src), then stopped alone: the
/// pipeline's bus gets no ASYNC_DONE for an ASYNC_START never posted.
#[test]
fn a_held_sink_stopped_alone_posts_no_stray_async_done() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let call = echoing_call(&p, &src);
    let bus = p.bus().unwrap();
    // The bin handles its children's ASYNC messages: have it forward them.
    p.set_property("message-forward", true);
    drain_messages(&bus);
    set_element_bounded(&sink, gst::State::Paused);
    set_element_bounded(&sink, gst::State::Null);
    let stray: Vec<_> = drain_messages(&bus)
        .into_iter()
        .filter_map(|m| {
            let s = m.structure()?;
            if s.name() != "GstBinForwarded" {
                return None;
            }
            let inner = s.get::<gst::Message>("message").ok()?;
            let async_msg = matches!(
                inner.view(),
                gst::MessageView::AsyncDone(_) | gst::MessageView::AsyncStart(_)
            );
            (async_msg && inner.src().is_some_and(|s| s == &sink)).then_some(inner)
        })
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    drop_call(call, &p);
}

/// Src and sink each inside a bin, linked through ghost pads: the sink
/// paused alone still finds (and holds) its src, and loses nothing.
#[test]
fn a_sink_in_a_bin_paused_alone_holds_its_src_through_ghost_pads() {
    init();
    let p = gst::Pipeline::new();
    let a = gst::parse::bin_from_description(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! identity",
        true,
    )
    .unwrap();
    let b =
        gst::parse::bin_from_description("identity ! twiliostreamsink name=sink", true).unwrap();
    p.add_many([&a, &b]).unwrap();
    a.link(&b).unwrap();
    let src = by_name(&p, "src");
    let sink = by_name(&p, "sink");
    let mut call = echoing_call(&p, &src);
    set_element_bounded(&sink, gst::State::Paused);
    let sent = pattern(3, 5);
    send_chunks(&mut call, &sent);
    // The network thread reads on: nothing waits in the paused sink.
    assert_reads_on(&mut call, &src);
    // Held, nothing came to preroll: the sink stays PAUSED.
    let (_, cur, pending) = sink.state(gst::ClockTime::ZERO);
    assert_eq!(
        (cur, pending),
        (gst::State::Paused, gst::State::VoidPending)
    );
    set_element_bounded(&sink, gst::State::Playing);
    wait_until_all_echoed(&mut call, &sent);
    hang_up(call, &p);
}

/// A flush into a held sink while it goes PAUSED → PLAYING on another
/// thread: each turns BaseSink's `async` off for a moment. However they
/// interleave, the application's setting is what remains.
#[test]
fn a_flush_racing_the_return_to_playing_keeps_the_async_setting() {
    use std::sync::Mutex;
    use std::sync::mpsc::channel;
    let (p, src, sink) = echo_pipeline(ECHO);
    let call = echoing_call(&p, &src);
    set_element_bounded(&sink, gst::State::Paused);
    assert!(sink.property::<bool>("async"));

    // Each thread stops, once, at a log line of its own inside BaseSink
    // (no lock of the sink held there), until the test lets it go on.
    let (playing_in, playing_at) = channel::<()>();
    let (playing_go, playing_wait) = channel::<()>();
    let (flush_in, flush_at) = channel::<()>();
    let (flush_go, flush_wait) = channel::<()>();
    let stop =
        |armed: &AtomicBool, at: &Mutex<std::sync::mpsc::Sender<()>>, go: &Mutex<Receiver<()>>| {
            if armed.swap(false, Ordering::SeqCst) {
                let _ = at.lock().unwrap().send(());
                let _ = go.lock().unwrap().recv_timeout(PATIENCE);
            }
        };
    {
        let armed = (AtomicBool::new(true), AtomicBool::new(true));
        let playing = (Mutex::new(playing_in), Mutex::new(playing_wait));
        let flush = (Mutex::new(flush_in), Mutex::new(flush_wait));
        let target = sink.as_ptr() as usize;
        gst::log::remove_default_log_function();
        gst::log::set_threshold_for_name("GST_STATES", gst::DebugLevel::Log);
        gst::log::set_threshold_for_name("basesink", gst::DebugLevel::Debug);
        gst::log::add_log_function(move |cat, _, _, _, _, object, message| {
            if object.is_none_or(|o| o.as_ptr() as usize != target) {
                return;
            }
            let Some(text) = message.get() else { return };
            if cat.name() == "GST_STATES"
                && text.starts_with("default handler tries setting state from PAUSED to PLAYING")
            {
                stop(&armed.0, &playing.0, &playing.1);
            } else if cat.name() == "basesink" && text.starts_with("flush-start") {
                stop(&armed.1, &flush.0, &flush.1);
            }
        });
    }
    // PAUSED → PLAYING turns async off and stops inside BaseSink...
    let to_playing = {
        let sink = sink.clone();
        std::thread::spawn(move || sink.set_state(gst::State::Playing))
    };
    playing_at
        .recv_timeout(PATIENCE)
        .expect("PLAYING under way");
    // ...a flush (the sink still holds) turns it off too and stops...
    let flushing = {
        let pad = sink.static_pad("sink").unwrap();
        std::thread::spawn(move || pad.send_event(gst::event::FlushStart::new()))
    };
    flush_at.recv_timeout(PATIENCE).expect("flush under way");
    // ...PLAYING completes first, then the flush.
    playing_go.send(()).unwrap();
    to_playing.join().unwrap().unwrap();
    flush_go.send(()).unwrap();
    assert!(flushing.join().unwrap());
    let pad = sink.static_pad("sink").unwrap();
    assert!(pad.send_event(gst::event::FlushStop::new(false)));
    assert!(
        sink.property::<bool>("async"),
        "the sink's async setting was lost"
    );
    drop_call(call, &p);
}

/// An EOS the application sends while the sink holds its src (pipeline
/// paused, or the sink alone): the pipeline's EOS comes once it plays.
#[test]
fn an_application_eos_while_held() {
    for sink_alone in [false, true] {
        let (p, src, sink) = echo_pipeline(ECHO);
        let call = echoing_call(&p, &src);
        if sink_alone {
            set_element_bounded(&sink, gst::State::Paused);
        } else {
            set_bounded(&p, gst::State::Paused);
        }
        assert!(p.send_event(gst::event::Eos::new()));
        if sink_alone {
            set_element_bounded(&sink, gst::State::Playing);
        } else {
            set_bounded(&p, gst::State::Playing);
        }
        wait_eos(&p.bus().unwrap());
        drop_call(call, &p);
    }
}

/// `shared-threads=false`: the sink learns no src and holds nothing; a
/// pause and its return go as they always did.
#[test]
fn pauses_with_the_streaming_thread_pushing() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=false ! audio/x-mulaw ! \
         twiliostreamsink name=sink",
    );
    let src = by_name(&p, "src");
    let sink = by_name(&p, "sink");
    let mut call = echoing_call(&p, &src);
    for round in 0..5 {
        set_bounded(&p, gst::State::Paused);
        set_bounded(&p, gst::State::Playing);
        echo_round(&mut call, 30 + round);
    }
    assert_playing(&sink);
    hang_up_at_eos(call, &p);
}

/// A sink paused alone (holding its src), removed from the pipeline and
/// stopped: its src goes on, into the fakesink that replaces it.
#[test]
fn a_held_sink_removed_and_stopped_lets_its_src_go() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! identity name=id ! \
         twiliostreamsink name=sink",
    );
    let src = by_name(&p, "src");
    let sink = by_name(&p, "sink");
    let id = by_name(&p, "id");
    let mut call = echoing_call(&p, &src);
    set_element_bounded(&sink, gst::State::Paused);
    send_chunks(&mut call, &pattern(1, 3));
    // Replaced, then stopped (which ends its hold).
    p.remove(&sink).unwrap();
    let fk = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .property("async", false)
        .build()
        .unwrap();
    let buffers = count_buffers(&fk);
    p.add(&fk).unwrap();
    id.link(&fk).unwrap();
    fk.sync_state_with_parent().unwrap();
    set_element_bounded(&sink, gst::State::Null);
    send_chunks(&mut call, &pattern(2, 3));
    // What waited while the sink held, and what came after.
    wait_count(&buffers, 6, "fakesink after the held sink left");
    drop_call(call, &p);
}
