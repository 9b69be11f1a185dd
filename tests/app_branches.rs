//! An application reshaping a pipeline during a call: the echo's sink
//! replaced (the pad before it blocked, the old sink stopped and removed,
//! a new one linked and synced with the pipeline), and a `queue !
//! twiliostreamsink` branch added to a tee and removed again, while the
//! call goes on. The caller hears everything once and in order; a removed
//! sink is freed; the call outlives every branch. Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::app::*;
use common::echo::*;
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::TwilioCall;

/// Bytes that differ per seed and per chunk, with no seed's bytes a shift
/// of another's (an echo of one is never taken for another's).
fn unique(seed: u64, chunks: usize) -> Vec<u8> {
    let mut r = common::rng::Rng::new(seed);
    (0..chunks * 160)
        .map(|_| (r.next() % 250) as u8 + 3)
        .collect()
}

/// Runs `f` on another thread, failing (instead of hanging) if it does
/// not return.
fn bounded(what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("hang: {what}"));
}

/// Blocks `pad` and waits until a buffer (pushed by `push`) is held there.
fn block(pad: &gst::Pad, push: impl FnOnce()) -> gst::PadProbeId {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let probe = pad
        .add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, move |_, _| {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
            gst::PadProbeReturn::Ok
        })
        .unwrap();
    push();
    rx.recv_timeout(PATIENCE).expect("the pad never blocked");
    probe
}

/// No ERROR or EOS on `bus` so far.
fn no_error_or_eos(bus: &gst::Bus, what: &str) {
    for m in drain_messages(bus) {
        match m.view() {
            gst::MessageView::Error(e) => panic!("{what}: ERROR {}", e.error()),
            gst::MessageView::Eos(_) => panic!("{what}: EOS"),
            _ => {}
        }
    }
}

fn replace_the_sink(props: &str) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {props} ! capsfilter name=cf caps=audio/x-mulaw \
         ! twiliostreamsink name=sink"
    ));
    let (src, cf) = (by_name(&p, "src"), by_name(&p, "cf"));
    let bus = p.bus().unwrap();
    let mut call = echoing_call(&p, &src);
    let mut sent = Vec::new();
    let mut heard = Vec::new();
    // Sends `data` and waits until everything sent came back: all of it,
    // once, in order.
    let mut exchange = |call: &mut TwilioCall, data: Vec<u8>, sent: &mut Vec<u8>| {
        send_chunks(call, &data);
        sent.extend_from_slice(&data);
        let want = sent.len() - heard.len();
        let got = receive_until(call, |got| media_bytes(got).len() >= want);
        heard.extend(media_bytes(&got));
        assert_eq!(heard, *sent, "{props}: the echo differs");
    };
    let mut old = by_name(&p, "sink");
    for round in 1..=3u64 {
        exchange(&mut call, unique(round, 3), &mut sent);
        let pad = cf.static_pad("src").unwrap();
        // Two chunks wait at the blocked pad meanwhile: for the new sink.
        let held = unique(20 + round, 2);
        let probe = block(&pad, || send_chunks(&mut call, &held));
        sent.extend_from_slice(&held);
        cf.unlink(&old);
        p.remove(&old).unwrap();
        let o = old.clone();
        bounded("the old sink to NULL", move || {
            o.set_state(gst::State::Null).unwrap();
        });
        let new = gst::ElementFactory::make("twiliostreamsink")
            .build()
            .unwrap();
        p.add(&new).unwrap();
        cf.link(&new).unwrap();
        let n = new.clone();
        bounded("the new sink synced", move || {
            n.sync_state_with_parent().unwrap();
        });
        pad.remove_probe(probe);
        exchange(&mut call, unique(30 + round, 4), &mut sent);
        no_error_or_eos(&bus, &format!("{props} round {round}"));
        old = new;
    }
    hang_up(call, &p);
}

#[test]
fn the_echos_sink_replaced_mid_call_loses_and_repeats_nothing() {
    replace_the_sink("");
}

#[test]
fn the_same_from_the_streaming_thread() {
    replace_the_sink("shared-threads=false");
}

/// A `queue ! twiliostreamsink` branch added to a tee mid-call echoes the
/// caller; removed (the tee's pad blocked, unlinked and released, the
/// branch stopped), the call goes on into the tee's other branch, and the
/// sink is freed. Three times on one call.
#[test]
fn a_sink_branch_added_to_a_tee_and_removed_mid_call() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! tee name=t allow-not-linked=true \
         ! queue ! fakesink name=rec sync=false async=false",
    );
    let (src, t) = (by_name(&p, "src"), by_name(&p, "t"));
    let rec = Collector::attach(&by_name(&p, "rec"));
    let bus = p.bus().unwrap();
    set_bounded(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    send_chunks(&mut call, &unique(100, 3));
    rec.wait_buffers(3);
    let mut removed = Vec::new();
    for round in 1..=3u64 {
        let q = gst::ElementFactory::make("queue").build().unwrap();
        let sink = gst::ElementFactory::make("twiliostreamsink")
            .build()
            .unwrap();
        p.add_many([&q, &sink]).unwrap();
        q.link(&sink).unwrap();
        let tpad = t.request_pad_simple("src_%u").unwrap();
        tpad.link(&q.static_pad("sink").unwrap()).unwrap();
        sink.sync_state_with_parent().unwrap();
        q.sync_state_with_parent().unwrap();
        let sent = unique(round, 5);
        send_chunks(&mut call, &sent);
        wait_until_all_echoed(&mut call, &sent);

        let probe = block(&tpad, || send_chunks(&mut call, &unique(200 + round, 1)));
        tpad.unlink(&q.static_pad("sink").unwrap()).unwrap();
        tpad.remove_probe(probe);
        t.release_request_pad(&tpad);
        p.remove_many([&q, &sink]).unwrap();
        let (q2, s2) = (q.clone(), sink.clone());
        bounded("the branch to NULL", move || {
            s2.set_state(gst::State::Null).unwrap();
            q2.set_state(gst::State::Null).unwrap();
        });
        removed.push(sink.downgrade());
        let before = rec.snapshot().buffers.len();
        send_chunks(&mut call, &unique(300 + round, 2));
        rec.wait_buffers(before + 2);
        assert!(src.property::<bool>("connected"), "round {round}");
        no_error_or_eos(&bus, &format!("round {round}"));
    }
    let deadline = Instant::now() + PATIENCE;
    while removed.iter().any(|w| w.upgrade().is_some()) {
        assert!(Instant::now() < deadline, "a removed sink was never freed");
        std::thread::sleep(Duration::from_millis(5));
    }
    call.send_stop().unwrap();
    rt().block_on(call.close());
    wait_eos(&bus);
    set_bounded(&p, gst::State::Null);
}
