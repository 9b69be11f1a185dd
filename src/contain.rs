//! Element code the plugin's network threads run outside GStreamer's vfuncs
//! (a `shared-threads` src's drains and fill timer, a sink's poster and the
//! callback of its `clear`): a panic there is contained as gstreamer-rs
//! contains one in a vfunc, so that it never ends the call's task (its reads,
//! its close) nor reaches the other calls on that thread.

use std::sync::atomic::Ordering;

use gst::subclass::prelude::*;

/// The close code of a call whose element panicked: internal error.
pub(crate) const CLOSE_PANICKED: u16 = 1011;

/// Runs `f`, element code of `imp`'s, on a network thread. None at once,
/// posting nothing, if the element has panicked before (here or in a vfunc:
/// its state may be poisoned). A panic in `f` marks the element panicked,
/// as `gst::panic_to_error!` does (its vfuncs return their fallbacks from
/// then on), posts an ERROR message naming the panic, and gives None.
/// Free when nothing panics: one relaxed load and an unwinding landing pad.
pub(crate) fn contained<E: ElementImpl, R>(imp: &E, f: impl FnOnce() -> R) -> Option<R> {
    if imp.panicked().load(Ordering::Relaxed) {
        return None;
    }
    imp.catch_panic(|| None, |_| Some(f()))
}
