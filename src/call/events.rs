//! What a call tells its consuming element: [`CallEvent`]s in a bounded
//! queue ([`Events`] to receive, [`EventSender`] for the call's task), and
//! the reuse of media payload buffers between the two. The queue never
//! blocks the sender: what does not fit is refused, and the task counts it.
//! It is bounded in bytes as well as in events: a message may be up to
//! `max-message-size`, and a peer may send them faster than a paused or
//! blocked element reads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Instant;

use tokio::sync::Notify;

use crate::lock::Locked;
use crate::protocol::{StartInfo, StopInfo, Track};

/// How many media chunks may wait for the consuming element before further
/// ones are dropped and counted as overruns: about 20 s of 20 ms chunks.
const MEDIA_QUEUE: usize = 1024;
/// The same for all events together: control events (start, marks, DTMF,
/// stop) are never dropped for media, only in a flood of them.
const EVENT_QUEUE: usize = 8 * MEDIA_QUEUE;
/// How many bytes of media payloads may wait: about 87 s of the widest
/// format (24 kHz L16), so only chunks far larger than a provider's meet it.
const MEDIA_BYTES: usize = 4 << 20;
/// The same for all events together (mark names, digits, payloads).
const EVENT_BYTES: usize = 2 * MEDIA_BYTES;

/// A DTMF digit as Twilio sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtmfDigit(pub String);

impl DtmfDigit {
    /// The event number of GStreamer's `dtmf-event` (RFC 4733): 0–9, * = 10,
    /// # = 11, A–D = 12–15.
    pub fn number(&self) -> Option<i32> {
        let mut chars = self.0.chars();
        let c = chars.next()?;
        if chars.next().is_some() {
            return None;
        }
        match c {
            '0'..='9' => Some(c as i32 - '0' as i32),
            '*' => Some(10),
            '#' => Some(11),
            'A'..='D' => Some(12 + c as i32 - 'A' as i32),
            'a'..='d' => Some(12 + c as i32 - 'a' as i32),
            _ => None,
        }
    }
}

/// One media chunk from Twilio, of either track, decoded from base64.
#[derive(Debug)]
pub struct MediaChunk {
    /// `media.track`: the caller's audio, or what Twilio plays to the caller.
    pub track: Track,
    /// `media.timestamp`: milliseconds since the stream started.
    pub timestamp_ms: u64,
    /// `media.chunk`, when present.
    pub chunk: Option<u64>,
    /// Raw μ-law, 8 kHz mono.
    pub ulaw: Vec<u8>,
    /// When the message was read off the socket.
    pub arrival: Instant,
}

/// What the consuming element learns from Twilio, in arrival order.
#[derive(Debug)]
pub enum CallEvent {
    Start(Arc<StartInfo>),
    Media(MediaChunk),
    Dtmf(DtmfDigit),
    /// A mark echoed back by Twilio: audio up to it has been played.
    Mark(String),
    Stop(StopInfo),
    /// The connection ended without a `stop`; the reason is for a warning.
    Closed(String),
    /// An element ended the stream ([`Call::end`](super::Call::end)); the
    /// reason says why (e.g. EOS, the `end-stream` signal).
    Ended(String),
    /// An error the provider reported (Telnyx's `error` event), the first
    /// of its code in the call: for a WARNING.
    ProviderError(String),
}

impl CallEvent {
    /// The bytes it holds that the peer chose the size of. A `start`, a
    /// `stop` and the end come once per call: they weigh nothing.
    fn weight(&self) -> usize {
        match self {
            CallEvent::Media(chunk) => chunk.ulaw.len(),
            CallEvent::Mark(name) => name.len(),
            CallEvent::Dtmf(digit) => digit.0.len(),
            CallEvent::ProviderError(text) => text.len(),
            _ => 0,
        }
    }
}

/// The events of a call, as its consuming element receives them.
pub struct Events {
    queue: Arc<EventQueue>,
}

impl Events {
    /// The next event; None once the call's task has ended and all were read.
    pub async fn recv(&mut self) -> Option<CallEvent> {
        // A turn of the scheduler now and then, as a channel's receive
        // would: a long queue does not hold a runtime thread.
        tokio::task::coop::consume_budget().await;
        let queue = self.queue.clone();
        loop {
            // Registered before looking, so no event is missed.
            let woken = queue.arrived.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Poll::Ready(event) = self.try_recv() {
                return event;
            }
            woken.await;
        }
    }

    /// A look at this queue that stays with the call once it is taken.
    pub(super) fn backlog(&self) -> Backlog {
        Backlog {
            queue: self.queue.clone(),
        }
    }

    /// Hands a media chunk's bytes back once used: the call's task decodes
    /// the next payload into them instead of allocating.
    pub fn recycle(&self, mut ulaw: Vec<u8>) {
        if ulaw.capacity() > SPARE_PAYLOAD_CAPACITY {
            // An odd, large chunk: not worth holding on to for the call.
            return;
        }
        ulaw.clear();
        let mut queue = self.queue.lock();
        if queue.spare.len() < SPARE_PAYLOADS {
            queue.spare.push(ulaw);
        }
    }

    /// The next event without waiting: Pending while the queue is empty,
    /// Ready(None) once the call's task has ended and all were read.
    pub fn try_recv(&mut self) -> Poll<Option<CallEvent>> {
        let mut queue = self.queue.lock();
        match queue.events.pop_front() {
            Some(event) => {
                let weight = event.weight();
                queue.bytes -= weight;
                match event {
                    CallEvent::Media(_) => {
                        queue.media -= 1;
                        queue.media_bytes -= weight;
                    }
                    CallEvent::Stop(_) | CallEvent::Closed(_) | CallEvent::Ended(_) => {
                        queue.end_taken = true
                    }
                    _ => {}
                }
                Poll::Ready(Some(event))
            }
            None if queue.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// The consumer has handled the call's end (`stop`, `Closed`, `Ended`,
    /// or the queue's end) and posted its messages: see
    /// [`Backlog::end_unread`]. (Not at its `try_recv`: a paired sink's EOS
    /// that waits for the end would then beat the end's messages.)
    pub fn end_handled(&self) {
        self.queue.lock().end_read = true;
    }

    /// Puts `event`, just taken by [`Self::try_recv`], back in front, as
    /// if it had not been taken: for a consumer that finds it cannot use
    /// it yet.
    pub fn put_back(&mut self, event: CallEvent) {
        let weight = event.weight();
        let mut queue = self.queue.lock();
        queue.bytes += weight;
        match event {
            CallEvent::Media(_) => {
                queue.media += 1;
                queue.media_bytes += weight;
            }
            // The consumer reads nothing after an end: this one was the first.
            CallEvent::Stop(_) | CallEvent::Closed(_) | CallEvent::Ended(_) => {
                queue.end_taken = false
            }
            _ => {}
        }
        queue.events.push_front(event);
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let mut queue = self.queue.lock();
        queue.unread = true;
        queue.events.clear();
        queue.media = 0;
        queue.media_bytes = 0;
        queue.bytes = 0;
    }
}

/// Called on the call's own task after it queued events (and once after
/// the last), by an element that consumes them there instead of waiting.
pub type Consumer = Arc<dyn Fn() + Send + Sync>;

/// The call's own look at its queue (see [`Backlog::end_unread`]).
pub(super) struct Backlog {
    queue: Arc<EventQueue>,
}

impl Backlog {
    /// The consumer has yet to read the call's end: the task is still
    /// queuing, or events wait, and the consumer has neither let go nor
    /// handled (and posted) the call's end (a src reads nothing after it).
    pub(super) fn end_unread(&self) -> bool {
        let queue = self.queue.lock();
        !queue.unread
            && !queue.end_read
            && (!queue.closed || !queue.events.is_empty() || queue.end_taken)
    }
}

/// A new, empty queue: the task's end and the consuming element's end.
pub(super) fn channel() -> (EventSender, Events) {
    let queue = Arc::new(EventQueue::default());
    (
        EventSender {
            queue: queue.clone(),
        },
        Events { queue },
    )
}

/// How many used payload buffers are kept for reuse (see [`Events::recycle`]).
const SPARE_PAYLOADS: usize = 4;
/// Larger buffers are freed, not kept: Twilio's chunks are 160 bytes.
const SPARE_PAYLOAD_CAPACITY: usize = 4096;

/// A call's events between its task and its consumer: one lock for the
/// queue, its counts and the spare payload buffers, so that a chunk costs
/// a few uncontended locks of one cache line (this runs for every chunk of
/// every call).
#[derive(Default)]
struct EventQueue {
    state: Mutex<Queued>,
    /// Wakes a consumer waiting in [`Events::recv`].
    arrived: Notify,
}

#[derive(Default)]
struct Queued {
    events: VecDeque<CallEvent>,
    /// How many of `events` are media.
    media: usize,
    /// The [weight](CallEvent::weight) of `events`, and of the media among them.
    bytes: usize,
    media_bytes: usize,
    /// The sender is gone: nothing more will come.
    closed: bool,
    /// The receiver is gone: what comes is dropped.
    unread: bool,
    /// The receiver handled the end ([`Events::end_handled`]).
    end_read: bool,
    /// The receiver took a `Stop`, `Closed` or `Ended` (and is handling it).
    end_taken: bool,
    /// Payload buffers the consumer has finished with.
    spare: Vec<Vec<u8>>,
}

impl EventQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        // (A panic while holding it leaves the queue consistent.)
        self.state.locked()
    }
}

/// The sending side of [`Events`], held by the call's task.
pub(super) struct EventSender {
    queue: Arc<EventQueue>,
}

impl EventSender {
    /// Queues `event`; gives it back if the queue is full (an overrun).
    pub(super) fn send(&self, event: CallEvent) -> Result<(), CallEvent> {
        {
            let mut queue = self.queue.lock();
            if queue.unread {
                // Nobody consumes the call any more: it is being torn down.
                return Ok(());
            }
            let is_media = matches!(event, CallEvent::Media(_));
            let weight = event.weight();
            // An event always fits an empty queue, however large; one that
            // weighs nothing (a `stop`, the end) always fits: after a
            // message larger than the limit, the queue holds more than it.
            let too_heavy = |held: usize, limit| weight > 0 && held > 0 && held + weight > limit;
            if queue.events.len() >= EVENT_QUEUE
                || too_heavy(queue.bytes, EVENT_BYTES)
                || (is_media
                    && (queue.media >= MEDIA_QUEUE || too_heavy(queue.media_bytes, MEDIA_BYTES)))
            {
                return Err(event);
            }
            queue.media += usize::from(is_media);
            queue.bytes += weight;
            if is_media {
                queue.media_bytes += weight;
            }
            queue.events.push_back(event);
        }
        // Without a waiter this stores a permit once and is then a load.
        self.queue.arrived.notify_one();
        Ok(())
    }

    /// Asks for the queue's lines to be brought into the cache (see
    /// [`hot`](super::hot)).
    pub(super) fn prefetch(&self) {
        super::hot::prefetch(
            Arc::as_ptr(&self.queue) as usize,
            std::mem::size_of::<EventQueue>(),
        );
    }

    /// An empty buffer for the next payload: a recycled one if there is one.
    pub(super) fn payload_buffer(&self) -> Vec<u8> {
        self.queue.lock().spare.pop().unwrap_or_default()
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        self.queue.lock().closed = true;
        self.queue.arrived.notify_one();
    }
}

#[cfg(test)]
mod tests;
