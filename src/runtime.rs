//! The process-wide tokio runtime that every listener and call runs on.
//!
//! A room of its own so that the server and the calls both use it without
//! importing each other. Nothing else lives here.

use std::sync::LazyLock;

use tokio::runtime::Runtime;

/// The runtime every listener and call runs on: up to four worker threads
/// (fewer on smaller machines), however many calls there are.
pub static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2),
        )
        .thread_name("twiliostream")
        .enable_all()
        .build()
        .expect("cannot create the twiliostream runtime")
});
