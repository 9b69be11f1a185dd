//! A call on hold (both pipelines of a src and its sink, paired by
//! `call-name`, PAUSED) whose caller hangs up meanwhile, and whose sink
//! gets its EOS during the hold (its non-live `appsrc` ends). The sink's
//! EOS waits for the src to post the call's `twilio-stop`, and "a pause
//! holds the wait until PLAYING" (README, "Ending the stream"): the
//! sink's pipeline goes back to PLAYING at once, and its EOS comes after
//! the src, playing again, posted `twilio-stop`. (The wait ran under the
//! sink's preroll lock during the hold: PLAYING waited the whole 2 s for
//! it, and the EOS then came before the stop.)

mod common;

use std::sync::{Mutex, mpsc};
use std::time::Instant;

use common::app::*;
use common::sink::*;
use common::*;
use gst::prelude::*;

/// Records when the first message `what` is posted on `bus`.
fn when_posted(bus: &gst::Bus, what: fn(&gst::Message) -> bool) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(Some(tx));
    bus.set_sync_handler(move |_, msg| {
        if what(msg)
            && let Some(tx) = tx.lock().unwrap().take()
        {
            let _ = tx.send(Instant::now());
        }
        gst::BusSyncReply::Pass
    });
    rx
}

/// The src's pipeline, the sink's, and their buses' records.
struct Held {
    a: gst::Pipeline,
    b: gst::Pipeline,
    src: gst::Element,
    app: gst::Element,
    stop_at: mpsc::Receiver<Instant>,
    eos_at: mpsc::Receiver<Instant>,
}

/// A call played into by the bot, then the hold; the caller hangs up
/// during it, and the bot's audio ends: the EOS has reached the sink.
fn eos_during_a_hold(name: &str) -> Held {
    let a = pipeline(&format!(
        "twiliostreamsrc name=src port=0 call-name={name} ! fakesink async=false"
    ));
    let b = pipeline(&format!(
        "appsrc name=app format=time caps={PCM_8K} \
         ! twiliostreamsink name=sink call-name={name} sync=false"
    ));
    let (src, sink, app) = (by_name(&a, "src"), by_name(&b, "sink"), by_name(&b, "app"));
    let stop_at = when_posted(&a.bus().unwrap(), |m| {
        m.structure().is_some_and(|s| s.name() == "twilio-stop")
    });
    let eos_at = when_posted(&b.bus().unwrap(), |m| m.type_() == gst::MessageType::Eos);
    // The EOS reaching the sink (it is handled right after).
    let (eos_in_tx, eos_in) = mpsc::channel();
    let eos_in_tx = Mutex::new(eos_in_tx);
    sink.static_pad("sink").unwrap().add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(gst::PadProbeData::Event(e)) = &info.data
                && e.type_() == gst::EventType::Eos
            {
                let _ = eos_in_tx.lock().unwrap().send(());
            }
            gst::PadProbeReturn::Ok
        },
    );
    set_bounded(&a, gst::State::Playing);
    set_state(&b, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    push(&app, &sine(300.0, 8000.0, 6000.0, 800));
    receive_until(&mut call, |got| media_bytes(got).len() >= 800);

    set_bounded(&b, gst::State::Paused);
    set_bounded(&a, gst::State::Paused);
    call.send_stop().unwrap();
    rt().block_on(call.close());
    let deadline = Instant::now() + PATIENCE;
    while sink.property::<bool>("connected") {
        assert!(Instant::now() < deadline, "the sink still has the call");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    end_of_stream(&app);
    eos_in
        .recv_timeout(PATIENCE)
        .expect("no EOS reached the sink");
    Held {
        a,
        b,
        src,
        app,
        stop_at,
        eos_at,
    }
}

#[test]
fn an_eos_during_a_hold_waits_for_playing_then_for_twilio_stop() {
    let Held {
        a,
        b,
        stop_at,
        eos_at,
        ..
    } = eos_during_a_hold("on-hold");
    // The end of the hold: the sink's pipeline first, PLAYING (not only
    // asked for) before the src's.
    set_bounded(&b, gst::State::Playing);
    let (ret, state, _) = b.state(gst::ClockTime::from_seconds(PATIENCE.as_secs()));
    assert_eq!(
        (ret, state),
        (Ok(gst::StateChangeSuccess::Success), gst::State::Playing)
    );
    let resumed = Instant::now();
    set_bounded(&a, gst::State::Playing);
    let eos = eos_at.recv_timeout(PATIENCE).expect("no EOS");
    let stop = stop_at.recv_timeout(PATIENCE).expect("no twilio-stop");
    assert!(eos > resumed, "the EOS came during the hold");
    assert!(stop < eos, "the EOS came before twilio-stop");
    set_bounded(&b, gst::State::Null);
    set_bounded(&a, gst::State::Null);
}

/// The application, seeing the caller gone, stops both pipelines from
/// the hold (READY): the sink's EOS, waiting for PLAYING, is dropped, the
/// state changes return, and the next call through both plays the bot's
/// audio exactly.
#[test]
fn stopped_from_a_hold_with_its_eos_and_the_next_call() {
    let Held { a, b, src, app, .. } = eos_during_a_hold("stopped-on-hold");
    set_bounded(&b, gst::State::Ready);
    set_bounded(&a, gst::State::Ready);
    let _ = drain_messages(&b.bus().unwrap());
    set_bounded(&a, gst::State::Playing);
    set_state(&b, gst::State::Playing);
    let mut call = instant_call(&url_of(&src));
    let prompt = sine(500.0, 8000.0, 6000.0, 480);
    push(&app, &prompt);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= prompt.len());
    let expected: Vec<u8> = prompt
        .iter()
        .map(|&s| gsttwiliostream::codec::g711::encode(s))
        .collect();
    assert_eq!(media_bytes(&got), expected);
    call.send_stop().unwrap();
    rt().block_on(call.close());
    set_bounded(&b, gst::State::Null);
    set_bounded(&a, gst::State::Null);
}
