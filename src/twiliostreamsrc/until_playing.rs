//! `shared-threads`: where a push from a network thread would wait for the
//! pipeline's state. Before each push of a drain or a fill the src looks at
//! the bins it is in (the pipeline):
//! - one leaving PLAYING (its pending state is set before its sinks pause):
//!   nothing is pushed; the call's events wait for the src to play again.
//! - one not PLAYING yet, while the src is (a live pipeline goes on to
//!   PLAYING before its sinks have prerolled; a sink with `async=true` that
//!   has no buffer yet, on another branch, keeps it there): a buffer, a GAP
//!   or EOS would preroll its sink, which then waits, holding the pushing
//!   thread, until every other sink of the pipeline has prerolled too (a
//!   second call's src, a `twiliostreamsink` fed by an `appsrc`), with
//!   every call of that network thread, possibly for good. So the src's
//!   streaming thread pushes, as without `shared-threads`, until it finds
//!   the bins PLAYING before a buffer of its own (or, waiting for the call,
//!   every [`LOOK`]); then it hands the pushes back to the network threads. Order is kept: the streaming thread takes
//!   over only once the last drain has ended, and hands back between two of
//!   its buffers, what a drain held back pushed first.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;

use super::imp::{CAT, TwilioStreamSrc};

/// How often the streaming thread, pushing until the pipeline plays and
/// waiting for the call, looks whether it does: no event says so.
const LOOK: Duration = Duration::from_millis(10);

/// The state of the src's bins, as far as a push from a network thread goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bins {
    /// All PLAYING (or the src is in none).
    Playing,
    /// One leaves PLAYING: its sinks pause first, and a push would
    /// preroll in one.
    Leaving,
    /// One is not PLAYING yet: a push may preroll a sink of it and wait
    /// there for the others.
    NotYetPlaying,
}

impl TwilioStreamSrc {
    /// One look at each of the src's bins (one lock each).
    pub(super) fn bins(&self) -> Bins {
        let mut bins = Bins::Playing;
        let mut bin = self.obj().parent().and_downcast::<gst::Element>();
        while let Some(b) = bin {
            let (_, current, pending) = b.state(gst::ClockTime::ZERO);
            if current != gst::State::Playing {
                bins = Bins::NotYetPlaying;
            } else if (gst::State::Null..=gst::State::Paused).contains(&pending) {
                return Bins::Leaving;
            }
            bin = b.parent().and_downcast();
        }
        bins
    }

    /// A drain or a fill on a network thread found a bin not PLAYING yet:
    /// the streaming thread pushes (once no drain runs) until it is.
    #[cold]
    #[inline(never)]
    pub(super) fn until_playing(&self) {
        if !self.shared.until_playing.swap(true, Ordering::SeqCst) {
            gst::debug!(
                CAT,
                imp = self,
                "not PLAYING yet: the streaming thread pushes"
            );
        }
        self.shared.fallen_back.notify_one();
    }

    /// The streaming thread, between two of its buffers: once the bins
    /// play, the network threads push again (the fill timer with them).
    pub(super) fn hand_back_once_playing(&self) {
        if !self.shared.until_playing.load(Ordering::SeqCst)
            || self.shared.fell_back()
            || self.bins() != Bins::Playing
        {
            return;
        }
        gst::debug!(CAT, imp = self, "PLAYING: the network threads push again");
        self.shared.until_playing.store(false, Ordering::SeqCst);
        self.shared.timer.notify_one();
        self.unwatch_eos_out();
    }

    /// How long the streaming thread may wait for the call before it looks
    /// again whether the pipeline plays: only while it pushes until then.
    pub(super) fn look_for_playing(&self) -> Option<Duration> {
        (self.shared.until_playing.load(Ordering::SeqCst) && !self.shared.fell_back())
            .then_some(LOOK)
    }

    /// The streaming thread made `created`, which BaseSrc marks DISCONT if
    /// it is the first its thread pushes since start (or a flush, or a
    /// return to PLAYING). The first of the run is (a network thread's first
    /// is not marked after it); but after network threads pushed, the
    /// stream goes on without a gap (a hand-over): the mark is taken off as
    /// the buffer goes out, unless the src marked it itself.
    pub(super) fn created_on_streaming_thread(&self, created: &CreateSuccess) {
        let first_of_run = self.shared.discont.swap(false, Ordering::Relaxed);
        if !self.shared.base_discont.swap(false, Ordering::SeqCst)
            || first_of_run
            || !self.shared.enabled()
        {
            return;
        }
        let (first, made) = match created {
            CreateSuccess::NewBuffer(buffer) => (Some(buffer.as_ref()), buffer.as_ptr() as usize),
            CreateSuccess::NewBufferList(list) => (list.get(0), list.as_ptr() as usize),
            _ => return,
        };
        if first.is_some_and(|b| !b.flags().contains(gst::BufferFlags::DISCONT)) {
            self.unmark_discont(made);
        }
    }

    /// Takes BaseSrc's DISCONT off `made` (a buffer or list, by address) as
    /// it goes out; the probe goes with the first push, whatever it is.
    #[cold]
    #[inline(never)]
    fn unmark_discont(&self, made: usize) {
        let pad = self.obj().src_pad().clone();
        pad.add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
            move |_, info| {
                match &mut info.data {
                    Some(gst::PadProbeData::Buffer(buffer)) if buffer.as_ptr() as usize == made => {
                        buffer.make_mut().unset_flags(gst::BufferFlags::DISCONT);
                    }
                    Some(gst::PadProbeData::BufferList(list)) if list.as_ptr() as usize == made => {
                        if let Some(first) = list.make_mut().get_mut(0) {
                            first.unset_flags(gst::BufferFlags::DISCONT);
                        }
                    }
                    _ => {}
                }
                gst::PadProbeReturn::Remove
            },
        );
    }
}
