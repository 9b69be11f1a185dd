//! The writing half of the call's task: what elements asked to send, paced
//! by the [`Outbox`], written to the socket without ever holding up the
//! reading half. A write that cannot finish at once (Twilio reads slower
//! than we write, or not at all) is left in progress: the task polls it
//! on, with the reads, in `Writer::poll_write`, and takes nothing more
//! from the outbox until it is done (but what goes out before a `clear`),
//! so that what waits stays in the outbox, where the sink's wait for room
//! sees it and a `clear` drops it.

use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::{Sink, SinkExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::outbox::Outbox;
use super::stats::Stat;
use super::task::Outbound;
use super::{Call, Request, call_log};

/// A write that makes no progress for this long means the peer stopped
/// reading: the call is over.
pub(super) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A stream that counts the bytes the socket has taken from it: the
/// writer's stall timeout looks at them, since a text is handed over only
/// once tungstenite has flushed what it buffered (128 KiB at a time), which
/// a peer reading slowly but steadily can take longer than the timeout to
/// read.
pub(crate) trait Written {
    /// Bytes written so far.
    fn written(&self) -> u64;
}

/// See the module documentation.
pub(super) struct Writer {
    pub(super) outbox: Outbox,
    /// What was due when last collected: `texts[fed..]` is not handed to
    /// the socket yet (the vector is scratch, reused).
    texts: Vec<String>,
    fed: usize,
    /// Texts were handed to the socket and not flushed yet.
    unflushed: bool,
    /// The write in progress has a deadline set (in the task's `stall`
    /// timer): no text handed over since it was set.
    stall_armed: bool,
    /// The socket's [`Written`] count when the deadline was set.
    written_at_arming: u64,
    /// When a frame held back is due, if one is.
    pub(super) next: Option<u64>,
}

impl Writer {
    /// A writer keeping `lead` ns in Twilio's queue (see [`Outbox::new`]).
    pub(super) fn new(lead: u64) -> Writer {
        Writer {
            outbox: Outbox::new(lead),
            texts: Vec::new(),
            fed: 0,
            unflushed: false,
            stall_armed: false,
            written_at_arming: 0,
            next: None,
        }
    }

    /// A write is in progress: texts not handed to the socket, or not
    /// flushed.
    pub(super) fn busy(&self) -> bool {
        self.fed < self.texts.len() || self.unflushed
    }

    /// Takes `first` (what the call's consumer sent on its task, or one
    /// request the caller received and counted) and every request queued
    /// in the channel into the outbox; false if there were none.
    pub(super) fn take(
        &mut self,
        call: &Call,
        first: impl IntoIterator<Item = Request>,
        outbound: &mut Outbound,
    ) -> bool {
        let queued = std::iter::from_fn(|| outbound.try_recv(call));
        let mut any = false;
        for request in first.into_iter().chain(queued) {
            any = true;
            match request {
                Request::Send(item) => self.outbox.push(item),
                Request::Wake => {}
                Request::Clear(text, done) => {
                    // What may go out at once goes before the clear, as if
                    // the writer had run between the two requests.
                    self.collect(call);
                    let now = call.now_ns();
                    let cleared = self.outbox.clear(now, text);
                    // The frames not written are dropped: no longer queued.
                    call.queued_audio
                        .fetch_sub(cleared.unwritten, Ordering::Relaxed);
                    call.outbound_bytes
                        .fetch_sub(cleared.unwritten_bytes, Ordering::Relaxed);
                    call.playout_end.store(now, Ordering::Relaxed);
                    call.room.notify_waiters();
                    done(cleared);
                }
            }
        }
        any
    }

    /// The call is over: a clear asked for before it ended, and not taken
    /// yet, still learns what the caller heard (by the model, at the end);
    /// nothing more is written. Later requests fail to send.
    pub(super) fn settle_clears(&mut self, call: &Call, outbound: &mut Outbound) {
        outbound.rx.close();
        while let Ok(request) = outbound.rx.try_recv() {
            call.taken_from_channel();
            if let Request::Clear(_, done) = request {
                done(self.outbox.clear(call.now_ns(), String::new()));
            }
        }
    }

    /// Moves what is due now from the outbox to `texts` (behind a write in
    /// progress: only a clear asks for that), counting the frames as sent;
    /// nothing once Twilio sent `stop`, nor on a one-way stream.
    fn collect(&mut self, call: &Call) {
        if call.is_stopped() || call.is_one_way() {
            self.next = None;
            return self.drop_after_stop(call);
        }
        if !self.busy() {
            self.texts.clear();
            self.fed = 0;
        }
        self.outbox.set_lead(call.lead.load(Ordering::Relaxed));
        self.outbox.set_paused(call.writer_paused());
        let (mut chunks, mut bytes, mut audio) = (0u64, 0u64, 0u64);
        let marks = self.outbox.marks_written();
        self.next = self.outbox.due(call.now_ns(), &mut self.texts, |b, d| {
            chunks += 1;
            bytes += b as u64;
            audio += d;
        });
        let marks = self.outbox.marks_written() - marks;
        if marks > 0 {
            call.stats.add(Stat::MarksSent, marks);
        }
        if chunks > 0 {
            call.stats.add(Stat::ChunksSent, chunks);
            call.stats.add(Stat::BytesSent, bytes);
            // The model first: unplayed() never misses the batch between.
            call.playout_end
                .store(self.outbox.playout_end(), Ordering::Relaxed);
            call.queued_audio.fetch_sub(audio, Ordering::SeqCst);
            call.wake_room_waiters();
        }
    }

    /// Twilio sent `stop` (or the stream is one-way): it plays nothing
    /// (more), so what waits (media, marks, clears) is dropped unsent, logged (not in `chunks-dropped`,
    /// which says Twilio did not keep up: an echo's tail would count in
    /// every call).
    #[cold]
    fn drop_after_stop(&mut self, call: &Call) {
        let unsent = self.outbox.drop_pending();
        if unsent.messages == 0 {
            return;
        }
        call.outbound_bytes
            .fetch_sub(unsent.text_bytes, Ordering::Relaxed);
        call.queued_audio.fetch_sub(unsent.audio, Ordering::SeqCst);
        call.wake_room_waiters();
        call_log!(
            call,
            debug,
            "{}: not sending {} messages ({} media)",
            match call.is_stopped() {
                true => "Twilio sent stop",
                false => "one-way stream (Twilio error 31924)",
            },
            unsent.messages,
            unsent.media
        );
    }

    /// Takes what is due (unless a write is in progress) and writes as
    /// much as the socket takes now; re-arms `pace` for what waits. What
    /// the socket does not take at once is left for
    /// [`poll_write`](Self::poll_write), which the task polls with its reads.
    pub(super) fn write<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        call: &Call,
        ws: &mut WebSocketStream<S>,
        pace: &mut std::pin::Pin<&mut tokio::time::Sleep>,
    ) -> Result<(), String> {
        loop {
            if !self.busy() {
                self.collect(call);
                if let Some(at) = self.next {
                    pace.as_mut().reset(
                        tokio::time::Instant::from_std(call.created) + Duration::from_nanos(at),
                    );
                }
                if !self.busy() {
                    return Ok(());
                }
            }
            // Almost always done at once: then what was taken meanwhile
            // (a clear behind a write in progress) is looked at now. If
            // not, the task's poll (with its own waker) goes on with it
            // before the task sleeps.
            match self.poll_feed(call, ws, &mut Context::from_waker(Waker::noop())) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// Goes on with the write in progress: Ready once it is done (or
    /// failed, or made no progress for [`WRITE_TIMEOUT`], by `stall`, which
    /// is set when it first waits after progress). Progress is a text
    /// handed over, or any byte the socket took.
    pub(super) fn poll_write<S: AsyncRead + AsyncWrite + Written + Unpin>(
        &mut self,
        call: &Call,
        ws: &mut WebSocketStream<S>,
        stall: &mut std::pin::Pin<&mut tokio::time::Sleep>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), String>> {
        if let Poll::Ready(done) = self.poll_feed(call, ws, cx) {
            return Poll::Ready(done);
        }
        // Bytes went out since the deadline was set: a new one.
        let written = ws.get_ref().written();
        if !self.stall_armed || written != self.written_at_arming {
            self.stall_armed = true;
            self.written_at_arming = written;
            stall
                .as_mut()
                .reset(tokio::time::Instant::now() + WRITE_TIMEOUT);
        }
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(format!(
                "Twilio has read nothing for {} s",
                WRITE_TIMEOUT.as_secs()
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Hands the texts to the socket and flushes once; each step taken is
    /// progress (the stall's deadline is dropped).
    fn poll_feed<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        call: &Call,
        ws: &mut WebSocketStream<S>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), String>> {
        let failed = |e| format!("sending to Twilio failed: {e}");
        while self.fed < self.texts.len() {
            match ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(failed(e))),
                Poll::Pending => return Poll::Pending,
            }
            let text = std::mem::take(&mut self.texts[self.fed]);
            self.fed += 1;
            self.stall_armed = false;
            let len = text.len();
            self.unflushed = true;
            std::pin::Pin::new(&mut *ws)
                .start_send(Message::text(text))
                .map_err(failed)?;
            call.outbound_bytes.fetch_sub(len, Ordering::Relaxed);
            if call.closing.load(Ordering::Relaxed) {
                // The close (which flushes) comes next; the rest is dropped.
                self.fed = self.texts.len();
                self.unflushed = false;
                return Poll::Ready(Ok(()));
            }
        }
        if self.unflushed {
            match ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(failed(e))),
                Poll::Pending => return Poll::Pending,
            }
            self.unflushed = false;
            self.stall_armed = false;
        }
        Poll::Ready(Ok(()))
    }
}
