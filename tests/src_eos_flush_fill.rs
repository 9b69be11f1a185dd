//! With `shared-threads`, a flush that drops an EOS sent to the src (not
//! carried out yet) lets the stream go on, and its silences are filled as
//! before: the fill timer, which looked while the stream was marked ended,
//! looks again (without `shared-threads` the streaming thread fills, as
//! before). Alone in its binary: it installs log functions.

mod common;

use common::app::*;
use common::*;
use gst::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A src's DEBUG lines, as they are logged.
#[derive(Clone, Default)]
struct Logged(Arc<Mutex<Vec<String>>>);

impl Logged {
    /// Records what `src` logs (at DEBUG or above).
    fn install(src: &gst::Element) -> Logged {
        let logged = Logged::default();
        let lines = logged.0.clone();
        let src = src.as_ptr() as usize;
        gst::log::remove_default_log_function();
        gst::log::set_threshold_for_name("twiliostreamsrc", gst::DebugLevel::Debug);
        gst::log::add_log_function(move |cat, _, _, _, _, object, message| {
            if cat.name() == "twiliostreamsrc"
                && object.is_some_and(|o| o.as_ptr() as usize == src)
                && let Some(m) = message.get()
            {
                lines.lock().unwrap().push(m.to_string());
            }
        });
        logged
    }

    /// Waits until a line containing `what` was logged.
    fn wait(&self, what: &str) {
        until(&format!("logged: {what}"), || {
            self.0.lock().unwrap().iter().any(|l| l.contains(what))
        });
    }
}

/// Waits (up to PATIENCE) until `done`.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What reaches the sink: a buffer's bytes, or a GAP (None).
type Seen = Arc<Mutex<Vec<Option<Vec<u8>>>>>;

fn seen_at(sink: &gst::Element) -> Seen {
    let seen = Seen::default();
    let s = seen.clone();
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(b)) if b.flags().contains(gst::BufferFlags::GAP) => {
                    s.lock().unwrap().push(None)
                }
                Some(gst::PadProbeData::Buffer(b)) => s
                    .lock()
                    .unwrap()
                    .push(Some(b.map_readable().unwrap().to_vec())),
                Some(gst::PadProbeData::Event(e)) if e.type_() == gst::EventType::Gap => {
                    s.lock().unwrap().push(None)
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

/// The EOS is sent while the streaming thread is held pushing the first
/// buffer, and a flush from downstream drops it (the stream goes on): a
/// silence after the call's audio from then on is filled with a GAP.
///
/// With `shared-threads` the streaming thread pushes the first buffer too
/// (until the pipeline plays, which it cannot while its sink has no
/// buffer), and the fill timer looks (woken by a change of `latency`)
/// while the stream is marked ended; the silence comes once the pipeline
/// plays and the network threads push again, so that the fill is the
/// timer's. Without `shared-threads` the streaming thread fills.
fn a_silence_after_a_flushed_eos_is_filled(shared: bool) {
    init();
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 shared-threads={shared} ! audio/x-mulaw \
         ! fakesink name=sink sync=false"
    ));
    let src = by_name(&p, "src");
    let logged = Logged::install(&src);
    let seen = seen_at(&by_name(&p, "sink"));
    let pad = src.static_pad("src").unwrap();
    let (hold, held) = common::src::hold_first_buffer(&pad);
    set_bounded(&p, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    call.send_media(&pattern(1, 1)).unwrap();
    held.recv_timeout(PATIENCE)
        .expect("the first buffer pushed");
    if shared {
        logged.wait("not PLAYING yet: the streaming thread pushes");
    }
    // Returns at once: the held streaming thread is to carry it out.
    let (sent_tx, sent) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        let _ = sent_tx.send(p2.send_event(gst::event::Eos::new()));
    });
    assert!(sent.recv_timeout(PATIENCE).expect("send_event returned"));
    if shared {
        // The fill timer looks, and finds the stream ended.
        let latency = src.property::<u32>("latency");
        src.set_property("latency", latency);
        logged.wait("the stream ended: the fill timer");
    }
    // From downstream, on the pad: the EOS is dropped.
    assert!(pad.send_event(gst::event::FlushStart::new()));
    pad.remove_probe(hold);
    assert!(pad.send_event(gst::event::FlushStop::new(true)));
    logged.wait("the EOS was flushed: the stream goes on");
    // The sink prerolls, the pipeline plays (and with `shared-threads` the
    // streaming thread hands the pushes back to the network threads).
    call.send_media(&pattern(2, 1)).unwrap();
    if shared {
        logged.wait("PLAYING: the network threads push again");
    }
    let audio = pattern(3, 3);
    for chunk in audio.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    // Then nothing: the silence is filled.
    until("a GAP after the call's audio", || {
        let seen = seen.lock().unwrap();
        let Some(last) = seen.iter().rposition(Option::is_some) else {
            return false;
        };
        let bytes: Vec<u8> = seen[..=last].iter().flatten().flatten().copied().collect();
        bytes.ends_with(&audio) && seen[last..].iter().any(Option::is_none)
    });
    call.send_stop().unwrap();
    wait_eos(&p.bus().unwrap());
    rt().block_on(call.close());
    set_bounded(&p, gst::State::Null);
}

#[test]
fn a_silence_after_a_flushed_eos_is_filled_shared_threads() {
    a_silence_after_a_flushed_eos_is_filled(true);
}

#[test]
fn a_silence_after_a_flushed_eos_is_filled_streaming_thread() {
    a_silence_after_a_flushed_eos_is_filled(false);
}
