//! The sink's side of a call, seeded: an application pushes audio into a
//! twiliostreamsink in bursts and in real time, in buffers of any size,
//! in each input format, and places marks and clears (signal, event,
//! flush) among it, then ends (EOS, `end-stream`, or NULL anywhere). A
//! provider of the test's own (`common::peer`: Twilio, SignalWire or
//! Telnyx, announcing μ-law, A-law or L16 at 8, 16 or 24 kHz; it plays at
//! exactly 8000 ticks a second, echoes marks on playout, maybe late, or
//! never) records what it got; the sink syncs or not, in frames of 5 to
//! 60 ms (`variant`). Per README ("Marks and clear", "Ending the stream",
//! "Pacing", "Other providers"):
//!
//! * every byte is the call's encoding of the input (resampled to its
//!   rate), in order, nothing twice, in the provider's own messages;
//!   between two clears, what arrived is the start of that segment's
//!   audio (a fresh resampler's output), so nothing from before a clear
//!   follows it; a segment not cut short arrives whole (Telnyx's padding
//!   of short frames aside);
//! * marks arrive in order, each where it was placed (to within the
//!   resampler's delay), their echoes posted as `twilio-mark`, counted;
//! * each `twilio-clear` says what the peer really played (±40 ms), and
//!   `played` + `dropped` is the segment's audio, also for a clear that
//!   races the sink (before it took a burst, or while its render waits for
//!   the writer; what it had not taken plays after the clear: where the
//!   clear cut is found from the bytes);
//! * the peer's queue never held more than `max-lead` and a frame;
//! * with `sync=true`, no frame leaves before its running time (less the
//!   render delay and the processing deadline);
//! * EOS is posted only after the playout (with no echo, once the bound
//!   passed; closed 1000); Twilio's `stop` instead of the echo lets it
//!   through at once; NULL anywhere returns.
//!
//! The same sink paired with a src in an echo (`echo`, `echo_checks`):
//! the peer dials the src and hears its own random audio come back in the
//! call, with marks and clears among it, the pipeline maybe paused
//! mid-call; see `echo`.
//!
//! Time enters only as real waits on conditions (and a real-time source's
//! pace): every wait is bounded by PATIENCE, which only a hang reaches.
//! The two timing bounds (`played`, the queue) widen by the peer's own
//! measured lateness, which a loaded machine adds.

mod checks;
#[path = "../common/mod.rs"]
mod common;
mod echo;
mod echo_checks;
mod run;
mod script;
mod variant;

use run::soak;

/// The seeds: eleven that between them end in each way (EOS, EOS while
/// paused, `end-stream` after the playout and at once, NULL mid-script and
/// while the EOS waits), with clears of every kind, in every wire format
/// and dialect of [`variant`] (auto-detected and fixed), `sync=true`,
/// `chunk-duration` of 30 and 60 ms, and a peer that never echoes (at the
/// EOS waiting out the bound; sending `stop` instead); 5 found
/// Telnyx's padding counted as dropped audio; or
/// `OUTBOUND_SOAK_SEEDS` (`N` or `A..B`) to reproduce one or to search
/// further.
fn seeds() -> Vec<u64> {
    let Ok(s) = std::env::var("OUTBOUND_SOAK_SEEDS") else {
        return vec![0, 5, 12, 14, 35, 54, 63, 65, 69, 85, 88];
    };
    match s.split_once("..") {
        Some((a, b)) => (a.parse().unwrap()..b.parse().unwrap()).collect(),
        None => vec![s.parse().unwrap()],
    }
}

#[test]
fn seeded_scripts_reach_twilio_as_the_readme_says() {
    for seed in seeds() {
        soak(seed);
    }
}

/// The echo's seeds (`echo`), or `OUTBOUND_SOAK_SEEDS` as above.
fn echo_seeds(default: &[u64]) -> Vec<u64> {
    match std::env::var("OUTBOUND_SOAK_SEEDS") {
        Ok(_) => seeds(),
        Err(_) => default.to_vec(),
    }
}

/// Telnyx A-law ended after the playout, SignalWire L16 (little-endian)
/// ended by an EOS.
#[test]
fn seeded_echoes_come_back_as_the_readme_says() {
    for seed in echo_seeds(&[2, 4]) {
        echo::echo_soak(seed, false);
    }
}

/// Twilio paused thrice (once with 5 chunks and a mark meanwhile), ended
/// after the playout.
#[test]
fn seeded_echoes_paused_mid_call_come_back_as_the_readme_says() {
    for seed in echo_seeds(&[11]) {
        echo::echo_soak(seed, true);
    }
}
