//! The call's consumer (the element that pushes the call's audio from the
//! call's own task, `shared-threads`), what it sends meanwhile, and who may
//! wait for the call's writer while it runs: the task is that writer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::{Call, Consumer, Request, SendError};

use crate::lock::Locked;

/// A consumer run this long is held up downstream (as a shared-threads
/// src's fallback rule judges a push): senders stop waiting for the writer.
const CONSUMER_HELD: Duration = Duration::from_millis(20);

thread_local! {
    /// The id of the call whose task runs its consumer on this thread
    /// (0: none; ids start at 1).
    static ON_TASK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Call {
    /// Has `consumer` called on the call's task whenever events were queued
    /// (see [`Consumer`]); None stops that.
    pub fn set_consumer(&self, consumer: Option<Consumer>) {
        *self.consumer.locked() = consumer;
    }

    pub(super) fn notify_consumer(&self) {
        let consumer = self.consumer.locked().clone();
        if let Some(consumer) = consumer {
            consumer();
        }
    }

    /// [`notify_consumer`](Self::notify_consumer) on the call's own task:
    /// what the consumer's pipeline asks this call to send meanwhile is
    /// queued for the task to take when it returns (into `taken`, swapped
    /// with the queue so that both keep their capacity), instead of waking
    /// the task that is already running.
    pub(super) fn run_consumer(&self, taken: &mut Vec<Request>) {
        struct Restore(u64);
        impl Drop for Restore {
            fn drop(&mut self) {
                ON_TASK.set(self.0);
            }
        }
        /// Clears `consumer_since` however the consumer returns.
        struct Ran<'a>(&'a AtomicU64);
        impl Drop for Ran<'_> {
            fn drop(&mut self) {
                self.0.store(0, Ordering::SeqCst);
            }
        }
        let consumer = self.consumer.locked().clone();
        if let Some(consumer) = consumer {
            let restore = Restore(ON_TASK.replace(self.id));
            self.consumer_since
                .store(self.now_ns() + 1, Ordering::SeqCst);
            let ran = Ran(&self.consumer_since);
            self.wake_room_waiters();
            consumer();
            drop(ran);
            drop(restore);
        }
        std::mem::swap(taken, &mut *self.on_task.locked());
    }

    /// Hands `request` to the call's writer, in order with every request
    /// made before it on any thread.
    pub(super) fn dispatch(&self, request: Request) -> Result<(), SendError> {
        // The count cannot fall while the task runs its consumer (only the
        // task takes from the channel), so once a request of the task went
        // to the channel, the rest of that run's do too.
        if ON_TASK.get() == self.id && self.in_channel.load(Ordering::SeqCst) == 0 {
            self.on_task.locked().push(request);
            return Ok(());
        }
        self.in_channel.fetch_add(1, Ordering::SeqCst);
        // A queue's or an application's thread: the runtime's threads do
        // not wait before they sleep for a while (see `runtime`), or this
        // would wait for the end of such a wait.
        crate::runtime::woken_from_outside();
        self.outbound.send(request).map_err(|_| {
            self.in_channel.fetch_sub(1, Ordering::SeqCst);
            SendError::Closed
        })
    }

    /// The writer took a request from the channel.
    pub(super) fn taken_from_channel(&self) {
        self.in_channel.fetch_sub(1, Ordering::SeqCst);
    }

    /// Wakes the senders waiting in [`room`](Self::room), if any: most of
    /// the time none is, and `notify_waiters` would take a lock.
    pub(super) fn wake_room_waiters(&self) {
        if self.room_waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// Waits until at most `max` of audio waits in the writer, or the call
    /// is closing, or the call's task has run its consumer for
    /// [`CONSUMER_HELD`]: then the writer cannot run until the consumer
    /// returns, and the consumer's push may be waiting for this sender (a
    /// full `queue` between a shared-threads src and a sink waiting here),
    /// so the sender goes on. A shorter consumer run (the usual: a push
    /// takes microseconds) is waited out with plain sleeps of at most 2 ms,
    /// since the runtime's timers may be held up too. A consumer held for
    /// good (a downstream that never returns, which the README warns of)
    /// lets senders go on until the writer's byte limit drops frames.
    /// Off the runtime only.
    pub async fn room(&self, max: Duration) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.room_waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.room_waiters);
        let max = max.as_nanos() as u64;
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before looking, so no wake-up is missed.
            notified.as_mut().enable();
            // SeqCst, as the writer's decrease and its look at
            // `room_waiters` (`wake_room_waiters`): no wake-up is lost.
            if self.queued_audio.load(Ordering::SeqCst) <= max
                || !self.is_open()
                || self.closing.load(Ordering::Relaxed)
            {
                return;
            }
            let since = self.consumer_since.load(Ordering::SeqCst);
            if since != 0 {
                let running = (self.now_ns() + 1).saturating_sub(since);
                let held = CONSUMER_HELD.as_nanos() as u64;
                if running >= held {
                    return;
                }
                // In slices, each followed by a turn of the executor, so
                // that a flush or state change (`wait`'s abort) is seen.
                let slice = (held - running).min(2_000_000);
                std::thread::sleep(Duration::from_nanos(slice));
                tokio::task::yield_now().await;
                continue;
            }
            notified.await;
        }
    }
}
