//! A connection's HTTP request head, read before tungstenite sees it. A
//! plain HTTP request (a load balancer's health check, a browser) gets an
//! HTTP answer, 426 Upgrade Required: tungstenite, given a request it
//! cannot upgrade, closes without any. An upgrade request goes on to
//! tungstenite with the bytes already read put back in front ([`Prefixed`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// A longer head is left to tungstenite (which refuses it).
const MAX_HEAD: usize = 16 * 1024;

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
    /// A request asking for `Upgrade: websocket`, or a head too long to
    /// judge: tungstenite's.
    Upgrade,
    /// A whole request head that asks for no WebSocket.
    Plain,
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
                Head::Upgrade
            } else {
                Head::Partial
            };
        };
        classify_head(&buf[..self.from + at])
    }
}

/// A whole request head (without its blank line): whether it asks for a
/// WebSocket.
fn classify_head(head: &[u8]) -> Head {
    let upgrade = head.split(|&b| b == b'\n').skip(1).any(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        name.trim_ascii().eq_ignore_ascii_case(b"upgrade")
            && value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    });
    if upgrade { Head::Upgrade } else { Head::Plain }
}

/// Reads the request head of `stream`: the stream with it put back if it
/// asks for a WebSocket; None once a plain request was answered (or the
/// peer left first).
pub(super) async fn read_head<S>(mut stream: S) -> io::Result<Option<Prefixed<S>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let mut scan = HeadScan::default();
    loop {
        match scan.classify(&buf) {
            Head::Partial => {}
            Head::Upgrade => {
                return Ok(Some(Prefixed {
                    prefix: buf,
                    pos: 0,
                    inner: stream,
                }));
            }
            Head::Plain => {
                stream.write_all(NOT_AN_UPGRADE).await?;
                stream.shutdown().await?;
                return Ok(None);
            }
        }
        buf.reserve(1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// A stream whose first bytes were read already: they are read again
/// first. Writes go straight through.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `buf` judged whole, at once.
    fn classify(buf: &[u8]) -> Head {
        HeadScan::default().classify(buf)
    }

    #[test]
    fn heads_are_told_apart() {
        let upgrade =
            b"GET /s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n";
        assert_eq!(classify(upgrade), Head::Upgrade);
        assert_eq!(classify(&upgrade[..upgrade.len() - 2]), Head::Partial);
        let listed = b"GET / HTTP/1.1\r\nupgrade : h2c, websocket\r\n\r\n";
        assert_eq!(classify(listed), Head::Upgrade);
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
        assert_eq!(classify(&vec![b'a'; MAX_HEAD]), Head::Upgrade);
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

    #[test]
    fn what_was_read_is_read_again_first() {
        crate::runtime::RUNTIME.block_on(async {
            let (mut client, server) = tokio::io::duplex(64);
            client
                .write_all(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nrest")
                .await
                .unwrap();
            drop(client);
            let mut stream = read_head(server).await.unwrap().expect("an upgrade");
            let mut all = Vec::new();
            stream.read_to_end(&mut all).await.unwrap();
            assert_eq!(all, b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\nrest");
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
            assert!(read_head(server).await.unwrap().is_none());
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            assert_eq!(answer, NOT_AN_UPGRADE);
        });
    }
}
