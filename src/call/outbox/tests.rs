//! The outbox's unit tests: pacing, pausing, clear's report, marks.

use super::*;

const MS: u64 = 1_000_000;

fn mark(name: &str) -> Outgoing {
    Outgoing::Mark {
        name: name.to_owned(),
        text: name.to_owned(),
    }
}

fn media(n: u32, running_time: u64) -> Outgoing {
    Outgoing::Media {
        text: format!("m{n}@{}", running_time / MS),
        bytes: 160,
        duration: 20 * MS,
        padding: 0,
        running_time,
    }
}

/// Pushes `frames` frames of 20 ms from running time `from`.
fn push_frames(o: &mut Outbox, frames: u32, from: u64) {
    for i in 0..frames {
        o.push(media(i, from + i as u64 * 20 * MS));
    }
}

fn due(o: &mut Outbox, now: u64) -> (Vec<String>, Option<u64>) {
    let mut out = Vec::new();
    let next = o.due(now, &mut out, |_, _| {});
    (out, next)
}

#[test]
fn frames_go_out_while_twilio_holds_less_than_the_lead() {
    let mut o = Outbox::new(100 * MS);
    push_frames(&mut o, 50, 0);
    assert_eq!(o.pending_audio(), 1000 * MS);
    let (out, next) = due(&mut o, 0);
    // 0, 20, 40, 60, 80 ms queued: the fifth brings it to 100 ms.
    assert_eq!(out.len(), 5);
    assert_eq!(next, Some(1));
    assert_eq!(o.unplayed(0), 100 * MS);
    assert_eq!(o.pending_audio(), 900 * MS);
    // 10 ms later Twilio holds 90 ms: one more frame.
    let (out, next) = due(&mut o, 10 * MS);
    assert_eq!(out, ["m5@100"]);
    assert_eq!(next, Some(20 * MS + 1));
    // Nothing is due before then.
    assert!(due(&mut o, 20 * MS).0.is_empty());
    assert_eq!(due(&mut o, 20 * MS + 1).0.len(), 1);
}

#[test]
fn paused_media_waits_and_goes_on_from_where_it_was() {
    let mut o = Outbox::new(100 * MS);
    push_frames(&mut o, 10, 0);
    assert_eq!(due(&mut o, 0).0.len(), 5);
    o.set_paused(true);
    // Nothing more, and no time to look again: the pause ends it.
    assert_eq!(due(&mut o, 500 * MS), (vec![], None));
    // A clear goes out at once; what it found: all of it written played.
    o.push(mark("before"));
    let cleared = o.clear(600 * MS, "clear".into());
    assert_eq!(cleared.played, Some(100 * MS));
    assert_eq!(cleared.unwritten, 100 * MS);
    assert_eq!(due(&mut o, 600 * MS).0, ["before", "clear"]);
    // Media after it waits for the pause to end, then goes on.
    push_frames(&mut o, 2, 200 * MS);
    o.push(mark("after"));
    assert_eq!(due(&mut o, 700 * MS), (vec![], None));
    o.set_paused(false);
    assert_eq!(due(&mut o, 700 * MS).0, ["m0@200", "m1@220", "after"]);
}

#[test]
fn a_real_time_stream_goes_out_at_once() {
    let mut o = Outbox::new(100 * MS);
    for i in 0..100u64 {
        o.push(media(i as u32, i * 20 * MS));
        let (out, next) = due(&mut o, i * 20 * MS);
        assert_eq!(out.len(), 1, "frame {i}");
        assert_eq!(next, None);
        assert_eq!(o.unplayed(i * 20 * MS), 20 * MS);
    }
}

#[test]
fn marks_and_text_keep_their_place_behind_media() {
    let mut o = Outbox::new(40 * MS);
    push_frames(&mut o, 3, 0);
    o.push(mark("mark"));
    o.push(Outgoing::Text("text".into()));
    let (out, _) = due(&mut o, 0);
    assert_eq!(out, ["m0@0", "m1@20"]);
    let (out, next) = due(&mut o, 40 * MS);
    assert_eq!(out, ["m2@40", "mark", "text"]);
    assert_eq!(next, None);
}

#[test]
fn drop_pending_drops_only_what_is_not_written() {
    let mut o = Outbox::new(40 * MS);
    push_frames(&mut o, 3, 0);
    o.push(mark("mark"));
    let (out, _) = due(&mut o, 0);
    assert_eq!(out, ["m0@0", "m1@20"]);
    assert_eq!(o.marks_written(), 0);
    assert_eq!(
        o.drop_pending(),
        Unsent {
            messages: 2,
            media: 1,
            audio: 20 * MS,
            text_bytes: "m2@40".len() + "mark".len(),
        }
    );
    assert_eq!(o.pending_audio(), 0);
    assert_eq!(due(&mut o, 100 * MS), (vec![], None));
    // What was written is still modelled; the mark dropped was never sent.
    assert_eq!(o.unplayed(0), 40 * MS);
    assert_eq!(o.marks_written(), 0);
}

#[test]
fn clear_reports_what_was_heard_and_dropped() {
    let mut o = Outbox::new(100 * MS);
    // A prompt from running time 5 s, 1 s long.
    push_frames(&mut o, 50, 5000 * MS);
    let mut now = 0;
    while now < 330 * MS {
        due(&mut o, now);
        now += 10 * MS;
    }
    // At 330 ms: 330 ms played, 100 ms (minus what is under way) held.
    let cleared = o.clear(330 * MS, "clear".into());
    assert_eq!(cleared.played, Some(5330 * MS));
    assert_eq!(cleared.dropped, 1000 * MS - 330 * MS);
    assert_eq!(cleared.unwritten, 1000 * MS - 420 * MS);
    // 29 frames of text "m<i>@<ms>" were dropped unwritten.
    let texts: usize = (21..50u64)
        .map(|i| format!("m{i}@{}", 5000 + i * 20).len())
        .sum();
    assert_eq!(cleared.unwritten_bytes, texts);
    assert_eq!(o.pending_audio(), 0);
    assert_eq!(o.unplayed(330 * MS), 0);
    let (out, next) = due(&mut o, 330 * MS);
    assert_eq!(out, ["clear"]);
    assert_eq!(next, None);
    // The next prompt, from 9 s, is written at once and reported from there.
    push_frames(&mut o, 10, 9000 * MS);
    assert_eq!(due(&mut o, 400 * MS).0.len(), 5);
    let cleared = o.clear(450 * MS, "clear".into());
    assert_eq!(cleared.played, Some(9050 * MS));
    assert_eq!(cleared.dropped, 150 * MS);
}

/// Frames of 20 ms holding 5 ms of audio, the rest a provider's padding:
/// heard up to the audio's end within a frame, and only audio dropped.
#[test]
fn padding_is_neither_heard_nor_dropped_audio() {
    let mut o = Outbox::new(20 * MS);
    for i in 0..10 {
        let mut m = media(i, i as u64 * 5 * MS);
        if let Outgoing::Media { padding, .. } = &mut m {
            *padding = 15 * MS;
        }
        o.push(m);
    }
    assert_eq!(o.pending_audio(), 50 * MS);
    // Written: the first frame; 12 ms into it, 2 ms of padding heard.
    assert_eq!(due(&mut o, 0).0.len(), 1);
    let cleared = o.clear(12 * MS, "clear".into());
    assert_eq!(cleared.played, Some(5 * MS));
    assert_eq!(cleared.dropped, 45 * MS);
    assert_eq!(cleared.unwritten, 45 * MS);
}

#[test]
fn everything_heard_reports_the_end_of_the_last_frame() {
    let mut o = Outbox::new(100 * MS);
    push_frames(&mut o, 3, 700 * MS);
    due(&mut o, 0);
    let cleared = o.clear(500 * MS, "clear".into());
    assert_eq!(cleared.played, Some(760 * MS));
    assert_eq!(cleared.dropped, 0);
    let mut fresh = Outbox::new(100 * MS);
    assert_eq!(fresh.clear(0, "c".into()).played, None);
}

/// 300 ms of audio written at 0, with the mark "a" after 100 ms and "b"
/// after 200 ms.
/// Five marks 100 ms apart, over 500 ms of frames written at once.
fn marks_every_100_ms(o: &mut Outbox) {
    for k in 0..5 {
        push_frames(o, 5, k * 100 * MS);
        o.push(mark(&format!("m{k}")));
    }
    due(o, 0);
    assert_eq!(o.playout_end(), 500 * MS);
}

#[test]
fn echoes_slower_than_the_round_trip_move_the_model_once_three_agree() {
    let mut o = Outbox::new(1000 * MS);
    marks_every_100_ms(&mut o);
    // "m0" comes back 30 ms after the model reached it: the round trip.
    o.mark_echoed("m0", 130 * MS);
    // The next three take 80 ms: Twilio is 50 ms behind, told three times.
    o.mark_echoed("m1", 280 * MS);
    assert_eq!(o.playout_end(), 500 * MS, "one echo");
    o.mark_echoed("m2", 380 * MS);
    assert_eq!(o.playout_end(), 500 * MS, "two echoes");
    o.mark_echoed("m3", 480 * MS);
    assert_eq!(o.playout_end(), 550 * MS);
    let cleared = o.clear(500 * MS, "clear".into());
    assert_eq!(cleared.played, Some(450 * MS));
    assert_eq!(cleared.dropped, 50 * MS);
}

#[test]
fn the_model_moves_by_the_least_the_last_three_echoes_say() {
    let mut o = Outbox::new(1000 * MS);
    marks_every_100_ms(&mut o);
    o.mark_echoed("m0", 130 * MS);
    // 120, 40 and 70 ms late: Twilio is at least 40 ms behind.
    o.mark_echoed("m1", 350 * MS);
    o.mark_echoed("m2", 370 * MS);
    o.mark_echoed("m3", 500 * MS);
    assert_eq!(o.playout_end(), 540 * MS);
    // Late, then on time: held up on the way back, the model goes back.
    o.mark_echoed("m4", 530 * MS);
    assert_eq!(o.playout_end(), 500 * MS);
    // An early echo never moves it earlier.
    let mut o = Outbox::new(1000 * MS);
    push_frames(&mut o, 5, 0);
    o.push(mark("end"));
    due(&mut o, 0);
    o.mark_echoed("end", 50 * MS);
    assert_eq!(o.playout_end(), 100 * MS);
}

#[test]
fn echoes_a_round_trip_late_leave_the_model_and_the_pacing_alone() {
    // Every echo comes back 150 ms after Twilio played its mark, the
    // lead is 100 ms: the writer goes on at the pace of real time.
    let mut o = Outbox::new(100 * MS);
    let mut now = 0;
    let mut written = 0;
    for k in 0..50u64 {
        push_frames(&mut o, 1, k * 20 * MS);
        o.push(mark(&format!("m{k}")));
    }
    let mut echoes = VecDeque::new();
    while now <= 1000 * MS {
        let (out, _) = due(&mut o, now);
        for text in out {
            match text.strip_prefix('m').and_then(|t| t.split_once('@')) {
                Some(_) => written += 1,
                // A mark: echoed once what was written before it played.
                None => echoes.push_back((text, (written * 20 * MS).max(now) + 150 * MS)),
            }
        }
        while echoes.front().is_some_and(|(_, at)| *at <= now) {
            let (name, _) = echoes.pop_front().unwrap();
            o.mark_echoed(&name, now);
        }
        // Twilio never holds less than a frame: no gap.
        assert!(
            written * 20 * MS >= now,
            "at {now} ns only {written} frames"
        );
        now += MS;
    }
    assert!(o.marks_echoed() > 40);
}

#[test]
fn echoes_are_matched_by_name() {
    let mut o = Outbox::new(1000 * MS);
    marks_every_100_ms(&mut o);
    // A stranger's name and a lost echo of "m0": "m1" (the round trip,
    // 30 ms) accounts for both marks, and the next three say Twilio is
    // 50 ms behind.
    o.mark_echoed("stranger", 100 * MS);
    assert_eq!(o.marks_echoed(), 0);
    o.mark_echoed("m1", 230 * MS);
    assert_eq!(o.marks_echoed(), 2);
    for (k, at) in [(2, 380), (3, 480), (4, 580)] {
        o.mark_echoed(&format!("m{k}"), at * MS);
    }
    assert_eq!(o.marks_echoed(), 5);
    assert_eq!(o.playout_end(), 550 * MS);
    // "m0" comes late: forgotten already, it changes nothing.
    o.mark_echoed("m0", 600 * MS);
    assert_eq!(o.playout_end(), 550 * MS);
    assert_eq!(o.marks_echoed(), 5);
}

#[test]
fn a_peer_that_never_echoes_keeps_a_bounded_list() {
    let mut o = Outbox::new(1000 * MS);
    let n = MAX_AWAITED_MARKS as u64 + 10;
    for i in 0..n {
        o.push(mark(&format!("m{i}")));
    }
    due(&mut o, 0);
    assert_eq!(o.model.marks.len(), MAX_AWAITED_MARKS);
    // The ten oldest are forgotten, as echoed.
    assert_eq!(o.marks_echoed(), 10);
    o.mark_echoed("m9", MS);
    assert_eq!(o.marks_echoed(), 10, "forgotten already");
    o.mark_echoed(&format!("m{}", n - 1), MS);
    assert_eq!(o.marks_echoed(), n);
    assert!(o.model.marks.is_empty());
}

#[test]
fn marks_a_clear_flushes_correct_nothing() {
    let mut o = Outbox::new(40 * MS);
    push_frames(&mut o, 2, 0);
    o.push(mark("written"));
    push_frames(&mut o, 5, 40 * MS);
    o.push(mark("waiting"));
    push_frames(&mut o, 1, 140 * MS);
    let (out, _) = due(&mut o, 0);
    assert_eq!(out, ["m0@0", "m1@20", "written"]);
    assert_eq!(o.marks_written(), 1);
    o.clear(10 * MS, "clear".into());
    assert_eq!(o.marks_written(), 1);
    let (out, _) = due(&mut o, 10 * MS);
    // The waiting mark goes out before the clear, its media does not; it
    // is a mark written (`marks-sent`), the clear is not.
    assert_eq!(out, ["waiting", "clear"]);
    assert_eq!(o.marks_written(), 2);
    // Both echoes arrive at once; the model stays empty.
    o.mark_echoed("written", 11 * MS);
    o.mark_echoed("waiting", 11 * MS);
    assert_eq!(o.unplayed(11 * MS), 0);
    assert_eq!(o.marks_echoed(), 2);
    push_frames(&mut o, 1, 500 * MS);
    due(&mut o, 20 * MS);
    assert_eq!(o.playout_end(), 40 * MS);
}

#[test]
fn underruns_restart_the_queue_from_the_next_write() {
    let mut o = Outbox::new(100 * MS);
    push_frames(&mut o, 1, 0);
    due(&mut o, 0);
    push_frames(&mut o, 1, 20 * MS);
    due(&mut o, 500 * MS);
    assert_eq!(o.playout_end(), 520 * MS);
    let cleared = o.clear(510 * MS, "c".into());
    assert_eq!(cleared.played, Some(30 * MS));
}

/// A call on a path to Twilio and back: frames reach Twilio `there(t)`
/// after they are written at `t` (in order) and play from then; the
/// echo of a mark comes back `back(k)` after Twilio reached it (in order:
/// one TCP stream). A mark follows every `every`th of 600 frames of 20 ms.
/// What the caller heard as gaps (after the first frame), and the largest
/// error of what a clear would report (the model's playout against
/// Twilio's, the clear on its way as long as a frame) from `from` on.
fn over_a_path(
    lead: u64,
    every: u64,
    there: impl Fn(u64) -> u64,
    back: impl Fn(u64) -> u64,
    from: u64,
) -> (u64, u64) {
    let mut o = Outbox::new(lead);
    for k in 0..600u64 {
        o.push(media(k as u32, k * 20 * MS));
        if k % every == every - 1 {
            o.push(mark(&format!("k{k}")));
        }
    }
    let (mut on_the_way, mut echoes) = (VecDeque::new(), VecDeque::new());
    let (mut twilio_end, mut gaps, mut error, mut marks) = (0u64, 0, 0, 0);
    let mut now = 0;
    while now < 11_000 * MS {
        for text in due(&mut o, now).0 {
            let last = on_the_way.back().map_or(0, |(_, at)| *at);
            on_the_way.push_back((text, (now + there(now)).max(last)));
        }
        while on_the_way.front().is_some_and(|(_, at)| *at <= now) {
            let (text, _) = on_the_way.pop_front().unwrap();
            if text.contains('@') {
                if twilio_end > 0 && twilio_end < now {
                    gaps += now - twilio_end;
                }
                twilio_end = twilio_end.max(now) + 20 * MS;
            } else {
                let last = echoes.back().map_or(0, |(_, at)| *at);
                echoes.push_back((text, (twilio_end.max(now) + back(marks)).max(last)));
                marks += 1;
            }
        }
        while echoes.front().is_some_and(|(_, at)| *at <= now) {
            o.mark_echoed(&echoes.pop_front().unwrap().0, now);
        }
        if now >= from && now < 10_000 * MS {
            let twilio = twilio_end.saturating_sub(there(now));
            error = error.max(o.playout_end().abs_diff(twilio));
        }
        now += MS;
    }
    (gaps / MS, error / MS)
}

#[test]
fn jitter_on_the_way_back_neither_starves_twilio_nor_ratchets_the_model() {
    // Echoes 130 or 170 ms late in turn, a mark every 200 ms or every
    // frame: the round trip is 130 ms, the 40 more of every other echo
    // never agreed on by three in a row.
    for every in [10, 1] {
        let jitter = |k: u64| {
            if k.is_multiple_of(2) {
                130 * MS
            } else {
                170 * MS
            }
        };
        let (gaps, error) = over_a_path(100 * MS, every, |_| 0, jitter, 0);
        assert_eq!(gaps, 0, "a mark every {every} frames");
        assert!(error <= 40, "a mark every {every} frames: {error} ms off");
    }
}

#[test]
fn an_echo_held_up_on_the_way_back_moves_nothing() {
    // Every seventh echo 250 ms later than the round trip of 150 ms (and
    // the next one behind it on the way, 50 ms late): not three in a row.
    let spikes = |k: u64| if k % 7 == 3 { 400 * MS } else { 150 * MS };
    let (gaps, error) = over_a_path(100 * MS, 10, |_| 0, spikes, 0);
    assert_eq!(gaps, 0);
    assert!(error <= 20, "{error} ms off");
}

#[test]
fn a_stall_on_the_way_there_is_corrected() {
    // 30 ms each way; from 2 s to 2.3 s, frames wait on the way and reach
    // Twilio together at 2.33 s: it is behind the model from then on.
    let stall = |t: u64| {
        if (2000 * MS..2300 * MS).contains(&t) {
            2330 * MS - t
        } else {
            30 * MS
        }
    };
    // With no echo the model would stay ahead of Twilio.
    let (_, error) = over_a_path(100 * MS, 10, stall, |_| 100_000 * MS, 3000 * MS);
    assert!(error >= 150, "{error} ms off with no echo");
    let (_, error) = over_a_path(100 * MS, 10, stall, |_| 30 * MS, 3000 * MS);
    assert!(error <= 40, "{error} ms off after the stall");
}

/// Two clears in a row, the first before Twilio played anything of what
/// was written: the second reports the same running time as the first
/// (audio was sent; NONE would say none ever was), here as after a clear
/// that found part of its prompt played.
#[test]
fn a_second_clear_in_a_row_reports_what_the_first_did() {
    let mut o = Outbox::new(100 * MS);
    push_frames(&mut o, 5, 700 * MS);
    due(&mut o, 0);
    let first = o.clear(0, "clear".into());
    assert_eq!(first.played, Some(700 * MS));
    assert_eq!(first.dropped, 100 * MS);
    let second = o.clear(1, "clear".into());
    assert_eq!(second.played, Some(700 * MS));
    assert_eq!(second.dropped, 0);
    // The next prompt is reported from its own start.
    push_frames(&mut o, 5, 9000 * MS);
    due(&mut o, 2);
    assert_eq!(o.clear(2 + 30 * MS, "clear".into()).played, Some(9030 * MS));
}

/// Each echo held up on its way back by 0 to 300 ms at random (in order,
/// as on one TCP stream), the frames' way there steady: a late echo says
/// nothing of what Twilio holds, so the pacing never lets Twilio run dry.
#[test]
fn random_jitter_on_the_way_back_never_starves_twilio() {
    for every in [10, 5, 1] {
        for seed in 1..=3u64 {
            let jitter = |k: u64| {
                let x = (k + 1)
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(seed.wrapping_mul(1_442_695_040_888_963_407));
                50 * MS + (x >> 33) % (300 * MS)
            };
            let (gaps, _) = over_a_path(100 * MS, every, |_| 30 * MS, jitter, 0);
            assert_eq!(gaps, 0, "a mark every {every} frames, seed {seed}");
        }
    }
}
