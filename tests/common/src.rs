//! Helpers shared by the twiliostreamsrc end-to-end tests: starting a
//! pipeline around a listening src, and running a test once per way the src
//! can push ([`in_both_modes`]). Assertions stay in the test files.

use super::*;

thread_local! {
    /// Extra properties for the src of [`start`]: each test using it runs
    /// once per way the src can push (see [`in_both_modes`]).
    pub static SRC_PROPS: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
}

/// Runs each test function twice: as `<name>::streaming_thread`, the src
/// pushing from its own thread, and as `<name>::shared_threads`, pushed
/// from the network threads. (Allowed unused, like the rest of `common`:
/// not every test binary that includes it runs src tests.)
#[allow(unused_macros)]
macro_rules! in_both_modes {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[test]
            fn streaming_thread() {
                super::$body();
            }
            #[test]
            fn shared_threads() {
                $crate::common::src::SRC_PROPS.set("shared-threads=true");
                super::$body();
            }
        }
    )*};
}
#[allow(unused_imports)]
pub(crate) use in_both_modes;

/// Starts `desc` (which names its src `src` and its sink `sink`), returns the
/// pipeline, the collector on the sink and the URL of the src.
pub fn start(desc: &str) -> (gst::Pipeline, Collector, String) {
    let desc = desc.replacen(
        "twiliostreamsrc name=src",
        &format!("twiliostreamsrc name=src {}", SRC_PROPS.get()),
        1,
    );
    let p = pipeline(&desc);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    (p, collector, url)
}
