//! The order in which a call's writer sends what it is asked to, wherever
//! the request comes from (a real task over an in-memory WebSocket).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::*;

const START: &str = r#"{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}"#;
const MEDIA: &str = r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"AAAA"}}"#;

/// A call over an in-memory socket, started; and Twilio's end of it.
pub(crate) async fn call() -> (Arc<Call>, WebSocketStream<tokio::io::DuplexStream>) {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let ours = crate::server::Prefixed::new(ours);
    let ws = WebSocketStream::from_raw_socket(ours, Role::Server, None).await;
    let twilio = WebSocketStream::from_raw_socket(theirs, Role::Client, None).await;
    let mut session = Session::new(1 << 16);
    let start = session.handle(START, Vec::new);
    let config = CallConfig {
        max_message_size: 1 << 16,
        idle_timeout: Duration::ZERO,
        dialect: Choice::Auto,
        l16_order: ByteOrder::Big,
    };
    let peer = "127.0.0.1:1".parse().unwrap();
    let call = Call::spawn(ws, peer, "/".to_owned(), config, (), session, start);
    (call, twilio)
}

/// Twilio reads slowly but steadily (a 1 KB message every 200 ms, 5 KB/s)
/// behind a backlog that fills the socket: the writer hands tungstenite
/// no new text for longer than its stall timeout (tungstenite flushes its
/// whole 128 KiB buffer first, 26 s at that pace), but the socket takes
/// bytes all the while, which is progress: the call stays open. In virtual
/// time (a paused clock).
#[test]
fn a_peer_reading_slowly_but_steadily_keeps_the_call() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let (call, twilio) = call().await;
        // Twilio's end takes 1 KiB from the socket at a time, as it reads.
        let small = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(1024);
        let mut twilio =
            WebSocketStream::from_raw_socket(twilio.into_inner(), Role::Client, Some(small)).await;
        // 600 KB: beyond the socket's 64 KiB and tungstenite's 128 KiB.
        let texts: Vec<String> = (0..600)
            .map(|i| format!("{i:04}{}", "x".repeat(1020)))
            .collect();
        for text in &texts {
            call.send_text(text.clone()).unwrap();
        }
        // 30 s of reading, twice the stall timeout and more.
        for text in texts.iter().take(150) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(&next_text(&mut twilio).await, text);
        }
        assert!(call.is_open(), "the call ended though Twilio kept reading");
        call.close();
    });
}

/// A runtime of one thread: a task spawned cannot run until this one waits.
fn one_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The call's `start` is known as soon as the call is, before its task
/// first runs: an element that has the call has its streamSid.
#[test]
fn start_is_known_before_the_task_runs() {
    let runtime = one_thread();
    runtime.block_on(async {
        let (call, _twilio) = call().await;
        let start = call.start_info().expect("start known at once");
        assert_eq!((&*start.stream_sid, &*start.call_sid), ("MZ1", "CA1"));
        call.close();
    });
}

/// The next text message Twilio's end receives.
async fn next_text(twilio: &mut WebSocketStream<tokio::io::DuplexStream>) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), twilio.next())
            .await
            .expect("nothing sent")
            .expect("closed")
            .expect("read failed");
        if let Message::Text(text) = msg {
            return text.to_string();
        }
    }
}

/// A request the application made before the consumer on the call's task
/// made one goes out first: the task's own requests (taken without a
/// wake-up) never overtake one waiting in the channel.
#[test]
fn a_request_from_another_thread_is_not_overtaken_by_the_tasks_own() {
    RUNTIME.block_on(async {
        let (call, mut twilio) = call().await;
        let fired = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&call);
        call.set_consumer(Some(Arc::new(move || {
            let Some(call) = weak.upgrade() else { return };
            // Once, for the media (not for `start`).
            if call.stats.get(Stat::ChunksReceived) == 0 || fired.swap(true, Ordering::SeqCst) {
                return;
            }
            // The application, on a thread of its own, then the pipeline
            // on the call's task.
            let app = call.clone();
            std::thread::spawn(move || app.send_text("first".to_owned()).unwrap())
                .join()
                .unwrap();
            call.send_text("second".to_owned()).unwrap();
            // With nothing waiting in the channel, the task's own go
            // straight to the writer, in order.
            call.send_text("third".to_owned()).unwrap();
        })));
        twilio.send(Message::text(MEDIA)).await.unwrap();
        assert_eq!(next_text(&mut twilio).await, "first");
        assert_eq!(next_text(&mut twilio).await, "second");
        assert_eq!(next_text(&mut twilio).await, "third");
        call.close();
    });
}

/// A closed slot takes no call and is not free, until reopened; closing
/// hands back the call it held.
#[test]
fn a_closed_slot_takes_no_call_until_reopened() {
    RUNTIME.block_on(async {
        let (call, _twilio) = call().await;
        let slot = Slot::new();
        assert!(slot.offer(&call));
        let held = slot.close().expect("the call it held");
        assert!(Arc::ptr_eq(&held, &call));
        assert!(!slot.is_free());
        assert!(!slot.offer(&call));
        assert!(slot.current().is_none());
        slot.reopen();
        assert!(slot.is_free());
        assert!(slot.offer(&call));
        assert!(slot.close().is_some());
    });
}

/// One sink plays into a call: a second is told which one does, until the
/// first lets go; claiming again is no conflict.
#[test]
fn one_sink_at_a_time_sends_into_a_call() {
    let runtime = one_thread();
    runtime.block_on(async {
        let (call, _twilio) = call().await;
        assert_eq!(call.claim_sender(1, "sink0"), Ok(()));
        assert_eq!(call.claim_sender(1, "sink0"), Ok(()));
        assert_eq!(call.claim_sender(2, "sink1"), Err("sink0".to_owned()));
        call.release_sender(2);
        assert_eq!(call.claim_sender(2, "sink1"), Err("sink0".to_owned()));
        call.release_sender(1);
        assert_eq!(call.claim_sender(2, "sink1"), Ok(()));
        call.close();
    });
}

/// Marks sent from several threads at once are numbered in the order they
/// go out: a wait for one's echo (`play_out`, the EOS's) is never met by
/// the echo of a mark sent before it.
#[test]
fn marks_sent_at_once_are_numbered_in_the_order_they_go_out() {
    const THREADS: usize = 4;
    const EACH: usize = 1000;
    RUNTIME.block_on(async {
        let (call, mut twilio) = call().await;
        let senders: Vec<_> = (0..THREADS)
            .map(|t| {
                let call = call.clone();
                std::thread::spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            let name = format!("{t}-{i}");
                            let number = call.send_mark(&name).unwrap();
                            (name, number)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut numbers = std::collections::HashMap::new();
        for sender in senders {
            numbers.extend(sender.join().unwrap());
        }
        for k in 1..=(THREADS * EACH) as u64 {
            let text = next_text(&mut twilio).await;
            let message: serde_json::Value = serde_json::from_str(&text).unwrap();
            let name = message["mark"]["name"].as_str().unwrap();
            assert_eq!(numbers[name], k, "mark {name} went out as number {k}");
        }
        call.close();
    });
}

/// A frame padded to the provider's shortest (Telnyx: before a mark, at
/// EOS) that a clear drops while the writer holds it leaves nothing counted
/// as waiting in the writer: counted, its padding would stay there for the
/// rest of the call, and clears enough would keep the sink's `render()`
/// waiting for room for good (and stretch the EOS's playout bound).
#[test]
fn a_clear_leaves_no_padding_counted_as_waiting() {
    const MS: u64 = 1_000_000;
    RUNTIME.block_on(async {
        let (call, _twilio) = call().await;
        // Paused: the frame stays in the writer.
        call.pause_writer(true);
        call.send(Outgoing::Media {
            text: r#"{"event":"media"}"#.to_owned(),
            bytes: 160,
            duration: 20 * MS,
            padding: 15 * MS,
            running_time: 0,
        })
        .unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        call.clear(move |cleared| {
            let _ = tx.send(cleared);
        })
        .unwrap();
        let cleared = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("the clear was not taken")
            .unwrap();
        assert_eq!(cleared.dropped, 5 * MS);
        assert_eq!(call.queued_audio(), Duration::ZERO);
        call.close();
    });
}
