//! An application that embeds the elements: state changes with and
//! without a call (NULL → PLAYING → NULL frees the port each time, PAUSED ↔
//! PLAYING mid-call), the elements' properties and action signals used
//! from a bus sync handler (on a network thread), a branch removed and
//! added while its pipeline plays, pipelines sharing a port by path and by
//! `call-name`, properties changed between calls, one pipeline on hold
//! beside another's call, the src alone restarted mid-call (the first
//! call's EOS and audio late behind a queue reach neither the next call nor
//! its caller). Every wait is bounded.

mod common;

use std::time::{Duration, Instant};

use common::app::*;
use common::sink::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, Playout, Received, TwilioCall};

/// A bus sync handler runs on whatever thread posted (a network thread,
/// with `shared-threads`): reading the elements' properties and emitting
/// their action signals from it must not deadlock.
fn actions_from_a_sync_handler(src_props: &str) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {src_props} ! twiliostreamsink name=sink"
    ));
    let src = by_name(&p, "src");
    let sink = by_name(&p, "sink");
    let bus = p.bus().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx = std::sync::Mutex::new(tx);
    {
        let (src, sink) = (src.clone(), sink.clone());
        bus.set_sync_handler(move |_, msg| {
            let _ = src.property::<gst::Structure>("stats");
            let _ = sink.property::<gst::Structure>("stats");
            let _ = src.property::<Option<String>>("call-sid");
            let _ = sink.property::<bool>("connected");
            if let gst::MessageView::Element(e) = msg.view() {
                let s = e.structure().unwrap();
                let step = match s.name().as_str() {
                    "twilio-start" => {
                        let ok = sink.emit_by_name::<bool>("send-mark", &[&"a"]);
                        format!("start {ok}")
                    }
                    "twilio-mark" => {
                        let name = s.get::<String>("name").unwrap();
                        let ok = match name.as_str() {
                            "a" => sink.emit_by_name::<bool>("clear", &[]),
                            "b" => src.emit_by_name::<bool>("end-stream", &[&true]),
                            _ => true,
                        };
                        format!("mark {name} {ok}")
                    }
                    "twilio-clear" => {
                        let ok = sink.emit_by_name::<bool>("send-mark", &[&"b"]);
                        format!("clear {ok}")
                    }
                    "twilio-ended" => "ended".to_owned(),
                    other => other.to_owned(),
                };
                let _ = tx.lock().unwrap().send(step);
            }
            gst::BusSyncReply::Pass
        });
    }
    set_bounded(&p, gst::State::Playing);
    let url = url_of(&src);
    let mut call = instant_call(&url);
    let mut steps = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while !steps.iter().any(|s| s == "ended") {
        for chunk in tones(1).chunks(160) {
            let _ = call.send_media(chunk);
        }
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(step) => steps.push(step),
            Err(_) => assert!(Instant::now() < deadline, "stuck after {steps:?}"),
        }
    }
    // (The src posts the echo of "a" from its streaming thread, the sink
    // posts twilio-clear from the network thread: either may come first.)
    let mut seen: Vec<_> = steps
        .iter()
        .filter(|s| !s.starts_with("twilio-quality"))
        .cloned()
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "clear true",
            "ended",
            "mark a true",
            "mark b true",
            "mark twiliostream-end true",
            "start true"
        ],
    );
    wait_eos(&bus);
    rt().block_on(call.abort());
    bus.unset_sync_handler();
    set_bounded(&p, gst::State::Null);
}

#[test]
fn actions_from_a_sync_handler_shared_threads() {
    actions_from_a_sync_handler("");
}

#[test]
fn actions_from_a_sync_handler_streaming_thread() {
    actions_from_a_sync_handler("shared-threads=false");
}

/// NULL → PLAYING → NULL on a fixed port, with and without a call in
/// progress: the port is free again after each NULL.
#[test]
fn null_playing_null_frees_the_port_every_time() {
    let port = free_port();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port={port} ! audio/x-mulaw ! twiliostreamsink name=sink"
    ));
    let src = by_name(&p, "src");
    for n in 0..30 {
        set_bounded(&p, gst::State::Playing);
        assert_eq!(src.property::<u32>("bound-port"), port as u32);
        let call = (n % 2 == 1).then(|| {
            let mut call = start_call(&format!("ws://127.0.0.1:{port}/"), 5);
            receive_until(&mut call, |got| media_bytes(got).len() >= 800);
            call
        });
        set_bounded(&p, gst::State::Null);
        assert!(port_is_free(port), "run {n}: port still taken after NULL");
        if let Some(call) = call {
            let got = receive_until(&mut { call }, |_| false);
            assert!(matches!(got.last(), Some(Received::Closed(_))));
        }
    }
}

/// PAUSED ↔ PLAYING many times mid-call, then the call goes on and ends
/// as usual, and the next call (after READY) echoes as the first did.
#[test]
fn pausing_mid_call_then_the_next_call() {
    let p =
        pipeline("twiliostreamsrc name=src port=0 ! audio/x-mulaw ! twiliostreamsink name=sink");
    let src = by_name(&p, "src");
    let bus = p.bus().unwrap();
    set_bounded(&p, gst::State::Playing);
    let mut call = start_call(&url_of(&src), 5);
    receive_until(&mut call, |got| media_bytes(got).len() >= 800);
    for _ in 0..20 {
        set_bounded(&p, gst::State::Paused);
        call.send_media(&[0x33; 160]).unwrap();
        set_bounded(&p, gst::State::Playing);
        call.send_media(&[0x44; 160]).unwrap();
    }
    call.send_stop().unwrap();
    wait_eos(&bus);
    rt().block_on(call.close());
    set_bounded(&p, gst::State::Ready);
    set_bounded(&p, gst::State::Playing);
    assert_eq!(src.property::<u64>("chunks-received"), 0, "counters reset");
    let echoed = echo_call(&url_of(&src), 3, 6);
    assert_eq!(echoed, pattern(3, 6));
    wait_eos(&bus);
    set_bounded(&p, gst::State::Null);
}

/// Two pipelines on one port, on two paths, and a pair tied by call-name
/// across two more pipelines on a third path: each call reaches its own
/// pipeline; after NULL on all the port is free.
#[test]
fn pipelines_sharing_a_port_by_path_and_call_name() {
    let port = free_port();
    let a = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/a ! audio/x-mulaw ! twiliostreamsink name=sink"
    ));
    let b = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/b ! audio/x-mulaw ! twiliostreamsink name=sink"
    ));
    let c_src = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/c call-name=c ! audio/x-mulaw ! fakesink"
    ));
    let c_sink = pipeline(
        "appsrc name=in format=time is-live=true caps=audio/x-mulaw,rate=8000,channels=1 \
         ! twiliostreamsink name=sink call-name=c",
    );
    for round in 0..5 {
        for p in [&a, &b, &c_src, &c_sink] {
            set_bounded(p, gst::State::Playing);
        }
        let ea = echo_call(&format!("ws://127.0.0.1:{port}/a"), round, 4);
        let eb = echo_call(&format!("ws://127.0.0.1:{port}/b"), round + 100, 4);
        assert_eq!(ea, pattern(round, 4));
        assert_eq!(eb, pattern(round + 100, 4));
        wait_eos(&a.bus().unwrap());
        wait_eos(&b.bus().unwrap());
        // The call-name pair: the sink plays what the app pushes.
        let mut call = start_call(&format!("ws://127.0.0.1:{port}/c"), 2);
        let app = by_name(&c_sink, "in");
        let data = pattern(round + 200, 3);
        let ret = app.emit_by_name::<gst::FlowReturn>(
            "push-buffer",
            &[&gst::Buffer::from_slice(data.clone())],
        );
        assert_eq!(ret, gst::FlowReturn::Ok);
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= data.len());
        assert_eq!(media_bytes(&got), data);
        call.send_stop().unwrap();
        rt().block_on(call.close());
        wait_eos(&c_src.bus().unwrap());
        for p in [&a, &b, &c_src, &c_sink] {
            set_bounded(p, gst::State::Null);
        }
        assert!(port_is_free(port), "round {round}: port still taken");
    }
}

/// Removing a running src/sink branch and adding a new one while the
/// pipeline plays: the new one takes the next call.
#[test]
fn replacing_a_branch_in_a_running_pipeline() {
    let port = free_port();
    let p = pipeline("audiotestsrc is-live=true ! fakesink sync=false async=false");
    set_bounded(&p, gst::State::Playing);
    for n in 0..10 {
        let bin = gst::parse::bin_from_description(
            &format!(
                "twiliostreamsrc name=src port={port} ! audio/x-mulaw ! twiliostreamsink name=sink async=false"
            ),
            false,
        )
        .unwrap();
        p.add(&bin).unwrap();
        bin.sync_state_with_parent().unwrap();
        let echoed = echo_call(&format!("ws://127.0.0.1:{port}/"), n, 4);
        assert_eq!(echoed, pattern(n, 4), "branch {n}");
        // Bounded: NULL on the branch from the test thread.
        let (tx, rx) = std::sync::mpsc::channel();
        let b2 = bin.clone();
        std::thread::spawn(move || {
            let _ = tx.send(b2.set_state(gst::State::Null));
        });
        rx.recv_timeout(PATIENCE)
            .expect("branch NULL hung")
            .unwrap();
        p.remove(&bin).unwrap();
        assert!(port_is_free(port), "branch {n}: port still taken");
    }
    set_bounded(&p, gst::State::Null);
}

/// Properties changed in READY between calls take effect on the next
/// run: a new path (the old one answers 404), a new call-name on both
/// elements of a pair in two pipelines.
#[test]
fn properties_changed_between_calls() {
    let port = free_port();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/one ! audio/x-mulaw ! twiliostreamsink name=sink"
    ));
    let src = by_name(&p, "src");
    let bus = p.bus().unwrap();
    set_bounded(&p, gst::State::Playing);
    assert_eq!(
        echo_call(&format!("ws://127.0.0.1:{port}/one"), 1, 3),
        pattern(1, 3)
    );
    wait_eos(&bus);
    set_bounded(&p, gst::State::Ready);
    src.set_property("path", "/two");
    set_bounded(&p, gst::State::Playing);
    let old = rt().block_on(TwilioCall::connect(
        &format!("ws://127.0.0.1:{port}/one"),
        CallParams::default(),
    ));
    assert!(old.is_err(), "the old path still answers");
    assert_eq!(
        echo_call(&format!("ws://127.0.0.1:{port}/two"), 2, 3),
        pattern(2, 3)
    );
    wait_eos(&bus);
    set_bounded(&p, gst::State::Null);

    // A pair by call-name, renamed between calls.
    let s = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/p call-name=x1 ! audio/x-mulaw ! fakesink"
    ));
    let k = pipeline(
        "appsrc name=in format=time is-live=true caps=audio/x-mulaw,rate=8000,channels=1 \
         ! twiliostreamsink name=sink call-name=x1",
    );
    for (n, name) in ["x1", "x2", "x3"].iter().enumerate() {
        by_name(&s, "src").set_property("call-name", *name);
        by_name(&k, "sink").set_property("call-name", *name);
        set_bounded(&s, gst::State::Playing);
        set_bounded(&k, gst::State::Playing);
        let mut call = start_call(&format!("ws://127.0.0.1:{port}/p"), 2);
        let data = pattern(n, 2);
        let ret = by_name(&k, "in").emit_by_name::<gst::FlowReturn>(
            "push-buffer",
            &[&gst::Buffer::from_slice(data.clone())],
        );
        assert_eq!(ret, gst::FlowReturn::Ok);
        let got = receive_until(&mut call, |got| media_bytes(got).len() >= data.len());
        assert_eq!(media_bytes(&got), data, "{name}");
        call.send_stop().unwrap();
        rt().block_on(call.close());
        wait_eos(&s.bus().unwrap());
        set_bounded(&s, gst::State::Ready);
        set_bounded(&k, gst::State::Ready);
    }
    set_bounded(&s, gst::State::Null);
    set_bounded(&k, gst::State::Null);
    assert!(port_is_free(port));
}

/// One pipeline paused mid-call (a hold) must not hold up another call's
/// echo in the same process: pushes go out on shared network threads.
///
/// A bin pauses its sinks before their sources, so a chunk could be on its
/// way from a network thread as the sink paused; prerolled, it held that
/// thread, and B's echo with it, for the whole hold (about 1 run in 15,
/// before the sink held its src's pushes while it pauses: `push_gate.rs`;
/// `tests/sink_paused_push.rs` makes that moment happen every time).
#[test]
fn a_paused_pipeline_does_not_stall_another_call() {
    let port = free_port();
    let a = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/a ! twiliostreamsink name=sink"
    ));
    let b = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/b ! twiliostreamsink name=sink"
    ));
    set_bounded(&a, gst::State::Playing);
    set_bounded(&b, gst::State::Playing);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let caller = |path: &'static str| {
        let stop = stop.clone();
        rt().spawn(async move {
            let mut call = TwilioCall::connect_with(
                &format!("ws://127.0.0.1:{port}{path}"),
                CallParams::default(),
                Playout::Instant,
            )
            .await
            .unwrap();
            call.begin().unwrap();
            let t0 = tokio::time::Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut arrivals = Vec::new();
            // Its end is the last "arrival": a stall at the end is a gap too.
            let mut hung_up = false;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::select! {
                    _ = tick.tick() => { let _ = call.send_media(&tones(1)); }
                    got = call.recv() => match got {
                        Some(Received::Message(gsttwiliostream::protocol::Outbound::Media { .. }, _)) =>
                            arrivals.push(t0.elapsed()),
                        Some(Received::Closed(_)) | None => {
                            hung_up = true;
                            break;
                        }
                        _ => {}
                    }
                }
            }
            call.abort().await;
            arrivals.push(t0.elapsed());
            (arrivals, hung_up)
        })
    };
    let ta = caller("/a");
    let tb = caller("/b");
    std::thread::sleep(Duration::from_millis(500));
    // Hold A for 1.5 s, three times: a stall of B's echo as long as a hold
    // is well over the worst gap allowed, normal gaps (20 ms) well under.
    for _ in 0..3 {
        set_bounded(&a, gst::State::Paused);
        std::thread::sleep(Duration::from_millis(1500));
        set_bounded(&a, gst::State::Playing);
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (arrivals_b, hung_up) = rt().block_on(tb).unwrap();
    assert!(!hung_up, "B's call was closed");
    let _ = rt().block_on(ta);
    // B's call lasted about 5.6 s: some 280 echoes of 20 ms.
    assert!(arrivals_b.len() > 50, "B: {} echoes", arrivals_b.len());
    let gaps: Vec<_> = arrivals_b.windows(2).map(|w| w[1] - w[0]).collect();
    let worst = gaps.iter().max().copied().unwrap_or_default();
    println!("B: {} echoes, worst gap {worst:?}", arrivals_b.len());
    assert!(
        worst < Duration::from_millis(1000),
        "B's echo stalled {worst:?}"
    );
    set_bounded(&a, gst::State::Null);
    set_bounded(&b, gst::State::Null);
}

/// The src alone restarted mid-call (its path changed in NULL, then synced
/// with its PLAYING pipeline), the sink left PLAYING: the src's next call
/// echoes. (The sink kept the first call, over, and answered the next
/// call's audio with EOS: the pipeline ended, the caller heard nothing.)
#[test]
fn the_src_alone_restarted_with_a_new_path_and_its_next_call_echoes() {
    for props in ["", "shared-threads=false"] {
        let p = pipeline(&format!(
            "twiliostreamsrc name=src port=0 {props} ! audio/x-mulaw ! twiliostreamsink name=sink"
        ));
        let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
        set_bounded(&p, gst::State::Playing);
        let mut first = start_call(&url_of(&src), 2);
        receive_until(&mut first, |got| media_bytes(got).len() >= 320);
        restart_alone(&src, Some("/next"));
        let got = receive_until(&mut first, |_| false);
        assert!(matches!(got.last(), Some(Received::Closed(_))));
        let url = url_of(&src);
        assert!(url.ends_with("/next"), "{url}");
        let echoed = echo_call(&url, 7, 5);
        assert_eq!(echoed, pattern(7, 5), "{props}");
        assert_eq!(sink.property::<u64>("chunks-sent"), 5, "{props}");
        let messages = wait_eos(&p.bus().unwrap());
        assert!(has_element(&messages, "twilio-stop"), "{props}");
        set_bounded(&p, gst::State::Null);
    }
}

/// The first call's end (its `stop`: the src's EOS) still on its way to
/// the sink, behind a queue, when the src alone was restarted and took
/// its next call: that EOS ends the first call's stream, not the next
/// call. (The sink, following the src, adopted the next call at that EOS,
/// played it out and ended it: Twilio went on with the TwiML.)
#[test]
fn the_first_calls_eos_late_does_not_end_the_src_next_call() {
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-mulaw ! queue ! twiliostreamsink name=sink",
    );
    let (src, sink) = (by_name(&p, "src"), by_name(&p, "sink"));
    // The first EOS waits at the sink's pad until the next call started.
    let (at_eos, eos_reached) = std::sync::mpsc::channel();
    let (go, go_on) = std::sync::mpsc::channel::<()>();
    let go_on = std::sync::Mutex::new(Some(go_on));
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && e.type_() == gst::EventType::Eos
                && let Some(go_on) = go_on.lock().unwrap().take()
            {
                let _ = at_eos.send(());
                let _ = go_on.recv_timeout(PATIENCE);
            }
            gst::PadProbeReturn::Ok
        },
    );
    set_bounded(&p, gst::State::Playing);
    let mut first = start_call(&url_of(&src), 2);
    receive_until(&mut first, |got| media_bytes(got).len() >= 320);
    first.send_stop().unwrap();
    eos_reached
        .recv_timeout(PATIENCE)
        .expect("no EOS after stop");
    rt().block_on(first.close());
    restart_alone(&src, None);
    let mut next = instant_call(&url_of(&src));
    let deadline = Instant::now() + PATIENCE;
    while !src.property::<bool>("connected") {
        assert!(Instant::now() < deadline, "the next call did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    go.send(()).unwrap();
    // The sink has taken the EOS (a play-out waits for its mark's echo).
    wait_eos(&p.bus().unwrap());
    let got: Vec<Received> = std::iter::from_fn(|| next.try_recv()).collect();
    assert!(
        marks(&got).is_empty() && !got.iter().any(|r| matches!(r, Received::Closed(_))),
        "the first call's EOS ended the next call: {got:?}"
    );
    set_bounded(&p, gst::State::Null);
}

/// The first call's audio still in a queue when the src alone was
/// restarted and took its next call: none of it reaches the next caller,
/// who hears their own echo. (The sink, following the src, switched calls
/// at the first buffer after the first call's end: the next caller heard
/// up to a queue's worth of the previous one.)
#[test]
fn the_first_calls_audio_left_in_a_queue_never_reaches_the_next_caller() {
    const FIRST: u8 = 0x2a;
    const NEXT: u8 = 0x55;
    for props in ["", "shared-threads=false"] {
        let p = pipeline(&format!(
            "twiliostreamsrc name=src port=0 gap-fill=silence {props} ! audio/x-mulaw ! \
             queue name=q ! twiliostreamsink name=sink"
        ));
        let (src, q) = (by_name(&p, "src"), by_name(&p, "q"));
        set_bounded(&p, gst::State::Playing);
        let mut first = instant_call(&url_of(&src));
        for _ in 0..2 {
            first.send_media(&[FIRST; 160]).unwrap();
        }
        receive_until(&mut first, |got| media_bytes(got).len() >= 320);
        // The queue's output held: the first call's next chunks wait in it.
        let out = q.static_pad("src").unwrap();
        let block = out
            .add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| {
                gst::PadProbeReturn::Ok
            })
            .unwrap();
        for _ in 0..10 {
            first.send_media(&[FIRST; 160]).unwrap();
        }
        let deadline = Instant::now() + PATIENCE;
        while q.property::<u32>("current-level-buffers") < 9 {
            assert!(
                Instant::now() < deadline,
                "the chunks did not reach the queue"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        restart_alone(&src, None);
        rt().block_on(first.close());
        let mut next = instant_call(&url_of(&src));
        for _ in 0..5 {
            next.send_media(&[NEXT; 160]).unwrap();
        }
        // (The src takes it only once the queue has drained: its allocation
        // query waits behind the first call's chunks. Its listener has it.)
        while !src.property::<bool>("connected") {
            assert!(Instant::now() < deadline, "the next call did not come");
            std::thread::sleep(Duration::from_millis(5));
        }
        out.remove_probe(block);
        let heard = media_bytes(&receive_until(&mut next, |got| {
            media_bytes(got).len() >= 5 * 160
        }));
        let leaked = heard.iter().filter(|&&b| b == FIRST).count();
        assert_eq!(leaked, 0, "{props}: the next caller heard the first call");
        assert_eq!(heard, [NEXT; 5 * 160], "{props}");
        next.send_stop().unwrap();
        rt().block_on(next.close());
        wait_eos(&p.bus().unwrap());
        set_bounded(&p, gst::State::Null);
    }
}

/// Stops the src alone and starts it again with its pipeline (on `path`
/// if given), as an application changing its path does; bounded.
fn restart_alone(src: &gst::Element, path: Option<&'static str>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let s = src.clone();
    std::thread::spawn(move || {
        s.set_state(gst::State::Null).unwrap();
        if let Some(path) = path {
            s.set_property("path", path);
        }
        let _ = tx.send(s.sync_state_with_parent());
    });
    rx.recv_timeout(PATIENCE)
        .expect("src restart hung")
        .unwrap();
}
