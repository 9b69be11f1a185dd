//! Shared helpers of the integration tests: GStreamer set-up with the plugin
//! registered statically, a runtime for the emulator, and collectors for what
//! comes out of a pipeline. Helpers of one element's tests only live in
//! [`src`] and [`sink`].

#![allow(dead_code)]

pub mod app;
pub mod both;
pub mod echo;
pub mod installed;
pub mod peer;
pub mod raw;
pub mod rng;
pub mod sink;
pub mod src;
pub mod threads;
pub mod waiting;

use std::f64::consts::PI;
use std::sync::{Arc, LazyLock, Mutex, Once};
use std::time::Duration;

use gst::prelude::*;

/// Generous bound for anything that should happen "soon": only a hang hits it.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gsttwiliostream::plugin_register_static().unwrap();
    });
}

/// The runtime the emulated Twilio side runs on.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    });
    &RT
}

pub fn pipeline(desc: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(desc)
        .unwrap_or_else(|e| panic!("{desc}: {e}"))
        .downcast()
        .unwrap()
}

pub fn by_name(pipeline: &gst::Pipeline, name: &str) -> gst::Element {
    pipeline
        .by_name(name)
        .unwrap_or_else(|| panic!("no element {name}"))
}

/// Sets `state`. A live pipeline's sinks finish prerolling only once data
/// flows, so this does not wait for that.
pub fn set_state(pipeline: &gst::Pipeline, state: gst::State) {
    pipeline
        .set_state(state)
        .unwrap_or_else(|e| panic!("{state:?}: {e}"));
}

/// The ws:// URL a src listens on once started.
pub fn url_of(src: &gst::Element) -> String {
    let port = src.property::<u32>("bound-port");
    assert_ne!(port, 0, "src is not listening");
    let path = src.property::<String>("path");
    format!("ws://127.0.0.1:{port}{path}")
}

/// What reached an appsink: buffers and the serialized events between them.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// The buffers of audio that came (not the fill's silence).
    pub buffers: Vec<gst::Buffer>,
    /// The buffers flagged GAP: silence for time nothing came for.
    pub gaps: Vec<gst::Buffer>,
    /// The pipeline's running time when each buffer reached the sink.
    pub running_times: Vec<gst::ClockTime>,
    /// Custom downstream events, with the number of buffers before each.
    pub events: Vec<(usize, gst::Structure)>,
    pub eos: bool,
}

impl Collected {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for b in &self.buffers {
            out.extend_from_slice(&b.map_readable().unwrap());
        }
        out
    }

    pub fn samples(&self) -> Vec<i16> {
        self.bytes()
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect()
    }
}

/// Records buffers (audio apart from the fill's GAP buffers) and custom
/// events reaching `sink` (an appsink) until EOS.
pub struct Collector {
    state: Arc<Mutex<Collected>>,
    eos: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Collector {
    pub fn attach(sink: &gst::Element) -> Collector {
        let state = Arc::new(Mutex::new(Collected::default()));
        let eos = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let pad = sink.static_pad("sink").unwrap();
        {
            let state = state.clone();
            let eos = eos.clone();
            pad.add_probe(
                gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
                move |pad, info| {
                    let mut st = state.lock().unwrap();
                    match &info.data {
                        Some(gst::PadProbeData::Buffer(b))
                            if b.flags().contains(gst::BufferFlags::GAP) =>
                        {
                            st.gaps.push(b.clone());
                        }
                        Some(gst::PadProbeData::Buffer(b)) => {
                            st.buffers.push(b.clone());
                            let now = pad
                                .parent_element()
                                .and_then(|e| Some(e.clock()?.time() - e.base_time()?))
                                .unwrap_or_default();
                            st.running_times.push(now);
                        }
                        Some(gst::PadProbeData::Event(e)) => match e.view() {
                            gst::EventView::CustomDownstream(_)
                            | gst::EventView::CustomDownstreamSticky(_) => {
                                let n = st.buffers.len();
                                st.events.push((n, e.structure().unwrap().to_owned()));
                            }
                            gst::EventView::Eos(_) => {
                                st.eos = true;
                                *eos.0.lock().unwrap() = true;
                                eos.1.notify_all();
                            }
                            _ => {}
                        },
                        _ => {}
                    }
                    gst::PadProbeReturn::Ok
                },
            );
        }
        Collector { state, eos }
    }

    /// Waits for EOS and returns everything collected.
    pub fn wait_eos(&self) -> Collected {
        let (lock, cvar) = &*self.eos;
        let (done, timeout) = cvar
            .wait_timeout_while(lock.lock().unwrap(), PATIENCE, |eos| !*eos)
            .unwrap();
        assert!(*done && !timeout.timed_out(), "no EOS");
        self.snapshot()
    }

    /// Waits until at least `n` buffers arrived.
    pub fn wait_buffers(&self, n: usize) -> Collected {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let snap = self.snapshot();
            if snap.buffers.len() >= n {
                return snap;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {} buffers",
                snap.buffers.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn snapshot(&self) -> Collected {
        self.state.lock().unwrap().clone()
    }
}

/// Waits (up to PATIENCE) until the u64 property `counter` of `element`
/// reads `n`: for counters that move on another thread than what the test
/// saw happen (e.g. `rejected-connections`, counted once the server is done
/// with the connection, after its close frame went out).
pub fn counter_reaches(element: &gst::Element, counter: &str, n: u64) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while element.property::<u64>(counter) != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{counter} is {}, not {n}",
            element.property::<u64>(counter)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (up to PATIENCE) until the u64 property `counter` of `element`
/// reads `n` or more: for a counter that goes on moving meanwhile.
pub fn counter_at_least(element: &gst::Element, counter: &str, n: u64) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while element.property::<u64>(counter) < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{counter} is {}, not {n} yet",
            element.property::<u64>(counter)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Element messages of `name` posted so far (the bus is drained).
pub fn drain_messages(bus: &gst::Bus) -> Vec<gst::Message> {
    std::iter::from_fn(|| bus.pop()).collect()
}

/// The message of the first ERROR posted so far, the text applications
/// show (the bus is drained).
pub fn first_error_text(bus: &gst::Bus) -> Option<String> {
    drain_messages(bus)
        .into_iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(e.error().message().to_owned()),
            _ => None,
        })
}

/// The WARNING messages posted so far (the bus is drained), as
/// "error (debug)" text.
pub fn warnings(bus: &gst::Bus) -> Vec<String> {
    drain_messages(bus)
        .into_iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(format!("{} ({:?})", w.error(), w.debug())),
            _ => None,
        })
        .collect()
}

/// The structures of element messages called `name` among `messages`.
pub fn element_messages(messages: &[gst::Message], name: &str) -> Vec<gst::Structure> {
    messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e.structure().filter(|s| s.name() == name),
            _ => None,
        })
        .map(|s| s.to_owned())
        .collect()
}

/// `len` samples of a sine at `freq` Hz, `rate` Hz, amplitude `amp`.
pub fn sine(freq: f64, rate: f64, amp: f64, len: usize) -> Vec<i16> {
    (0..len)
        .map(|n| (amp * (2.0 * PI * freq * n as f64 / rate).sin()).round() as i16)
        .collect()
}

/// Modified Bessel function of the first kind, order 0 (for Kaiser windows).
pub fn i0(v: f64) -> f64 {
    let (mut sum, mut term, mut k) = (1.0f64, 1.0f64, 1.0f64);
    while term > sum * 1e-18 {
        term *= (v / 2.0 / k).powi(2);
        sum += term;
        k += 1.0;
    }
    sum
}

/// A (2·half+1)-tap Kaiser-windowed sinc with its cutoff at a quarter of
/// the sample rate (4 kHz at 16 kHz), unit DC gain: an "ideal" reference.
pub fn halfband_sinc(half: isize, beta: f64) -> Vec<f64> {
    (-half..=half)
        .map(|n| {
            let t = n as f64 / 2.0;
            let sinc = if n == 0 {
                1.0
            } else {
                (PI * t).sin() / (PI * t)
            };
            let r = n as f64 / half as f64;
            0.5 * sinc * i0(beta * (1.0 - r * r).sqrt()) / i0(beta)
        })
        .collect()
}

/// An "ideal" 8 → 16 kHz interpolation: a 2001-tap Kaiser (β = 14)
/// windowed sinc in f64, delay compensated, so output 2k is input k.
pub fn ideal_upsample(x: &[i16]) -> Vec<f64> {
    const HALF: isize = 1000;
    // Gain 2 for the zero-stuffing.
    let taps: Vec<f64> = halfband_sinc(HALF, 14.0).iter().map(|h| 2.0 * h).collect();
    let len = 2 * x.len();
    (0..len as isize)
        .map(|out| {
            // Zero-stuffed input: only even positions carry samples.
            let mut acc = 0.0;
            for (i, h) in taps.iter().enumerate() {
                let pos = out + HALF - i as isize;
                if pos >= 0 && pos % 2 == 0 && ((pos / 2) as usize) < x.len() {
                    acc += h * x[(pos / 2) as usize] as f64;
                }
            }
            acc
        })
        .collect()
}

/// Signal-to-noise ratio in dB of `test` against `reference`.
pub fn snr_db(reference: &[f64], test: &[f64]) -> f64 {
    let signal: f64 = reference.iter().map(|v| v * v).sum();
    let noise: f64 = reference
        .iter()
        .zip(test)
        .map(|(r, t)| (r - t) * (r - t))
        .sum();
    10.0 * (signal / noise).log10()
}

/// This process's resident memory, KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A self-signed certificate for `name`, as PEM files in `dir`.
pub fn self_signed(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec![name.to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// A directory of this test process's own under the system's temp dir.
pub fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("twiliostream-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A playing src serving `wss://` with `cert` and `key` (and `props`),
/// its 8 kHz audio collected: the pipeline, the collector, the bound port.
pub fn tls_src(
    cert: &std::path::Path,
    key: &std::path::Path,
    props: &str,
) -> (gst::Pipeline, Collector, u16) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 tls-certificate={} tls-key={} {props} \
         ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
        cert.display(),
        key.display()
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let port = by_name(&p, "src").property::<u32>("bound-port") as u16;
    (p, collector, port)
}

/// A wss:// call to `url` (trusting `tls`) sending `ulaw`, then `stop`.
pub fn call_over_tls(tls: std::sync::Arc<rustls::ClientConfig>, url: &str, ulaw: &[u8]) {
    let dialer = twilio_emulator::Dialer {
        tls: Some(tls),
        ..twilio_emulator::Dialer::default()
    };
    rt().block_on(async {
        let mut call = twilio_emulator::TwilioCall::connect_via(
            &dialer,
            url,
            twilio_emulator::CallParams::default(),
            twilio_emulator::Playout::Instant,
        )
        .await
        .expect("a wss:// call");
        call.begin().unwrap();
        for chunk in ulaw.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}
