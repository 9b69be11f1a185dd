//! The sink's EOS wait and marks against peers that do not behave like
//! Twilio: echoes that come late, never, twice, of a name never sent, or
//! only for the last mark; a socket closed or a pipeline stopped while the
//! sink waits. Whatever the peer does, the wait is bounded as the README
//! says (the audio not played yet plus 5 s), and the stream ends only once
//! the caller heard everything when the echo of the sink's own mark says so.

mod common;

use std::time::{Duration, Instant};

use common::peer::{Bot, Echo, Peer};
use common::sink::{has_element, messages_until};
use common::*;
use gst::prelude::*;

const EOS_MARK: &str = "twiliostream-eos";
const GRACE: Duration = gsttwiliostream::call::PLAYOUT_GRACE;

fn eos(bot: &Bot) {
    let ret = bot
        .app
        .emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    assert_eq!(ret, gst::FlowReturn::Ok);
}

/// Waits for the pipeline's EOS message; when it came.
fn eos_message(bot: &Bot) -> Instant {
    let msg = bot
        .bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(PATIENCE.as_secs()),
            &[gst::MessageType::Eos],
        )
        .expect("no EOS message");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)));
    Instant::now()
}

fn has_eos_mark(peer: &Peer) -> Instant {
    let st = peer.wait_for("EOS mark", |st| st.marks.iter().any(|(n, _)| n == EOS_MARK));
    let i = st
        .received
        .iter()
        .position(|(_, t)| t.contains(EOS_MARK))
        .unwrap();
    st.received[i].0
}

/// A second of prompt, then EOS, to a peer that never echoes: once the
/// sink sent its EOS mark.
fn a_second_then_eos_to_a_silent_peer() -> (Bot, Peer) {
    init();
    let bot = Bot::new("");
    let peer = bot.dial(Echo::Never);
    bot.prompt(0, 1000);
    eos(&bot);
    has_eos_mark(&peer);
    (bot, peer)
}

#[test]
fn a_peer_that_never_echoes_holds_eos_for_the_playout_plus_the_grace() {
    let (bot, peer) = a_second_then_eos_to_a_silent_peer();
    let st = peer.wait_closed();
    let (closed_at, code) = st.closed.unwrap();
    assert_eq!(code, Some(1000));
    // The bound: the audio not played yet at EOS, plus the grace. So the
    // stream ends the grace after the playout.
    let after = closed_at.saturating_duration_since(st.playout_end().unwrap());
    assert!(
        after >= GRACE - Duration::from_millis(300) && after <= GRACE + Duration::from_millis(500),
        "closed {after:?} after the playout ended"
    );
    let eos_at = eos_message(&bot);
    assert!(eos_at >= closed_at);
}

/// An echo of a name the sink never sent (or a second echo of a mark) is
/// not the echo of the EOS mark: the stream is not ended before Twilio
/// played everything.
#[test]
fn a_strangers_echo_does_not_end_the_eos_wait() {
    init();
    for stranger in ["never-sent", "prompt"] {
        // A long lead: a second queued at Twilio when the EOS mark goes.
        let (bot, peer) = Bot::with_peer("max-lead=1000");
        bot.mark("prompt");
        bot.prompt(0, 2000);
        eos(&bot);
        has_eos_mark(&peer);
        // "prompt" was echoed at once (nothing was queued before it);
        // this is a second echo.
        peer.echo(stranger);
        let st = peer.wait_closed();
        let (closed_at, _) = st.closed.unwrap();
        let playout_end = st.playout_end().unwrap();
        assert!(
            closed_at >= playout_end,
            "{stranger:?}: closed {:?} before the playout ended",
            playout_end - closed_at
        );
    }
}

/// Echoes of earlier marks lost, the EOS mark's echoed: Twilio echoes in
/// order, so the caller heard everything; the stream ends then, not at the
/// bound.
#[test]
fn lost_echoes_of_earlier_marks_do_not_hold_the_eos_wait() {
    init();
    let bot = Bot::new("");
    let peer = bot.dial(Echo::Never);
    bot.mark("a");
    bot.prompt(0, 500);
    bot.mark("b");
    bot.prompt(500, 500);
    eos(&bot);
    has_eos_mark(&peer);
    // Played out: the peer echoes the last mark only, then b and a (out
    // of order, after it).
    let st = peer.wait_for("playout", |st| {
        st.playout_end().is_some_and(|end| Instant::now() >= end)
    });
    assert_eq!(st.media.len(), 8000);
    let echoed_at = Instant::now();
    peer.echo(EOS_MARK);
    let st = peer.wait_closed();
    let waited = st.closed.unwrap().0 - echoed_at;
    assert!(
        waited < Duration::from_secs(1),
        "closed {waited:?} after the echo"
    );
    peer.echo("b");
    peer.echo("a");
    eos_message(&bot);
}

#[test]
fn the_peer_closing_the_socket_during_the_eos_wait_lets_eos_through() {
    let (bot, peer) = a_second_then_eos_to_a_silent_peer();
    let closed_at = Instant::now();
    peer.close();
    let eos_at = eos_message(&bot);
    assert!(
        eos_at - closed_at < Duration::from_secs(2),
        "EOS {:?} after the close",
        eos_at - closed_at
    );
}

#[test]
fn stopping_the_pipeline_during_the_eos_wait_does_not_hang() {
    let (bot, peer) = a_second_then_eos_to_a_silent_peer();
    for state in [gst::State::Ready, gst::State::Null] {
        let t = Instant::now();
        set_state(&bot.p, state);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{state:?} took {:?}",
            t.elapsed()
        );
    }
    // The sink hung up its own call.
    peer.wait_closed();
}

/// A clear (the signal, not a flush) while EOS waits: Twilio echoes the
/// EOS mark at once, nothing is left to play, and the stream ends then
/// (a flush instead drops the EOS and keeps the call: sink_eos_wait.rs).
#[test]
fn a_clear_during_the_eos_wait_ends_the_stream_at_once() {
    init();
    let (bot, peer) = Bot::with_peer("max-lead=1000");
    bot.prompt(0, 3000);
    eos(&bot);
    has_eos_mark(&peer);
    assert!(bot.sink.emit_by_name::<bool>("clear", &[]));
    let st = peer.wait_closed();
    let (closed_at, code) = st.closed.unwrap();
    assert_eq!(code, Some(1000));
    assert!(closed_at - st.clears[0].at < Duration::from_secs(1));
    let messages = messages_until(&bot.bus, |m| has_element(m, "twilio-ended"));
    let ended = element_messages(&messages, "twilio-ended");
    assert_eq!(ended[0].get::<String>("reason").unwrap(), "eos");
    eos_message(&bot);
}
