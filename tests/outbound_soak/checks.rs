//! What the peer got, against the script: the segments as the sink took
//! them, the μ-law, the marks, the `twilio-clear` reports, the counters.

use gst::prelude::*;

use crate::common::peer::PeerState;
use crate::common::*;
use crate::script::{ClearBy, Script};

/// The resampler's delay, at most (README "Marks and clear"): 2.7 ms.
const MARK_SLACK: usize = 22;
/// `played` + `dropped` against the segment's audio: the resampler's
/// delay (input it holds is not yet audio) and rounding.
const SUM_SLACK: u64 = 3_000_000;

/// The script's segments as the sink took them: a racing clear cut its
/// segment where the sink had got to, found from what Twilio got after it
/// (the rest went into the next segment, as it is: μ-law).
pub fn as_the_sink_saw_it(script: &Script, st: &PeerState, ctx: &str) -> Script {
    let cuts = cuts(st);
    let mut segments = script.segments.clone();
    for k in 0..segments.len() - 1 {
        if segments[k].ended_by != Some(ClearBy::Racing) {
            continue;
        }
        let (Some(&(from, to)), Some(&(next_from, next_to))) = (cuts.get(k), cuts.get(k + 1))
        else {
            break;
        };
        let after = &st.media[next_from..next_to];
        let next = segments[k + 1].clone();
        let seg = &mut segments[k];
        // G.711 input, sample for sample on the wire.
        let (format, w) = (script.variant.format, st.width);
        let (this, that) = (seg.expected(format), next.expected(format));
        // Nothing came after it: the cut is anywhere past what came before,
        // and the next segment begins somewhere in what this one held
        // (a racing clear next finds where).
        let p = match after.is_empty() {
            true => Some((to - from) / w),
            false => ((to - from) / w..=seg.g711.len()).find(|&p| {
                let want = this[p * w..].iter().chain(&that);
                after.len() <= this.len() - p * w + that.len()
                    && after.iter().eq(want.take(after.len()))
            }),
        };
        let p = p.unwrap_or_else(|| {
            panic!(
                "{ctx}: after racing clear {k}, {} bytes of no continuation",
                after.len()
            )
        });
        if std::env::var_os("OUTBOUND_SOAK_TRACE").is_some() {
            let n = seg.g711.len();
            eprintln!(
                "{ctx}: racing clear {k} cut at {p} of {n} bytes ({} after)",
                after.len()
            );
        }
        let mut rest = seg.split_off(p);
        rest.append(&next);
        if after.is_empty() {
            seg.cut_known = false;
            rest.cut_known = false;
        }
        segments[k + 1] = rest;
    }
    Script {
        variant: script.variant,
        max_lead: script.max_lead,
        most_lead: script.most_lead,
        steps: Vec::new(),
        end: script.end,
        segments,
        splits: script.splits,
    }
}

/// Where each segment's audio begins and ends in what the peer got (bytes).
pub fn cuts(st: &PeerState) -> Vec<(usize, usize)> {
    let mut ends: Vec<usize> = st.clears.iter().map(|c| c.received).collect();
    ends.push(st.media.len());
    let mut from = 0;
    ends.into_iter()
        .map(|end| {
            let cut = (from, end);
            from = end;
            cut
        })
        .collect()
}

pub fn check_media(script: &Script, st: &PeerState, complete: bool, ctx: &str) {
    let cuts = cuts(st);
    assert!(
        cuts.len() <= script.segments.len(),
        "{ctx}: more clears than asked for"
    );
    if complete {
        assert_eq!(cuts.len(), script.segments.len(), "{ctx}: clears");
    }
    for (k, (&(from, to), seg)) in cuts.iter().zip(&script.segments).enumerate() {
        let got = &st.media[from..to];
        let want = seg.expected(script.variant.format);
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(
            got.len() <= want.len() && first.is_none(),
            "{ctx}: segment {k} ({:?}, {:?}): {} bytes got, {} in all; first difference at {first:?}",
            seg.input,
            seg.ended_by,
            got.len(),
            want.len()
        );
        if complete && seg.ended_by.is_none() {
            assert_eq!(got.len(), want.len(), "{ctx}: the last segment cut short");
        }
    }
}

pub fn check_marks(script: &Script, st: &PeerState, complete: bool, ctx: &str) {
    // In 8 kHz samples.
    let w = st.width;
    let cuts: Vec<(usize, usize)> = cuts(st).iter().map(|c| (c.0 / w, c.1 / w)).collect();
    let ours = |n: &str| n == "twiliostream-eos" || n == "twiliostream-end";
    let got: Vec<&(String, usize)> = st.marks.iter().filter(|m| !ours(&m.0)).collect();
    let placed: Vec<(usize, &String, usize)> = script
        .segments
        .iter()
        .enumerate()
        .flat_map(|(k, seg)| seg.marks.iter().map(move |(name, n)| (k, name, *n)))
        .collect();
    // Every mark goes out, in order (a clear drops none: those among the
    // audio it drops go out before it); NULL may cut the list short.
    let names: Vec<&String> = got.iter().map(|m| &m.0).collect();
    let want: Vec<&String> = placed.iter().map(|m| m.1).take(got.len()).collect();
    assert_eq!(names, want, "{ctx}: marks");
    if complete {
        assert_eq!(got.len(), placed.len(), "{ctx}: marks");
    }
    for ((name, before), (k, _, n)) in got.iter().map(|m| (&m.0, m.1 / w)).zip(&placed) {
        let Some(&(from, to)) = cuts.get(*k) else {
            panic!("{ctx}: mark {name:?} of segment {k} came after its clear");
        };
        let seg = &script.segments[*k];
        let want = from + seg.out_at(*n);
        // Where its audio was cleared before it went out, at the clear.
        let cleared = seg.ended_by.is_some() && before == to && want + MARK_SLACK > to;
        if !seg.cut_known {
            continue;
        }
        assert!(
            (from..=to).contains(&before) && (before.abs_diff(want) <= MARK_SLACK || cleared),
            "{ctx}: mark {name:?} after {before} bytes, placed at {want} (segment {k}: {from}..{to})"
        );
    }
}

/// `heard(k, h)` is how much of segment `k` was heard when the peer had
/// played `h` samples of what it got of it (padding left out).
pub fn check_reports(
    script: &Script,
    st: &PeerState,
    messages: &[gst::Message],
    slack: u64,
    heard: impl Fn(usize, f64) -> f64,
    ctx: &str,
) {
    let reports = element_messages(messages, "twilio-clear");
    assert_eq!(
        reports.len(),
        st.clears.len(),
        "{ctx}: twilio-clear messages"
    );
    let mut before = 0.0;
    let mut last: Option<u64> = None;
    for (k, (r, clear)) in reports.iter().zip(&st.clears).enumerate() {
        let seg = &script.segments[k];
        assert_eq!(
            r.get::<String>("reason").unwrap(),
            seg.ended_by.unwrap().reason(),
            "{ctx}"
        );
        let played = r
            .get::<Option<gst::ClockTime>>("played")
            .unwrap()
            .map(|t| t.nseconds());
        let dropped = r.get::<gst::ClockTime>("dropped").unwrap().nseconds();
        // Rounding in the peer can leave it a hair below zero.
        let h = heard(k, (clear.played - before).max(0.0));
        before = clear.played;
        let want = seg.running_time(h);
        // At a jump in time the caller heard up to its start (a syncing
        // sink waits out the gap there).
        let want_before = seg.running_time(h - 1.0) + 125_000;
        let what = format!(
            "{ctx}: clear {k}: played {played:?} dropped {dropped}, the peer played {h:.0} samples of a segment of {} ns from {}",
            seg.duration(),
            seg.pts
        );
        if std::env::var_os("OUTBOUND_SOAK_TRACE").is_some() {
            eprintln!("{what}");
        }
        match played {
            _ if !seg.cut_known => {}
            Some(p) if p + slack >= seg.pts => {
                assert!(
                    p.abs_diff(want) <= slack || p.abs_diff(want_before) <= slack,
                    "{what}"
                );
                let within = seg.audio_before(p);
                assert!(
                    (within + dropped).abs_diff(seg.duration()) <= SUM_SLACK,
                    "{what}"
                );
            }
            // Nothing of this segment heard, by the model: where the last
            // report left off, exactly (nothing played since).
            _ => {
                assert!(h * 125_000.0 < slack as f64, "{what}");
                assert_eq!(played, last, "{what}: the last report said {last:?}");
                assert!(dropped.abs_diff(seg.duration()) <= SUM_SLACK, "{what}");
            }
        }
        last = played;
    }
}

pub fn check_counters(
    script: &Script,
    sink: &gst::Element,
    st: &PeerState,
    messages: &[gst::Message],
    ctx: &str,
) {
    check_mark_messages(messages, st, ctx);
    let stats = sink.property::<gst::Structure>("stats");
    let want = [
        ("bytes-sent", st.media.len() as u64),
        ("chunks-sent", st.texts_of("media").len() as u64),
        ("marks-sent", st.marks.len() as u64),
        ("clears-sent", st.clears.len() as u64),
        // The peer echoes each mark once, in order: each echo plays one.
        ("marks-played", st.echoes.len() as u64),
        ("marks-received", st.echoes.len() as u64),
        ("transcode-errors", script.splits),
        ("chunks-dropped", 0),
    ];
    for (name, n) in want {
        assert_eq!(stats.get::<u64>(name).unwrap(), n, "{ctx}: stats {name}");
        assert_eq!(sink.property::<u64>(name), n, "{ctx}: {name}");
    }
}

/// A `twilio-mark` message for each echo the peer sent, in its order.
pub fn check_mark_messages(messages: &[gst::Message], st: &PeerState, ctx: &str) {
    let echoed: Vec<String> = element_messages(messages, "twilio-mark")
        .iter()
        .map(|s| s.get::<String>("name").unwrap())
        .collect();
    let peer_echoed: Vec<String> = st.echoes.iter().map(|e| e.name.clone()).collect();
    assert_eq!(echoed, peer_echoed, "{ctx}: twilio-mark messages");
}
