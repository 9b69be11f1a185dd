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

/// Dials `sink` as Twilio (`start`, μ-law 8 kHz), then reads as many
/// messages as it is told to, each time: the test lets it read in steps
/// tied to how much it asked the sink to write, not to the clock, so that
/// the peer reads far less than it is sent and yet the writer keeps making
/// progress (its stall timeout is 10 s) however slow the machine is.
fn slow_reader(sink: &gst::Element) -> tokio::sync::mpsc::UnboundedSender<usize> {
    let url = url_of(sink);
    let port = sink.property::<u32>("bound-port") as u16;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
    rt().spawn(async move {
        // A small receive buffer of its own (no autotuning): the kernel
        // lets the sender go on after each read of a few KiB, not only once
        // hundreds of KiB are free.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        let sid = "MZ00000000000000000000000000000000";
        let start = format!(
            r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"AC0","streamSid":"{sid}","callSid":"CA0","tracks":["inbound"],"customParameters":{{}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
        );
        ws.send(Message::text(start)).await.unwrap();
        while let Some(messages) = rx.recv().await {
            for _ in 0..messages {
                match ws.next().await {
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        }
    });
    tx
}

/// Clears of about 70 bytes each, asked for far faster than the peer
/// reads: once 8 MiB wait unsent (beyond what the sockets' buffers took),
/// a clear is refused, as a mark is at 4 MiB; the call stays up. (The
/// peer sends no media: `idle-timeout` is off, or a machine slow enough
/// to take 10 s over the clears would end the call for its silence.)
#[test]
fn clears_for_a_peer_that_reads_slowly_are_bounded() {
    init();
    let p = pipeline(
        "appsrc name=app format=time caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved \
         ! twiliostreamsink name=sink port=0 idle-timeout=0",
    );
    set_state(&p, gst::State::Playing);
    // Nothing reads the bus here: its twilio-clear messages must not pile up.
    p.bus().unwrap().set_flushing(true);
    let sink = by_name(&p, "sink");
    let reader = slow_reader(&sink);
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
        // Per 10 000 clears (700 KB), the peer reads 3000 (210 KB): more
        // than tungstenite's 128 KiB write buffer, which the writer must
        // flush whole before it goes on.
        if accepted.is_multiple_of(10_000) {
            reader.send(3000).unwrap();
        }
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
    // Every echo read (each counts in marks-received) before the clear.
    counter_reaches(&bot.sink, "marks-received", 2 + 5 + 2000);
    // Only the three marks sent count as played: "c" came first, which
    // says "a" and "b" were played too; the rest say nothing.
    assert_eq!(bot.sink.property::<u64>("marks-played"), 3);
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
