//! Where a call is delivered: a [`Slot`] holds at most one call. A src (or a
//! sink that listens on its own) registers its slot with a listener; a sink
//! paired with that src waits on the same slot, found through the src of its
//! pipeline or by name ([`named_slot`]), so both elements serve one call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use tokio::sync::watch;

use super::Call;
use crate::codec::{Codec, WireFormat};

use crate::lock::Locked;

/// Where a call is delivered: see the module documentation.
pub struct Slot {
    call: watch::Sender<Option<Arc<Call>>>,
    /// Takes no call (see [`close`](Self::close)); read and written under
    /// the watch's lock, so that no offer slips past a close.
    closed: AtomicBool,
    /// The formats of the calls it takes.
    takes: Mutex<Takes>,
    /// Registered with a listener: a named slot takes calls for one src.
    registered: AtomicBool,
    /// Told why, when a call is refused for none of the path's slots
    /// taking its format.
    refused: Mutex<Option<Refused>>,
}

/// The formats of the calls a slot takes: a src's, from its `track` and
/// what its downstream takes (a G.722 or Opus call is passed through only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takes {
    /// 8 kHz G.711 only (`track=both`).
    pub g711_only: bool,
    /// Calls the src decodes (G.711, L16).
    pub pcm: bool,
    pub g722: bool,
    pub opus: bool,
}

impl Default for Takes {
    fn default() -> Takes {
        Takes {
            g711_only: false,
            pcm: true,
            g722: true,
            opus: true,
        }
    }
}

/// A slot's registration with a listener (see [`Slot::claim`]).
#[derive(Debug)]
pub struct Claim(Arc<Slot>);

impl Claim {
    /// A new slot, claimed.
    pub fn new_slot() -> Claim {
        let slot = Slot::new();
        slot.registered.store(true, Ordering::Release);
        Claim(slot)
    }

    pub fn slot(&self) -> &Arc<Slot> {
        &self.0
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.registered.store(false, Ordering::Release);
    }
}

/// How a slot's element is told of a call it could not take.
pub type Refused = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("call", &*self.call.borrow())
            .field("closed", &self.closed)
            .field("takes", &*self.takes.locked())
            .finish_non_exhaustive()
    }
}

impl Slot {
    pub fn new() -> Arc<Slot> {
        Arc::new(Slot {
            call: watch::Sender::new(None),
            closed: AtomicBool::new(false),
            takes: Mutex::new(Takes::default()),
            registered: AtomicBool::new(false),
            refused: Mutex::new(None),
        })
    }

    /// Sets the formats of the calls the slot takes, and how its element is
    /// told of a call refused for its format. Set before the slot is
    /// registered.
    pub fn take_only(&self, takes: Takes, refused: Option<Refused>) {
        *self.takes.locked() = takes;
        *self.refused.locked() = refused;
    }

    /// The slot's place on a listener, for as long as the claim is held;
    /// None if another registration holds it (two srcs of one
    /// `call-name`: each would take the other's calls).
    pub fn claim(slot: &Arc<Slot>) -> Option<Claim> {
        let taken = slot.registered.swap(true, Ordering::AcqRel);
        (!taken).then(|| Claim(slot.clone()))
    }

    /// Why the slot could never take a call of `format`, if it could not.
    pub(crate) fn unsuited(&self, format: WireFormat) -> Option<String> {
        let why = self.refusal(format)?;
        Some(format!("{why}; this call carries {format}"))
    }

    /// What [`unsuited`](Self::unsuited) says, before the format.
    fn refusal(&self, format: WireFormat) -> Option<&'static str> {
        let takes = *self.takes.locked();
        Some(match format.codec {
            _ if takes.g711_only && !format.is_g711() => "track=both takes 8 kHz G.711 calls only",
            Codec::G722 if !takes.g722 => "the src's downstream takes no audio/G722",
            Codec::Opus if !takes.opus => "the src's downstream takes no audio/x-opus",
            _ if !format.is_compressed() && !takes.pcm => {
                "the src's downstream takes compressed audio only"
            }
            _ => return None,
        })
    }

    /// How the slot's element is told of a call refused as
    /// [`unsuited`](Self::unsuited).
    pub(crate) fn refused_notice(&self) -> Option<Refused> {
        self.refused.locked().clone()
    }

    /// Delivers `call` if the slot is free and takes its format.
    pub(crate) fn offer(&self, call: &Arc<Call>) -> bool {
        if self.refusal(call.format()).is_some() {
            return false;
        }
        self.call.send_if_modified(|current| {
            if current.is_none() && !self.closed.load(Ordering::Relaxed) {
                *current = Some(call.clone());
                true
            } else {
                false
            }
        })
    }

    pub fn is_free(&self) -> bool {
        self.call.borrow().is_none() && !self.closed.load(Ordering::Relaxed)
    }

    /// Takes no more calls until [`reopen`](Self::reopen) (its element has
    /// nothing to play them); returns the call it held, if any.
    pub fn close(&self) -> Option<Arc<Call>> {
        let mut taken = None;
        self.call.send_if_modified(|current| {
            self.closed.store(true, Ordering::Relaxed);
            taken = current.take();
            taken.is_some()
        });
        taken
    }

    /// Takes calls again after [`close`](Self::close).
    pub fn reopen(&self) {
        self.call.send_if_modified(|_| {
            self.closed.store(false, Ordering::Relaxed);
            false
        });
    }

    pub fn current(&self) -> Option<Arc<Call>> {
        self.call.borrow().clone()
    }

    /// Empties the slot, returning the call it held.
    pub fn take(&self) -> Option<Arc<Call>> {
        let mut taken = None;
        self.call.send_if_modified(|current| {
            taken = current.take();
            taken.is_some()
        });
        taken
    }

    /// Waits until a call is delivered.
    pub async fn wait(&self) -> Arc<Call> {
        let mut rx = self.call.subscribe();
        let call = rx
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self");
        call.clone().expect("waited for Some")
    }
}

/// Slots shared by name, so that elements in different pipelines can pair.
static NAMED_SLOTS: LazyLock<Mutex<HashMap<String, Weak<Slot>>>> = LazyLock::new(Default::default);

/// The slot called `name`, created on first use; it lives as long as an
/// element holds it.
pub fn named_slot(name: &str) -> Arc<Slot> {
    let mut slots = NAMED_SLOTS.locked();
    slots.retain(|_, slot| slot.strong_count() > 0);
    if let Some(slot) = slots.get(name).and_then(Weak::upgrade) {
        return slot;
    }
    let slot = Slot::new();
    slots.insert(name.to_owned(), Arc::downgrade(&slot));
    slot
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_slots_are_shared_while_held() {
        let a = named_slot("x");
        let b = named_slot("x");
        assert!(Arc::ptr_eq(&a, &b));
        let c = named_slot("y");
        assert!(!Arc::ptr_eq(&a, &c));
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none());
    }
}
