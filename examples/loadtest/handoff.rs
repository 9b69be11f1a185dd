//! What GStreamer alone costs per chunk, for the `gst-floor` server: the
//! floor's echo, plus each chunk's μ-law put in a buffer and pushed from
//! a pad into a `fakesink` (a BaseSink, as `twiliostreamsink` is) on the
//! network thread. No codec, none of the plugin: one buffer allocation
//! and one pad-to-sink hand-off per chunk, the least any pipeline pays.
//! Or through a `capsfilter` first (`gst-floor2`): the least a pipeline
//! with caps between its elements pays. Or through a `queue`
//! (`gst-floor-queue`), the buffer handed back from the sink, on the
//! queue's thread, to the connection's task, which only then sends the
//! echo: the two thread hand-offs per chunk that `queue` makes.

use gst::prelude::*;
use tokio::sync::mpsc::UnboundedSender;

/// What stands between the pad and the fakesink.
pub enum Between {
    Nothing,
    Capsfilter,
    /// A `queue`; each buffer, as it reaches the sink, goes to the sender.
    Queue(UnboundedSender<gst::Buffer>),
}

/// One call's pad and the pipeline of the sink it pushes into.
pub struct Handoff {
    pipeline: gst::Pipeline,
    pad: gst::Pad,
}

impl Handoff {
    /// Into a fakesink, through what `between` says.
    pub fn new(between: Between) -> Self {
        let pipeline = gst::Pipeline::new();
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .property("async", false)
            .property("enable-last-sample", false)
            .build()
            .unwrap();
        pipeline.add(&sink).unwrap();
        let caps = gst::Caps::builder("audio/x-mulaw")
            .field("rate", 8000i32)
            .field("channels", 1i32)
            .build();
        let first = match between {
            Between::Nothing => sink.clone(),
            Between::Capsfilter => gst::ElementFactory::make("capsfilter")
                .property("caps", &caps)
                .build()
                .unwrap(),
            Between::Queue(echo) => {
                // A probe, not fakesink's handoff signal: a signal emission
                // per buffer would be a cost of this rig, not of the queue.
                sink.static_pad("sink").unwrap().add_probe(
                    gst::PadProbeType::BUFFER,
                    move |_, info| {
                        if let Some(buffer) = info.buffer() {
                            let _ = echo.send(buffer.clone());
                        }
                        gst::PadProbeReturn::Ok
                    },
                );
                gst::ElementFactory::make("queue").build().unwrap()
            }
        };
        if first != sink {
            pipeline.add(&first).unwrap();
            first.link(&sink).unwrap();
        }
        let pad = gst::Pad::builder(gst::PadDirection::Src).build();
        pad.link(&first.static_pad("sink").unwrap()).unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        pad.set_active(true).unwrap();
        pad.push_event(gst::event::StreamStart::new("handoff"));
        pad.push_event(gst::event::Caps::new(&caps));
        let segment = gst::FormattedSegment::<gst::ClockTime>::new();
        pad.push_event(gst::event::Segment::new(&segment));
        Handoff { pipeline, pad }
    }

    /// Pushes `ulaw` as the buffer at `pts_ns`.
    pub fn push(&self, ulaw: &[u8], pts_ns: u64) {
        let mut buffer = gst::Buffer::with_size(ulaw.len()).unwrap();
        {
            let buffer = buffer.get_mut().unwrap();
            buffer.set_pts(gst::ClockTime::from_nseconds(pts_ns));
            buffer.copy_from_slice(0, ulaw).unwrap();
        }
        let _ = self.pad.push(buffer);
    }
}

impl Drop for Handoff {
    fn drop(&mut self) {
        let _ = self.pad.set_active(false);
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
