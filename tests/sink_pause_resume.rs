//! A call's echo goes on after PLAYING -> PAUSED -> PLAYING (a hold): every
//! chunk sent after the resume comes back, and the sink is PLAYING with
//! nothing pending. (A sink that dropped buffers from the network threads
//! while paused lost its preroll for good: a bin sets no state on a sink
//! waiting for one, so nothing was echoed again.)

mod common;

use common::app::*;
use common::echo::*;
use common::sink::*;
use common::*;

#[test]
fn the_echo_goes_on_after_a_pause() {
    echo_after_a_pause(ECHO);
}

/// Behind a `queue` the sink renders on the queue's thread: it holds no
/// pushes of the src (`push_gate.rs`), and pauses as any BaseSink does.
#[test]
fn the_echo_goes_on_after_a_pause_behind_a_queue() {
    echo_after_a_pause(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! queue ! twiliostreamsink name=sink",
    );
}

fn echo_after_a_pause(desc: &str) {
    let p = pipeline(desc);
    let src = by_name(&p, "src");
    set_bounded(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    call.send_media(&[0x20; 160]).unwrap();
    receive_until(&mut call, |got| media_bytes(got).len() >= 160);
    set_bounded(&p, gst::State::Paused);
    set_bounded(&p, gst::State::Playing);
    let sent = pattern(1, 10);
    for chunk in sent.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    let got = media_bytes(&receive_until(&mut call, |got| {
        let b = media_bytes(got);
        b.windows(160).any(|w| w == &sent[sent.len() - 160..])
    }));
    let echoed: Vec<usize> = (0..10)
        .filter(|i| got.windows(160).any(|w| w == &sent[i * 160..(i + 1) * 160]))
        .collect();
    assert_eq!(
        echoed,
        (0..10).collect::<Vec<_>>(),
        "chunks echoed after PLAYING"
    );
    assert_playing(&by_name(&p, "sink"));
    hang_up(call, &p);
}
