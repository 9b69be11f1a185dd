//! Waiting for the call under BaseSink's preroll lock, which `prepare()`,
//! `render()` and serialized events hold, without holding up a state change.
//!
//! A flush, a stop and PLAYING → PAUSED call `unlock()` (our `Canceller`)
//! before they take the lock; PAUSED → PLAYING (and turning `async` off)
//! take it without. So:
//! * While an ASYNC state change waits for this preroll, nothing takes the
//!   lock unannounced: the wait blocks, and a cancel waits for PLAYING
//!   (`wait_preroll`: FLUSHING for a flush or a stop) and waits on.
//! * Prerolling without one (`async=false`; the PAUSED of a sink holding
//!   its feeders), PAUSED → PLAYING may come at any moment: `prepare()`
//!   does not wait (BaseSink's own preroll waits for PLAYING, the lock
//!   released, and the buffer's `prepare()` there waits); a mark waits for
//!   PLAYING first.
//! * PLAYING may not have taken the lock yet: a buffer prerolled as the
//!   state change began commits PLAYING itself, before BaseSink's part of
//!   PAUSED → PLAYING has run. So a wait in PLAYING looks at the call every
//!   [`POLL`], in between waiting as BaseSink's preroll wait does, on its
//!   condition with the lock released, prerolled meanwhile (a pause finds
//!   the sink prerolled, as with any sink blocked in `render()`).

use std::future::Future;
use std::sync::atomic::Ordering;

use futures::FutureExt as _;
use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::{CAT, TwilioStreamSink};
use crate::lock::Locked;
use crate::wait::wait;

/// How often a wait for the call in PLAYING looks at it (µs), the preroll
/// lock released in between.
const POLL: i64 = 10_000;

/// BaseSink's preroll, as a wait for the call under its preroll lock sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Preroll {
    /// Prerolled: PLAYING, or on the way there.
    Done,
    /// An ASYNC state change waits for this preroll.
    Async,
    /// Prerolling without an ASYNC state change.
    Sync,
}

/// What a wait for the call does when the sink prerolls without an ASYNC
/// state change ([`Preroll::Sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BeforePlaying {
    /// Nothing (`prepare`: the buffer waits once PLAYING).
    Skip,
    /// Waits for PLAYING first (a mark, a buffer in `render`).
    Wait,
}

impl TwilioStreamSink {
    fn base(&self) -> *mut gst_base::ffi::GstBaseSink {
        self.obj().upcast_ref::<gst_base::BaseSink>().as_ptr()
    }

    fn preroll_state(&self) -> Preroll {
        // SAFETY: a field of the live instance, guarded by the preroll lock
        // the caller holds.
        let need_preroll = unsafe { (*self.base()).need_preroll } != glib::ffi::GFALSE;
        if !need_preroll {
            Preroll::Done
        } else if self.obj().state(gst::ClockTime::ZERO).0 == Ok(gst::StateChangeSuccess::Async) {
            Preroll::Async
        } else {
            Preroll::Sync
        }
    }

    /// Before a wait for the call: false if the caller is to go on without
    /// it (`Skip` while prerolling without an ASYNC state change); FLUSHING
    /// if a flush or a stop came while it waited for PLAYING.
    pub(super) fn before_playing(&self, what: BeforePlaying) -> Result<bool, gst::FlowError> {
        if self.preroll_state() != Preroll::Sync {
            return Ok(true);
        }
        match what {
            BeforePlaying::Skip => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "prerolling: the call is waited for in PLAYING"
                );
                Ok(false)
            }
            BeforePlaying::Wait => {
                gst::debug!(CAT, imp = self, "waiting for PLAYING before the call");
                self.obj().wait_preroll()?;
                Ok(true)
            }
        }
    }

    /// Waits for the future `make` makes (made again after a pause), with
    /// BaseSink's preroll lock held by the caller (see the module's doc).
    pub(super) fn wait_under_preroll_lock<F: Future>(
        &self,
        make: impl Fn() -> F,
    ) -> Result<F::Output, gst::FlowError> {
        if self.preroll_state() == Preroll::Async {
            loop {
                match wait(&self.canceller, make()) {
                    Ok(done) => return Ok(done),
                    Err(_) => {
                        self.check_panicked()?;
                        gst::debug!(CAT, imp = self, "wait for the call cancelled");
                        self.obj().wait_preroll()?;
                    }
                }
            }
        }
        let base = self.base();
        let mut fut = std::pin::pin!(make());
        let mut cancels = self.canceller.locked().cancels();
        let mut to_playing = self.to_playing.load(Ordering::SeqCst);
        // SAFETY (all blocks below): fields of the live instance, and its
        // preroll lock and condition, which the caller holds as BaseSink
        // does around `wait_preroll`.
        unsafe { (*base).have_preroll = glib::ffi::GTRUE };
        let done = loop {
            if let Some(done) = fut.as_mut().now_or_never() {
                break Ok(done);
            }
            unsafe {
                let until = glib::ffi::g_get_monotonic_time() + POLL;
                glib::ffi::g_cond_wait_until(
                    &mut (*base).preroll_cond,
                    &mut (*base).preroll_lock,
                    until,
                );
            }
            if unsafe { (*base).flushing } != glib::ffi::GFALSE {
                break Err(gst::FlowError::Flushing);
            }
            let now = self.canceller.locked().cancels();
            if now == cancels {
                continue;
            }
            // A pause (or a flush or stop still to take the lock). Unless
            // PAUSED → PLAYING has begun since, which counts itself before
            // BaseSink's part, that part, which signals the preroll
            // condition, is still to come: wait for it.
            if let Err(e) = self.check_panicked() {
                break Err(e);
            }
            cancels = now;
            let playing = self.to_playing.load(Ordering::SeqCst);
            if playing == to_playing {
                gst::debug!(
                    CAT,
                    imp = self,
                    "wait for the call paused: waiting for PLAYING"
                );
                if let Err(e) = self.obj().wait_preroll() {
                    break Err(e);
                }
                unsafe { (*base).have_preroll = glib::ffi::GTRUE };
            }
            to_playing = self.to_playing.load(Ordering::SeqCst);
        };
        unsafe { (*base).have_preroll = glib::ffi::GFALSE };
        done
    }

    fn check_panicked(&self) -> Result<(), gst::FlowError> {
        if self.panicked().load(Ordering::Relaxed) {
            Err(gst::FlowError::Error)
        } else {
            Ok(())
        }
    }
}
