//! twiliostreamsrc end to end, how calls and the element end: a connection dropped without
//! a stop, and a state change to NULL mid-call or before any call (no hang, port freed).

mod common;

use std::time::Duration;

use common::src::{in_both_modes, start};
use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, Received, TwilioCall};

in_both_modes!(
    a_connection_dropped_without_stop_ends_with_a_warning_and_eos,
    stopping_mid_call_returns_and_frees_the_port,
);

fn a_connection_dropped_without_stop_ends_with_a_warning_and_eos() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    let call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for _ in 0..5 {
            call.send_media(&[0xFF; 160]).unwrap();
        }
        call
    });
    // The emulator writes from a task of its own, which abort() ends: the
    // connection dies once the plugin has read all the media.
    counter_reaches(&by_name(&p, "src"), "chunks-received", 5);
    rt().block_on(call.abort());
    let got = collector.wait_eos();
    assert_eq!(got.samples().len(), 800);
    let warning = drain_messages(&bus)
        .into_iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some((
                w.src().map(|s| s.name().to_string()),
                w.error().to_string(),
                w.debug(),
            )),
            _ => None,
        })
        .expect("a warning");
    assert_eq!(warning.0.as_deref(), Some("src"));
    // The WARNING's message itself says why (not only its debug string).
    assert!(warning.1.contains("before any stop message"), "{warning:?}");
    set_state(&p, gst::State::Null);
}

/// Runs `f` on another thread and fails if it does not return in time:
/// a hang detector, not a timing assertion.
fn returns<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} did not return"))
}

fn stopping_mid_call_returns_and_frees_the_port() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let port = by_name(&p, "src").property::<u32>("bound-port") as u16;
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for _ in 0..3 {
            call.send_media(&[0xFF; 160]).unwrap();
        }
        call
    });
    collector.wait_buffers(3);
    assert!(by_name(&p, "src").property::<bool>("connected"));

    let p2 = p.clone();
    returns("PLAYING -> NULL mid-call", move || {
        set_state(&p2, gst::State::Null)
    });
    // The listening socket is gone: the port binds again at once.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still taken");
    // And the call's socket was closed by us.
    let closed = rt().block_on(async {
        loop {
            match call.recv_timeout(PATIENCE).await {
                Some(Received::Closed(code)) => break code,
                Some(_) => continue,
                None => break None,
            }
        }
    });
    assert_eq!(closed, Some(1000));
    assert!(!by_name(&p, "src").property::<bool>("connected"));
}

#[test]
fn stopping_before_any_call_returns_and_frees_the_port() {
    let (p, _collector, _url) =
        start("twiliostreamsrc name=src port=0 ! fakesink name=sink sync=false");
    let port = by_name(&p, "src").property::<u32>("bound-port") as u16;
    // Give the streaming thread time to block waiting for a call.
    std::thread::sleep(Duration::from_millis(50));
    let p2 = p.clone();
    returns("PLAYING -> NULL before a call", move || {
        set_state(&p2, gst::State::Null)
    });
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still taken");
    assert_eq!(by_name(&p, "src").property::<u32>("bound-port"), 0);

    // The element can listen again after that.
    set_state(&p, gst::State::Playing);
    assert_ne!(by_name(&p, "src").property::<u32>("bound-port"), 0);
    let p2 = p.clone();
    returns("PLAYING -> NULL again", move || {
        set_state(&p2, gst::State::Null)
    });
}
