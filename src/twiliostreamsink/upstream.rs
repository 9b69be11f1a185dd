//! What feeds the sink, found by walking upstream from its pad (through
//! any elements, bins and ghost pads): whether a src's pushes reach it (to
//! hold them while it pauses), and whether its stream is a src's (to tell
//! the old call's audio still on its way from the next call's).

use std::sync::Arc;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::TwilioStreamSink;

impl TwilioStreamSink {
    /// Whether `src` is upstream of the sink's pad (a walk too long to
    /// finish counts as yes: the src is held).
    pub(super) fn fed_by(&self, src: &crate::TwilioStreamSrc) -> bool {
        let src: &gst::Element = src.upcast_ref();
        self.upstream(|e| e == src, false).unwrap_or(true)
    }

    /// Whether the sink's stream comes from the src whose calls arrive in
    /// `slot`, its STREAM_START with it: not through an aggregator (a
    /// mixer), which starts a stream of its own and eats its inputs'. A
    /// walk too long to finish counts as no: the next call is taken rather
    /// than waited for in vain.
    pub(super) fn stream_from_src(&self, slot: Option<&Arc<crate::call::Slot>>) -> bool {
        let Some(slot) = slot else {
            return false;
        };
        let src_of = |e: &gst::Element| {
            e.downcast_ref::<crate::TwilioStreamSrc>()
                .is_some_and(|src| Arc::ptr_eq(&src.slot(), slot))
        };
        self.upstream(src_of, true).unwrap_or(false)
    }

    /// Whether an element `found` is upstream of the sink's pad, through
    /// any elements and bins (ghost pads lead to their targets), but for
    /// aggregators with `stop_at_aggregators`; None if the walk was too
    /// long (a loop).
    fn upstream(
        &self,
        found: impl Fn(&gst::Element) -> bool,
        stop_at_aggregators: bool,
    ) -> Option<bool> {
        let obj = self.obj();
        let pad = gst_base::prelude::BaseSinkExtManual::sink_pad(&*obj);
        let mut pads: Vec<gst::Pad> = pad.peer().into_iter().collect();
        for _ in 0..1024 {
            let Some(pad) = pads.pop() else {
                return Some(false);
            };
            let element = pad.parent_element();
            if element.as_ref().is_some_and(&found) {
                return Some(true);
            }
            if stop_at_aggregators && element.is_some_and(|e| e.is::<gst_base::Aggregator>()) {
                continue;
            }
            for link in pad.iterate_internal_links().into_iter().flatten() {
                pads.extend(link.peer());
            }
        }
        None
    }
}
