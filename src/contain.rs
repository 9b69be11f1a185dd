//! A panic in element code, caught as gstreamer-rs catches one in a vfunc,
//! and the element then stopped by its own code, since its state changes
//! will not run (a panicked element's return at once). On the plugin's
//! network threads (a `shared-threads` src's drains and fill timer, a
//! sink's poster and the callback of its `clear`) this keeps the panic from
//! ending the call's task (its reads, its close) or reaching the other calls
//! on that thread; in a vfunc, it stops the element as well.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

/// The close code of a call whose element panicked: internal error.
pub(crate) const CLOSE_PANICKED: u16 = 1011;

/// Runs `f`, element code of `imp`'s. None at once if the element has
/// panicked before (here or in a vfunc: its state may be half-updated), after
/// `stop`, the element's own stop (it runs once). A panic in `f` marks the
/// element panicked, as `gst::panic_to_error!` does (its vfuncs return
/// their fallbacks from then on), runs `stop`, posts an ERROR message
/// naming the panic, and gives None. Free when nothing panics: one relaxed load
/// and an unwinding landing pad.
pub(crate) fn contained<E: ElementImpl, R>(
    imp: &E,
    f: impl FnOnce() -> R,
    stop: impl FnOnce(),
) -> Option<R> {
    if imp.panicked().load(Ordering::Relaxed) {
        stop();
        return None;
    }
    contained_vfunc(imp, f, stop)
}

/// As [`contained`], for the body of a vfunc: gstreamer-rs's trampoline
/// has just found the element not panicked (else the body is not called),
/// so the flag is not read again. Reading it is a look-up in the
/// instance's data, a cache miss per call with many calls.
pub(crate) fn contained_vfunc<E: ElementImpl, R>(
    imp: &E,
    f: impl FnOnce() -> R,
    stop: impl FnOnce(),
) -> Option<R> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(done) => Some(done),
        Err(panic) => {
            panicked(imp, panic, stop);
            None
        }
    }
}

#[cold]
#[inline(never)]
fn panicked<E: ElementImpl>(imp: &E, panic: Box<dyn Any + Send>, stop: impl FnOnce()) {
    // Held until the ERROR is posted: `stop` may let go of what kept the
    // element alive on a network thread, and told of the panic, the
    // application may drop it at once.
    let element: gst::Element = imp.obj().clone().upcast();
    imp.panicked().store(true, Ordering::Relaxed);
    let text = match cause(panic.as_ref()) {
        Some(cause) => format!("Panicked: {cause}"),
        None => "Panicked".to_owned(),
    };
    #[cfg(test)]
    on_caught(imp);
    // Stopped first: a sync handler told of the panic finds the element
    // stopped.
    stop();
    let error = gst::message::Error::builder(gst::LibraryError::Failed, &text)
        .src(&element)
        .build();
    let _ = element.post_message(error);
}

/// What a panic said, if it said it in text (as `panic!` does).
pub(crate) fn cause(panic: &(dyn Any + Send)) -> Option<&str> {
    (panic.downcast_ref::<&str>().copied())
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
}

/// An element whose code runs contained: how it stops on its own after a
/// panic, since its state changes will not run again.
pub(crate) trait Containing: ElementImpl {
    /// What the element's own stop would do, once, without trusting its
    /// state (the panic may have left it half-updated, its locks poisoned:
    /// they are taken all the same, see `crate::lock`). Never blocks on a
    /// network thread.
    fn stop_after_panic(&self);

    /// `f`, the body of a vfunc, as gstreamer-rs runs one (a panic marks
    /// the element panicked, posts the ERROR naming it, and `fallback`, the
    /// vfunc's, is returned), but the element stops too before the vfunc
    /// returns. Also what GLib calls with no way to unwind (a property's
    /// read or write, an action signal), which runs even after a panic,
    /// on the values the panic left (a read that panics itself gives the
    /// default).
    fn stopping_on_panic<R>(&self, fallback: impl FnOnce() -> R, f: impl FnOnce() -> R) -> R {
        contained_vfunc(self, f, || self.stop_after_panic()).unwrap_or_else(fallback)
    }
}

/// Tests only: whether `trigger` names `imp`'s element (and names none from
/// now on): the test-only panic triggers hold an element's address.
#[cfg(test)]
pub(crate) fn asked<E: ElementImpl>(trigger: &std::sync::atomic::AtomicUsize, imp: &E) -> bool {
    let address = imp.obj().as_ptr() as usize;
    (trigger.compare_exchange(address, 0, Ordering::SeqCst, Ordering::SeqCst)).is_ok()
}

/// Tests only: `(element, f)`: `f` runs once as a panic of `element`'s is
/// caught, before the element stops (its locks as the panic left them).
#[cfg(test)]
#[allow(clippy::type_complexity)]
pub(crate) static ON_CAUGHT: std::sync::Mutex<Option<(usize, Box<dyn FnOnce() + Send>)>> =
    std::sync::Mutex::new(None);

#[cfg(test)]
fn on_caught<E: ElementImpl>(imp: &E) {
    let address = imp.obj().as_ptr() as usize;
    let f = {
        let mut hook = ON_CAUGHT.lock().unwrap();
        match hook.take() {
            Some((element, f)) if element == address => f,
            other => {
                *hook = other;
                return;
            }
        }
    };
    f();
}

/// What gstreamer-rs returns from a state change of a panicked element:
/// success downwards (never failed), failure upwards.
pub(crate) fn state_change_fallback(
    transition: gst::StateChange,
) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
    match transition {
        gst::StateChange::PlayingToPaused
        | gst::StateChange::PausedToReady
        | gst::StateChange::ReadyToNull => Ok(gst::StateChangeSuccess::Success),
        _ => Err(gst::StateChangeError),
    }
}

#[cfg(test)]
pub(crate) mod peer;
