//! The structures both elements post for call events (bus messages) and push
//! downstream (events), in one place so the src and a sink on its own speak
//! exactly alike.

use gst::prelude::*;

use crate::call::{Cleared, DtmfDigit};
use crate::protocol::{StartInfo, StopInfo};
use crate::quality::Figures;

/// `twilio-start`: call-sid, stream-sid, account-sid, tracks, custom-parameters.
pub fn start(start: &StartInfo) -> gst::Structure {
    let tracks = gst::Array::new(start.tracks.iter().map(|t| t.to_send_value()));
    gst::Structure::builder("twilio-start")
        .field("call-sid", &start.call_sid)
        .field("stream-sid", &start.stream_sid)
        .field("account-sid", &start.account_sid)
        .field("tracks", tracks)
        .field("custom-parameters", custom_parameters(start))
        .build()
}

/// The TwiML `<Parameter>`s as a `custom-parameters` structure of strings.
/// A name the structure's text could not give back as it is (see
/// [`writable`]) would let the caller write fields of its own into that
/// text: such a parameter comes as a `name=value` string in the array
/// [`LEFT_OUT`] instead (`%` and `=` in the name percent-encoded). So does
/// one beyond the budget: GStreamer keeps a field's name (a GQuark) for the
/// life of the process, so names it does not know yet are taken up to
/// [`NEW_NAMES_BUDGET`] for the process (beyond, a WARNING). Nothing is
/// lost.
pub fn custom_parameters(start: &StartInfo) -> gst::Structure {
    let mut s = gst::Structure::new_empty("custom-parameters");
    let mut left_out = Vec::new();
    let mut over_budget = 0;
    for (name, value) in &start.custom_parameters {
        if name == LEFT_OUT || !writable(name) {
            gst::info!(
                crate::call::CAT,
                "call {}: custom parameter {name:?} in {LEFT_OUT}: no plain field name",
                start.call_sid
            );
        } else if internable(name) {
            s.set(name.as_str(), value);
            continue;
        } else {
            over_budget += 1;
        }
        left_out.push(format!("{}={value}", escaped(name)));
    }
    if over_budget > 0 {
        gst::warning!(
            crate::call::CAT,
            "call {}: {over_budget} custom parameters in {LEFT_OUT}: the process has \
             taken {NEW_NAMES_BUDGET} bytes of parameter names GStreamer keeps for good",
            start.call_sid,
        );
    }
    if !left_out.is_empty() {
        s.set(LEFT_OUT, gst::Array::new(left_out));
    }
    s
}

/// `name` with `%` and `=` percent-encoded: in a [`LEFT_OUT`] string, the
/// name ends at the first `=`.
fn escaped(name: &str) -> std::borrow::Cow<'_, str> {
    match name.contains(['%', '=']) {
        true => name.replace('%', "%25").replace('=', "%3D").into(),
        false => name.into(),
    }
}

/// Whether `name` reads back as itself from a structure's text: GStreamer's
/// parser takes a field name of ASCII letters, digits and `_-+/:.` alone.
fn writable(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-+/:.".contains(&b))
}

/// The field of `custom-parameters` holding, as `name=value` strings, the
/// parameters whose names could not be field names (and one named so).
pub const LEFT_OUT: &str = "left-out";

/// Bytes of parameter names new to GStreamer that a process takes.
pub const NEW_NAMES_BUDGET: usize = 64 << 10;

/// Whether `name` may be a field name: GStreamer knows it already, or it
/// fits what is left of the budget (which it then takes).
fn internable(name: &str) -> bool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static TAKEN: AtomicUsize = AtomicUsize::new(0);
    if gst::glib::Quark::try_from_str(name).is_some() {
        return true;
    }
    let cost = name.len().max(1);
    TAKEN
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |taken| {
            (taken + cost <= NEW_NAMES_BUDGET).then_some(taken + cost)
        })
        .is_ok()
}

/// `twilio-dtmf`: digit, and its number (the session passes on keys only).
pub fn dtmf(digit: &DtmfDigit) -> gst::Structure {
    let mut s = gst::Structure::builder("twilio-dtmf").field("digit", &digit.0);
    if let Some(number) = digit.number() {
        s = s.field("number", number);
    }
    s.build()
}

/// GStreamer's `dtmf-event` pair for a digit (as dtmfsrc and rtpdtmfdepay use
/// it): Twilio reports a digit once, so the start and the end follow each other.
pub fn dtmf_events(digit: &DtmfDigit) -> Option<[gst::Event; 2]> {
    let number = digit.number()?;
    let start = gst::Structure::builder("dtmf-event")
        .field("type", 1i32)
        .field("number", number)
        .field("volume", 10i32)
        .field("start", true)
        .build();
    let end = gst::Structure::builder("dtmf-event")
        .field("type", 1i32)
        .field("number", number)
        .field("start", false)
        .build();
    Some([
        gst::event::CustomDownstream::new(start),
        gst::event::CustomDownstream::new(end),
    ])
}

/// `twilio-mark`: name.
pub fn mark(name: &str) -> gst::Structure {
    gst::Structure::builder("twilio-mark")
        .field("name", name)
        .build()
}

/// `twilio-clear`: a clear was sent (`reason`: `signal`, `event` or
/// `flush`); `played`, the running time in the outbound stream up to which
/// the caller heard it (NONE if no audio was ever sent), and `dropped`, the
/// audio sent and never heard, by the model of Twilio's queue (corrected by
/// echoed marks).
pub fn cleared(reason: &str, stream_sid: &str, cleared: &Cleared) -> gst::Structure {
    gst::Structure::builder("twilio-clear")
        .field("reason", reason)
        .field("stream-sid", stream_sid)
        .field("played", cleared.played.map(gst::ClockTime::from_nseconds))
        .field("dropped", gst::ClockTime::from_nseconds(cleared.dropped))
        .build()
}

/// `twilio-stop`: call-sid, stream-sid, account-sid and the reporting
/// element's stats.
pub fn stop(stop: &StopInfo, stream_sid: &str, stats: gst::Structure) -> gst::Structure {
    gst::Structure::builder("twilio-stop")
        .field("call-sid", &stop.call_sid)
        .field("stream-sid", stream_sid)
        .field("account-sid", &stop.account_sid)
        .field("stats", stats)
        .build()
}

/// `twilio-ended`: we ended the stream (closed the WebSocket); reason
/// (`eos`, `end-stream`), stream-sid and the reporting element's stats.
pub fn ended(reason: &str, stream_sid: &str, stats: gst::Structure) -> gst::Structure {
    gst::Structure::builder("twilio-ended")
        .field("reason", reason)
        .field("stream-sid", stream_sid)
        .field("stats", stats)
        .build()
}

/// `twilio-quality`: stream-sid, and the figures over the last `interval`
/// and over the `call` so far.
pub fn quality(stream_sid: &str, interval: &Figures, call: &Figures) -> gst::Structure {
    gst::Structure::builder("twilio-quality")
        .field("stream-sid", stream_sid)
        .field("interval", figures("interval", interval))
        .field("call", figures("call", call))
        .build()
}

/// A stretch's figures: chunks-received, chunks-lost, loss-percent, jitter
/// (ms), late-chunks, mos.
fn figures(name: &str, f: &Figures) -> gst::Structure {
    gst::Structure::builder(name)
        .field("chunks-received", f.received)
        .field("chunks-lost", f.lost)
        .field("loss-percent", f.loss_percent)
        .field("jitter", f.jitter_ms)
        .field("late-chunks", f.late)
        .field("mos", f.mos)
        .build()
}

/// Posts `structure` as an element message from `element`.
pub fn post(element: &gst::Element, structure: gst::Structure) {
    let _ = element.post_message(
        gst::message::Element::builder(structure)
            .src(element)
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(params: &[(&str, &str)]) -> StartInfo {
        StartInfo {
            account_sid: "AC1".into(),
            stream_sid: "MZ1".into(),
            call_sid: "CA1".into(),
            tracks: vec!["inbound".into()],
            custom_parameters: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            media_format: None,
            tracks_unannounced: false,
        }
    }

    #[test]
    fn parameter_names_the_text_cannot_give_back_are_left_out() {
        gst::init().unwrap();
        let hostile = [
            ("role=(string)admin, x", "1"),
            ("", "empty"),
            ("a b", "space"),
            ("a;b", "semicolon"),
            ("língua", "pt"),
            ("left-out", "its own"),
            ("caller=+1999", "a=b"),
            ("100%", "x"),
        ];
        let fine = [("caller", "+15550100"), ("A-b_c.d:e/f+g9", "ok")];
        let s = custom_parameters(&start(&[&hostile[..], &fine[..]].concat()));
        let fields: Vec<_> = s.fields().map(|f| f.to_string()).collect();
        assert_eq!(fields, ["A-b_c.d:e/f+g9", "caller", LEFT_OUT]);
        for (name, value) in fine {
            assert_eq!(s.get::<String>(name).unwrap(), value);
        }
        // Each left out as `name=value`.
        // (`%` and `=` in a name percent-encoded: it ends at the first `=`.)
        let mut want: Vec<String> = hostile
            .iter()
            .map(|(n, v)| format!("{}={v}", n.replace('%', "%25").replace('=', "%3D")))
            .collect();
        want.sort();
        let mut got: Vec<String> = s
            .get::<gst::Array>(LEFT_OUT)
            .unwrap()
            .iter()
            .map(|v| v.get::<String>().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, want);
        assert!(got.contains(&"caller%3D+1999=a=b".to_owned()), "{got:?}");
        // The structure's text gives back the same structure: no field the
        // caller wrote, none lost.
        let text = s.to_string();
        let back: gst::Structure = text.parse().unwrap();
        assert_eq!(back, s, "{text}");
    }
}
