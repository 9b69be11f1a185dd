//! Helpers shared by the twiliostreamsrc end-to-end tests: starting a
//! pipeline around a listening src, and running a test once per way the src
//! can push ([`in_both_modes`]), and the checks the audio tests of one and of
//! two tracks share (contiguous buffers, the 16 kHz output against an ideal
//! resampler).

use twilio_emulator::{CallParams, TwilioCall};

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

/// What reached the sink named `sink`, in order: a buffer's PTS, duration
/// and samples (S16LE), or a GAP's PTS and duration (no samples).
pub type Items =
    std::sync::Arc<std::sync::Mutex<Vec<(gst::ClockTime, gst::ClockTime, Option<Vec<i16>>)>>>;

/// Records [`Items`] at the pad of the element `sink` of `p`.
pub fn items_at_sink(p: &gst::Pipeline) -> Items {
    let items = Items::default();
    let seen = items.clone();
    let pad = by_name(p, "sink").static_pad("sink").unwrap();
    let probed = gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM;
    pad.add_probe(probed, move |_, info| {
        let item = match &info.data {
            Some(gst::PadProbeData::Buffer(b)) if b.flags().contains(gst::BufferFlags::GAP) => {
                (b.pts().unwrap(), b.duration().unwrap(), None)
            }
            Some(gst::PadProbeData::Buffer(b)) => {
                let map = b.map_readable().unwrap();
                let samples = map
                    .chunks_exact(2)
                    .map(|s| i16::from_le_bytes([s[0], s[1]]))
                    .collect();
                (b.pts().unwrap(), b.duration().unwrap(), Some(samples))
            }
            Some(gst::PadProbeData::Event(e)) => match e.view() {
                gst::EventView::Gap(gap) => (gap.get().0, gap.get().1.unwrap(), None),
                _ => return gst::PadProbeReturn::Ok,
            },
            _ => return gst::PadProbeReturn::Ok,
        };
        seen.lock().unwrap().push(item);
        gst::PadProbeReturn::Ok
    });
    items
}

/// Buffers and GAPs follow each other without a hole or an overlap, and
/// each stretch of buffers between GAPs is, on each channel, exactly what
/// a new 8 kHz → `rate` resampler makes of its share of that channel's
/// audio (`ulaws`) followed by a full tail of silence: no audio held over a
/// GAP.
pub fn check_tails_before_gaps(
    items: &[(gst::ClockTime, gst::ClockTime, Option<Vec<i16>>)],
    ulaws: &[&[u8]],
    rate: u32,
) {
    assert!(items.iter().any(|i| i.2.is_none()), "no GAP event");
    assert_items_contiguous(items);
    let end = check_fresh_stretches(&stretches(items), ulaws, rate, 0);
    assert_eq!(end, ulaws[0].len(), "all the audio came out");
}

/// Buffers and GAPs follow each other without a hole or an overlap.
pub fn assert_items_contiguous(items: &[(gst::ClockTime, gst::ClockTime, Option<Vec<i16>>)]) {
    for pair in items.windows(2) {
        let ((pts, duration, _), (next, _, _)) = (&pair[0], &pair[1]);
        assert_eq!(*next, *pts + *duration, "a hole or an overlap at {next}");
    }
}

/// The samples of `items`' buffers, in stretches between GAPs (none empty).
pub fn stretches(items: &[(gst::ClockTime, gst::ClockTime, Option<Vec<i16>>)]) -> Vec<Vec<i16>> {
    let mut stretches: Vec<Vec<i16>> = vec![Vec::new()];
    for (_, _, samples) in items {
        match samples {
            Some(samples) => stretches.last_mut().unwrap().extend(samples),
            None => stretches.push(Vec::new()),
        }
    }
    stretches.retain(|s| !s.is_empty());
    stretches
}

/// Each of `stretches` (interleaved, a channel per `ulaws`) is, on each
/// channel, exactly what a new 8 kHz → `rate` resampler makes of that
/// channel's next audio followed by a full tail of silence, the first from
/// tick `from` of `ulaws` on, each following on from the one before. The
/// tick after the last one's audio.
pub fn check_fresh_stretches(
    stretches: &[Vec<i16>],
    ulaws: &[&[u8]],
    rate: u32,
    mut from: usize,
) -> usize {
    use gsttwiliostream::codec::Resampler;
    use gsttwiliostream::codec::resample::delay_ns;

    let factor = (rate / 8000) as usize;
    let tail = delay_ns(8000, rate).unwrap().div_ceil(125_000) as usize;
    let channels = ulaws.len();
    let pcms: Vec<Vec<i16>> = ulaws
        .iter()
        .map(|u| twilio_emulator::audio::decode(u))
        .collect();
    for stretch in stretches {
        let ticks = (stretch.len() / channels / factor)
            .checked_sub(tail)
            .unwrap_or_else(|| {
                panic!(
                    "a stretch of {} samples, shorter than a tail",
                    stretch.len()
                )
            });
        for (c, pcm) in pcms.iter().enumerate() {
            let got: Vec<i16> = stretch.iter().skip(c).step_by(channels).copied().collect();
            assert!(
                from + ticks <= pcm.len(),
                "channel {c}: more audio out than in"
            );
            let mut input = pcm[from..from + ticks].to_vec();
            input.resize(ticks + tail, 0);
            let mut expected = Vec::new();
            Resampler::new(8000, rate)
                .unwrap()
                .process(&input, &mut expected);
            assert!(
                got == expected,
                "channel {c}: the stretch of {} output samples ({ticks} ticks from tick \
                 {from}) is not its audio then a full tail of silence",
                got.len()
            );
        }
        from += ticks;
    }
    from
}

/// Holds the first buffer pushed on `pad` (a blocking probe), the rest
/// passing: the receiver hears when it is held; removing the probe lets it
/// go.
pub fn hold_first_buffer(pad: &gst::Pad) -> (gst::PadProbeId, std::sync::mpsc::Receiver<()>) {
    let (tx, held) = std::sync::mpsc::channel();
    let first = std::sync::atomic::AtomicBool::new(true);
    let probe = pad
        .add_probe(
            gst::PadProbeType::BLOCK | gst::PadProbeType::BUFFER,
            move |_, _| {
                if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                    let _ = tx.send(());
                    gst::PadProbeReturn::Ok
                } else {
                    gst::PadProbeReturn::Pass
                }
            },
        )
        .unwrap();
    (probe, held)
}

/// A playing pipeline around a listening src configured by `props`
/// (gst-launch syntax), its 8 kHz output into a fakesink named `sink`; with
/// the src.
pub fn listening_src(props: &str) -> (gst::Pipeline, gst::Element) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {props} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    (p, src)
}

/// A call started on `url` that sent `n` chunks of one byte, once their
/// buffers reached `collector`.
pub fn call_of_chunks(url: &str, collector: &Collector, n: usize) -> TwilioCall {
    let mut call = rt()
        .block_on(TwilioCall::start(url, CallParams::default()))
        .unwrap();
    for _ in 0..n {
        call.send_media(&[0x55; 160]).unwrap();
    }
    collector.wait_buffers(n);
    call
}
