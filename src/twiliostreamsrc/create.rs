//! The streaming thread's `create()`: it waits for a call and claims it;
//! with `shared-threads` it then only waits for a fallback (the call's task
//! pushes), otherwise (or after one, or until the pipeline plays) it waits
//! for the call's events and turns each into buffers.

#[cfg(test)]
use std::sync::atomic::Ordering::SeqCst;

#[cfg(test)]
use gst::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};
use super::step::Step;
use super::timing::Received;
use crate::contain::Containing as _;
use crate::lock::Locked;
use crate::wait::wait;

/// Tests only: the src at this address (0: none) panics in its next
/// `create()`, holding its state's lock (`panicked.rs`).
#[cfg(test)]
pub(super) static PANIC_IN_CREATE: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

impl PushSrcImpl for TwilioStreamSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        self.stopping_on_panic(
            || Err(gst::FlowError::Error),
            || {
                // An EOS sent to the element ends the stream here, at the
                // first turn after it (`app_eos.rs`: it woke the waits).
                // What this turn made meanwhile is dropped, as BaseSrc
                // drops it at its own pending EOS.
                if self.eos_asked() {
                    return Err(self.end_as_asked());
                }
                let created = self.create_next();
                if self.eos_asked() {
                    return Err(self.end_as_asked());
                }
                let created = created?;
                self.created_on_streaming_thread(&created);
                self.watch_eos_out();
                Ok(created)
            },
        )
    }
}

impl TwilioStreamSrc {
    fn create_next(&self) -> Result<CreateSuccess, gst::FlowError> {
        loop {
            self.push_pending_events();
            // After a fallback: what a drain held back goes first.
            if let Some(created) = self.held_created()? {
                return Ok(created);
            }
            // Pushing until the pipeline plays: it may now.
            self.hand_back_once_playing();
            let mut state = self.state.locked();
            #[cfg(test)]
            if PANIC_IN_CREATE
                .compare_exchange(self.obj().as_ptr() as usize, 0, SeqCst, SeqCst)
                .is_ok()
            {
                panic!("create panicked (test)");
            }
            if state.finished || state.after_eos {
                return Err(gst::FlowError::Eos);
            }
            let Some(mut events) = state.events.take() else {
                drop(state);
                gst::debug!(CAT, imp = self, "waiting for a call");
                let slot = self.slot();
                let call =
                    wait(&self.canceller, slot.wait()).map_err(|_| gst::FlowError::Flushing)?;
                self.claim(call)?;
                continue;
            };
            if self.shared.enabled() && !self.shared.streaming() {
                // The call's task pushes from now on; this thread only waits
                // for the element to stop, for downstream to block a push, or
                // for a push to find the pipeline not PLAYING yet.
                state.events = Some(events);
                drop(state);
                self.wait_for_fallback()?;
                // (BaseSrc flags this thread's first buffer DISCONT, though the
                // stream goes on without a gap: see
                // `created_on_streaming_thread`.)
                continue;
            }
            drop(state);
            if let Err(flow) = self.wait_for_last_drain() {
                self.state.locked().events = Some(events);
                return Err(flow);
            }

            let received = self.receive(&mut events, self.look_for_playing());
            self.state.locked().events = Some(events);
            let event = match received {
                Ok(Received::Event(event)) => event,
                Ok(Received::Overdue) => match Step::created(self.fill_overdue()?) {
                    // (A GAP queued goes out at the next turn.)
                    Some(created) => return Ok(created),
                    None => continue,
                },
                // (The top of the loop looks whether the pipeline plays.)
                Ok(Received::Look) => continue,
                Err(_) => return Err(gst::FlowError::Flushing),
            };
            match self.process(event)? {
                Step::Next => continue,
                Step::Buffers(buffers) => match Step::created(buffers) {
                    Some(created) => return Ok(created),
                    None => continue,
                },
                Step::End(buffers) => return Step::created(buffers).ok_or(gst::FlowError::Eos),
            }
        }
    }
}
