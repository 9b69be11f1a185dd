//! What one listener knows of its paths: each path's configuration, the
//! slots of the elements registered on it (oldest first), and the accepted
//! calls that wait for a slot to free. Dispatch hands a new call to the
//! first free slot. No sockets here: the accept loop and the registrations
//! share this.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::call::{CAT, Call, CallConfig, Refused, Slot};
use crate::lock::Locked;

/// What all elements on one path must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathConfig {
    pub auth_token: Option<String>,
    /// SignalWire's `Authorization: Bearer` token, also Telnyx's
    /// `x-telnyx-streaming-auth-token` (`upgrade.rs`).
    pub bearer_token: Option<String>,
    pub public_url: Option<String>,
    pub call: CallConfig,
    /// How long a started call waits for a free element; zero: refused at
    /// once (HTTP 503 at the upgrade when that is known then).
    pub pending_timeout: Duration,
}

/// What an operator sees of a path's refusals (element properties).
#[derive(Debug, Default)]
pub struct PathCounters {
    /// Upgrades refused with HTTP 403 for their signature.
    pub signature_failures: AtomicU64,
    /// Connections closed before they became a call (no valid `start`).
    pub rejected_connections: AtomicU64,
    /// Calls refused because no element was free (1013, or HTTP 503).
    pub refused_calls: AtomicU64,
    /// Calls that ended while they waited for a free element.
    pub abandoned_calls: AtomicU64,
}

impl PathCounters {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub enum Dispatch {
    Delivered,
    Queued,
    NobodyListens,
    /// The path is served again, with other auth settings than those the
    /// call was upgraded under; the path's counters now.
    OtherAuth(Arc<PathCounters>),
    /// With `pending-timeout=0`: no element of the path takes the call's
    /// format.
    Unsuited(Unsuited),
}

/// Why no element of a path takes a call's format: the first one's reason,
/// and how to tell each of them, with its own.
pub struct Unsuited {
    pub why: String,
    pub notices: Vec<(Refused, String)>,
}

/// What became of a waiting call at the end of its wait.
pub enum Expired {
    /// It was not waiting any more (taken, or gone).
    NotWaiting,
    /// Taken out: no element was free.
    Busy,
    /// Taken out: no element there takes its format.
    Unsuited(Unsuited),
}

pub struct PathEntry {
    pub config: PathConfig,
    /// Registered slots, oldest first.
    waiters: Vec<(u64, Arc<Slot>)>,
    /// Accepted calls no slot was free for, oldest first.
    pending: VecDeque<Arc<Call>>,
    counters: Arc<PathCounters>,
}

/// What the accept loop and the registrations share.
#[derive(Default)]
pub struct Shared {
    paths: Mutex<HashMap<String, PathEntry>>,
    /// Open connections: calls and handshakes.
    pub connections: AtomicUsize,
    /// Notified whenever a connection ends (its descriptor is free).
    pub connection_ended: Notify,
    /// The handshakes under way, so that max-connections can evict the
    /// oldest. Here rather than in the accept loop: a listener bound again
    /// on a fixed port (`registry::TABLES`) counts the handshakes that came
    /// in under the one before, and must be able to evict them too.
    pub handshakes: Mutex<Handshakes>,
    /// Set, and notified, when the table is shut down: no element can
    /// serve its connections any more.
    shut: AtomicBool,
    /// The listener's port was fixed: an element may listen there again
    /// (`registry::TABLES`), so calls wait for one (`dispatch`).
    fixed: bool,
    shut_down: Notify,
}

/// The handshakes under way, oldest first: each as a `Weak` of how to
/// tell it that max-connections evicts it, which its task holds until it
/// ends. Nothing of a handshake that ended is kept (a handle to its task
/// would keep the task's memory, 13 KB in a release build, for as long as
/// the listener lives), and what is left of those (their dead `Weak`s) is
/// swept out whenever the queue has doubled since the last sweep.
#[derive(Default)]
pub struct Handshakes {
    queue: VecDeque<Weak<Notify>>,
    /// The length at which the queue is swept next.
    sweep_at: usize,
}

impl Handshakes {
    /// The least length swept at: sweeps a short queue seldom.
    const LEAST_SWEEP: usize = 16;

    /// A new handshake, whose task holds `evict`.
    pub fn push(&mut self, evict: &Arc<Notify>) {
        if self.queue.len() >= self.sweep_at {
            self.queue.retain(|h| h.strong_count() > 0);
            self.sweep_at = (2 * self.queue.len()).max(Self::LEAST_SWEEP);
        }
        self.queue.push_back(Arc::downgrade(evict));
    }

    /// Takes out the oldest handshake still under way (and those that
    /// ended before it).
    pub fn take_oldest(&mut self) -> Option<Arc<Notify>> {
        std::iter::from_fn(|| self.queue.pop_front()).find_map(|h| h.upgrade())
    }
}

impl Shared {
    /// The table of a listener on a fixed port.
    pub fn fixed() -> Self {
        Shared {
            fixed: true,
            ..Shared::default()
        }
    }

    pub fn path_config(&self, path: &str) -> Option<(PathConfig, Arc<PathCounters>)> {
        let paths = self.paths.locked();
        paths
            .get(path)
            .filter(|e| !e.waiters.is_empty())
            .map(|e| (e.config.clone(), e.counters.clone()))
    }

    /// Whether an element registered on `path` has no call.
    pub fn has_free_slot(&self, path: &str) -> bool {
        let paths = self.paths.locked();
        paths
            .get(path)
            .is_some_and(|e| e.waiters.iter().any(|(_, slot)| slot.is_free()))
    }

    /// Adds a registration (delivering a pending call at once if there is
    /// one); returns the path's counters, and the calls that waited for an
    /// element on a path left with other auth settings than this one's
    /// (admitted under those, they are for nobody now).
    pub fn register(
        &self,
        path: &str,
        id: u64,
        config: PathConfig,
        slot: Arc<Slot>,
    ) -> io::Result<(Arc<PathCounters>, Vec<Arc<Call>>)> {
        let mut paths = self.paths.locked();
        let entry = paths.entry(path.to_owned()).or_insert_with(|| PathEntry {
            config: config.clone(),
            waiters: Vec::new(),
            pending: VecDeque::new(),
            counters: Arc::default(),
        });
        let same_auth = same_auth(&entry.config, &config);
        let mut stale = Vec::new();
        if entry.waiters.is_empty() {
            // Only calls waiting for a new element kept the path: its
            // settings are the new element's.
            if !same_auth {
                stale = entry.pending.drain(..).collect();
            }
            entry.config = config.clone();
        } else if !same_auth {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{path} is already listened on with another auth-token, \
                     auth-bearer-token or public-url"
                ),
            ));
        }
        deliver_pending(entry, &slot);
        entry.waiters.push((id, slot));
        Ok((entry.counters.clone(), stale))
    }

    /// Opens `slot`, registered on `path`, to calls again after
    /// [`Slot::close`], delivering the oldest waiting call at once.
    pub fn reopen(&self, path: &str, slot: &Slot) {
        let mut paths = self.paths.locked();
        slot.reopen();
        if let Some(entry) = paths.get_mut(path) {
            deliver_pending(entry, slot);
        }
    }

    /// Removes a registration; returns the pending calls nobody can take
    /// any more. With `keep_pending` (a listener on a fixed port), calls
    /// waiting when the last element leaves wait on for the rest of their
    /// `pending-timeout`, for an element that registers on the path anew
    /// (a pipeline cycled through READY between calls).
    pub fn unregister(&self, path: &str, id: u64, keep_pending: bool) -> Vec<Arc<Call>> {
        let mut paths = self.paths.locked();
        let Some(entry) = paths.get_mut(path) else {
            return Vec::new();
        };
        entry.waiters.retain(|(i, _)| *i != id);
        if entry.waiters.is_empty() && keep_pending && !entry.pending.is_empty() {
            gst::debug!(CAT, "{path}: no element left, its waiting calls wait on");
            Vec::new()
        } else if entry.waiters.is_empty() {
            paths
                .remove(path)
                .map(|e| e.pending.into())
                .unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// Hands `call`, upgraded under `admitted` (its path's settings then,
    /// and `counters`), to the first free slot of its path, or queues it.
    /// On a fixed port, a call whose path's last element stopped between
    /// its upgrade and its `start` waits too, as the calls that were
    /// waiting then do, for an element listening there again.
    pub fn dispatch(
        &self,
        path: &str,
        admitted: &PathConfig,
        counters: &Arc<PathCounters>,
        call: &Arc<Call>,
    ) -> Dispatch {
        let mut paths = self.paths.locked();
        let Some(entry) = paths.get_mut(path) else {
            if !self.fixed || admitted.pending_timeout.is_zero() || self.shut.load(Ordering::SeqCst)
            {
                return Dispatch::NobodyListens;
            }
            gst::debug!(CAT, "{call:?}: no element free, waiting");
            paths.insert(
                path.to_owned(),
                PathEntry {
                    config: admitted.clone(),
                    waiters: Vec::new(),
                    pending: VecDeque::from([call.clone()]),
                    counters: counters.clone(),
                },
            );
            return Dispatch::Queued;
        };
        // Its elements all stopped since, and others serve it now.
        if !same_auth(&entry.config, admitted) {
            return Dispatch::OtherAuth(entry.counters.clone());
        }
        if entry.waiters.iter().any(|(_, slot)| slot.offer(call)) {
            gst::debug!(CAT, "{call:?}: delivered");
            Dispatch::Delivered
        } else if let Some(unsuited) =
            unsuited_everywhere(entry, call).filter(|_| admitted.pending_timeout.is_zero())
        {
            Dispatch::Unsuited(unsuited)
        } else {
            // Even if no element there takes its format: one that does may
            // come within pending-timeout (a pipeline cycled through READY).
            gst::debug!(CAT, "{call:?}: no element free, waiting");
            entry.pending.push_back(call.clone());
            Dispatch::Queued
        }
    }

    /// Removes `call` from the pending queue, saying why it waited in vain.
    pub fn expire(&self, path: &str, call: &Arc<Call>) -> Expired {
        let mut paths = self.paths.locked();
        let Some(entry) = paths.get_mut(path) else {
            return Expired::NotWaiting;
        };
        let before = entry.pending.len();
        entry.pending.retain(|c| !Arc::ptr_eq(c, call));
        let expired = match (
            entry.pending.len() != before,
            unsuited_everywhere(entry, call),
        ) {
            (false, _) => Expired::NotWaiting,
            (true, Some(unsuited)) => Expired::Unsuited(unsuited),
            (true, None) => Expired::Busy,
        };
        if entry.waiters.is_empty() && entry.pending.is_empty() {
            paths.remove(path);
        }
        expired
    }

    /// Empties the table; returns the pending calls, each with its path's
    /// counters.
    pub fn shutdown(&self) -> Vec<(Arc<Call>, Arc<PathCounters>)> {
        let mut paths = self.paths.locked();
        self.shut.store(true, Ordering::SeqCst);
        self.shut_down.notify_waiters();
        paths
            .drain()
            .flat_map(|(_, e)| {
                let counters = e.counters;
                e.pending.into_iter().map(move |c| (c, counters.clone()))
            })
            .collect()
    }

    /// Completes once the table is shut down (at once if it is already).
    pub async fn shut_down(&self) {
        let notified = self.shut_down.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a shutdown in between wakes it.
        notified.as_mut().enable();
        if !self.shut.load(Ordering::SeqCst) {
            notified.await;
        }
    }
}

/// `path` as a URL path is sent, so that the path an element is given and
/// the path a request names compare equal however each was written: what a
/// path may not hold as it is (a space, anything not ASCII) percent-encoded
/// (UTF-8), and the hex digits of escapes upper-case. `/ünï` and
/// `/%c3%bcn%C3%AF` are both `/%C3%BCn%C3%AF`.
pub fn canonical_path(path: &str) -> String {
    use std::fmt::Write as _;
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape = b == b'%'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit);
        if escape {
            out.push('%');
            out.push(bytes[i + 1].to_ascii_uppercase() as char);
            out.push(bytes[i + 2].to_ascii_uppercase() as char);
            i += 3;
            continue;
        }
        // RFC 3986: unreserved, sub-delims, ':', '@' and the '/' between
        // segments; '?' and '#' too, which end a path (an element refuses
        // a path holding them).
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?#".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        i += 1;
    }
    out
}

/// Whether a call admitted under `a` may be one of `b`'s: the same
/// credentials asked for.
fn same_auth(a: &PathConfig, b: &PathConfig) -> bool {
    a.auth_token == b.auth_token && a.bearer_token == b.bearer_token && a.public_url == b.public_url
}

/// Hands `slot`, if free, the oldest pending call still open (the closed
/// ones are dropped from the queue on the way).
fn deliver_pending(entry: &mut PathEntry, slot: &Slot) {
    // Calls that ended while waiting go; one of a format the slot does not
    // take waits on for another element.
    let counters = &entry.counters;
    entry.pending.retain(|call| {
        let open = call.is_open();
        if !open {
            PathCounters::count(&counters.abandoned_calls);
            gst::info!(CAT, "{call:?}: ended while it waited for a free element");
        }
        open
    });
    let taken = entry.pending.iter().position(|call| slot.offer(call));
    if let Some(call) = taken.and_then(|i| entry.pending.remove(i)) {
        gst::debug!(CAT, "{call:?}: was waiting, delivered to a free element");
    }
}

/// Why none of the path's elements takes `call`, if none does (with no
/// elements, any could come).
fn unsuited_everywhere(entry: &PathEntry, call: &Call) -> Option<Unsuited> {
    let format = call.format();
    let mut notices = Vec::new();
    let mut first = None;
    for (_, slot) in &entry.waiters {
        let why = slot.unsuited(format)?;
        if let Some(notice) = slot.refused_notice() {
            notices.push((notice, why.clone()));
        }
        first.get_or_insert(why);
    }
    Some(Unsuited {
        why: first?,
        notices,
    })
}

#[cfg(test)]
mod handshakes_tests {
    use super::*;

    /// Handshakes that ended are not kept: the queue stays within twice
    /// those under way (or the least length swept at), and the oldest
    /// under way is the one evicted.
    #[test]
    fn only_handshakes_under_way_are_kept() {
        let mut handshakes = Handshakes::default();
        let lasting: Vec<Arc<Notify>> = (0..5).map(|_| Arc::default()).collect();
        for (i, evict) in lasting.iter().enumerate() {
            handshakes.push(evict);
            for _ in 0..1000 * i {
                handshakes.push(&Arc::default());
                assert!(handshakes.queue.len() <= 2 * (i + 1) + Handshakes::LEAST_SWEEP);
            }
        }
        for evict in &lasting {
            let oldest = handshakes.take_oldest().unwrap();
            assert!(Arc::ptr_eq(&oldest, evict));
        }
        assert!(handshakes.take_oldest().is_none());
        assert!(handshakes.queue.is_empty());
    }
}

#[cfg(test)]
mod canonical_tests {
    use super::canonical_path;

    #[test]
    fn paths_compare_as_they_are_sent() {
        assert_eq!(canonical_path("/ünï"), "/%C3%BCn%C3%AF");
        assert_eq!(canonical_path("/%c3%bcn%C3%af"), "/%C3%BCn%C3%AF");
        assert_eq!(canonical_path("/a b"), "/a%20b");
        assert_eq!(canonical_path("/a%20b"), "/a%20b");
        // What a path may hold stays as it is; a lone % is escaped.
        assert_eq!(
            canonical_path("/twilio/v1-echo_~.x;y=1@a:b"),
            "/twilio/v1-echo_~.x;y=1@a:b"
        );
        assert_eq!(canonical_path("/100%"), "/100%25");
        // Left for the element to refuse.
        assert_eq!(canonical_path("/media?x=1#y"), "/media?x=1#y");
    }
}
