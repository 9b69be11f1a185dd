//! The sink's GObject interface as declared: its properties and action
//! signals with their documentation. Reading and writing the properties and
//! acting on the signals is `imp.rs`'s.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::call::{SINK_COUNTERS, counter_pspecs};
use crate::endpoint::Endpoint;

/// Default of `chunk-duration`, in milliseconds.
pub(super) const DEFAULT_CHUNK_MS: u32 = 20;

/// The property specifications, in the order `gst-inspect` lists them.
pub(super) fn specs() -> Vec<glib::ParamSpec> {
    let mut props = vec![
        glib::ParamSpecString::builder("call-name")
            .nick("Call name")
            .blurb(
                "Plays into the call of the twiliostreamsrc with the same call-name, \
                 in any pipeline of the process. Without it, the sink pairs with the \
                 twiliostreamsrc of its own pipeline, or listens itself if there is none",
            )
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("chunk-duration")
            .nick("Chunk duration")
            .blurb("Milliseconds of audio per media message sent to Twilio")
            .minimum(1)
            .maximum(1000)
            .default_value(DEFAULT_CHUNK_MS)
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("bound-port")
            .nick("Bound port")
            .blurb("The port this sink listens on itself, 0 when it does not listen")
            .maximum(u16::MAX as u32)
            .read_only()
            .build(),
        glib::ParamSpecBoolean::builder("connected")
            .nick("Connected")
            .blurb("Whether the sink has a call to play into")
            .read_only()
            .build(),
        glib::ParamSpecString::builder("call-sid")
            .nick("Call SID")
            .blurb("callSid of the call played into")
            .read_only()
            .build(),
        glib::ParamSpecString::builder("stream-sid")
            .nick("Stream SID")
            .blurb("streamSid of the call played into")
            .read_only()
            .build(),
    ];
    props.extend(Endpoint::pspecs(
        ". Only used when there is no twiliostreamsrc to pair with",
    ));
    props.extend(counter_pspecs(SINK_COUNTERS));
    props.push(
        glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
            .nick("Statistics")
            .blurb("All counters of the current call in one structure")
            .read_only()
            .build(),
    );
    props
}

/// The action signals.
pub(super) fn signals() -> Vec<glib::subclass::Signal> {
    vec![
        // Action signal: sends a mark named by the argument after the
        // audio rendered so far. Returns whether it was sent.
        glib::subclass::Signal::builder("send-mark")
            .param_types([String::static_type()])
            .return_type::<bool>()
            .action()
            .class_handler(|args| {
                let sink = args[0].get::<super::TwilioStreamSink>().unwrap();
                let name = args[1].get::<String>().unwrap();
                Some(sink.imp().send_mark(&name).to_value())
            })
            .build(),
        // Action signal: drops audio not sent yet and sends clear.
        glib::subclass::Signal::builder("clear")
            .return_type::<bool>()
            .action()
            .class_handler(|args| {
                let sink = args[0].get::<super::TwilioStreamSink>().unwrap();
                Some(sink.imp().clear().to_value())
            })
            .build(),
    ]
}
