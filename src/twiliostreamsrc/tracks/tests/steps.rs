//! Steps in one track's timestamps: that track measured anew, nothing of
//! either lost; told from lost chunks, chunks sent twice and jitter.

use super::*;

/// A chunk of a scripted call: `track`'s chunk `n` (filled with `n`, or
/// 100 + `n` for outbound) at timestamp `ts` ms, arriving `at` ms in.
struct Sent {
    at: u64,
    track: Track,
    n: u64,
    ts: u64,
}

/// `chunks` of each track in real time, each at its time (inbound first).
fn steady(chunks: u64) -> Vec<Sent> {
    (0..chunks)
        .flat_map(|n| Track::ALL.map(|track| (n, track)))
        .map(|(n, track)| Sent {
            at: 20 * n,
            track,
            n,
            ts: 20 * n,
        })
        .collect()
}

fn fill_of(track: Track, n: u64) -> u8 {
    (n + if track == In { 0 } else { 100 }) as u8
}

/// What came out of a scripted call.
#[derive(Debug, Default)]
struct Out2 {
    channels: [Vec<u8>; 2],
    lost: [u64; 2],
    /// Chunks dropped, whole or in part, as the element counts them.
    too_late: u64,
    /// (track, chunk, step in samples) where a track was measured anew.
    steps: Vec<(Track, u64, i64)>,
    /// Each track's timestamps to the clock they are placed on, at the end.
    offsets_ms: [i128; 2],
}

/// Plays `sent` in order of arrival, taking every frame out, then the end.
fn play(sent: Vec<Sent>) -> Out2 {
    play_with(Aligner::new(true, true, TRACK_WAIT), sent)
}

/// [`play`] on `a`.
fn play_with(mut a: Aligner, mut sent: Vec<Sent>) -> Out2 {
    let t0 = Instant::now();
    let mut out = Out2::default();
    let take_all = |a: &mut Aligner, out: &mut Out2, frame: Option<Frame>| {
        let mut frame = frame;
        while let Some(f) = frame {
            for track in Track::ALL {
                let ch = &a.channel(track)[..f.samples];
                out.channels[track.index()].extend_from_slice(ch);
                out.lost[track.index()] += f.lost[track.index()];
            }
            out.too_late += f.too_late;
            a.consume(f.samples);
            frame = a.next_frame();
        }
    };
    sent.sort_by_key(|s| s.at);
    for s in sent {
        let arrival = t0 + Duration::from_millis(s.at);
        let placed = a.push(s.track, 1000 + s.ts, &[fill_of(s.track, s.n); 160], arrival);
        if let Some(step) = placed.step {
            out.steps.push((s.track, s.n, step));
        }
        out.too_late +=
            u64::from(placed.late > 0 || placed.twice) + u64::from(placed.held_dropped > 0);
        let frame = a.next_frame();
        take_all(&mut a, &mut out, frame);
    }
    let frame = a.finish();
    take_all(&mut a, &mut out, frame);
    out.offsets_ms = Track::ALL.map(|t| a.offset_ms(t));
    out
}

/// `track`'s chunks 0..`chunks` one after the other, silence for `lost`.
fn whole(track: Track, chunks: u64, lost: std::ops::Range<u64>) -> Vec<u8> {
    (0..chunks)
        .flat_map(|n| {
            [if lost.contains(&n) {
                S
            } else {
                fill_of(track, n)
            }; 160]
        })
        .collect()
}

/// Steps `track`'s timestamps by `ms` from chunk `from` on.
fn step(sent: &mut [Sent], track: Track, from: u64, ms: i64) {
    for s in sent.iter_mut().filter(|s| s.track == track && s.n >= from) {
        s.ts = s.ts.checked_add_signed(ms).unwrap();
    }
}

#[test]
fn a_small_step_back_in_one_track_loses_nothing_of_either() {
    let mut sent = steady(60);
    step(&mut sent, In, 30, -400);
    let out = play(sent);
    // Told by the chunk after the first behind: both follow the audio.
    assert_eq!(out.steps, [(In, 31, -3200)]);
    assert_eq!(out.offsets_ms, [400, 0]);
    assert_eq!(out.channels[0], whole(In, 60, 0..0));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([0, 0], 0));
}

#[test]
fn a_small_step_ahead_in_one_track_loses_nothing_of_either() {
    let mut sent = steady(60);
    step(&mut sent, In, 30, 400);
    let out = play(sent);
    assert_eq!(out.steps, [(In, 30, 3200)]);
    assert_eq!(out.offsets_ms, [-400, 0]);
    // In real time: as long as the call, the other track whole.
    assert_eq!(out.channels[0], whole(In, 60, 0..0));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([0, 0], 0));
}

#[test]
fn a_big_step_ahead_in_one_track_is_no_gap_and_no_skip() {
    // 3 s (filled as a gap before), 6 s (skipped as a stream-wide gap
    // before), 60 s (beyond the plausible: ignored, measured anew too).
    for ms in [3_000, 6_000, 60_000] {
        let mut sent = steady(60);
        step(&mut sent, Out, 30, ms);
        let out = play(sent);
        if ms < 60_000 {
            assert_eq!(out.steps, [(Out, 30, ms * 8)], "{ms}");
        }
        assert_eq!(out.channels[0], whole(In, 60, 0..0), "{ms}");
        assert_eq!(out.channels[1], whole(Out, 60, 0..0), "{ms}");
        assert_eq!((out.lost, out.too_late), ([0, 0], 0), "{ms}");
    }
}

#[test]
fn both_tracks_stepping_are_each_measured_anew() {
    // At different times, either way.
    let mut sent = steady(60);
    step(&mut sent, In, 20, -400);
    step(&mut sent, Out, 40, 1000);
    let out = play(sent);
    assert_eq!(out.steps, [(In, 21, -3200), (Out, 40, 8000)]);
    assert_eq!(out.offsets_ms, [400, -1000]);
    assert_eq!(out.channels[0], whole(In, 60, 0..0));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([0, 0], 0));

    // Both at once, by as much: still no gap (no time passed for it).
    let mut sent = steady(60);
    step(&mut sent, In, 30, 400);
    step(&mut sent, Out, 30, 400);
    let out = play(sent);
    assert_eq!(out.steps, [(In, 30, 3200), (Out, 30, 3200)]);
    assert_eq!(out.channels[0], whole(In, 60, 0..0));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([0, 0], 0));
}

#[test]
fn after_a_step_jitter_loss_and_duplicates_are_told_as_before() {
    let mut sent = steady(60);
    step(&mut sent, In, 10, 400);
    let inbound =
        |sent: &[Sent], n: u64| sent.iter().position(|s| s.track == In && s.n == n).unwrap();
    // Chunks 20 and 21 come in a burst with 22.
    for n in [20, 21] {
        let i = inbound(&sent, n);
        sent[i].at = 440;
    }
    // Chunk 29 comes 40 ms late, 30–32 never.
    let i = inbound(&sent, 29);
    sent[i].at += 40;
    sent.retain(|s| !(s.track == In && (30..33).contains(&s.n)));
    // Chunk 40 is sent twice.
    let i = inbound(&sent, 40);
    let twice = Sent { at: 805, ..sent[i] };
    sent.push(twice);
    // Chunks 45–50 carry timestamps up to 8 ms off.
    for n in 45..51 {
        let i = inbound(&sent, n);
        sent[i].ts = if n % 2 == 0 {
            sent[i].ts + 8
        } else {
            sent[i].ts - 8
        };
    }
    let out = play(sent);
    assert_eq!(out.steps, [(In, 10, 3200)]);
    assert_eq!(out.channels[0], whole(In, 60, 30..33));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([3, 0], 1));
}

#[test]
fn chunks_lost_in_real_time_are_a_gap_not_a_step() {
    // Both tracks lose 200 ms at once; later the outbound track stops and
    // the inbound one loses 100 ms.
    let mut sent = steady(60);
    sent.retain(|s| !(20..30).contains(&s.n));
    sent.retain(|s| !(s.track == Out && s.n >= 40));
    sent.retain(|s| !(s.track == In && (50..55).contains(&s.n)));
    let out = play(sent);
    assert_eq!(out.steps, []);
    let mut inbound = whole(In, 60, 20..30);
    inbound[50 * 160..55 * 160].fill(S);
    assert_eq!(out.channels[0], inbound);
    let mut outbound = whole(Out, 60, 20..30);
    outbound[40 * 160..].fill(S);
    assert_eq!(out.channels[1], outbound);
    assert_eq!(out.lost, [15, 30]);
}

/// The sent chunk of `track` numbered `n`.
fn chunk(sent: &mut [Sent], track: Track, n: u64) -> &mut Sent {
    sent.iter_mut()
        .find(|s| s.track == track && s.n == n)
        .unwrap()
}

/// `steady`, with `first`'s chunk arriving first in each tick.
fn steady_first(chunks: u64, first: Track) -> Vec<Sent> {
    let mut sent = steady(chunks);
    if first == Out {
        sent.chunks_mut(2).for_each(|tick| tick.swap(0, 1));
    }
    sent
}

#[test]
fn a_step_ahead_by_less_than_the_wait_does_not_starve_the_other_track() {
    // The stepping track's chunk first in each tick: had the step been
    // taken for a gap, it would lead by the step and a chunk, more than
    // the wait, and the other track's chunks would come too late.
    for (track, ms) in [(In, 55), (In, 60), (Out, 55), (Out, 60)] {
        let mut sent = steady_first(60, track);
        step(&mut sent, track, 30, ms);
        let out = play(sent);
        assert_eq!(out.steps, [(track, 30, ms * 8)], "{track} {ms}");
        let mut offsets = [0, 0];
        offsets[track.index()] = -i128::from(ms);
        assert_eq!(out.offsets_ms, offsets, "{track} {ms}");
        assert_eq!(out.channels[0], whole(In, 60, 0..0), "{track} {ms}");
        assert_eq!(out.channels[1], whole(Out, 60, 0..0), "{track} {ms}");
        assert_eq!((out.lost, out.too_late), ([0, 0], 0), "{track} {ms}");
    }
    // A lead of the step and a chunk within the wait is a gap: two chunks.
    let mut sent = steady_first(60, In);
    step(&mut sent, In, 30, 40);
    let out = play(sent);
    assert_eq!(out.steps, []);
    let mut inbound = whole(In, 30, 0..0);
    inbound.extend([S; 320]);
    inbound.extend(&whole(In, 60, 0..0)[30 * 160..]);
    assert_eq!(out.channels[0], inbound);
    assert_eq!(out.channels[1][..60 * 160], whole(Out, 60, 0..0));
    assert_eq!((out.lost[0], out.too_late), (2, 0));
}

#[test]
fn with_a_short_wait_a_loss_arriving_early_is_still_a_gap() {
    // track-wait 20 ms: one chunk. The chunk after the loss comes 5 ms
    // early: no room left for a step below the wait, but jitter is no step.
    let mut sent = steady(60);
    sent.retain(|s| !(s.track == In && (30..33).contains(&s.n)));
    chunk(&mut sent, In, 33).at -= 5;
    let out = play_with(Aligner::new(true, true, 160), sent);
    assert_eq!(out.steps, []);
    assert_eq!(out.channels[0], whole(In, 60, 30..33));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([3, 0], 0));
}

#[test]
fn a_late_pair_in_filled_silence_is_late_audio_not_a_step() {
    // Chunks 6 and 7 come after 8 (no reorder window): their time was
    // filled as a gap; they are dropped, the track stays where it was.
    let mut sent = steady(60);
    for (n, at) in [(6, 161), (7, 162)] {
        chunk(&mut sent, In, n).at = at;
    }
    let out = play(sent);
    assert_eq!(out.steps, []);
    assert_eq!(out.offsets_ms, [0, 0]);
    assert_eq!(out.channels[0], whole(In, 60, 6..8));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([2, 0], 2));
}

#[test]
fn chunks_sent_twice_are_dropped_by_their_bytes_not_taken_for_a_step() {
    // Chunks 28 and 29 sent again after 29: both equal what the track
    // holds there.
    let mut sent = steady(60);
    for (n, at) in [(28, 581), (29, 582)] {
        sent.push(Sent {
            at,
            track: In,
            n,
            ts: 20 * n,
        });
    }
    let out = play(sent);
    assert_eq!(out.steps, []);
    assert_eq!(out.offsets_ms, [0, 0]);
    assert_eq!(out.channels[0], whole(In, 60, 0..0));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([0, 0], 2));
}

#[test]
fn a_step_back_by_a_chunk_or_so_is_told_by_the_bytes() {
    // The first chunk after it lies where the track had other audio.
    for ms in [20, 30] {
        let mut sent = steady(60);
        step(&mut sent, In, 30, -ms);
        let out = play(sent);
        assert_eq!(out.steps, [(In, 31, -ms * 8)], "{ms}");
        assert_eq!(out.offsets_ms, [ms.into(), 0], "{ms}");
        assert_eq!(out.channels[0], whole(In, 60, 0..0), "{ms}");
        assert_eq!(out.channels[1], whole(Out, 60, 0..0), "{ms}");
        assert_eq!((out.lost, out.too_late), ([0, 0], 0), "{ms}");
    }
}

#[test]
fn a_step_back_in_the_track_behind_is_measured_from_its_audio() {
    // The outbound track arrives 50 ms behind the inbound one: its chunk
    // kept back for a tick does not let the wait fill its channel.
    let mut sent = steady(60);
    sent.iter_mut()
        .filter(|s| s.track == Out)
        .for_each(|s| s.at += 50);
    step(&mut sent, Out, 30, -400);
    let out = play(sent);
    assert_eq!(out.steps, [(Out, 31, -3200)]);
    assert_eq!(out.offsets_ms, [0, 400]);
    assert_eq!(out.channels[0], whole(In, 60, 0..0));
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
    assert_eq!((out.lost, out.too_late), ([0, 0], 0));
}

#[test]
fn a_late_burst_then_a_loss_without_the_other_track_is_no_step() {
    // The outbound track never starts; inbound chunks 27–29 come 80 ms
    // late in a burst with 33, and 30–32 never come.
    let mut sent = steady(60);
    sent.retain(|s| s.track == In && !(30..33).contains(&s.n));
    for n in 27..30 {
        chunk(&mut sent, In, n).at = 659;
    }
    for (inbound, outbound) in [(true, true), (true, false)] {
        let sent = sent.iter().map(|s| Sent { ..*s }).collect();
        let out = play_with(Aligner::new(inbound, outbound, TRACK_WAIT), sent);
        assert_eq!(out.steps, [], "{outbound}");
        assert_eq!(out.channels[0], whole(In, 60, 30..33), "{outbound}");
        assert_eq!(out.channels[1], [S; 60 * 160], "{outbound}");
        assert_eq!((out.lost, out.too_late), ([3, 0], 0), "{outbound}");
    }
}

#[test]
fn steps_ahead_taken_for_gaps_do_not_add_up_to_a_lead_past_the_wait() {
    // Both tracks in real time; the inbound timestamps step 30 ms ahead
    // twice. The first is below the wait less a chunk: a gap, and the
    // track runs 30 ms ahead of real time. The second, 60 ms ahead of real
    // time in all, is a step: taken for a gap too, the inbound track would
    // lead by 60 ms and a chunk, and the outbound chunks would come after
    // the wait gave up their time, for the rest of the call.
    let mut sent = steady(80);
    step(&mut sent, In, 20, 30);
    step(&mut sent, In, 40, 30);
    let out = play(sent);
    assert_eq!(out.steps, [(In, 40, 240)]);
    let mut inbound = whole(In, 20, 0..0);
    inbound.extend([S; 240]);
    inbound.extend(&whole(In, 80, 0..0)[20 * 160..]);
    assert_eq!(out.channels[0], inbound);
    // The outbound track whole (at the end, padded to the inbound one).
    assert_eq!(out.channels[1][..80 * 160], whole(Out, 80, 0..0));
    assert_eq!(out.channels[1][80 * 160..], [S; 240]);
    assert_eq!((out.lost, out.too_late), ([2, 2], 0));
}

#[test]
fn a_fall_in_delay_at_a_loss_reads_as_a_small_step_ahead_for_the_next() {
    // One track (the other not carried: nothing tells a fall in the
    // network's delay from a step). Chunks 20–22 are lost while the delay,
    // 60 ms, falls to 30 ms: chunk 23 comes 30 ms before the best of the
    // last 2 s, as after a 30 ms step ahead: a gap, the track taken for 30
    // ms early (README "Steps": a smaller step ahead). The delay rises to
    // 45 ms (chunk 100 on) and falls to 30 ms again while chunks 200–202
    // are lost: 15 ms early, which alone is a loss, but with the 30 ms
    // before, more than the wait less a chunk ahead: a step (the lost
    // chunks not counted, the track 60 ms off its timestamps from there).
    let call = |first_delay: u64, outbound: bool| {
        let mut sent = steady(300);
        let lost = |n| (20..23).contains(&n) || (200..203).contains(&n);
        sent.retain(|s| if s.track == In { !lost(s.n) } else { outbound });
        // (One socket: nothing overtakes what was sent before it.)
        let mut last = 0;
        for s in &mut sent {
            s.at += match s.n {
                ..23 => first_delay,
                100..203 => 45,
                _ => 30,
            };
            s.at = s.at.max(last);
            last = s.at;
        }
        play_with(Aligner::new(true, outbound, TRACK_WAIT), sent)
    };
    let out = call(60, false);
    assert_eq!(out.steps, [(In, 203, 480)]);
    assert_eq!(out.lost, [3, 0]);
    let mut inbound = whole(In, 200, 20..23);
    inbound.extend(&whole(In, 300, 0..0)[203 * 160..]);
    assert_eq!(out.channels[0], inbound);
    // Without the first fall, the second loss is one; and so it is with
    // the other track's chunks coming in step (their delay falls too).
    for (first_delay, outbound) in [(30, false), (60, true)] {
        let out = call(first_delay, outbound);
        assert_eq!(out.steps, [], "{outbound}");
        assert_eq!(out.lost, [6, 0], "{outbound}");
        let mut inbound = whole(In, 300, 20..23);
        inbound[200 * 160..203 * 160].fill(S);
        assert_eq!(out.channels[0], inbound, "{outbound}");
    }
}

/// A day into a call (a pause in both tracks, the sender's clock 0 or
/// 100 ppm fast), one track's timestamps jump 30 s beyond the time that
/// passed since its chunk before: garbage, ignored, as at the start of a
/// call (before, the bound had grown by 43 s in a day); 9 s on is believed.
#[test]
fn a_jump_30_s_ahead_a_day_in_is_garbage_at_any_sender_clock() {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    for (ppm, jump, garbage) in [(0, 30_000, true), (100, 30_000, true), (100, 9_000, false)] {
        let (mut a, t0) = both();
        let day = DAY_MS + DAY_MS * ppm / 1_000_000;
        for (n, ms) in [(0, 0), (1, 20), (2, day), (3, day + 20)] {
            let at = t0 + Duration::from_millis(if n < 2 { ms } else { DAY_MS + ms - day });
            for track in Track::ALL {
                assert_eq!(a.push(track, ms, &[1; 160], at).ignored_ahead, None);
            }
            while let Some(frame) = a.next_frame() {
                a.consume(frame.samples);
            }
        }
        let at = t0 + Duration::from_millis(DAY_MS + 40);
        let placed = a.push(Out, day + 40 + jump, &[2; 160], at);
        assert_eq!(
            placed.ignored_ahead.is_some(),
            garbage,
            "{ppm} ppm, {jump} ms"
        );
    }
}

#[test]
fn both_tracks_stepping_at_once_stay_aligned_after_a_loss_in_one() {
    // Outbound's chunk 29 is lost; both tracks' timestamps step 400 ms
    // ahead at chunk 30. Measured from its own last audio, outbound would
    // go on a chunk early for good; by inbound's step, it stays aligned.
    let mut sent = steady(60);
    sent.retain(|s| !(s.track == Out && s.n == 29));
    step(&mut sent, In, 30, 400);
    step(&mut sent, Out, 30, 400);
    let out = play(sent);
    assert_eq!(out.steps, [(In, 30, 3200), (Out, 30, 3200)]);
    assert_eq!(out.offsets_ms, [-400, -400]);
    assert_eq!(out.channels[0], whole(In, 60, 0..0));
    assert_eq!(out.channels[1], whole(Out, 60, 29..30));
    assert_eq!((out.lost, out.too_late), ([0, 1], 0));

    // Steps of each track by amounts apart (within the wait of each
    // other's place, they would be one step): each measured anew.
    let mut sent = steady(60);
    step(&mut sent, In, 30, 400);
    step(&mut sent, Out, 30, 1000);
    let out = play(sent);
    assert_eq!(out.steps, [(In, 30, 3200), (Out, 30, 8000)]);
    assert_eq!(out.channels[1], whole(Out, 60, 0..0));
}

#[test]
fn a_later_independent_step_of_the_other_track_is_not_taken_as_joint() {
    // Inbound's timestamps step 1 s ahead at chunk 30. Outbound's chunks
    // 30..40 are lost (200 ms); from chunk 40 on its timestamps are 800 ms
    // ahead (its own step: 1 s less the 200 ms that passed). Taken as
    // inbound's step, outbound's chunks land 200 ms back, in silence its
    // wait already gave up: every one of them is too late, for good.
    let mut sent = steady(60);
    sent.retain(|s| !(s.track == Out && (30..40).contains(&s.n)));
    step(&mut sent, In, 30, 1000);
    step(&mut sent, Out, 40, 800);
    let out = play(sent);
    // Outbound's audio after the loss comes out (measured anew on its own).
    for n in [40, 50, 59] {
        let bytes = [fill_of(Out, n); 160];
        assert!(
            out.channels[1].windows(160).any(|w| w == bytes),
            "outbound's chunk {n} missing: steps {:?}, too late {}",
            out.steps,
            out.too_late
        );
    }
    assert_eq!(out.too_late, 0);
}

#[test]
fn a_joint_step_whose_chunk_the_wait_gave_up_keeps_the_tracks_aligned() {
    // Both tracks' timestamps step 400 ms ahead at chunk 30; chunks 30..34
    // of both come in a burst 60 ms late (inbound's first): outbound's
    // chunk 30 is 1 ms past the wait (its time went out as silence, as
    // without a step: too late). The step is still both tracks' at once:
    // outbound must take inbound's, not part from it by a chunk for good.
    let mut sent = steady(60);
    step(&mut sent, In, 30, 400);
    step(&mut sent, Out, 30, 400);
    for s in sent.iter_mut().filter(|s| (30..34).contains(&s.n)) {
        s.at = if s.track == In { 660 } else { 661 };
    }
    let out = play(sent);
    assert_eq!(out.offsets_ms, [-400, -400], "steps {:?}", out.steps);
    assert_eq!(out.channels[0], whole(In, 60, 0..0));
    assert_eq!(out.channels[1], whole(Out, 60, 30..31));
}
