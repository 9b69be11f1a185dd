//! Keeps the network polled while a runtime thread is held in a pipeline.
//!
//! A `shared-threads` src pushes from a network thread, and a push can
//! block: a pad probe that blocks (to relink), a full `queue`, an appsink
//! nobody pulls. tokio polls the network from a worker that has run out of
//! work; a worker that went to sleep while the held one was still polling
//! (its try for the network failed) sleeps on until it is handed a task,
//! and with no thread polling the network, every call of the process
//! stops until the held push returns.
//!
//! So each runtime thread marks when it is inside a pipeline ([`enter`]:
//! the elements' work on network threads, the src's drains and fills, the
//! messages they post),
//! and a watch thread looks every [`PERIOD`] while calls run: a thread
//! inside one entry since its last look gets the runtime an empty task. A
//! sleeping worker wakes for it, finds the network free and polls it: the
//! other calls go on (tasks queued on the held thread are taken over by
//! the others, except the one it woke last, which tokio keeps for it),
//! only the held call waits. The watch sleeps for good once
//! no thread has entered a pipeline for [`IDLE_AFTER`], and the next entry
//! wakes it.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// How often the watch looks while calls run: a held thread stops the
/// other calls for about this long at most (up to twice it).
pub const PERIOD: Duration = Duration::from_millis(50);

/// With no entry for this long, the watch sleeps until the next one.
const IDLE_AFTER: Duration = Duration::from_secs(10);

/// Runtime threads watched (the runtime has at most four; the load test's
/// floor builds another alike, whose threads never enter).
const SLOTS: usize = 16;

/// Per runtime thread: its entries counted, doubled, plus one while inside.
static SLOTS_IN: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// The watch sleeps until the next entry wakes it.
static ASLEEP: AtomicBool = AtomicBool::new(false);

/// The watch thread, started at the first entry.
static WATCH: OnceLock<Thread> = OnceLock::new();

thread_local! {
    /// This thread's slot, its entries so far and how deep it is inside
    /// (None: not yet given a slot).
    static MINE: Cell<Option<Mine>> = const { Cell::new(None) };
}

#[derive(Clone, Copy)]
struct Mine {
    slot: usize,
    entries: u64,
    depth: u32,
}

/// The runtime the watch hands its empty tasks to.
static HANDLE: LazyLock<tokio::runtime::Handle> =
    LazyLock::new(|| crate::runtime::RUNTIME.handle().clone());

/// Marks this runtime thread as inside a pipeline until the guard drops
/// (an entry inside another is part of it). Other threads are not
/// watched: the guard does nothing there.
pub fn enter() -> Inside {
    if !crate::runtime::on_runtime() {
        return Inside(false);
    }
    let mut mine = MINE.get().unwrap_or_else(|| Mine {
        slot: NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS,
        entries: 0,
        depth: 0,
    });
    mine.depth += 1;
    if mine.depth == 1 {
        mine.entries += 1;
        // SeqCst with the watch's going to sleep: it either sees this
        // entry or is seen asleep here.
        SLOTS_IN[mine.slot].store(mine.entries << 1 | 1, Ordering::SeqCst);
        if ASLEEP.load(Ordering::SeqCst) || WATCH.get().is_none() {
            wake_watch();
        }
    }
    MINE.set(Some(mine));
    Inside(true)
}

/// A runtime thread inside a pipeline: see [`enter`].
pub struct Inside(bool);

impl Drop for Inside {
    fn drop(&mut self) {
        let (true, Some(mut mine)) = (self.0, MINE.get()) else {
            return;
        };
        mine.depth -= 1;
        if mine.depth == 0 {
            SLOTS_IN[mine.slot].store(mine.entries << 1, Ordering::Relaxed);
        }
        MINE.set(Some(mine));
    }
}

fn wake_watch() {
    let watch = WATCH.get_or_init(|| {
        std::thread::Builder::new()
            .name("twiliostream-watch".into())
            .spawn(watch)
            .expect("cannot start the twiliostream watch thread")
            .thread()
            .clone()
    });
    if ASLEEP.swap(false, Ordering::SeqCst) {
        watch.unpark();
    }
}

fn watch() {
    let mut last = [0u64; SLOTS];
    let mut idle = Duration::ZERO;
    loop {
        std::thread::park_timeout(PERIOD);
        let now: [u64; SLOTS] = std::array::from_fn(|i| SLOTS_IN[i].load(Ordering::SeqCst));
        let held = now.iter().zip(&last).any(|(n, l)| n & 1 == 1 && n == l);
        if held {
            HANDLE.spawn(async {});
        }
        idle = if now == last {
            idle + PERIOD
        } else {
            Duration::ZERO
        };
        last = now;
        if idle >= IDLE_AFTER && now.iter().all(|n| n & 1 == 0) {
            ASLEEP.store(true, Ordering::SeqCst);
            // An entry since the look above saw the watch awake: look again.
            let again: [u64; SLOTS] = std::array::from_fn(|i| SLOTS_IN[i].load(Ordering::SeqCst));
            if again == now {
                while ASLEEP.load(Ordering::SeqCst) {
                    std::thread::park();
                }
            } else {
                ASLEEP.store(false, Ordering::SeqCst);
            }
            idle = Duration::ZERO;
        }
    }
}
