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

use std::cell::Cell;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
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
    let wait = batch_wait(std::env::var(BATCH_WAIT_ENV).ok().as_deref());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2),
        )
        .enable_all();
    if !wait.is_zero() {
        builder
            .on_thread_park(move || Waker::with(|w| w.before_park(wait)))
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

/// One runtime thread's sleeps: when it last went to sleep and how long
/// its last sleep lasted.
#[derive(Debug, Clone, Copy)]
struct Waker {
    asleep_since: Option<Instant>,
    last_sleep: Duration,
}

thread_local! {
    static WAKER: Cell<Waker> = const {
        Cell::new(Waker { asleep_since: None, last_sleep: Duration::MAX })
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

    /// Out of work: wait first if the thread woke soon after its last sleep.
    fn before_park(&mut self, wait: Duration) {
        if gathers(self.last_sleep, wait) {
            std::thread::sleep(wait);
        }
        self.asleep_since = Some(Instant::now());
    }

    fn after_unpark(&mut self) {
        if let Some(since) = self.asleep_since.take() {
            self.last_sleep = since.elapsed();
        }
    }
}

/// Whether a thread whose last sleep lasted `last_sleep` waits `wait`
/// before it sleeps again: only when work comes more often than `wait`.
fn gathers(last_sleep: Duration, wait: Duration) -> bool {
    last_sleep < wait
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
        assert!(gathers(Duration::from_micros(60), wait));
        assert!(gathers(Duration::ZERO, wait));
        assert!(!gathers(wait, wait));
        assert!(!gathers(Duration::from_millis(19), wait));
        // A thread that never slept yet does not wait.
        assert!(!gathers(Duration::MAX, wait));
    }

    /// The hooks themselves keep each thread's last sleep: after a long one
    /// the thread parks at once, after a short one it waits first.
    #[test]
    fn the_hooks_keep_each_threads_last_sleep() {
        std::thread::spawn(|| {
            let wait = Duration::from_millis(200);
            let last_sleep = || WAKER.with(Cell::get).last_sleep;
            Waker::with(|w| w.before_park(wait));
            std::thread::sleep(Duration::from_millis(250));
            Waker::with(Waker::after_unpark);
            assert!(last_sleep() >= Duration::from_millis(250));
            assert!(!gathers(last_sleep(), wait));
            // Woken at once this time: the next park waits.
            Waker::with(|w| w.before_park(wait));
            Waker::with(Waker::after_unpark);
            assert!(gathers(last_sleep(), wait), "{:?}", last_sleep());
            let t = Instant::now();
            Waker::with(|w| w.before_park(wait));
            assert!(t.elapsed() >= wait);
        })
        .join()
        .unwrap();
    }
}
