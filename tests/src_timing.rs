//! twiliostreamsrc's timing end to end, in real time: after a pause the
//! buffers are on time again (in both push modes, and through the echo
//! pipeline), and a long silence of the network is filled by the fill
//! deadline, without losing the audio that was merely late.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::src::{check_tails_before_gaps, in_both_modes, items_at_sink, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::protocol::Track;
use twilio_emulator::audio::{decode, encode};
use twilio_emulator::{CallParams, Playout, Received, TwilioCall};

in_both_modes!(
    after_a_pause_buffers_are_on_time_again,
    after_a_pause_begun_at_the_sink_buffers_are_on_time_again,
    a_network_silence_is_filled_by_the_deadline_and_late_audio_kept,
    both_tracks_silent_are_filled_by_the_deadline_and_late_audio_kept,
    a_silence_pushes_the_upsampled_tail_out_before_the_fill,
    both_tracks_silent_push_the_upsampled_tails_out_before_the_fill,
);

/// Generous, but a tenth of what the flaw gives (the 2 s of the pause).
const ON_TIME: gst::ClockTime = gst::ClockTime::from_mseconds(200);

/// Sends `chunk` every 20 ms (real time) until `chunks` were sent (which
/// the test may set meanwhile), then stop. `sent` is counted up before each
/// send: chunks from the count read at a moment on are sent after it.
/// `sent_at` gets each send's moment: on a busy machine the sender itself
/// may stall, then catch up in a burst.
async fn play_realtime(
    mut call: TwilioCall,
    chunks: Arc<AtomicUsize>,
    chunk: Vec<u8>,
    sent: Arc<AtomicUsize>,
    sent_at: Arc<Mutex<Vec<Instant>>>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while sent.load(Ordering::SeqCst) < chunks.load(Ordering::SeqCst) {
        tick.tick().await;
        sent_at.lock().unwrap().push(Instant::now());
        sent.fetch_add(1, Ordering::SeqCst);
        call.send_media(&chunk).unwrap();
    }
    call.send_stop().unwrap();
    call.close().await;
}

fn after_a_pause_buffers_are_on_time_again() {
    on_time_after_a_pause(false);
}

/// A pipeline's sinks pause before its src: a moment on a busy machine,
/// 200 ms here. A push from a network thread then would wait for the sink
/// to play again, holding the call's reads (and other calls' tasks on that
/// thread): what came while paused would be read only then, taken for new.
fn after_a_pause_begun_at_the_sink_buffers_are_on_time_again() {
    on_time_after_a_pause(true);
}

fn on_time_after_a_pause(slow_pause: bool) {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! capsfilter name=between caps=audio/x-raw,rate=8000 \
         ! fakesink name=sink sync=false",
    );
    if slow_pause {
        // The state change reaches the capsfilter after the sink, before
        // the src.
        p.bus().unwrap().set_sync_handler(|_, m| {
            if let gst::MessageView::StateChanged(change) = m.view()
                && m.src().is_some_and(|s| s.name() == "between")
                && (change.old(), change.current()) == (gst::State::Playing, gst::State::Paused)
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            gst::BusSyncReply::Pass
        });
    }
    let call = rt().block_on(TwilioCall::start(&url, CallParams::default()));
    // Audio in real time: 1 s, a pause of 2 s or more, then 1.5 s after
    // the return.
    let chunks = Arc::new(AtomicUsize::new(usize::MAX));
    let sent = Arc::new(AtomicUsize::new(0));
    let sent_at = Arc::new(Mutex::new(Vec::new()));
    let player = rt().spawn(play_realtime(
        call.unwrap(),
        chunks.clone(),
        vec![0x55; 160],
        sent.clone(),
        sent_at.clone(),
    ));
    let src = by_name(&p, "src");
    collector.wait_buffers(50);
    set_state(&p, gst::State::Paused);
    // The chunks from here on are sent with the src PAUSED...
    let sent_paused = sent.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    // (At least 2 s of them, however late the sender runs.)
    let deadline = Instant::now() + PATIENCE;
    while sent.load(Ordering::SeqCst) < sent_paused + 100 {
        assert!(Instant::now() < deadline, "the sender is stuck");
        std::thread::sleep(Duration::from_millis(5));
    }
    // ... and those up to here read while it is: its reads may lag the
    // sender (a busy machine), and a chunk read after the return is new.
    let read_paused = sent.load(Ordering::SeqCst);
    counter_at_least(&src, "chunks-received", read_paused as u64);
    let before = collector.snapshot().buffers.len();
    set_state(&p, gst::State::Playing);
    // Not one from here on can have come before the return.
    let sent_resumed = sent.load(Ordering::SeqCst);
    const AFTER: usize = 75;
    chunks.store(sent_resumed + AFTER, Ordering::SeqCst);
    let resumed = src.clock().unwrap().time() - src.base_time().unwrap();
    let resumed_at = Instant::now();
    let got = collector.wait_eos();
    rt().block_on(player).unwrap();
    let sent_at = sent_at.lock().unwrap().clone();
    let all = sent_at.len();
    assert_eq!(all, sent_resumed + AFTER);
    // How late chunk `k` was sent against the sender's 20 ms grid (ns).
    let late = |k: usize| {
        let due = sent_at[0] + Duration::from_millis(20) * k as u32;
        sent_at[k].saturating_duration_since(due).as_nanos() as i128
    };

    // A buffer made before the pause may still go out first; the stream
    // then goes on anchored anew.
    let anew = (before..got.buffers.len())
        .find(|&i| got.buffers[i].flags().contains(gst::BufferFlags::DISCONT))
        .expect("no DISCONT after the pause");
    assert!(anew <= before + 1, "anchored anew only at buffer {anew}");
    assert!(
        got.buffers.len() - anew >= AFTER,
        "{} buffers after",
        got.buffers.len() - anew
    );
    // From `anew` on, one buffer per chunk, to the last: buffer `i` is
    // chunk `chunk(i)`. The anchor is a chunk read by the return or the
    // first sent after it (those are never dropped, checked below), and goes
    // out at once: within a second of the return, or of its send if the
    // sender ran late across the return.
    let chunk = |i: usize| all - (got.buffers.len() - i);
    let anchor = chunk(anew);
    assert!(
        anchor <= sent_resumed,
        "anchored at chunk {anchor}, {sent_resumed} sent at the return"
    );
    let waited = sent_at[anchor].saturating_duration_since(resumed_at);
    assert!(
        got.running_times[anew]
            < resumed + gst::ClockTime::SECOND + gst::ClockTime::try_from(waited).unwrap(),
        "first at {} (resumed at {resumed}, chunk {anchor} sent {waited:?} after)",
        got.running_times[anew]
    );
    // Pushed about a chunk after its PTS, as before the pause (without the
    // re-anchoring: 2 s before it). From each anchor (the one after the
    // pause, or a chunk late past the fill deadline: see the README's
    // "Gaps are filled in time") the PTS follow the chunks' timestamps. So
    // a sender that runs later than it did at the anchor delivers that much
    // after the PTS, and one late at the anchor catching up, that much
    // before them; only the src's own lateness is left.
    let fill_deadline = {
        let mut latency = gst::query::Latency::new();
        assert!(p.query(&mut latency));
        latency.result().1.max(gst::ClockTime::from_mseconds(300))
    };
    let mut from = anew;
    for i in anew..got.buffers.len() {
        if got.buffers[i].flags().contains(gst::BufferFlags::DISCONT) {
            from = i;
        }
        let off = |i: usize| {
            got.running_times[i].nseconds() as i128
                - got.buffers[i].pts().unwrap().nseconds() as i128
        };
        let sender = late(chunk(i)) - late(chunk(from));
        // A late chunk goes right after the fill: up to the fill deadline
        // after its PTS.
        let at_anchor = match from == anew {
            true => ON_TIME,
            false => fill_deadline + ON_TIME,
        };
        for (what, off, bound) in [
            ("at its anchor", off(from), at_anchor),
            ("since", off(i) - off(from) - sender, ON_TIME),
        ] {
            assert!(
                off.unsigned_abs() < bound.nseconds() as u128,
                "buffer {i} {} ms off {what} (anchored at {from}, after the pause at {anew}; \
                 the sender {} ms later than at the anchor; resumed at {resumed})",
                off / 1_000_000,
                sender / 1_000_000
            );
        }
    }
    // What queued while paused (about 100 chunks) was dropped and counted:
    // every chunk sent while paused and read before the return, and none
    // sent after it (nor any that went out before the pause). How many
    // that is depends on how the threads ran, not the bounds. The rest
    // went out, one buffer each.
    assert_eq!(src.property::<u64>("chunks-lost"), 0);
    let dropped = src.property::<u64>("chunks-dropped-paused") as usize;
    let counts = format!(
        "{dropped} dropped; sent from {sent_paused} paused, up to {read_paused} read \
         paused, {sent_resumed} at the return; {before} out before"
    );
    assert!(dropped >= read_paused - sent_paused, "{counts}");
    assert!(dropped <= sent_resumed - before, "{counts}");
    assert_eq!(got.buffers.len() + dropped, all, "{counts}");
    set_state(&p, gst::State::Null);
}

#[test]
fn the_echo_is_in_time_again_after_a_pause() {
    init();
    let p = pipeline("twiliostreamsrc name=src port=0 ! queue ! twiliostreamsink name=sink");
    p.set_state(gst::State::Playing).unwrap();
    let url = url_of(&by_name(&p, "src"));
    let silence = vec![0xFFu8; 160];
    let tone = encode(&sine(1000.0, 8000.0, 16000.0, 160));
    let resumed = Arc::new(AtomicBool::new(false));
    // Counted up before each send, as in `play_realtime`.
    let sent = Arc::new(AtomicUsize::new(0));
    let caller = {
        let resumed = resumed.clone();
        let sent = sent.clone();
        rt().spawn(async move {
            let mut call = TwilioCall::connect_with(&url, CallParams::default(), Playout::Instant)
                .await
                .unwrap();
            call.begin().unwrap();
            // Silence in real time until 500 ms after the resume, then a
            // tone chunk: how long until it comes back?
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut resumed_at = None;
            let mut sent_at = None;
            let mut heard = None;
            for _ in 0..400 {
                tick.tick().await;
                if resumed.load(Ordering::SeqCst) && resumed_at.is_none() {
                    resumed_at = Some(Instant::now());
                }
                let send_tone = sent_at.is_none()
                    && resumed_at.is_some_and(|r| r.elapsed() >= Duration::from_millis(500));
                sent.fetch_add(1, Ordering::SeqCst);
                if send_tone {
                    call.send_media(&tone).unwrap();
                    sent_at = Some(Instant::now());
                } else {
                    call.send_media(&silence).unwrap();
                }
                // Listen until the next tick.
                while let Some(received) = call.recv_timeout(Duration::from_millis(15)).await {
                    if let Received::Message(
                        gsttwiliostream::protocol::Outbound::Media { media, .. },
                        _,
                    ) = received
                    {
                        use base64::Engine as _;
                        let ulaw = base64::engine::general_purpose::STANDARD
                            .decode(&media.payload)
                            .unwrap();
                        let loud = decode(&ulaw).iter().any(|v| v.abs() > 4000);
                        if loud && sent_at.is_some() && heard.is_none() {
                            heard = Some(Instant::now());
                        }
                    }
                }
                if heard.is_some() {
                    break;
                }
            }
            call.send_stop().unwrap();
            call.close().await;
            heard.zip(sent_at).map(|(h, s)| h - s)
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    set_state(&p, gst::State::Paused);
    // As in `on_time_after_a_pause`: chunks sent from here on, and read
    // before the return, are dropped, however the threads ran.
    let sent_paused = sent.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    let deadline = Instant::now() + PATIENCE;
    while sent.load(Ordering::SeqCst) < sent_paused + 100 {
        assert!(Instant::now() < deadline, "the caller is stuck");
        std::thread::sleep(Duration::from_millis(5));
    }
    let read_paused = sent.load(Ordering::SeqCst);
    let src = by_name(&p, "src");
    counter_at_least(&src, "chunks-received", read_paused as u64);
    p.set_state(gst::State::Playing).unwrap();
    resumed.store(true, Ordering::SeqCst);
    let delay = rt()
        .block_on(caller)
        .unwrap()
        .expect("the tone never came back");
    // A chunk, the src's and the sink's latency: some 70 ms. Without the
    // re-anchoring, the 2 s of the pause.
    assert!(delay < Duration::from_millis(200), "echo after {delay:?}");
    let dropped = src.property::<u64>("chunks-dropped-paused") as usize;
    assert!(
        dropped >= read_paused - sent_paused,
        "{dropped} dropped; sent from {sent_paused} paused, up to {read_paused} read paused"
    );
    set_state(&p, gst::State::Null);
}

/// GAP buffers (the fill's silence) reaching the sink: (pts, duration,
/// running time then).
type Gaps = Arc<std::sync::Mutex<Vec<(gst::ClockTime, gst::ClockTime, gst::ClockTime)>>>;

fn gaps_at_sink(p: &gst::Pipeline) -> Gaps {
    let gaps = Gaps::default();
    let seen = gaps.clone();
    let pad = by_name(p, "sink").static_pad("sink").unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        if let Some(gst::PadProbeData::Buffer(b)) = &info.data
            && b.flags().contains(gst::BufferFlags::GAP)
        {
            let (pts, duration) = (b.pts().unwrap(), b.duration());
            let element = pad.parent_element().unwrap();
            let now = element.clock().unwrap().time() - element.base_time().unwrap();
            seen.lock().unwrap().push((pts, duration.unwrap(), now));
        }
        gst::PadProbeReturn::Ok
    });
    gaps
}

/// Plays 40 chunks of each of `tracks` in real time, the network holding
/// the second half back 1.5 s (nothing lost), then stop.
///
/// The held half arrives in one write, as after a real stall: the first
/// late chunk leaves the output as overdue as the fill deadline allows, so
/// the next one must be there within a chunk, or it is filled late too.
/// Sent one by one, a loaded machine could spread them further apart.
fn play_with_a_stall(url: &str, params: CallParams, tracks: &[(Track, &[u8])]) {
    rt().block_on(async {
        let mut call = TwilioCall::start(url, params).await.unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        for n in 0..40 {
            if n == 20 {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                call.hold();
            }
            tick.tick().await;
            for (track, ulaw) in tracks {
                call.send_media_on(*track, &ulaw[n * 160..][..160]).unwrap();
            }
        }
        call.release().unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
}

fn a_network_silence_is_filled_by_the_deadline_and_late_audio_kept() {
    init();
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    let gaps = gaps_at_sink(&p);
    let ulaw: Vec<u8> = (0..40 * 160u32).map(|i| (i * 13 % 256) as u8).collect();
    play_with_a_stall(&url, CallParams::default(), &[(Track::Inbound, &ulaw)]);
    let got = collector.wait_eos();
    let src = by_name(&p, "src");
    // No audio lost, and the late chunk counted.
    assert_eq!(got.samples(), decode(&ulaw));
    assert_eq!(src.property::<u64>("chunks-lost"), 0);
    assert_eq!(src.property::<u64>("chunks-filled-late"), 1);
    check_filled_in_time(&gaps, &got);
    set_state(&p, gst::State::Null);
}

/// `track=both`: neither track comes for 1.5 s; both channels are filled
/// (GAP events) by the deadline, and the late audio of both goes after it.
/// The two tracks' first late chunks are two messages: the fill deadline
/// counts past the first, held for the second (the stall left the output
/// as overdue as the deadline allows, so a fill was due within a chunk).
fn both_tracks_silent_are_filled_by_the_deadline_and_late_audio_kept() {
    init();
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both ! audio/x-raw,rate=8000 \
         ! fakesink name=sink sync=false",
    );
    let gaps = gaps_at_sink(&p);
    let inbound: Vec<u8> = (0..40 * 160u32).map(|i| (i * 13 % 256) as u8).collect();
    let outbound: Vec<u8> = (0..40 * 160u32).map(|i| (i * 97 + 5) as u8).collect();
    let params = CallParams::with_tracks(&[Track::Inbound, Track::Outbound]);
    let tracks = [
        (Track::Inbound, &inbound[..]),
        (Track::Outbound, &outbound[..]),
    ];
    play_with_a_stall(&url, params, &tracks);
    let got = collector.wait_eos();
    let src = by_name(&p, "src");
    let samples = got.samples();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!((left, right), (decode(&inbound), decode(&outbound)));
    assert_eq!(src.property::<u64>("chunks-lost"), 0);
    // The first late chunk moves both tracks on; the other's follows it.
    assert_eq!(src.property::<u64>("chunks-filled-late"), 1);
    check_filled_in_time(&gaps, &got);
    set_state(&p, gst::State::Null);
}

/// The GAPs went out in time, and the audio held back (buffer 20 on) after
/// them, contiguous.
fn check_filled_in_time(gaps: &Gaps, got: &Collected) {
    let gaps = gaps.lock().unwrap().clone();
    assert!(!gaps.is_empty(), "no GAP event");
    let deadline = gst::ClockTime::from_mseconds(300);
    let chunk = gst::ClockTime::from_mseconds(20);
    // Each gap went out once its time was the deadline overdue, not when
    // the audio came back 1.5 s later.
    for &(pts, duration, at) in &gaps {
        assert!(at >= pts + deadline, "gap at {pts} out at {at}: too early");
        assert!(
            at < pts + duration + deadline + chunk + ON_TIME,
            "gap at {pts} ({duration}) out only at {at}"
        );
    }
    let filled: gst::ClockTime = gaps.iter().map(|g| g.1).sum();
    assert!(filled >= gst::ClockTime::SECOND, "filled {filled}");
    // The late audio went out after the fill, flagged, and the stream is
    // contiguous around it.
    let late = &got.buffers[20];
    assert!(late.flags().contains(gst::BufferFlags::DISCONT));
    let (last_pts, last_duration, _) = *gaps.last().unwrap();
    assert_eq!(late.pts().unwrap(), last_pts + last_duration);
    assert_eq!(
        got.buffers[21].pts().unwrap(),
        late.pts().unwrap() + late.duration().unwrap()
    );
}

/// 16 kHz out of an 8 kHz call: when the network falls silent, the audio
/// still inside the upsampler (its delay's worth) goes out before the
/// GAPs, at its time, not after them with the late audio; and the late
/// audio starts afresh, after silence.
fn a_silence_pushes_the_upsampled_tail_out_before_the_fill() {
    init();
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 gap-fill=silence ! audio/x-raw,rate=16000 \
         ! fakesink name=sink sync=false",
    );
    let items = items_at_sink(&p);
    let ulaw = encode(&sine(440.0, 8000.0, 8000.0, 40 * 160));
    play_with_a_stall(&url, CallParams::default(), &[(Track::Inbound, &ulaw)]);
    collector.wait_eos();
    check_tails_before_gaps(&items.lock().unwrap(), &[&ulaw], 16000);
    set_state(&p, gst::State::Null);
}

/// `track=both`, 16 kHz: both channels' upsampler tails go out before the
/// GAPs, as with one track.
fn both_tracks_silent_push_the_upsampled_tails_out_before_the_fill() {
    init();
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 track=both gap-fill=silence \
         ! audio/x-raw,rate=16000 ! fakesink name=sink sync=false",
    );
    let items = items_at_sink(&p);
    let inbound = encode(&sine(440.0, 8000.0, 8000.0, 40 * 160));
    let outbound = encode(&sine(660.0, 8000.0, 6000.0, 40 * 160));
    let params = CallParams::with_tracks(&[Track::Inbound, Track::Outbound]);
    let tracks = [
        (Track::Inbound, &inbound[..]),
        (Track::Outbound, &outbound[..]),
    ];
    play_with_a_stall(&url, params, &tracks);
    collector.wait_eos();
    check_tails_before_gaps(&items.lock().unwrap(), &[&inbound, &outbound], 16000);
    set_state(&p, gst::State::Null);
}
