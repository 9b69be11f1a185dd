//! The elements' side of [`crate::call::hot`]: where an element's
//! per-chunk state lies in memory, for the call's task to fetch ahead.

use gst::glib;
use gst::glib::translate::IntoGlib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::call::{Call, HotPart};

/// GstPadPrivate's size, about: it lies just before the pad's struct.
const PAD_PRIVATE: usize = 128;

/// Private data GStreamer's elements keep before their instance struct,
/// about (GstBaseTransformPrivate, a queue's none): fetched with it.
const ELEMENT_PRIVATE: usize = 512;

/// Registers `imp`'s object (its private data, `imp` among it, lies
/// next to the instance struct) as `element`, and `pad` as `pad_part`.
pub(crate) fn register<T: ObjectSubclass>(
    call: &Call,
    imp: &T,
    element: HotPart,
    pad: &gst::Pad,
    pad_part: HotPart,
) {
    let instance = imp.obj().as_ptr() as usize;
    call.hot.set_span(
        element,
        (imp as *const T as usize, std::mem::size_of::<T>()),
        (instance, std::mem::size_of::<T::Instance>()),
    );
    register_pad(call, pad, pad_part);
}

/// Registers the element downstream of `src_pad` and its pad, unless it
/// is a twiliostreamsink (which registers itself).
pub(crate) fn register_downstream(call: &Call, src_pad: &gst::Pad) {
    let Some(peer) = src_pad.peer() else {
        return;
    };
    let Some(element) = peer.parent_element() else {
        return;
    };
    if element.is::<crate::TwilioStreamSink>() {
        call.hot
            .clear(&[HotPart::Downstream, HotPart::DownstreamPad]);
        return;
    }
    let size = instance_size(element.type_());
    call.hot.set(
        HotPart::Downstream,
        (element.as_ptr() as usize).saturating_sub(ELEMENT_PRIVATE),
        ELEMENT_PRIVATE + size,
    );
    register_pad(call, &peer, HotPart::DownstreamPad);
}

fn register_pad(call: &Call, pad: &gst::Pad, part: HotPart) {
    let pad = pad.as_ptr() as usize;
    call.hot.set(
        part,
        pad.saturating_sub(PAD_PRIVATE),
        PAD_PRIVATE + std::mem::size_of::<gst::ffi::GstPad>(),
    );
}

/// The size of `type_`'s instance struct.
fn instance_size(type_: glib::Type) -> usize {
    let mut query = std::mem::MaybeUninit::<glib::gobject_ffi::GTypeQuery>::zeroed();
    // SAFETY: g_type_query fills the struct (zeroed: left so for an
    // unknown type).
    let query = unsafe {
        glib::gobject_ffi::g_type_query(type_.into_glib(), query.as_mut_ptr());
        query.assume_init()
    };
    query.instance_size as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_sizes_are_glibs() {
        gst::init().unwrap();
        assert_eq!(
            instance_size(gst::Pad::static_type()),
            std::mem::size_of::<gst::ffi::GstPad>()
        );
        assert_eq!(
            instance_size(gst_base::BaseSink::static_type()),
            std::mem::size_of::<gst_base::ffi::GstBaseSink>()
        );
    }
}
