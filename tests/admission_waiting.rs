//! Calls that wait for a free element: taken by a pipeline cycled after
//! the busy call, refused when their path is not served again (or served
//! with other TLS or auth settings), and counted when they end first.

mod common;

use common::app::free_port;
use common::waiting::*;
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, TwilioCall};

/// One pipeline serving calls in a row on a fixed port: a call that comes
/// while it is busy waits, and the pipeline, cycled through READY (or NULL)
/// after the first call's EOS, takes it. (Before, its path stopped being
/// served at READY and the waiting call got 1013 at once.)
#[test]
fn a_waiting_call_is_taken_by_its_pipeline_cycled_after_the_busy_call() {
    debug_log();
    for between in [gst::State::Ready, gst::State::Null] {
        let port = free_port();
        let path = format!("/cycled-{between:?}");
        let (p, src, collector, url) = recording(&format!("port={port} path={path}"));
        let mut busy = busy_call(&url, &collector);
        let mut waiting = waiting_call(&url, &path);
        busy.send_stop().unwrap();
        assert_eq!(collector.wait_eos().samples(), decode(&AUDIO));
        rt().block_on(busy.close());
        // What the application does at EOS.
        set_state(&p, between);
        let collector = Collector::attach(&by_name(&p, "sink"));
        set_state(&p, gst::State::Playing);
        assert_eq!(url_of(&src), url);
        rt().block_on(async {
            waiting.send_media(&AUDIO).unwrap();
            waiting.send_stop().unwrap();
            waiting.close().await;
        });
        // What it said while it waited too (early-audio).
        let said = [&MORE[..], &AUDIO].concat();
        assert_eq!(collector.wait_eos().samples(), decode(&said), "{between:?}");
        assert_eq!(src.property::<u64>("chunks-dropped-paused"), 0);
        assert_eq!(src.property::<u64>("refused-calls"), 0);
        set_state(&p, gst::State::Null);
    }
}

/// A call waiting when its path's last element stops, on a fixed port,
/// with nothing listening there again, is refused when its pending-timeout
/// runs out.
#[test]
fn a_waiting_call_whose_path_is_not_served_again_gets_1013_in_time() {
    debug_log();
    let port = free_port();
    let (p, _src, collector, url) = recording(&format!(
        "port={port} path=/not-served-again pending-timeout=1"
    ));
    let busy = busy_call(&url, &collector);
    let mut waiting = waiting_call(&url, "/not-served-again");
    set_state(&p, gst::State::Null);
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
    rt().block_on(async {
        assert_eq!(closed(&mut waiting).await, Some(1013));
        busy.abort().await;
    });
}

/// A connection upgraded on a fixed port whose `start` comes once its
/// path's last element stopped (the pipeline cycled between calls) waits,
/// as the calls waiting then do, for an element listening there again: it
/// was refused with 1013 at once.
#[test]
fn a_start_that_comes_while_the_pipeline_is_cycled_waits_for_it() {
    debug_log();
    let port = free_port();
    let path = "/start-while-cycled";
    let (p, src, _, url) = recording(&format!("port={port} path={path}"));
    let mut call = rt()
        .block_on(TwilioCall::connect(&url, CallParams::default()))
        .unwrap();
    set_state(&p, gst::State::Null);
    call.begin().unwrap();
    call.send_media(&MORE).unwrap();
    wait_until_waiting(path);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    rt().block_on(async {
        call.send_media(&AUDIO).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    let said = [&MORE[..], &AUDIO].concat();
    assert_eq!(collector.wait_eos().samples(), decode(&said));
    assert_eq!(src.property::<u64>("refused-calls"), 0);
    set_state(&p, gst::State::Null);
}

/// A call waiting on a fixed port when its pipeline stops came in without
/// TLS: an element listening there again with TLS does not take it (as
/// one with another auth-token does not), it gets 1013 at once.
#[test]
fn a_waiting_call_is_not_taken_by_a_listener_back_with_other_tls_settings() {
    debug_log();
    let dir = temp_dir("tls-back");
    let (cert_path, key_path) = self_signed(&dir, "localhost");
    let port = free_port();
    let (p, _src, collector, url) =
        recording(&format!("port={port} path=/tls-back pending-timeout=15"));
    let busy = busy_call(&url, &collector);
    let mut waiting = waiting_call(&url, "/tls-back");
    set_state(&p, gst::State::Null);
    let (p2, src2, _collector2, _) = recording(&format!(
        "port={port} path=/tls-back tls-certificate={} tls-key={}",
        cert_path.display(),
        key_path.display()
    ));
    rt().block_on(async {
        assert_eq!(closed(&mut waiting).await, Some(1013));
        busy.abort().await;
    });
    assert!(!src2.property::<bool>("connected"));
    set_state(&p2, gst::State::Null);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A call waiting on a fixed port when its pipeline stops was admitted
/// without a signature: an element back on its path with an auth-token
/// does not take it, it gets 1013 at once, counted by that element.
#[test]
fn a_waiting_call_is_not_taken_by_an_element_back_with_an_auth_token() {
    debug_log();
    let port = free_port();
    let (p, _src, collector, url) =
        recording(&format!("port={port} path=/auth-back pending-timeout=15"));
    let busy = busy_call(&url, &collector);
    let mut waiting = waiting_call(&url, "/auth-back");
    set_state(&p, gst::State::Null);
    let (p2, src2, _collector2, _) =
        recording(&format!("port={port} path=/auth-back auth-token=secret"));
    rt().block_on(async {
        assert_eq!(closed(&mut waiting).await, Some(1013));
        busy.abort().await;
    });
    assert!(!src2.property::<bool>("connected"));
    assert_eq!(src2.property::<u64>("refused-calls"), 1);
    set_state(&p2, gst::State::Null);
}

/// A call that ends while it waits for a free element (the caller hung
/// up) is counted in `abandoned-calls` at once, not in `refused-calls`,
/// and no element ever gets it.
#[test]
fn a_call_that_ends_while_it_waits_is_counted_abandoned() {
    debug_log();
    let (p, src, collector, url) = recording("path=/abandoned pending-timeout=15");
    let mut busy = busy_call(&url, &collector);
    let waiting = waiting_call(&url, "/abandoned");
    let hung_up = std::time::Instant::now();
    rt().block_on(waiting.close());
    counter_reaches(&src, "abandoned-calls", 1);
    // When it ended, not at the end of its 15 s wait.
    assert!(hung_up.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(src.property::<u64>("refused-calls"), 0);
    // The busy call was not disturbed.
    rt().block_on(async {
        busy.send_media(&AUDIO).unwrap();
        busy.send_stop().unwrap();
        busy.close().await;
    });
    assert_eq!(
        collector.wait_eos().samples(),
        decode(&[AUDIO, AUDIO].concat())
    );
    set_state(&p, gst::State::Null);
}
