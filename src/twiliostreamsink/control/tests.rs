use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use gst::subclass::prelude::*;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::codec::WireFormat;
use crate::twiliostreamsink::framing::{Framer, Input};
use crate::twiliostreamsink::imp::State;

#[test]
fn mark_names_are_measured_as_sent() {
    assert_eq!(escaped_len("prompt-1"), 8);
    assert_eq!(escaped_len("a\"b"), 4);
    assert_eq!(escaped_len("\u{1}"), 6);
    assert_eq!(escaped_len("é"), 2);
}

/// What a render does under the state lock: takes `input` and sends its
/// whole frames.
fn render(state: &mut State, input: &[u8]) {
    state.framer.push(input).unwrap();
    state.send_frames(Take::WholeFrames).unwrap();
}

/// A render comes between the clear signal dropping the partial frame and
/// its queuing the clear: it must wait for the clear to be queued (the
/// state lock is held across both), so that Twilio gets the clear and then
/// the later input, whole. Taken in between, its frame went ahead of the
/// clear (which then dropped it, or came after it). The hook stands at
/// that point on the signal's thread: a render that can take the lock
/// there takes it and renders; one that cannot renders once the signal
/// returns, as a streaming thread blocked on the lock would.
#[test]
fn a_render_during_a_clear_goes_out_after_the_clear() {
    gst::init().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (call, mut twilio) = runtime.block_on(crate::call::tests::call());
    let sink = gst::glib::Object::new::<crate::TwilioStreamSink>();
    let imp = sink.imp();
    {
        let mut state = imp.state.lock().unwrap();
        state.call = Some(call.clone());
        state.stream_sid = Some("MZ1".to_owned());
        state.framer = Framer::new(160);
        state.framer.set_target(WireFormat::PCMU, 0);
        state.framer.set_input(Input::Mulaw).unwrap();
        // Half a frame of earlier audio, held: the clear drops it.
        render(&mut state, &[0x11; 80]);
        assert!(state.framer.pending_ns() > 0);
    }
    let later = [0x22u8; 160];
    let rendered_between = Arc::new(AtomicBool::new(false));
    let hook_sink = sink.clone();
    let flag = rendered_between.clone();
    BEFORE_CLEAR_QUEUED.set(Some(Box::new(move || {
        if let Ok(mut state) = hook_sink.imp().state.try_lock() {
            render(&mut state, &later);
            flag.store(true, Ordering::SeqCst);
        }
    })));
    assert!(imp.clear("test"));
    if !rendered_between.load(Ordering::SeqCst) {
        render(&mut imp.state.lock().unwrap(), &later);
    }
    // Twilio gets the clear, then the later frame, and nothing else.
    let events: Vec<(String, Option<String>)> = runtime.block_on(async {
        let mut events = Vec::new();
        while events.len() < 2 {
            let next = tokio::time::timeout(Duration::from_secs(10), twilio.next()).await;
            let Ok(Some(Ok(Message::Text(text)))) = next else {
                break;
            };
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let payload = json["media"]["payload"].as_str().map(str::to_owned);
            events.push((json["event"].as_str().unwrap().to_owned(), payload));
        }
        events
    });
    use base64::Engine;
    let payload = base64::engine::general_purpose::STANDARD.encode(later);
    assert_eq!(
        events,
        [
            ("clear".to_owned(), None),
            ("media".to_owned(), Some(payload))
        ]
    );
    call.close();
}
