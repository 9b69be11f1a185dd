//! `twiliostreamsrc`: the audio of a Twilio Media Streams call (the caller,
//! what the caller hears, or both in two channels).
//!
//! The element's glue (state, caps, state changes, call events) is in
//! `imp`, its streaming thread's `create` in `create`; what a panic does in
//! `panicked`; media to buffers for the chosen `track` in `media`; its properties
//! in `properties`; pushing from the call's network task (`shared-threads`)
//! in `shared_threads`, and by the streaming thread until the pipeline plays
//! in `until_playing`; the streaming thread after a flush from downstream in
//! `flush`; an EOS sent to the element, taken without BaseSrc's wait, in
//! `app_eos`; the call's quality (jitter, MOS, reports) in `quality`. `timeline` places the chunks in time, `tracks`
//! aligns two tracks, `output` converts μ-law to the output format: all
//! three GStreamer-light and unit-tested with plain values.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::call::Slot;

mod after_eos;
mod app_eos;
mod convert;
mod create;
mod drift;
mod fill_timer;
mod findings;
mod flush;
mod imp;
mod loop_duties;
mod media;
mod output;
mod panicked;
mod properties;
mod quality;
mod reorder;
mod shared_threads;
mod step;
mod timeline;
mod timing;
mod tracks;
mod until_playing;
mod wire;

glib::wrapper! {
    pub struct TwilioStreamSrc(ObjectSubclass<imp::TwilioStreamSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

impl TwilioStreamSrc {
    /// Where this src's calls are delivered; a paired sink waits on it too.
    pub(crate) fn slot(&self) -> Arc<Slot> {
        self.imp().slot()
    }

    /// The src whose push from a network thread is under way on this
    /// thread (`shared-threads`), if any: a sink learns who feeds it.
    pub(crate) fn pushing() -> Option<TwilioStreamSrc> {
        let address = crate::push_gate::pusher();
        if address == 0 {
            return None;
        }
        // SAFETY: the address is that of a src whose push is under way on
        // this thread: it holds a borrow of itself until the push returns.
        let object: glib::Object =
            unsafe { glib::translate::from_glib_none(address as *mut glib::gobject_ffi::GObject) };
        object.downcast().ok()
    }

    /// Whether this src's push is the one under way on this thread.
    pub(crate) fn is_pushing(&self) -> bool {
        crate::push_gate::pusher() == self.as_ptr() as usize
    }

    /// A sink it pushes into pauses: its pushes from the network threads
    /// are held back. Whether one is under way (see `settle_pushes`).
    pub(crate) fn hold_pushes(&self) -> bool {
        self.imp().hold_pushes()
    }

    /// Waits up to `bound` for a push under way; false if it still is.
    pub(crate) fn settle_pushes(&self, bound: std::time::Duration) -> bool {
        self.imp().settle_pushes(bound)
    }

    /// Ends a `hold_pushes`.
    pub(crate) fn release_pushes(&self) {
        self.imp().release_pushes()
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    std::sync::LazyLock::force(&imp::CAT);
    gst::Element::register(
        Some(plugin),
        "twiliostreamsrc",
        gst::Rank::NONE,
        TwilioStreamSrc::static_type(),
    )
}
