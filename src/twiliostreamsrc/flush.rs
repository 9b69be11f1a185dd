//! A flush from downstream while PLAYING: FLUSH_START and FLUSH_STOP that
//! reach the src pad (from a downstream element, or sent on a pad) rather
//! than the element. BaseSrc (1.22) pauses its streaming thread at such a
//! flush-start (`create` returns FLUSHING) and restarts it only after a
//! flush sent to the element, so without this the call's audio would stop:
//! for good without `shared-threads`, at the first fallback with it. The
//! flush-stop also takes the pad's segment: one is stored to go out first.
//! And a seek sent to the element, refused as the pad refuses one.

use std::sync::atomic::{AtomicBool, Ordering};

use gst::glib::translate::from_glib_none;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};
use crate::lock::Locked;

/// A flush-start reached the src pad and its flush-stop has not yet.
#[derive(Default)]
pub(super) struct Flush(AtomicBool);

impl TwilioStreamSrc {
    /// `BaseSrc::event`: BaseSrc's handling, with a flush's streaming
    /// thread going on after its flush-stop.
    pub(super) fn event_seeing_flushes(&self, event: &gst::Event) -> bool {
        let flush_stop = event.type_() == gst::EventType::FlushStop;
        if event.type_() == gst::EventType::FlushStart {
            self.flush.0.store(true, Ordering::SeqCst);
        }
        let handled = self.parent_event(event);
        if flush_stop {
            self.flush_stopped();
        }
        handled
    }

    /// `Element::send_event`: a seek is refused, as the src pad refuses
    /// one (a live call has nowhere to seek to). BaseSrc would carry it
    /// out all the same: a flushing seek flushes the pipeline (a `clear`
    /// from a paired sink), a non-flushing one waits for the streaming
    /// thread to pause, which with `shared-threads` it never does mid-call.
    pub(super) fn send_event_refusing_seeks(&self, event: gst::Event) -> bool {
        if event.type_() == gst::EventType::Seek {
            gst::debug!(CAT, imp = self, "refusing a seek: a live call");
            return false;
        }
        if event.type_() != gst::EventType::Eos {
            if self.queue_serialized(&event) {
                return true;
            }
            return self.parent_send_event(event);
        }
        // In push mode: `app_eos.rs`, without BaseSrc's wait.
        if !self.take_eos(&event) {
            // Stopped (READY or NULL; a live src never pulls): there is no
            // stream to end. BaseSrc would keep the EOS pending, and end
            // the next run's stream at once.
            gst::debug!(CAT, imp = self, "EOS while stopped: nothing to end");
            return false;
        }
        true
    }

    /// A serialized event BaseSrc would keep for its loop (tags, a custom
    /// downstream event, a sink message, protection) sent to the started
    /// src while network threads push: with `shared-threads` that loop
    /// waits in `create` for the whole call, and they would never go out.
    /// The src keeps them itself and the drains push them before the next
    /// buffer. (The rest is BaseSrc's: it refuses other serialized events.)
    fn queue_serialized(&self, event: &gst::Event) -> bool {
        use gst::EventType as T;
        let kept = matches!(
            event.type_(),
            T::Tag | T::CustomDownstream | T::CustomBoth | T::SinkMessage | T::Protection
        );
        if !kept || !self.shared.enabled() || self.shared.streaming() {
            return false;
        }
        let mut state = self.state.locked();
        if state.registration.is_none() {
            return false;
        }
        gst::debug!(CAT, imp = self, "{event:?} goes out before the next buffer");
        state.pending_events.push(event.clone());
        true
    }

    /// After BaseSrc handled a flush-stop: the streaming thread goes on
    /// where BaseSrc paused it, in PLAYING. (Only after a flush-start, which
    /// made `create` return: the loop then lets go of the stream lock.)
    fn flush_stopped(&self) {
        if !self.flush.0.swap(false, Ordering::SeqCst) {
            return;
        }
        let obj = self.obj();
        let pad = obj.src_pad();
        // The flush-stop took the pad's segment, which BaseSrc sends again
        // only after a seek or a flush sent to the element: stored, one
        // goes out before the next push, from whichever thread (a drain
        // finds it there). As the drains', a live source's from 0.
        if pad.mode() == gst::PadMode::Push && pad.sticky_event::<gst::event::Segment>(0).is_none()
        {
            let segment = gst::FormattedSegment::<gst::ClockTime>::new();
            if pad
                .store_sticky_event(&gst::event::Segment::new(&segment))
                .is_err()
            {
                gst::debug!(CAT, imp = self, "no segment stored after the flush");
            }
        }
        // As BaseSrc does for a flush sent to the element: under the stream
        // lock, so that a loop still pausing has paused.
        let _stream = pad.stream_lock();
        if pad.mode() != gst::PadMode::Push
            || pad.task_state() != gst::TaskState::Paused
            || obj.current_state() != gst::State::Playing
        {
            return;
        }
        let task: Option<gst::Task> = {
            let _lock = pad.object_lock();
            // SAFETY: the pad's task, read under the pad's object lock as
            // GST_PAD_TASK is; a new reference is taken.
            unsafe { from_glib_none((*pad.as_ptr()).task) }
        };
        if let Some(task) = task {
            gst::debug!(
                CAT,
                imp = self,
                "flushed from downstream: streaming thread goes on"
            );
            if let Err(err) = task.start() {
                gst::warning!(CAT, imp = self, "streaming thread not restarted: {err}");
            }
        }
    }
}
