//! The src's properties: the settings they hold, their specs, and reading
//! and writing them (the call's counters and start-message fields included).
//! `imp`'s `ObjectImpl` delegates here; what the settings do is `imp`'s.

use std::sync::{Arc, LazyLock};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::TwilioStreamSrc;
use super::reorder;
use crate::call::{self, Call, SRC_COUNTERS, Slot, Stats, counter_pspecs, find_counter};
use crate::contain::Containing as _;
use crate::endpoint::{self, Endpoint};
use crate::lock::Locked;
use crate::messages;
use crate::protocol::{StartInfo, Track};

/// Default of `shared-threads`: push from the network threads.
pub(super) const DEFAULT_SHARED_THREADS: bool = true;

/// Which of the call's tracks the src outputs (the `track` property).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTwilioStreamSrcTrack")]
pub enum Tracks {
    /// The caller, mono.
    #[default]
    #[enum_value(name = "The inbound track (the caller), mono", nick = "inbound")]
    Inbound = 0,
    /// What the caller hears, mono.
    #[enum_value(
        name = "The outbound track (what the caller hears), mono",
        nick = "outbound"
    )]
    Outbound = 1,
    /// Both, two channels: inbound left, outbound right.
    #[enum_value(
        name = "Both tracks in two channels: 0 (front left) inbound, 1 (front right) outbound",
        nick = "both"
    )]
    Both = 2,
}

impl Tracks {
    /// The one track of a mono output; None for both.
    pub fn mono(self) -> Option<Track> {
        match self {
            Tracks::Inbound => Some(Track::Inbound),
            Tracks::Outbound => Some(Track::Outbound),
            Tracks::Both => None,
        }
    }

    pub fn channels(self) -> u32 {
        if self == Tracks::Both { 2 } else { 1 }
    }
}

/// What fills a lost stretch of audio (the `gap-fill` property).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstTwilioStreamSrcGapFill")]
pub enum GapFill {
    /// Concealment (G.711 Appendix I style), in PCM and in the call's own
    /// 8 kHz format alike.
    #[default]
    #[enum_value(
        name = "Packet loss concealment: the last pitch periods repeated, fading out over 60 ms \
                (8 kHz calls, in any output format)",
        nick = "plc"
    )]
    Plc = 0,
    /// Silence.
    #[enum_value(name = "Silence", nick = "silence")]
    Silence = 1,
}

/// `quality-interval`'s default, in seconds.
pub(super) const DEFAULT_QUALITY_INTERVAL: u32 = 5;
/// Default of `early-audio`, ms: all a call's queue holds (1024 chunks).
pub(super) const DEFAULT_EARLY_AUDIO_MS: u32 = 20_000;
/// Default of `track-wait`, ms.
pub(super) const DEFAULT_TRACK_WAIT_MS: u32 = (super::tracks::TRACK_WAIT / 8) as u32;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) endpoint: Endpoint,
    pub(super) call_name: Option<String>,
    /// Extra latency allowed for network jitter.
    pub(super) latency_ms: u32,
    /// Push from the call's network task instead of a streaming thread.
    pub(super) shared_threads: bool,
    /// The track(s) to output.
    pub(super) track: Tracks,
    /// What fills lost audio.
    pub(super) gap_fill: GapFill,
    /// Seconds of stream time between `twilio-quality` messages (0: none).
    pub(super) quality_interval: u32,
    /// Chunks held per track behind a gap in Telnyx media (0: off).
    pub(super) reorder_window: u32,
    /// With `track=both`: ms of the faster track's audio the slower one is
    /// waited for.
    pub(super) track_wait_ms: u32,
    /// Ms of a call's audio from before the src first played it that are
    /// kept.
    pub(super) early_audio_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            endpoint: Endpoint::default(),
            call_name: None,
            latency_ms: 0,
            shared_threads: DEFAULT_SHARED_THREADS,
            track: Tracks::default(),
            gap_fill: GapFill::default(),
            quality_interval: DEFAULT_QUALITY_INTERVAL,
            reorder_window: reorder::DEFAULT_WINDOW,
            track_wait_ms: DEFAULT_TRACK_WAIT_MS,
            early_audio_ms: DEFAULT_EARLY_AUDIO_MS,
        }
    }
}

/// The src's action signals.
pub(super) fn signals() -> Vec<glib::subclass::Signal> {
    vec![
        // Action signal: ends the stream (closes the WebSocket; on
        // <Connect><Stream> Twilio goes on with the TwiML), with the
        // argument TRUE only once Twilio has played what was sent.
        // The src then posts twilio-ended and goes EOS. Returns
        // whether there was a call to end (not after Twilio's stop).
        glib::subclass::Signal::builder("end-stream")
            .param_types([bool::static_type()])
            .return_type::<bool>()
            .action()
            .class_handler(|args| {
                let src = args[0].get::<super::TwilioStreamSrc>().unwrap();
                let after_playout = args[1].get::<bool>().unwrap();
                let imp = src.imp();
                let ended = imp.stopping_on_panic(|| false, || imp.end_stream(after_playout));
                Some(ended.to_value())
            })
            .build(),
    ]
}

/// The specs of every property.
pub(super) fn specs() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        let mut props = Endpoint::pspecs("");
        props.extend([
            glib::ParamSpecString::builder("call-name")
                .nick("Call name")
                .blurb(
                    "Pairs this src with the twiliostreamsink of the same call-name (one per call), \
                        in any pipeline of the process. Without it, a sink pairs with the \
                        src of its own pipeline",
                )
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("latency")
                .nick("Latency")
                .blurb(
                    "Extra latency in ms reported on top of one chunk, so that chunks \
                        delayed by network jitter are still on time for a syncing sink",
                )
                .maximum(10_000)
                .default_value(0)
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder::<Tracks>("track")
                .nick("Track")
                .blurb(
                    "Which side of the call to output: inbound (the caller), outbound (what \
                        the caller hears; needs <Start><Stream track=\"outbound_track\"> or \
                        \"both_tracks\"), or both as two channels aligned by Twilio's \
                        timestamps (channel 0 inbound, 1 outbound; waits at most track-wait \
                        for the slower track, which adds to the latency). A track the stream \
                        does not carry is silence, with a warning",
                )
                .default_value(Tracks::Inbound)
                .mutable_ready()
                .build(),
            glib::ParamSpecEnum::builder::<GapFill>("gap-fill")
                .nick("Gap fill")
                .blurb(
                    "What fills audio lost on the way (missing chunks, by chunk number or \
                        timestamp): plc conceals it (the last pitch periods repeated, fading \
                        to silence 60 ms in, blended back into the audio after), per track; \
                        silence leaves it silent. Output in an 8 kHz call's own bytes (μ-law, \
                        A-law, L16) is concealed too: only the loss and the blend after it \
                        are encoded anew",
                )
                .default_value(GapFill::Plc)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("track-wait")
                .nick("Track wait")
                .blurb(
                    "With track=both, in ms: how far the faster track may run ahead \
                        (in its own audio) while the slower one is waited for; then the \
                        slower track's channel is filled with silence up to there (counted \
                        lost once the track has started) and what of it comes later is \
                        dropped (chunks-too-late). Added to the latency the src reports. \
                        Raise it when chunks-too-late rises (a track lagging past it for \
                        half a second has it raised to fit for the rest of the call, up to 1000, \
                        with a WARNING); lower it for less latency. \
                        A call reordered (reorder-window) waits at least that window \
                        and 2 chunks more",
                )
                .minimum(20)
                .maximum(1000)
                .default_value(DEFAULT_TRACK_WAIT_MS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("early-audio")
                .nick("Early audio")
                .blurb(
                    "In ms: how much of what a call said before the src first went to \
                        PLAYING with it (while it waited for a free element, or while the \
                        pipeline started) is kept: it goes out first, from the running time \
                        of PLAYING, and the call runs that much behind real time. What came \
                        earlier is dropped (chunks-dropped-paused, with a WARNING). 0: the \
                        stream starts on time at the first chunk after PLAYING",
                )
                .maximum(DEFAULT_EARLY_AUDIO_MS)
                .default_value(DEFAULT_EARLY_AUDIO_MS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("reorder-window")
                .nick("Reorder window")
                .blurb(
                    "Telnyx does not guarantee the order of media: up to this many chunks \
                        (20 ms each) per track are held behind a missing one, and put back in \
                        order when it comes (chunks-reordered); then it is given up as lost, \
                        and if it still comes it is dropped (chunks-too-late). Media in order \
                        is never held. Held chunks come out up to this much later: add it to \
                        latency for a syncing sink. 0 turns it off. Twilio and SignalWire \
                        calls arrive in order and are not reordered",
                )
                .maximum(50)
                .default_value(reorder::DEFAULT_WINDOW)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("quality-interval")
                .nick("Quality interval")
                .blurb(
                    "Post a twilio-quality element message every this many seconds of \
                        the call's audio (by media timestamps): loss, jitter, late chunks \
                        and MOS over the interval and over the call. 0 posts none",
                )
                .maximum(3600)
                .default_value(DEFAULT_QUALITY_INTERVAL)
                .mutable_ready()
                .build(),
            glib::ParamSpecDouble::builder("jitter")
                .nick("Jitter")
                .blurb(
                    "Interarrival jitter of the media chunks output (RFC 3550: arrival time \
                        against media.timestamp), in ms; with track=both the larger track's",
                )
                .minimum(0.0)
                .read_only()
                .build(),
            glib::ParamSpecUInt64::builder("late-chunks")
                .nick("Late chunks")
                .blurb(
                    "Media chunks of the track(s) output that arrived later than the \
                        reported latency allows (later than the first chunk's delay plus the \
                        latency), those then dropped as too late included: a syncing sink \
                        gets them late. Raise latency until this stays 0",
                )
                .read_only()
                .build(),
            glib::ParamSpecDouble::builder("mos")
                .nick("MOS")
                .blurb(
                    "Estimated mean opinion score of the call so far, 1.0–4.5 (ITU-T G.107 \
                        E-model for G.711: loss %, with or without concealment, and delay \
                        as the reported latency plus the jitter)",
                )
                .minimum(1.0)
                .maximum(4.5)
                .default_value(super::quality::default_mos())
                .read_only()
                .build(),
            glib::ParamSpecBoolean::builder("shared-threads")
                .nick("Shared threads")
                .blurb(
                    "Push the call's audio from the plugin's few network threads, as it \
                        arrives, instead of from a streaming thread of this element: far \
                        less CPU and latency per call. Two pushes in a row that hold a \
                        network thread 20 ms or more each, or one 200 ms or more (downstream \
                        waits: a sink syncing to the clock, a full queue), hand pushing to \
                        the streaming thread for the rest of the run. FALSE always pushes \
                        from the streaming thread",
                )
                .default_value(DEFAULT_SHARED_THREADS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("bound-port")
                .nick("Bound port")
                .blurb("The port actually listened on (useful with port=0), 0 when not listening")
                .maximum(u16::MAX as u32)
                .read_only()
                .build(),
            glib::ParamSpecBoolean::builder("connected")
                .nick("Connected")
                .blurb("Whether a call is connected to this element")
                .read_only()
                .build(),
            glib::ParamSpecString::builder("call-sid")
                .nick("Call SID")
                .blurb("callSid of the current call, from its start message")
                .read_only()
                .build(),
            glib::ParamSpecString::builder("stream-sid")
                .nick("Stream SID")
                .blurb("streamSid of the current call, from its start message")
                .read_only()
                .build(),
            glib::ParamSpecString::builder("account-sid")
                .nick("Account SID")
                .blurb("accountSid of the current call, from its start message")
                .read_only()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("custom-parameters")
                .nick("Custom parameters")
                .blurb(
                    "The <Parameter> values of the TwiML <Stream>, as string fields (a name \
                        other than ASCII letters, digits and _-+/:., or past the process's \
                        budget for new field names: as name=value strings in the array \
                        field left-out)",
                )
                .read_only()
                .build(),
        ]);
        props.extend(counter_pspecs(SRC_COUNTERS));
        props.push(
            glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                .nick("Statistics")
                .blurb(
                    "All counters of the current (or last) call in one structure, with \
                        jitter, late-chunks, loss-percent and mos",
                )
                .read_only()
                .build(),
        );
        props
    });
    PROPERTIES.as_ref()
}

impl TwilioStreamSrc {
    pub(super) fn write_property(&self, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = self.settings.locked();
        if settings.endpoint.set_property(pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "latency" => {
                settings.latency_ms = value.get().unwrap();
                drop(settings);
                // The fill deadline follows the latency: the fill timer
                // looks again.
                self.fill_timer_rearm();
                let obj = self.obj();
                let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
            }
            "shared-threads" => settings.shared_threads = value.get().unwrap(),
            "track" => settings.track = value.get().unwrap(),
            "gap-fill" => settings.gap_fill = value.get().unwrap(),
            "quality-interval" => settings.quality_interval = value.get().unwrap(),
            "reorder-window" => settings.reorder_window = value.get().unwrap(),
            "track-wait" => settings.track_wait_ms = value.get().unwrap(),
            "early-audio" => settings.early_audio_ms = value.get().unwrap(),
            "call-name" => {
                settings.call_name = value
                    .get::<Option<String>>()
                    .unwrap()
                    .filter(|n| !n.is_empty());
                drop(settings);
                if self.state.locked().registration.is_none() {
                    self.follow_call_name();
                }
            }
            other => unimplemented!("property {other}"),
        }
    }

    pub(super) fn read_property(&self, pspec: &glib::ParamSpec) -> glib::Value {
        if let Some(value) = endpoint::listening_property(
            pspec.name(),
            &self.settings,
            |s| &s.endpoint,
            &self.state,
            |s| s.registration.as_ref(),
        ) {
            return value;
        }
        let sid = |f: fn(&StartInfo) -> &String| {
            self.state
                .locked()
                .start
                .as_deref()
                .map(|s| f(s).clone())
                .to_value()
        };
        match pspec.name() {
            "bound-port" => self.state.locked().bound_port.to_value(),
            "connected" => self
                .slot()
                .current()
                .is_some_and(|c| c.is_open())
                .to_value(),
            "call-name" => self.settings.locked().call_name.to_value(),
            "latency" => self.settings.locked().latency_ms.to_value(),
            "shared-threads" => self.settings.locked().shared_threads.to_value(),
            "track" => self.settings.locked().track.to_value(),
            "gap-fill" => self.settings.locked().gap_fill.to_value(),
            "quality-interval" => self.settings.locked().quality_interval.to_value(),
            "reorder-window" => self.settings.locked().reorder_window.to_value(),
            "track-wait" => self.settings.locked().track_wait_ms.to_value(),
            "early-audio" => self.settings.locked().early_audio_ms.to_value(),
            "jitter" => self.quality_now().jitter_ms.to_value(),
            "late-chunks" => self.quality_now().late.to_value(),
            "mos" => self.quality_now().mos.to_value(),
            "call-sid" => sid(|s| &s.call_sid),
            "stream-sid" => sid(|s| &s.stream_sid),
            "account-sid" => sid(|s| &s.account_sid),
            "custom-parameters" => self
                .state
                .locked()
                .start
                .as_deref()
                .map(messages::custom_parameters)
                .to_value(),
            "stats" => self.stats_structure().to_value(),
            name => {
                let stat = find_counter(SRC_COUNTERS, name)
                    .unwrap_or_else(|| unimplemented!("property {name}"));
                self.stats_call()
                    .map_or(0, |c| c.stats.get(stat))
                    .to_value()
            }
        }
    }

    /// Takes the slot of `call-name` as set, if it changed. Not while
    /// started: the running call came to the slot it has, which `stop`
    /// hangs up before it takes the new one.
    pub(super) fn follow_call_name(&self) {
        let name = self.settings.locked().call_name.clone();
        let mut slot = self.slot.locked();
        if slot.0 != name {
            let new = match &name {
                Some(name) => call::named_slot(name),
                None => Slot::new(),
            };
            *slot = (name, new);
        }
    }

    /// The call whose counters the properties show.
    /// (Its slot's, only while it listens: a src whose start failed for a
    /// `call-name` another holds must not show that one's call.)
    fn stats_call(&self) -> Option<Arc<Call>> {
        let (call, listening) = {
            let state = self.state.locked();
            (state.call.clone(), state.registration.is_some())
        };
        call.or_else(|| listening.then(|| self.slot().current()).flatten())
    }

    /// The counters of the call, then its quality figures.
    pub(super) fn stats_structure(&self) -> gst::Structure {
        let call = self.stats_call();
        let mut s = Stats::structure(
            call.as_deref().map(|c| &c.stats),
            "twiliostreamsrc-stats",
            SRC_COUNTERS,
        );
        self.add_quality_fields(&mut s);
        s
    }
}
