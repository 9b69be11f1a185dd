//! Following the src to its next call when two threads look at once.

use std::sync::Arc;

use gst::subclass::prelude::*;

use super::Ended;
use crate::call::Slot;

/// A paired sink whose call is over, the src's next stream started and its
/// next call in the slot: one thread (a signal's) lets go of the old call
/// and adopts the next one while another (the streaming thread, at a
/// buffer) had seen the old one over. That one must look again, not keep
/// the old call: kept, its buffer got EOS and ended the next call's stream.
#[test]
fn a_call_let_go_of_on_another_thread_is_looked_at_again() {
    gst::init().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (old, _twilio_old) = runtime.block_on(crate::call::tests::call());
    let (next, _twilio_next) = runtime.block_on(crate::call::tests::call());
    old.close();
    assert!(!old.is_open() && !old.end_unread());
    let slot = Slot::new();
    assert!(slot.offer(&next));
    let sink = gst::glib::Object::new::<crate::TwilioStreamSink>();
    let imp = sink.imp();
    {
        let mut state = imp.state.lock().unwrap();
        state.slot = Some(slot);
        state.call = Some(old.clone());
        state.stream_sid = Some("MZ1".to_owned());
        state.next_stream = true;
    }
    // The streaming thread saw `old` over; before it looks further, a
    // signal's thread follows the src.
    let seen = old.clone();
    let (adopted, _) = imp.adopt_call().expect("the next call adopted");
    assert!(Arc::ptr_eq(&adopted, &next));
    assert_eq!(imp.let_go_of_ended_call(&seen), Ended::LetGo);
    assert_eq!(imp.ensure_call(), Ok(true));
    assert!(Arc::ptr_eq(
        imp.state.lock().unwrap().call.as_ref().unwrap(),
        &next
    ));
    next.close();
}
