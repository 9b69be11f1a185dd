//! Hostile sequences of valid-looking messages: counters at the ends of
//! their range, going back, wrapping, in each provider's spelling. Each
//! call must go on: the chunk after the odd ones comes out, the call ends
//! with its `stop`, and no panic ends the call's task.

mod common;

use common::src::{in_both_modes, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::codec::{WireFormat, alaw};
use gsttwiliostream::protocol::{Counter, Inbound, Track};
use twilio_emulator::{CallParams, Provider, TwilioCall};

in_both_modes!(
    telnyx_timestamps_at_the_end_of_their_range,
    twilio_timestamps_at_the_end_of_their_range,
    chunk_numbers_at_the_end_of_their_range,
    both_tracks_with_counters_at_the_end_of_their_range,
);

const PCM8K: &str = "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! \
                     fakesink name=sink sync=false";

const LAST: [u8; 160] = [0x55; 160];

/// Plays a call of `params`: the chunks `odd` makes (from the emulator's
/// next message, which it may change), then one chunk of `LAST` in order,
/// then stop. Returns what came out and the src's warnings.
fn play(
    params: CallParams,
    odd: impl Fn(&mut TwilioCall) -> Vec<Inbound<'static>>,
) -> (Vec<i16>, Vec<String>) {
    play_into(PCM8K, params, odd)
}

/// [`play`] into the pipeline `desc`.
fn play_into(
    desc: &str,
    params: CallParams,
    odd: impl Fn(&mut TwilioCall) -> Vec<Inbound<'static>>,
) -> (Vec<i16>, Vec<String>) {
    let (p, collector, url) = start(desc);
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        for msg in odd(&mut call) {
            call.send(&msg).unwrap();
        }
        call.send_media(&LAST).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    let bus = p.bus().unwrap();
    let messages = drain_messages(&bus);
    assert_eq!(
        element_messages(&messages, "twilio-stop").len(),
        1,
        "the call ended by its stop"
    );
    let warnings = messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(format!("{} ({:?})", w.error(), w.debug())),
            _ => None,
        })
        .collect();
    set_state(&p, gst::State::Null);
    (got.samples(), warnings)
}

/// The media message `call` would send next, with `timestamp` and `chunk`.
fn media(call: &mut TwilioCall, payload: &[u8], timestamp: u64, chunk: u64) -> Inbound<'static> {
    let mut msg = call.media_message(payload);
    if let Inbound::Media { media, .. } = &mut msg {
        media.timestamp = Counter(timestamp);
        media.chunk = Some(Counter(chunk));
    }
    msg
}

fn ends_with(samples: &[i16], last: &[i16]) {
    assert!(
        samples.ends_with(last),
        "the last chunk did not come out last ({} samples)",
        samples.len()
    );
}

/// A Telnyx call (reordered by the window) whose timestamps start at the
/// top of their range: the window's arithmetic on where a chunk ends.
fn telnyx_timestamps_at_the_end_of_their_range() {
    let params = CallParams::of(Provider::Telnyx, WireFormat::PCMA);
    let (samples, _) = play(params, |call| {
        vec![
            media(call, &[0xd5; 160], u64::MAX, 1),
            media(call, &[0xd5; 160], u64::MAX - 10, 2),
        ]
    });
    ends_with(&samples, &LAST.map(alaw::decode));
}

/// The same in a Twilio call (no window), also at 16 kHz with quality
/// reports every second of the call's (timestamped) audio.
fn twilio_timestamps_at_the_end_of_their_range() {
    let odd = |call: &mut TwilioCall| {
        vec![
            media(call, &[0xff; 160], u64::MAX, 1),
            media(call, &[0xff; 160], u64::MAX - 10, 2),
            media(call, &[0xff; 160], 0, 3),
            media(call, &[0xff; 160], u64::MAX / 2, 4),
        ]
    };
    let (samples, _) = play(CallParams::default(), odd);
    ends_with(&samples, &twilio_emulator::audio::decode(&LAST));
    const WIDE: &str = "twiliostreamsrc name=src port=0 quality-interval=1 ! \
                        fakesink name=sink sync=false";
    let (samples, _) = play_into(WIDE, CallParams::default(), odd);
    assert!(!samples.is_empty());
}

/// Chunk numbers at the top of their range and back to 0, in both
/// providers' calls.
fn chunk_numbers_at_the_end_of_their_range() {
    for provider in [Provider::Twilio, Provider::Telnyx] {
        let params = CallParams::of(provider, WireFormat::PCMU);
        let (samples, _) = play(params, |call| {
            vec![
                media(call, &[0xff; 160], 0, u64::MAX - 1),
                media(call, &[0xff; 160], 20, u64::MAX),
                media(call, &[0xff; 160], 60, u64::MAX),
                media(call, &[0xff; 160], 40, 0),
                media(call, &[0xff; 160], 80, 1),
            ]
        });
        assert!(!samples.is_empty());
    }
}

/// The same odd counters on both tracks of a call, output as two channels.
fn both_tracks_with_counters_at_the_end_of_their_range() {
    const BOTH: &str = "twiliostreamsrc name=src port=0 track=both ! \
                        audio/x-raw,rate=8000 ! fakesink name=sink sync=false";
    for provider in [Provider::Twilio, Provider::Telnyx] {
        let params = CallParams {
            tracks: CallParams::with_tracks(&[Track::Inbound, Track::Outbound]).tracks,
            ..CallParams::of(provider, WireFormat::PCMU)
        };
        let (samples, _) = play_into(BOTH, params, |call| {
            let mut out = Vec::new();
            for (ts, n) in [
                (u64::MAX, u64::MAX - 1),
                (u64::MAX - 10, u64::MAX),
                (0, 0),
                (u64::MAX / 2, 1),
                (40, 3),
            ] {
                for track in [Track::Inbound, Track::Outbound] {
                    let mut msg = call.media_message_on(track, &[0xff; 160]);
                    if let Inbound::Media { media, .. } = &mut msg {
                        media.timestamp = Counter(ts);
                        media.chunk = Some(Counter(n));
                    }
                    out.push(msg);
                }
            }
            out
        });
        assert!(!samples.is_empty());
    }
}

/// GStreamer keeps a structure's field names (GQuarks) for the life of the
/// process: `custom-parameters` names a peer makes up would pile up, call
/// after call. New names are interned up to a budget (64 KiB for the
/// process); beyond it they come as `name=value` strings in the structure's
/// `left-out` array: every parameter is delivered, one way or the other.
#[test]
fn made_up_parameter_names_do_not_pile_up_for_the_process() {
    let names: Vec<String> = (0..2000)
        .map(|i| format!("made-up-{}-{i:05}-{}", std::process::id(), "x".repeat(64)))
        .collect();
    let mut custom_parameters: std::collections::BTreeMap<String, String> =
        names.iter().map(|n| (n.clone(), "v".to_owned())).collect();
    custom_parameters.insert("caller".into(), "+15550100".into());
    let params_sent = custom_parameters.clone();
    let params = CallParams {
        custom_parameters,
        ..CallParams::default()
    };
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 max-message-size=1048576 ! fakesink name=sink");
    rt().block_on(async {
        let mut call = TwilioCall::start(&url, params).await.unwrap();
        call.send_media(&LAST).unwrap();
        call.send_stop().unwrap();
        call.close().await;
    });
    collector.wait_eos();
    let messages = drain_messages(&p.bus().unwrap());
    set_state(&p, gst::State::Null);
    let started = element_messages(&messages, "twilio-start");
    let posted = started[0]
        .get::<gst::Structure>("custom-parameters")
        .unwrap();
    let interned = names
        .iter()
        .filter(|n| gst::glib::Quark::try_from_str(n).is_some())
        .count();
    let budget = (64 << 10) / names[0].len();
    assert!(
        interned <= budget,
        "{interned} made-up names kept for good (of {})",
        names.len()
    );
    assert!(posted.n_fields() <= budget + 2);
    // None is lost: what could not be a field comes as `name=value`.
    let mut delivered: std::collections::BTreeMap<String, String> = posted
        .iter()
        .filter(|(name, _)| name.as_str() != "left-out")
        .map(|(name, value)| (name.to_string(), value.get::<String>().unwrap()))
        .collect();
    for pair in posted.get::<gst::Array>("left-out").unwrap().iter() {
        let pair = pair.get::<String>().unwrap();
        let (name, value) = pair.split_once('=').unwrap();
        delivered.insert(name.to_owned(), value.to_owned());
    }
    assert_eq!(delivered, params_sent);
}
