//! `shared-threads=true`: the src pushes from the plugin's network threads.
//! What both modes share (audio, timing, events, teardown) runs in both
//! modes in `src_audio.rs`, `src_call_events.rs` and `src_teardown.rs`;
//! here is what only this mode has. The fallback to the streaming thread
//! when downstream holds the network thread is in `shared_threads_fallback.rs`.

mod common;

use std::time::Duration;

use common::threads::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, TwilioCall};

/// An echo-less pipeline of a src with `props` into a fakesink at 8 kHz,
/// PLAYING: the pipeline, the threads buffers came on, the collector,
/// the src's URL and 20 chunks of distinct μ-law.
///
/// Here and below the sink has `async=false`, so the pipeline plays at once
/// and the network threads push from the first chunk on: into a sink that
/// still prerolls, the streaming thread pushes until the pipeline plays
/// (`sinks_still_prerolling_hold_no_network_thread_and_every_call_flows`).
fn recording(props: &str) -> (gst::Pipeline, Threads, Collector, String, Vec<u8>) {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {props} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false async=false"
    ));
    let threads = record_threads(&by_name(&p, "sink"));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    assert!(by_name(&p, "src").property::<bool>("shared-threads"));
    let url = url_of(&by_name(&p, "src"));
    let ulaw = test_ulaw();
    (p, threads, collector, url, ulaw)
}

#[test]
fn buffers_come_from_the_network_threads() {
    let (p, threads, collector, url, ulaw) = recording("shared-threads=true");
    play(&url, &ulaw);
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decode(&ulaw));
    let threads = threads.lock().unwrap();
    assert_eq!(threads.len(), 20);
    assert!(all_from_network(&threads), "pushed from {threads:?}");
    set_state(&p, gst::State::Null);
}

#[test]
fn audio_that_arrives_while_paused_is_dropped_and_the_rest_goes_out_on_resume() {
    arrives_while_paused(true);
}

/// The streaming thread's `create()` is under way when the element pauses
/// (BaseSrc 1.22 does not unlock it then): the chunk it takes while paused
/// is dropped like the rest, not pushed once PLAYING again. (With
/// `shared-threads` the streaming thread pushes until the pipeline has
/// played, and the same happened there now and then.)
#[test]
fn audio_a_streaming_thread_takes_while_paused_is_dropped() {
    arrives_while_paused(false);
}

fn arrives_while_paused(shared_threads: bool) {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 shared-threads={shared_threads} ! audio/x-raw,rate=8000 \
         ! fakesink name=sink sync=false"
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let ulaw: Vec<u8> = (0..1600u32).map(|i| (i * 7 % 256) as u8).collect();
    let (first, second) = ulaw.split_at(800);
    let mut call = rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        send_chunks(&mut call, first).await;
        call
    });
    collector.wait_buffers(5);

    set_state(&p, gst::State::Paused);
    let src = by_name(&p, "src");
    rt().block_on(async {
        send_chunks(&mut call, second).await;
        // Wait until the call's task has read them all (and queued them).
        let deadline = std::time::Instant::now() + PATIENCE;
        while src.property::<u64>("chunks-received") < 10 {
            assert!(std::time::Instant::now() < deadline, "chunks not read");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    assert_eq!(collector.snapshot().buffers.len(), 5, "pushed while paused");

    set_state(&p, gst::State::Playing);
    // Played now, what queued while paused would put every later buffer
    // ahead of its PTS: it is dropped, counted, and the stream goes on
    // from the next chunk, anchored anew (DISCONT).
    let third: Vec<u8> = (0..800u32).map(|i| (i * 11 % 256) as u8).collect();
    finish(call, &third);
    let got = collector.wait_eos();
    let expected: Vec<u8> = first.iter().chain(&third).copied().collect();
    assert_eq!(got.samples(), decode(&expected));
    assert!(got.buffers[5].flags().contains(gst::BufferFlags::DISCONT));
    assert_eq!(src.property::<u64>("chunks-dropped-paused"), 5);
    set_state(&p, gst::State::Null);
}

#[test]
fn a_downstream_error_stops_the_stream_with_an_error() {
    init();
    // Negotiated and PLAYING, then unlinked: the first push returns
    // not-linked, which the streaming thread would have posted as an error
    // (named as BaseSrc names it).
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=true ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false async=false",
    );
    let bus = p.bus().unwrap();
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let src = by_name(&p, "src");
    let filter = src.static_pad("src").unwrap().peer().unwrap();
    src.static_pad("src").unwrap().unlink(&filter).unwrap();
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        send_chunks(&mut call, &[0xFF; 320]).await;
        call.send_stop().unwrap();
        call.close().await;
    });
    let error = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(PATIENCE.as_secs()),
            &[gst::MessageType::Error],
        )
        .expect("an error message");
    let gst::MessageView::Error(e) = error.view() else {
        unreachable!()
    };
    assert_eq!(
        e.src().map(|s| s.name().to_string()).as_deref(),
        Some("src")
    );
    assert!(
        format!("{:?}", e.debug()).contains("reason not-linked"),
        "{:?}",
        e.debug()
    );
    set_state(&p, gst::State::Null);
}

#[test]
fn num_buffers_is_honoured_by_pushing_from_the_streaming_thread() {
    let (p, threads, collector, url, ulaw) = recording("num-buffers=5");
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, CallParams::default())
            .await
            .unwrap();
        send_chunks(&mut call, &ulaw).await;
        // The src is at EOS after 5 buffers: the call stays open until the
        // pipeline stops.
        let got = collector.wait_eos();
        assert_eq!(got.buffers.len(), 5);
        assert_eq!(got.samples(), decode(&ulaw[..5 * 160]));
        call.close().await;
    });
    assert!(
        threads
            .lock()
            .unwrap()
            .iter()
            .all(|name| !name.starts_with("twiliostream")),
        "{:?}",
        threads.lock().unwrap()
    );
    set_state(&p, gst::State::Null);
}

/// The plugin's network threads: as many as its runtime has (`runtime.rs`).
fn network_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().min(4))
        .unwrap_or(2)
}

#[test]
fn sinks_still_prerolling_hold_no_network_thread_and_every_call_flows() {
    init();
    // One call more than there are network threads, each into a sink of
    // its own (async=true, the default: the live pipeline goes on to
    // PLAYING only once every sink has had a buffer). A first buffer pushed
    // from a network thread would wait in its sink's preroll for the others,
    // holding that thread: the last call would find none left to read it.
    let n = network_threads() + 1;
    let desc: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "twiliostreamsrc name=src{i} port=0 path=/{i} shared-threads=true \
                 ! audio/x-raw,rate=8000 ! fakesink name=sink{i} sync=false"
            )
        })
        .collect();
    let p = pipeline(&desc.join(" "));
    let sinks: Vec<_> = (0..n).map(|i| by_name(&p, &format!("sink{i}"))).collect();
    let threads: Vec<_> = sinks.iter().map(record_threads).collect();
    let collectors: Vec<_> = sinks.iter().map(Collector::attach).collect();
    set_state(&p, gst::State::Playing);
    let ulaw: Vec<Vec<u8>> = (0..n as u32)
        .map(|c| {
            (0..3200u32)
                .map(|i| ((i * 13 + c * 71) % 256) as u8)
                .collect()
        })
        .collect();

    // One call after the other, each one's first chunks in its sink before
    // the next call comes.
    let mut calls = Vec::new();
    for i in 0..n {
        let url = url_of(&by_name(&p, &format!("src{i}")));
        let mut call = rt()
            .block_on(async {
                tokio::time::timeout(PATIENCE, TwilioCall::start(&url, CallParams::default())).await
            })
            .unwrap_or_else(|_| panic!("call {i} not answered: no network thread free"))
            .unwrap();
        rt().block_on(send_chunks(&mut call, &ulaw[i][..800]));
        collectors[i].wait_buffers(1);
        calls.push(call);
    }
    // Every sink has prerolled: the pipeline plays.
    let (_, state, _) = p.state(gst::ClockTime::try_from(PATIENCE).unwrap());
    assert_eq!(state, gst::State::Playing);

    rt().block_on(async {
        for (call, ulaw) in calls.iter_mut().zip(&ulaw) {
            send_chunks(call, &ulaw[800..]).await;
            call.send_stop().unwrap();
        }
        for call in calls {
            call.close().await;
        }
    });
    for i in 0..n {
        let got = collectors[i].wait_eos();
        assert_eq!(got.samples(), decode(&ulaw[i]), "call {i}");
        // The network threads push again once the pipeline plays: all of
        // what came then but the first chunk (the streaming thread may
        // have been waiting for it).
        let threads = threads[i].lock().unwrap();
        assert_eq!(threads.len(), 20, "call {i}: {threads:?}");
        assert!(
            all_from_network(&threads[6..]),
            "call {i}: pushed from {threads:?}"
        );
    }
    set_state(&p, gst::State::Null);
}

#[test]
fn a_sink_added_mid_call_gets_the_streaming_thread_and_no_discont() {
    init();
    // The call flows from the network threads; a sink added to the tee
    // (async=true) puts the pipeline back to PAUSED until it prerolls: the
    // streaming thread pushes meanwhile. The stream goes on without a gap:
    // only the first buffer of the run is DISCONT, though BaseSrc marks
    // the first its streaming thread pushes.
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=true ! audio/x-raw,rate=8000 \
         ! tee name=t ! fakesink name=sink sync=false async=false",
    );
    let sink = by_name(&p, "sink");
    let threads = record_threads(&sink);
    let collector = Collector::attach(&sink);
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let ulaw = test_ulaw();
    let (before, after) = ulaw.split_at(5 * 160);
    let call = call_sending(&url, before);
    collector.wait_buffers(5);

    let added = gst::ElementFactory::make("fakesink")
        .property("sync", false)
        .build()
        .unwrap();
    p.add(&added).unwrap();
    let tee_pad = by_name(&p, "t").request_pad_simple("src_%u").unwrap();
    tee_pad.link(&added.static_pad("sink").unwrap()).unwrap();
    added.sync_state_with_parent().unwrap();

    finish(call, after);
    let got = collector.wait_eos();
    assert_eq!(got.samples(), decode(&ulaw));
    let threads = threads.lock().unwrap();
    // (The premise: the first chunk after the sink came from the streaming thread.)
    assert_eq!(threads[5], "src:src", "{threads:?}");
    let discont: Vec<usize> = (got.buffers.iter().enumerate())
        .filter(|(_, b)| b.flags().contains(gst::BufferFlags::DISCONT))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(discont, [0], "{threads:?}");
    set_state(&p, gst::State::Null);
}
