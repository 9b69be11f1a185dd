//! The WebSocket's closing handshake (RFC 6455 5.5.1, 7.4.1): our close
//! frame, the answer to the peer's, both bounded in time so that a peer
//! that stops reading never holds a call (or a state change) up.

use std::time::Duration;

use futures::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
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

/// Sends our close frame (`code`, `reason`) and waits, briefly, for the
/// peer's answer.
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
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
}

/// After the peer's close: sends the reply tungstenite queued when it read
/// it (the peer's code echoed, RFC 6455 5.5.1), within [`CLOSE_TIMEOUT`]
/// for a peer that does not read. (`close` would not: no frame may be
/// sent once the peer closed, so it fails before flushing.)
pub(crate) async fn answer_close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.flush()).await;
}
