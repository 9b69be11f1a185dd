//! A panic in the sink's code stops the sink on its own, since its state
//! changes will not run (a panicked element's return at once): the call it
//! plays into (its own, or its src's, even one it had not taken yet) is
//! closed (1011), which ends its waits on the call (a wait for a call, without one, is cancelled); a
//! listener of its own is let go of, its poster ends, and BaseSink flushes
//! for good. On the plugin's network threads (the poster, the callback of
//! `clear`) the code runs through [`TwilioStreamSink::on_network`], a
//! vfunc's body (or a property's, or an action signal's) through
//! [`Containing::stopping_on_panic`]: either way
//! the panic is caught (`crate::contain`), ERROR on the bus, the element
//! marked panicked; the call's task, and the other calls on its thread, go
//! on.

#[cfg(test)]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;

use super::imp::{CAT, TwilioStreamSink};
use crate::call::HotPart;
use crate::contain::{CLOSE_PANICKED, Containing};
use crate::lock::Locked;

/// Tests only: the sink at this address (0: none) panics in its next code
/// on a network thread (its poster's message, or its clear's callback),
/// holding its state's lock.
#[cfg(test)]
pub(super) static PANIC_ON_NETWORK: AtomicUsize = AtomicUsize::new(0);
/// Tests only: the same in its next `render()`.
#[cfg(test)]
pub(super) static PANIC_IN_RENDER: AtomicUsize = AtomicUsize::new(0);
/// Tests only: the same in its next property read.
#[cfg(test)]
pub(super) static PANIC_IN_PROPERTY: AtomicUsize = AtomicUsize::new(0);
/// Tests only: the same as it looks for a call to take (`ensure_call`,
/// before it has one).
#[cfg(test)]
pub(super) static PANIC_BEFORE_CALL: AtomicUsize = AtomicUsize::new(0);

#[cfg(test)]
pub(super) use crate::contain::asked;

impl TwilioStreamSink {
    /// `f` on a network thread, unless the element has panicked (None, and
    /// the sink stops if it has not yet: see the module documentation).
    pub(super) fn on_network<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let f = || {
            #[cfg(test)]
            if asked(&PANIC_ON_NETWORK, self) {
                let _poisoned = self.state.lock();
                panic!("a sink's network code panicked (test)");
            }
            f()
        };
        // Posting may block here (a bus sync handler): the other calls go on.
        let _inside = crate::runtime_watch::enter();
        crate::contain::contained(self, f, || self.stop_after_panic())
    }

    /// BaseSink may hold a streaming thread until PLAYING (prerolled), which
    /// the panicked sink will not reach, nor READY, which would let it go:
    /// its pipeline could not stop. It flushes for good instead (what comes
    /// is refused, FLUSHING), from a thread of its own: a streaming thread
    /// in `render` holds BaseSink's lock until it returns, and a network
    /// thread never waits for GStreamer.
    fn flush_base_sink(&self) {
        let sink = self.obj().clone();
        let flush = move || {
            let imp = sink.imp();
            // (With `async` on, BaseSink would lose its state.)
            imp.set_async_enabled(false);
            imp.parent_event(gst::event::FlushStart::new());
        };
        if let Err(e) = std::thread::Builder::new()
            .name("twiliostreamsink-panicked".to_owned())
            .spawn(flush)
        {
            gst::warning!(CAT, imp = self, "no thread to flush: {e}");
        }
    }
}

/// As PAUSED → READY would; on a vfunc's thread, closing the call takes
/// as long as there.
impl Containing for TwilioStreamSink {
    #[cold]
    #[inline(never)]
    fn stop_after_panic(&self) {
        if self.stopped_after_panic.swap(true, Ordering::SeqCst) {
            return;
        }
        gst::error!(CAT, imp = self, "panicked: closing the call");
        let (registration, poster, slot, call, holding, refused) = {
            let mut state = self.state.locked();
            state.bound_port = 0;
            (
                state.registration.take(),
                state.poster.take(),
                // (No call is adopted from here on: see `adopt`.)
                state.slot.take(),
                state.call.clone(),
                std::mem::take(&mut state.holding),
                state.refused,
            )
        };
        // (From within the poster, it ends as it returns.)
        if let Some(poster) = poster {
            poster.abort();
        }
        // A src's call the sink was to play into and had not taken yet,
        // unless another sink plays into it: claimed, so that none will.
        let pending = (registration.is_none() && call.is_none() && !refused)
            .then(|| slot.as_ref().and_then(|slot| slot.current()))
            .flatten()
            .filter(|c| c.claim_sender(self.sender_id(), &self.obj().name()).is_ok());
        // A call the sink took itself: no other comes, the listener goes.
        let own = registration
            .is_some()
            .then(|| slot.and_then(|slot| slot.take()))
            .flatten();
        drop(registration);
        for call in call.into_iter().chain(own).chain(pending) {
            call.hot.clear(&HotPart::SINK);
            call.refuse(CLOSE_PANICKED, "internal error");
            call.close();
        }
        // The srcs it held go on, into their other branches.
        for src in holding {
            src.release_pushes();
        }
        self.flush_base_sink();
    }
}

#[cfg(test)]
mod tests;
