//! Helpers of the tests of an application that embeds the elements in a
//! long-running process: bounded state changes, calls with a known
//! pattern, fixed free ports.

use gst::prelude::*;
use twilio_emulator::{CallParams, Playout, TwilioCall};

use super::sink::*;
use super::*;

/// The README's voice bot as one pipeline: the caller into a `level`, the
/// bot's voice (μ-law) from the appsrc `tts`.
pub const VOICE_BOT: &str = "twiliostreamsrc name=src port=0 ! queue ! level interval=20000000 \
    ! fakesink sync=false async=false \
    appsrc name=tts format=time is-live=true caps=audio/x-mulaw,rate=8000,channels=1 \
    ! queue ! twiliostreamsink name=sink";

/// Sets `state` on another thread, failing (instead of hanging) if that
/// does not return. The thread is gone when this returns (tests count
/// the process's threads).
pub fn set_bounded(p: &gst::Pipeline, state: gst::State) -> gst::StateChangeSuccess {
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(p2.set_state(state));
    });
    let result = rx
        .recv_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("deadlock: {state:?} did not return"));
    thread.join().unwrap();
    result.unwrap_or_else(|e| panic!("{state:?}: {e}"))
}

/// Waits for the pipeline's EOS (or fails on an ERROR), returning the
/// messages before it.
pub fn wait_eos(bus: &gst::Bus) -> Vec<gst::Message> {
    messages_until(bus, |m| {
        if let Some(gst::MessageView::Error(e)) = m.last().map(|m| m.view()) {
            panic!("ERROR {} ({:?})", e.error(), e.debug());
        }
        has_eos(m)
    })
}

/// Waits for the src's `twilio-ended` (not the pipeline's EOS: a voice
/// bot's appsrc branch does not end), failing on an ERROR before it.
pub fn wait_ended(bus: &gst::Bus, call: usize) {
    let messages = messages_until(bus, |m| has_element(m, "twilio-ended"));
    assert!(
        !messages
            .iter()
            .any(|m| matches!(m.view(), gst::MessageView::Error(_))),
        "call {call}: {messages:?}"
    );
}

/// A μ-law pattern that differs per call and per chunk.
pub fn pattern(call: usize, chunks: usize) -> Vec<u8> {
    (0..chunks * 160)
        .map(|i| (((i * 7 + call * 13) % 200) as u8).wrapping_add(20))
        .collect()
}

/// A call started on `url` whose audio Twilio "plays" at once (no
/// real-time playout): what the sink sends comes back as fast as it goes.
pub fn instant_call(url: &str) -> TwilioCall {
    call_with(url, Playout::Instant)
}

/// A call started on `url` whose audio Twilio plays in real time: marks
/// come back once what was sent before them has played.
pub fn realtime_call(url: &str) -> TwilioCall {
    call_with(url, Playout::RealTime)
}

fn call_with(url: &str, playout: Playout) -> TwilioCall {
    rt().block_on(async {
        let mut call = TwilioCall::connect_with(url, CallParams::default(), playout)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    })
}

/// One echo call through `src`'s listener: `chunks` chunks of `pattern`,
/// all echoed back, then `stop`. Returns the bytes echoed.
pub fn echo_call(url: &str, n: usize, chunks: usize) -> Vec<u8> {
    let sent = pattern(n, chunks);
    let mut call = instant_call(url);
    for chunk in sent.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= sent.len());
    call.send_stop().unwrap();
    rt().block_on(call.close());
    media_bytes(&got)
}

/// A speech-like μ-law signal (a few tones), the same for every call.
pub fn tones(chunks: usize) -> Vec<u8> {
    let pcm: Vec<i16> = (0..chunks * 160)
        .map(|n| {
            let t = n as f64 / 8000.0;
            (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1230.0 * t).sin()) as i16
        })
        .collect();
    pcm.iter()
        .map(|&s| gsttwiliostream::codec::g711::encode(s))
        .collect()
}

/// A free port, for tests that need one port across runs.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Starts a call on `url` with `n` chunks of the same tone.
pub fn start_call(url: &str, n: usize) -> TwilioCall {
    rt().block_on(async {
        let mut call = TwilioCall::connect_with(url, CallParams::default(), Playout::Instant)
            .await
            .unwrap();
        call.begin().unwrap();
        for chunk in tones(n).chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call
    })
}
