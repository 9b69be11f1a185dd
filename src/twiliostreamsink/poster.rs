//! When the sink listens itself, nobody else reads the call's events: a task
//! posts them as bus messages, the way the src would, and tells when it has
//! posted the end of the call (so that EOS can follow it, as the src's
//! does). Playing audio into the call is `imp.rs`'s.

use std::sync::Arc;

use gst::prelude::*;
use gst::subclass::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::imp::CAT;
use crate::call::{CallEvent, Slot};
use crate::messages;
use crate::runtime::RUNTIME;

/// The task posting a call's messages.
pub(super) struct Poster {
    task: JoinHandle<()>,
    /// True once the end of the call on Twilio's side (`twilio-stop`, or the
    /// warning of a connection that ended without one) is posted.
    over: watch::Receiver<bool>,
}

impl Poster {
    pub(super) fn abort(&self) {
        self.task.abort();
    }

    pub(super) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the end of the call is posted, or there is nothing more
    /// to post.
    pub(super) fn call_over(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut over = self.over.clone();
        async move {
            let _ = over.wait_for(|&over| over).await;
        }
    }

    /// Waits until every message of the call is posted.
    pub(super) async fn finished(self) {
        let _ = self.task.await;
    }
}

/// Waits for the call of `slot` and posts its events from `sink` until the
/// call ends or the sink is gone.
pub(super) fn spawn(sink: &super::TwilioStreamSink, slot: Arc<Slot>) -> Poster {
    let element = sink.upcast_ref::<gst::Element>().downgrade();
    let (over_tx, over) = watch::channel(false);
    let task = RUNTIME.spawn(async move {
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
            let end = matches!(
                event,
                CallEvent::Stop(_) | CallEvent::Closed(_) | CallEvent::Ended(_)
            );
            // A panic is contained, and the sink stops (`panicked.rs`).
            let posted = sink.imp().on_network(|| match event {
                CallEvent::Start(start) => {
                    stream_sid = start.stream_sid.clone();
                    messages::post(&e, messages::start(&start));
                }
                CallEvent::Dtmf(digit) => messages::post(&e, messages::dtmf(&digit)),
                CallEvent::Mark(name) => messages::post(&e, messages::mark(&name)),
                CallEvent::ProviderError(text) => {
                    gst::element_warning!(e, gst::StreamError::Failed, ("{}", text));
                }
                CallEvent::Stop(stop) => {
                    let stats = sink.imp().stats_structure();
                    messages::post(&e, messages::stop(&stop, &stream_sid, stats));
                    over_tx.send_replace(true);
                }
                CallEvent::Closed(reason) => {
                    gst::element_warning!(e, gst::ResourceError::Write, ("{}", reason));
                    over_tx.send_replace(true);
                }
                CallEvent::Ended(why) => {
                    let stats = sink.imp().stats_structure();
                    messages::post(&e, messages::ended(&why, &stream_sid, stats));
                }
                CallEvent::Media(_) => {}
            });
            if posted.is_none() {
                return;
            }
            if end {
                // Posted: the sink may answer its buffers with EOS.
                events.end_handled();
            }
        }
    });
    Poster { task, over }
}
