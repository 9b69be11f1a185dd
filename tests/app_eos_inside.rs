//! An echo whose stream ends inside the pipeline, not by an EOS event the
//! application sends: BaseSrc's `num-buffers` on the src, or an element
//! between the src and the sink that ends the stream (`identity
//! eos-after`). The README promises for an EOS event, and for "an element
//! downstream answers the src with EOS", that the sink plays out and ends
//! the call, and that the call's last messages (the EOS mark's echo,
//! `twilio-ended`) are posted before the pipeline's EOS.
//!
//! BaseSrc's loop ends such a stream without a word to the src (pushing
//! from its streaming thread: `num-buffers`, `shared-threads=false`, or a
//! `shared-threads` src before the pipeline plays): the src watches the EOS
//! leave its pad while that thread pushes. Answered on a network thread,
//! the src has its streaming thread push the EOS, so that the sink's
//! playout waits there and not in the background.

mod common;

use common::app::{pattern, realtime_call, wait_eos};
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::Received;

fn the_calls_last_messages_come_before_eos(src_props: &str, between: &str) {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {src_props} ! audio/x-mulaw {between} twiliostreamsink"
    ));
    let src = by_name(&p, "src");
    set_state(&p, gst::State::Playing);
    let mut call = realtime_call(&url_of(&src));
    // More than the 10 buffers the stream ends after.
    for chunk in pattern(1, 20).chunks(160) {
        call.send_media(chunk).unwrap();
    }
    let bus = p.bus().unwrap();
    let before_eos = wait_eos(&bus);
    let marks: Vec<String> = element_messages(&before_eos, "twilio-mark")
        .iter()
        .map(|s| s.get::<String>("name").unwrap())
        .collect();
    assert_eq!(marks, ["twiliostream-eos"], "{src_props} {between}");
    let ended = element_messages(&before_eos, "twilio-ended");
    assert_eq!(ended.len(), 1, "{src_props} {between}: {before_eos:?}");
    let got = until_closed(&mut call);
    assert_eq!(got.last(), Some(&Received::Closed(Some(1000))), "{got:?}");
    set_state(&p, gst::State::Null);
}

#[test]
fn num_buffers_ends_the_stream_with_the_calls_last_messages() {
    the_calls_last_messages_come_before_eos("num-buffers=10", "!");
}

#[test]
fn an_element_that_ends_the_stream_of_the_streaming_thread() {
    the_calls_last_messages_come_before_eos("shared-threads=false", "! identity eos-after=10 !");
}

#[test]
fn an_element_that_ends_the_stream_before_a_queue() {
    the_calls_last_messages_come_before_eos("", "! identity eos-after=10 ! queue !");
}

#[test]
fn an_element_that_ends_the_stream_of_a_network_thread() {
    the_calls_last_messages_come_before_eos("", "! identity eos-after=10 !");
}

/// The first buffer goes out on the streaming thread of a `shared-threads`
/// src (the pipeline is not PLAYING before a sink has prerolled), and is
/// answered with EOS.
#[test]
fn an_element_that_ends_the_stream_at_the_first_buffer() {
    the_calls_last_messages_come_before_eos("", "! identity eos-after=1 !");
}
