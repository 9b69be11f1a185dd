//! How the emulator connects: like Twilio, it can sign the upgrade request
//! (`X-Twilio-Signature`) and speak `wss://`; for tests it can also trust a
//! given certificate and dial through a Unix socket.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::client_async_with_config as upgrade;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use rustls::pki_types::ServerName;
use tokio_tungstenite::tungstenite::error::UrlError;

use crate::call::WsError;

/// Connection options; the default dials the URL as it is, unsigned, with
/// the usual web roots for `wss://`.
#[derive(Clone, Default)]
pub struct Dialer {
    /// Sign the upgrade with this auth token, as Twilio does.
    pub auth_token: Option<String>,
    /// The URL the signature is over (Twilio's is the TwiML `<Stream url>`);
    /// default: the URL dialled, as `wss://` (what Twilio always signs, and
    /// what the plugin assumes when it has no public URL).
    pub signed_url: Option<String>,
    /// TLS settings for `wss://`; default: the web's root certificates.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Connect to this Unix socket instead of the URL's host and port.
    pub unix_socket: Option<PathBuf>,
    /// Send `Authorization: Bearer` with this token, as SignalWire does
    /// with the `<Stream authBearerToken>`.
    pub bearer_token: Option<String>,
    /// Send `x-telnyx-streaming-auth-token` with this token, as Telnyx
    /// does with a stream's `stream_auth_token`.
    pub telnyx_token: Option<String>,
}

/// TLS settings that trust the web's root certificates, as Twilio's side
/// of a real call would.
static WEB_ROOTS: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
});

/// A connected WebSocket, over TCP or a Unix socket, with or without TLS.
///
/// The emulator makes its TLS connections itself (tokio-rustls, as the
/// plugin does) rather than through tokio-tungstenite's TLS features: with
/// those, building the emulator would build the plugin's tokio-tungstenite
/// with other features, and so rebuild the plugin.
pub enum Dialed {
    Tcp(WebSocketStream<TcpStream>),
    Tls(WebSocketStream<TlsStream<TcpStream>>),
    Unix(WebSocketStream<UnixStream>),
    UnixTls(WebSocketStream<TlsStream<UnixStream>>),
}

impl Dialer {
    /// A dialer that signs with `TWILIO_AUTH_TOKEN` when it is set, like the
    /// plugin, which checks signatures then.
    pub fn from_env() -> Dialer {
        Dialer {
            auth_token: std::env::var("TWILIO_AUTH_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
            ..Dialer::default()
        }
    }

    /// TLS settings that trust the certificates in `pem` (e.g. a test's
    /// self-signed one) and nothing else.
    pub fn trusting(pem: &Path) -> Result<Arc<rustls::ClientConfig>, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certs =
            CertificateDer::pem_file_iter(pem).map_err(|e| format!("{}: {e}", pem.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", pem.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", pem.display()))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// The upgrade request for `url`, signed if there is an auth token.
    pub fn request(&self, url: &str) -> Result<Request, WsError> {
        let mut request = url.into_client_request()?;
        if let Some(token) = &self.auth_token {
            let signed = match &self.signed_url {
                Some(url) => url.clone(),
                None => url.replacen("ws://", "wss://", 1),
            };
            let signature = gsttwiliostream::signature::sign(token, &signed);
            request.headers_mut().insert(
                "X-Twilio-Signature",
                HeaderValue::from_str(&signature).expect("base64 is a valid header value"),
            );
        }
        if let Some(token) = &self.bearer_token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| WsError::HttpFormat(e.into()))?;
            request.headers_mut().insert("Authorization", value);
        }
        if let Some(token) = &self.telnyx_token {
            let value = HeaderValue::from_str(token).map_err(|e| WsError::HttpFormat(e.into()))?;
            request
                .headers_mut()
                .insert("x-telnyx-streaming-auth-token", value);
        }
        Ok(request)
    }

    /// Connects to `url` (with TCP_NODELAY and a small read buffer: small
    /// frames every 20 ms, see the load test).
    pub async fn dial(&self, url: &str) -> Result<Dialed, WsError> {
        let request = self.request(url)?;
        let config = Some(WebSocketConfig::default().read_buffer_size(4096));
        let uri = request.uri();
        let secure = match uri.scheme_str() {
            Some("wss") => true,
            Some("ws") => false,
            _ => return Err(WsError::Url(UrlError::UnsupportedUrlScheme)),
        };
        let host = uri.host().ok_or(WsError::Url(UrlError::NoHostName))?;
        // An IPv6 literal comes bracketed in the URL.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let name =
            || ServerName::try_from(host.clone()).map_err(|_| WsError::Url(UrlError::NoHostName));
        let tls = || {
            let config = self.tls.clone();
            tokio_rustls::TlsConnector::from(config.unwrap_or_else(|| WEB_ROOTS.clone()))
        };
        Ok(match &self.unix_socket {
            None => {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                if secure {
                    let tls = tls().connect(name()?, tcp).await?;
                    Dialed::Tls(upgrade(request, tls, config).await?.0)
                } else {
                    Dialed::Tcp(upgrade(request, tcp, config).await?.0)
                }
            }
            Some(path) => {
                let unix = UnixStream::connect(path).await?;
                if secure {
                    let tls = tls().connect(name()?, unix).await?;
                    Dialed::UnixTls(upgrade(request, tls, config).await?.0)
                } else {
                    Dialed::Unix(upgrade(request, unix, config).await?.0)
                }
            }
        })
    }
}

/// Runs `f` with the connected WebSocket, whatever it runs over.
#[macro_export]
macro_rules! with_ws {
    ($dialed:expr, $ws:ident => $body:expr) => {
        match $dialed {
            $crate::dial::Dialed::Tcp($ws) => $body,
            $crate::dial::Dialed::Tls($ws) => $body,
            $crate::dial::Dialed::Unix($ws) => $body,
            $crate::dial::Dialed::UnixTls($ws) => $body,
        }
    };
}

/// Streams the emulator can run a call over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}
