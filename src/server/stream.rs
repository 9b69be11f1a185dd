//! A connection's stream once its request head was read ([`Prefixed`]):
//! the bytes read ahead come first, writes are counted (see [`Written`]),
//! and until the connection is a call its reads are bounded: tungstenite
//! holds a message as it arrives until it is whole, up to its hard limit
//! (16 times `max-message-size`), and before `start` nothing that large is
//! due, so a stranger's connection could otherwise hold that much memory
//! for all of `handshake-timeout`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::call::Written;

/// A stream whose first bytes were read already: they are read again
/// first. Writes go straight through, counted.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
    written: u64,
    /// Bytes that may still be read (`u64::MAX`: no bound).
    read_limit: u64,
}

impl<S> Prefixed<S> {
    /// `inner`, with `prefix` (read from it already) read first.
    pub(super) fn with_prefix(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
            written: 0,
            read_limit: u64::MAX,
        }
    }

    /// A stream with nothing read ahead.
    #[cfg(test)]
    pub(crate) fn new(inner: S) -> Self {
        Self::with_prefix(Vec::new(), inner)
    }

    /// From now on, at most what was read ahead and `more` bytes are read;
    /// a read past that fails with [`OverReadLimit`].
    pub(super) fn limit_reads(&mut self, more: u64) {
        self.read_limit = (self.prefix.len() - self.pos) as u64 + more;
    }
}

/// Lifting the bound on a connection's reads (see the module's docs).
pub(crate) trait ReadLimit {
    /// The connection is a call: its reads are no longer bounded.
    fn unlimit_reads(&mut self) {}
}

impl<S> ReadLimit for Prefixed<S> {
    fn unlimit_reads(&mut self) {
        self.read_limit = u64::MAX;
    }
}

/// The error of a read past a connection's bound.
#[derive(Debug)]
pub(crate) struct OverReadLimit;

impl std::fmt::Display for OverReadLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("more sent before start than a start message takes")
    }
}

impl std::error::Error for OverReadLimit {}

impl OverReadLimit {
    /// Whether `error` (from tungstenite's read) is this one.
    pub(crate) fn is(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|e| e.is::<OverReadLimit>())
    }
}

impl<S> Written for Prefixed<S> {
    fn written(&self) -> u64 {
        self.written
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        if this.pos < this.prefix.len() {
            let n = (this.prefix.len() - this.pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
        } else {
            let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
            if !matches!(polled, Poll::Ready(Ok(()))) {
                return polled;
            }
        }
        if this.read_limit != u64::MAX {
            let n = (buf.filled().len() - before) as u64;
            if n > this.read_limit {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    OverReadLimit,
                )));
            }
            this.read_limit -= n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.written += n as u64;
        }
        polled
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
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.written += n as u64;
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
