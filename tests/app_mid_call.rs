//! An application acting on an echo pipeline mid-call: seeks sent to the
//! src, its pad, the sink and the pipeline (a live call is not seekable:
//! each is refused, nothing hangs, nothing is flushed), queries and other
//! events, and the src's `call-name` set while it plays. After each, the
//! call goes on (or ends) as before. Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::app::*;
use common::echo::*;
use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::Received;

/// Runs `f` on another thread, failing (instead of hanging) if it does
/// not return.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("{what} did not return"))
}

fn seek(flags: gst::SeekFlags) -> gst::Event {
    gst::event::Seek::new(
        1.0,
        flags,
        gst::SeekType::Set,
        gst::ClockTime::ZERO,
        gst::SeekType::None,
        gst::ClockTime::NONE,
    )
}

/// Seeks, flushing and not, sent every way an application might: each is
/// refused at once, and the call echoes on, nothing cleared. (BaseSrc
/// carries out a seek sent to the src element even so: a flushing one
/// flushed the pipeline, the sink sending Twilio a `clear`; a
/// non-flushing one waited for the streaming thread, which with
/// `shared-threads` never came.)
fn seeks_are_refused(props: &str) {
    let (p, src, sink) = echo_pipeline(&ECHO.replace("port=0", &format!("port=0 {props}")));
    let mut call = echoing_call(&p, &src);
    for flags in [
        gst::SeekFlags::FLUSH,
        gst::SeekFlags::empty(),
        gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
    ] {
        let targets: [(&str, gst::Element); 3] = [
            ("pipeline", p.clone().upcast()),
            ("src", src.clone()),
            ("sink", sink.clone()),
        ];
        for (name, target) in targets {
            let ok = bounded(&format!("a seek ({flags:?}) on {name}"), move || {
                target.send_event(seek(flags))
            });
            assert!(!ok, "a seek ({flags:?}) on {name} was taken");
        }
        let pad = src.static_pad("src").unwrap();
        let ok = bounded("a seek on the src pad", move || pad.send_event(seek(flags)));
        assert!(!ok, "a seek ({flags:?}) on the src pad was taken");
        echo_round(&mut call, flags.bits() as usize);
    }
    let got = receive_until(&mut call, |_| true);
    assert!(
        !got.iter()
            .any(|r| matches!(r, Received::Message(Outbound::Clear { .. }, _))),
        "a seek cleared Twilio's queue"
    );
    assert_eq!(sink.property::<u64>("clears-sent"), 0);
    hang_up(call, &p);
}

#[test]
fn seeks_mid_call_are_refused_shared_threads() {
    seeks_are_refused("");
}

#[test]
fn seeks_mid_call_are_refused_streaming_thread() {
    seeks_are_refused("shared-threads=false");
}

/// Queries and the events an application or a sink may send upstream
/// (QoS, latency, step, reconfigure) mid-call: answered or not, at once,
/// and the call echoes on.
#[test]
fn queries_and_upstream_events_mid_call() {
    let (p, src, sink) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);
    let elements: [gst::Element; 3] = [p.clone().upcast(), src.clone(), sink.clone()];
    for (n, e) in elements.into_iter().enumerate() {
        let (latency, seekable) = bounded("queries", move || {
            let mut latency = gst::query::Latency::new();
            let mut seeking = gst::query::Seeking::new(gst::Format::Time);
            let _ = e.query(&mut gst::query::Position::new(gst::Format::Time));
            let _ = e.query(&mut gst::query::Duration::new(gst::Format::Time));
            let latency = e.query(&mut latency).then(|| latency.result());
            let _ = e.query(&mut seeking);
            (latency, seeking.result().0)
        });
        assert!(!seekable, "element {n} says it is seekable");
        if n == 1 {
            // The src: live, one chunk.
            let (live, min, _) = latency.expect("the src answers latency");
            assert!(live);
            assert_eq!(min, gst::ClockTime::from_mseconds(20));
        }
        echo_round(&mut call, n);
    }
    let pad = src.static_pad("src").unwrap();
    let pipe = p.clone();
    bounded("upstream events", move || {
        let qos = gst::event::Qos::new(
            gst::QOSType::Overflow,
            0.5,
            gst::ClockTimeDiff::from(-1_000_000i64),
            gst::ClockTime::from_mseconds(10),
        );
        pad.send_event(qos);
        pad.send_event(gst::event::Reconfigure::new());
        pipe.send_event(gst::event::Latency::new(gst::ClockTime::from_mseconds(300)));
        pipe.send_event(gst::event::Step::new(
            gst::format::Buffers::from_u64(1),
            1.0,
            true,
            false,
        ));
    });
    echo_round(&mut call, 7);
    hang_up(call, &p);
}

/// `call-name` set on the src mid-call (it is for READY, as gst-inspect
/// says): the call goes on, and when the pipeline stops it is hung up at
/// once, as any call is. (The src took the new name's slot at once and
/// then hung up the call of that one, none: the caller heard nothing
/// until the idle timeout, 10 s later.) The next run echoes as before.
#[test]
fn call_name_set_mid_call_applies_at_the_next_start() {
    let (p, src, _sink) = echo_pipeline(ECHO);
    let mut call = echoing_call(&p, &src);
    src.set_property("call-name", "renamed-mid-call");
    assert!(src.property::<bool>("connected"));
    echo_round(&mut call, 1);
    let stopped = Instant::now();
    set_bounded(&p, gst::State::Null);
    let got = receive_until(&mut call, |_| false);
    assert!(matches!(got.last(), Some(Received::Closed(_))), "{got:?}");
    let took = stopped.elapsed();
    // Well under the idle timeout (10 s) the call would otherwise wait for.
    assert!(took < Duration::from_secs(5), "hung up after {took:?}");

    // The next run: the src takes calls for the new name, and its sink,
    // paired before the src starts, with them.
    set_bounded(&p, gst::State::Playing);
    assert_eq!(echo_call(&url_of(&src), 5, 3), pattern(5, 3));
    wait_eos(&p.bus().unwrap());
    set_bounded(&p, gst::State::Null);
}
