//! An EOS event sent to the element (an application's `send_event(eos)` on
//! the pipeline) while it streams. BaseSrc (1.22) would flush the streaming
//! thread and wait for the pad's stream lock, and `gst_element_send_event`
//! holds the pipeline's state lock meanwhile: a sink still prerolling the
//! src's first buffer holds that thread until PLAYING, which cannot come
//! then (GStreamer's own live sources hang the same way). So the src takes
//! the EOS itself and returns at once: it marks it and wakes `create`, as
//! `unlock` does; `create` then ends the stream with EOS, which BaseSrc's
//! loop pushes after what went out before, with the event's seqnum. As
//! BaseSrc drops its pending EOS, a flush drops one not carried out yet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};
use crate::lock::Locked;

/// An EOS for `create` to carry out: sent to the element, or downstream's
/// answer to a network thread's push.
#[derive(Default)]
pub(super) struct AppEos {
    /// Asked for, and no flush since. (Set and cleared under the
    /// canceller's lock, with `seqnum`: `unlock_stop` leaves the wake in
    /// place.)
    asked: AtomicBool,
    /// The event's seqnum, for the EOS BaseSrc pushes (taken then).
    seqnum: Mutex<Option<gst::Seqnum>>,
    /// The probe that puts that seqnum on BaseSrc's EOS, until it has: a
    /// push refused (the element stopping meanwhile) would leave it for a
    /// later EOS of the element's own. Added, and removed by others, under
    /// this lock, which the probe takes to forget its id as it removes
    /// itself: no id is removed twice.
    probe: Arc<Mutex<Option<gst::PadProbeId>>>,
    /// The probe that sees BaseSrc's loop end the stream by itself, while
    /// the streaming thread pushes (`after_eos.rs`).
    pub(super) watch: Mutex<Option<gst::PadProbeId>>,
    /// The slot takes no call: the stream ended before any came
    /// (`after_eos.rs`); reopened at the next start.
    pub(super) refusing: AtomicBool,
}

impl TwilioStreamSrc {
    /// Takes `event` (an EOS) to end the stream from the streaming thread,
    /// without waiting for it. Only in push mode: otherwise BaseSrc's way
    /// has no thread to wait for.
    pub(super) fn take_eos(&self, event: &gst::Event) -> bool {
        if self.obj().src_pad().mode() != gst::PadMode::Push {
            return false;
        }
        {
            let mut canceller = self.canceller.locked();
            *self.app_eos.seqnum.locked() = Some(event.seqnum());
            self.app_eos.asked.store(true, Ordering::SeqCst);
            canceller.cancel();
            // The stream ends, not the call (a paired sink plays out and
            // ends it): its messages are still posted (`after_eos.rs`).
            // Marked under the canceller's lock, so that a flush's unlock
            // finds it marked, to undo.
            self.read_after_eos();
        }
        gst::debug!(CAT, imp = self, "EOS: the streaming thread ends the stream");
        true
    }

    /// Downstream answered a network thread's push with EOS: the streaming
    /// thread pushes the EOS, as at an EOS sent to the element, so that a
    /// sink playing out at EOS waits on that thread, which it may hold,
    /// not on a network thread, which it must not (it would let the EOS
    /// through before the playout).
    pub(super) fn end_on_streaming_thread(&self) {
        let mut canceller = self.canceller.locked();
        // Not once the element stops (the pad is deactivated before the
        // unlock that clears the flag): it would end the next run at once.
        if self.obj().src_pad().mode() != gst::PadMode::Push {
            return;
        }
        self.app_eos.asked.store(true, Ordering::SeqCst);
        canceller.cancel();
    }

    /// A new run (`start`): nothing asked of an earlier one is left.
    pub(super) fn forget_eos(&self) {
        let _canceller = self.canceller.locked();
        self.app_eos.asked.store(false, Ordering::SeqCst);
        *self.app_eos.seqnum.locked() = None;
    }

    /// The element stops (its streaming thread has): neither probe stays.
    pub(super) fn stop_eos(&self) {
        self.unwatch_eos_out();
        self.remove_seqnum_probe();
    }

    /// An EOS is asked for (`take_eos`, `end_on_streaming_thread`):
    /// `create` ends the stream.
    pub(super) fn eos_asked(&self) -> bool {
        self.app_eos.asked.load(Ordering::SeqCst)
    }

    /// `create`'s end at an EOS sent to the element: the stream ends, not
    /// the call (`after_eos.rs`), and the EOS BaseSrc pushes for this
    /// return carries the event's seqnum.
    pub(super) fn end_as_asked(&self) -> gst::FlowError {
        // (Under the canceller's lock: a flush drops the EOS before this,
        // or after it was carried out, not between.)
        let seqnum = {
            let _canceller = self.canceller.locked();
            if !self.eos_asked() {
                return gst::FlowError::Flushing;
            }
            self.read_after_eos();
            self.app_eos.seqnum.locked().take()
        };
        if let Some(seqnum) = seqnum {
            let mut probe = self.app_eos.probe.locked();
            if let Some(old) = probe.take() {
                self.obj().src_pad().remove_probe(old);
            }
            let slot = self.app_eos.probe.clone();
            // (Nothing in it can panic.) An EOS pushed meanwhile on a
            // network thread (the call's end) finds the id stored: the
            // probe waits for this lock.
            *probe = self.obj().src_pad().add_probe(
                gst::PadProbeType::EVENT_DOWNSTREAM,
                move |_, info| match &mut info.data {
                    Some(gst::PadProbeData::Event(event))
                        if event.type_() == gst::EventType::Eos =>
                    {
                        event.make_mut().set_seqnum(seqnum);
                        slot.locked().take();
                        gst::PadProbeReturn::Remove
                    }
                    _ => gst::PadProbeReturn::Ok,
                },
            );
        }
        gst::FlowError::Eos
    }

    /// Removes the seqnum probe if its EOS never went through.
    fn remove_seqnum_probe(&self) {
        let mut probe = self.app_eos.probe.locked();
        if let Some(id) = probe.take() {
            self.obj().src_pad().remove_probe(id);
        }
    }

    /// `BaseSrc::unlock` (a flush, or a stop): `create` returns, and an
    /// EOS not carried out yet is dropped, its seqnum with it.
    pub(super) fn unlock_create(&self) -> Result<(), gst::ErrorMessage> {
        let dropped = {
            let mut canceller = self.canceller.locked();
            let asked = self.app_eos.asked.swap(false, Ordering::SeqCst);
            // (`end_as_asked` takes it as it carries the EOS out.)
            let seqnum = self.app_eos.seqnum.locked().take();
            canceller.cancel();
            asked && seqnum.is_some()
        };
        self.remove_seqnum_probe();
        if dropped {
            self.resume_after_dropped_eos();
        }
        Ok(())
    }

    /// `BaseSrc::unlock_stop`: `create` may wait again, unless an EOS was
    /// sent since the flush began (it still wakes `create`).
    pub(super) fn unlock_create_stop(&self) -> Result<(), gst::ErrorMessage> {
        let mut canceller = self.canceller.locked();
        if !self.app_eos.asked.load(Ordering::SeqCst) {
            canceller.reset();
        }
        Ok(())
    }
}
