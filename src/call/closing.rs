//! The WebSocket's closing handshake (RFC 6455 5.5.1, 7.4.1): our close
//! frame, the answer to the peer's, both bounded in time so that a peer
//! that stops reading never holds a call (or a state change) up. Either
//! then shuts our side of the stream: over TLS that sends close_notify
//! (RFC 8446 6.1), without which a client reading on after the close
//! frame takes the end for a truncation.

use std::time::Duration;

use futures::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// How long closing our side of the WebSocket may take before the socket is
/// simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(250);
/// Close code for a message too big to read (RFC 6455).
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: a text frame that is not UTF-8 (RFC 6455, 7.4.1).
pub(super) const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: the peer broke the WebSocket protocol (RFC 6455, 7.4.1).
pub(super) const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// Sends our close frame (`code`, `reason`) and shuts our side, within
/// [`CLOSE_TIMEOUT`].
pub(crate) async fn close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: u16,
    reason: &str,
) {
    // A close frame's reason is at most 123 bytes (RFC 6455 5.5).
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason[..end].into(),
    };
    let closing = async {
        if ws.close(Some(frame)).await.is_ok() {
            let _ = ws.get_mut().shutdown().await;
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

/// After the peer's close: sends the reply tungstenite queued when it read
/// it (the peer's code echoed, RFC 6455 5.5.1), and shuts our side, within
/// [`CLOSE_TIMEOUT`] for a peer that does not read. (`close` would not: no
/// frame may be sent once the peer closed, so it fails before flushing.)
pub(crate) async fn answer_close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let answering = async {
        if ws.flush().await.is_ok() {
            let _ = ws.get_mut().shutdown().await;
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, answering).await;
}

/// The peer ended its side without a close frame (a FIN, or TLS's
/// close_notify): shuts ours, within [`CLOSE_TIMEOUT`], so that over TLS
/// its close_notify is answered with ours (RFC 8446 6.1) rather than by a
/// bare TCP close.
pub(super) async fn answer_end<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.get_mut().shutdown()).await;
}
