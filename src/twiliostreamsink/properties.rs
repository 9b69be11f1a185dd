//! The sink's GObject interface: its properties and action signals with
//! their documentation, its pad template, and reading and writing the
//! properties. Acting on the signals is `imp.rs`'s.

use std::sync::{Arc, LazyLock};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::TwilioStreamSink;
use crate::call::{Call, SINK_COUNTERS, Stats, counter_pspecs, find_counter};
use crate::codec::resample::RATES;
use crate::contain::Containing as _;
use crate::endpoint::{self, Endpoint};
use crate::lock::Locked;

/// Default of `chunk-duration`, in milliseconds.
pub(super) const DEFAULT_CHUNK_MS: u32 = 20;
/// Default of `end-stream-on-eos`.
pub(super) const DEFAULT_END_STREAM_ON_EOS: bool = true;
/// Default of `max-lead`, in milliseconds.
pub(super) const DEFAULT_MAX_LEAD_MS: u32 = crate::call::DEFAULT_LEAD.as_millis() as u32;

/// The property specifications, in the order `gst-inspect` lists them.
pub(super) fn specs() -> Vec<glib::ParamSpec> {
    let mut props = vec![
        glib::ParamSpecString::builder("call-name")
            .nick("Call name")
            .blurb(
                "Plays into the call of the twiliostreamsrc with the same call-name, \
                 in any pipeline of the process. Without it, the sink pairs with the \
                 twiliostreamsrc of its own pipeline, or listens itself if there is none. \
                 One sink plays into a call: a second is an error",
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
        glib::ParamSpecUInt::builder("max-lead")
            .nick("Maximum lead")
            .blurb(
                "Milliseconds of audio Twilio may hold unplayed. The sink sends a frame \
                 once Twilio's queue, as modelled (audio sent minus what it has played \
                 since, in real time), holds less: a source faster than real time is \
                 paced without clock waits, a clear drops at most this much and a frame \
                 in Twilio, and an echo goes out at once. Raise it on a jittery path to \
                 Twilio",
            )
            .minimum(20)
            .maximum(60_000)
            .default_value(DEFAULT_MAX_LEAD_MS)
            .mutable_playing()
            .build(),
        glib::ParamSpecBoolean::builder("end-stream-on-eos")
            .nick("End stream on EOS")
            .blurb(
                "At EOS, send a final mark, wait until Twilio has played everything \
                 (it echoes the mark; at most the audio it has not played yet plus 5 s, and a state \
                 change stops the wait), then close the WebSocket normally, so that \
                 Twilio goes on with the TwiML after <Connect><Stream>. Not when the \
                 caller has already sent stop. FALSE keeps the call after EOS",
            )
            .default_value(DEFAULT_END_STREAM_ON_EOS)
            .mutable_playing()
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
        ". Only for a sink that listens itself (no twiliostreamsrc to pair with): a paired \
         sink plays into its src's call, whose listener takes these from the src",
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
        // audio rendered so far. Returns whether it was sent (not without a
        // started call, nor for a name over 256 bytes JSON-escaped).
        glib::subclass::Signal::builder("send-mark")
            .param_types([String::static_type()])
            .return_type::<bool>()
            .action()
            .class_handler(|args| {
                let sink = args[0].get::<super::TwilioStreamSink>().unwrap();
                // A NULL name is refused, never a panic across the C boundary.
                let sent = match args[1].get::<Option<String>>().ok().flatten() {
                    Some(name) => {
                        let imp = sink.imp();
                        imp.stopping_on_panic(|| false, || imp.send_mark(&name))
                    }
                    None => {
                        gst::warning!(super::imp::CAT, obj = sink, "send-mark: no name (NULL)");
                        false
                    }
                };
                Some(sent.to_value())
            })
            .build(),
        // Action signal: ends the stream (closes the WebSocket normally; on
        // <Connect><Stream> Twilio goes on with the TwiML), with the argument
        // TRUE only once Twilio has played what was sent (a final mark comes
        // back). Does not block. Returns whether there was a call to end (not after Twilio's stop).
        glib::subclass::Signal::builder("end-stream")
            .param_types([bool::static_type()])
            .return_type::<bool>()
            .action()
            .class_handler(|args| {
                let sink = args[0].get::<super::TwilioStreamSink>().unwrap();
                let after_playout = args[1].get::<bool>().unwrap();
                let imp = sink.imp();
                let ended = imp.stopping_on_panic(|| false, || imp.end_stream(after_playout));
                Some(ended.to_value())
            })
            .build(),
        // Action signal: drops audio not sent yet and sends clear; posts
        // twilio-clear (what the caller heard, what was dropped).
        glib::subclass::Signal::builder("clear")
            .return_type::<bool>()
            .action()
            .class_handler(|args| {
                let sink = args[0].get::<super::TwilioStreamSink>().unwrap();
                let imp = sink.imp();
                Some(
                    imp.stopping_on_panic(|| false, || imp.clear("signal"))
                        .to_value(),
                )
            })
            .build(),
    ]
}

/// The listening properties set to other than their defaults: a paired
/// sink does not listen, so they are ignored (the src's listener takes the
/// calls: an `auth-token` or a certificate set here protects nothing).
pub(super) fn listening_properties_set(endpoint: &Endpoint) -> Vec<&'static str> {
    let default = Endpoint::default();
    let (limits, defaults) = (&endpoint.limits, &default.limits);
    let provider = &endpoint.provider;
    let set = |path: &Option<std::path::PathBuf>| {
        path.as_ref().is_some_and(|p| !p.as_os_str().is_empty())
    };
    [
        ("host", endpoint.host != default.host),
        ("port", endpoint.port != default.port),
        ("path", endpoint.path != default.path),
        // (Empty strings are as good as unset.)
        (
            "auth-token",
            endpoint.auth_token.as_ref().is_some_and(|t| !t.is_empty()),
        ),
        ("public-url", endpoint.public_url.is_some()),
        ("tls-certificate", set(&endpoint.tls_certificate)),
        ("tls-key", set(&endpoint.tls_key)),
        (
            "max-message-size",
            limits.max_message_size != defaults.max_message_size,
        ),
        (
            "handshake-timeout",
            limits.handshake_timeout != defaults.handshake_timeout,
        ),
        ("idle-timeout", limits.idle_timeout != defaults.idle_timeout),
        (
            "max-connections",
            limits.max_connections != defaults.max_connections,
        ),
        (
            "pending-timeout",
            limits.pending_timeout != defaults.pending_timeout,
        ),
        ("dialect", provider.dialect != default.provider.dialect),
        (
            "l16-byte-order",
            provider.l16_order != default.provider.l16_order,
        ),
        (
            "auth-bearer-token",
            provider
                .bearer_token
                .as_ref()
                .is_some_and(|t| !t.is_empty()),
        ),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// The sink pad's template: PCM at the rates the resampler takes, G.711,
/// and G.722 and Opus passed through to calls in their codec.
pub(super) fn pad_templates() -> &'static [gst::PadTemplate] {
    static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
        let mut caps = gst_audio::AudioCapsBuilder::new_interleaved()
            .format(gst_audio::AudioFormat::S16le)
            .rate_list(RATES.iter().map(|&r| r as i32))
            .channels(1)
            .build();
        caps.get_mut().unwrap().append(crate::mulaw_caps());
        caps.get_mut().unwrap().append(
            gst::Caps::builder("audio/x-alaw")
                .field("rate", 8000i32)
                .field("channels", 1i32)
                .build(),
        );
        // Passed through to a call in the same codec.
        caps.get_mut().unwrap().append(
            gst::Caps::builder("audio/G722")
                .field("rate", 16000i32)
                .field("channels", 1i32)
                .build(),
        );
        caps.get_mut().unwrap().append(
            gst::Caps::builder("audio/x-opus")
                .field("channel-mapping-family", 0i32)
                .field("channels", 1i32)
                .build(),
        );
        vec![
            gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &caps,
            )
            .unwrap(),
        ]
    });
    TEMPLATES.as_ref()
}

impl TwilioStreamSink {
    pub(super) fn write_property(&self, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.locked();
        if settings.endpoint.set_property(pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "call-name" => {
                settings.call_name = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|n| !n.is_empty())
            }
            "chunk-duration" => settings.chunk_ms = value.get().unwrap(),
            "end-stream-on-eos" => settings.end_stream_on_eos = value.get().unwrap(),
            "max-lead" => {
                settings.max_lead_ms = value.get().unwrap();
                let lead = std::time::Duration::from_millis(settings.max_lead_ms as u64);
                drop(settings);
                if let Some(call) = self.state.locked().call.as_ref() {
                    call.set_lead(lead);
                }
            }
            other => unimplemented!("property {other}"),
        }
    }

    pub(super) fn read_property(&self, pspec: &glib::ParamSpec) -> glib::Value {
        #[cfg(test)]
        if super::panicked::asked(&super::panicked::PANIC_IN_PROPERTY, self) {
            let _poisoned = self.state.lock();
            panic!("a property read panicked (test)");
        }
        if let Some(value) = endpoint::listening_property(
            pspec.name(),
            &self.settings,
            |s| &s.endpoint,
            &self.state,
            |s| s.registration.as_ref(),
        ) {
            return value;
        }
        match pspec.name() {
            "call-name" => self.settings.locked().call_name.to_value(),
            "chunk-duration" => self.settings.locked().chunk_ms.to_value(),
            "end-stream-on-eos" => self.settings.locked().end_stream_on_eos.to_value(),
            "max-lead" => self.settings.locked().max_lead_ms.to_value(),
            "bound-port" => self.state.locked().bound_port.to_value(),
            // A paired sink has its src's call as soon as `start` arrived,
            // before its first buffer. Reading does not adopt it: only a
            // sink that plays claims the call (one sink per call).
            "connected" => self.current_call().is_some_and(|c| c.is_open()).to_value(),
            "call-sid" => self
                .current_call()
                .and_then(|c| c.start_info())
                .map(|s| s.call_sid.clone())
                .to_value(),
            "stream-sid" => self
                .current_call()
                .and_then(|c| c.start_info())
                .map(|s| s.stream_sid.clone())
                .to_value(),
            "stats" => self.stats_structure().to_value(),
            name => {
                let stat = find_counter(SINK_COUNTERS, name)
                    .unwrap_or_else(|| unimplemented!("property {name}"));
                self.current_call()
                    .map_or(0, |c| c.stats.get(stat))
                    .to_value()
            }
        }
    }

    /// The call adopted, or the one the sink would adopt (a refused sink
    /// has none: its counters are not another sink's).
    pub(super) fn current_call(&self) -> Option<Arc<Call>> {
        let state = self.state.locked();
        if state.refused {
            return None;
        }
        state
            .call
            .clone()
            .or_else(|| state.slot.as_ref().and_then(|s| s.current()))
    }

    pub(super) fn stats_structure(&self) -> gst::Structure {
        let call = self.current_call();
        Stats::structure(
            call.as_deref().map(|c| &c.stats),
            "twiliostreamsink-stats",
            SINK_COUNTERS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listening_properties_off_their_defaults_are_named() {
        let mut endpoint = Endpoint::default();
        assert!(listening_properties_set(&endpoint).is_empty());
        endpoint.port = 0;
        endpoint.path = "/bot".to_owned();
        endpoint.auth_token = Some("secret".to_owned());
        endpoint.tls_certificate = Some("".into());
        endpoint.tls_key = Some("key.pem".into());
        endpoint.limits.max_message_size = 1024;
        endpoint.limits.pending_timeout *= 2;
        assert_eq!(
            listening_properties_set(&endpoint),
            [
                "port",
                "path",
                "auth-token",
                "tls-key",
                "max-message-size",
                "pending-timeout"
            ]
        );
    }
}
