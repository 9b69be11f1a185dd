//! Floods from a started call that nothing reads yet (it waits for a free
//! element): what waits is bounded in bytes, not only in events, so a call
//! cannot make the process hold gigabytes with messages of up to
//! `max-message-size` each. (A src that reads them posts each mark on the
//! bus: that is the application's to read.) Nor can a connection that has
//! not sent `start`: it is closed once it sent more than a start message
//! takes, not when a message up to 16 times `max-message-size` is whole.

mod common;

use std::time::Duration;

use common::raw::{self, RawWs};
use common::*;
use futures::{SinkExt, StreamExt};
use gst::prelude::*;
use tokio_tungstenite::tungstenite::Message;

/// Sends `n` copies of `text` on `ws`, each awaited, then a ping: its
/// pong says the call read them all.
async fn flood(ws: &mut RawWs, text: &str, n: usize) {
    for _ in 0..n {
        ws.send(Message::text(text.to_owned())).await.unwrap();
    }
    ws.send(Message::Ping(b"read?".to_vec().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Pong(_)))) => break,
            Ok(Some(Ok(_))) => continue,
            other => panic!("no pong: {other:?}"),
        }
    }
}

/// `n` copies of the message `text(streamSid)` from a call that waits for
/// the busy src: what waits stays far below what they weigh (about 50 MB
/// of media, 500 MB of marks).
fn flood_while_waiting(text: impl Fn(&str) -> String, n: usize) {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 idle-timeout=0 pending-timeout=15 ! \
         fakesink name=sink sync=false",
    );
    let src = by_name(&p, "src");
    set_state(&p, gst::State::Playing);
    let url = url_of(&src);
    rt().block_on(async {
        let (_busy, _) = raw::started_call(&url).await;
        let deadline = std::time::Instant::now() + PATIENCE;
        while !src.property::<bool>("connected") {
            assert!(std::time::Instant::now() < deadline, "no call");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (mut waiting, params) = raw::started_call(&url).await;
        let before = rss_kib();
        flood(&mut waiting, &text(&params.stream_sid), n).await;
        let grown = rss_kib().saturating_sub(before);
        assert!(
            grown < 32 * 1024,
            "{} MiB more resident after the flood",
            grown / 1024
        );
    });
    set_state(&p, gst::State::Null);
}

/// One test (run alone in its binary): the resident memory it measures is
/// the whole process's.
#[test]
fn floods_of_a_waiting_call_are_bounded_in_bytes() {
    // Marks of names just under the 64 KiB message limit.
    let name = "x".repeat(60_000);
    flood_while_waiting(
        |sid| format!(r#"{{"event":"mark","streamSid":"{sid}","mark":{{"name":"{name}"}}}}"#),
        8192,
    );
    // Media chunks of 6 s each, just under the limit.
    let payload = "////".repeat(16_000);
    flood_while_waiting(
        |sid| {
            format!(
                r#"{{"event":"media","streamSid":"{sid}","media":{{"timestamp":"0","payload":"{payload}"}}}}"#
            )
        },
        1100,
    );
}

/// A connection not started yet sends part of a message far over
/// `max-message-size` (below the 16 times at which a whole one closes the
/// connection), and then nothing: it is closed with 1009 once it sent more
/// than a start message takes, not held (with what it sent) for all of
/// `handshake-timeout`, counted, and a call after it goes through.
#[test]
fn a_message_begun_before_start_is_not_held() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 max-message-size=4096 handshake-timeout=60 \
         ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let url = url_of(&src);
    rt().block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
        // A text frame of 15 * 4096 bytes (masked with a zero key), of
        // which 40 KiB are sent.
        let mut bytes = vec![0x81, 0x80 | 127];
        bytes.extend((15u64 * 4096).to_be_bytes());
        bytes.extend([0; 4]);
        bytes.extend(std::iter::repeat_n(b'x', 40 * 1024));
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() {
            use tokio::io::AsyncWriteExt;
            tcp.write_all(&bytes).await.unwrap();
        }
        assert_eq!(common::raw::next_close(&mut ws).await, Some(1009));
        let mut call = twilio_emulator::TwilioCall::start(&url, Default::default())
            .await
            .unwrap();
        call.send_media(&[0x80; 160]).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    assert_eq!(collector.wait_eos().samples().len(), 160);
    counter_reaches(&src, "rejected-connections", 1);
    set_state(&p, gst::State::Null);
}
