//! The sink's call control against a Twilio that plays at exactly 8000
//! samples a second (`common::peer`), and against odd peers: what
//! `twilio-clear` says the caller heard and what it dropped, at awkward
//! moments (right after the audio starts, mid-prompt, with a full lead,
//! right after an echoed mark, twice in a row, while paused, after
//! `stop`); the EOS wait with a peer that echoes late, never, a name it
//! was never sent, or out of order.

mod common;

use std::time::{Duration, Instant};

use common::peer::{Bot, Echo, Peer, Report};
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::Provider;

/// How far a report may be from the exact peer: scheduling on loopback
/// (the model counts from the write, the peer from the arrival; on a
/// quiet machine they agree within 1 ms, loaded within 25).
const TOLERANCE: Duration = Duration::from_millis(30);

fn ms(samples: f64) -> Duration {
    Duration::from_secs_f64(samples / 8000.0)
}

/// The report of the last clear against what the peer really played of a
/// prompt of `total` from running time `start` (nothing played before it).
/// What was still upstream of the sink at the clear is not the sink's to
/// drop: it plays after the clear, and is waited for.
fn agrees(what: &str, report: Report, bot: &Bot, peer: &Peer, start: Duration, total: Duration) {
    let st = peer.wait_clear();
    let clear = *st.clears.last().unwrap();
    // A mark behind the rest of the prompt: what reached the peer before
    // it is all the prompt that came after the clear.
    bot.mark("the-end");
    let st = peer.wait_for("the end", |st| st.marks.iter().any(|(n, _)| n == "the-end"));
    let media = st.marks.iter().find(|(n, _)| n == "the-end").unwrap().1;
    let after = ms((media - clear.received) as f64);
    let heard = ms(clear.played);
    let reported = report.played.expect("audio was sent").saturating_sub(start);
    assert!(
        reported.abs_diff(heard) <= TOLERANCE,
        "{what}: reported {reported:?} heard, the peer played {heard:?}"
    );
    let dropped = total.saturating_sub(heard + after);
    assert!(
        report.dropped.abs_diff(dropped) <= TOLERANCE,
        "{what}: reported {:?} dropped, the peer dropped {:?} of {total:?} \
         ({after:?} came after the clear)",
        report.dropped,
        dropped
    );
}

/// [`agrees`] for a prompt from running time 0.
fn agrees_from_the_start(what: &str, report: Report, bot: &Bot, peer: &Peer, total: Duration) {
    agrees(what, report, bot, peer, Duration::ZERO, total);
}

#[test]
fn clear_right_after_the_first_frame_arrives() {
    init();
    let (bot, peer) = Bot::with_peer("");
    bot.prompt(3000, 1000);
    peer.wait_for("media", |st| !st.media.is_empty());
    let report = bot.clear();
    agrees(
        "right after the start",
        report,
        &bot,
        &peer,
        Duration::from_secs(3),
        Duration::from_secs(1),
    );
}

#[test]
fn clear_mid_prompt_and_with_a_full_lead() {
    init();
    for (lead_ms, after_ms) in [(100u32, 730u64), (1000, 410), (20, 250)] {
        let (bot, peer) = Bot::with_peer(&format!("max-lead={lead_ms}"));
        bot.prompt(0, 2000);
        peer.sleep_past_the_first_frame(Duration::from_millis(after_ms));
        let report = bot.clear();
        let st = peer.wait_clear();
        // The lead is what the peer held, no more.
        let held = ms(st.clears[0].dropped);
        assert!(
            held <= Duration::from_millis(lead_ms as u64) + TOLERANCE,
            "lead {lead_ms} ms: the peer held {held:?}"
        );
        agrees_from_the_start(
            &format!("lead {lead_ms} ms, {after_ms} ms in"),
            report,
            &bot,
            &peer,
            Duration::from_secs(2),
        );
    }
}

#[test]
fn clear_right_after_an_echoed_mark() {
    init();
    let (bot, peer) = Bot::with_peer("");
    bot.prompt(0, 500);
    bot.mark("half");
    bot.prompt(500, 1000);
    let st = peer.wait_for("echo", |st| !st.echoes.is_empty());
    assert_eq!(st.marks, [("half".to_owned(), 4000)]);
    let report = bot.clear();
    agrees_from_the_start(
        "after the echo",
        report,
        &bot,
        &peer,
        Duration::from_millis(1500),
    );
}

#[test]
fn a_second_clear_right_after_the_first_finds_nothing_more() {
    init();
    let (bot, peer) = Bot::with_peer("");
    bot.prompt(0, 1000);
    bot.taken();
    std::thread::sleep(Duration::from_millis(300));
    assert!(bot.sink.emit_by_name::<bool>("clear", &[]));
    assert!(bot.sink.emit_by_name::<bool>("clear", &[]));
    let (first, second) = (bot.report(), bot.report());
    let st = peer.wait_for("two clears", |st| st.clears.len() == 2);
    let clear = st.clears[0];
    let heard = ms(clear.played);
    let reported = first.played.unwrap();
    assert!(
        reported.abs_diff(heard) <= TOLERANCE,
        "{reported:?} against {heard:?}"
    );
    // Dropped: what the peer held and what the writer had not sent.
    let dropped = Duration::from_secs(1) - heard;
    assert!(
        first.dropped.abs_diff(dropped) <= TOLERANCE,
        "{first:?} against {dropped:?}"
    );
    // Nothing was played or dropped between them.
    assert_eq!(second.dropped, Duration::ZERO, "{second:?}");
    assert_eq!(second.played, first.played, "{first:?} then {second:?}");
    assert!(st.clears[1].dropped < 1.0, "{:?}", st.clears[1]);
}

/// A partial frame inside the sink is audio sent to the sink and never
/// heard: `dropped` counts it. With `chunk-duration=1000` it is up to a
/// second.
#[test]
fn dropped_counts_the_partial_frame_the_sink_held() {
    init();
    let (bot, peer) = Bot::with_peer("chunk-duration=1000 max-lead=5000");
    // 1.5 s: one frame of a second goes out, half a second waits for more.
    bot.prompt(0, 1500);
    bot.taken();
    peer.sleep_past_the_first_frame(Duration::from_millis(200));
    let report = bot.clear();
    let st = peer.wait_clear();
    assert_eq!(st.media.len(), 8000);
    agrees_from_the_start(
        "partial frame",
        report,
        &bot,
        &peer,
        Duration::from_millis(1500),
    );
}

/// Paused: the writer holds the media, Twilio plays out what it has; a
/// clear still goes out and reports all that as heard, the held audio as
/// dropped.
#[test]
fn clear_while_paused() {
    init();
    let (bot, peer) = Bot::with_peer("");
    bot.a_second_reaching(&peer, 1600);
    set_state(&bot.p, gst::State::Paused);
    std::thread::sleep(Duration::from_millis(400));
    let report = bot.clear();
    let st = peer.wait_clear();
    // Twilio had played out everything it got before the clear.
    assert!(st.clears[0].dropped < 1.0, "{:?}", st.clears[0]);
    set_state(&bot.p, gst::State::Playing);
    agrees_from_the_start("paused", report, &bot, &peer, Duration::from_secs(1));
}

/// After Twilio's `stop` the sink sends nothing more (Twilio plays
/// nothing more): a clear then is refused, as after the call's end, and
/// neither counted as sent nor reported as if it had reached Twilio (with
/// a playout the model made up after the stop); a mark likewise.
#[test]
fn a_clear_after_stop_is_refused() {
    init();
    let (bot, peer) = Bot::with_peer("");
    bot.a_second_reaching(&peer, 1600);
    peer.stop();
    let deadline = Instant::now() + PATIENCE;
    while !has_element(&drain_messages(&bot.bus), "twilio-stop") {
        assert!(Instant::now() < deadline, "no twilio-stop");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!bot.sink.emit_by_name::<bool>("clear", &[]));
    assert!(!bot.sink.emit_by_name::<bool>("send-mark", &[&"late"]));
    // A flush after it is no clear either.
    let pad = bot.sink.static_pad("sink").unwrap();
    assert!(pad.send_event(gst::event::FlushStart::new()));
    assert!(pad.send_event(gst::event::FlushStop::new(false)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(peer.state().texts_of("clear").is_empty());
    assert_eq!(bot.sink.property::<u64>("clears-sent"), 0);
    assert_eq!(bot.sink.property::<u64>("marks-sent"), 0);
    assert!(peer.state().texts_of("mark").is_empty());
    let reports = element_messages(&drain_messages(&bot.bus), "twilio-clear");
    assert!(reports.is_empty(), "{reports:?}");
}

/// Echoes that take a while to come back (a Twilio far away): an echo
/// arrives the way back's time after Twilio played its mark. Taken for
/// the moment Twilio played it, the model thinks Twilio is behind by that
/// much at every echo and holds the audio back as long: the caller hears
/// gaps (0.5 s in 3 s with echoes 150 ms late and the 100 ms lead), and a
/// clear reports less heard than was.
#[test]
fn late_echoes_neither_starve_the_caller_nor_skew_the_report() {
    init();
    for late_ms in [150u64, 300] {
        let bot = Bot::new("");
        let peer = bot.dial(Echo::OnPlayout {
            late: Duration::from_millis(late_ms),
        });
        for k in 0..10 {
            bot.prompt(200 * k, 200);
            bot.mark(&format!("m{k}"));
        }
        bot.prompt(2000, 1000);
        peer.sleep_past_the_first_frame(Duration::from_millis(2600));
        let report = bot.clear();
        let st = peer.wait_clear();
        assert!(
            st.underruns() < Duration::from_millis(20),
            "echoes {late_ms} ms late: the caller heard {:?} of gaps",
            st.underruns()
        );
        agrees_from_the_start(
            &format!("echoes {late_ms} ms late"),
            report,
            &bot,
            &peer,
            Duration::from_secs(3),
        );
    }
}

/// Echoes held up on their way back by 0 to 300 ms at random, a mark
/// every 200 ms (a bot marking each phrase): a late echo may be Twilio
/// behind or the echo held up, and the pacing does not take it for the
/// first, so the caller hears no gap. (The writer held back as long as
/// each late echo said: 0.5 s of gaps in 3 s of speech.)
#[test]
fn echoes_held_up_at_random_never_starve_the_caller() {
    init();
    for seed in [1, 2] {
        let bot = Bot::new("");
        let peer = bot.dial(Echo::Jittered {
            late: Duration::from_millis(20),
            up_to: Duration::from_millis(300),
            seed,
        });
        for k in 0..15 {
            bot.prompt(200 * k, 200);
            bot.mark(&format!("m{k}"));
        }
        peer.sleep_past_the_first_frame(Duration::from_millis(2900));
        bot.clear();
        let st = peer.wait_clear();
        assert!(
            st.underruns() < Duration::from_millis(20),
            "seed {seed}: the caller heard {:?} of gaps",
            st.underruns()
        );
    }
}

/// Two prompts with a jump in their timestamps between them (sync=false
/// closes the gap up) and no mark between: the partial frame before the
/// jump goes out on its own, so that no frame straddles it, timed as the
/// second prompt (with chunk-duration=1000 a clear half a second before
/// the jump reported a running time in the second prompt).
#[test]
fn no_frame_straddles_a_jump_in_the_timestamps() {
    init();
    let (bot, peer) = Bot::with_peer("chunk-duration=1000 max-lead=5000");
    bot.prompt(0, 1500);
    bot.prompt(10_000, 1000);
    bot.taken();
    peer.sleep_past_the_first_frame(Duration::from_millis(1200));
    let report = bot.clear();
    let st = peer.wait_clear();
    let heard = ms(st.clears[0].played);
    let played = report.played.unwrap();
    assert!(
        played.abs_diff(heard) <= TOLERANCE,
        "reported running time {played:?}; the caller was {heard:?} into the first prompt"
    );
    // The first prompt's last half second went as a frame of its own.
    let sizes: Vec<usize> = st.texts_of("media").iter().map(String::len).collect();
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    assert!(sizes[1] < sizes[0], "{sizes:?}");
}

/// Telnyx takes frames of 20 ms at least: a shorter one (before a mark)
/// is padded with silence. The silence is no audio of the stream: a clear
/// drops none of it (README: `dropped` is "audio sent to the sink and
/// never heard"). 40 pieces of 5 ms, each followed by a mark, cleared at
/// once: 200 ms of audio in 800 ms of frames (`dropped` said ~780 ms).
#[test]
fn a_provider_minimums_padding_is_not_dropped_audio() {
    use gsttwiliostream::codec::WireFormat;
    init();
    let bot = Bot::new("max-lead=20");
    let url = url_of(&bot.sink);
    let _peer = Peer::dial_as(&url, Echo::Never, Provider::Telnyx, WireFormat::PCMA);
    for i in 0..40u64 {
        let mut buffer = pcm_buffer(&sine(300.0, 8000.0, 6000.0, 40));
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(5 * i));
        b.set_duration(gst::ClockTime::from_mseconds(5));
        let ret = bot
            .app
            .emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        assert_eq!(ret, gst::FlowReturn::Ok);
        bot.mark(&format!("m{i}"));
    }
    // After all of it (a serialized event).
    let clear = gst::Structure::new_empty("twilio-clear");
    assert!(bot.app.send_event(gst::event::CustomDownstream::new(clear)));
    let report = bot.report();
    let played = report.played.unwrap_or_default();
    let all = played + report.dropped;
    assert!(
        all.abs_diff(Duration::from_millis(200)) <= Duration::from_millis(3),
        "played {played:?} + dropped {:?}: 200 ms of audio",
        report.dropped
    );
}
