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
}

impl CallEvent {
    /// The bytes it holds that the peer chose the size of. A `start`, a
    /// `stop` and the end come once per call: they weigh nothing.
    fn weight(&self) -> usize {
        match self {
            CallEvent::Media(chunk) => chunk.ulaw.len(),
            CallEvent::Mark(name) => name.len(),
            CallEvent::Dtmf(digit) => digit.0.len(),
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
                        queue.end_read = true
                    }
                    _ => {}
                }
                Poll::Ready(Some(event))
            }
            None if queue.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
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
                queue.end_read = false
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
    /// taken an event that ends the call (a src reads nothing after it).
    pub(super) fn end_unread(&self) -> bool {
        let queue = self.queue.lock();
        !queue.unread && !queue.end_read && (!queue.closed || !queue.events.is_empty())
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
    /// The receiver took a `Stop`, `Closed` or `Ended`.
    end_read: bool,
    /// Payload buffers the consumer has finished with.
    spare: Vec<Vec<u8>>,
}

impl EventQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        // A panic while holding it leaves the queue consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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
mod tests {
    use super::*;

    #[test]
    fn dtmf_numbers_follow_rfc4733() {
        let n = |d: &str| DtmfDigit(d.to_owned()).number();
        assert_eq!(n("0"), Some(0));
        assert_eq!(n("9"), Some(9));
        assert_eq!(n("*"), Some(10));
        assert_eq!(n("#"), Some(11));
        assert_eq!(n("A"), Some(12));
        assert_eq!(n("D"), Some(15));
        assert_eq!(n("E"), None);
        assert_eq!(n("12"), None);
        assert_eq!(n(""), None);
    }

    #[test]
    fn used_payload_buffers_come_back_for_the_next_chunk() {
        let (sender, events) = channel();
        // Nothing handed back yet: a new, empty buffer.
        assert_eq!(sender.payload_buffer().capacity(), 0);

        let used = vec![0xffu8; 160];
        let ptr = used.as_ptr();
        events.recycle(used);
        let again = sender.payload_buffer();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the same allocation, reused");

        // A few are kept, large ones are not.
        for _ in 0..2 * SPARE_PAYLOADS {
            events.recycle(Vec::with_capacity(160));
        }
        events.recycle(Vec::with_capacity(SPARE_PAYLOAD_CAPACITY + 1));
        let kept: Vec<_> =
            std::iter::from_fn(|| Some(sender.payload_buffer()).filter(|b| b.capacity() > 0))
                .collect();
        assert_eq!(kept.len(), SPARE_PAYLOADS);
        assert!(kept.iter().all(|b| b.capacity() == 160));
    }

    #[test]
    fn an_event_put_back_is_as_if_never_taken() {
        let (sender, mut events) = channel();
        let backlog = events.backlog();
        assert!(sender.send(media_of(160)).is_ok());
        assert!(sender.send(media_of(20)).is_ok());
        assert!(sender.send(CallEvent::Stop(StopInfo::default())).is_ok());
        drop(sender);
        let counts = |events: &Events| {
            let q = events.queue.lock();
            (q.events.len(), q.media, q.bytes, q.media_bytes)
        };
        let before = counts(&events);
        assert_eq!(before, (3, 2, 180, 180));
        let Poll::Ready(Some(first)) = events.try_recv() else {
            panic!("media waits");
        };
        events.put_back(first);
        assert_eq!(counts(&events), before);
        let mut sizes = vec![];
        while let Poll::Ready(Some(CallEvent::Media(chunk))) = events.try_recv() {
            sizes.push(chunk.ulaw.len());
        }
        assert_eq!(sizes, [160, 20], "in their order");
        // (The loop took the stop.)
        assert!(!backlog.end_unread());
        events.put_back(CallEvent::Stop(StopInfo::default()));
        assert!(backlog.end_unread(), "the end is unread again");
        assert!(matches!(
            events.try_recv(),
            Poll::Ready(Some(CallEvent::Stop(_)))
        ));
        assert!(!backlog.end_unread());
        assert!(matches!(events.try_recv(), Poll::Ready(None)));
    }

    /// The sender queues more and ends while the consumer holds an event:
    /// put back, it still comes first, and the call's end stays unread
    /// until the consumer takes it.
    #[test]
    fn an_event_put_back_goes_before_what_came_meanwhile() {
        let (sender, mut events) = channel();
        let backlog = events.backlog();
        assert!(sender.send(media_of(160)).is_ok());
        let Poll::Ready(Some(first)) = events.try_recv() else {
            panic!("media waits");
        };
        assert!(sender.send(media_of(20)).is_ok());
        assert!(sender.send(CallEvent::Closed("gone".into())).is_ok());
        drop(sender);
        events.put_back(first);
        {
            let q = events.queue.lock();
            assert_eq!(
                (q.events.len(), q.media, q.bytes, q.media_bytes),
                (3, 2, 180, 180)
            );
        }
        let mut taken = vec![];
        for _ in 0..3 {
            assert!(backlog.end_unread(), "until the end is taken");
            let Poll::Ready(Some(event)) = events.try_recv() else {
                panic!("three wait");
            };
            taken.push(event);
        }
        assert!(matches!(
            taken.as_slice(),
            [CallEvent::Media(a), CallEvent::Media(b), CallEvent::Closed(_)]
                if a.ulaw.len() == 160 && b.ulaw.len() == 20
        ));
        assert!(!backlog.end_unread());
        // Closed and read: the same answer however often it is asked.
        assert!(matches!(events.try_recv(), Poll::Ready(None)));
        assert!(matches!(events.try_recv(), Poll::Ready(None)));
    }

    #[test]
    fn events_for_a_receiver_that_is_gone_are_dropped() {
        let (sender, events) = channel();
        assert!(sender.send(media()).is_ok());
        drop(events);
        assert!(sender.queue.lock().events.is_empty());
        // Accepted and dropped: nothing piles up for nobody.
        for _ in 0..2 * MEDIA_QUEUE {
            assert!(sender.send(media()).is_ok());
        }
        assert!(sender.queue.lock().events.is_empty());
    }

    #[test]
    fn the_end_is_unread_until_the_consumer_read_it_or_let_go() {
        let (sender, mut events) = channel();
        let backlog = events.backlog();
        assert!(backlog.end_unread(), "the task may still queue");
        assert!(sender.send(media()).is_ok());
        assert!(sender.send(CallEvent::Ended("eos".into())).is_ok());
        drop(sender);
        assert!(backlog.end_unread(), "the end waits in the queue");
        assert!(events.try_recv().is_ready());
        assert!(backlog.end_unread());
        assert!(matches!(
            events.try_recv(),
            Poll::Ready(Some(CallEvent::Ended(_)))
        ));
        assert!(!backlog.end_unread(), "all read");

        // A src reads nothing after `stop`: what comes later stays unread.
        let (sender, mut events) = channel();
        let backlog = events.backlog();
        assert!(sender.send(CallEvent::Stop(StopInfo::default())).is_ok());
        assert!(sender.send(CallEvent::Dtmf(DtmfDigit("1".into()))).is_ok());
        drop(sender);
        assert!(backlog.end_unread());
        assert!(events.try_recv().is_ready());
        assert!(!backlog.end_unread(), "the end was read");

        let (sender, events) = channel();
        let backlog = events.backlog();
        assert!(sender.send(media()).is_ok());
        drop(events);
        assert!(!backlog.end_unread(), "nobody will read it");
    }

    fn media() -> CallEvent {
        media_of(0)
    }

    fn media_of(bytes: usize) -> CallEvent {
        CallEvent::Media(MediaChunk {
            track: Track::Inbound,
            timestamp_ms: 0,
            chunk: None,
            ulaw: vec![0xff; bytes],
            arrival: Instant::now(),
        })
    }

    /// Large messages fill the queue by their bytes before their count:
    /// media up to `MEDIA_BYTES`, everything up to `EVENT_BYTES`; one
    /// event always fits an empty queue; taking one makes room again.
    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let (sender, mut events) = channel();
        let big = 48 << 10;
        let fit = MEDIA_BYTES / big;
        for _ in 0..fit {
            assert!(sender.send(media_of(big)).is_ok());
        }
        assert!(sender.send(media_of(big)).is_err());
        let mark = |n| CallEvent::Mark("m".repeat(n));
        assert!(sender.send(mark(big)).is_ok());
        for _ in 1..(EVENT_BYTES - fit * big) / big {
            assert!(sender.send(mark(big)).is_ok());
        }
        assert!(sender.send(mark(big)).is_err());
        assert!(sender.send(mark(1)).is_ok(), "what is left still fits");
        assert!(events.try_recv().is_ready());
        assert!(sender.send(media_of(big)).is_ok());
        drop(events);

        let (sender, mut events) = channel();
        assert!(sender.send(mark(EVENT_BYTES + 1)).is_ok());
        assert!(sender.send(mark(1)).is_err());
        assert!(events.try_recv().is_ready());
        assert!(sender.send(media_of(MEDIA_BYTES + 1)).is_ok());
        assert!(sender.send(media_of(1)).is_err());
        assert!(sender.send(mark(1)).is_ok());
    }

    /// A `stop` or the end, which weigh nothing, still fit behind one
    /// message heavier than the whole queue may be (`max-message-size`
    /// goes up to 16 MiB): the call's end is not lost as an overrun.
    #[test]
    fn the_end_fits_behind_a_message_heavier_than_the_queue() {
        let (sender, mut events) = channel();
        assert!(
            sender
                .send(CallEvent::Mark("m".repeat(EVENT_BYTES + 1)))
                .is_ok()
        );
        assert!(sender.send(CallEvent::Mark("m".into())).is_err());
        let stop = CallEvent::Stop(StopInfo {
            account_sid: "AC".into(),
            call_sid: "CA".into(),
        });
        assert!(sender.send(stop).is_ok());
        assert!(sender.send(CallEvent::Closed("gone".into())).is_ok());
        assert!(matches!(
            events.try_recv(),
            Poll::Ready(Some(CallEvent::Mark(_)))
        ));
        assert!(matches!(
            events.try_recv(),
            Poll::Ready(Some(CallEvent::Stop(_)))
        ));
    }

    #[test]
    fn a_full_media_queue_refuses_media_but_not_control_events() {
        let (sender, mut events) = channel();
        for _ in 0..MEDIA_QUEUE {
            assert!(sender.send(media()).is_ok());
        }
        assert!(matches!(sender.send(media()), Err(CallEvent::Media(_))));
        assert!(sender.send(CallEvent::Mark("m".into())).is_ok());
        // Taking one makes room for one more.
        assert!(matches!(
            events.try_recv(),
            Poll::Ready(Some(CallEvent::Media(_)))
        ));
        assert!(sender.send(media()).is_ok());
        assert!(sender.send(media()).is_err());
        // All events together are bounded too.
        for _ in MEDIA_QUEUE + 1..EVENT_QUEUE {
            assert!(sender.send(CallEvent::Mark("m".into())).is_ok());
        }
        assert!(matches!(
            sender.send(CallEvent::Mark("m".into())),
            Err(CallEvent::Mark(_))
        ));
        // Once the sender is gone, what was queued is still read, then None.
        drop(sender);
        let mut n = 0;
        while let Poll::Ready(Some(_)) = events.try_recv() {
            n += 1;
        }
        assert_eq!(n, EVENT_QUEUE);
        assert!(matches!(events.try_recv(), Poll::Ready(None)));
    }
}
