//! What an echo's peer got back, against what it sent and what the sink
//! was given (README "Marks and clear", "Ending the stream", "Pausing"):
//!
//! * the sink was given the chunks sent, in order, nothing twice, less
//!   only whole chunks sent around a pause (dropped by the src, counted
//!   in `chunks-dropped-paused`), or at the end of an unfinished call;
//! * between two clears the peer got a stretch of that, without a break
//!   (Telnyx's padding of short frames aside): what was lost is lost at a
//!   clear only, and all of it came back when the call was played out;
//! * marks in order, each among what the sink had been given when it was
//!   asked for and after what had come back by then; `twilio-mark`
//!   messages as the peer echoed;
//! * each `twilio-clear` says what the peer played (±40 ms, its lateness
//!   added), and what it dropped plus what the clear took from the sink;
//! * the peer never held more than `max-lead` and a frame.

use std::time::Duration;

use crate::common::element_messages;
use crate::common::peer::PeerState;
use crate::echo::{EchoScript, Record};

/// See `run::PLAYED_SLACK`.
const PLAYED_SLACK: u64 = 40_000_000;
/// See `run::QUEUE_SLACK`.
const QUEUE_SLACK: u64 = 10_000_000;

/// What reached the sink's pad, in the call's byte order.
#[derive(Debug, Default)]
pub struct Fed {
    pub bytes: Vec<u8>,
    /// Each buffer: where its bytes begin, its running time.
    pub buffers: Vec<(usize, Option<u64>)>,
    pub chunk_bytes: usize,
}

impl Fed {
    /// The running time of the start of byte `x` (of a tick of `width`).
    fn running_time_at(&self, x: usize, width: usize) -> Option<u64> {
        let i = self.buffers.partition_point(|b| b.0 <= x).checked_sub(1)?;
        let (start, rt) = self.buffers[i];
        Some(rt? + ((x - start) / width) as u64 * 125_000)
    }

    /// The running time of the end of byte `x`.
    fn running_time_after(&self, x: usize, width: usize) -> Option<u64> {
        Some(self.running_time_at(x, width)? + 125_000)
    }
}

/// Where each received byte came from in what the sink was given (None:
/// padding), and each segment's stretch there (None: nothing of it came).
struct Aligned {
    map: Vec<Option<usize>>,
    stretches: Vec<Option<(usize, usize)>>,
}

/// Aligns segment `frames` (start, len in the received bytes) at `p` of
/// `fed`: the end there, or None.
fn align_at(
    frames: &[(usize, usize)],
    got: &[u8],
    fed: &[u8],
    p: usize,
    min: usize,
    silence: u8,
    map: &mut [Option<usize>],
) -> Option<usize> {
    let mut q = p;
    for (i, &(s, len)) in frames.iter().enumerate() {
        let frame = &got[s..s + len];
        let m = frame
            .iter()
            .zip(fed.get(q..).unwrap_or(&[]))
            .take_while(|(a, b)| a == b)
            .count();
        let real = if m == len {
            len
        } else if min > 0 && len == min && frame[m..].iter().all(|&b| b == silence) {
            // Padded: the audio ends where the silence begins, or later
            // (audio that happens to be silence); the next frame tells.
            let first = frame
                .iter()
                .rposition(|&b| b != silence)
                .map_or(0, |i| i + 1);
            let next = frames.get(i + 1).map(|&(s, l)| &got[s..s + l.min(8)]);
            (first..=m).rev().find(|&r| {
                next.is_none_or(|n| fed.get(q + r..).is_some_and(|f| f.starts_with(n)))
            })?
        } else {
            return None;
        };
        for k in 0..len {
            map[s + k] = (k < real).then_some(q + k);
        }
        q += real;
    }
    Some(q)
}

fn align(script: &EchoScript, st: &PeerState, fed: &[u8], ctx: &str) -> Aligned {
    let v = script.variant;
    let mut map = vec![None; st.media.len()];
    let mut frames = Vec::new();
    let mut at = 0;
    for &(len, _) in &st.frames {
        frames.push((at, len));
        at += len;
    }
    let mut stretches = Vec::new();
    let mut from = 0;
    for (k, &(a, b)) in crate::checks::cuts(st).iter().enumerate() {
        let seg: Vec<(usize, usize)> = frames
            .iter()
            .copied()
            .filter(|&(s, _)| a <= s && s < b)
            .collect();
        if seg.is_empty() {
            stretches.push(None);
            continue;
        }
        let (min, silence) = (v.min_frame(), v.format.silence());
        // Nothing is lost before the first clear.
        let last = if k == 0 { 0 } else { fed.len() };
        let found = (from..=last.max(from)).find_map(|p| {
            align_at(&seg, &st.media, fed, p, min, silence, &mut map).map(|e| (p, e))
        });
        let Some((p, end)) = found else {
            panic!(
                "{ctx}: segment {k} (bytes {a}..{b} of what came back) is no stretch of what \
                 the sink was given after byte {from} ({} in all)",
                fed.len()
            );
        };
        stretches.push(Some((p, end)));
        from = end;
    }
    Aligned { map, stretches }
}

/// The position in what the sink was given after received byte `r - 1`.
fn fed_after(al: &Aligned, r: usize) -> usize {
    (0..r)
        .rev()
        .find_map(|i| al.map[i].map(|x| x + 1))
        .unwrap_or(0)
}

/// The running time up to which the caller heard a clear's segment (bytes
/// `from..to` of what came back), of which the peer played to byte `h`:
/// None if nothing of it came. A clear empties the peer's queue, so the
/// segment plays from its first byte's arrival, as in the sink's model
/// from its write (which comes before the clear's): once any of it came,
/// the caller heard up to its start at least, however little it played
/// (less than a sample when the writer, running late, wrote its first
/// frame just before it took the clear).
fn heard_in(
    al: &Aligned,
    fed: &Fed,
    w: usize,
    (from, to): (usize, usize),
    h: usize,
) -> Option<u64> {
    if h > from && al.map[..h].iter().any(Option::is_some) {
        return fed.running_time_after(fed_after(al, h) - 1, w);
    }
    let &first = al.map[from..to].iter().flatten().next()?;
    fed.running_time_at(first, w)
}

#[allow(clippy::too_many_arguments)]
pub fn check(
    script: &EchoScript,
    rec: &Record,
    fed: &Fed,
    st: &PeerState,
    messages: Option<&[gst::Message]>,
    dropped_paused: u64,
    late: u64,
    complete: bool,
    ctx: &str,
) {
    let v = script.variant;
    let w = v.format.bytes_per_tick();
    assert!(st.invalid.is_empty(), "{ctx}: {:?}", st.invalid);
    check_fed(rec, fed, dropped_paused, complete, ctx);
    let al = align(script, st, &fed.bytes, ctx);
    if std::env::var_os("OUTBOUND_SOAK_TRACE").is_some() {
        for pair in fed.buffers.windows(2) {
            let ((a, ra), (b, rb)) = (pair[0], pair[1]);
            let (ra, rb) = (ra.unwrap_or(0), rb.unwrap_or(0));
            let want = ra + ((b - a) / w) as u64 * 125_000;
            if want.abs_diff(rb) > 1_000_000 {
                eprintln!(
                    "{ctx}: fed byte {b}: running time {rb}, {} ms after the last buffer's end",
                    (rb as i64 - want as i64) / 1_000_000
                );
            }
        }
        eprintln!(
            "{ctx}: stretches {:?}, clears at {:?}",
            al.stretches,
            st.clears
                .iter()
                .map(|c| (c.received, c.played, c.dropped))
                .collect::<Vec<_>>()
        );
    }
    // All came back, but what the last clear dropped when nothing came
    // after it.
    if complete {
        let end = match al.stretches[..] {
            [.., Some((_, end))] => end,
            [None] => 0,
            _ => fed.bytes.len(),
        };
        assert_eq!(
            end,
            fed.bytes.len(),
            "{ctx}: the end of the echo is missing"
        );
    }
    check_marks(rec, st, &al, complete, ctx);
    let lead = Duration::from_millis(script.max_lead as u64 + 20)
        + Duration::from_nanos(QUEUE_SLACK + late);
    assert!(
        st.most_queued <= lead,
        "{ctx}: the peer held {:?}",
        st.most_queued
    );
    let Some(messages) = messages else {
        return;
    };
    crate::checks::check_mark_messages(messages, st, ctx);
    let reports = element_messages(messages, "twilio-clear");
    assert_eq!(st.clears.len(), rec.clears, "{ctx}: clears at the peer");
    assert_eq!(reports.len(), rec.clears, "{ctx}: twilio-clear messages");
    let slack = PLAYED_SLACK + late;
    let cuts = crate::checks::cuts(st);
    // Samples played by the last clear; the running time heard to (as at
    // the last clear when nothing of a segment came).
    let (mut before, mut heard) = (0.0, None);
    for (k, (r, clear)) in reports.iter().zip(&st.clears).enumerate() {
        assert_eq!(r.get::<String>("reason").unwrap(), "signal", "{ctx}");
        let played = r
            .get::<Option<gst::ClockTime>>("played")
            .unwrap()
            .map(|t| t.nseconds());
        let dropped = r.get::<gst::ClockTime>("dropped").unwrap().nseconds();
        // The peer's `played` counts all it played: of this segment, what
        // it played since the last clear.
        let (from, to) = cuts[k];
        let since = (clear.played - before).max(0.0).floor() as usize;
        before = clear.played;
        let h = (from + since * st.width).min(to);
        heard = heard_in(&al, fed, w, (from, to), h).or(heard);
        let what = format!(
            "{ctx}: clear {k}: played {played:?} dropped {dropped}, the peer played {since} \
             samples of it, to byte {h}, and dropped {:.0} samples",
            clear.dropped
        );
        if let Some(want) = heard {
            let p = played.unwrap_or_else(|| panic!("{what}: played none"));
            assert!(
                p.abs_diff(want) <= slack,
                "{what}: the peer played to {want}"
            );
        }
        // What the clear took from the sink: what the next segment
        // skipped; the padding the peer dropped was no audio.
        let (Some(this), Some(next)) =
            (al.stretches[k], al.stretches.get(k + 1).copied().flatten())
        else {
            continue;
        };
        let padding = al.map[h.min(clear.received)..clear.received]
            .iter()
            .filter(|m| m.is_none())
            .count();
        let ticks = clear.dropped - (padding / w) as f64 + ((next.0 - this.1) / w) as f64;
        let want = (ticks * 125_000.0) as u64;
        assert!(dropped.abs_diff(want) <= slack, "{what}: want {want}");
    }
}

/// The sink was given the chunks sent, in order, but whole chunks around
/// pauses (and at the end of an unfinished call).
fn check_fed(rec: &Record, fed: &Fed, dropped_paused: u64, complete: bool, ctx: &str) {
    let mut j = 0;
    let mut drops = Vec::new();
    for (i, c) in rec.sent.iter().enumerate() {
        if fed.bytes[j..].starts_with(c) {
            j += c.len();
        } else {
            drops.push(i);
        }
    }
    assert_eq!(
        j,
        fed.bytes.len(),
        "{ctx}: the sink was given bytes not sent, or twice, at byte {j}"
    );
    let matched = rec.sent.len() - drops.len();
    // Chunks after the last the sink got, in an unfinished call.
    let last = (0..rec.sent.len()).rfind(|i| !drops.contains(i));
    let tail = |i: usize| !complete && last.is_none_or(|l| i > l);
    let paused: Vec<usize> = drops.iter().copied().filter(|&i| !tail(i)).collect();
    for &i in &paused {
        assert!(
            rec.pauses.iter().any(|&(from, to)| from <= i && i < to),
            "{ctx}: chunk {i} of {} lost, not around a pause ({:?})",
            rec.sent.len(),
            rec.pauses
        );
    }
    assert!(
        paused.len() as u64 <= dropped_paused,
        "{ctx}: {} chunks lost, {dropped_paused} counted ({matched} taken)",
        paused.len()
    );
    if complete {
        assert_eq!(
            paused.len() as u64,
            dropped_paused,
            "{ctx}: chunks-dropped-paused"
        );
    }
}

fn check_marks(rec: &Record, st: &PeerState, al: &Aligned, complete: bool, ctx: &str) {
    let ours = |n: &str| n == "twiliostream-eos" || n == "twiliostream-end";
    // Each mark's place among the messages: clears before it.
    let mut clears_before = Vec::new();
    let mut clears = 0;
    for (_, text) in &st.received {
        if text.contains(r#""event":"clear""#) {
            clears += 1;
        } else if text.contains(r#""event":"mark""#) {
            clears_before.push(clears);
        }
    }
    let got: Vec<(usize, &(String, usize))> = st
        .marks
        .iter()
        .enumerate()
        .filter(|(_, m)| !ours(&m.0))
        .collect();
    let names: Vec<&String> = got.iter().map(|m| &m.1.0).collect();
    let want: Vec<&String> = rec.marks.iter().map(|m| &m.0).take(names.len()).collect();
    assert_eq!(names, want, "{ctx}: marks");
    if complete {
        assert_eq!(names.len(), rec.marks.len(), "{ctx}: marks");
    }
    let cuts = crate::checks::cuts(st);
    for ((i, (name, r)), (_, back, given)) in got.iter().zip(&rec.marks) {
        let c = clears_before[*i];
        // At the end of its segment when it came before the clear there.
        let pos = match (al.stretches.get(c).copied().flatten(), cuts.get(c)) {
            (Some((start, _)), Some(&(from, _))) if *r == from => start,
            (Some(_), _) => fed_after(al, *r),
            (None, _) => continue,
        };
        let lowest = fed_after(al, *back);
        assert!(
            lowest <= pos && pos <= *given,
            "{ctx}: mark {name:?} after byte {pos} of what the sink was given: it was asked \
             for after {lowest} came back and {given} had been given"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seed 11 of the paused echo on a loaded machine: the first clear cut
    /// the 7th chunk at 104.46 ms (67 ms of it dropped); the writer wrote
    /// the 8th (from 171.59 ms) 3 µs before it took the second clear, the
    /// peer played half a sample of it, and the sink said 171.59 ms. The
    /// check wanted 104.46 ms, as if nothing of the 8th had come.
    #[test]
    fn a_segment_begun_was_heard_to_its_start() {
        let rt = |chunk: u64| 31_589_818 + chunk * 20_000_000;
        let fed = Fed {
            bytes: vec![0; 1280],
            buffers: (0..8).map(|i| (i * 160, Some(rt(i as u64)))).collect(),
            chunk_bytes: 160,
        };
        let al = Aligned {
            map: (0..1280).map(Some).collect(),
            stretches: vec![Some((0, 1120)), Some((1120, 1280))],
        };
        let first = heard_in(&al, &fed, 1, (0, 1120), 583);
        assert_eq!(first, Some(rt(0) + 583 * 125_000));
        assert_eq!(heard_in(&al, &fed, 1, (1120, 1280), 1120), Some(rt(7)));
        assert_eq!(heard_in(&al, &fed, 1, (1280, 1280), 1280), None);
    }
}
