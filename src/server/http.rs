//! A connection's HTTP request head, read before tungstenite sees it:
//! tungstenite, given a request it cannot upgrade, closes without an
//! answer. A plain HTTP request (a load balancer's health check, a browser)
//! gets 426 Upgrade Required; an upgrade request tungstenite would refuse
//! (HTTP/1.0, no `Connection: Upgrade`, a missing or malformed
//! `Sec-WebSocket-Key`, a method other than GET, a head over 16 KiB) gets
//! 400 (431 for the length), and one for another WebSocket version 426 with
//! `Sec-WebSocket-Version: 13`; what such a client still sends is then read
//! and dropped before the close, so that it sees the answer, not a reset.
//! The refusals of an upgrade tungstenite could take (404, 403, 503, in
//! `upgrade`) are answered alike. An upgrade goes on to tungstenite with the bytes already read put back
//! in front ([`Prefixed`], `stream.rs`).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::handshake::server::{Request, create_response};
use tokio_tungstenite::tungstenite::http::Uri;

use super::stream::Prefixed;

/// A longer head is refused (431).
const MAX_HEAD: usize = 16 * 1024;

/// After an HTTP answer, how much of what the client still sends is read
/// and dropped, and for how long, before the connection is closed.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(2);

/// The answer to a plain HTTP request.
const NOT_AN_UPGRADE: &[u8] = b"HTTP/1.1 426 Upgrade Required\r\n\
Upgrade: websocket\r\n\
Connection: close\r\n\
Content-Type: text/plain\r\n\
Content-Length: 54\r\n\
\r\n\
a Twilio Media Streams WebSocket endpoint: upgrade me\n";

/// What the bytes read so far are.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// Not a whole head yet.
    Partial,
    /// A whole request head asking for `Upgrade: websocket`, this long
    /// with its blank line.
    Upgrade(usize),
    /// A whole request head that asks for no WebSocket.
    Plain,
    /// No end of the head within [`MAX_HEAD`] bytes.
    TooLong,
}

/// Looks for the end of a request head as its bytes come in, each byte
/// once: a client sending its head a byte at a time (a slow-loris) must
/// not make every read scan all it sent before (16 KiB a byte at a time
/// was 80 ms of a network thread per connection).
#[derive(Default)]
struct HeadScan {
    /// Where the blank line ending the head may start at the earliest:
    /// everything before was looked at.
    from: usize,
    /// Bytes looked at, over all calls (for the tests).
    looked: usize,
}

impl HeadScan {
    /// What `buf` (all bytes read so far, the same ones as before and
    /// more) is.
    fn classify(&mut self, buf: &[u8]) -> Head {
        let seen = &buf[self.from..];
        self.looked += seen.len();
        let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
            // The last three bytes may start the blank line.
            self.from = buf.len().saturating_sub(3).max(self.from);
            return if buf.len() >= MAX_HEAD {
                Head::TooLong
            } else {
                Head::Partial
            };
        };
        let end = self.from + at;
        match is_upgrade(&buf[..end]) {
            true => Head::Upgrade(end + 4),
            false => Head::Plain,
        }
    }
}

/// A whole request head (without its blank line): whether it asks for a
/// WebSocket.
fn is_upgrade(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').skip(1).any(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        name.trim_ascii().eq_ignore_ascii_case(b"upgrade")
            && value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// An upgrade request that cannot be upgraded.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Refusal {
    /// The status line's code and reason phrase.
    status: &'static str,
    /// Why, the answer's body (a line).
    pub why: String,
    /// The request's path, without its query, as sent (if it has one).
    pub path: Option<String>,
}

const BAD_REQUEST: &str = "400 Bad Request";
/// The refusals of an upgrade tungstenite would take (`upgrade`).
pub(super) const FORBIDDEN: &str = "403 Forbidden";
pub(super) const NOT_FOUND: &str = "404 Not Found";
pub(super) const UNAVAILABLE: &str = "503 Service Unavailable";
const WRONG_VERSION: &str = "426 Upgrade Required";
const TOO_LONG: &str = "431 Request Header Fields Too Large";

impl Refusal {
    fn new(status: &'static str, why: impl Into<String>, head: &[u8]) -> Self {
        Refusal {
            status,
            why: why.into(),
            path: request_path(head),
        }
    }

    /// The HTTP answer, closing the connection.
    pub(super) fn answer(&self) -> Vec<u8> {
        answer(self.status, &self.why)
    }
}

/// An HTTP answer with the line `why` as its body, closing the connection.
fn answer(status: &str, why: &str) -> Vec<u8> {
    let version = match status {
        WRONG_VERSION => "Sec-WebSocket-Version: 13\r\n",
        _ => "",
    };
    format!(
        "HTTP/1.1 {status}\r\n{version}Connection: close\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{why}\n",
        why.len() + 1,
    )
    .into_bytes()
}

/// The path of a request line (`GET /path?query HTTP/1.1`), if it has one:
/// as tungstenite's callback finds it (`Uri::path`), of an absolute-form
/// target (`GET wss://host/path`) too; one no URI (refused then), as sent.
fn request_path(head: &[u8]) -> Option<String> {
    let line = head.split(|&b| b == b'\n').next()?;
    let target = line.split(|&b| b == b' ').nth(1)?;
    let path = match Uri::try_from(target) {
        Ok(uri) => uri.path().to_owned(),
        Err(_) => {
            let path = target.split(|&b| b == b'?' || b == b'#').next()?;
            std::str::from_utf8(path).ok()?.to_owned()
        }
    };
    path.starts_with('/').then_some(path)
}

/// The request `head` (with its blank line), `early` bytes already sent
/// after it, or why tungstenite would refuse to upgrade it: the checks of
/// its handshake, made here to answer them (it answers none).
fn refusal(head: &[u8], early: usize) -> Result<Request, Refusal> {
    let refuse = |status, why: String| Err(Refusal::new(status, why, head));
    let request = match Request::try_parse(head) {
        // httparse also ends a head at a bare "\n\n": tungstenite takes
        // what follows for data sent early.
        Ok(Some((len, request))) if len == head.len() => request,
        Ok(_) => return refuse(BAD_REQUEST, "malformed request head".into()),
        Err(WsError::Protocol(why)) => return refuse(BAD_REQUEST, why.to_string()),
        Err(e) => return refuse(BAD_REQUEST, format!("malformed request: {e}")),
    };
    match create_response(&request) {
        Ok(_) if early > 0 => refuse(
            BAD_REQUEST,
            "data sent before the upgrade was answered".into(),
        ),
        Ok(_) => Ok(request),
        Err(WsError::Protocol(ProtocolError::MissingSecWebSocketVersionHeader))
            if request.headers().contains_key("sec-websocket-version") =>
        {
            refuse(WRONG_VERSION, "only WebSocket version 13 is served".into())
        }
        Err(WsError::Protocol(why)) => refuse(BAD_REQUEST, why.to_string()),
        Err(e) => refuse(BAD_REQUEST, format!("malformed request: {e}")),
    }
}

/// What a connection's request head turned out to be.
pub(super) enum Arrival<S> {
    /// An upgrade for tungstenite, the head put back in front, and the
    /// request.
    Upgrade(Prefixed<S>, Box<Request>),
    /// A plain request, answered 426.
    Plain,
    /// An upgrade request that cannot be upgraded, to be answered with
    /// [`Refusal::answer`] (after it is counted: see [`answer_and_linger`]).
    Refused(Refusal, S),
    /// Gone before its head was whole.
    Gone,
}

/// Reads the request head of `stream` and answers it if it cannot be
/// upgraded.
pub(super) async fn read_head<S>(mut stream: S) -> io::Result<Arrival<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let mut scan = HeadScan::default();
    loop {
        let refused = match scan.classify(&buf) {
            Head::Partial => None,
            Head::Upgrade(len) => match refusal(&buf[..len], buf.len() - len) {
                Ok(request) => {
                    let stream = Prefixed::with_prefix(buf, stream);
                    return Ok(Arrival::Upgrade(stream, Box::new(request)));
                }
                Err(refused) => Some(refused),
            },
            Head::Plain => {
                answer_and_linger(&mut stream, NOT_AN_UPGRADE).await;
                return Ok(Arrival::Plain);
            }
            Head::TooLong => Some(Refusal::new(
                TOO_LONG,
                format!("the request head is over {MAX_HEAD} bytes"),
                &buf,
            )),
        };
        if let Some(refusal) = refused {
            return Ok(Arrival::Refused(refusal, stream));
        }
        buf.reserve(1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(Arrival::Gone);
        }
    }
}

/// Refuses an upgrade request tungstenite would take with `status` and the
/// line `why`, as the requests it would refuse are (see
/// [`answer_and_linger`]).
pub(super) async fn refuse<S>(stream: &mut S, status: &str, why: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    answer_and_linger(stream, &answer(status, why)).await;
}

/// Writes an HTTP answer that ends the connection, shuts our side, and
/// then reads and drops what the client still sends (a body, data sent
/// early) until it closes, within [`LINGER_BYTES`] and [`LINGER_TIME`]: a
/// socket closed with data unread is reset, and a client still sending
/// would then get the reset, not the answer. Errors end it quietly: the
/// client is gone.
pub(super) async fn answer_and_linger<S>(stream: &mut S, answer: &[u8])
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if stream.write_all(answer).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /s?x=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    /// `UPGRADE` with `from` replaced by `to`.
    fn edited(from: &str, to: &str) -> Vec<u8> {
        let text = std::str::from_utf8(UPGRADE).unwrap();
        assert!(text.contains(from));
        text.replacen(from, to, 1).into_bytes()
    }

    /// What `head` is refused with: status, and the path to count it on.
    fn refused(head: &[u8]) -> Option<(&'static str, Option<String>)> {
        refusal(head, 0).err().map(|r| (r.status, r.path))
    }

    #[test]
    fn upgrades_tungstenite_would_refuse_are_told() {
        assert_eq!(refused(UPGRADE), None);
        assert_eq!(refusal(UPGRADE, 1).unwrap_err().status, BAD_REQUEST);
        let path = Some("/s".to_owned());
        for (from, to) in [
            ("HTTP/1.1", "HTTP/1.0"),
            ("GET", "POST"),
            ("keep-alive, Upgrade", "keep-alive"),
            ("Upgrade: websocket", "Upgrade: h2c, websocket"),
            ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
            ("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all, at all!"),
            ("Sec-WebSocket-Version: 13\r\n", ""),
            ("Host: x", "Bad Header: x"),
        ] {
            let head = edited(from, to);
            assert_eq!(refused(&head), Some((BAD_REQUEST, path.clone())), "{to}");
        }
        for version in ["8", "14", "13, 8"] {
            let head = edited("Version: 13", &format!("Version: {version}"));
            assert_eq!(refused(&head), Some((WRONG_VERSION, path.clone())));
        }
        assert_eq!(
            refused(&edited("GET", "OPTIONS")),
            Some((BAD_REQUEST, path))
        );
        let no_path = edited("GET /s?x=1", "OPTIONS *");
        assert_eq!(refused(&no_path), Some((BAD_REQUEST, None)));
    }

    #[test]
    fn a_refusal_says_why_and_its_length() {
        let head = edited("Version: 13", "Version: 8");
        let answer = String::from_utf8(refusal(&head, 0).unwrap_err().answer()).unwrap();
        assert_eq!(
            answer,
            "HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n\
             Connection: close\r\nContent-Type: text/plain\r\nContent-Length: 36\r\n\r\n\
             only WebSocket version 13 is served\n"
        );
    }

    /// `buf` judged whole, at once.
    fn classify(buf: &[u8]) -> Head {
        HeadScan::default().classify(buf)
    }

    #[test]
    fn heads_are_told_apart() {
        let upgrade =
            b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n";
        assert_eq!(classify(upgrade), Head::Upgrade(upgrade.len()));
        assert_eq!(classify(&upgrade[..upgrade.len() - 2]), Head::Partial);
        let listed = b"GET / HTTP/1.1\r\nupgrade : h2c, websocket\r\n\r\n";
        assert_eq!(classify(listed), Head::Upgrade(listed.len()));
        let health =
            b"GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n";
        assert_eq!(classify(health), Head::Plain);
        let other = b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nX-Note: Upgrade: websocket\r\n\r\n";
        assert_eq!(classify(other), Head::Plain);
        // The request line does not count, however it reads.
        assert_eq!(
            classify(b"GET /Upgrade:websocket HTTP/1.1\r\n\r\n"),
            Head::Plain
        );
        assert_eq!(classify(&vec![b'a'; MAX_HEAD]), Head::TooLong);
        let early = [upgrade.as_slice(), b"\x81"].concat();
        assert_eq!(classify(&early), Head::Upgrade(upgrade.len()));
        assert_eq!(classify(b""), Head::Partial);
    }

    /// A head sent a byte at a time is judged as the whole is, at every
    /// byte, with each byte looked at a bounded number of times (before,
    /// every read scanned all bytes before it again: 16 KiB took 134
    /// million looks).
    #[test]
    fn a_head_read_a_byte_at_a_time_is_scanned_once() {
        let mut padded = b"GET /s HTTP/1.1\r\nUpgrade: websocket\r\n".to_vec();
        while padded.len() < 8 * 1024 {
            padded.extend_from_slice(b"X-Pad: a\r\n\r-\n\n\r\r\n");
        }
        let stuffed = padded.clone();
        padded.extend_from_slice(b"\r\n");
        let plain = [b"GET / HTTP/1.1\r\nX: y".as_slice(), b"\r\n\r\n"].concat();
        let endless = vec![b'\r'; MAX_HEAD + 10];
        for head in [&padded, &stuffed, &plain, &endless] {
            let mut scan = HeadScan::default();
            let (len, got) = (0..=head.len())
                .map(|len| (len, scan.classify(&head[..len])))
                .find(|(_, got)| *got != Head::Partial)
                .unwrap_or((head.len(), Head::Partial));
            assert_eq!(got, classify(&head[..len]));
            if len > 0 {
                assert_eq!(classify(&head[..len - 1]), Head::Partial);
            }
            assert!(scan.looked <= 4 * head.len(), "{} looks", scan.looked);
        }
    }

    #[test]
    fn the_answer_says_its_length() {
        let split = NOT_AN_UPGRADE
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap();
        assert_eq!(NOT_AN_UPGRADE.len() - split - 4, 54);
    }

    /// The path is the one tungstenite's callback finds (`Uri::path`), for
    /// an absolute-form target too: the limit and the counters are its.
    #[test]
    fn the_path_is_the_one_tungstenite_sees() {
        let absolute = edited("GET /s?x=1", "GET http://x:80/s?x=1");
        assert_eq!(refused(&absolute), None);
        assert_eq!(request_path(&absolute).as_deref(), Some("/s"));
        let refused_absolute = edited("HTTP/1.1", "HTTP/1.0");
        let refused_absolute =
            String::from_utf8(refused_absolute)
                .unwrap()
                .replacen("GET /s", "GET wss://x/s", 1);
        assert_eq!(
            refused(refused_absolute.as_bytes()),
            Some((BAD_REQUEST, Some("/s".to_owned())))
        );
        assert_eq!(request_path(UPGRADE).as_deref(), Some("/s"));
        assert_eq!(
            request_path(&edited("/s?x=1", "/s#f")).as_deref(),
            Some("/s")
        );
        assert_eq!(request_path(&edited("GET /s?x=1", "OPTIONS *")), None);
        // Not a URI: as sent (tungstenite refuses it).
        let raw = b"GET /s\xc3\xa9?x HTTP/1.1\r\n\r\n";
        assert_eq!(request_path(raw).as_deref(), Some("/s\u{e9}"));
    }

    #[test]
    fn what_was_read_is_read_again_first() {
        crate::runtime::RUNTIME.block_on(async {
            let (mut client, server) = tokio::io::duplex(1024);
            client.write_all(UPGRADE).await.unwrap();
            drop(client);
            let Arrival::Upgrade(mut stream, request) = read_head(server).await.unwrap() else {
                panic!("not an upgrade")
            };
            let mut all = Vec::new();
            stream.read_to_end(&mut all).await.unwrap();
            assert_eq!(all, UPGRADE);
            assert_eq!(request.uri().path(), "/s");
        });
    }

    #[test]
    fn a_plain_request_is_answered_426() {
        crate::runtime::RUNTIME.block_on(async {
            let (mut client, server) = tokio::io::duplex(1024);
            client
                .write_all(b"GET /health HTTP/1.1\r\n\r\n")
                .await
                .unwrap();
            // Done sending: the server's linger ends at once.
            client.shutdown().await.unwrap();
            assert!(matches!(read_head(server).await.unwrap(), Arrival::Plain));
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, NOT_AN_UPGRADE);
        });
    }
}
