//! Voice activity from `level`'s RMS per interval: speech starts once the
//! caller has been louder than a threshold for `onset`, and ends once they
//! have been quieter for `hang` (the pauses between words are shorter).
//! Pure: fed plain values, unit-tested.

use std::time::Duration;

/// A turn of the caller's, in running time of their audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Turn {
    /// The caller started speaking at this time.
    Started(Duration),
    /// The caller spoke from `from` to `to` (the end of the last loud interval).
    Ended { from: Duration, to: Duration },
}

#[derive(Debug, Clone)]
pub struct Vad {
    threshold_db: f64,
    onset: Duration,
    hang: Duration,
    loud_since: Option<Duration>,
    speaking_since: Option<Duration>,
    last_loud: Duration,
}

impl Vad {
    pub fn new(threshold_db: f64, onset: Duration, hang: Duration) -> Vad {
        Vad {
            threshold_db,
            onset,
            hang,
            loud_since: None,
            speaking_since: None,
            last_loud: Duration::ZERO,
        }
    }

    /// One interval of the caller's audio, `start..end`, at `rms_db` dBFS.
    pub fn feed(&mut self, start: Duration, end: Duration, rms_db: f64) -> Option<Turn> {
        let loud = rms_db >= self.threshold_db;
        match self.speaking_since {
            None if loud => {
                let since = *self.loud_since.get_or_insert(start);
                if end.saturating_sub(since) >= self.onset {
                    self.speaking_since = Some(since);
                    self.last_loud = end;
                    return Some(Turn::Started(since));
                }
            }
            None => self.loud_since = None,
            Some(_) if loud => self.last_loud = end,
            Some(from) => {
                if end.saturating_sub(self.last_loud) >= self.hang {
                    self.speaking_since = None;
                    self.loud_since = None;
                    return Some(Turn::Ended {
                        from,
                        to: self.last_loud,
                    });
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS20: Duration = Duration::from_millis(20);

    /// Feeds 20 ms intervals of these levels from time 0; the turns seen.
    fn run(levels: &[f64]) -> Vec<(usize, Turn)> {
        let mut vad = Vad::new(-35.0, Duration::from_millis(60), Duration::from_millis(400));
        levels
            .iter()
            .enumerate()
            .filter_map(|(i, &db)| {
                let start = MS20 * i as u32;
                vad.feed(start, start + MS20, db).map(|t| (i, t))
            })
            .collect()
    }

    #[test]
    fn silence_and_clicks_are_no_speech() {
        let mut levels = vec![-90.0; 50];
        levels[10] = -10.0; // one loud interval: a click
        levels[20] = -10.0;
        levels[21] = -10.0; // 40 ms: still under the onset
        assert_eq!(run(&levels), vec![]);
    }

    #[test]
    fn speech_starts_after_the_onset_and_ends_after_the_hang() {
        // Quiet 200 ms, speech 1 s with a 200 ms pause between words, quiet.
        let mut levels = vec![-90.0; 10];
        levels.extend([-20.0; 20]);
        levels.extend([-60.0; 10]);
        levels.extend([-20.0; 20]);
        levels.extend([-90.0; 40]);
        let turns = run(&levels);
        assert_eq!(
            turns,
            vec![
                // Known at the third loud interval, dated from the first.
                (12, Turn::Started(Duration::from_millis(200))),
                // 400 ms after the last loud interval (ending at 1.2 s).
                (
                    79,
                    Turn::Ended {
                        from: Duration::from_millis(200),
                        to: Duration::from_millis(1200)
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_second_turn_is_told_apart() {
        let mut levels = vec![-20.0; 5];
        levels.extend([-90.0; 25]);
        levels.extend([-20.0; 5]);
        levels.extend([-90.0; 25]);
        let starts: Vec<usize> = run(&levels)
            .into_iter()
            .filter(|(_, t)| matches!(t, Turn::Started(_)))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(starts, vec![2, 32]);
    }
}
