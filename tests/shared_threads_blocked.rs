//! A `shared-threads` src whose push blocks (a pad probe held to relink,
//! as GStreamer's docs do it) holds the network thread it pushes from:
//! the other calls of the process go on meanwhile. (Before, a worker that
//! went to sleep while the held one polled the network slept on, and
//! every call stopped until the probe went.) The push held is a chunk's,
//! or the fill's silence for a silent call. Alone in its binary: it counts
//! on the runtime's threads being its calls' only.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, TwilioCall};

const CALLS: usize = 6;
/// How long the first call's probe holds its push.
const HELD: Duration = Duration::from_millis(1500);

/// A src into a fakesink, PLAYING, and its buffers counted.
fn counted() -> (gst::Pipeline, Arc<AtomicUsize>) {
    let p = pipeline("twiliostreamsrc name=src port=0 ! fakesink name=sink");
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    by_name(&p, "sink").static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER,
        move |_, _| {
            c.fetch_add(1, Ordering::SeqCst);
            gst::PadProbeReturn::Ok
        },
    );
    set_state(&p, gst::State::Playing);
    (p, count)
}

/// A caller sending a 20 ms chunk every 20 ms for `seconds` (only the
/// first `chunks` of them, if given: then silent, as a held call), then stop.
async fn caller(url: String, seconds: u64, chunks: Option<u64>) {
    let mut call = TwilioCall::start(&url, CallParams::default())
        .await
        .unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..seconds * 50 {
        tick.tick().await;
        if chunks.is_none_or(|c| n < c) {
            call.send_media(&[0x55; 160]).unwrap();
        }
    }
    call.send_stop().unwrap();
    call.close().await;
}

#[test]
fn a_push_held_by_a_blocking_probe_holds_no_other_call() {
    init();
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        // One network thread: every call waits with it (README, "Threads").
        return;
    }
    for round in 0..4 {
        // The last round's held call is silent: the push held is the fill's
        // (its silence), from the fill timer's task.
        let silent = round == 3;
        let (pipelines, counts): (Vec<_>, Vec<_>) = (0..CALLS).map(|_| counted()).unzip();
        let callers: Vec<_> = pipelines
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // Chunks of different calls at moments of their own, as
                // real callers send them: each wakes a thread alone.
                std::thread::sleep(Duration::from_millis(3));
                let chunks = (silent && i == 0).then_some(30);
                rt().spawn(caller(url_of(&by_name(p, "src")), 4, chunks))
            })
            .collect();
        // Every call flowing.
        for count in &counts {
            while count.load(Ordering::SeqCst) < 25 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if silent {
            // Past the fill deadline (300 ms) of the first call's silence.
            while counts[0].load(Ordering::SeqCst) < 30 {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let pad = by_name(&pipelines[0], "src").static_pad("src").unwrap();
        let probe = pad
            .add_probe(gst::PadProbeType::BLOCK_DOWNSTREAM, |_, _| {
                gst::PadProbeReturn::Ok
            })
            .unwrap();
        let before: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
        std::thread::sleep(HELD);
        let during: Vec<usize> = counts
            .iter()
            .zip(&before)
            .map(|(c, b)| c.load(Ordering::SeqCst) - b)
            .collect();
        pad.remove_probe(probe);
        for caller in callers {
            rt().block_on(caller).unwrap();
        }
        for p in &pipelines {
            set_state(p, gst::State::Null);
        }
        // 75 chunks came for each call meanwhile; the held one's wait.
        assert!(during[0] <= 1, "round {round}: {during:?}");
        for (i, n) in during.iter().enumerate().skip(1) {
            assert!(
                *n >= 25,
                "round {round}: call {i} got {n} buffers in {HELD:?}: {during:?}"
            );
        }
    }
}
