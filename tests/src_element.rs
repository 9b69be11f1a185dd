//! twiliostreamsrc as an element: properties, caps, latency (gst_check Harness).

mod common;

use common::*;
use gst::prelude::*;
use gst_check::Harness;
use gsttwiliostream::protocol::Track;
use twilio_emulator::{CallParams, TwilioCall};

fn harness() -> Harness {
    init();
    let src = gst::ElementFactory::make("twiliostreamsrc")
        .property("port", 0u32)
        .build()
        .unwrap();
    Harness::with_element(&src, None, Some("src"))
}

/// Sends `chunks` chunks of silence and keeps the call open.
fn call_into(src: &gst::Element, chunks: usize) -> TwilioCall {
    let url = url_of(src);
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        for _ in 0..chunks {
            call.send_media(&[0xFF; 160]).unwrap();
        }
        call
    })
}

#[test]
fn properties_have_documented_defaults() {
    init();
    let src = gst::ElementFactory::make("twiliostreamsrc")
        .build()
        .unwrap();
    assert_eq!(src.property::<String>("host"), "127.0.0.1");
    assert_eq!(src.property::<u32>("port"), 8080);
    assert_eq!(src.property::<String>("path"), "/");
    assert_eq!(src.property::<u32>("bound-port"), 0);
    assert!(!src.property::<bool>("connected"));
    assert_eq!(src.property::<Option<String>>("call-sid"), None);
    assert_eq!(
        src.property::<Option<gst::Structure>>("custom-parameters"),
        None
    );
    let stats = src.property::<gst::Structure>("stats");
    for field in [
        "bytes-received",
        "chunks-received",
        "chunks-lost",
        "transcode-errors",
        "invalid-messages",
        "marks-received",
        "dtmf-received",
    ] {
        assert_eq!(stats.get::<u64>(field).unwrap(), 0, "{field}");
        assert_eq!(src.property::<u64>(field), 0, "{field}");
    }
    src.set_property("path", "media");
    assert_eq!(src.property::<String>("path"), "/media");

    // Every property of ours explains itself.
    for pspec in src.list_properties() {
        if pspec.owner_type() == src.type_() {
            assert!(!pspec.nick().is_empty(), "{}", pspec.name());
            assert!(
                pspec.blurb().is_some_and(|b| b.len() > 10),
                "{}",
                pspec.name()
            );
        }
    }
    let factory = src.factory().unwrap();
    assert_eq!(factory.metadata("klass"), Some("Source/Audio/Network"));
}

#[test]
fn default_output_is_16k_s16le_with_honest_latency() {
    let mut h = harness();
    h.play();
    let src = h.element().unwrap();
    let _call = call_into(&src, 2);
    let buffer = h.pull().unwrap();
    assert_eq!(buffer.size(), 640);
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.name(), "audio/x-raw");
    assert_eq!(s.get::<i32>("rate").unwrap(), 16000);
    assert_eq!(s.get::<i32>("channels").unwrap(), 1);
    assert_eq!(s.get::<&str>("format").unwrap(), "S16LE");

    let mut q = gst::query::Latency::new();
    assert!(src.static_pad("src").unwrap().query(&mut q));
    let (live, min, max) = q.result();
    assert!(live);
    // One 20 ms chunk plus the upsampler's 2.5625 ms.
    assert_eq!(min, gst::ClockTime::from_nseconds(22_562_500));
    assert_eq!(max, gst::ClockTime::NONE);
    assert!(src.property::<bool>("connected"));
}

#[test]
fn narrowband_caps_give_8k_and_one_chunk_of_latency() {
    let mut h = harness();
    h.set_sink_caps_str("audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1");
    h.play();
    let src = h.element().unwrap();
    let _call = call_into(&src, 1);
    let buffer = h.pull().unwrap();
    assert_eq!(buffer.size(), 320);
    assert_eq!(buffer.duration(), Some(gst::ClockTime::from_mseconds(20)));
    assert_eq!(h.query_latency(), Some(gst::ClockTime::from_mseconds(20)));
}

#[test]
fn mulaw_caps_pass_the_payload_through() {
    let mut h = harness();
    h.set_sink_caps_str("audio/x-mulaw,rate=8000,channels=1");
    h.play();
    let src = h.element().unwrap();
    let _call = call_into(&src, 1);
    let buffer = h.pull().unwrap();
    assert_eq!(&*buffer.map_readable().unwrap(), &[0xFF; 160][..]);
}

#[test]
fn a_busy_port_is_a_clear_error() {
    init();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let p = pipeline(&format!("twiliostreamsrc name=src port={port} ! fakesink"));
    assert!(p.set_state(gst::State::Playing).is_err());
    let bus = p.bus().unwrap();
    let error = drain_messages(&bus)
        .into_iter()
        .find_map(|m| match m.view() {
            // The message itself, which applications show, says why.
            gst::MessageView::Error(e) => Some(e.error().message().to_owned()),
            _ => None,
        })
        .expect("an error message");
    assert!(
        error.starts_with(&format!("Could not listen on 127.0.0.1:{port}: ")),
        "{error}"
    );
    assert!(error.contains("Address already in use"), "{error}");
    p.set_state(gst::State::Null).unwrap();
}

/// `track` and `track-wait` apply when the src starts: set while it runs
/// (their flags say READY), they change neither the caps it offers nor the
/// wait its call gets, which the latency it reports shows.
#[test]
fn track_and_track_wait_set_while_running_wait_for_the_next_start() {
    init();
    let src = gst::ElementFactory::make("twiliostreamsrc")
        .property("port", 0u32)
        .property_from_str("track", "both")
        .build()
        .unwrap();
    let mut h = Harness::with_element(&src, None, Some("src"));
    h.play();
    src.set_property_from_str("track", "inbound");
    src.set_property("track-wait", 500u32);
    let caps = src.static_pad("src").unwrap().query_caps(None);
    assert!(!caps.is_empty());
    for s in caps.iter() {
        assert_eq!(s.get::<i32>("channels").unwrap(), 2, "{caps}");
    }
    let url = url_of(&src);
    let _call = rt().block_on(async {
        let params = CallParams::with_tracks(&[Track::Inbound, Track::Outbound]);
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        for _ in 0..3 {
            call.send_media_on(Track::Inbound, &[0xFF; 160]).unwrap();
            call.send_media_on(Track::Outbound, &[0xFF; 160]).unwrap();
        }
        call
    });
    let buffer = h.pull().unwrap();
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(
        caps.structure(0).unwrap().get::<i32>("channels").unwrap(),
        2
    );
    assert!(buffer.size() > 0);
    let mut q = gst::query::Latency::new();
    assert!(src.static_pad("src").unwrap().query(&mut q));
    // A chunk, the upsampler's 2.5625 ms and the default 60 ms wait.
    assert_eq!(q.result().1, gst::ClockTime::from_nseconds(82_562_500));
}
