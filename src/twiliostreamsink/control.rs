//! What the application and the end of the stream ask of the sink's call:
//! adopting the call (a paired sink has it as soon as its `start` arrived,
//! before any buffer), marks (and the limit on their names), clear, and
//! ending the stream, at EOS or on the `end-stream` action signal.
//!
//! Ending means: send a final mark after all the audio, wait (cancellably,
//! at most [`Call::playout_bound`]) until Twilio echoes it, then close the
//! WebSocket normally ([`Call::end`]), so Twilio goes on with the TwiML
//! after `<Connect><Stream>`. A call whose caller already sent `stop` is
//! over on Twilio's side: nothing is waited for.

use std::sync::Arc;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::framing::Take;
use super::imp::{CAT, CLEAR_EVENT, MARK_EVENT, TwilioStreamSink};
use super::pairing::Ended;
use crate::call::{Call, HotPart};
use crate::contain::Containing;
use crate::lock::Locked;
use crate::messages;
use crate::runtime::RUNTIME;

/// The mark sent at EOS, to end the stream (or, with `end-stream-on-eos`
/// off, to hang up a call of the sink's own) only once Twilio has played
/// everything.
pub const EOS_MARK: &str = "twiliostream-eos";

/// The longest mark name, in bytes once JSON-escaped (as it is sent). Twilio
/// echoes the name back; at this length the echo fits in the smallest
/// `max-message-size` (1024) even if Twilio escaped every non-ASCII
/// character as `\uXXXX`, so every echo of ours is recognised.
pub const MAX_MARK_NAME_BYTES: usize = 256;

/// Length of `name` inside a JSON string, as serde_json escapes it.
fn escaped_len(name: &str) -> usize {
    serde_json::to_string(name).map_or(usize::MAX, |quoted| quoted.len() - 2)
}

impl TwilioStreamSink {
    /// Who this sink is to [`Call::claim_sender`]: its object's address.
    pub(super) fn sender_id(&self) -> usize {
        self.obj().as_ptr() as usize
    }

    /// The call played into and its streamSid: the one adopted already, or
    /// else the slot's current call once its `start` has arrived. Never
    /// blocks.
    pub(super) fn adopt_call(&self) -> Option<(Arc<Call>, String)> {
        let held = {
            let state = self.state.locked();
            match (&state.call, &state.stream_sid) {
                (Some(call), Some(sid)) => Some((call.clone(), sid.clone())),
                _ => None,
            }
        };
        if let Some((call, sid)) = held
            && (call.is_open() || self.let_go_of_ended_call(&call) != Ended::LetGo)
        {
            return Some((call, sid));
        }
        let current = self.state.locked().slot.as_ref()?.current()?;
        self.adopt(current)
    }

    /// Plays into `call` from now on, if it has started and the sink has no
    /// call yet (else keeps the one it has). Tells the call's properties.
    pub(super) fn adopt(&self, call: Arc<Call>) -> Option<(Arc<Call>, String)> {
        let sid = call.start_info()?.stream_sid.clone();
        let name = self.obj().name();
        let claimed = {
            let mut state = self.state.locked();
            if let (Some(call), Some(sid)) = (&state.call, &state.stream_sid) {
                return Some((call.clone(), sid.clone()));
            }
            // None if refused already, or if the sink stopped meanwhile.
            if state.refused || state.slot.is_none() {
                return None;
            }
            // Claimed and adopted under one lock: a stop (`disconnect`),
            // which takes the state, finds the call it claimed to let go of.
            let claimed = call.claim_sender(self.sender_id(), &name);
            state.refused = claimed.is_err();
            if claimed.is_ok() {
                state.call = Some(call.clone());
                state.next_stream = false;
                state.from_src = None;
                state.told_flush = false;
                crate::hot_objects::register(
                    &call,
                    self,
                    HotPart::Sink,
                    self.obj().sink_pad(),
                    HotPart::SinkPad,
                );
                state.stream_sid = Some(sid.clone());
                let min_ticks = call.dialect().min_frame_ms() as usize * 8;
                state.framer.set_target(call.format(), min_ticks);
            }
            claimed
        };
        if let Err(other) = claimed {
            gst::element_imp_error!(
                self,
                gst::ResourceError::Busy,
                (
                    "{} already plays into stream {sid}: one twiliostreamsink per call",
                    other
                ),
                [
                    "Twilio plays one stream of audio: mix the sources first (audiomixer) \
                     and link that to one sink"
                ]
            );
            return None;
        }
        let lead = self.settings.locked().max_lead_ms;
        call.set_lead(std::time::Duration::from_millis(lead as u64));
        gst::info!(
            CAT,
            imp = self,
            "{call:?}: playing into stream {sid} ({}, {} dialect)",
            call.format(),
            call.dialect().name()
        );
        self.update_render_delay();
        let tracks = call
            .start_info()
            .map(|s| s.tracks.clone())
            .unwrap_or_default();
        if call.is_one_way() {
            // Only <Start><Stream> (one-way) streams carry the outbound track.
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("This stream is one-way: the sink sends nothing on it"),
                [
                    "the stream carries {tracks:?}, as a <Start><Stream> does; Twilio answers \
                     anything sent on it with error 31924 (its audio is dropped, marks and \
                     clears refused). Use <Connect><Stream> to talk"
                ]
            );
        }
        for name in ["connected", "call-sid", "stream-sid"] {
            self.obj().notify(name);
        }
        Some((call, sid))
    }

    /// A `twilio-mark` or `twilio-clear` sent to the element itself rather
    /// than pushed (None: another event): BaseSink would send a downstream
    /// event upstream, where nothing takes it. Done as the action signals
    /// do (a mark after the audio the sink has taken): never through the
    /// pad, whose stream lock a render waiting for a call or for PLAYING
    /// holds, while the caller holds the element's state lock (a state
    /// change would hang).
    pub(super) fn element_event(&self, event: &gst::Event) -> Option<bool> {
        let s = event.structure().filter(|_| event.is_downstream())?;
        Some(match s.name().as_str() {
            CLEAR_EVENT => self.stopping_on_panic(|| false, || self.clear("event")),
            MARK_EVENT => match s.get::<String>("name") {
                Ok(name) => self.stopping_on_panic(|| false, || self.send_mark(&name)),
                Err(_) => {
                    self.mark_event_ignored("it has no string field 'name'");
                    false
                }
            },
            _ => return None,
        })
    }

    /// Sends a `mark` after everything rendered so far (a partial frame
    /// first). False without a started call, or for a name longer than
    /// [`MAX_MARK_NAME_BYTES`].
    pub(super) fn send_mark(&self, name: &str) -> bool {
        let len = escaped_len(name);
        if len > MAX_MARK_NAME_BYTES {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
                ("Mark name too long: not sent"),
                [
                    "mark name of {len} bytes not sent: at most {MAX_MARK_NAME_BYTES} \
                     (JSON-escaped), so that Twilio's echo fits max-message-size"
                ]
            );
            return false;
        }
        let Some((call, _)) = self.adopt_call() else {
            let why = match self.state.locked().refused {
                true => "another sink plays into the call",
                false => "no call yet",
            };
            gst::warning!(CAT, imp = self, "{why}: mark {name:?} not sent");
            return false;
        };
        let sent = {
            let mut state = self.state.locked();
            // The audio before the mark goes out first, even a partial frame;
            // under the lock, so no frame of a later buffer comes between.
            if state.send_frames(Take::All).is_err() {
                return false;
            }
            call.send_mark(name)
        };
        match sent {
            Ok(_) => {
                gst::debug!(CAT, imp = self, "mark {name:?} sent");
                true
            }
            Err(e) => {
                gst::warning!(CAT, imp = self, "mark {name:?} not sent: {e:?}");
                false
            }
        }
    }

    /// Discards audio not sent yet and sends `clear`; `twilio-clear` (with
    /// `reason`) then says what the caller heard, and what was dropped: the
    /// partial frame the sink held too. False without a started call.
    pub(super) fn clear(&self, reason: &'static str) -> bool {
        let adopted = self.adopt_call();
        // Held until the clear is queued (queuing never blocks): a render in
        // between would send frames of later input ahead of the clear, with
        // a hole where the partial frame dropped here was.
        let mut state = self.state.locked();
        let held = state.framer.pending_ns();
        state.framer.clear();
        let Some((call, sid)) = adopted else {
            return false;
        };
        #[cfg(test)]
        if let Some(hook) = BEFORE_CLEAR_QUEUED.take() {
            hook();
        }
        let sink = self.obj().downgrade();
        let posted = call.clear(move |mut cleared| {
            cleared.dropped += held;
            // On the call's task: no lock of ours is held, and a panic
            // must not end the task (`panicked.rs`).
            if let Some(sink) = sink.upgrade() {
                sink.imp().on_network(|| {
                    gst::debug!(CAT, obj = sink, "{reason}: clear sent, {cleared:?}");
                    messages::post(sink.upcast_ref(), messages::cleared(reason, &sid, &cleared));
                });
            }
        });
        drop(state);
        if let Err(e) = posted {
            gst::warning!(CAT, imp = self, "clear not sent: {e:?}");
            return false;
        }
        true
    }

    /// The `end-stream` action signal: ends the stream now, or once Twilio
    /// has played what was sent (the partial frame and the resampler's
    /// tail too). Does not block.
    /// False if there was no call to end (Twilio's `stop` read counts), or
    /// another sink plays into it.
    pub(super) fn end_stream(&self, after_playout: bool) -> bool {
        let call = match self.adopt_call() {
            Some((call, _)) => Some(call),
            None if self.state.locked().refused => {
                gst::info!(
                    CAT,
                    imp = self,
                    "end-stream: another sink plays into the call"
                );
                return false;
            }
            None => self.current_call(),
        };
        let Some(call) = call else {
            gst::info!(CAT, imp = self, "end-stream: no call to end");
            return false;
        };
        if after_playout && call.is_open() && !call.is_stopped() {
            // The partial frame and the resampler's tail are part of what
            // must be played first.
            let mut state = self.state.locked();
            state.framer.push_resampler_tail();
            let _ = state.send_frames(Take::All);
        }
        call.end_stream(after_playout)
    }

    /// EOS: sends what the sink still holds (the partial frame, the
    /// resampler's tail); then, with a call Twilio has not stopped, plays
    /// out and ends the stream (`end-stream-on-eos`), or only plays out when
    /// the call is the sink's own (its state change hangs up). False if a
    /// flush or a stop came meanwhile: the EOS is dropped, as BaseSink
    /// drops what comes while it flushes.
    pub(super) fn eos(&self, event: &gst::Event) -> bool {
        // The call played into, even one over: this EOS ends the stream
        // that fed it. The src's next call, started while the EOS was on its
        // way (behind a queue), is not this stream's to end.
        let held = {
            let state = self.state.locked();
            state.call.clone().zip(state.stream_sid.clone())
        };
        let adopted = held.or_else(|| self.adopt_call());
        let owns_call = {
            let mut state = self.state.locked();
            state.framer.push_resampler_tail();
            let _ = state.send_frames(Take::All);
            state.registration.is_some()
        };
        let Some((call, _)) = adopted else {
            if owns_call {
                self.refuse_calls();
            }
            return true;
        };
        if !call.is_open() || call.is_stopped() {
            return self.await_call_over(&call, event);
        }
        let end = self.settings.locked().end_stream_on_eos;
        if end || owns_call {
            return self.play_out(call, end, event);
        }
        true
    }

    /// BaseSink's preroll on `event` (`gst_base_sink_do_preroll`, which the
    /// bindings leave out): nothing in PLAYING; after a change to PAUSED,
    /// commits that state and blocks until PLAYING, a flush or a stop
    /// (then an error). With BaseSink's preroll lock held, as in `event()`.
    fn preroll(&self, event: &gst::Event) -> Result<gst::FlowSuccess, gst::FlowError> {
        use gst::glib::translate::{FromGlib, ToGlibPtr};
        let obj = self.obj();
        let sink: &gst_base::BaseSink = obj.upcast_ref();
        // SAFETY: both pointers are valid for the call, which only reads the
        // event (to see whether it is a buffer to preroll) and keeps no
        // reference to it.
        let ret = unsafe {
            gst::FlowReturn::from_glib(gst_base::ffi::gst_base_sink_do_preroll(
                sink.to_glib_none().0,
                event.as_ptr() as *mut gst::ffi::GstMiniObject,
            ))
        };
        ret.into_result()
    }

    /// At EOS, a call that Twilio stopped (or that ended without `stop`):
    /// lets its `twilio-stop` be posted first (bounded, cancellable), as a
    /// src posts it before its EOS; an application that quits at EOS would
    /// miss it, and `gst-launch-1.0 -m` with it. The sink's own poster posts
    /// it; a paired sink's src, once it reads the call's end (an EOS event
    /// sent to the src beats that read: the src reads on for the messages,
    /// `after_eos.rs`). False if a flush or a stop ended the wait: the EOS is
    /// dropped, as in `play_out`. (Handed on, it would reach BaseSink's own
    /// preroll wait, which waits before it looks at `flushing`: the flush's
    /// one wake-up already went to the `wait_preroll` here, so it would wait
    /// for good, holding the stream lock that deactivating the pad takes.)
    fn await_call_over(&self, call: &Arc<Call>, event: &gst::Event) -> bool {
        if tokio::runtime::Handle::try_current().is_ok() {
            return true;
        }
        // An EOS that comes while paused (a hold) completes PAUSED and
        // waits for PLAYING first, as in `play_out`: else the wait would
        // run out under the preroll lock, which PLAYING needs, while the
        // src that is to post the messages is paused too.
        if self.preroll(event).is_err() {
            gst::debug!(CAT, imp = self, "EOS: flushing, the stream goes on");
            return false;
        }
        let poster = self.state.locked().poster.as_ref().map(|p| p.call_over());
        gst::debug!(CAT, imp = self, "EOS: waiting for the call's last messages");
        let mut posted = match poster {
            Some(over) => RUNTIME.spawn(async move {
                let _ = tokio::time::timeout(POSTER_DRAIN, over).await;
            }),
            None => RUNTIME.spawn(end_read(call.clone())),
        };
        // A pause suspends the wait until PLAYING, as in `play_out`; a
        // flush or a stop ends it.
        if self.wait_under_preroll_lock(&mut posted).is_err() {
            posted.abort();
            gst::debug!(CAT, imp = self, "EOS: flushing, the stream goes on");
            return false;
        }
        true
    }

    /// EOS before any call, in a sink that listens itself: it takes no call
    /// (one that reached it just as EOS came is hung up) until a flush
    /// reopens it or a new start; else the next caller would hear nothing,
    /// for good. Later calls wait or are refused as when the sink holds a
    /// call (`pending-timeout`).
    fn refuse_calls(&self) {
        let slot = self.state.locked().slot.clone();
        let Some(slot) = slot else {
            return;
        };
        gst::info!(CAT, imp = self, "EOS before any call: taking no call");
        if let Some(call) = slot.close() {
            call.close();
        }
    }

    /// Sends [`EOS_MARK`] and waits until Twilio echoes it (or stops the
    /// stream), at most [`Call::playout_bound`]; then, if `end`, ends the
    /// stream. A pause suspends the wait until PLAYING (as BaseSink's own
    /// waits do); a flush or a stop of the element ends it and the stream is
    /// not ended: false, the EOS is dropped. A flush's `clear` makes Twilio
    /// echo the mark at once: that is no playout either.
    fn play_out(&self, call: Arc<Call>, end: bool, event: &gst::Event) -> bool {
        if tokio::runtime::Handle::try_current().is_ok() {
            // On the runtime (a shared-threads src pushed the EOS from the
            // call's own task): waiting here would hold up the very task
            // that reads the echo. Let the runtime wait instead.
            gst::debug!(CAT, imp = self, "EOS: playing out in the background");
            RUNTIME.spawn(async move {
                call.play_out(EOS_MARK).await;
                if end && !call.is_stopped() {
                    call.end("eos");
                }
            });
            return true;
        }
        // An EOS that comes after a pause (PLAYING → PAUSED before it got
        // here) would wait for audio the paused writer holds, under the
        // preroll lock BaseSink holds while a serialized event is handled,
        // so PLAYING could not come back: complete PAUSED with it and wait
        // for PLAYING first, as BaseSink would with the EOS.
        if self.preroll(event).is_err() {
            gst::debug!(CAT, imp = self, "EOS: flushing, the stream goes on");
            return false;
        }
        let bound = call.playout_bound();
        let played = if call.is_one_way() {
            // Nothing was sent, and Twilio would echo no mark.
            gst::debug!(
                CAT,
                imp = self,
                "EOS: a one-way stream, nothing to play out"
            );
            true
        } else {
            gst::debug!(
                CAT,
                imp = self,
                "EOS: waiting up to {bound:?} for Twilio to play out"
            );
            match self.wait_for_playout(&call) {
                Some(played) => played,
                None => return false,
            }
        };
        if self.state.locked().flushing {
            gst::debug!(CAT, imp = self, "EOS: a flush came, the stream goes on");
            return false;
        }
        if call.is_stopped() {
            gst::debug!(CAT, imp = self, "EOS: Twilio stopped the stream meanwhile");
            return self.await_call_over(&call, event);
        }
        if played {
            gst::debug!(CAT, imp = self, "EOS: played out");
        } else {
            gst::warning!(
                CAT,
                imp = self,
                "EOS: Twilio did not confirm playout within {bound:?}"
            );
        }
        if end && call.end("eos") {
            gst::info!(CAT, imp = self, "{call:?}: EOS, stream ended");
            // A sink with a call of its own posts the call's messages from
            // a task: let it post the EOS mark and twilio-ended before the
            // pipeline's EOS does (bounded, cancellable).
            let poster = self.state.locked().poster.take();
            let posted = match poster {
                Some(poster) => RUNTIME.spawn(async move {
                    let _ = tokio::time::timeout(POSTER_DRAIN, poster.finished()).await;
                }),
                // A paired sink: its src posts them as it reads the call's
                // end, after its own EOS too (it reads on for the messages).
                None => RUNTIME.spawn(end_read(call)),
            };
            // A flush or a stop meanwhile: the EOS is dropped (handed on, it
            // would wait in BaseSink's preroll for a wake-up that went here).
            if self.wait_under_preroll_lock(posted).is_err() {
                gst::debug!(CAT, imp = self, "EOS: flushing, the stream goes on");
                return false;
            }
        }
        true
    }
}

impl TwilioStreamSink {
    /// Sends [`EOS_MARK`] and waits for its echo (see `play_out`): whether
    /// it came in time; None if a flush or a stop ended the wait.
    fn wait_for_playout(&self, call: &Arc<Call>) -> Option<bool> {
        let mut waiting = RUNTIME.spawn({
            let call = call.clone();
            async move { call.play_out(EOS_MARK).await }
        });
        // A pause suspends the wait until PLAYING; a flush or a stop ends
        // it.
        match self.wait_under_preroll_lock(&mut waiting) {
            Ok(played) => Some(played.unwrap_or(false)),
            Err(_) => {
                waiting.abort();
                gst::debug!(CAT, imp = self, "EOS: flushing, the stream goes on");
                None
            }
        }
    }
}

/// How long EOS waits for the call's last messages to be posted.
const POSTER_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a paired sink's EOS looks whether its src read the call's end.
const END_READ_LOOK: std::time::Duration = std::time::Duration::from_millis(2);

/// Until the element consuming `call` has read its end and posted its
/// messages ([`Call::end_unread`]), at most [`POSTER_DRAIN`].
async fn end_read(call: Arc<Call>) {
    let until = tokio::time::Instant::now() + POSTER_DRAIN;
    while call.end_unread() && tokio::time::Instant::now() < until {
        tokio::time::sleep(END_READ_LOOK).await;
    }
}

#[cfg(test)]
thread_local! {
    /// Tests only: run by `clear` on this thread once the partial frame is
    /// dropped, just before the clear is queued to the call.
    pub(super) static BEFORE_CLEAR_QUEUED: std::cell::Cell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::Cell::new(None) };
}

#[cfg(test)]
mod tests;
