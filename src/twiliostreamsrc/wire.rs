//! The call's own format, once its `start` tells it: the src converts from
//! it, and its caps grow with it. The pad was negotiated before the call
//! (S16LE at 16 kHz unless downstream asks otherwise); at `start` the src
//! switches to what the call carries without resampling or transcoding
//! when downstream takes that too: S16LE at the call's own rate for
//! wideband L16 output as PCM, the call's own bytes for raw output, a
//! G.722 or Opus call's payloads for its decoder. Otherwise it keeps the
//! negotiated format and converts (an error for G.722 and Opus, which are
//! passed through only, and for their caps on another call). A call whose
//! provider may send media out of order (Telnyx) gets the reorder window.
//! G.722 and Opus payloads become buffers here, as they came.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::imp::{CAT, State, TwilioStreamSrc};
use super::output::{Encoding, Output};
use super::properties::Tracks;
use super::reorder::{self, Reorder};
use crate::call::slot::Claim;
use crate::call::{MediaChunk, Refused, Slot, Takes};
use crate::lock::Locked;

const G722_CAPS: &str = "audio/G722";
const OPUS_CAPS: &str = "audio/x-opus";

impl TwilioStreamSrc {
    /// Before the slot is registered: a call left from an earlier run is
    /// not taken for a new one; the slot takes only the calls the src can
    /// output (with `track=both`, 8 kHz G.711; a G.722 or Opus call only
    /// where downstream takes it as it is), and a call refused for that is
    /// told on the bus, the pipeline kept for the next call.
    pub(super) fn ready_slot(
        &self,
        slot: &Arc<Slot>,
        tracks: Tracks,
    ) -> Result<Claim, gst::ErrorMessage> {
        // Before the slot is touched: a src of the same call-name holds it.
        let claim = Slot::claim(slot).ok_or_else(|| {
            gst::error_msg!(
                gst::ResourceError::Settings,
                ("another twiliostreamsrc with the same call-name is listening (each src \
                  needs a call-name of its own)")
            )
        })?;
        if let Some(call) = slot.take() {
            call.close();
        }
        // Closed by an EOS before any call of the last run (`after_eos.rs`).
        self.app_eos.refusing.store(false, Ordering::SeqCst);
        slot.reopen();
        let takes = match tracks {
            Tracks::Both => Takes {
                g711_only: true,
                ..Takes::default()
            },
            _ => self.downstream_takes(),
        };
        let weak = self.obj().downgrade();
        let notice: Refused = Arc::new(move |why: &str| {
            if let Some(obj) = weak.upgrade() {
                gst::element_warning!(
                    obj,
                    gst::StreamError::Format,
                    ("Refused a call (close code 1003): {}", why),
                    [
                        "With track=both, use track=inbound or outbound for calls of other \
                         formats; for G.722 or Opus calls, link a decoder (avdec_g722, opusdec) \
                         after the src"
                    ]
                );
            }
        });
        let filters = takes != Takes::default();
        slot.take_only(takes, filters.then_some(notice));
        Ok(claim)
    }

    /// What the src's peer takes, as far as the formats it passes through
    /// go (asked before any call; an unlinked pad takes anything).
    fn downstream_takes(&self) -> Takes {
        let pad = self.obj().src_pad().clone();
        let accepts = |keep: &dyn Fn(&str) -> bool| {
            let mut caps = gst::Caps::new_empty();
            for s in Output::template_caps().iter().filter(|s| keep(s.name())) {
                caps.get_mut().unwrap().append_structure(s.to_owned());
            }
            !pad.peer_query_caps(Some(&caps)).is_empty()
        };
        Takes {
            g711_only: false,
            pcm: accepts(&|name| !matches!(name, G722_CAPS | OPUS_CAPS)),
            g722: accepts(&|name| name == G722_CAPS),
            opus: accepts(&|name| name == OPUS_CAPS),
        }
    }

    /// At `start`: takes the call's format, and renegotiates to it where
    /// downstream agrees. An error for what the src cannot output.
    pub(super) fn follow_call_format(&self) -> Result<(), gst::FlowError> {
        let (format, output, tracks, waits) = {
            let mut state = self.state.locked();
            // As this run started with it (raising it again changes nothing).
            let asked = state.track_wait_ms;
            let Some(call) = &state.call else {
                return Ok(());
            };
            let format = call.format();
            let window = if call.dialect().unordered_media() {
                state.reorder_window
            } else {
                0
            };
            state.format = format;
            state.reorder = Reorder::new(window, format);
            // (The aligner is made with it at the first chunk.)
            if state.tracks == Tracks::Both {
                state.track_wait_ms = asked.max(reorder::both_tracks_wait_ms(window));
            }
            let waits = (state.track_wait_ms != asked).then_some((asked, state.track_wait_ms));
            (format, state.output, state.tracks, waits)
        };
        gst::info!(CAT, imp = self, "the call carries {format}");
        if let Some((asked, waits)) = waits {
            gst::info!(
                CAT,
                imp = self,
                "track-wait {asked} ms is shorter than the reorder window holds chunks: \
                 waiting {waits} ms for the slower track"
            );
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
        }
        if tracks == Tracks::Both && !format.is_g711() {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                (
                    "track=both takes 8 kHz G.711 calls only; this call carries {}",
                    format
                ),
                ["Use track=inbound or track=outbound for an L16 call"]
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        let Some(output) = output else {
            // Not negotiated yet: the caps offered now prefer the call's.
            return Ok(());
        };
        let current = output.for_wire(format);
        // A compressed call is passed through only: its own caps (never PCM
        // at its rate: Opus's 48 kHz is no PCM output).
        let wanted = match current.encoding {
            _ if format.is_compressed() => (!current.passthrough()).then(|| Output::own(format)),
            Encoding::S16le if format.rate > 8000 && current.rate != format.rate => Some(Output {
                rate: format.rate,
                ..current
            }),
            Encoding::Mulaw | Encoding::Alaw | Encoding::S16be if !current.passthrough() => {
                Some(Output::own(format))
            }
            _ => None,
        };
        let delay_before = output.delay();
        {
            let mut state = self.state.locked();
            state.output = Some(current);
        }
        if let Some(wanted) = wanted {
            let caps = wanted.caps_with(tracks.channels());
            let pad = self.obj().src_pad().clone();
            if pad.peer_query_caps(Some(&caps)).is_empty() {
                gst::debug!(CAT, imp = self, "downstream refuses {caps}: converting");
            } else if let Err(e) = self.obj().set_caps(&caps) {
                gst::warning!(CAT, imp = self, "could not switch to {caps}: {e}");
            } else {
                gst::info!(CAT, imp = self, "switched to the call's own {caps}");
                return Ok(());
            }
        }
        if !current.fits(format) {
            let caps = current.caps_with(1);
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("The call carries {}, the src outputs {}", format, caps),
                ["G.722 and Opus calls are passed through as they came: put \
                     avdec_g722 (audio/G722) or opusdec (audio/x-opus) after the src; \
                     those caps take no other call"]
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        if current.delay() != delay_before {
            let obj = self.obj();
            let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
        }
        Ok(())
    }
}

impl TwilioStreamSrc {
    /// A G.722 or Opus payload as it came, after `silence` ticks of gap
    /// (no bytes are silence: the time is skipped, DISCONT); a track the
    /// stream lacks (`payload` None) skips its time.
    pub(super) fn compressed_buffer(
        &self,
        state: &mut State,
        payload: Option<&[u8]>,
        chunk: &MediaChunk,
        silence: u64,
        discont: bool,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let output = state.output.ok_or(gst::FlowError::NotNegotiated)?;
        let ticks = state.format.payload_ticks(&chunk.ulaw);
        let timeline = state.timeline.as_mut().expect("placed before");
        timeline.advance(silence);
        let Some(payload) = payload else {
            timeline.advance(ticks);
            self.ran_to(timeline);
            return Ok(None);
        };
        let span = timeline.span(ticks, output.factor(), output.delay());
        let mut buffer = gst::Buffer::from_slice(payload.to_vec());
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(span.pts);
            buffer.set_duration(span.duration);
            buffer.set_offset(span.offset);
            buffer.set_offset_end(span.offset_end);
            if discont || silence > 0 {
                buffer.set_flags(gst::BufferFlags::DISCONT);
            }
        }
        timeline.advance(ticks);
        self.ran_to(timeline);
        Ok(Some(buffer))
    }
}
