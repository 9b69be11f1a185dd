//! Helpers of the tests of what happens to a connection before and while
//! it waits for an element: a recording pipeline, a busy call and one
//! waiting behind it, the close code a client gets, and the plugin's
//! DEBUG lines watched for what it does with waiting calls.

use twilio_emulator::{CallParams, Received, TwilioCall};

use super::*;

/// A chunk of audio of a busy call, and one of the call waiting behind it.
pub const AUDIO: [u8; 160] = [0x20; 160];
pub const MORE: [u8; 160] = [0xA0; 160];

/// A src (with `props`) recording at 8 kHz: the pipeline, the src, what
/// it outputs, and its URL.
pub fn recording(props: &str) -> (gst::Pipeline, gst::Element, Collector, String) {
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 {props} ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let url = url_of(&src);
    (p, src, collector, url)
}

/// Waits for the plugin to close `call`; the close code it sent.
pub async fn closed(call: &mut TwilioCall) -> Option<u16> {
    loop {
        match call.recv_timeout(PATIENCE).await {
            Some(Received::Closed(code)) => return code,
            Some(_) => continue,
            None => panic!("not closed"),
        }
    }
}

/// A call that has started and whose first chunk reached the src, so that
/// the src is busy with it before anything else starts.
pub fn busy_call(url: &str, collector: &Collector) -> TwilioCall {
    let busy = rt().block_on(async {
        let mut busy = TwilioCall::start(url, CallParams::default()).await.unwrap();
        busy.send_media(&AUDIO).unwrap();
        busy
    });
    collector.wait_buffers(1);
    busy
}

/// What the plugin logs (DEBUG, category `twiliostream`) of calls that
/// wait for a free element and of connections accepted; watched from the
/// first use on.
pub fn debug_log() -> &'static (std::sync::Mutex<Vec<String>>, std::sync::Condvar) {
    static LOGGED: std::sync::LazyLock<(std::sync::Mutex<Vec<String>>, std::sync::Condvar)> =
        std::sync::LazyLock::new(|| {
            init();
            if std::env::var_os("GST_DEBUG").is_none() {
                // The lines are for the test, not for its output.
                gst::log::remove_default_log_function();
            }
            gst::log::set_threshold_for_name("twiliostream", gst::DebugLevel::Debug);
            gst::log::add_log_function(|cat, _, _, _, _, _, msg| {
                let text = msg.get().map(|m| m.to_string()).unwrap_or_default();
                let watched = ["no element free, waiting", ": accepted"];
                if cat.name() == "twiliostream" && watched.iter().any(|w| text.contains(w)) {
                    let (lines, cvar) = debug_log();
                    lines.lock().unwrap().push(text);
                    cvar.notify_all();
                }
            });
            Default::default()
        });
    &LOGGED
}

/// Waits until the plugin logged a line ending with `suffix` (call
/// [`debug_log`] before what logs it).
pub fn wait_until_logged(suffix: &str) {
    let (lines, cvar) = debug_log();
    let (_lines, timeout) = cvar
        .wait_timeout_while(lines.lock().unwrap(), PATIENCE, |l| {
            !l.iter().any(|t| t.ends_with(suffix))
        })
        .unwrap();
    assert!(!timeout.timed_out(), "never logged: ...{suffix}");
}

/// Waits until the call on `path` waits for a free element: its `start`
/// is handled, it is no handshake any more.
pub fn wait_until_waiting(path: &str) {
    wait_until_logged(&format!(" on {path}: no element free, waiting"));
}

/// A call started on `url` (whose element is busy) that sent a chunk and
/// waits for a free element on `path`.
pub fn waiting_call(url: &str, path: &str) -> TwilioCall {
    let waiting = rt().block_on(async {
        let mut waiting = TwilioCall::start(url, CallParams::default()).await.unwrap();
        waiting.send_media(&MORE).unwrap();
        waiting
    });
    wait_until_waiting(path);
    waiting
}
