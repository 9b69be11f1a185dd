//! Finding the call, in this order: the src with the same `call-name`; else
//! the one twiliostreamsrc of the sink's own pipeline; else the sink listens
//! itself (host, port, path) and takes the next call, posting the call's
//! messages the way the src would. Done on READY → PAUSED (`connect`) and
//! undone on PAUSED → READY (`disconnect`); `ensure_call` waits, cancellably,
//! for the call's `start` before the first buffer.

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::framing::Framer;
use super::imp::{CAT, State, TwilioStreamSink};
use super::{poster, properties};
use crate::call::{self, Slot};
use crate::wait::wait;

impl TwilioStreamSink {
    /// The twiliostreamsrc elements of the sink's top-level bin.
    fn srcs_in_pipeline(&self) -> Vec<crate::TwilioStreamSrc> {
        let mut top: gst::Object = self.obj().clone().upcast();
        while let Some(parent) = top.parent() {
            top = parent;
        }
        let Ok(bin) = top.downcast::<gst::Bin>() else {
            return Vec::new();
        };
        bin.iterate_recurse()
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.downcast::<crate::TwilioStreamSrc>().ok())
            .collect()
    }

    /// Waits (cancellably) until the call has started; EOS if the call ended
    /// instead, flushing if cancelled.
    pub(super) fn ensure_call(&self) -> Result<(), gst::FlowError> {
        let adopted = {
            let state = self.state.lock().unwrap();
            match (&state.call, &state.stream_sid) {
                // A call that ended takes buffers (dropping them) until its
                // consumer has read its end: EOS from here would stop a src
                // upstream before it posts that end.
                (Some(call), Some(_)) => Some(call.is_open() || call.end_unread()),
                // Another sink plays into the call (an ERROR said so).
                _ if state.refused => return Err(gst::FlowError::Error),
                _ => None,
            }
        };
        // The call adopted already (every buffer: no clones, one lock), or
        // one that can be without waiting.
        if let Some(open) = adopted.or_else(|| {
            self.adopt_call()
                .map(|(c, _)| c.is_open() || c.end_unread())
        }) {
            return if open {
                Ok(())
            } else {
                Err(gst::FlowError::Eos)
            };
        }
        let slot = self
            .state
            .lock()
            .unwrap()
            .slot
            .clone()
            .ok_or(gst::FlowError::Flushing)?;
        gst::debug!(CAT, imp = self, "waiting for a call");
        let call = wait(&self.canceller, slot.wait()).map_err(|_| gst::FlowError::Flushing)?;
        gst::debug!(CAT, imp = self, "{call:?}: waiting for its start");
        let start = wait(&self.canceller, call.started()).map_err(|_| gst::FlowError::Flushing)?;
        if start.is_none() {
            gst::info!(CAT, imp = self, "{call:?} ended before it started");
            return Err(gst::FlowError::Eos);
        }
        match self.adopt(call) {
            Some((call, _)) if call.is_open() => Ok(()),
            _ if self.state.lock().unwrap().refused => Err(gst::FlowError::Error),
            _ => Err(gst::FlowError::Eos),
        }
    }

    /// Finds the call's slot (pairing, or listening itself). Done on READY →
    /// PAUSED, like the src, so that properties set in READY apply.
    pub(super) fn connect(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let mut state = State {
            framer: Framer::new(settings.chunk_ms as usize * 8),
            ..State::default()
        };
        if let Some(name) = &settings.call_name {
            gst::info!(
                CAT,
                imp = self,
                "pairing with the src of call-name {name:?}"
            );
            state.slot = Some(call::named_slot(name));
        } else {
            let srcs = self.srcs_in_pipeline();
            match srcs.as_slice() {
                [src] => {
                    gst::info!(CAT, imp = self, "pairing with {}", src.name());
                    state.slot = Some(src.slot());
                }
                [] => {
                    let slot = Slot::new();
                    let registration = settings.endpoint.register(slot.clone())?;
                    let addr = registration.local_addr();
                    gst::info!(
                        CAT,
                        imp = self,
                        "no twiliostreamsrc to pair with: listening on ws://{addr}{}",
                        settings.endpoint.path
                    );
                    state.bound_port = addr.port() as u32;
                    state.registration = Some(registration);
                    state.poster = Some(poster::spawn(&self.obj(), slot.clone()));
                    state.slot = Some(slot);
                }
                several => {
                    return Err(gst::error_msg!(
                        gst::ResourceError::Settings,
                        [
                            "{} twiliostreamsrc elements in this pipeline: set call-name on the \
                             sink and on the src it should play into",
                            several.len()
                        ]
                    ));
                }
            }
        }
        let listening = state.registration.is_some();
        *self.state.lock().unwrap() = state;
        if listening {
            self.obj().notify("bound-port");
        } else {
            let ignored = properties::listening_properties_set(&settings.endpoint);
            if !ignored.is_empty() {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Settings,
                    [
                        "{} ignored: the sink plays into the call of a twiliostreamsrc \
                         and does not listen itself",
                        ignored.join(", ")
                    ]
                );
            }
        }
        Ok(())
    }

    /// PLAYING → PAUSED holds the call's audio in its writer (Twilio plays
    /// out what it has, at most the lead); PAUSED → PLAYING goes on.
    pub(super) fn pause_call(&self, paused: bool) {
        let call = self.state.lock().unwrap().call.clone();
        if let Some(call) = call {
            gst::debug!(CAT, imp = self, "{call:?}: paused {paused}");
            call.pause_writer(paused);
        }
    }

    /// Undoes [`connect`](Self::connect) on PAUSED → READY: stops listening
    /// and hangs up a call of its own.
    pub(super) fn disconnect(&self) {
        let state = std::mem::take(&mut *self.state.lock().unwrap());
        if let Some(poster) = &state.poster {
            poster.abort();
        }
        // A call the sink took itself is hung up; a src's call is the src's.
        if let Some(registration) = state.registration {
            drop(registration);
            if let Some(call) = state.slot.as_ref().and_then(|s| s.take()) {
                gst::info!(CAT, imp = self, "{call:?}: closing");
                call.close();
            }
            self.obj().notify("bound-port");
        }
        if let Some(call) = &state.call {
            call.hot.clear(&crate::call::HotPart::SINK);
            // A src's call goes on: whoever plays into it next is not held.
            call.pause_writer(false);
            call.release_sender(self.sender_id());
        }
        // Keep the last call for the counters.
        self.state.lock().unwrap().call = state.call;
    }
}
