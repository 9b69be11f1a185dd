//! A peer that reads what the sink sends very slowly, while the
//! application asks for clears in a loop: what waits for the peer stays
//! bounded (clears at 8 MiB, above media's and marks' 4 MiB), and the call
//! goes on.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::{SinkExt, StreamExt};
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// Dials `url` as Twilio (`start`, μ-law 8 kHz), then reads one message
/// every 10 ms: the writer always makes some progress (so it never
/// stalls), far slower than it is asked to write.
fn slow_reader(url: &str) {
    let url = url.to_owned();
    rt().spawn(async move {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let sid = "MZ00000000000000000000000000000000";
        let start = format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC0","streamSid":"{sid}","callSid":"CA0","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
        );
        ws.send(Message::text(start)).await.unwrap();
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            match ws.next().await {
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    });
}

/// Clears of about 70 bytes each, asked for far faster than the peer
/// reads: once 8 MiB wait unsent (beyond what the sockets' buffers took),
/// a clear is refused, as a mark is at 4 MiB; the call stays up.
#[test]
fn clears_for_a_peer_that_reads_slowly_are_bounded() {
    init();
    let p = pipeline(
        "appsrc name=app format=time caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved \
         ! twiliostreamsink name=sink port=0",
    );
    set_state(&p, gst::State::Playing);
    // Nothing reads the bus here: its twilio-clear messages must not pile up.
    p.bus().unwrap().set_flushing(true);
    let sink = by_name(&p, "sink");
    slow_reader(&url_of(&sink));
    let deadline = Instant::now() + PATIENCE;
    while !sink.property::<bool>("connected") {
        assert!(Instant::now() < deadline, "no call");
        std::thread::sleep(Duration::from_millis(5));
    }
    // 600 000 clears weigh 40 MB: far more than loopback's socket buffers
    // (a few MB each way) and the 8 MiB bound together.
    let mut accepted = 0u64;
    for _ in 0..600_000 {
        if !sink.emit_by_name::<bool>("clear", &[]) {
            break;
        }
        accepted += 1;
    }
    assert!(
        accepted < 600_000,
        "every clear was taken, though the peer read almost none of them"
    );
    assert_eq!(sink.property::<u64>("clears-sent"), accepted);
    // Refused for the backlog, not because the call ended.
    assert!(sink.property::<bool>("connected"));
    assert!(!sink.emit_by_name::<bool>("clear", &[]));
    let _ = p.set_state(gst::State::Null);
}

/// Hostile echoes before and among the audio (names never sent, echoed
/// twice, out of order, early, long): `twilio-clear`'s figures stay within
/// what was pushed, and the call goes on.
#[test]
fn hostile_echoes_keep_clear_figures_within_what_was_sent() {
    use common::peer::{Bot, Echo};
    init();
    let bot = Bot::new("max-lead=1000");
    let peer = bot.dial(Echo::Never);
    peer.echo("never-sent");
    peer.echo(&"x".repeat(60_000));
    bot.mark("a");
    bot.prompt(0, 500);
    bot.mark("b");
    bot.prompt(500, 500);
    bot.mark("c");
    bot.taken();
    peer.wait_for("marks", |st| st.marks.len() == 3);
    // Early, out of order, twice.
    for name in ["c", "a", "b", "c", "a"] {
        peer.echo(name);
    }
    for i in 0..2000 {
        peer.echo(&format!("stranger-{i}"));
    }
    // Every echo read (each counts in marks-played) before the clear.
    counter_reaches(&bot.sink, "marks-played", 2 + 5 + 2000);
    let report = bot.clear();
    let pushed = Duration::from_secs(1);
    assert!(report.played.is_some_and(|p| p <= pushed), "{report:?}");
    assert!(report.dropped <= pushed, "{report:?}");
    assert!(
        report.played.unwrap() + report.dropped <= pushed + Duration::from_millis(1),
        "{report:?}"
    );
    assert!(bot.sink.property::<bool>("connected"));
    assert!(peer.state().closed.is_none());
}
