//! A panic in the src's code stops the src on its own, since its `stop` will
//! not run (a panicked element's state changes return at once): the call is
//! closed (1011), the listener let go of, the streaming thread's wait ended
//! and its task stopped. On the plugin's network threads (`shared-threads`:
//! the call's consumer, a drain spawned on its own, the fill timer) the code
//! runs through [`TwilioStreamSrc::on_network`], a vfunc's body through
//! [`Containing::stopping_on_panic`]: either way the panic is caught
//! (`crate::contain`), ERROR on the bus, the element marked panicked; the
//! call's task, and the other calls on its thread, go on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};
use crate::call::{Consumer, HotPart};
use crate::contain::{CLOSE_PANICKED, Containing};
use crate::lock::Locked;

/// Tests only: the src at this address (0: none) panics in its next
/// `start`, once it listens.
#[cfg(test)]
pub(super) static PANIC_IN_START: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);
/// Tests only: the same in its next `stop`, holding its state's lock.
#[cfg(test)]
pub(super) static PANIC_IN_STOP: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// What `start` returns after a panic in it: an error (gstreamer-rs posts
/// it, after the panic's own ERROR).
pub(super) fn start_fallback() -> Result<(), gst::ErrorMessage> {
    Err(gst::error_msg!(
        gst::CoreError::StateChange,
        ["Panicked while starting"]
    ))
}

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
    ///
    /// Every vfunc of the src runs its body through [`stopping_on_panic`],
    /// so any panic of its code has run [`stop_after_panic`], which sets
    /// `stopped_after_panic`: that flag, in the state the drain works with,
    /// is read here per chunk, not the element's panicked flag (a look-up
    /// in the instance's data, a cache miss per chunk with many calls).
    ///
    /// [`stopping_on_panic`]: Self::stopping_on_panic
    /// [`stop_after_panic`]: Self::stop_after_panic
    pub(super) fn on_network<R>(&self, f: impl FnOnce(&Self) -> R) -> Option<R> {
        if self.shared.stopped_after_panic.load(Ordering::Relaxed) {
            return None;
        }
        // A push may block here: the other calls must go on meanwhile.
        let _inside = crate::runtime_watch::enter();
        crate::contain::contained_vfunc(self, || f(self), || self.stop_after_panic())
    }

    /// Stops the streaming thread's task, as the pad's deactivation would:
    /// left running or paused, it is joined when the pad is finalized,
    /// which hangs if the loop pauses it meanwhile (as it does once
    /// `create` returns an error). From a thread of its own, which waits
    /// for the loop's turn to end: never the streaming thread itself, nor a
    /// network thread.
    fn stop_streaming_task(&self) {
        let src = self.obj().clone();
        let stop = move || {
            let _ = src.src_pad().stop_task();
        };
        if let Err(e) = std::thread::Builder::new()
            .name("twiliostreamsrc-panicked".to_owned())
            .spawn(stop)
        {
            gst::warning!(CAT, imp = self, "no thread to stop the task: {e}");
        }
    }
}

/// As `stop` would, from any thread; on a vfunc's, closing the call takes
/// as long as in `stop`.
impl Containing for TwilioStreamSrc {
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
        self.canceller.locked().cancel();
        let (registration, events, call) = {
            let mut state = self.state.locked();
            state.bound_port = 0;
            state.held.clear();
            (
                state.registration.take(),
                state.events.take(),
                state.call.clone(),
            )
        };
        drop(registration);
        drop(events);
        let slot = self.slot.locked().1.clone();
        for call in call.into_iter().chain(slot.take()) {
            // Ends the cycle element → call → consumer → element too.
            call.set_consumer(None);
            call.hot.clear(&HotPart::SRC);
            call.refuse(CLOSE_PANICKED, "internal error");
            call.close();
        }
        self.stop_streaming_task();
    }
}

#[cfg(test)]
mod tests;
