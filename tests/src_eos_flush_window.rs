//! A flush from downstream that meets an EOS sent to the src just as it is
//! taken (between the ask and the stream's end being marked) drops it, and
//! the stream goes on. Alone in its binary: it installs a log function.

mod common;

use common::app::*;
use common::*;
use gst::prelude::*;
use std::sync::{Arc, Condvar, Mutex};

/// As `a_flush_drops_an_eos_not_carried_out`, but the flush's unlock runs
/// after `take_eos` marked the EOS and before `read_after_eos` marks the
/// stream ended (held there by a log function, at take_eos's DEBUG line):
/// the flush dropped the EOS, yet the stream ends at flush-stop, with a
/// seqnum of BaseSrc's, and the rest of the call's audio is lost.
#[test]
fn a_flush_between_take_eos_and_read_after_eos_drops_the_eos() {
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=false ! audio/x-mulaw \
         ! fakesink name=sink sync=false",
    );
    let src = by_name(&p, "src");
    let collector = Collector::attach(&by_name(&p, "sink"));
    // The EOS's thread, held in take_eos's log line until released.
    let gate = Arc::new((Mutex::new((false, false)), Condvar::new()));
    {
        let gate = gate.clone();
        gst::log::set_threshold_for_name("twiliostreamsrc", gst::DebugLevel::Debug);
        gst::log::add_log_function(move |cat, _, _, _, _, _, message| {
            if cat.name() == "twiliostreamsrc"
                && message
                    .get()
                    .is_some_and(|m| m.contains("the streaming thread ends the stream"))
            {
                let (lock, cond) = &*gate;
                let mut g = lock.lock().unwrap();
                g.0 = true;
                cond.notify_all();
                let _ = cond.wait_timeout_while(g, PATIENCE, |g| !g.1).unwrap();
            }
        });
    }
    let (hold, held) = common::src::hold_first_buffer(&src.static_pad("src").unwrap());
    set_bounded(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    call.send_media(&pattern(1, 1)).unwrap();
    held.recv_timeout(PATIENCE)
        .expect("the first buffer pushed");
    let p2 = p.clone();
    let sender = std::thread::spawn(move || p2.send_event(gst::event::Eos::new()));
    {
        let (lock, cond) = &*gate;
        let g = lock.lock().unwrap();
        let (g, _) = cond.wait_timeout_while(g, PATIENCE, |g| !g.0).unwrap();
        assert!(g.0, "take_eos reached");
    }
    // From downstream, on the pad (the element's state lock is the EOS's).
    let pad = src.static_pad("src").unwrap();
    assert!(pad.send_event(gst::event::FlushStart::new()));
    {
        let (lock, cond) = &*gate;
        lock.lock().unwrap().1 = true;
        cond.notify_all();
    }
    assert!(sender.join().unwrap());
    src.static_pad("src").unwrap().remove_probe(hold);
    assert!(pad.send_event(gst::event::FlushStop::new(true)));
    let sent = pattern(1, 3);
    for chunk in sent[160..].chunks(160) {
        call.send_media(chunk).unwrap();
    }
    call.send_stop().unwrap();
    wait_eos(&p.bus().unwrap());
    let got = collector.snapshot().bytes();
    assert!(
        got.ends_with(&sent[160..]),
        "the audio after the flush reached the sink: {} bytes",
        got.len(),
    );
    rt().block_on(call.close());
    set_bounded(&p, gst::State::Null);
}
