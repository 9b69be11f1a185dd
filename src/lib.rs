//! twiliostream: a GStreamer plugin that puts a live phone call into a
//! pipeline through Twilio Media Streams.
//!
//! * `twiliostreamsrc` serves the WebSocket Twilio dials and outputs the
//!   caller's audio (16 kHz or 8 kHz S16LE, or the μ-law as it came; A-law
//!   and wideband L16 from SignalWire and Telnyx calls).
//! * `twiliostreamsink` plays PCM (8/16/24/48 kHz), μ-law or A-law back
//!   into the same call, turning events and signals into `mark` and `clear`.
//!
//! The modules below the elements are usable on their own: [`codec`] (G.711,
//! the resamplers and concealment, no GStreamer), [`quality`] (jitter, MOS,
//! clock skew) and [`protocol`] (the Twilio messages).

use gst::glib;

pub mod call;
pub mod codec;
mod contain;
pub mod endpoint;
mod hot_objects;
mod lock;
pub mod messages;
pub mod protocol;
pub mod provider;
mod push_gate;
pub mod quality;
pub mod runtime;
mod runtime_watch;
pub mod server;
pub mod signature;
mod twiliostreamsink;
mod twiliostreamsrc;
pub mod wait;

pub use twiliostreamsink::TwilioStreamSink;
pub use twiliostreamsrc::TwilioStreamSrc;

/// `audio/x-mulaw, rate=8000, channels=1`: Twilio's own format, which both
/// elements also take and give as it is.
fn mulaw_caps() -> gst::Caps {
    gst::Caps::builder("audio/x-mulaw")
        .field("rate", 8000i32)
        .field("channels", 1i32)
        .build()
}

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // From the plugin's load on, not the first use: `--gst-debug-help`
    // and `gst_debug_get_all_categories` list them.
    std::sync::LazyLock::force(&call::CAT);
    std::sync::LazyLock::force(&runtime::CAT);
    twiliostreamsrc::register(plugin)?;
    twiliostreamsink::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    twiliostream,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
