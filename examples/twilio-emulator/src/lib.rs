//! A Twilio emulator: plays Twilio's side of Media Streams calls against a
//! `ws://` or `wss://` URL, for demos, tests and load tests of the twiliostream plugin.
//!
//! * [`call`]: one stream, message by message ([`TwilioCall`]).
//! * [`dial`]: how to connect: signed like Twilio, `wss://`, Unix sockets.
//! * [`play`]: a scripted call: audio in real time, DTMF, hang-up.
//! * [`load`]: a lean echo call for load tests.
//! * [`playout`]: Twilio's playout queue: real-time playback, mark echoes, clear.
//! * [`impair`]: loss, jitter and clock skew on the way, from a seed.
//! * [`provider`]: Twilio, SignalWire or Telnyx, and the codec streamed.
//! * [`audio`]: tones and WAV files as 8 kHz μ-law.
//! * [`speech`]: a spoken caller, from text (espeak).

pub mod audio;
pub mod call;
pub mod dial;
pub mod impair;
pub mod load;
pub mod play;
pub mod playout;
pub mod provider;
pub mod speech;

pub use call::{CallParams, Disconnected, Received, TwilioCall};
pub use dial::Dialer;
pub use impair::Impairments;
pub use play::{Ending, Report, Script};
pub use playout::{MarkEcho, Playback, Playout};
pub use provider::Provider;
