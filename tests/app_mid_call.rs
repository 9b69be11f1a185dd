//! An application acting on an echo pipeline mid-call: the src's
//! `call-name` set while it plays. The call goes on (or ends) as before.
//! Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::app::*;
use common::echo::*;
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::Received;

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
