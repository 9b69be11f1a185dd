//! The WebSocket listeners Twilio dials, shared by every element that
//! listens on the same address.
//!
//! Each element registers a [`Slot`](crate::call::Slot) for a path
//! (`registry`); every call that arrives for that path goes to the oldest
//! registered slot that has no call yet (`paths`). A call that finds no
//! free slot waits (up to `pending-timeout`) for an element to register or
//! free, so an application can start a new pipeline per call.
//!
//! A connection: accepted and counted against `max-connections`, TLS when
//! the listener has a certificate (`tls`), within `handshake-timeout`
//! (`accept`); the WebSocket upgrade checks the path (HTTP 404), the
//! `X-Twilio-Signature` (HTTP 403) and whether a call could wait (HTTP 503),
//! and answers a subprotocol it speaks (`upgrade`, `subprotocol`); the connection becomes a call only at its `start`
//! message, and is then dispatched (`admission`).
//! The element-side settings that configure all this are in
//! [`crate::endpoint`].

mod accept;
mod admission;
mod http;
mod paths;
mod registry;
mod stream;
mod subprotocol;
mod throttle;
mod tls;
mod upgrade;

pub use admission::CLOSE_TRY_AGAIN_LATER;
pub(crate) use paths::{PathConfig, canonical_path};
pub use registry::Registration;
pub(crate) use registry::{ListenerConfig, register};
#[cfg(test)]
pub(crate) use stream::Prefixed;
pub(crate) use tls::TlsFiles;
