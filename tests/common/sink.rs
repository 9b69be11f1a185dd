//! Helpers shared by the twiliostreamsink end-to-end tests: a sink alone in a
//! Harness, Twilio dialling it, and reading back what the sink sent (media
//! bytes, a tone's amplitude). Assertions stay in the test files.

use base64::Engine as _;
use gst_check::Harness;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{CallParams, Playout, Received, TwilioCall};

use super::*;

/// A sink on its own in a Harness, listening on a free port, with `caps`.
/// (The Harness starts an element with a sink pad at once, so the properties
/// are set before it gets there.)
pub fn sink_harness_with(caps: &str, configure: impl FnOnce(&gst::Element)) -> Harness {
    init();
    let sink = gst::ElementFactory::make("twiliostreamsink")
        .property("port", 0u32)
        .property("sync", false)
        .build()
        .unwrap();
    configure(&sink);
    let mut h = Harness::with_element(&sink, Some("sink"), None);
    h.set_src_caps_str(caps);
    h.play();
    h
}

pub fn sink_harness(caps: &str) -> Harness {
    sink_harness_with(caps, |_| {})
}

/// Twilio dials the sink's own listener and starts the stream.
pub fn dial(sink: &gst::Element, playout: Playout) -> TwilioCall {
    let url = url_of(sink);
    rt().block_on(async {
        let mut call = TwilioCall::connect_with(&url, CallParams::default(), playout)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    })
}

pub fn pcm_buffer(samples: &[i16]) -> gst::Buffer {
    gst::Buffer::from_mut_slice(
        samples
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

/// Pushes silence into `h` until the sink answers EOS, as it does once the
/// end of its call is posted. The poster marks the end read just after it
/// posts the message a test waits for, so a push in between is still taken
/// (and dropped): that is the only `Ok` allowed, and `what` says otherwise.
pub fn push_until_eos(h: &mut Harness, what: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        match h.push(pcm_buffer(&[0; 160])) {
            Err(gst::FlowError::Eos) => return,
            Ok(_) => assert!(std::time::Instant::now() < deadline, "{what}"),
            Err(e) => panic!("{what}: {e:?}"),
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// What `call` receives until the plugin closes it (the close last).
pub fn until_closed(call: &mut TwilioCall) -> Vec<Received> {
    receive_until(call, |got| matches!(got.last(), Some(Received::Closed(_))))
}

/// Collects what the plugin sends until `done` says so (or the call closes).
pub fn receive_until(
    call: &mut TwilioCall,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    rt().block_on(async {
        let mut got = Vec::new();
        while !done(&got) {
            match call.recv_timeout(PATIENCE).await {
                Some(item) => {
                    let closed = matches!(item, Received::Closed(_));
                    got.push(item);
                    if closed {
                        break;
                    }
                }
                None => panic!("nothing more received; so far {got:?}"),
            }
        }
        got
    })
}

pub fn media_bytes(got: &[Received]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in got {
        if let Received::Message(Outbound::Media { media, .. }, _) = r {
            out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(&media.payload)
                    .unwrap(),
            );
        }
    }
    out
}

/// Amplitude of `freq` in `x` (8 kHz), over a whole number of its periods.
pub fn amplitude(x: &[i16], freq: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (n, &v) in x.iter().enumerate() {
        let ph = 2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0;
        re += v as f64 * ph.cos();
        im += v as f64 * ph.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

/// The names of the marks among `got`, in order.
pub fn marks(got: &[Received]) -> Vec<String> {
    got.iter()
        .filter_map(|r| match r {
            Received::Message(Outbound::Mark { mark, .. }, _) => Some(mark.name.clone()),
            _ => None,
        })
        .collect()
}

/// Pops bus messages until `done` says so; all of them.
pub fn messages_until(bus: &gst::Bus, done: impl Fn(&[gst::Message]) -> bool) -> Vec<gst::Message> {
    let mut messages = Vec::new();
    while !done(&messages) {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(PATIENCE.as_secs()))
            .unwrap_or_else(|| panic!("no more messages; so far {messages:?}"));
        messages.push(msg);
    }
    messages
}

pub fn has_eos(messages: &[gst::Message]) -> bool {
    messages
        .iter()
        .any(|m| matches!(m.view(), gst::MessageView::Eos(_)))
}

pub fn has_element(messages: &[gst::Message], name: &str) -> bool {
    !element_messages(messages, name).is_empty()
}

/// Pushes `samples` into an appsrc (its caps say they are S16LE).
pub fn push(app: &gst::Element, samples: &[i16]) {
    let ret = app.emit_by_name::<gst::FlowReturn>("push-buffer", &[&pcm_buffer(samples)]);
    assert_eq!(ret, gst::FlowReturn::Ok);
}

pub fn end_of_stream(app: &gst::Element) {
    let ret = app.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    assert_eq!(ret, gst::FlowReturn::Ok);
}

/// Calls `hook` on the thread that logs, whenever `sink` logs a line
/// containing `text` (at DEBUG or above).
pub fn on_log(sink: &gst::Element, text: &'static str, hook: impl Fn() + Send + Sync + 'static) {
    gst::log::remove_default_log_function();
    gst::log::set_threshold_for_name("twiliostreamsink", gst::DebugLevel::Debug);
    let sink = sink.as_ptr() as usize;
    gst::log::add_log_function(move |cat, _, _, _, _, object, message| {
        if cat.name() == "twiliostreamsink"
            && object.is_some_and(|o| o.as_ptr() as usize == sink)
            && message.get().is_some_and(|m| m.contains(text))
        {
            hook();
        }
    });
}

pub const PCM_8K: &str = "audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved";

/// A src (into a fakesink) in one pipeline and, fed by an appsrc, the sink
/// paired with it by `call-name` in another, so that the sink's pipeline
/// tells its EOS. Returns both pipelines, the appsrc and the sink.
pub fn appsrc_pair(sink_props: &str) -> (gst::Pipeline, gst::Pipeline, gst::Element, gst::Element) {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "pair-{}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let src = pipeline(&format!(
        "twiliostreamsrc name=src port=0 call-name={name} ! fakesink"
    ));
    let sink = pipeline(&format!(
        "appsrc name=app format=time caps={PCM_8K} ! \
         twiliostreamsink name=sink call-name={name} sync=false {sink_props}"
    ));
    set_state(&src, gst::State::Playing);
    set_state(&sink, gst::State::Playing);
    let (app, element) = (by_name(&sink, "app"), by_name(&sink, "sink"));
    (src, sink, app, element)
}
