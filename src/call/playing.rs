//! The sink's side of a call: the one sink that plays into it, pausing
//! its writer with the sink, the lead it keeps, waiting for Twilio to play
//! out what was sent, and ending the stream (`end-stream`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Call, END_MARK, PLAYOUT_GRACE, Request, call_log};

use crate::lock::Locked;
use crate::runtime::RUNTIME;

impl Call {
    /// Makes the sink `id` (named `name`) the one that plays into the call,
    /// if no other is: two streams' frames interleaved would play each cut
    /// up and stretched, and a clear from either would drop both. Else the
    /// name of the one that is.
    pub fn claim_sender(&self, id: usize, name: &str) -> Result<(), String> {
        let mut sender = self.sender.locked();
        match &*sender {
            Some((holder, other)) if *holder != id => Err(other.clone()),
            _ => {
                *sender = Some((id, name.to_owned()));
                Ok(())
            }
        }
    }

    /// The sink playing into the call paused (PLAYING → PAUSED) or plays
    /// again: while paused, the writer sends no media (Twilio plays out
    /// what it holds, at most the lead), and then goes on where it was.
    pub fn pause_writer(&self, paused: bool) {
        if paused {
            self.writer_pauses.fetch_add(1, Ordering::SeqCst);
        }
        if self.writer_paused.swap(paused, Ordering::SeqCst) && !paused {
            let _ = self.dispatch(Request::Wake);
        }
    }

    pub(crate) fn writer_paused(&self) -> bool {
        self.writer_paused.load(Ordering::Relaxed)
    }

    /// The sink `id` no longer plays into the call: another may.
    pub fn release_sender(&self, id: usize) {
        let mut sender = self.sender.locked();
        if sender.as_ref().is_some_and(|(holder, _)| *holder == id) {
            *sender = None;
        }
    }

    /// Sets the lead the writer keeps in Twilio's queue (at least 1 ms: with
    /// none, nothing could ever be written).
    pub fn set_lead(&self, lead: Duration) {
        let lead = lead.max(Duration::from_millis(1));
        self.lead.store(lead.as_nanos() as u64, Ordering::Relaxed);
    }

    /// Audio handed to the writer and not written yet.
    pub fn queued_audio(&self) -> Duration {
        Duration::from_nanos(self.queued_audio.load(Ordering::Relaxed))
    }

    /// The audio sent that Twilio has not played yet: what waits in the
    /// writer and, by the model, in Twilio's queue.
    pub fn unplayed(&self) -> Duration {
        let queued = self
            .playout_end
            .load(Ordering::Relaxed)
            .saturating_sub(self.now_ns());
        Duration::from_nanos(queued + self.queued_audio.load(Ordering::Relaxed))
    }

    /// The longest wait for Twilio to play what was sent: the audio it
    /// has not played yet ([`unplayed`](Self::unplayed)) plus
    /// [`PLAYOUT_GRACE`].
    pub fn playout_bound(&self) -> Duration {
        self.unplayed() + PLAYOUT_GRACE
    }

    /// Sends the mark `mark` and waits until Twilio echoes it (it has played
    /// everything before it), at most [`playout_bound`](Self::playout_bound)
    /// of the writer's time unpaused (a paused sink's writer holds the audio
    /// and the mark: after a pause the wait goes on, bounded anew). False if
    /// it did not come back in time or could not be sent.
    pub async fn play_out(&self, mark: &str) -> bool {
        let mut bound = self.playout_bound();
        let Ok(sent) = self.mark(mark, true) else {
            return false;
        };
        loop {
            let pauses = self.writer_pauses.load(Ordering::SeqCst);
            if tokio::time::timeout(bound, self.marks_echoed(sent))
                .await
                .is_ok()
            {
                return true;
            }
            if !self.writer_paused() && self.writer_pauses.load(Ordering::SeqCst) == pauses {
                return false;
            }
            bound = self.playout_bound();
        }
    }

    /// What both elements' `end-stream` action signal does with their call:
    /// [`end`](Self::end) now, or [`end_after_playout`](Self::end_after_playout)
    /// on the runtime (never blocking the caller). False if the call had
    /// ended already (Twilio's `stop` too), or is already ending after the
    /// playout.
    pub fn end_stream(self: Arc<Self>, after_playout: bool) -> bool {
        if !self.is_open() || self.closing.load(Ordering::Relaxed) {
            call_log!(&self, info, "end-stream: the call has ended already");
            return false;
        }
        // Its end is read already (`twilio-stop` follows, not `twilio-ended`),
        // and Twilio plays nothing more.
        if self.is_stopped() {
            call_log!(&self, info, "end-stream: Twilio has sent stop already");
            return false;
        }
        call_log!(
            &self,
            info,
            "ending the stream (after playout: {after_playout})"
        );
        if after_playout {
            // (Under the lock marks are sent under: see `mark`.)
            let ending = {
                let _asked = self.marks_asked.locked();
                self.ending_after_playout.swap(true, Ordering::SeqCst)
            };
            if ending {
                call_log!(&self, info, "end-stream: already ending after the playout");
                return false;
            }
            RUNTIME.spawn(async move { self.end_after_playout("end-stream").await });
            true
        } else {
            self.end("end-stream")
        }
    }

    /// Ends the stream once Twilio has played what was sent so far (see
    /// [`play_out`](Self::play_out), with the mark [`END_MARK`]).
    pub async fn end_after_playout(&self, why: &str) -> bool {
        let played = self.play_out(END_MARK).await;
        self.end(why);
        played
    }
}
