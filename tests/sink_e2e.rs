//! twiliostreamsink end to end: the real elements, the emulator playing
//! Twilio (with its playout queue) over real loopback WebSockets.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use gst::prelude::*;
use gst_check::Harness;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::audio::{decode, encode};
use twilio_emulator::{CallParams, Playout, Received, TwilioCall};

/// A sink on its own in a Harness, listening on a free port, with `caps`.
/// (The Harness starts an element with a sink pad at once, so the properties
/// are set before it gets there.)
fn sink_harness_with(caps: &str, configure: impl FnOnce(&gst::Element)) -> Harness {
    init();
    let sink = gst::ElementFactory::make("twiliostreamsink")
        .property("port", 0u32)
        .property("sync", false)
        .build()
        .unwrap();
    configure(&sink);
    let mut h = Harness::with_element(&sink, Some("sink"), None);
    h.set_src_caps_str(caps);
    h.play();
    h
}

fn sink_harness(caps: &str) -> Harness {
    sink_harness_with(caps, |_| {})
}

/// Twilio dials the sink's own listener and starts the stream.
fn dial(sink: &gst::Element, playout: Playout) -> TwilioCall {
    let url = url_of(sink);
    rt().block_on(async {
        let mut call = TwilioCall::connect_with(&url, CallParams::default(), playout)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    })
}

fn pcm_buffer(samples: &[i16]) -> gst::Buffer {
    gst::Buffer::from_mut_slice(
        samples
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
}

fn custom(name: &str, oob: bool) -> gst::Event {
    let s = gst::Structure::builder(name).build();
    if oob {
        gst::event::CustomDownstreamOob::new(s)
    } else {
        gst::event::CustomDownstream::new(s)
    }
}

fn mark_event(name: &str) -> gst::Event {
    gst::event::CustomDownstream::new(
        gst::Structure::builder("twilio-mark")
            .field("name", name)
            .build(),
    )
}

/// Collects what the plugin sends until `done` says so (or the call closes).
fn receive_until(
    call: &mut TwilioCall,
    mut done: impl FnMut(&[Received]) -> bool,
) -> Vec<Received> {
    rt().block_on(async {
        let mut got = Vec::new();
        while !done(&got) {
            match call.recv_timeout(PATIENCE).await {
                Some(item) => {
                    let closed = matches!(item, Received::Closed(_));
                    got.push(item);
                    if closed {
                        break;
                    }
                }
                None => panic!("nothing more received; so far {got:?}"),
            }
        }
        got
    })
}

fn has_mark(got: &[Received], name: &str) -> bool {
    got.iter().any(
        |r| matches!(r, Received::Message(Outbound::Mark { mark, .. }, _) if mark.name == name),
    )
}

fn media_bytes(got: &[Received]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in got {
        if let Received::Message(Outbound::Media { media, .. }, _) = r {
            out.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(&media.payload)
                    .unwrap(),
            );
        }
    }
    out
}

/// Amplitude of `freq` in `x` (8 kHz), over a whole number of its periods.
fn amplitude(x: &[i16], freq: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (n, &v) in x.iter().enumerate() {
        let ph = 2.0 * std::f64::consts::PI * freq * n as f64 / 8000.0;
        re += v as f64 * ph.cos();
        im += v as f64 * ph.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

#[test]
fn media_messages_have_exactly_the_documented_shape_and_frames() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    let pcm = sine(440.0, 8000.0, 10000.0, 1000);
    h.push(pcm_buffer(&pcm)).unwrap();
    h.push_event(gst::event::Eos::new());
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 1000);

    let sid = &call.params.stream_sid;
    let texts: Vec<&String> = got
        .iter()
        .map(|r| match r {
            Received::Message(_, text) => text,
            other => panic!("not a valid message: {other:?}"),
        })
        .collect();
    // 20 ms frames (160 bytes), the last partial one sent at EOS.
    assert_eq!(texts.len(), 7);
    let ulaw = encode(&pcm);
    for (i, text) in texts.iter().enumerate() {
        let payload = &ulaw[i * 160..((i + 1) * 160).min(1000)];
        let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
        assert_eq!(
            **text,
            format!(r#"{{"event":"media","streamSid":"{sid}","media":{{"payload":"{b64}"}}}}"#)
        );
    }
    assert_eq!(sink.property::<u64>("chunks-sent"), 7);
    assert_eq!(sink.property::<u64>("bytes-sent"), 1000);
    assert_eq!(
        sink.property::<Option<String>>("stream-sid").as_deref(),
        Some(sid.as_str())
    );
    assert_eq!(
        sink.property::<Option<String>>("call-sid").as_deref(),
        Some(call.params.call_sid.as_str())
    );
    assert!(sink.property::<bool>("connected"));
}

#[test]
fn chunk_duration_sets_the_frame_size() {
    let mut h = sink_harness_with("audio/x-mulaw,rate=8000,channels=1", |sink| {
        sink.set_property("chunk-duration", 40u32)
    });
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    h.push(gst::Buffer::from_mut_slice(vec![0x55u8; 700]))
        .unwrap();
    h.push_event(gst::event::Eos::new());
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 700);
    let sizes: Vec<usize> = got
        .iter()
        .map(|r| match r {
            Received::Message(Outbound::Media { media, .. }, _) => {
                base64::engine::general_purpose::STANDARD
                    .decode(&media.payload)
                    .unwrap()
                    .len()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sizes, [320, 320, 60]);
    // μ-law passes through untouched.
    assert_eq!(media_bytes(&got), vec![0x55u8; 700]);
}

#[test]
fn a_mark_arrives_exactly_after_the_audio_before_it() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let bus = gst::Bus::new();
    sink.set_bus(Some(&bus));
    let mut call = dial(&sink, Playout::RealTime);
    h.push(pcm_buffer(&vec![1000; 1000])).unwrap();
    assert!(h.push_event(mark_event("prompt-1")));
    h.push(pcm_buffer(&vec![-1000; 480])).unwrap();
    // The application's way: an action signal, after what was rendered so far.
    assert!(sink.emit_by_name::<bool>("send-mark", &[&"prompt-2"]));

    let got = receive_until(&mut call, |got| has_mark(got, "prompt-2"));
    let before_mark: usize = {
        let i = got
            .iter()
            .position(|r| matches!(r, Received::Message(Outbound::Mark { .. }, _)))
            .unwrap();
        media_bytes(&got[..i]).len()
    };
    assert_eq!(
        before_mark, 1000,
        "the mark follows exactly the 1000 samples before it"
    );
    let text = got
        .iter()
        .find_map(|r| match r {
            Received::Message(Outbound::Mark { .. }, t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"event":"mark","streamSid":"{}","mark":{{"name":"prompt-1"}}}}"#,
            call.params.stream_sid
        )
    );

    // Twilio echoes each mark when its playout passes it; the sink posts them.
    let deadline = std::time::Instant::now() + PATIENCE;
    while sink.property::<u64>("marks-played") < 2 {
        assert!(std::time::Instant::now() < deadline, "marks not echoed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let playback = call.playback();
    let echoed: Vec<(String, usize)> = playback
        .marks
        .iter()
        .map(|m| (m.name.clone(), m.played_samples))
        .collect();
    assert_eq!(
        echoed,
        [("prompt-1".to_owned(), 1000), ("prompt-2".to_owned(), 1480)]
    );
    assert!(playback.marks.iter().all(|m| !m.cleared));
    let names: Vec<String> = element_messages(&drain_messages(&bus), "twilio-mark")
        .iter()
        .map(|s| s.get::<String>("name").unwrap())
        .collect();
    assert_eq!(names, ["prompt-1", "prompt-2"]);
    assert_eq!(sink.property::<u64>("marks-sent"), 2);
    let stats = sink.property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("marks-played").unwrap(), 2);
    assert_eq!(stats.get::<u64>("marks-sent").unwrap(), 2);
}

#[test]
fn clear_drops_queued_audio_and_echoes_pending_marks() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::RealTime);
    // sync=false: 4 s of audio reach Twilio's queue at once.
    h.push(pcm_buffer(&sine(300.0, 8000.0, 8000.0, 16000)))
        .unwrap();
    assert!(h.push_event(mark_event("first-half")));
    h.push(pcm_buffer(&sine(300.0, 8000.0, 8000.0, 16000)))
        .unwrap();
    assert!(h.push_event(mark_event("second-half")));
    // A partial frame still inside the sink is discarded by the clear.
    h.push(pcm_buffer(&[5000; 100])).unwrap();
    assert!(h.push_event(custom("twilio-clear", true)));

    let got = receive_until(&mut call, |got| {
        got.iter()
            .any(|r| matches!(r, Received::Message(Outbound::Clear { .. }, _)))
    });
    assert_eq!(
        media_bytes(&got).len(),
        32000,
        "the 100 pending samples were not sent"
    );
    let deadline = std::time::Instant::now() + PATIENCE;
    while call.playback().marks.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "pending marks not echoed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let playback = call.playback();
    assert_eq!(playback.clears, 1);
    assert!(
        playback.marks.iter().all(|m| m.cleared),
        "{:?}",
        playback.marks
    );
    assert!(
        playback.cleared_samples > 16000,
        "most of the 4 s were dropped"
    );
    assert!(playback.played.len() + playback.cleared_samples == 32000);
    assert_eq!(sink.property::<u64>("clears-sent"), 1);
    assert_eq!(sink.property::<u64>("bytes-sent"), 32000);
}

#[test]
fn serialized_events_flushes_and_the_signal_each_send_one_clear() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    h.push(pcm_buffer(&[0; 160])).unwrap();
    let clears = |call: &mut TwilioCall, n: usize| {
        receive_until(call, |got| {
            got.iter()
                .filter(|r| matches!(r, Received::Message(Outbound::Clear { .. }, _)))
                .count()
                >= n
        })
    };
    assert!(h.push_event(custom("twilio-clear", false)));
    clears(&mut call, 1);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(false)));
    clears(&mut call, 1);
    assert!(sink.emit_by_name::<bool>("clear", &[]));
    let got = clears(&mut call, 1);
    let text = got
        .iter()
        .find_map(|r| match r {
            Received::Message(Outbound::Clear { .. }, t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"event":"clear","streamSid":"{}"}}"#,
            call.params.stream_sid
        )
    );
    assert_eq!(sink.property::<u64>("clears-sent"), 3);
}

/// Plays `pcm` at `rate` into a sink on its own and returns what Twilio got.
fn play_at_rate(rate: u32, pcm: &[i16]) -> Vec<i16> {
    let mut h = sink_harness(&format!(
        "audio/x-raw,format=S16LE,rate={rate},channels=1,layout=interleaved"
    ));
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    for chunk in pcm.chunks(1024) {
        h.push(pcm_buffer(chunk)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    // Everything, plus the resampler's tail flushed at EOS.
    let expected = pcm.len() * 8000 / rate as usize;
    let got = receive_until(&mut call, |got| media_bytes(got).len() > expected);
    decode(&media_bytes(&got))
}

#[test]
fn pcm_at_16_24_48_khz_becomes_8khz_with_the_right_tone() {
    for rate in [16000u32, 24000, 48000] {
        let out = play_at_rate(rate, &sine(1000.0, rate as f64, 16000.0, rate as usize));
        assert!(
            out.len() >= 8000 && out.len() < 8040,
            "{rate}: {} samples",
            out.len()
        );
        let window = &out[1000..7000];
        let tone = amplitude(window, 1000.0);
        assert!(
            (tone / 16000.0 - 1.0).abs() < 0.02,
            "{rate}: 1 kHz at {tone}"
        );
        for other in [500.0, 2000.0, 3000.0] {
            let level = 20.0 * (amplitude(window, other) / 16000.0).log10();
            assert!(level < -40.0, "{rate}: {other} Hz at {level} dB");
        }
    }
}

#[test]
fn a_5khz_tone_at_16khz_does_not_fold_to_3khz() {
    // Dropping every second sample would put this tone at 3 kHz, full scale.
    let out = play_at_rate(16000, &sine(5000.0, 16000.0, 16000.0, 16000));
    let level = 20.0 * (amplitude(&out[1000..7000], 3000.0) / 16000.0).log10();
    // μ-law of silence is exact zeros: anything here would be aliasing.
    assert!(level < -80.0, "3 kHz at {level} dB");
    assert!(
        out[1000..7000].iter().all(|&s| s.abs() <= 16),
        "residue {:?}",
        &out[1000..1010]
    );
}

#[test]
fn a_lone_sink_plays_a_file_into_a_call() {
    init();
    let dir = std::env::temp_dir().join(format!("twiliostream-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("prompt.wav");
    let pcm = sine(700.0, 16000.0, 12000.0, 16000);
    twilio_emulator::audio::write_wav(&wav, &pcm, 16000).unwrap();

    let p = pipeline(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! twiliostreamsink name=sink port=0 path=/play",
        wav.display()
    ));
    let bus = p.bus().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let sink = by_name(&p, "sink");
    let mut call = dial(&sink, Playout::RealTime);
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= 8000);
    let heard = decode(&media_bytes(&got));
    let tone = amplitude(&heard[1000..7000], 700.0);
    assert!((tone / 12000.0 - 1.0).abs() < 0.02, "700 Hz at {tone}");
    // Paced in real time (sync=true): Twilio's queue never held much.
    assert!(
        call.playback().max_queued < 4000,
        "queue {}",
        call.playback().max_queued
    );
    let mut messages = Vec::new();
    loop {
        let msg = bus
            .timed_pop(gst::ClockTime::from_seconds(PATIENCE.as_secs()))
            .expect("no EOS");
        let eos = matches!(msg.view(), gst::MessageView::Eos(_));
        messages.push(msg);
        if eos {
            break;
        }
    }
    // The sink took the call itself, so it posts the call's messages.
    let start = element_messages(&messages, "twilio-start");
    assert_eq!(
        start[0].get::<String>("call-sid").unwrap(),
        call.params.call_sid
    );
    // EOS came only once Twilio had played everything: hanging up now cuts nothing.
    p.set_state(gst::State::Null).unwrap();
    let rest = receive_until(&mut call, |got| {
        matches!(got.last(), Some(Received::Closed(_)))
    });
    let sent = media_bytes(&got).len() + media_bytes(&rest).len();
    assert!(sent >= 8000, "{sent}");
    let playback = call.playback();
    assert_eq!(
        playback.played.len(),
        sent,
        "Twilio had not played everything"
    );
    assert_eq!(playback.marks.last().unwrap().name, "twiliostream-eos");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_sync_audio_goes_out_as_fast_as_it_arrives() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::RealTime);
    h.push(pcm_buffer(&vec![1000; 16000])).unwrap();
    receive_until(&mut call, |got| media_bytes(got).len() >= 16000);
    // All two seconds are in Twilio's queue before much could be played.
    assert!(
        call.playback().max_queued > 12000,
        "queue {}",
        call.playback().max_queued
    );
}

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

/// Runs one echo call against `url`: sends `pcm`, stops, returns what
/// came back, once the plugin hung up.
async fn echo_call(url: String, pcm: Vec<i16>, params: CallParams) -> Vec<i16> {
    let mut call = TwilioCall::connect_with(&url, params, Playout::Instant)
        .await
        .unwrap();
    call.begin().unwrap();
    for chunk in encode(&pcm).chunks(160) {
        call.send_media(chunk).unwrap();
    }
    // The stop ends the src's stream; the sink then sends what it still
    // holds (a partial frame, the filters' tails).
    call.send_stop().unwrap();
    let mut got = Vec::new();
    while got.len() < pcm.len() {
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
    let p = pipeline("twiliostreamsrc name=src port=0 ! queue ! twiliostreamsink name=sink");
    p.set_state(gst::State::Playing).unwrap();
    let url = url_of(&by_name(&p, "src"));
    let sent = speechlike(8000, 0.0);
    let echoed = rt().block_on(echo_call(url, sent.clone(), CallParams::default()));
    let (corr, lag) = best_correlation(&sent, &echoed);
    assert!(corr >= 0.99, "correlation {corr:.4} at lag {lag}");
    // The resamplers' delays, 8 → 16 → 8 kHz, about 41 samples in all.
    assert!((35..=48).contains(&lag), "lag {lag}");

    // Latency: the src's chunk + upsampler, the sink's frame + downsampler
    // (its render-delay), and BaseSink's processing deadline.
    let sink = by_name(&p, "sink");
    assert_eq!(sink.property::<u64>("render-delay"), 22_562_500);
    let deadline = sink.property::<u64>("processing-deadline");
    let mut q = gst::query::Latency::new();
    assert!(p.query(&mut q));
    let (live, min, _) = q.result();
    assert!(live);
    assert_eq!(
        min,
        gst::ClockTime::from_nseconds(2 * 22_562_500 + deadline)
    );
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
    assert!(error.contains("set call-name"), "{error}");
    p.set_state(gst::State::Null).unwrap();
}

#[test]
fn waiting_for_a_call_is_cancelled_by_a_state_change() {
    init();
    let p = pipeline(
        "audiotestsrc ! audio/x-raw,rate=16000,channels=1 ! twiliostreamsink name=sink port=0",
    );
    p.set_state(gst::State::Playing).unwrap();
    let port = by_name(&p, "sink").property::<u32>("bound-port") as u16;
    assert_ne!(port, 0);
    std::thread::sleep(Duration::from_millis(50));
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || tx.send(p2.set_state(gst::State::Null)).unwrap());
    rx.recv_timeout(PATIENCE)
        .expect("NULL did not return")
        .unwrap();
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port still taken");
}

#[test]
fn sink_properties_have_documented_defaults() {
    init();
    let sink = gst::ElementFactory::make("twiliostreamsink")
        .build()
        .unwrap();
    assert_eq!(sink.property::<u32>("chunk-duration"), 20);
    assert_eq!(sink.property::<Option<String>>("call-name"), None);
    assert_eq!(sink.property::<String>("host"), "127.0.0.1");
    assert_eq!(sink.property::<u32>("port"), 8080);
    assert_eq!(sink.property::<String>("path"), "/");
    assert!(sink.property::<bool>("sync"));
    assert!(!sink.property::<bool>("connected"));
    let stats = sink.property::<gst::Structure>("stats");
    for field in [
        "bytes-sent",
        "chunks-sent",
        "marks-sent",
        "marks-played",
        "clears-sent",
        "transcode-errors",
    ] {
        assert_eq!(stats.get::<u64>(field).unwrap(), 0, "{field}");
        assert_eq!(sink.property::<u64>(field), 0, "{field}");
    }
    for pspec in sink.list_properties() {
        if pspec.owner_type() == sink.type_() {
            assert!(!pspec.nick().is_empty(), "{}", pspec.name());
            assert!(
                pspec.blurb().is_some_and(|b| b.len() > 10),
                "{}",
                pspec.name()
            );
        }
    }
    let caps = sink.static_pad("sink").unwrap().pad_template_caps();
    for rate in [8000, 16000, 24000, 48000] {
        let c = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("layout", "interleaved")
            .field("rate", rate)
            .field("channels", 1)
            .build();
        assert!(c.can_intersect(&caps), "{rate}");
    }
    assert!(
        gst::Caps::builder("audio/x-mulaw")
            .field("rate", 8000)
            .field("channels", 1)
            .build()
            .can_intersect(&caps)
    );
    assert!(
        !gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 44100)
            .field("channels", 1)
            .build()
            .can_intersect(&caps)
    );
}

#[test]
fn a_peer_that_stops_reading_cannot_hang_the_pipeline_or_grow_memory() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=8000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    // Twilio's side: handshake and start, then never read again.
    let url = url_of(&sink);
    let ws = rt().block_on(async {
        use futures::SinkExt;
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        let start = gsttwiliostream::protocol::Inbound::Start {
            sequence_number: None,
            stream_sid: "MZstalled".into(),
            start: gsttwiliostream::protocol::StartInfo {
                account_sid: "AC1".into(),
                stream_sid: "MZstalled".into(),
                call_sid: "CA1".into(),
                tracks: vec!["inbound".into()],
                custom_parameters: Default::default(),
                media_format: None,
            },
        };
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            start.to_json(),
        ))
        .await
        .unwrap();
        ws
    });
    // 20 minutes of audio as fast as possible: ~13 MB of JSON, more than
    // the socket buffers and the sink's 4 MiB backlog together.
    let second = pcm_buffer(&vec![1000i16; 8000]);
    for _ in 0..1200 {
        h.push(second.copy()).unwrap();
    }
    let dropped = sink.property::<u64>("chunks-dropped");
    assert!(dropped > 0, "nothing dropped: the backlog is unbounded");
    let sent = sink.property::<u64>("chunks-sent");
    assert_eq!(sent + dropped, 60_000);
    // Tearing down returns although the peer never reads.
    let (tx, rx) = std::sync::mpsc::channel();
    let element = sink.clone();
    std::thread::spawn(move || tx.send(element.set_state(gst::State::Null)).unwrap());
    rx.recv_timeout(PATIENCE)
        .expect("NULL did not return")
        .unwrap();
    drop(ws);
    drop(h);
}

#[test]
fn a_mark_after_16khz_audio_follows_all_of_it() {
    let mut h = sink_harness("audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved");
    let sink = h.element().unwrap();
    let mut call = dial(&sink, Playout::Instant);
    h.push(pcm_buffer(&sine(500.0, 16000.0, 8000.0, 2000)))
        .unwrap();
    assert!(h.push_event(mark_event("m")));
    let got = receive_until(&mut call, |got| has_mark(got, "m"));
    let i = got
        .iter()
        .position(|r| matches!(r, Received::Message(Outbound::Mark { .. }, _)))
        .unwrap();
    // 2000 samples at 16 kHz are 1000 at 8 kHz, all sent before the mark
    // (the downsampler delays their content by 2.6 ms, not their count).
    assert_eq!(media_bytes(&got[..i]).len(), 1000);
}
