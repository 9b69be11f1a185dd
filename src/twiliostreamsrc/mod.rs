//! `twiliostreamsrc`: the caller's audio of a Twilio Media Streams call.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct TwilioStreamSrc(ObjectSubclass<imp::TwilioStreamSrc>)
        @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "twiliostreamsrc",
        gst::Rank::NONE,
        TwilioStreamSrc::static_type(),
    )
}
