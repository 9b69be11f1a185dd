//! Limits on what a client can make the plugin hold: messages over
//! `max-message-size` are counted and skipped (far over it, or before the
//! call's `start`, the connection is closed with 1009), and a call whose
//! media stops ends after `idle-timeout`.

mod common;

use std::time::Duration;

use common::src::listening_src as echo;
use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, Received, TwilioCall};

#[test]
fn oversized_messages_are_counted_and_the_call_goes_on() {
    let (p, src) = echo("max-message-size=4096 gap-fill=silence");
    let collector = Collector::attach(&by_name(&p, "sink"));
    let url = url_of(&src);
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&[0x80; 160]).unwrap();
        // 8 KiB of valid media JSON: over the limit, ignored.
        call.send_media(&[0x80; 6000]).unwrap();
        call.send_media(&[0x00; 160]).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let samples = got.samples();
    // The ignored chunk leaves a gap in the timestamps: silence, counted.
    assert_eq!(samples.len(), 160 + 6000 + 160);
    assert!(samples[..160].iter().all(|&s| s == 32124));
    assert!(samples[160..6160].iter().all(|&s| s == 0));
    assert!(samples[6160..].iter().all(|&s| s == -32124));
    assert_eq!(src.property::<u64>("invalid-messages"), 1);
    set_state(&p, gst::State::Null);
}

/// Reads until the plugin closes: Some(its close code, if it sent a
/// frame), or None if it did not close within `PATIENCE`.
async fn close_code(call: &mut TwilioCall) -> Option<Option<u16>> {
    while let Some(item) = call.recv_timeout(PATIENCE).await {
        if let Received::Closed(code) = item {
            return Some(code);
        }
    }
    None
}

/// Closed beyond 16 times the path's own `max-message-size`, however small
/// (the limit was once 16 times 64 KiB at least).
#[test]
fn a_message_beyond_sixteen_times_the_limit_closes_the_connection() {
    let (p, src) = echo("max-message-size=4096");
    let collector = Collector::attach(&by_name(&p, "sink"));
    let bus = p.bus().unwrap();
    let url = url_of(&src);
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&[0x80; 160]).unwrap();
        // 16 times: too big for the call, ignored, not for the connection.
        call.send_text(&"x".repeat(16 * 4096)).unwrap();
        call.send_media(&[0x80; 160]).unwrap();
        call.send_text(&"x".repeat(16 * 4096 + 1)).unwrap();
        // The plugin hangs up, saying why (RFC 6455: message too big).
        assert_eq!(close_code(&mut call).await, Some(Some(1009)));
    });
    let got = collector.wait_eos();
    assert_eq!(got.samples().len(), 320);
    assert_eq!(src.property::<u64>("invalid-messages"), 1);
    let warning = warnings(&bus).pop().expect("a warning");
    assert!(warning.contains("too big to read"), "{warning}");
    set_state(&p, gst::State::Null);
}

#[test]
fn a_message_too_big_before_start_is_closed_with_1009() {
    let (p, src) = echo("max-message-size=4096");
    let collector = Collector::attach(&by_name(&p, "sink"));
    let url = url_of(&src);
    rt().block_on(async {
        // Not a call yet: closed, counted, and the element never sees it.
        let mut probe = TwilioCall::connect(&url, CallParams::default())
            .await
            .unwrap();
        probe.send_text(&"x".repeat(2 << 20)).unwrap();
        assert_eq!(close_code(&mut probe).await, Some(Some(1009)));
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&[0x80; 160]).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    assert_eq!(collector.wait_eos().samples().len(), 160);
    // Counted once the server is done with the probe: after the close
    // frame it saw.
    counter_reaches(&src, "rejected-connections", 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn a_call_without_media_ends_after_the_idle_timeout() {
    let (p, src) = echo("idle-timeout=1");
    let collector = Collector::attach(&by_name(&p, "sink"));
    let bus = p.bus().unwrap();
    let url = url_of(&src);
    let call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        call.send_media(&[0xFF; 160]).unwrap();
        call
    });
    // Then nothing: EOS with a warning, about a second later.
    let got = collector.wait_eos();
    assert_eq!(got.samples().len(), 160);
    let warning = warnings(&bus).pop().expect("a warning");
    assert!(
        warning.contains("no media from Twilio for 1 s"),
        "{warning}"
    );
    rt().block_on(call.abort());
    set_state(&p, gst::State::Null);
}

/// The timer fires during the media and is re-armed from the last chunk,
/// more than once: the call still ends one timeout after the media stops.
#[test]
fn a_call_ends_after_the_idle_timeout_once_its_media_stops() {
    let (p, src) = echo("idle-timeout=2");
    let collector = Collector::attach(&by_name(&p, "sink"));
    let bus = p.bus().unwrap();
    let url = url_of(&src);
    let sent = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        // 3 s of a chunk every 100 ms: the timer fires past its first
        // deadline with media 100 ms old, however slow the machine.
        let mut sent = 0;
        while sent < 30 {
            call.send_media(&[0xFF; 160]).unwrap();
            sent += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (call, sent)
    });
    let (call, sent) = sent;
    let got = collector.wait_eos();
    assert_eq!(got.samples().len(), sent * 160);
    let warning = warnings(&bus).pop().expect("a warning");
    assert!(
        warning.contains("no media from Twilio for 2 s"),
        "{warning}"
    );
    rt().block_on(call.abort());
    set_state(&p, gst::State::Null);
}

#[test]
fn media_keeps_a_call_alive_past_the_idle_timeout() {
    let (p, src) = echo("idle-timeout=1");
    let collector = Collector::attach(&by_name(&p, "sink"));
    let url = url_of(&src);
    // 2.5 s of media in real time: more than twice the idle timeout.
    let script = twilio_emulator::Script {
        audio: vec![0xFF; 160 * 125],
        linger: Duration::ZERO,
        ..Default::default()
    };
    rt().block_on(async {
        let call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        twilio_emulator::play::run(call, &script).await.unwrap();
    });
    let got = collector.wait_eos();
    assert_eq!(got.samples().len(), 160 * 125);
    let warnings = warnings(&p.bus().unwrap());
    assert!(warnings.is_empty(), "{warnings:?}");
    set_state(&p, gst::State::Null);
}

/// A push held downstream (a blocking probe) for longer than the idle
/// timeout: the call's task, which pushes, reads nothing meanwhile, and
/// what Twilio sent waits in the socket. That is no silence of Twilio's:
/// the call goes on, every chunk comes out after the hold. (Before, the
/// call ended "no media from Twilio" as soon as the push returned.)
#[test]
fn a_push_held_past_the_idle_timeout_does_not_end_the_call() {
    let (p, src) = echo("idle-timeout=1");
    let collector = Collector::attach(&by_name(&p, "sink"));
    let url = url_of(&src);
    let pad = src.static_pad("src").unwrap();
    let script = twilio_emulator::Script {
        audio: vec![0xFF; 160 * 150],
        linger: Duration::ZERO,
        ..Default::default()
    };
    let call = rt().spawn(async move {
        let call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        twilio_emulator::play::run(call, &script).await.unwrap();
    });
    collector.wait_buffers(10);
    let probe = pad
        .add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| {
            gst::PadProbeReturn::Ok
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    pad.remove_probe(probe);
    rt().block_on(call).unwrap();
    let got = collector.wait_eos();
    assert_eq!(got.samples().len(), 160 * 150);
    let warnings = warnings(&p.bus().unwrap());
    assert!(warnings.is_empty(), "{warnings:?}");
    set_state(&p, gst::State::Null);
}
