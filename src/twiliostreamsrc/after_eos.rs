//! The stream ended before its call: an EOS sent to the element (an
//! application's `send_event(eos)` on the pipeline), or downstream answering
//! a push with EOS. Nothing more is pushed, but the call goes on (a paired
//! sink plays out, then ends it) and what it brings is still the
//! application's to hear: the src reads the call's events on a network
//! thread for their messages alone (`twilio-mark`, `twilio-dtmf`,
//! `twilio-stop`, `twilio-ended`, the WARNING of a dropped call), until the
//! call's end. So too when BaseSrc's loop ends the stream by itself
//! (`num-buffers`, or EOS from downstream to the streaming thread). One
//! reader at a time: the drains' own flags (`shared_threads.rs`), so that a
//! drain under way finishes first and its messages keep their order.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};
use crate::call::CallEvent;
use crate::lock::Locked;
use crate::messages;
use crate::runtime::RUNTIME;

impl TwilioStreamSrc {
    /// The streaming thread pushes what it created: BaseSrc's loop may then
    /// end the stream by itself, without a word to the src (`num-buffers`
    /// reached, or downstream answering a push with EOS). A probe watches
    /// the EOS leave the pad while that thread pushes, not while network
    /// threads do (a probe costs every push): the stream ends there, not
    /// the call, as at an EOS event (a paired sink plays out and waits for
    /// `twilio-ended`). The src's own EOS at the call's end finds it
    /// finished, an EOS event's finds it read already.
    pub(super) fn watch_eos_out(&self) {
        let mut watch = self.app_eos.watch.locked();
        if watch.is_some() {
            return;
        }
        let src = self.obj().downgrade();
        // (Nothing in it can panic; the reading runs contained.)
        *watch =
            self.obj()
                .src_pad()
                .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                    if let Some(gst::PadProbeData::Event(event)) = &info.data
                        && event.type_() == gst::EventType::Eos
                        && let Some(src) = src.upgrade()
                    {
                        src.imp().on_network(Self::read_after_eos);
                    }
                    gst::PadProbeReturn::Ok
                });
    }

    /// The network threads push again (or the element stops).
    pub(super) fn unwatch_eos_out(&self) {
        let id = self.app_eos.watch.locked().take();
        if let Some(id) = id {
            self.obj().src_pad().remove_probe(id);
        }
    }

    /// The stream has ended (or is ending) by an EOS while the call is on:
    /// from now on the call's events are read for their messages only.
    pub(super) fn read_after_eos(&self) {
        let call = {
            let mut state = self.state.locked();
            if state.after_eos || state.finished || state.registration.is_none() {
                return;
            }
            // (`start` forgets the last run's call. A call's events out of
            // the state are in `create`'s hands, which reads them after.)
            if state.call.is_some() && state.events.is_none() {
                return;
            }
            state.after_eos = true;
            if state.call.is_none() {
                // Under the state's lock: a call `create` takes meanwhile
                // comes after, and finds the stream over.
                let hung_up = self.refuse_calls();
                drop(state);
                if let Some(call) = hung_up {
                    call.close();
                }
                return;
            }
            state.call.clone()
        };
        let Some(call) = call else {
            return;
        };
        gst::debug!(
            CAT,
            imp = self,
            "{call:?}: the stream ended before the call: posting its messages only"
        );
        let src = self.obj().clone();
        // (Replaces a shared-threads src's drains: `stop` drops it.)
        call.set_consumer(Some(Arc::new(move || {
            src.imp().on_network(Self::post_after_eos);
        })));
        // What was queued already.
        let src = self.obj().downgrade();
        RUNTIME.spawn(async move {
            if let Some(src) = src.upgrade() {
                src.imp().on_network(Self::post_after_eos);
            }
        });
    }

    /// The stream ends before any call: the src takes no call until it
    /// starts again (or a flush drops the EOS before it is carried out),
    /// and one that reached it just then is hung up. A caller would
    /// otherwise be taken into a stream that is over, in silence for good.
    /// Later calls go to another element of the path, or wait and are
    /// refused as when the src holds a call (`pending-timeout`).
    /// Returns the call to hang up (outside the state's lock).
    fn refuse_calls(&self) -> Option<Arc<crate::call::Call>> {
        gst::info!(CAT, imp = self, "EOS before any call: taking no call");
        self.app_eos.refusing.store(true, Ordering::SeqCst);
        self.slot().close()
    }

    /// A flush dropped an EOS sent to the element before `create` carried
    /// it out: the stream goes on, and the call's audio with it (what came
    /// meanwhile was read for its messages only), its fills too: the fill
    /// timer, which may have looked meanwhile and waits, looks again.
    pub(super) fn resume_after_dropped_eos(&self) {
        {
            let mut state = self.state.locked();
            if !state.after_eos || state.finished {
                return;
            }
            state.after_eos = false;
            gst::debug!(CAT, imp = self, "the EOS was flushed: the stream goes on");
            if let (true, Some(registration)) = (
                self.app_eos.refusing.swap(false, Ordering::SeqCst),
                &state.registration,
            ) {
                registration.reopen(&self.slot());
            }
            if let Some(call) = &state.call {
                call.set_consumer(self.shared.enabled().then(|| self.network_consumer()));
            }
        }
        if self.shared.enabled() {
            self.shared.timer.notify_one();
        }
    }

    /// Posts the messages of what the call queued, unless a drain (or
    /// another reader) runs: that one goes round again and posts them.
    pub(super) fn post_after_eos(&self) {
        let shared = &self.shared;
        shared.requested.store(true, Ordering::SeqCst);
        while !shared.draining.swap(true, Ordering::SeqCst) {
            while shared.requested.swap(false, Ordering::SeqCst) {
                self.post_queued();
            }
            shared.draining.store(false, Ordering::SeqCst);
            // (A streaming thread may wait for the last drain to end.)
            shared.fallen_back.notify_one();
            if !shared.requested.load(Ordering::SeqCst) {
                break;
            }
        }
    }

    /// Each event the call queued, read for its message, until the queue
    /// is empty or the call's end was read.
    pub(super) fn post_queued(&self) {
        loop {
            let event = {
                let mut state = self.state.locked();
                // (Not after a flush dropped the EOS: the stream goes on.)
                if state.finished || !state.after_eos {
                    return;
                }
                let Some(events) = state.events.as_mut() else {
                    return;
                };
                match events.try_recv() {
                    Poll::Ready(event) => event,
                    Poll::Pending => return,
                }
            };
            match event {
                // (Received and counted by the call; nothing is pushed.)
                Some(CallEvent::Media(_)) => {}
                Some(CallEvent::Dtmf(digit)) => self.post(messages::dtmf(&digit)),
                Some(CallEvent::Mark(name)) => self.post(messages::mark(&name)),
                Some(CallEvent::ProviderError(text)) => self.warn_provider(&text),
                // The stop, the close, our own end or the task's: their
                // messages, and the src is finished (what that would push
                // goes nowhere).
                end => {
                    let _ = self.process(end);
                    self.state.locked().pending_events.clear();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
