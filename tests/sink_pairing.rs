//! twiliostreamsink end to end, paired with a twiliostreamsrc: echo calls (also with shared
//! threads, and two at once), call-name pairing across pipelines, and the error without it.

mod common;

use base64::Engine as _;
use common::sink::*;
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::audio::{decode, encode};
use twilio_emulator::{CallParams, Playout, Provider, Received, TwilioCall};

/// Correlation coefficient of `a` against `b` shifted by `lag`.
fn correlation(a: &[f64], b: &[f64], lag: usize) -> f64 {
    let n = a.len().min(b.len().saturating_sub(lag));
    let (x, y) = (&a[..n], &b[lag..lag + n]);
    let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
    let nx: f64 = x.iter().map(|v| v * v).sum();
    let ny: f64 = y.iter().map(|v| v * v).sum();
    dot / (nx * ny).sqrt()
}

/// A speech-like test signal at 8 kHz: several partials, amplitude-modulated.
fn speechlike(len: usize, seed: f64) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = n as f64 / 8000.0;
            let env = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t + seed).sin();
            let v: f64 = [
                (310.0, 1.0),
                (720.0, 0.6),
                (1230.0, 0.4),
                (2050.0, 0.25),
                (2900.0, 0.15),
            ]
            .iter()
            .map(|(f, a)| a * (2.0 * std::f64::consts::PI * (f + seed * 37.0) * t + seed * f).sin())
            .sum();
            (5000.0 * env * v) as i16
        })
        .collect()
}

/// The end of an echo the sink holds until EOS (its partial frame, the
/// filters' delay): after the caller's stop, it is never sent.
const HELD: usize = 200;

/// Runs one echo call against `url`: sends `pcm`, returns what came back
/// (all but the last [`HELD`] samples at least), then stops.
async fn echo_call(url: String, pcm: Vec<i16>, params: CallParams) -> Vec<i16> {
    let mut call = TwilioCall::connect_with(&url, params, Playout::Instant)
        .await
        .unwrap();
    call.begin().unwrap();
    for chunk in encode(&pcm).chunks(160) {
        call.send_media(chunk).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < pcm.len() - HELD {
        match call.recv_timeout(PATIENCE).await {
            Some(Received::Message(Outbound::Media { media, .. }, _)) => got.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(&media.payload)
                    .unwrap(),
            ),
            Some(Received::Message(..)) => {}
            other => panic!("echo stopped after {} samples: {other:?}", got.len()),
        }
    }
    call.send_stop().unwrap();
    call.close().await;
    decode(&got)
}

fn best_correlation(sent: &[i16], echoed: &[i16]) -> (f64, usize) {
    let a: Vec<f64> = sent[800..].iter().map(|&v| v as f64).collect();
    let b: Vec<f64> = echoed.iter().map(|&v| v as f64).collect();
    (0..200)
        .map(|lag| (correlation(&a[..a.len() - 400], &b[800..], lag), lag))
        .fold((f64::MIN, 0), |best, c| if c.0 > best.0 { c } else { best })
}

#[test]
fn echo_returns_the_callers_audio() {
    init();
    // The default (the call's writer paces), and BaseSink's sync for those
    // who set it.
    for sync in [false, true] {
        let p = pipeline(&format!(
            "twiliostreamsrc name=src port=0 ! queue ! twiliostreamsink name=sink sync={sync}"
        ));
        p.set_state(gst::State::Playing).unwrap();
        let url = url_of(&by_name(&p, "src"));
        let sent = speechlike(8000, 0.0);
        let echoed = rt().block_on(echo_call(url, sent.clone(), CallParams::default()));
        let (corr, lag) = best_correlation(&sent, &echoed);
        assert!(
            corr >= 0.99,
            "sync={sync}: correlation {corr:.4} at lag {lag}"
        );
        // The resamplers' delays, 8 → 16 → 8 kHz, about 41 samples in all.
        assert!((35..=48).contains(&lag), "sync={sync}: lag {lag}");

        let sink = by_name(&p, "sink");
        assert_eq!(sink.property::<u64>("render-delay"), 22_562_500);
        let mut q = gst::query::Latency::new();
        assert!(p.query(&mut q));
        let (live, min, _) = q.result();
        if sync {
            // Latency: the src's chunk + upsampler, the sink's frame +
            // downsampler (its render-delay), and BaseSink's processing
            // deadline.
            let deadline = sink.property::<u64>("processing-deadline");
            assert!(live);
            assert_eq!(
                min,
                gst::ClockTime::from_nseconds(2 * 22_562_500 + deadline)
            );
        } else {
            // Not syncing, the sink waits for no latency: an echo leaves
            // as soon as it is ready.
            assert!(!live, "{min}");
        }
        p.set_state(gst::State::Null).unwrap();
    }
}

#[test]
fn an_echo_far_ahead_of_real_time_through_a_queue_does_not_deadlock() {
    // 3 s of audio at once: the writer paces it at real time, so more than
    // the sink's 1 s limit waits in it and the sink holds the queue's
    // thread; the queue fills and the src's push, on the call's own task,
    // waits for it. That task is also the writer the sink waits for: the
    // sink must not wait while the task is held in a push.
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! queue max-size-buffers=4 max-size-time=0 \
         max-size-bytes=0 ! twiliostreamsink name=sink",
    );
    p.set_state(gst::State::Playing).unwrap();
    let url = url_of(&by_name(&p, "src"));
    let sent = speechlike(24000, 0.0);
    let echoed = rt().block_on(echo_call(url, sent.clone(), CallParams::default()));
    let (corr, lag) = best_correlation(&sent, &echoed);
    assert!(corr >= 0.99, "correlation {corr:.4} at lag {lag}");
    assert_eq!(by_name(&p, "sink").property::<u64>("chunks-dropped"), 0);
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn echo_with_shared_threads_returns_the_callers_audio() {
    // The load test's pipeline: no streaming thread at all, the network
    // thread reads, pushes through the sink and writes.
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 shared-threads=true ! twiliostreamsink name=sink sync=false",
    );
    p.set_state(gst::State::Playing).unwrap();
    let url = url_of(&by_name(&p, "src"));
    let sent = speechlike(8000, 0.3);
    let echoed = rt().block_on(echo_call(url, sent.clone(), CallParams::default()));
    let (corr, lag) = best_correlation(&sent, &echoed);
    assert!(corr >= 0.99, "correlation {corr:.4} at lag {lag}");
    assert!((35..=48).contains(&lag), "lag {lag}");
    let sink = by_name(&p, "sink");
    assert_eq!(sink.property::<u64>("chunks-dropped"), 0);
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn two_concurrent_echo_calls_stay_apart() {
    init();
    let p1 =
        pipeline("twiliostreamsrc name=src port=0 path=/echo ! queue ! twiliostreamsink name=sink");
    p1.set_state(gst::State::Playing).unwrap();
    let port = by_name(&p1, "src").property::<u32>("bound-port");
    let p2 = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/echo ! queue ! twiliostreamsink name=sink"
    ));
    p2.set_state(gst::State::Playing).unwrap();
    let url = format!("ws://127.0.0.1:{port}/echo");
    let (a, b) = (speechlike(6000, 0.0), speechlike(6000, 1.7));
    let (ea, eb) = rt().block_on(async {
        let ta = tokio::spawn(echo_call(url.clone(), a.clone(), CallParams::default()));
        let tb = tokio::spawn(echo_call(url.clone(), b.clone(), CallParams::default()));
        (ta.await.unwrap(), tb.await.unwrap())
    });
    assert!(best_correlation(&a, &ea).0 >= 0.99);
    assert!(best_correlation(&b, &eb).0 >= 0.99);
    // And not each other's.
    assert!(best_correlation(&a, &eb).0 < 0.5);
    assert!(best_correlation(&b, &ea).0 < 0.5);
    p1.set_state(gst::State::Null).unwrap();
    p2.set_state(gst::State::Null).unwrap();
}

/// The README's two calls on one port, in one pipeline, with one caller:
/// the idle pair's sink has nothing to play, and with `async=false` it does
/// not hold the pipeline (and so the busy pair's sink) out of PLAYING.
#[test]
fn two_pairs_in_one_pipeline_echo_with_one_caller() {
    init();
    let p = pipeline(
        "twiliostreamsrc name=a port=0 path=/echo call-name=a ! twiliostreamsink call-name=a async=false \
         twiliostreamsrc name=b path=/echo call-name=b ! twiliostreamsink call-name=b async=false",
    );
    // Both on one port, as in the README (there 8080).
    by_name(&p, "a").set_state(gst::State::Paused).unwrap();
    let port = by_name(&p, "a").property::<u32>("bound-port");
    by_name(&p, "b").set_property("port", port);
    p.set_state(gst::State::Playing).unwrap();
    let url = format!("ws://127.0.0.1:{port}/echo");
    let a = speechlike(6000, 0.0);
    let echoed = rt().block_on(echo_call(url, a.clone(), CallParams::default()));
    assert!(best_correlation(&a, &echoed).0 >= 0.99);
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn call_name_pairs_elements_across_pipelines() {
    init();
    let inbound = pipeline("twiliostreamsrc name=src port=0 call-name=alice ! fakesink");
    let outbound = pipeline(
        "audiotestsrc freq=600 volume=0.4 is-live=true samplesperbuffer=160 ! \
         audio/x-raw,rate=8000,channels=1 ! twiliostreamsink name=sink call-name=alice",
    );
    outbound.set_state(gst::State::Playing).unwrap();
    inbound.set_state(gst::State::Playing).unwrap();
    let sink = by_name(&outbound, "sink");
    assert_eq!(
        sink.property::<u32>("bound-port"),
        0,
        "a paired sink does not listen"
    );
    let mut call = dial(&by_name(&inbound, "src"), Playout::Instant);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 4000);
    let heard = decode(&media_bytes(&got));
    let tone = amplitude(&heard[800..4000], 600.0);
    assert!(tone > 0.3 * 32767.0, "600 Hz at {tone}");
    outbound.set_state(gst::State::Null).unwrap();
    inbound.set_state(gst::State::Null).unwrap();
}

#[test]
fn two_srcs_and_no_call_name_is_a_clear_error() {
    init();
    let p = pipeline(
        "twiliostreamsrc port=0 ! fakesink  twiliostreamsrc port=0 ! fakesink \
         audiotestsrc ! audio/x-raw,rate=8000,channels=1 ! twiliostreamsink",
    );
    assert!(p.set_state(gst::State::Playing).is_err());
    let error = drain_messages(&p.bus().unwrap())
        .into_iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Error(e) => Some(format!("{} {:?}", e.error(), e.debug())),
            _ => None,
        })
        .unwrap();
    // Said in the message itself, not only in its debug text.
    assert!(
        error.starts_with("2 twiliostreamsrc elements in this pipeline: set call-name"),
        "{error}"
    );
    p.set_state(gst::State::Null).unwrap();
}

/// Two srcs of one `call-name` would each take the other's calls (and
/// both sinks play into one): the second to start fails, saying why,
/// leaving the first's call and what it takes alone, and starts once the
/// first has stopped.
#[test]
fn a_call_name_taken_by_a_listening_src_is_a_clear_error() {
    use gsttwiliostream::codec::{ByteOrder, WireFormat};
    init();
    let first = pipeline(
        "twiliostreamsrc name=src port=0 call-name=dup ! queue ! twiliostreamsink call-name=dup",
    );
    let second = pipeline("twiliostreamsrc name=b port=0 call-name=dup track=both ! fakesink");
    let refused = || {
        assert!(second.set_state(gst::State::Playing).is_err());
        let error = first_error_text(&second.bus().unwrap()).unwrap();
        assert_eq!(
            error,
            "another twiliostreamsrc with the same call-name is listening \
             (each src needs a call-name of its own)"
        );
        second.set_state(gst::State::Null).unwrap();
    };
    first.set_state(gst::State::Playing).unwrap();
    let src = by_name(&first, "src");
    refused();
    // The first takes what it took: a wideband call (the second's
    // track=both would refuse it).
    let params = CallParams::of(Provider::SignalWire, WireFormat::l16(16000, ByteOrder::Big));
    let echoed = rt().block_on(async {
        let mut call = TwilioCall::connect_with(&url_of(&src), params, Playout::Instant)
            .await
            .unwrap();
        call.begin().unwrap();
        call.send_media(&[0x10; 640]).unwrap();
        let got = call.recv_timeout(PATIENCE).await;
        call.close().await;
        got
    });
    assert!(
        matches!(echoed, Some(Received::Message(Outbound::Media { .. }, _))),
        "{echoed:?}"
    );
    // A 2 s echo under way as the second tries again is not disturbed.
    first.set_state(gst::State::Ready).unwrap();
    first.set_state(gst::State::Playing).unwrap();
    let a = speechlike(16000, 1.0);
    let echo = rt().spawn(echo_call(url_of(&src), a.clone(), CallParams::default()));
    counter_at_least(&src, "chunks-received", 1);
    refused();
    // Nor does the second show the first's call as its own.
    assert_eq!(by_name(&second, "b").property::<u64>("chunks-received"), 0);
    let echoed = rt().block_on(echo).unwrap();
    assert!(best_correlation(&a, &echoed).0 >= 0.99);
    first.set_state(gst::State::Null).unwrap();
    // Free once the first has stopped.
    second.set_state(gst::State::Playing).unwrap();
    second.set_state(gst::State::Null).unwrap();
}

/// A paired sink does not listen: listening properties set on it are
/// ignored, and the WARNING's message says which and why.
#[test]
fn listening_properties_on_a_paired_sink_are_named_in_a_warning() {
    init();
    let p = pipeline(
        "twiliostreamsrc port=0 ! fakesink  audiotestsrc ! audio/x-raw,rate=8000,channels=1 ! \
         twiliostreamsink path=/elsewhere auth-token=s3cret tls-certificate=cert.pem \
         tls-key=key.pem async=false",
    );
    set_state(&p, gst::State::Paused);
    let warned = warnings(&p.bus().unwrap());
    assert_eq!(warned.len(), 1, "{warned:?}");
    // Above all the credentials: the src's listener takes calls without them.
    assert!(
        warned[0].starts_with(
            "path, auth-token, tls-certificate, tls-key ignored: the sink plays into the call \
             of a twiliostreamsrc and does not listen itself"
        ),
        "{warned:?}"
    );
    set_state(&p, gst::State::Null);
}

/// Two sinks playing into one call would interleave their frames (each
/// stream cut up and stretched): the second is an error naming the first,
/// and the first plays on.
#[test]
fn a_second_sink_on_one_call_is_an_error_and_the_first_plays_on() {
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 call-name=both ! fakesink \
         audiotestsrc freq=600 volume=0.4 is-live=true samplesperbuffer=160 ! \
         audio/x-raw,rate=8000,channels=1 ! twiliostreamsink name=first call-name=both async=false",
    );
    let second = pipeline(
        "audiotestsrc freq=1500 volume=0.4 is-live=true samplesperbuffer=160 ! \
         audio/x-raw,rate=8000,channels=1 ! twiliostreamsink name=second call-name=both async=false",
    );
    p.set_state(gst::State::Playing).unwrap();
    let mut call = dial(&by_name(&p, "src"), Playout::Instant);
    // The first is playing before the second is started.
    receive_until(&mut call, |got| media_bytes(got).len() >= 800);
    second.set_state(gst::State::Playing).unwrap();
    let bus = second.bus().unwrap();
    let error = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
        .expect("an error from the second sink");
    let gst::MessageView::Error(e) = error.view() else {
        unreachable!()
    };
    let text = e.error().to_string();
    assert!(
        text.contains("first already plays into stream")
            && text.contains("one twiliostreamsink per call"),
        "{text}"
    );
    assert_eq!(error.src().unwrap().name(), "second");
    second.set_state(gst::State::Null).unwrap();
    // Nothing of the second's 1500 Hz: only the first's 600 Hz goes out.
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 8000);
    let heard = decode(&media_bytes(&got));
    let tail = &heard[heard.len() - 4000..];
    assert!(amplitude(tail, 600.0) > 0.3 * 32767.0);
    assert!(amplitude(tail, 1500.0) < 0.01 * 32767.0);
    p.set_state(gst::State::Null).unwrap();
}

/// A sink refused for a call another plays into sends nothing into it,
/// and does not end it either: its `end-stream` finds no call of its own.
#[test]
fn a_refused_sinks_end_stream_leaves_the_call_to_the_first() {
    init();
    let p = pipeline(
        "twiliostreamsrc name=src port=0 call-name=refused ! fakesink \
         audiotestsrc freq=600 volume=0.4 is-live=true samplesperbuffer=160 ! \
         audio/x-raw,rate=8000,channels=1 ! twiliostreamsink name=first call-name=refused async=false",
    );
    let second = pipeline(
        "audiotestsrc freq=1500 volume=0.4 is-live=true samplesperbuffer=160 ! \
         audio/x-raw,rate=8000,channels=1 ! twiliostreamsink name=second call-name=refused async=false",
    );
    p.set_state(gst::State::Playing).unwrap();
    let mut call = dial(&by_name(&p, "src"), Playout::Instant);
    receive_until(&mut call, |got| media_bytes(got).len() >= 800);
    second.set_state(gst::State::Playing).unwrap();
    second
        .bus()
        .unwrap()
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
        .expect("an error from the second sink");
    let sink = by_name(&second, "second");
    for after_playout in [false, true] {
        assert!(!sink.emit_by_name::<bool>("end-stream", &[&after_playout]));
    }
    // The first plays on: the call is not closed.
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 8000);
    assert!(
        !got.iter().any(|r| matches!(r, Received::Closed(_))),
        "the call was ended"
    );
    second.set_state(gst::State::Null).unwrap();
    p.set_state(gst::State::Null).unwrap();
}

/// Reading a sink's properties does not make it the call's sink: a sink
/// that only looked is refused once it plays, not the one that played.
#[test]
fn a_sink_that_only_reads_the_call_does_not_claim_it() {
    init();
    let p = pipeline("twiliostreamsrc name=src port=0 call-name=look ! fakesink");
    let sink_pipeline = |name: &str| {
        pipeline(&format!(
            "appsrc name=app format=time is-live=true \
             caps=audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved ! \
             twiliostreamsink name={name} call-name=look async=false"
        ))
    };
    let (player, looker) = (sink_pipeline("player"), sink_pipeline("looker"));
    for q in [&p, &player, &looker] {
        q.set_state(gst::State::Playing).unwrap();
    }
    let mut call = dial(&by_name(&p, "src"), Playout::Instant);
    let looking = by_name(&looker, "looker");
    let sid = (0..200)
        .find_map(|_| {
            let sid = looking.property::<Option<String>>("stream-sid");
            sid.or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            })
        })
        .expect("the looker sees the call's streamSid");
    assert!(looking.property::<bool>("connected"));
    push(&by_name(&player, "app"), &vec![1000; 1600]);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 1600);
    assert_eq!(media_bytes(&got).len(), 1600);
    assert!(
        drain_messages(&player.bus().unwrap())
            .iter()
            .all(|m| m.type_() != gst::MessageType::Error),
        "the sink that played was refused"
    );
    assert_eq!(
        by_name(&player, "player").property::<Option<String>>("stream-sid"),
        Some(sid)
    );
    for q in [&looker, &player, &p] {
        q.set_state(gst::State::Null).unwrap();
    }
}
