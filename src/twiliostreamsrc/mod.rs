//! `twiliostreamsrc`: the caller's audio of a Twilio Media Streams call.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::call::Slot;

mod imp;

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
