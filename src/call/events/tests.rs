//! The event queue's bounds, order and end, with plain values.

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
        std::iter::from_fn(|| Some(sender.payload_buffer()).filter(|b| b.capacity() > 0)).collect();
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
    // (The loop took the stop: unread until the consumer handled it.)
    assert!(backlog.end_unread());
    events.put_back(CallEvent::Stop(StopInfo::default()));
    assert!(backlog.end_unread(), "the end is unread again");
    assert!(matches!(
        events.try_recv(),
        Poll::Ready(Some(CallEvent::Stop(_)))
    ));
    events.end_handled();
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
    assert!(backlog.end_unread(), "until it is handled");
    events.end_handled();
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
    assert!(backlog.end_unread(), "taken, its messages not posted yet");
    events.end_handled();
    assert!(!backlog.end_unread(), "all read");

    // A src reads nothing after `stop`: what comes later stays unread.
    let (sender, mut events) = channel();
    let backlog = events.backlog();
    assert!(sender.send(CallEvent::Stop(StopInfo::default())).is_ok());
    assert!(sender.send(CallEvent::Dtmf(DtmfDigit("1".into()))).is_ok());
    drop(sender);
    assert!(backlog.end_unread());
    assert!(events.try_recv().is_ready());
    events.end_handled();
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
