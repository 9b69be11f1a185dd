//! Waiting under BaseSink's preroll lock, which `prepare()`, `render()` and
//! serialized events hold, without holding up a state change: for the call
//! (a `twilio-mark` before it), for room in the writer (`render()`), for
//! the playout and the call's last messages at EOS.
//!
//! A flush, a stop and PLAYING → PAUSED call `unlock()` before they take
//! the lock, but PAUSED → PLAYING (and turning `async` off) take it without,
//! and which of them is under way cannot be told reliably from the waiting
//! thread: GstElement reports ASYNC for any change in progress, and a buffer
//! prerolled as PAUSED → PLAYING begins commits PLAYING itself before
//! BaseSink's part of that change has taken the lock. So the wait never
//! blocks holding the lock: it looks at the call every [`POLL`] and in
//! between waits as BaseSink's own preroll wait does, on its condition with
//! the lock released (public fields, as `GST_BASE_SINK_PREROLL_WAIT`). A
//! flush or a stop (BaseSink flushing) ends it, FLUSHING; a panic, ERROR.
//!
//! Prerolling (READY → PAUSED, or PAUSED with `async=false`), the sink is
//! not prerolled meanwhile, so PAUSED → PLAYING goes through. In PLAYING it
//! is, as a sink blocked in `render()` is (`wait_preroll` does the same): a
//! pause finds it prerolled, and the wait then waits for PLAYING again
//! (`wait_preroll`) as long as the last change begun is that pause
//! (`pausing`, set before BaseSink's part of either change, so the PAUSED
//! → PLAYING that ends it signals only once the wait is on the condition).

use std::future::Future;
use std::sync::atomic::Ordering;

use futures::FutureExt as _;
use gst::glib;
use gst::glib::translate::IntoGlib as _;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::{CAT, TwilioStreamSink};

/// How often a wait for the call looks at it (µs), the preroll lock
/// released in between.
const POLL: i64 = 10_000;

impl TwilioStreamSink {
    /// Waits for `fut`, with BaseSink's preroll lock held by the caller (see
    /// the module's doc).
    pub(super) fn wait_under_preroll_lock<F: Future>(
        &self,
        fut: F,
    ) -> Result<F::Output, gst::FlowError> {
        let base: *mut gst_base::ffi::GstBaseSink =
            self.obj().upcast_ref::<gst_base::BaseSink>().as_ptr();
        let mut fut = std::pin::pin!(fut);
        // SAFETY (all blocks below): fields of the live instance, and its
        // preroll lock and condition, which the caller holds as BaseSink
        // does around its own waits; no reference to them is kept.
        let prerolled = unsafe { (*base).need_preroll } == glib::ffi::GFALSE;
        let set_prerolled = move |on: bool| {
            if prerolled {
                unsafe { (*base).have_preroll = on.into_glib() };
            }
        };
        set_prerolled(true);
        let done = loop {
            if self.panicked().load(Ordering::Relaxed) {
                break Err(gst::FlowError::Error);
            }
            if unsafe { (*base).flushing } != glib::ffi::GFALSE {
                break Err(gst::FlowError::Flushing);
            }
            if prerolled && self.pausing.load(Ordering::SeqCst) {
                gst::debug!(CAT, imp = self, "paused: waiting for PLAYING");
                if let Err(e) = self.obj().wait_preroll() {
                    break Err(e);
                }
                set_prerolled(true);
                continue;
            }
            if let Some(done) = fut.as_mut().now_or_never() {
                break Ok(done);
            }
            unsafe {
                let until = glib::ffi::g_get_monotonic_time() + POLL;
                glib::ffi::g_cond_wait_until(
                    std::ptr::addr_of_mut!((*base).preroll_cond),
                    std::ptr::addr_of_mut!((*base).preroll_lock),
                    until,
                );
            }
        };
        set_prerolled(false);
        done
    }
}
