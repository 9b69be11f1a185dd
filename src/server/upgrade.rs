//! The WebSocket upgrade of one connection: a plain HTTP request answered
//! 426, one that cannot be upgraded 400 (`http`; counted as a rejected
//! connection on a served path), the path (HTTP 404 if nobody listens on
//! it), the `X-Twilio-Signature` or bearer token (HTTP 403 if wrong or
//! missing when asked for), HTTP 503 when the path's elements are all busy
//! and its calls may not wait, the subprotocol answered (`subprotocol`), and the message size
//! limits. What happens after the upgrade (the `start` message, dispatch)
//! is in `admission`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use tokio_tungstenite::WebSocketStream;

use super::http::{
    Arrival, FORBIDDEN, NOT_FOUND, UNAVAILABLE, answer_and_linger, read_head, refuse,
};
use super::paths::{PathConfig, PathCounters, Shared};
use super::stream::Prefixed;
use crate::call::CAT;
use crate::protocol::dialect::Choice;
use crate::signature;

/// tungstenite zero-fills its read buffer before every read: the default
/// (128 KiB) made that memset the largest cost of a call, and at 4 KiB it
/// still was 2 % of the load test's server. Media messages are ~300 bytes
/// (one read holds three); larger ones are still read, over several reads.
const READ_BUFFER_SIZE: usize = 1024;
/// What a connection may send before `start`, besides a message of
/// `max-message-size` and its request head.
const BEFORE_START_SLACK: usize = 16 * 1024;
/// What tungstenite may hold unwritten. Our own messages take at most its
/// write buffer (128 KiB) plus one message (the largest, 1 s of 24 kHz L16,
/// is 64 KiB): the writer hands over the next only once a blocked write is
/// out. The rest is for the pongs it answers pings with while reading: a
/// peer that pings and reads nothing would otherwise grow this buffer by
/// each ping's size for good. Full, tungstenite keeps the latest pong only.
const MAX_WRITE_BUFFER: usize = 1 << 20;

/// The header Telnyx carries a stream's `stream_auth_token` in, bare.
const TELNYX_TOKEN_HEADER: &str = "x-telnyx-streaming-auth-token";

/// Checks the upgrade's credentials against what the path asks for: a
/// valid `X-Twilio-Signature` with an auth token, `Authorization: Bearer`
/// with a bearer token (SignalWire), or on a `telnyx` or `auto` path the
/// same token in [`TELNYX_TOKEN_HEADER`]; with both, either will do.
fn authorized(request: &Request, path: &str, config: &PathConfig) -> Result<(), String> {
    if config.auth_token.is_none() && config.bearer_token.is_none() {
        return Ok(());
    }
    // What is checked comes once: of two, which one Twilio (or a proxy)
    // meant is anyone's guess (RFC 9112 refuses a second Host outright).
    let checked = [
        "host",
        "x-twilio-signature",
        "authorization",
        TELNYX_TOKEN_HEADER,
    ];
    if let Some(twice) = checked
        .into_iter()
        .find(|name| request.headers().get_all(*name).iter().nth(1).is_some())
    {
        return Err(format!("more than one {twice} header"));
    }
    let header = |name: &str| request.headers().get(name).and_then(|h| h.to_str().ok());
    let mut failures = Vec::new();
    if let Some(token) = &config.auth_token {
        let url = match &config.public_url {
            Some(url) => url.clone(),
            None => {
                let host = header("host").unwrap_or_default();
                let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
                format!("wss://{host}{target}")
            }
        };
        let signature = header("x-twilio-signature");
        if signature.is_some_and(|s| signature::verify(token, &url, s)) {
            return Ok(());
        }
        failures.push(format!(
            "{} X-Twilio-Signature for {url}",
            if signature.is_some() { "wrong" } else { "no" }
        ));
    }
    if let Some(token) = &config.bearer_token {
        let authorization = header("authorization");
        if authorization.is_some_and(|a| signature::verify_bearer(token, a)) {
            return Ok(());
        }
        let telnyx = matches!(config.call.dialect, Choice::Telnyx | Choice::Auto);
        let telnyx_token = header(TELNYX_TOKEN_HEADER).filter(|_| telnyx);
        if telnyx_token.is_some_and(|t| signature::verify_token(token, t)) {
            return Ok(());
        }
        let presented = authorization.is_some() || telnyx_token.is_some();
        failures.push(format!(
            "{} {}",
            if presented { "wrong" } else { "no" },
            if telnyx {
                "Authorization bearer token or x-telnyx-streaming-auth-token"
            } else {
                "Authorization bearer token"
            }
        ));
    }
    match failures.is_empty() {
        true => Ok(()),
        false => Err(failures.join(" and ")),
    }
}

/// A connection upgraded to a WebSocket on a served path.
pub(super) struct Upgraded<S> {
    pub ws: WebSocketStream<S>,
    pub path: String,
    pub config: PathConfig,
    pub counters: Arc<PathCounters>,
}

/// The HTTP upgrade; None if it was refused or failed (logged here).
pub(super) async fn upgrade<S>(
    stream: S,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Option<Upgraded<Prefixed<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut stream, request) = match read_head(stream).await {
        Ok(Arrival::Upgrade(stream, request)) => (stream, request),
        Ok(Arrival::Plain) => {
            gst::info!(CAT, "{peer}: not a WebSocket request: answered 426");
            return None;
        }
        Ok(Arrival::Refused(refusal, mut stream)) => {
            let path = refusal.path.as_deref().map(super::canonical_path);
            let served = path.as_deref().and_then(|path| shared.path_config(path));
            // Counted before the answer, whether or not it reaches the
            // client: one that reads it then finds it counted (the linger
            // after it lasts until the client closes, up to 2 s).
            if let Some((_, counters)) = served {
                PathCounters::count(&counters.rejected_connections);
            }
            gst::info!(
                CAT,
                "{peer}: an upgrade request for {} that cannot be upgraded: {}",
                path.as_deref().unwrap_or("no path"),
                refusal.why
            );
            answer_and_linger(&mut stream, &refusal.answer()).await;
            return None;
        }
        Ok(Arrival::Gone) => {
            gst::info!(CAT, "{peer}: gone before its request was whole");
            return None;
        }
        Err(e) => {
            gst::info!(CAT, "{peer}: reading the request failed: {e}");
            return None;
        }
    };
    // Refused here rather than by tungstenite, which would drop the
    // connection straight after its answer: over TLS without close_notify,
    // and with a reset for a client still sending.
    let (path, config, counters) = match admissible(&request, peer, shared) {
        Ok(admitted) => admitted,
        Err((status, why)) => {
            refuse(&mut stream, status, &why).await;
            return None;
        }
    };
    let offered = request.headers().get_all(SEC_WEBSOCKET_PROTOCOL);
    let offered = offered.iter().map(HeaderValue::as_bytes);
    let answered = match super::subprotocol::select(offered, config.call.dialect) {
        Some(name) => {
            gst::debug!(CAT, "{peer}: answering subprotocol {name}");
            HeaderValue::from_str(name).ok()
        }
        None if request.headers().contains_key(SEC_WEBSOCKET_PROTOCOL) => {
            gst::debug!(CAT, "{peer}: no subprotocol offered is one we speak");
            None
        }
        None => None,
    };
    // tungstenite's callback signature fixes the (large) error type.
    #[allow(clippy::result_large_err)]
    let callback = move |_: &Request, mut response: Response| -> Result<_, ErrorResponse> {
        if let Some(value) = answered {
            response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
        Ok(response)
    };
    let message_size = config.call.max_message_size;
    let hard_limit = Some(16 * message_size);
    // Until `start`: what a start message takes, and Twilio's `connected`,
    // pings and the first media read ahead of it (`stream.rs`).
    stream.limit_reads((message_size + BEFORE_START_SLACK) as u64);
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_SIZE)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit);
    let ws =
        match tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(ws_config))
            .await
        {
            Ok(ws) => ws,
            Err(e) => {
                gst::info!(CAT, "{peer}: handshake failed: {e}");
                return None;
            }
        };
    Some(Upgraded {
        ws,
        path,
        config,
        counters,
    })
}

/// The path (canonical), its settings and counters if `request` may be
/// upgraded; else the status to refuse it with, and why (a line).
fn admissible(
    request: &Request,
    peer: SocketAddr,
    shared: &Shared,
) -> Result<(String, PathConfig, Arc<PathCounters>), (&'static str, String)> {
    // The signature covers the URL as sent; elements are found by the
    // canonical form (escapes upper-case) their paths have.
    let sent = request.uri().path();
    let path = super::canonical_path(sent);
    let Some((config, counters)) = shared.path_config(&path) else {
        gst::info!(CAT, "{peer}: nobody listens on {path}, answering 404");
        return Err((NOT_FOUND, "no stream is served on this path".to_owned()));
    };
    if let Err(why) = authorized(request, sent, &config) {
        PathCounters::count(&counters.signature_failures);
        // A WARNING once a minute at most: a flood of them would be a
        // flood of log lines (signature-failures counts them all).
        static WARNED: super::throttle::Throttle = super::throttle::Throttle::new();
        if WARNED.due(std::time::Duration::from_secs(60)) {
            gst::warning!(
                CAT,
                "{peer}: {why}, answering 403 (said at INFO for a minute from now; \
                 signature-failures counts them all)"
            );
        } else {
            gst::info!(CAT, "{peer}: {why}, answering 403");
        }
        return Err((FORBIDDEN, why));
    }
    if config.pending_timeout.is_zero() && !shared.has_free_slot(&path) {
        PathCounters::count(&counters.refused_calls);
        gst::info!(
            CAT,
            "{peer}: every element on {path} has a call and calls may not wait \
             (pending-timeout=0), answering 503"
        );
        return Err((UNAVAILABLE, "every element on this path is busy".to_owned()));
    }
    Ok((path, config, counters))
}
