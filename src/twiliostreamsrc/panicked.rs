//! `shared-threads`: the src's code on the plugin's network threads (the
//! call's consumer, a drain spawned on its own, the fill timer) runs through
//! [`TwilioStreamSrc::on_network`], so that a panic there is contained
//! (`crate::contain`): ERROR on the bus, the element marked panicked, and the
//! src stops on its own, since its `stop` will not run (a panicked element's
//! state changes return at once): the call is closed (1011), the listener
//! let go of, the streaming thread's wait ended. The call's task, and the
//! other calls on its thread, go on.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use gst::subclass::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};
use crate::call::{Consumer, HotPart};
use crate::contain::CLOSE_PANICKED;

impl TwilioStreamSrc {
    /// The call's consumer: drains on the call's task. A strong reference:
    /// upgrading a weak one per chunk takes GLib's global weak-ref lock.
    /// `stop` drops the consumer, which ends the cycle (element → call →
    /// consumer → element).
    pub(super) fn network_consumer(&self) -> Consumer {
        let src = self.obj().clone();
        Arc::new(move || {
            src.imp().on_network(Self::drain_shared);
        })
    }

    /// `f` on a network thread, unless the element has panicked (None, and
    /// the src stops if it has not yet: see the module documentation).
    pub(super) fn on_network<R>(&self, f: impl FnOnce(&Self) -> R) -> Option<R> {
        crate::contain::contained(self, || f(self), || self.stop_after_panic())
    }

    /// What `stop` would do, once, without trusting the state's lock (a
    /// panic may have poisoned it). Never blocks (a network thread).
    #[cold]
    #[inline(never)]
    fn stop_after_panic(&self) {
        if self.shared.stopped_after_panic.swap(true, Ordering::SeqCst) {
            return;
        }
        gst::error!(
            CAT,
            imp = self,
            "panicked: closing the call, taking no more"
        );
        // Drains push nothing more, the fill timer ends.
        self.shared.stop();
        // The streaming thread waits for a fallback (or a call): it goes,
        // and create() is not called again.
        self.canceller
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cancel();
        let (registration, events, call) = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.held.clear();
            (
                state.registration.take(),
                state.events.take(),
                state.call.clone(),
            )
        };
        drop(registration);
        drop(events);
        let slot = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone();
        for call in call.into_iter().chain(slot.take()) {
            // Ends the cycle element → call → consumer → element too.
            call.set_consumer(None);
            call.hot.clear(&HotPart::SRC);
            call.refuse(CLOSE_PANICKED, "internal error");
            call.close();
        }
    }
}

#[cfg(test)]
mod tests;
