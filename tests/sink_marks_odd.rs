//! Marks and `end-stream` at odd moments, and mark names that are hard to
//! write: what is on the wire is valid JSON of exactly the documented shape
//! (`{"event":"mark","streamSid":…,"mark":{"name":…}}`), the mark lands
//! after exactly the audio before it, and every echo comes back in order.

mod common;

use std::time::{Duration, Instant};

use common::peer::{Bot, Echo};
use common::sink::*;
use common::*;
use gst::prelude::*;

fn send_mark(sink: &gst::Element, name: &str) -> bool {
    sink.emit_by_name::<bool>("send-mark", &[&name])
}

/// Exactly the documented shape, the name escaped as JSON.
fn mark_text(sid: &str, name: &str) -> String {
    format!(
        r#"{{"event":"mark","streamSid":"{sid}","mark":{{"name":{}}}}}"#,
        serde_json::to_string(name).unwrap()
    )
}

#[test]
fn hard_names_are_sent_as_exact_json_and_echoed_back() {
    init();
    let (bot, peer) = Bot::with_peer("");
    peer.wait_for("start", |_| true);
    let names = [
        "quote\"d",
        "back\\slash",
        "new\nline\ttab\r",
        "\u{1}\u{1f}\u{7f}",
        "ünïcødé",
        "emoji 🎉👩‍👩‍👧",
        "line\u{2028}sep\u{2029}",
        "</script><!--",
        "{\"event\":\"clear\"}",
        "",
        " ",
        &"é".repeat(128),
        &"x".repeat(256),
    ];
    let deadline = Instant::now() + PATIENCE;
    while bot.sink.property::<Option<String>>("stream-sid").is_none() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    for name in names {
        assert!(send_mark(&bot.sink, name), "{name:?} refused");
        bot.prompt(0, 20);
    }
    let st = peer.wait_for("echoes", |st| st.echoes.len() == names.len());
    let texts = st.texts_of("mark");
    let expected: Vec<String> = names.iter().map(|n| mark_text(&peer.sid, n)).collect();
    assert_eq!(texts, expected);
    assert!(st.invalid.is_empty(), "{:?}", st.invalid);
    // Every echo recognised, posted with its name, in order.
    let deadline = Instant::now() + PATIENCE;
    let mut posted = Vec::new();
    while posted.len() < names.len() {
        assert!(Instant::now() < deadline, "posted {posted:?}");
        posted.extend(
            element_messages(&drain_messages(&bot.bus), "twilio-mark")
                .iter()
                .map(|s| s.get::<String>("name").unwrap()),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(posted, names);
    assert_eq!(bot.sink.property::<u64>("marks-played"), names.len() as u64);
}

/// Many marks, a sample of audio between each: each lands after exactly
/// the samples before it (the partial frame goes out first), and all are
/// echoed in order.
#[test]
fn a_thousand_marks_each_after_exactly_its_audio() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let call = dial(&sink, twilio_emulator::Playout::Instant);
    let mut pushed = 0;
    for k in 0..1000usize {
        let n = k % 7; // 0 to 6 samples, none at times: marks on an empty stream
        h.push(pcm_buffer(&vec![1000; n])).unwrap();
        pushed += n;
        assert!(
            h.push_event(gst::event::CustomDownstream::new(
                gst::Structure::builder("twilio-mark")
                    .field("name", format!("m{k}"))
                    .build()
            ))
        );
        let _ = pushed;
    }
    let deadline = Instant::now() + PATIENCE;
    while call.playback().marks.len() < 1000 {
        assert!(
            Instant::now() < deadline,
            "{} echoed",
            call.playback().marks.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let playback = call.playback();
    let mut before = 0;
    for (k, m) in playback.marks.iter().enumerate() {
        before += k % 7;
        assert_eq!(
            (m.name.as_str(), m.played_samples),
            (format!("m{k}").as_str(), before)
        );
    }
    assert_eq!(sink.property::<u64>("marks-sent"), 1000);
    // (Counted as the echoes arrive, after the emulator recorded them.)
    counter_reaches(&sink, "marks-played", 1000);
}

/// A mark after a clear follows the clear, and comes back at once (the
/// queue is empty).
#[test]
fn a_mark_after_a_clear_comes_back_at_once() {
    init();
    let (bot, peer) = Bot::with_peer("");
    bot.a_second_reaching(&peer, 800);
    bot.clear();
    assert!(send_mark(&bot.sink, "after"));
    let st = peer.wait_for("echo", |st| st.echoes.iter().any(|e| e.name == "after"));
    let kinds: Vec<&str> = st
        .received
        .iter()
        .skip_while(|(_, t)| !t.contains("\"clear\""))
        .map(|(_, t)| &t[10..15])
        .collect();
    assert_eq!(kinds, ["clear", "mark\""], "{kinds:?}");
    let echo = st.echoes.iter().find(|e| e.name == "after").unwrap();
    assert!(!echo.cleared);
}

/// A mark lands after the audio before it to within the resampler's delay
/// (2.6 ms; 2.7 ms from 48 kHz), with buffers of odd sizes: a click as the
/// last sample before the mark is heard at most that long after it.
#[test]
fn marks_after_odd_buffers_at_48khz_land_within_the_resamplers_delay() {
    const LENGTHS: [usize; 6] = [4801, 1, 997, 6000, 13, 7777];
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial(&sink, twilio_emulator::Playout::Instant);
    for (k, len) in LENGTHS.iter().enumerate() {
        let mut pcm = vec![0i16; *len];
        *pcm.last_mut().unwrap() = 30000;
        h.push(pcm_buffer(&pcm)).unwrap();
        let mark = gst::Structure::builder("twilio-mark")
            .field("name", format!("m{k}"))
            .build();
        assert!(h.push_event(gst::event::CustomDownstream::new(mark)));
    }
    h.push(pcm_buffer(&[0i16; 4800])).unwrap();
    assert!(sink.emit_by_name::<bool>("end-stream", &[&true]));
    let pcm = twilio_emulator::audio::decode(&media_bytes(&receive_until(&mut call, |_| false)));
    // Played at once: each mark's echo says how much was sent before it.
    let at: Vec<usize> = call
        .playback()
        .marks
        .iter()
        .map(|m| m.played_samples)
        .collect();
    let delay = gsttwiliostream::codec::resample::delay_ns(48000, 8000).unwrap() as f64 / 125e3;
    let mut inputs = 0;
    for (k, len) in LENGTHS.iter().enumerate() {
        inputs += len;
        let expected = inputs as f64 / 6.0;
        assert!(
            (at[k] as f64 - expected).abs() < 1.0,
            "mark {k} after {} samples, the input had {expected}",
            at[k]
        );
        // The loudest sample within 5 ms of the mark: the click, which the
        // filter delays.
        let peak = (at[k].saturating_sub(40)..(at[k] + 40).min(pcm.len()))
            .max_by_key(|&i| pcm[i].unsigned_abs())
            .unwrap();
        let late = peak as f64 - at[k] as f64;
        assert!(
            (0.0..=delay + 1.0).contains(&late),
            "mark {k}: the click is heard {late} samples after the mark ({delay} of delay)"
        );
    }
}

#[test]
fn end_stream_at_odd_times() {
    init();
    // Before any call: nothing to end.
    let bot = Bot::new("");
    assert!(!bot.sink.emit_by_name::<bool>("end-stream", &[&true]));
    assert!(!bot.sink.emit_by_name::<bool>("end-stream", &[&false]));
    // Twice now: the second finds nothing.
    let peer = bot.dial(Echo::OnPlayout {
        late: Duration::ZERO,
    });
    bot.prompt(0, 200);
    peer.wait_for("media", |st| !st.media.is_empty());
    assert!(bot.sink.emit_by_name::<bool>("end-stream", &[&false]));
    assert!(!bot.sink.emit_by_name::<bool>("end-stream", &[&false]));
    assert_eq!(peer.wait_closed().closed.unwrap().1, Some(1000));
    drop(bot);

    // After the playout, then now: the second ends it now.
    let (bot, peer) = Bot::with_peer("");
    bot.prompt(0, 1000);
    bot.taken();
    peer.wait_for("media", |st| !st.media.is_empty());
    assert!(bot.sink.emit_by_name::<bool>("end-stream", &[&true]));
    assert!(bot.sink.emit_by_name::<bool>("end-stream", &[&false]));
    let st = peer.wait_closed();
    assert!(st.closed.unwrap().0 < st.playout_end().unwrap());
    drop(bot);

    // After the playout, with a clear right behind it: the clear flushes
    // the end mark, whose echo ends the stream at once.
    let (bot, peer) = Bot::with_peer("");
    bot.prompt(0, 1000);
    bot.taken();
    assert!(bot.sink.emit_by_name::<bool>("end-stream", &[&true]));
    let report = bot.clear();
    let st = peer.wait_closed();
    assert!(!st.clears.is_empty());
    assert!(
        st.closed.unwrap().0 - st.clears[0].at < Duration::from_secs(1),
        "{report:?}"
    );
    drop(bot);

    // A clear, then end after the playout: nothing is left to play.
    let (bot, peer) = Bot::with_peer("");
    bot.prompt(0, 1000);
    bot.taken();
    bot.clear();
    assert!(bot.sink.emit_by_name::<bool>("end-stream", &[&true]));
    let st = peer.wait_closed();
    assert!(st.closed.unwrap().0 - st.clears[0].at < Duration::from_secs(1));
}

/// `marks-sent` counts marks written to Twilio: a mark held behind audio
/// while the sink is paused, then dropped at Twilio's `stop`, was never
/// sent; the same mark, the sink playing again instead, is.
#[test]
fn a_mark_dropped_unwritten_at_stop_is_not_counted_as_sent() {
    init();
    for stop in [true, false] {
        let (bot, peer) = Bot::with_peer("");
        bot.prompt(0, 3000);
        peer.wait_for("media", |st| !st.media.is_empty());
        set_state(&bot.p, gst::State::Paused);
        // Behind the audio the paused writer holds.
        assert!(send_mark(&bot.sink, "held"));
        if stop {
            peer.stop();
            let messages = messages_until(&bot.bus, |m| has_element(m, "twilio-stop"));
            let stopped = &element_messages(&messages, "twilio-stop")[0];
            let stats = stopped.get::<gst::Structure>("stats").unwrap();
            assert_eq!(stats.get::<u64>("marks-sent").unwrap(), 0);
            assert_eq!(bot.sink.property::<u64>("marks-sent"), 0);
            assert!(peer.state().marks.is_empty());
        } else {
            assert_eq!(bot.sink.property::<u64>("marks-sent"), 0);
            set_state(&bot.p, gst::State::Playing);
            let st = peer.wait_for("the mark", |st| !st.marks.is_empty());
            // (After what the sink had rendered when it was asked for.)
            assert_eq!(st.marks.len(), 1);
            assert_eq!(st.marks[0].0, "held");
            assert_eq!(bot.sink.property::<u64>("marks-sent"), 1);
        }
        set_state(&bot.p, gst::State::Null);
    }
}

/// A `twilio-mark` event that cannot be a mark (no string `name`, or not
/// serialized with the audio) is refused with a WARNING saying why, not
/// dropped silently; a serialized one travelling both ways is a mark.
#[test]
fn mark_events_that_are_no_marks_are_refused_with_a_warning() {
    let mut h = sink_harness(PCM_8K);
    let sink = h.element().unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut call = dial(&sink, twilio_emulator::Playout::Instant);
    h.push(pcm_buffer(&[0; 160])).unwrap();
    let mark = |name: Option<i32>| {
        let s = gst::Structure::builder("twilio-mark");
        match name {
            Some(n) => s.field("name", n).build(),
            None => s.build(),
        }
    };
    let named = gst::Structure::builder("twilio-mark")
        .field("name", "oob")
        .build();
    h.push_event(gst::event::CustomDownstream::new(mark(None)));
    h.push_event(gst::event::CustomDownstream::new(mark(Some(5))));
    h.push_event(gst::event::CustomDownstreamOob::new(named.clone()));
    h.push_event(gst::event::CustomDownstreamSticky::new(named));
    let refused = warnings(&bus);
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(
        refused[..2]
            .iter()
            .all(|w| w.starts_with("twilio-mark event ignored: it has no string field 'name'"))
    );
    assert!(
        refused[2..]
            .iter()
            .all(|w| w.starts_with("twilio-mark event ignored: a mark goes after the audio"))
    );
    let both = gst::Structure::builder("twilio-mark")
        .field("name", "both")
        .build();
    h.push_event(gst::event::CustomBoth::new(both));
    let got = receive_until(&mut call, |got| !marks(got).is_empty());
    assert_eq!(marks(&got), ["both"]);
    assert_eq!(sink.property::<u64>("marks-sent"), 1);
}
