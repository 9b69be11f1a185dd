//! The process-wide tokio runtime that every listener and call runs on.
//!
//! A room of its own so that the server and the calls both use it without
//! importing each other. Nothing else lives here.
//!
//! **Wake-ups taken together.** Each call's chunk comes at a moment of its
//! own, so with a few hundred calls a runtime thread would wake for almost
//! every chunk, and on this kind of machine a wake-up (a context switch,
//! an idle CPU woken) costs about as much as the chunk's work. A thread
//! that runs out of work soon after it last woke therefore waits a short
//! while ([`BATCH_WAIT_ENV`], 1 ms by default) before it sleeps on the
//! network, and takes what came meanwhile in one wake-up. A thread that
//! slept longer than that (few calls) sleeps at once: no extra wake-up
//! where there is nothing to gather.
//!
//! Nor does a thread wait while work is handed in from outside the runtime
//! (a `queue`'s thread or an application's sending to a call: see
//! [`woken_from_outside`]). tokio wakes a sleeping thread for such work,
//! but not while one is waiting here (it counts as awake): the work waits
//! for the end of that wait, when tokio's last thread looking for work
//! looks once more before it sleeps (or, with several threads, until a
//! busy one is done with what it runs). A queue's frame would so wait
//! twice, once when it is read and once when it is handed back.

use std::cell::Cell;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

pub(crate) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "twiliostream-runtime",
        gst::DebugColorFlags::empty(),
        Some("The runtime the calls run on"),
    )
});

/// The environment variable that sets the wait, in microseconds (0: off).
pub const BATCH_WAIT_ENV: &str = "TWILIOSTREAM_BATCH_WAIT_US";

/// The wait when [`BATCH_WAIT_ENV`] is not set: a twentieth of a chunk.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_millis(1);

/// The longest wait [`BATCH_WAIT_ENV`] may ask for (a chunk's duration).
pub const MAX_BATCH_WAIT: Duration = Duration::from_millis(20);

/// After work came from outside the runtime, how long its threads do not
/// wait before they sleep.
const OUTSIDE_QUIET: Duration = Duration::from_millis(50);

/// Work handed to the runtime's tasks from other threads, counted.
static WOKEN_FROM_OUTSIDE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Whether this thread is one of a runtime's built by [`builder`].
    static ON_RUNTIME: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is one of a runtime's built by [`builder`] (a
/// network thread).
pub fn on_runtime() -> bool {
    ON_RUNTIME.get()
}

/// Says that a task of the runtime is being handed work (woken) from this
/// thread: when this is not a runtime thread, the runtime's threads stop
/// waiting before they sleep for a while (see the module's doc).
pub fn woken_from_outside() {
    if !ON_RUNTIME.get() {
        WOKEN_FROM_OUTSIDE.fetch_add(1, Ordering::Relaxed);
    }
}

/// The runtime every listener and call runs on: up to four worker threads
/// (fewer on smaller machines), however many calls there are.
pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    builder()
        .thread_name("twiliostream")
        .build()
        .expect("cannot create the twiliostream runtime")
});

/// How [`RUNTIME`] is built: its threads, and their wait before they sleep
/// (from [`BATCH_WAIT_ENV`]). Public so that a comparison (the load test's
/// bare echo) can run on a runtime configured alike.
pub fn builder() -> tokio::runtime::Builder {
    builder_waiting(batch_wait(std::env::var(BATCH_WAIT_ENV).ok().as_deref()))
}

/// [`builder`] with its threads waiting `wait` before they sleep.
fn builder_waiting(wait: Duration) -> tokio::runtime::Builder {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2),
        )
        .enable_all()
        .on_thread_start(|| ON_RUNTIME.set(true));
    if !wait.is_zero() {
        builder
            .on_thread_park(move || {
                let outside = WOKEN_FROM_OUTSIDE.load(Ordering::Relaxed);
                Waker::with(|w| {
                    w.before_park(wait, outside);
                });
            })
            .on_thread_unpark(|| Waker::with(Waker::after_unpark));
    }
    builder
}

/// The wait [`BATCH_WAIT_ENV`]'s value asks for: microseconds up to
/// [`MAX_BATCH_WAIT`]; unset or not a number, the default.
pub fn batch_wait(value: Option<&str>) -> Duration {
    match value.map(|v| v.trim().parse::<u64>()) {
        Some(Ok(us)) => Duration::from_micros(us).min(MAX_BATCH_WAIT),
        Some(Err(_)) => {
            gst::warning!(
                CAT,
                "{BATCH_WAIT_ENV}={:?} is not a number of microseconds: {} µs",
                value.unwrap_or_default(),
                DEFAULT_BATCH_WAIT.as_micros()
            );
            DEFAULT_BATCH_WAIT
        }
        None => DEFAULT_BATCH_WAIT,
    }
}

/// One runtime thread's sleeps: when it last went to sleep, how long its
/// last sleep lasted, and the work from outside it last saw.
#[derive(Debug, Clone, Copy)]
struct Waker {
    asleep_since: Option<Instant>,
    last_sleep: Duration,
    outside_seen: u64,
    quiet_until: Option<Instant>,
}

thread_local! {
    static WAKER: Cell<Waker> = const {
        Cell::new(Waker {
            asleep_since: None,
            last_sleep: Duration::MAX,
            outside_seen: 0,
            quiet_until: None,
        })
    };
}

impl Waker {
    fn with(f: impl FnOnce(&mut Waker)) {
        WAKER.with(|cell| {
            let mut waker = cell.get();
            f(&mut waker);
            cell.set(waker);
        });
    }

    /// Out of work: wait first if the thread woke soon after its last
    /// sleep and no work came from outside lately (`outside`: the count of
    /// [`woken_from_outside`]). Returns whether it waited.
    fn before_park(&mut self, wait: Duration, outside: u64) -> bool {
        let now = Instant::now();
        if outside != self.outside_seen {
            self.outside_seen = outside;
            self.quiet_until = Some(now + OUTSIDE_QUIET);
        }
        let quiet = self.quiet_until.is_some_and(|until| now < until);
        let waits = gathers(self.last_sleep, wait, quiet);
        self.asleep_since = Some(if waits {
            std::thread::sleep(wait);
            Instant::now()
        } else {
            now
        });
        waits
    }

    fn after_unpark(&mut self) {
        if let Some(since) = self.asleep_since.take() {
            self.last_sleep = since.elapsed();
        }
    }
}

/// Whether a thread whose last sleep lasted `last_sleep` waits `wait`
/// before it sleeps again: only when work comes more often than `wait`,
/// and not while work comes from outside the runtime (`outside_lately`).
fn gathers(last_sleep: Duration, wait: Duration, outside_lately: bool) -> bool {
    last_sleep < wait && !outside_lately
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_is_read_in_microseconds_and_bounded() {
        assert_eq!(batch_wait(None), DEFAULT_BATCH_WAIT);
        assert_eq!(batch_wait(Some("0")), Duration::ZERO);
        assert_eq!(batch_wait(Some(" 250 ")), Duration::from_micros(250));
        assert_eq!(batch_wait(Some("1000000")), MAX_BATCH_WAIT);
        assert_eq!(batch_wait(Some("1ms")), DEFAULT_BATCH_WAIT);
        assert_eq!(batch_wait(Some("-5")), DEFAULT_BATCH_WAIT);
    }

    #[test]
    fn only_a_thread_woken_soon_waits() {
        let wait = Duration::from_millis(1);
        assert!(gathers(Duration::from_micros(60), wait, false));
        assert!(gathers(Duration::ZERO, wait, false));
        assert!(!gathers(wait, wait, false));
        assert!(!gathers(Duration::from_millis(19), wait, false));
        // A thread that never slept yet does not wait.
        assert!(!gathers(Duration::MAX, wait, false));
        // Nor while work comes from outside.
        assert!(!gathers(Duration::from_micros(60), wait, true));
    }

    /// Work handed in from a thread of the runtime is not counted as from
    /// outside it; from any other thread it is.
    #[test]
    fn work_from_outside_the_runtime_is_counted() {
        let runtime = builder().worker_threads(1).build().unwrap();
        let before = WOKEN_FROM_OUTSIDE.load(Ordering::Relaxed);
        runtime
            .block_on(runtime.spawn(async { woken_from_outside() }))
            .unwrap();
        // Other tests may count meanwhile: only this thread's own call is
        // certain to count.
        woken_from_outside();
        let after = WOKEN_FROM_OUTSIDE.load(Ordering::Relaxed);
        assert!(after > before);
        assert!(!ON_RUNTIME.get());
        assert!(
            runtime
                .block_on(runtime.spawn(async { ON_RUNTIME.get() }))
                .unwrap()
        );
    }

    /// A thread that waits before it sleeps is not woken for work handed
    /// in from outside meanwhile, but takes it when its wait ends: tokio's
    /// last thread to stop looking for work looks once more before it
    /// sleeps. Here nothing else (no socket, no timer) would wake it.
    #[test]
    fn work_handed_in_during_a_wait_runs_when_the_wait_ends() {
        let wait = Duration::from_millis(300);
        for workers in [1, 2] {
            let runtime = builder_waiting(wait)
                .worker_threads(workers)
                .build()
                .unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
            let (done_tx, done) = std::sync::mpsc::channel();
            runtime.spawn(async move {
                while rx.recv().await.is_some() {
                    done_tx.send(()).unwrap();
                }
            });
            let bound = wait + Duration::from_secs(2);
            // Woken soon after their last sleep, the threads wait before
            // the next: the third hand-over comes during such a wait.
            for pause in [Duration::ZERO, Duration::from_millis(5), wait / 3] {
                std::thread::sleep(pause);
                tx.send(()).unwrap();
                done.recv_timeout(bound)
                    .unwrap_or_else(|_| panic!("{workers} threads: lost"));
            }
        }
    }

    /// The hooks themselves keep each thread's last sleep: after a long one
    /// the thread parks at once, after a short one it waits first, unless
    /// work came from outside since its last park.
    #[test]
    fn the_hooks_keep_each_threads_last_sleep() {
        std::thread::spawn(|| {
            let wait = Duration::from_millis(200);
            let last_sleep = || WAKER.with(Cell::get).last_sleep;
            let park = |outside| {
                let mut waited = false;
                Waker::with(|w| waited = w.before_park(wait, outside));
                Waker::with(Waker::after_unpark);
                waited
            };
            Waker::with(|w| {
                w.before_park(wait, 0);
            });
            std::thread::sleep(Duration::from_millis(250));
            Waker::with(Waker::after_unpark);
            assert!(last_sleep() >= Duration::from_millis(250));
            assert!(!gathers(last_sleep(), wait, false));
            // Woken at once this time: the next park waits.
            assert!(!park(0));
            assert!(gathers(last_sleep(), wait, false), "{:?}", last_sleep());
            assert!(park(0));
            // Work from outside: no wait, however short the last sleep,
            // until OUTSIDE_QUIET has passed.
            assert!(!park(1));
            std::thread::sleep(OUTSIDE_QUIET);
            assert!(park(1));
        })
        .join()
        .unwrap();
    }
}
