//! `twiliostreamsink`: plays PCM (or μ-law) into a Twilio Media Streams call,
//! with marks and clear, and ends the stream at EOS. The element is
//! `imp.rs`; what the application asks of the call (marks, clear, ending)
//! is `control.rs`; the pure framing of its audio is `framing.rs`.

use gst::glib;
use gst::prelude::*;

mod control;
mod framing;
mod imp;
mod pairing;
mod panicked;
mod poster;
mod preroll;
mod properties;
mod upstream;

glib::wrapper! {
    pub struct TwilioStreamSink(ObjectSubclass<imp::TwilioStreamSink>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    std::sync::LazyLock::force(&imp::CAT);
    gst::Element::register(
        Some(plugin),
        "twiliostreamsink",
        gst::Rank::NONE,
        TwilioStreamSink::static_type(),
    )
}
