//! The WebSocket upgrade of one connection: the path (HTTP 404 if nobody
//! listens on it), the `X-Twilio-Signature` (HTTP 403 if wrong or missing
//! with an auth token), the message size limits; then the call is created
//! and dispatched to a free element, or waits up to [`PENDING_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::accept::ConnectionGuard;
use super::paths::{Dispatch, Shared};
use crate::call::{CAT, Call};
use crate::signature;

/// How long an accepted call waits for an element to take it.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// tungstenite zero-fills its read buffer before every read: the default
/// (128 KiB) made that memset the largest cost of a call, and at 4 KiB it
/// still was 2 % of the load test's server. Media messages are ~300 bytes
/// (one read holds three); larger ones are still read, over several reads.
const READ_BUFFER_SIZE: usize = 1024;

fn reject(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

// tungstenite's callback signature fixes the (large) error type.
#[allow(clippy::result_large_err)]
pub(super) async fn upgrade<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<Shared>,
    guard: ConnectionGuard,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted = Arc::new(OnceLock::new());
    let callback = {
        let accepted = accepted.clone();
        let shared = shared.clone();
        move |request: &Request, response: Response| {
            let path = request.uri().path();
            let Some((config, rejected)) = shared.path_config(path) else {
                gst::info!(CAT, "{peer}: nobody listens on {path}, answering 404");
                return Err(reject(
                    StatusCode::NOT_FOUND,
                    "no stream is served on this path\n",
                ));
            };
            if let Some(token) = &config.auth_token {
                let url = match &config.public_url {
                    Some(url) => url.clone(),
                    None => {
                        let host = request
                            .headers()
                            .get("host")
                            .and_then(|h| h.to_str().ok())
                            .unwrap_or_default();
                        let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
                        format!("wss://{host}{target}")
                    }
                };
                let signature = request
                    .headers()
                    .get("x-twilio-signature")
                    .and_then(|h| h.to_str().ok());
                let valid = signature.is_some_and(|s| signature::verify(token, &url, s));
                if !valid {
                    rejected.fetch_add(1, Ordering::Relaxed);
                    gst::warning!(
                        CAT,
                        "{peer}: {} X-Twilio-Signature for {url}, answering 403",
                        if signature.is_some() { "wrong" } else { "no" }
                    );
                    return Err(reject(
                        StatusCode::FORBIDDEN,
                        "invalid X-Twilio-Signature\n",
                    ));
                }
            }
            let _ = accepted.set((path.to_owned(), config.call));
            Ok(response)
        }
    };
    let hard_limit = Some(16 * shared.largest_message_size());
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit);
    let ws =
        match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config))
            .await
        {
            Ok(ws) => ws,
            Err(e) => {
                gst::info!(CAT, "{peer}: handshake failed: {e}");
                return;
            }
        };
    let (path, config) = accepted
        .get()
        .cloned()
        .expect("set by the accepting callback");
    let call = Call::spawn(ws, peer, path.clone(), config, guard);
    match shared.dispatch(&path, &call) {
        Dispatch::Delivered => return,
        Dispatch::NobodyListens => {
            call.request_close();
            return;
        }
        Dispatch::Queued => {}
    }
    // Close the call if no element takes it in time.
    tokio::spawn(async move {
        tokio::time::sleep(PENDING_TIMEOUT).await;
        if shared.expire(&path, &call) {
            gst::warning!(
                CAT,
                "{call:?}: no element took the call in {PENDING_TIMEOUT:?}, closing"
            );
            call.request_close();
        }
    });
}
