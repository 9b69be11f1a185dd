//! Cancellable waits for GStreamer threads.
//!
//! A streaming thread that waits for the network (a call to arrive, the next
//! message) must return as soon as the element is unlocked for a flush or a
//! state change. [`wait`] runs a future to completion on the calling thread
//! unless [`Canceller::cancel`] aborts it first. The futures are tokio
//! channel/watch receivers, which work with any executor.

use std::future::Future;
use std::sync::Mutex;

use futures::future::{AbortHandle, Abortable};

use crate::lock::Locked;

/// The waiting side's state: whether it is flushing, and the wait in progress.
#[derive(Debug, Default)]
pub struct Canceller {
    flushing: bool,
    current: Option<AbortHandle>,
}

impl Canceller {
    /// Aborts the current wait and makes new ones fail until [`reset`](Self::reset).
    pub fn cancel(&mut self) {
        self.flushing = true;
        if let Some(handle) = self.current.take() {
            handle.abort();
        }
    }

    pub fn reset(&mut self) {
        self.flushing = false;
    }
}

/// The wait was cancelled (the element is flushing or stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

/// Blocks on `fut` until it completes or `canceller` cancels it.
pub fn wait<F: Future>(canceller: &Mutex<Canceller>, fut: F) -> Result<F::Output, Cancelled> {
    let (handle, registration) = AbortHandle::new_pair();
    {
        let mut c = canceller.locked();
        if c.flushing {
            return Err(Cancelled);
        }
        c.current = Some(handle);
    }
    let result = futures::executor::block_on(Abortable::new(fut, registration));
    canceller.locked().current = None;
    result.map_err(|_| Cancelled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn completes_or_is_cancelled() {
        let canceller = Arc::new(Mutex::new(Canceller::default()));
        assert_eq!(wait(&canceller, async { 5 }), Ok(5));

        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let c = canceller.clone();
        let waiter = std::thread::spawn(move || wait(&c, rx.recv()).map(|_| ()));
        // Cancel until the waiter has returned: the first cancel may come
        // before the wait registered, and then makes the wait fail at once.
        canceller.lock().unwrap().cancel();
        assert_eq!(waiter.join().unwrap(), Err(Cancelled));
        assert_eq!(wait(&canceller, async { 1 }), Err(Cancelled));
        canceller.lock().unwrap().reset();
        assert_eq!(wait(&canceller, async { 1 }), Ok(1));
        drop(tx);
    }
}
