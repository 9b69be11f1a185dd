//! twiliostreamsink as an element on its own listener: documented property defaults and caps,
//! a wait for a call cancelled by a state change, and a peer that stops reading.

mod common;

use std::time::Duration;

use common::sink::*;
use common::*;
use gst::prelude::*;

#[test]
fn waiting_for_a_call_is_cancelled_by_a_state_change() {
    init();
    let p = pipeline(
        "audiotestsrc ! audio/x-raw,rate=16000,channels=1 ! twiliostreamsink name=sink port=0",
    );
    p.set_state(gst::State::Playing).unwrap();
    let port = by_name(&p, "sink").property::<u32>("bound-port") as u16;
    assert_ne!(port, 0);
    std::thread::sleep(Duration::from_millis(50));
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || tx.send(p2.set_state(gst::State::Null)).unwrap());
    rx.recv_timeout(PATIENCE)
        .expect("NULL did not return")
        .unwrap();
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still taken");
}

#[test]
fn sink_properties_have_documented_defaults() {
    init();
    let sink = gst::ElementFactory::make("twiliostreamsink")
        .build()
        .unwrap();
    assert_eq!(sink.property::<u32>("chunk-duration"), 20);
    assert_eq!(sink.property::<Option<String>>("call-name"), None);
    assert_eq!(sink.property::<String>("host"), "127.0.0.1");
    assert_eq!(sink.property::<u32>("port"), 8080);
    assert_eq!(sink.property::<String>("path"), "/");
    // The call's writer paces by its model of Twilio's queue, not the clock.
    assert!(!sink.property::<bool>("sync"));
    assert_eq!(sink.property::<u32>("max-lead"), 100);
    assert!(!sink.property::<bool>("connected"));
    let stats = sink.property::<gst::Structure>("stats");
    for field in [
        "bytes-sent",
        "chunks-sent",
        "marks-sent",
        "marks-played",
        "marks-received",
        "clears-sent",
        "transcode-errors",
    ] {
        assert_eq!(stats.get::<u64>(field).unwrap(), 0, "{field}");
        assert_eq!(sink.property::<u64>(field), 0, "{field}");
    }
    for pspec in sink.list_properties() {
        if pspec.owner_type() == sink.type_() {
            assert!(!pspec.nick().is_empty(), "{}", pspec.name());
            assert!(
                pspec.blurb().is_some_and(|b| b.len() > 10),
                "{}",
                pspec.name()
            );
        }
    }
    let caps = sink.static_pad("sink").unwrap().pad_template_caps();
    for rate in [8000, 16000, 24000, 48000] {
        let c = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("layout", "interleaved")
            .field("rate", rate)
            .field("channels", 1)
            .build();
        assert!(c.can_intersect(&caps), "{rate}");
    }
    assert!(
        gst::Caps::builder("audio/x-mulaw")
            .field("rate", 8000)
            .field("channels", 1)
            .build()
            .can_intersect(&caps)
    );
    assert!(
        !gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 44100)
            .field("channels", 1)
            .build()
            .can_intersect(&caps)
    );
}

#[test]
fn a_source_faster_than_real_time_waits_in_render_and_tears_down() {
    // The harness pushes from a thread of its own, which waits in render.
    let (tx, rx) = std::sync::mpsc::channel();
    let pushes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pushed = pushes.clone();
    let pusher = std::thread::spawn(move || {
        let mut h =
            sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
        tx.send(h.element().unwrap()).unwrap();
        // 20 minutes of audio as fast as the sink takes it.
        let second = pcm_buffer(&vec![1000i16; 8000]);
        for _ in 0..1200 {
            if h.push(second.copy()).is_err() {
                break;
            }
            pushed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        h
    });
    let sink = rx.recv().unwrap();
    // Twilio's side: handshake and start, then never read again.
    let url = url_of(&sink);
    let ws = rt().block_on(async {
        use futures::SinkExt;
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let start = gsttwiliostream::protocol::Inbound::Start {
            sequence_number: None,
            stream_sid: "MZstalled".into(),
            start: gsttwiliostream::protocol::StartInfo {
                account_sid: "AC1".into(),
                stream_sid: "MZstalled".into(),
                call_sid: "CA1".into(),
                tracks: vec!["inbound".into()],
                custom_parameters: Default::default(),
                media_format: None,
                tracks_unannounced: false,
            },
        };
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            start.to_json(),
        ))
        .await
        .unwrap();
        ws
    });
    // Once audio flows, the sink holds at most a second of it beyond what
    // Twilio may hold (max-lead): memory stays bounded and nothing is
    // dropped, however fast the source.
    let deadline = std::time::Instant::now() + PATIENCE;
    while sink.property::<u64>("chunks-sent") < 5 {
        assert!(std::time::Instant::now() < deadline, "nothing sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(500));
    // Pushes first: both only grow, and the writer sends on while the test
    // reads (read the other way round, a test thread held between the two
    // reads would see the pushes of a later moment).
    let pushed_ms = pushes.load(std::sync::atomic::Ordering::SeqCst) as u64 * 1000;
    let sent_ms = sink.property::<u64>("chunks-sent") * 20;
    assert!(
        pushed_ms <= sent_ms + 1000 + 1000,
        "{pushed_ms} ms taken for {sent_ms} ms sent"
    );
    assert_eq!(sink.property::<u64>("chunks-dropped"), 0);
    // Tearing down returns while a push waits, although the peer never reads.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let element = sink.clone();
    std::thread::spawn(move || done_tx.send(element.set_state(gst::State::Null)).unwrap());
    done_rx
        .recv_timeout(PATIENCE)
        .expect("NULL did not return")
        .unwrap();
    drop(pusher.join().unwrap());
    drop(ws);
}

#[test]
fn pausing_while_the_writer_holds_the_source_back_resumes_and_loses_nothing() {
    init();
    let p = pipeline(
        "appsrc name=app format=time caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved \
         ! twiliostreamsink name=sink port=0",
    );
    p.set_state(gst::State::Playing).unwrap();
    let (app, sink) = (by_name(&p, "app"), by_name(&p, "sink"));
    let mut call = common::sink::dial(&sink, twilio_emulator::Playout::RealTime);
    // Three seconds at once: render() waits for the writer after one.
    for i in 0..150u64 {
        let mut buffer = pcm_buffer(&[(i as i16) * 100; 160]);
        buffer
            .get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(20 * i));
        let ret = app.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
        assert_eq!(ret, gst::FlowReturn::Ok);
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    while sink.property::<u64>("chunks-sent") < 10 {
        assert!(std::time::Instant::now() < deadline, "nothing sent");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Paused while render() waits: the state change completes, and so does
    // the way back to PLAYING.
    p.set_state(gst::State::Paused).unwrap();
    let (paused, state, _) = p.state(gst::ClockTime::from_seconds(PATIENCE.as_secs()));
    assert_eq!(
        (paused, state),
        (Ok(gst::StateChangeSuccess::Success), gst::State::Paused)
    );
    std::thread::sleep(Duration::from_millis(200));
    p.set_state(gst::State::Playing).unwrap();
    let (playing, state, _) = p.state(gst::ClockTime::from_seconds(PATIENCE.as_secs()));
    assert_eq!(
        (playing, state),
        (Ok(gst::StateChangeSuccess::Success), gst::State::Playing)
    );
    // Every frame goes out, in order.
    let got = common::sink::receive_until(&mut call, |got| {
        common::sink::media_bytes(got).len() >= 150 * 160
    });
    let frames: Vec<u8> = common::sink::media_bytes(&got);
    let expected: Vec<u8> = (0..150i16)
        .flat_map(|i| std::iter::repeat_n(gsttwiliostream::codec::g711::encode(i * 100), 160))
        .collect();
    assert_eq!(frames, expected);
    p.set_state(gst::State::Null).unwrap();
}
