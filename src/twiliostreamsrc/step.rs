//! What one event of the call turns into for the src pad: nothing, buffers
//! (usually one, so one takes no allocation), or the end of the stream; and
//! how `create()` returns them.

use gst_base::subclass::base_src::CreateSuccess;

/// What one event of the call turned into.
pub(super) enum Step {
    Next,
    /// Audio to push (none while the reorder window waits).
    Buffers(Buffers),
    /// The call ended: its last audio (what the reorder window held, the
    /// resampler's tail), then EOS.
    End(Buffers),
}

/// One thing a drain pushes (`shared_threads`): kept in order, with the
/// rest, when a sink's hold stops it.
pub(super) enum Out {
    Buffer(gst::Buffer),
    /// EOS after the call's last audio.
    Event(gst::Event),
}

/// The buffers one event makes: almost always one, which then takes no
/// allocation (the rest only when the reorder window lets out several).
#[derive(Default)]
pub(super) struct Buffers {
    first: Option<gst::Buffer>,
    rest: Vec<gst::Buffer>,
}

impl Buffers {
    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Sets `flags` on the first buffer.
    pub(super) fn flag_first(&mut self, flags: gst::BufferFlags) {
        if let Some(first) = self.first.as_mut() {
            first.make_mut().set_flags(flags);
        }
    }

    pub(super) fn push(&mut self, buffer: gst::Buffer) {
        match self.first {
            None => self.first = Some(buffer),
            Some(_) => self.rest.push(buffer),
        }
    }
}

impl Extend<gst::Buffer> for Buffers {
    fn extend<I: IntoIterator<Item = gst::Buffer>>(&mut self, buffers: I) {
        for buffer in buffers {
            self.push(buffer);
        }
    }
}

impl IntoIterator for Buffers {
    type Item = gst::Buffer;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<gst::Buffer>, std::vec::IntoIter<gst::Buffer>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

impl Step {
    /// The buffers, as `create()` returns them.
    pub(super) fn created(buffers: Buffers) -> Option<CreateSuccess> {
        match (buffers.first, buffers.rest.is_empty()) {
            (None, _) => None,
            (Some(buffer), true) => Some(CreateSuccess::NewBuffer(buffer)),
            (Some(first), false) => Some(CreateSuccess::NewBufferList(
                std::iter::once(first).chain(buffers.rest).collect(),
            )),
        }
    }
}
