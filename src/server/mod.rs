//! The WebSocket listeners Twilio dials, shared by every element that
//! listens on the same address.
//!
//! Each element registers a [`Slot`](crate::call::Slot) for a path
//! (`registry`); every call that arrives for that path goes to the oldest
//! registered slot that has no call yet (`paths`). A call that finds no
//! free slot waits (up to [`PENDING_TIMEOUT`]) for an element to register,
//! so an application can start a new pipeline per call.
//!
//! A connection: accepted and counted against `max-connections`, TLS when
//! the listener has a certificate (`tls`), all within `handshake-timeout`
//! (`accept`); then the WebSocket upgrade checks the path (HTTP 404) and
//! the `X-Twilio-Signature` (HTTP 403) and creates the call (`upgrade`).
//! The element-side settings that configure all this are in
//! [`crate::endpoint`].

mod accept;
mod paths;
mod registry;
mod tls;
mod upgrade;

pub(crate) use paths::PathConfig;
pub use registry::Registration;
pub(crate) use registry::{ListenerConfig, register};
pub(crate) use tls::TlsFiles;
pub use upgrade::PENDING_TIMEOUT;
