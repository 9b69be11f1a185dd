//! One call's quality as the src sees it: per track jitter and late chunks
//! (fed every chunk it outputs), chunks received and lost, and the figures
//! a report shows (loss %, jitter, late chunks, MOS) over the call and over
//! the interval since the last report. Reports fall due by stream time (the
//! chunks' `media.timestamp`), so a recorded call reports the same way
//! every time. Plain numbers in; properties and messages are the src's.

use std::time::{Duration, Instant};

use super::Jitter;
use super::emodel::{self, Conditions};

/// A change of transit (arrival against timestamp) this large is no jitter
/// but a jump of the timestamps: 10 s.
const IMPLAUSIBLE_NS: i128 = 10_000_000_000;

/// The figures of a stretch of the call (the whole call, or one interval).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Figures {
    /// Chunks of the measured track(s) received and lost.
    pub received: u64,
    pub lost: u64,
    /// Lost in percent of received + lost.
    pub loss_percent: f64,
    /// RFC 3550 jitter in ms: the mean of the running estimate after each
    /// chunk of the stretch (the larger track's for two).
    pub jitter_ms: f64,
    /// Chunks later than the reported latency allows.
    pub late: u64,
    /// The E-model's MOS for the stretch, 1.0–4.5.
    pub mos: f64,
}

/// Running sums a stretch's figures come from.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    received: u64,
    lost: u64,
    late: u64,
    /// Per track: the sum of the jitter estimates after each chunk (ns).
    jitter_sum: [f64; 2],
    chunks: [u64; 2],
}

/// See the module documentation. Tracks are indexed 0 (inbound) and 1
/// (outbound).
#[derive(Debug, Clone)]
pub struct Meter {
    jitter: [Jitter; 2],
    /// Arrival times count from the first chunk's.
    base: Option<Instant>,
    call: Sums,
    /// `call` as the current interval began.
    interval_start: Sums,
    /// Report every this many ms of stream time (0: never).
    interval_ms: u64,
    /// The stream time the next report falls due at, from the first chunk.
    next_report_ms: Option<u64>,
    /// Lost chunks counted outside (by the element), as last told.
    lost: [u64; 2],
    /// Per track: the transit of the last chunk measured, and of one that
    /// jumped from it (if the next agrees, the timestamps moved: rebase).
    last_transit: [Option<i128>; 2],
    jumped: [Option<i128>; 2],
    /// The src's drift correction of its timestamps (ns), as last told.
    correction_ns: i64,
    /// Per track: ms added to its timestamps to undo the steps in them the
    /// src measured its track anew at (see [`Meter::stepped`]).
    moved_ms: [i64; 2],
    /// Per track: a chunk kept back (arrival, timestamp, samples) until the
    /// next tells whether the timestamps stepped (see [`Meter::hold`]).
    held: [Option<(Instant, u64, u64)>; 2],
}

impl Default for Meter {
    fn default() -> Self {
        Meter::new(Duration::ZERO, 0)
    }
}

impl Meter {
    /// A meter judging lateness by `latency`, due to report every
    /// `interval_ms` of stream time (0: never).
    pub fn new(latency: Duration, interval_ms: u64) -> Meter {
        Meter {
            jitter: [Jitter::new(latency), Jitter::new(latency)],
            base: None,
            call: Sums::default(),
            interval_start: Sums::default(),
            interval_ms,
            next_report_ms: None,
            lost: [0; 2],
            last_transit: [None; 2],
            jumped: [None; 2],
            correction_ns: 0,
            moved_ms: [0; 2],
            held: [None; 2],
        }
    }

    /// Changes the latency later chunks are judged by.
    pub fn set_latency(&mut self, latency: Duration) {
        self.jitter.iter_mut().for_each(|j| j.set_latency(latency));
    }

    /// A chunk of `track` stamped `timestamp_ms`, `samples` long, arrived
    /// at `arrival`. Returns whether a report is now due: its end reaches
    /// the next report time.
    pub fn arrived(
        &mut self,
        track: usize,
        arrival: Instant,
        timestamp_ms: u64,
        samples: u64,
    ) -> bool {
        self.measure(track, arrival, timestamp_ms, samples, true)
    }

    /// [`arrived`](Self::arrived); with `received` false, for a chunk the
    /// element dropped whole (sent twice, or after its time was given up,
    /// and counted lost then): measured for jitter and lateness, not
    /// counted received.
    pub fn measure(
        &mut self,
        track: usize,
        arrival: Instant,
        timestamp_ms: u64,
        samples: u64,
        received: bool,
    ) -> bool {
        // On the track's measure before its steps: a step is no jump.
        let moved = i128::from(timestamp_ms) + i128::from(self.moved_ms[track]);
        let timestamp_ms = moved.clamp(0, u64::MAX.into()) as u64;
        let base = *self.base.get_or_insert(arrival);
        let since = arrival.saturating_duration_since(base);
        self.call.received += u64::from(received);
        let transit = since.as_nanos() as i128 - i128::from(timestamp_ms) * 1_000_000;
        let jitter = &mut self.jitter[track];
        if let Some(last) = self.last_transit[track]
            && (transit - last).abs() > IMPLAUSIBLE_NS
        {
            // A jump: once is a hostile or broken chunk, not measured;
            // twice alike, the timestamps moved on and are measured anew.
            match self.jumped[track].replace(transit) {
                Some(jumped) if (transit - jumped).abs() <= IMPLAUSIBLE_NS => {
                    jitter.rebase();
                    // Reports stay as far apart in stream time.
                    if let Some(next) = &mut self.next_report_ms {
                        let moved = (last - transit) / 1_000_000;
                        *next = (*next as i128 + moved).clamp(0, u64::MAX as i128) as u64;
                    }
                }
                _ => return false,
            }
        }
        self.jumped[track] = None;
        self.last_transit[track] = Some(transit);
        let late = jitter.arrived(since, timestamp_ms, self.correction_ns);
        self.call.late += u64::from(late);
        self.call.jitter_sum[track] += jitter.jitter_ms() * 1e6;
        self.call.chunks[track] += 1;
        if self.interval_ms == 0 {
            return false;
        }
        let end = timestamp_ms.saturating_add(samples / 8);
        let next = *self
            .next_report_ms
            .get_or_insert(timestamp_ms.saturating_add(self.interval_ms));
        end >= next
    }

    /// The src anchored its stream anew (after a pause): lateness is
    /// judged from the next chunk on, and the drift correction restarts.
    /// A chunk held is forgotten (the src dropped it with its aligner).
    pub fn reanchored(&mut self) {
        self.jitter.iter_mut().for_each(Jitter::rebase);
        self.correction_ns = 0;
        self.held = [None; 2];
    }

    /// The timestamps of `track` stepped by `by_ms` (negative: back) at the
    /// chunk measured next, and the src measured the track anew there (its
    /// audio follows on): that chunk and later ones are judged as placed,
    /// so the step is neither lateness nor jitter, and a chunk late after
    /// it still counts.
    pub fn stepped(&mut self, track: usize, by_ms: i64) {
        self.moved_ms[track] = self.moved_ms[track].saturating_sub(by_ms);
    }

    /// A chunk of `track` the src keeps back until the track's next one
    /// tells whether the timestamps stepped back there: measured at
    /// [`release`](Self::release), after any [`stepped`](Self::stepped)
    /// the next one brings. One still held is measured as dropped first.
    /// Returns whether a report is now due.
    pub fn hold(
        &mut self,
        track: usize,
        arrival: Instant,
        timestamp_ms: u64,
        samples: u64,
    ) -> bool {
        let due = self.release(track, false);
        self.held[track] = Some((arrival, timestamp_ms, samples));
        due
    }

    /// The chunk of `track` held, if any, was placed (`kept`) or dropped:
    /// measured now, on the track's measure as it is now. Returns whether
    /// a report is now due.
    pub fn release(&mut self, track: usize, kept: bool) -> bool {
        match self.held[track].take() {
            Some((arrival, timestamp_ms, samples)) => {
                self.measure(track, arrival, timestamp_ms, samples, kept)
            }
            None => false,
        }
    }

    /// How far the src moves its timestamps for the sender's clock drift
    /// (ns): lateness is judged where a syncing sink sees the chunks.
    pub fn set_correction(&mut self, ns: i64) {
        self.correction_ns = ns;
    }

    /// The lost chunks of `track` so far, as the element counts them.
    pub fn set_lost(&mut self, track: usize, lost: u64) {
        self.lost[track] = lost;
        self.call.lost = self.lost[0].saturating_add(self.lost[1]);
    }

    /// The current RFC 3550 jitter of `track`, in ms.
    pub fn jitter_ms(&self, track: usize) -> f64 {
        self.jitter[track].jitter_ms()
    }

    /// The call's figures so far, for a reported latency of `latency_ms`
    /// and lost chunks concealed or not.
    pub fn call(&self, latency_ms: f64, concealment: bool) -> Figures {
        figures(&self.call, &Sums::default(), latency_ms, concealment)
    }

    /// The figures since the last report (or the first chunk), starting
    /// a new interval; the next report falls due one interval on.
    pub fn report(&mut self, latency_ms: f64, concealment: bool) -> Figures {
        let figures = figures(&self.call, &self.interval_start, latency_ms, concealment);
        self.interval_start = self.call;
        if let Some(next) = &mut self.next_report_ms {
            *next = next.saturating_add(self.interval_ms);
        }
        figures
    }
}

/// The figures of `now` minus `since`.
fn figures(now: &Sums, since: &Sums, latency_ms: f64, concealment: bool) -> Figures {
    let received = now.received - since.received;
    let lost = now.lost.saturating_sub(since.lost);
    let total = received.saturating_add(lost);
    let loss_percent = if total == 0 {
        0.0
    } else {
        100.0 * lost as f64 / total as f64
    };
    let jitter_ms = (0..2)
        .map(|t| {
            let chunks = now.chunks[t] - since.chunks[t];
            if chunks == 0 {
                0.0
            } else {
                (now.jitter_sum[t] - since.jitter_sum[t]) / chunks as f64 / 1e6
            }
        })
        .fold(0.0, f64::max);
    let mos = emodel::mos(&Conditions {
        latency_ms,
        jitter_ms,
        loss_percent,
        concealment,
    });
    Figures {
        received,
        lost,
        loss_percent,
        jitter_ms,
        late: now.late - since.late,
        mos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` chunks of 20 ms on `track` from `ms`, arriving `delay(i)` ms
    /// after they are due (from `t0`); whether each made a report due.
    fn feed(
        meter: &mut Meter,
        t0: Instant,
        track: usize,
        ms: u64,
        n: u64,
        delay: impl Fn(u64) -> u64,
    ) -> Vec<bool> {
        (0..n)
            .map(|i| {
                let ts = ms + 20 * i;
                let at = t0 + Duration::from_millis(ts + delay(i));
                meter.arrived(track, at, ts, 160)
            })
            .collect()
    }

    #[test]
    fn after_a_reanchor_lateness_is_judged_from_the_next_chunk() {
        let t0 = Instant::now();
        let mut meter = Meter::new(Duration::from_millis(20), 0);
        feed(&mut meter, t0, 0, 0, 10, |_| 0);
        // A slow sender: the chunks come 50 ms after their timestamps say,
        // and the src's timestamps are corrected by as much.
        meter.set_correction(50_000_000);
        feed(&mut meter, t0, 0, 200, 10, |_| 50);
        assert_eq!(meter.call(20.0, true).late, 0);
        // A pause: the src anchors anew and its correction starts from 0,
        // where the sink now meets the chunks.
        meter.reanchored();
        meter.set_correction(0);
        feed(&mut meter, t0, 0, 1400, 10, |_| 50);
        assert_eq!(meter.call(20.0, true).late, 0);
    }

    #[test]
    fn a_dropped_chunk_counts_late_and_jittery_but_not_received() {
        let t0 = Instant::now();
        let mut meter = Meter::new(Duration::from_millis(20), 0);
        feed(&mut meter, t0, 0, 0, 10, |_| 0);
        meter.set_lost(0, 1);
        // Chunk 4 again, 200 ms after its time.
        meter.measure(0, t0 + Duration::from_millis(280), 80, 160, false);
        let call = meter.call(20.0, true);
        assert_eq!((call.received, call.lost, call.late), (10, 1, 1));
        assert!(meter.jitter_ms(0) > 0.0);
    }

    #[test]
    fn steady_chunks_have_no_jitter_no_loss_and_the_best_mos() {
        let mut meter = Meter::new(Duration::from_millis(20), 0);
        let due = feed(&mut meter, Instant::now(), 0, 0, 100, |_| 0);
        assert!(due.iter().all(|d| !d), "never due with interval 0");
        let call = meter.call(20.0, true);
        assert_eq!((call.received, call.lost, call.late), (100, 0, 0));
        assert_eq!(call.loss_percent, 0.0);
        assert!(call.jitter_ms < 1e-9, "{}", call.jitter_ms);
        assert!(
            (call.mos
                - emodel::mos(&Conditions {
                    latency_ms: 20.0,
                    jitter_ms: 0.0,
                    loss_percent: 0.0,
                    concealment: true,
                }))
            .abs()
                < 1e-12
        );
        assert!(call.mos > 4.3, "{}", call.mos);
    }

    #[test]
    fn reports_fall_due_by_stream_time_and_cover_their_interval() {
        let mut meter = Meter::new(Duration::from_millis(20), 1000);
        let t0 = Instant::now();
        // 3 s of 20 ms chunks from timestamp 155, 5 lost in the second.
        let mut reports = Vec::new();
        for i in 0..150u64 {
            let ts = 155 + 20 * i;
            if (60..65).contains(&i) {
                continue;
            }
            if i == 65 {
                meter.set_lost(0, 5);
            }
            if meter.arrived(0, t0 + Duration::from_millis(ts), ts, 160) {
                reports.push((i, meter.report(20.0, true)));
            }
        }
        let at: Vec<u64> = reports.iter().map(|r| r.0).collect();
        assert_eq!(at, [49, 99, 149], "due as each second is in");
        let counts: Vec<(u64, u64)> = reports.iter().map(|r| (r.1.received, r.1.lost)).collect();
        assert_eq!(counts, [(50, 0), (45, 5), (50, 0)]);
        assert!((reports[1].1.loss_percent - 10.0).abs() < 1e-9);
        assert!(reports[1].1.mos < reports[0].1.mos);
        let call = meter.call(20.0, true);
        assert_eq!((call.received, call.lost), (145, 5));
        assert!((call.loss_percent - 5.0 / 1.5).abs() < 1e-9);
        // Concealment is worth MOS with loss.
        assert!(call.mos > meter.call(20.0, false).mos);
    }

    #[test]
    fn jitter_and_late_chunks_per_track_the_larger_one_reported() {
        let mut meter = Meter::new(Duration::from_millis(30), 0);
        let t0 = Instant::now();
        // Inbound steady, outbound every other chunk 40 ms late.
        feed(&mut meter, t0, 0, 0, 50, |_| 0);
        feed(
            &mut meter,
            t0,
            1,
            0,
            50,
            |i| if i % 2 == 1 { 40 } else { 0 },
        );
        assert!(meter.jitter_ms(0) < 1e-9);
        // |D| is 40 ms every chunk: the estimate climbs towards 40.
        assert!(meter.jitter_ms(1) > 30.0, "{}", meter.jitter_ms(1));
        let call = meter.call(30.0, false);
        assert_eq!(call.late, 25);
        assert!(
            call.jitter_ms > 20.0 && call.jitter_ms < 40.0,
            "{}",
            call.jitter_ms
        );
    }

    #[test]
    fn a_chunk_far_off_is_not_jitter_and_a_lasting_jump_is_rebased() {
        let mut meter = Meter::new(Duration::from_millis(20), 1000);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for i in 0..10 {
            assert!(!meter.arrived(0, at(20 * i), 20 * i, 160));
        }
        // A hostile timestamp: counted, not measured, no report.
        assert!(!meter.arrived(0, at(200), u64::MAX, 160));
        assert!(meter.jitter_ms(0) < 1e-9);
        // The timestamps move on by a minute and stay there.
        for i in 10..49 {
            assert!(!meter.arrived(0, at(20 * i), 60_000 + 20 * i, 160), "{i}");
        }
        assert!(
            meter.arrived(0, at(980), 60_980, 160),
            "due a second of audio in"
        );
        assert!(meter.jitter_ms(0) < 1e-9, "{}", meter.jitter_ms(0));
        let report = meter.report(20.0, true);
        assert_eq!((report.received, report.late), (51, 0));
    }

    /// 20 chunks on time, then the timestamps step by `step_ms` at chunk
    /// 20 (told or not), 50 more on time, chunk `late_at` (if any) 300 ms
    /// late; latency 100 ms. The call's late chunks and jitter.
    fn stepping(step_ms: i64, told: bool, late_at: Option<u64>) -> (u64, f64) {
        let t0 = Instant::now();
        let mut meter = Meter::new(Duration::from_millis(100), 0);
        for i in 0..70u64 {
            let delay = if Some(i) == late_at { 300 } else { 0 };
            let at = t0 + Duration::from_millis(20 * i + delay);
            let stamped = if i < 20 { 0 } else { step_ms };
            let ts = (1000 + 20 * i).checked_add_signed(stamped).unwrap();
            if i == 20 && told {
                meter.stepped(0, step_ms);
            }
            meter.arrived(0, at, ts, 160);
        }
        let call = meter.call(100.0, true);
        (call.late, call.jitter_ms)
    }

    #[test]
    fn after_a_step_told_on_time_chunks_are_neither_late_nor_jitter() {
        // Untold, a step back makes every later chunk late by it, and either
        // way the step is one 400 ms difference of transit: 25 ms of jitter.
        let (late, jitter) = stepping(-400, false, None);
        assert_eq!(late, 50);
        assert!(jitter > 5.0, "{jitter}");
        assert!(stepping(400, false, None).1 > 5.0);
        for step in [-400, 400, -30] {
            assert_eq!(stepping(step, true, None), (0, 0.0), "{step} ms");
        }
    }

    #[test]
    fn a_chunk_late_after_a_step_still_counts() {
        for step in [-400, 400] {
            let (late, jitter) = stepping(step, true, Some(40));
            assert_eq!(late, 1, "{step} ms");
            assert!(jitter > 0.0);
            // At the step itself too.
            assert_eq!(stepping(step, true, Some(20)).0, 1, "{step} ms");
        }
    }

    #[test]
    fn a_chunk_held_is_measured_when_the_next_tells_what_it_was() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut meter = Meter::new(Duration::from_millis(100), 0);
        for i in 0..20 {
            meter.arrived(1, at(20 * i), 20 * i, 160);
        }
        // Chunk 20 stamped 400 ms back, held; chunk 21 follows it: a step.
        meter.hold(1, at(400), 0, 160);
        meter.stepped(1, -400);
        meter.release(1, true);
        for i in 21..40 {
            meter.arrived(1, at(20 * i), 20 * i - 400, 160);
        }
        let call = meter.call(100.0, true);
        assert_eq!((call.received, call.late), (40, 0));
        assert_eq!(meter.jitter_ms(1), 0.0);
        // One held and dropped (out of place, 400 ms back): late, not
        // received; the chunks around it are not.
        meter.hold(1, at(800), 0, 160);
        meter.release(1, false);
        meter.arrived(1, at(820), 420, 160);
        let call = meter.call(100.0, true);
        assert_eq!((call.received, call.late), (41, 1));
        // Held again before a release: the first is measured as dropped.
        meter.hold(1, at(840), 0, 160);
        meter.hold(1, at(860), 0, 160);
        meter.reanchored();
        assert!(!meter.release(1, true));
        assert_eq!(meter.call(100.0, true).late, 2);
    }
}
