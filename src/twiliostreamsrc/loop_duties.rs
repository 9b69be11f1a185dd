//! What BaseSrc's loop does between buffers, done by the drains when
//! network threads push (`shared-threads`): that loop then waits in
//! `create` for the whole call, holding the pad's stream lock.
//!
//! * Downstream asks for other caps mid-call (a capsfilter's caps changed,
//!   an element relinked): RECONFIGURE. Before the call's next event a
//!   drain reads the pad's flag and negotiates as BaseSrc does
//!   (`gst_base_src_negotiate` takes the stream lock): our caps,
//!   downstream's answer to them, fixated, set (`set_caps` switches the
//!   output). Caps downstream cannot take end the stream with
//!   not-negotiated, as from BaseSrc.
//! * `do-timestamp`: a buffer without a DTS gets the running time it is
//!   pushed at.
//! * The position query: the end of the last buffer pushed (BaseSrc
//!   answers from its segment, which only its loop moves).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use gst::glib::translate::{IntoGlib, ToGlibPtr};
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::{CAT, TwilioStreamSrc};

/// Whether `pad` has been asked to negotiate again: its flag read as C's
/// `GST_PAD_NEEDS_RECONFIGURE` reads it, without the object lock (one
/// load per chunk; `check_reconfigure` then takes the lock and the flag).
fn needs_reconfigure(pad: &gst::Pad) -> bool {
    let object: *mut gst::ffi::GstObject = pad.upcast_ref::<gst::Object>().to_glib_none().0;
    // SAFETY: the pad is alive (borrowed); `flags` is a guint that GStreamer
    // writes under the object lock and reads without it, as here.
    let flags = unsafe { AtomicU32::from_ptr(std::ptr::addr_of_mut!((*object).flags)) };
    flags.load(Ordering::Relaxed) & gst::ffi::GST_PAD_FLAG_NEED_RECONFIGURE != 0
}

/// A run's state of what the drains do for BaseSrc's loop.
#[derive(Default)]
pub(super) struct Duties {
    /// `do-timestamp`, as this run started with it.
    do_timestamp: AtomicBool,
    /// The end (ns, plus one; 0: none yet) of the last buffer a network
    /// thread pushed.
    position: AtomicU64,
}

impl TwilioStreamSrc {
    /// A run starts.
    pub(super) fn start_duties(&self) {
        let duties = &self.duties;
        duties
            .do_timestamp
            .store(self.obj().does_timestamp(), Ordering::Relaxed);
        duties.position.store(0, Ordering::Relaxed);
    }

    /// A network thread is about to push `buffer`.
    pub(super) fn before_shared_push(&self, buffer: &mut gst::Buffer) {
        if self.duties.do_timestamp.load(Ordering::Relaxed) && buffer.dts().is_none() {
            let obj = self.obj();
            if let (Some(clock), Some(base)) = (obj.clock(), obj.base_time()) {
                let now = clock.time().saturating_sub(base);
                buffer.make_mut().set_dts(now);
            }
        }
        if let Some(pts) = buffer.pts() {
            let end = pts + buffer.duration().unwrap_or_default();
            self.duties
                .position
                .store(end.nseconds() + 1, Ordering::Relaxed);
        }
    }

    /// The position to answer with while network threads push.
    pub(super) fn shared_position(&self) -> Option<gst::ClockTime> {
        // (Paused too: BaseSrc's segment is the loop's, left behind.)
        if !self.shared.enabled() || self.shared.streaming() {
            return None;
        }
        let end = self
            .duties
            .position
            .load(Ordering::Relaxed)
            .checked_sub(1)?;
        Some(gst::ClockTime::from_nseconds(end))
    }

    /// Negotiates again if downstream asked to, before a drain handles the
    /// call's next event (see the module docs).
    pub(super) fn reconfigure_shared(&self, pad: &gst::Pad) -> Result<(), gst::FlowError> {
        if !needs_reconfigure(pad) || !pad.check_reconfigure() {
            return Ok(());
        }
        let ours = pad.query_caps(None);
        let answer = pad.peer_query_caps(Some(&ours));
        if answer.is_empty() {
            gst::warning!(CAT, imp = self, "downstream takes none of {ours}");
            pad.mark_reconfigure();
            return Err(gst::FlowError::NotNegotiated);
        }
        let mut caps = answer;
        caps.fixate();
        if pad.current_caps().as_ref() == Some(&caps) {
            return Ok(());
        }
        gst::info!(CAT, imp = self, "downstream asks for other caps: {caps}");
        self.obj().set_caps(&caps).map_err(|e| {
            gst::warning!(CAT, imp = self, "could not switch to {caps}: {e}");
            pad.mark_reconfigure();
            gst::FlowError::NotNegotiated
        })
    }
}

/// A flow's name as GStreamer gives it, for the error a drain posts as
/// BaseSrc's loop would ("not-negotiated (-4)").
pub(super) fn flow_name(flow: gst::FlowError) -> String {
    let ret = gst::FlowReturn::from(flow).into_glib();
    // SAFETY: gst_flow_get_name returns a static string for any value.
    let name = unsafe { std::ffi::CStr::from_ptr(gst::ffi::gst_flow_get_name(ret)) };
    format!("{} ({ret})", name.to_string_lossy())
}
