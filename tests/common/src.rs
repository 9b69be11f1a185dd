//! Helpers shared by the twiliostreamsrc end-to-end tests: starting a
//! pipeline around a listening src, and running a test once per way the src
//! can push ([`in_both_modes`]), and the checks the audio tests of one and of
//! two tracks share (contiguous buffers, the 16 kHz output against an ideal
//! resampler).

use super::*;

thread_local! {
    /// Extra properties for the src of [`start`]: each test using it runs
    /// once per way the src can push (see [`in_both_modes`]).
    pub static SRC_PROPS: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
}

/// Runs each test function twice: as `<name>::streaming_thread`, the src
/// pushing from its own thread, and as `<name>::shared_threads`, pushed
/// from the network threads (the default; each sets the property, so
/// neither depends on it). (Allowed unused, like the rest of `common`:
/// not every test binary that includes it runs src tests.)
#[allow(unused_macros)]
macro_rules! in_both_modes {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            #[test]
            fn streaming_thread() {
                $crate::common::src::SRC_PROPS.set("shared-threads=false");
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

/// Buffers follow each other without a gap or an overlap, in time and in
/// offsets.
pub fn assert_contiguous(buffers: &[gst::Buffer]) {
    for pair in buffers.windows(2) {
        let end = pair[0].pts().unwrap() + pair[0].duration().unwrap();
        assert_eq!(pair[1].pts().unwrap(), end, "timestamps are not contiguous");
        assert_eq!(pair[1].offset(), pair[0].offset_end());
    }
}

/// The 16 kHz output `ours` matches `ideal` (an ideal upsampling of the same
/// 8 kHz audio) to 50 dB, once the upsampler's delay is taken off and the
/// edges (where the ideal filter has no history) are left out.
pub fn assert_matches_ideal_upsampling(ideal: &[f64], ours: &[i16]) {
    let d = gsttwiliostream::codec::Upsampler::DELAY;
    let range = 1000..ideal.len() - 1000;
    let ours: Vec<f64> = range.clone().map(|n| ours[n + d] as f64).collect();
    let snr = snr_db(&ideal[range], &ours);
    assert!(snr >= 50.0, "SNR {snr:.1} dB");
}
