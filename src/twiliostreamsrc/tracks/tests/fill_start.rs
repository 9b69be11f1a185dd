//! The fills' start: a chunk a little before it, rounding onto its track's
//! audio, and a track whose first chunk comes all too late after a fill.

use super::*;

/// Inbound's timestamps run 5 ms before outbound's (its clock a little
/// off, within the rounding tolerance): before the fill each inbound chunk
/// rounds onto its audio, side by side with outbound's chunk 5 ms later.
/// After a fill, inbound's late chunk comes first: it is kept whole, but
/// must move both tracks on by the fill only, or outbound (at its own
/// timestamp) lands 40 samples later for the rest of the call.
#[test]
fn a_leading_track_a_little_off_rounding_onto_the_fills_start_keeps_both_aligned() {
    let (mut a, t0) = both();
    // Outbound first: origin at its 1000 ms; inbound at 995, 1015, ...
    for ms in (0..100).step_by(20) {
        push(&mut a, t0, Out, ms, 2);
        a.push(In, 1000 + ms - 5, &[1; 160], t0 + Duration::from_millis(ms));
    }
    let mut before = (vec![], vec![]);
    while let Some((_, i, o)) = take(&mut a) {
        before.0.extend(i);
        before.1.extend(o);
    }
    assert_eq!(before.0, before.1.iter().map(|_| 1).collect::<Vec<u8>>());
    assert_eq!(a.flush(), None);
    assert!(a.fill(2400));
    // Inbound's chunk at 95 ms (its next, late for the fill) comes first.
    let placed = a.push(In, 1095, &[3; 160], t0 + Duration::from_millis(500));
    assert_eq!(placed.late, 0, "{placed:?}");
    // Outbound's at 100 ms, its next, side by side with it.
    let placed = push(&mut a, t0, Out, 100, 4);
    assert_eq!(placed.gap, 0, "outbound parted from inbound: {placed:?}");
    for ms in [120, 140] {
        a.push(
            In,
            1000 + ms - 5,
            &[5; 160],
            t0 + Duration::from_millis(500),
        );
        push(&mut a, t0, Out, ms, 6);
    }
    let mut after = (vec![], vec![]);
    while let Some((_, i, o)) = take(&mut a) {
        after.0.extend(i);
        after.1.extend(o);
    }
    let (i, o) = (&after.0[..320], &after.1[..320]);
    assert_eq!(
        (i, o),
        (
            &[[3u8; 160], [5; 160]].concat()[..],
            &[[4u8; 160], [6; 160]].concat()[..]
        )
    );
}

/// As above with the tracks exactly on time but for the one chunk of the
/// leading track 5 ms early (jitter): without a fill it would round onto
/// its audio and nothing would change; after a fill it moves both tracks on
/// by 40 samples more than the fill, whereas outbound's chunk first moves
/// them by the fill alone: where the tracks go on depends on which track's
/// chunk comes first.
#[test]
fn the_move_after_a_fill_is_the_same_whichever_track_comes_first_with_rounding() {
    let run = |inbound_first: bool| {
        let (mut a, t0) = both();
        for ms in (0..100).step_by(20) {
            push(&mut a, t0, In, ms, 1);
            push(&mut a, t0, Out, ms, 2);
        }
        while take(&mut a).is_some() {}
        assert_eq!(a.flush(), None);
        assert!(a.fill(2400));
        let at = t0 + Duration::from_millis(500);
        let (i, o) = if inbound_first {
            (
                a.push(In, 1095, &[3; 160], at),
                push(&mut a, t0, Out, 100, 4),
            )
        } else {
            let o = push(&mut a, t0, Out, 100, 4);
            (a.push(In, 1095, &[3; 160], at), o)
        };
        (i.after_fill.max(o.after_fill), a.shifted)
    };
    assert_eq!(run(true).1, run(false).1);
}

fn drain(a: &mut Aligner) -> (Vec<u8>, Vec<u8>, [u64; 2]) {
    let mut out = (vec![], vec![], [0, 0]);
    while let Some((f, i, o)) = take(a) {
        out.0.extend(i);
        out.1.extend(o);
        out.2[0] += f.lost[0];
        out.2[1] += f.lost[1];
    }
    out
}

/// Regression of 72e8d17 (the move-on without `lane.started`): a track
/// not started yet gets what is left of the fill added to its run of
/// silence; if its first chunk is all too late, nothing resets the run, and
/// its next gap counts the fill's time as chunks lost (6 here, not 1; before
/// 72e8d17, 1).
#[test]
fn a_track_s_first_chunk_all_too_late_after_a_fill_counts_no_fill_as_lost() {
    let (mut a, t0) = both();
    for ms in (0..100).step_by(20) {
        push(&mut a, t0, In, ms, 1);
    }
    let _ = drain(&mut a);
    let f = a.flush().unwrap();
    a.consume(f.samples);
    assert!(a.fill(2400));
    // Inbound's chunk at 200 ms: 1600 late.
    assert_eq!(push(&mut a, t0, In, 200, 3).after_fill, 1600);
    // Outbound's first chunk ever, at 0 ms: all of it went out.
    let p = push(&mut a, t0, Out, 0, 9);
    assert_eq!(p.late, 160, "{p:?}");
    // Outbound's next at 220 ms: 20 ms of silence before it (its 200 ms
    // chunk missing) and then on.
    push(&mut a, t0, In, 220, 5);
    let p = push(&mut a, t0, Out, 220, 6);
    let (_, o, lost) = drain(&mut a);
    assert!(o.ends_with(&[6; 160]), "{p:?}");
    assert_eq!(lost[1], 1, "outbound counted {} lost ({p:?})", lost[1]);
}
