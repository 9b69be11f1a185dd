//! What one track of a `track=both` call sent, and must come out of its
//! channel (see both.rs).

use twilio_emulator::audio::decode;

use crate::peer::CHUNK;

/// What one track sent, and must come out of its channel.
#[derive(Default)]
pub struct Lane {
    /// Each place's bytes, or None if lost (silence of a chunk).
    pub timeline: Vec<Option<Vec<u8>>>,
    /// Silence of a gap (samples) before the place it names: a step ahead
    /// in its timestamps too small to be told from lost audio.
    pub gaps: Vec<(usize, usize)>,
    /// Samples at the start of the place it names that came after the
    /// wait gave up their time: dropped, silence.
    pub cut: Vec<(usize, usize)>,
    /// The plain chunks' texts as sent, by place (for resending).
    pub texts: Vec<Option<String>>,
    pub received: u64,
    pub bytes: u64,
    /// Chunks that must come plainly next: after a timestamp far ahead,
    /// the first is kept back until the second tells a step back.
    pub plain: usize,
    /// The timestamp of its next chunk (ms).
    pub ts: u64,
    /// Steps ahead taken.
    pub steps_ahead: usize,
    /// The last step ahead (ms), as the src measures it (from the track's
    /// last audio).
    pub last_step: Option<u64>,
    /// A chunk was sent again since its last new one: it may be kept back
    /// (the track's wait grows by its length meanwhile).
    pub resent: bool,
    /// Telnyx: the places since a lost one that the reorder window still
    /// waits for, the lost one included (none out of the window yet); 0
    /// when it waits for none.
    pub hold: usize,
    /// Telnyx: the place of its last chunk of a wild number.
    pub wild_number: Option<usize>,
}

impl Lane {
    /// Chunks counted lost: each run of silence rounded to whole chunks.
    pub fn lost(&self) -> u64 {
        let channel = self.channel();
        let runs = channel.split(Option::is_some).map(|run| run.len());
        runs.map(|run| (run + CHUNK / 2) / CHUNK).sum::<usize>() as u64
    }

    /// Its length in samples, silence included.
    pub fn samples(&self) -> usize {
        let places = self
            .timeline
            .iter()
            .map(|c| c.as_ref().map_or(CHUNK, Vec::len));
        places.sum::<usize>() + self.gaps.iter().map(|g| g.1).sum::<usize>()
    }

    /// Where the src's audio of it ends at most (samples): a lost chunk
    /// last, chunks a reorder window holds behind a lost one, or one kept
    /// back (after a timestamp far ahead), are not in yet.
    pub fn src_end(&self) -> usize {
        let lost_last = self.timeline.last().is_some_and(Option::is_none);
        let pending = self.hold.max(usize::from(lost_last));
        self.samples() - CHUNK * pending - CHUNK * usize::from(self.plain > 0)
    }

    /// A new place of it in a call reordered by a window of `window`
    /// chunks: the window lets out what it held once more than `window`
    /// wait behind the lost one.
    pub fn placed(&mut self, window: usize) {
        if self.hold > 0 {
            self.hold += 1;
            if self.hold > window + 1 {
                self.hold = 0;
            }
        }
    }

    /// Its μ-law bytes, None for silence (what was lost).
    fn channel(&self) -> Vec<Option<u8>> {
        let mut gaps = self.gaps.iter().peekable();
        let mut cut = self.cut.iter().peekable();
        let mut out = Vec::new();
        for (i, c) in self.timeline.iter().enumerate() {
            while let Some((_, g)) = gaps.next_if(|g| g.0 == i) {
                out.resize(out.len() + g, None);
            }
            let cut = cut.next_if(|c| c.0 == i).map_or(0, |c| c.1);
            match c {
                Some(ulaw) => {
                    out.resize(out.len() + cut, None);
                    out.extend(ulaw[cut..].iter().copied().map(Some));
                }
                None => out.resize(out.len() + CHUNK, None),
            }
        }
        out
    }

    /// Its samples at 8 kHz, silence for what was lost.
    pub fn pcm(&self) -> Vec<i16> {
        let channel = self.channel();
        let ulaw: Vec<u8> = channel.iter().map(|b| b.unwrap_or(0xff)).collect();
        let pcm = decode(&ulaw);
        pcm.iter()
            .zip(&channel)
            .map(|(&s, b)| if b.is_some() { s } else { 0 })
            .collect()
    }
}
