//! `TwilioCall::close` after a backlog: a `--fast` call queues its whole
//! audio at once, and the plugin reads it at its own pace. Closing must
//! deliver all of it before the close frame, not give up while the writer
//! still makes progress (the process then ends and drops the rest).

use std::time::Duration;

use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use twilio_emulator::{CallParams, Provider, TwilioCall};

/// Messages of 64 KB: far more than the socket buffers hold.
const MESSAGES: usize = 800;
const SIZE: usize = 64 * 1024;

/// A peer that reads a message every 10 ms (8 s for all: beyond any fixed
/// bound on the close), counting text frames until the close frame or EOF.
async fn slow_reader(listener: TcpListener) -> (usize, bool) {
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let mut texts = 0;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Text(_)) => texts += 1,
            Ok(Message::Close(_)) => return (texts, true),
            Ok(_) => {}
            Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (texts, false)
}

#[test]
fn close_delivers_a_backlog_the_peer_reads_slowly() {
    let peer_rt = tokio::runtime::Runtime::new().unwrap();
    let listener = peer_rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let peer = peer_rt.spawn(slow_reader(listener));

    // The call's own runtime ends with the close, as the emulator's
    // process does: whatever its writer had not sent by then is lost.
    let call_rt = tokio::runtime::Runtime::new().unwrap();
    call_rt.block_on(async {
        let params = CallParams::of(Provider::Twilio, Default::default());
        let mut call = TwilioCall::connect(&url, params).await.unwrap();
        let text = "x".repeat(SIZE);
        for _ in 0..MESSAGES {
            call.send_text(&text).unwrap();
        }
        call.close().await;
    });
    drop(call_rt);

    let (texts, closed) = peer_rt.block_on(peer).unwrap();
    assert_eq!(texts, MESSAGES, "every message sent before the close");
    assert!(closed, "the close frame came after them");
}
