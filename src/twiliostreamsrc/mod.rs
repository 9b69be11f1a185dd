//! `twiliostreamsrc`: the audio of a Twilio Media Streams call (the caller,
//! what the caller hears, or both in two channels).
//!
//! The element's glue (state, caps, state changes, call events) is in
//! `imp`; media to buffers for the chosen `track` in `media`; its properties
//! in `properties`; pushing from the call's network task (`shared-threads`)
//! in `shared_threads`; the call's quality (jitter, MOS, reports) in `quality`. `timeline` places the chunks in time, `tracks`
//! aligns two tracks, `output` converts μ-law to the output format: all
//! three GStreamer-light and unit-tested with plain values.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::call::Slot;

mod convert;
mod drift;
mod findings;
mod imp;
mod media;
mod output;
mod properties;
mod quality;
mod reorder;
mod shared_threads;
mod step;
mod timeline;
mod timing;
mod tracks;
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
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "twiliostreamsrc",
        gst::Rank::NONE,
        TwilioStreamSrc::static_type(),
    )
}
