//! The listening settings both elements share ([`Endpoint`]: host, port,
//! path, signature checking, TLS files, [`Limits`]) with their property
//! specs and accessors. They are element settings, not server internals:
//! [`Endpoint::register`] turns them into the server's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gst::glib;
use gst::prelude::*;

use crate::call::CallConfig;
use crate::call::slot::Claim;
use crate::lock::Locked;
use crate::provider::{DialectProp, Provider};
use crate::server::{self, ListenerConfig, PathConfig, Registration, TlsFiles};

/// The environment variable the auth token is read from when the
/// `auth-token` property is not set.
pub const AUTH_TOKEN_ENV: &str = "TWILIO_AUTH_TOKEN";

fn env_token() -> Option<String> {
    std::env::var(AUTH_TOKEN_ENV).ok()
}

/// Limits on what a listener and its calls accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message handled; larger ones are counted and ignored (up to
    /// 16 times this, beyond which the connection is closed).
    pub max_message_size: usize,
    /// Time allowed for TLS and the WebSocket upgrade.
    pub handshake_timeout: Duration,
    /// A call with no media for this long ends; zero: never.
    pub idle_timeout: Duration,
    /// Connections (calls and handshakes) per listener.
    pub max_connections: usize,
    /// How long a started call waits for a free element of its path.
    pub pending_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connections: 4096,
            pending_timeout: Duration::from_secs(10),
        }
    }
}

/// Where and how an element listens for Twilio: the properties shared by
/// the src and the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// Always starts with `/`.
    pub path: String,
    /// `auth-token`: None reads [`AUTH_TOKEN_ENV`]; empty disables checks.
    pub auth_token: Option<String>,
    /// The URL Twilio signs; None derives `wss://<Host><path>`.
    pub public_url: Option<String>,
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub limits: Limits,
    /// Dialect, L16 byte order, bearer token (`provider.rs`).
    pub provider: Provider,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            host: Endpoint::DEFAULT_HOST.to_owned(),
            port: Endpoint::DEFAULT_PORT,
            path: Endpoint::DEFAULT_PATH.to_owned(),
            auth_token: None,
            public_url: None,
            tls_certificate: None,
            tls_key: None,
            limits: Limits::default(),
            provider: Provider::default(),
        }
    }
}

impl Endpoint {
    pub const DEFAULT_HOST: &str = "127.0.0.1";
    pub const DEFAULT_PORT: u16 = 8080;
    pub const DEFAULT_PATH: &str = "/";

    /// The listening properties; `when` ends each blurb (an element that
    /// listens only sometimes says when).
    pub fn pspecs(when: &str) -> Vec<glib::ParamSpec> {
        let limits = Limits::default();
        let string = |name: &str, nick: &str, blurb: String, default: Option<&str>| {
            glib::ParamSpecString::builder(name)
                .nick(nick)
                .blurb(&blurb)
                .default_value(default)
                .mutable_ready()
                .build()
        };
        let uint = |name: &str, nick: &str, blurb: String, min: u32, max: u32, default: u32| {
            glib::ParamSpecUInt::builder(name)
                .nick(nick)
                .blurb(&blurb)
                .minimum(min)
                .maximum(max)
                .default_value(default)
                .mutable_ready()
                .build()
        };
        let counter = |name: &str, nick: &str, blurb: &str| {
            glib::ParamSpecUInt64::builder(name)
                .nick(nick)
                .blurb(&format!("{blurb}{when}"))
                .read_only()
                .build()
        };
        let mut specs = vec![
            string(
                "host",
                "Host",
                format!(
                    "Address to listen on for Twilio's WebSocket (0.0.0.0: all IPv4 interfaces){when}"
                ),
                Some(Self::DEFAULT_HOST),
            ),
            uint(
                "port",
                "Port",
                format!(
                    "TCP port to listen on; 0 picks a free one (see bound-port). \
                     Elements listening on the same host and port share it{when}"
                ),
                0,
                u16::MAX as u32,
                Self::DEFAULT_PORT as u32,
            ),
            string(
                "path",
                "Path",
                format!(
                    "URL path of the stream, as in the TwiML <Stream url>; each element \
                     listening on it takes the next call for it{when}"
                ),
                Some(Self::DEFAULT_PATH),
            ),
            glib::ParamSpecString::builder("auth-token")
                .nick("Auth token")
                .blurb(&format!(
                    "Twilio auth token: the WebSocket upgrade must then carry a valid \
                     X-Twilio-Signature, or it gets HTTP 403. Unset: the {AUTH_TOKEN_ENV} \
                     environment variable, if set (dialect auto or twilio only); empty: no \
                     check. Write-only{when}"
                ))
                .write_only()
                .mutable_ready()
                .build(),
            string(
                "public-url",
                "Public URL",
                format!(
                    "The wss:// URL Twilio dials, exactly as in the TwiML (the signature is \
                     over it). Unset: wss:// + the request's Host header + path, which is \
                     right unless a proxy changes the Host{when}"
                ),
                None,
            ),
            string(
                "tls-certificate",
                "TLS certificate",
                format!(
                    "PEM file of the certificate chain: with tls-key set, the listener \
                     speaks wss:// itself, and loads both files again when they change \
                     (a renewal){when}"
                ),
                None,
            ),
            string(
                "tls-key",
                "TLS key",
                format!("PEM file of the private key for tls-certificate{when}"),
                None,
            ),
            uint(
                "max-message-size",
                "Maximum message size",
                format!(
                    "Largest message in bytes; larger ones are counted as invalid and \
                     ignored (beyond 16 times this the connection is closed){when}"
                ),
                1024,
                16 << 20,
                limits.max_message_size as u32,
            ),
            uint(
                "handshake-timeout",
                "Handshake timeout",
                format!(
                    "Seconds a client has to complete TLS and the WebSocket upgrade, and then \
                     again to send its start message: a connection becomes a call only at \
                     start, and is closed (close code 1008, 1003 for a binary frame) if it sends \
                     anything else first{when}"
                ),
                1,
                3600,
                limits.handshake_timeout.as_secs() as u32,
            ),
            uint(
                "idle-timeout",
                "Idle timeout",
                format!(
                    "A call with no media for this many seconds ends (a warning, then \
                     EOS); 0: never{when}"
                ),
                0,
                86400,
                limits.idle_timeout.as_secs() as u32,
            ),
            uint(
                "max-connections",
                "Maximum connections",
                format!(
                    "Connections (calls and handshakes) per listener; past it a new one \
                     evicts the oldest connection that is not a call yet (no start message){when}"
                ),
                1,
                1 << 20,
                limits.max_connections as u32,
            ),
            uint(
                "pending-timeout",
                "Pending timeout",
                format!(
                    "Seconds a call (at its start message) waits for a free element on its \
                     path, a busy one finishing or a new one starting, before it is refused \
                     with close code 1013 (try again later); 0: refuse at once, with HTTP 503 \
                     at the upgrade already when no element is free then. At most 15: what \
                     Twilio sends meanwhile is queued for the element{when}"
                ),
                0,
                15,
                limits.pending_timeout.as_secs() as u32,
            ),
            counter(
                "signature-failures",
                "Signature failures",
                "Handshakes refused with HTTP 403 for a missing or wrong X-Twilio-Signature \
                 or bearer token (auth-bearer-token)",
            ),
            counter(
                "rejected-connections",
                "Rejected connections",
                "Connections on this path closed before they became a call: an upgrade \
                 request that cannot be upgraded (HTTP 400, 426 or 431), closed early, \
                 something other than a start message first, or no start within \
                 handshake-timeout (health checks, probes, scanners)",
            ),
            counter(
                "refused-calls",
                "Refused calls",
                "Calls refused because no element on this path was free (close code 1013, \
                 or HTTP 503 with pending-timeout=0), or none can output the call's \
                 format (close code 1003)",
            ),
            counter(
                "abandoned-calls",
                "Abandoned calls",
                "Calls on this path that ended (the caller hung up, Twilio closed) while \
                 they waited for a free element, before any took them",
            ),
        ];
        specs.extend(Provider::pspecs(when));
        specs
    }

    /// Sets one of the properties; false if `name` is not one of them.
    pub fn set_property(&mut self, name: &str, value: &glib::Value) -> bool {
        let string = || value.get::<Option<String>>().unwrap();
        let uint = || value.get::<u32>().unwrap();
        match name {
            "host" => self.host = string().unwrap_or_else(|| Self::DEFAULT_HOST.to_owned()),
            "port" => self.port = uint() as u16,
            "path" => {
                let path = string().unwrap_or_else(|| Self::DEFAULT_PATH.to_owned());
                let path = if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                };
                // As a request names it (a space or `ü` percent-encoded).
                self.path = server::canonical_path(&path);
            }
            "auth-token" => self.auth_token = string(),
            "public-url" => self.public_url = string().filter(|s| !s.is_empty()),
            "tls-certificate" => self.tls_certificate = string().map(PathBuf::from),
            "tls-key" => self.tls_key = string().map(PathBuf::from),
            "max-message-size" => self.limits.max_message_size = uint() as usize,
            "handshake-timeout" => self.limits.handshake_timeout = secs(uint()),
            "idle-timeout" => self.limits.idle_timeout = secs(uint()),
            "max-connections" => self.limits.max_connections = uint() as usize,
            "pending-timeout" => self.limits.pending_timeout = secs(uint()),
            _ => return self.provider.set_property(name, value),
        }
        true
    }

    /// Reads one of the properties; None if `name` is not one of them (the
    /// auth token is never readable).
    pub fn property(&self, name: &str) -> Option<glib::Value> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Some(match name {
            "host" => self.host.to_value(),
            "port" => (self.port as u32).to_value(),
            "path" => self.path.to_value(),
            "public-url" => self.public_url.to_value(),
            "tls-certificate" => path(&self.tls_certificate).to_value(),
            "tls-key" => path(&self.tls_key).to_value(),
            "max-message-size" => (self.limits.max_message_size as u32).to_value(),
            "handshake-timeout" => (self.limits.handshake_timeout.as_secs() as u32).to_value(),
            "idle-timeout" => (self.limits.idle_timeout.as_secs() as u32).to_value(),
            "max-connections" => (self.limits.max_connections as u32).to_value(),
            "pending-timeout" => (self.limits.pending_timeout.as_secs() as u32).to_value(),
            _ => return self.provider.property(name),
        })
    }

    /// The auth token in force: the property, else the environment. The
    /// variable is Twilio's account token: a path fixed to SignalWire or
    /// Telnyx, which never send `X-Twilio-Signature`, does not take it
    /// (every call would get 403).
    fn effective_auth_token(&self) -> Option<String> {
        self.auth_token
            .clone()
            .or_else(|| self.takes_env_token().then(env_token).flatten())
            .filter(|t| !t.is_empty())
    }

    /// Whether the path may take Twilio's token from the environment: its
    /// calls may be Twilio's (`dialect` `auto` or `twilio`).
    fn takes_env_token(&self) -> bool {
        matches!(
            self.provider.dialect,
            DialectProp::Auto | DialectProp::Twilio
        )
    }

    /// Listens (or joins the listener already there) for calls to the path.
    pub fn register(&self, claim: Claim) -> Result<Registration, gst::ErrorMessage> {
        let fail = |e: String| {
            gst::error_msg!(
                gst::ResourceError::OpenReadWrite,
                ("Could not listen on {}:{}: {}", self.host, self.port, e)
            )
        };
        if let Some(c) = self.path.chars().find(|c| matches!(c, '?' | '#')) {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                (
                    "path {:?} contains {c:?}: Twilio does not allow a query string or \
                     fragment in the <Stream> url; pass values as <Parameter>s \
                     (custom-parameters) instead",
                    self.path
                )
            ));
        }
        // Carried in an HTTP header, which holds visible ASCII (and spaces
        // inside, not around it: the header's value is trimmed): any other
        // token could never match.
        if let Some(token) = &self.provider.bearer_token {
            let header_safe = |c: char| c.is_ascii_graphic() || c == ' ';
            if !token.chars().all(header_safe) || token.trim() != token {
                return Err(gst::error_msg!(
                    gst::ResourceError::Settings,
                    ("auth-bearer-token must be printable ASCII, with no space around it: \
                         an HTTP header carries it")
                ));
            }
        }
        if let Some(url) = &self.public_url {
            crate::signature::check_public_url(url)
                .map_err(|why| gst::error_msg!(gst::ResourceError::Settings, ("{}", why)))?;
        }
        let tls = match (&self.tls_certificate, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                certificate: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => return Err(fail("tls-certificate and tls-key go together".into())),
        };
        let listener_config = ListenerConfig {
            tls,
            handshake_timeout: self.limits.handshake_timeout,
            max_connections: self.limits.max_connections,
        };
        // The environment's token left unused: say the path is open.
        let unauthenticated = !self.takes_env_token()
            && self.auth_token.is_none()
            && env_token().is_some_and(|t| !t.is_empty())
            && self.provider.bearer_token.is_none();
        let path_config = PathConfig {
            auth_token: self.effective_auth_token(),
            bearer_token: self.provider.bearer_token.clone(),
            public_url: self.public_url.clone(),
            call: CallConfig {
                max_message_size: self.limits.max_message_size,
                idle_timeout: self.limits.idle_timeout,
                dialect: self.provider.dialect.into(),
                l16_order: self.provider.l16_order.into(),
            },
            pending_timeout: self.limits.pending_timeout,
        };
        let registration = server::register(
            &self.host,
            self.port,
            &self.path,
            listener_config,
            path_config,
            claim,
        )
        .map_err(|e| fail(e.to_string()))?;
        if unauthenticated {
            gst::warning!(
                crate::call::CAT,
                "{}: {AUTH_TOKEN_ENV} is set but is Twilio's, not used with dialect {:?}: \
                 calls to this path are not authenticated (set auth-bearer-token)",
                self.listening_url(registration.local_addr()),
                self.provider.dialect
            );
        }
        Ok(registration)
    }

    /// The URL a client dials to reach this endpoint once it listens on
    /// `addr` (`wss://` when the listener speaks TLS itself).
    pub fn listening_url(&self, addr: SocketAddr) -> String {
        let scheme = if self.tls_certificate.is_some() {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{addr}{}", self.path)
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(s as u64)
}

/// The value of a listening property of an element: its [`Endpoint`]
/// setting (`endpoint` gives it from the element's settings), else one of
/// the listener's counters (`registration`, from its state); None for the
/// element's own properties. One of the two locks at a time.
pub fn listening_property<S, T>(
    name: &str,
    settings: &std::sync::Mutex<S>,
    endpoint: fn(&S) -> &Endpoint,
    state: &std::sync::Mutex<T>,
    registration: fn(&T) -> Option<&Registration>,
) -> Option<glib::Value> {
    let setting = endpoint(&settings.locked()).property(name);
    setting.or_else(|| listener_counter(registration(&state.locked()), name))
}

/// The read-only listener counters (`signature-failures`,
/// `rejected-connections`, `refused-calls`, `abandoned-calls`) of an element's registration;
/// None if `name` is not one of them. Zero while the element does not listen.
pub fn listener_counter(registration: Option<&Registration>, name: &str) -> Option<glib::Value> {
    let get = |f: fn(&Registration) -> u64| registration.map_or(0, f).to_value();
    Some(match name {
        "signature-failures" => get(Registration::signature_failures),
        "rejected-connections" => get(Registration::rejected_connections),
        "refused-calls" => get(Registration::refused_calls),
        "abandoned-calls" => get(Registration::abandoned_calls),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_url_has_the_bound_address_and_the_listener_s_scheme() {
        let mut endpoint = Endpoint {
            path: "/media".into(),
            ..Endpoint::default()
        };
        let addr: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        assert_eq!(endpoint.listening_url(addr), "ws://127.0.0.1:40123/media");
        endpoint.tls_certificate = Some("cert.pem".into());
        endpoint.tls_key = Some("key.pem".into());
        let v6: SocketAddr = "[::1]:8443".parse().unwrap();
        assert_eq!(endpoint.listening_url(v6), "wss://[::1]:8443/media");
    }
}
