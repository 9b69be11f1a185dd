//! When the sink listens itself, nobody else reads the call's events: a task
//! posts them as bus messages, the way the src would. Playing
//! audio into the call is `imp.rs`'s.

use std::sync::Arc;

use gst::prelude::*;
use gst::subclass::prelude::*;
use tokio::task::JoinHandle;

use super::imp::CAT;
use crate::call::{CallEvent, Slot};
use crate::messages;
use crate::runtime::RUNTIME;

/// Waits for the call of `slot` and posts its events from `sink` until the
/// call ends or the sink is gone.
pub(super) fn spawn(sink: &super::TwilioStreamSink, slot: Arc<Slot>) -> JoinHandle<()> {
    let element = sink.upcast_ref::<gst::Element>().downgrade();
    RUNTIME.spawn(async move {
        let call = slot.wait().await;
        let Some(mut events) = call.take_events() else {
            return;
        };
        if let Some(e) = element.upgrade() {
            call.log_to(*CAT, &e);
            e.notify("connected");
        }
        let mut stream_sid = String::new();
        while let Some(event) = events.recv().await {
            let Some(e) = element.upgrade() else { return };
            let sink = e.downcast_ref::<super::TwilioStreamSink>().unwrap();
            match event {
                CallEvent::Start(start) => {
                    stream_sid = start.stream_sid.clone();
                    messages::post(&e, messages::start(&start));
                }
                CallEvent::Dtmf(digit) => messages::post(&e, messages::dtmf(&digit)),
                CallEvent::Mark(name) => messages::post(&e, messages::mark(&name)),
                CallEvent::Stop(stop) => {
                    let stats = sink.imp().stats_structure();
                    messages::post(&e, messages::stop(&stop, &stream_sid, stats));
                }
                CallEvent::Closed(reason) => {
                    gst::element_warning!(e, gst::ResourceError::Write, ["{}", reason]);
                }
                CallEvent::Ended(why) => {
                    let stats = sink.imp().stats_structure();
                    messages::post(&e, messages::ended(&why, &stream_sid, stats));
                }
                CallEvent::Media(_) => {}
            }
        }
    })
}
