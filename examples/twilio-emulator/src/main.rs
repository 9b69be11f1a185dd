//! `twilio-emulator`: plays Twilio's side of one or more Media Streams calls
//! against a `ws://` or `wss://` URL and prints what comes back.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use gsttwiliostream::codec::{Resampler, WireFormat};
use gsttwiliostream::protocol::Track;
use twilio_emulator::{
    CallParams, Dialer, Ending, Impairments, Playout, Provider, Script, TwilioCall, audio,
    provider, speech,
};

/// Whose Media Streams protocol the emulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Dialect {
    Twilio,
    /// Twilio's messages, UUID ids, L16 as audio/x-L16
    Signalwire,
    /// snake_case, stream_id, codec names; takes media/mark/clear without an id
    Telnyx,
}

/// The stream's codec, both ways (L16 big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CodecArg {
    Pcmu,
    Pcma,
    #[value(name = "l16-8k")]
    L16_8k,
    #[value(name = "l16-16k")]
    L16_16k,
    #[value(name = "l16-24k")]
    L16_24k,
}

impl CodecArg {
    fn format(self) -> WireFormat {
        let name = self.to_possible_value().expect("no skipped values");
        provider::codec(name.get_name()).expect("every --codec is known")
    }
}

/// `pcm` (8 kHz) in `format`: resampled to its rate, encoded.
fn encode_as(format: WireFormat, pcm: &[i16]) -> Vec<u8> {
    let mut resampled = Vec::new();
    Resampler::new(8000, format.rate)
        .expect("telephone rates")
        .process(pcm, &mut resampled);
    let mut out = Vec::new();
    format.encode(&resampled, &mut out);
    out
}

/// Which tracks the emulated stream carries, as TwiML asks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Tracks {
    /// The caller only, as <Connect><Stream> sends it (what the plugin sends
    /// is played to the caller)
    Inbound,
    /// What the caller hears only: <Start><Stream track="outbound_track"> (one-way)
    Outbound,
    /// Both, interleaved frame by frame: <Start><Stream track="both_tracks"> (one-way)
    Both,
}

impl Tracks {
    fn tracks(self) -> &'static [Track] {
        match self {
            Tracks::Inbound => &[Track::Inbound],
            Tracks::Outbound => &[Track::Outbound],
            Tracks::Both => &[Track::Inbound, Track::Outbound],
        }
    }
}

/// Plays Twilio's side of Media Streams calls against a WebSocket URL.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// WebSocket URL of the plugin, e.g. ws://127.0.0.1:8080/ (wss:// for a TLS listener: see --ca-file)
    url: String,

    /// Whose protocol to speak: twilio, signalwire or telnyx
    #[arg(long, value_enum, default_value_t = Dialect::Twilio)]
    dialect: Dialect,

    /// Present TOKEN on the upgrade as the dialect's provider does:
    /// Authorization: Bearer TOKEN as SignalWire does with <Stream
    /// authBearerToken="TOKEN">; with --dialect telnyx,
    /// x-telnyx-streaming-auth-token: TOKEN as Telnyx does with
    /// stream_auth_token
    #[arg(long)]
    bearer_token: Option<String>,

    /// The codec streamed both ways: pcmu, pcma, l16-8k, l16-16k, l16-24k
    /// (Twilio itself streams pcmu only)
    #[arg(long, value_enum, default_value_t = CodecArg::Pcmu)]
    codec: CodecArg,

    /// The tracks of the stream: inbound (the caller), outbound (what the
    /// caller hears) or both (one-way streams take nothing back, but with
    /// --dialect telnyx, whose start names no tracks)
    #[arg(long = "track", value_enum, default_value_t = Tracks::Inbound)]
    track: Tracks,

    /// Play this WAV file (8, 16, 24 or 48 kHz; channels are mixed to mono)
    /// as the caller; with --track outbound, as the outbound track unless
    /// --outbound-wav/--outbound-tone say otherwise
    #[arg(long, conflicts_with = "tone")]
    wav: Option<PathBuf>,

    /// Play a sine tone of this frequency in Hz (the default: 440 Hz), as --wav
    #[arg(long)]
    tone: Option<f64>,

    /// Speak this text as the caller (espeak-ng, through GStreamer's espeak
    /// element), as --wav
    #[arg(long, conflicts_with_all = ["wav", "tone"])]
    say: Option<String>,

    /// The espeak voice of --say
    #[arg(long, default_value = speech::CALLER_VOICE)]
    voice: String,

    /// Seconds of silence before the caller's audio (--wav, --tone or --say)
    #[arg(long, default_value_t = 0.0)]
    audio_at: f64,

    /// The outbound track from this WAV file (with --track outbound or both)
    #[arg(long, conflicts_with = "outbound_tone")]
    outbound_wav: Option<PathBuf>,

    /// The outbound track as a tone of this frequency in Hz (with --track
    /// both, the default: 660 Hz, as long and loud as the caller's tone)
    #[arg(long)]
    outbound_tone: Option<f64>,

    /// Number the chunks of both tracks with one media.chunk counter instead
    /// of one per track
    #[arg(long)]
    shared_chunk_counter: bool,

    /// Length of the tone in seconds; --say and --wav audio shorter than
    /// this goes on in silence up to it
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,

    /// Amplitude of the tone, as a fraction of full scale
    #[arg(long, default_value_t = 0.5)]
    amplitude: f64,

    /// Number of concurrent calls
    #[arg(long, default_value_t = 1)]
    calls: usize,

    /// Send the audio as fast as possible instead of in real time (not
    /// with --jitter or --skew, which need real time)
    #[arg(long, conflicts_with_all = ["jitter", "skew"])]
    fast: bool,

    /// Milliseconds of audio per media message
    #[arg(long, default_value_t = 20)]
    chunk_ms: usize,

    /// Press a DTMF digit at a time into the audio: DIGIT@SECONDS (repeatable)
    #[arg(long = "dtmf", value_parser = parse_dtmf)]
    dtmf: Vec<(f64, String)>,

    /// A TwiML <Parameter>: NAME=VALUE (repeatable)
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,

    /// media.timestamp of the first chunk, in ms
    #[arg(long, default_value_t = 155)]
    first_timestamp: u64,

    /// Seconds to keep listening after the audio before hanging up
    #[arg(long, default_value_t = 1.0)]
    linger: f64,

    /// Hang up by dropping the connection (no stop message, no close frame)
    #[arg(long)]
    drop: bool,

    /// Sign the upgrade with this Twilio auth token (X-Twilio-Signature)
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,

    /// The URL the signature is over, as in the TwiML (default: the URL
    /// dialled, as wss://: what Twilio signs)
    #[arg(long)]
    signed_url: Option<String>,

    /// For wss://: trust the certificate(s) in this PEM file instead of the web's roots
    #[arg(long)]
    ca_file: Option<PathBuf>,

    /// Write what the caller heard (Twilio's playout of what the plugin sent)
    /// to this WAV file, at the call's rate (8 kHz for μ-law); with several
    /// calls, call N goes to STEM-N.wav beside it (heard.wav: heard-1.wav, ...)
    #[arg(long)]
    record: Option<PathBuf>,

    /// Lose this percentage of the chunks (not sent; numbers and
    /// timestamps skip them, as a loss on Twilio's side would)
    #[arg(long, default_value_t = 0.0)]
    loss: f64,

    /// Lose chunks in bursts of this many in a row (the rate stays --loss)
    #[arg(long, default_value_t = 1)]
    loss_burst: u32,

    /// Send each chunk up to this many ms late (uniform at random; order
    /// kept, as TCP keeps it). Real time only
    #[arg(long, default_value_t = 0.0)]
    jitter: f64,

    /// The sender's clock runs this many ppm fast (negative: slow). Real time only
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    skew: f64,

    /// Every this many chunks, send one after the chunk that follows it
    /// (out of order, as Telnyx may); 0: never
    #[arg(long, default_value_t = 0)]
    swap: u32,

    /// Seed of the random loss and jitter: the same seed, the same call
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// A WAV file's audio, or a tone of `freq` Hz as long and loud as asked.
fn read_audio(wav: Option<&std::path::Path>, freq: f64, args: &Args) -> Result<Vec<i16>, String> {
    match wav {
        Some(path) => audio::read_wav(path),
        None => Ok(audio::tone(freq, args.amplitude, args.seconds)),
    }
}

fn parse_dtmf(s: &str) -> Result<(f64, String), String> {
    let (digit, at) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: expected DIGIT@SECONDS"))?;
    let at: f64 = at.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Ok((at, digit.to_owned()))
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=VALUE"))?;
    Ok((name.to_owned(), value.to_owned()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let pcm = match &args.say {
        Some(text) => speech::speak(text, &args.voice),
        None => read_audio(args.wav.as_deref(), args.tone.unwrap_or(440.0), &args),
    }
    .map(|pcm| {
        let mut lead = vec![0; (args.audio_at.max(0.0) * 8000.0).round() as usize];
        lead.extend(pcm);
        let at_least = (args.seconds.max(0.0) * 8000.0).round() as usize;
        lead.resize(lead.len().max(at_least), 0);
        lead
    });
    let pcm = match pcm {
        Ok(pcm) => pcm,
        Err(e) => {
            eprintln!("twilio-emulator: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outbound = if args.outbound_wav.is_some() || args.outbound_tone.is_some() {
        let tone = args.outbound_tone.unwrap_or(660.0);
        match read_audio(args.outbound_wav.as_deref(), tone, &args) {
            Ok(pcm) => Some(pcm),
            Err(e) => {
                eprintln!("twilio-emulator: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    // --track outbound plays the one source given; both has two.
    let (inbound, outbound) = match args.track {
        Tracks::Inbound => (pcm, Vec::new()),
        Tracks::Outbound => (Vec::new(), outbound.unwrap_or(pcm)),
        Tracks::Both => {
            let outbound = outbound
                .unwrap_or_else(|| audio::tone(660.0, args.amplitude, pcm.len() as f64 / 8000.0));
            (pcm, outbound)
        }
    };
    let seconds = inbound.len().max(outbound.len()) as f64 / 8000.0;
    let format = args.codec.format();
    let provider = match args.dialect {
        Dialect::Twilio => Provider::Twilio,
        Dialect::Signalwire => Provider::SignalWire,
        Dialect::Telnyx => Provider::Telnyx,
    };
    let script = Script {
        audio: encode_as(format, &inbound),
        outbound: encode_as(format, &outbound),
        chunk_samples: args.chunk_ms.max(1) * 8,
        realtime: !args.fast,
        dtmf: args.dtmf.clone(),
        linger: Duration::from_secs_f64(args.linger.max(0.0)),
        ending: if args.drop {
            Ending::Drop
        } else {
            Ending::Stop
        },
        impairments: Impairments {
            loss_percent: args.loss.clamp(0.0, 100.0),
            loss_burst: args.loss_burst,
            jitter: Duration::from_secs_f64(args.jitter.max(0.0) / 1000.0),
            skew_ppm: args.skew,
            swap_every: args.swap,
            seed: args.seed,
        },
    };
    let track_names: Vec<&str> = args.track.tracks().iter().map(|t| t.as_str()).collect();
    println!(
        "twilio-emulator: {} call(s) to {}, {seconds:.2} s of audio each{}, tracks {track_names:?}",
        args.calls,
        args.url,
        if args.fast {
            ", as fast as possible"
        } else {
            " in real time"
        }
    );

    let token = args.bearer_token.clone().filter(|t| !t.is_empty());
    let dialer = Dialer {
        auth_token: args.auth_token.clone().filter(|t| !t.is_empty()),
        signed_url: args.signed_url.clone(),
        tls: match &args.ca_file {
            Some(path) => match Dialer::trusting(path) {
                Ok(tls) => Some(tls),
                Err(e) => {
                    eprintln!("twilio-emulator: {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        },
        unix_socket: None,
        bearer_token: token.clone().filter(|_| provider != Provider::Telnyx),
        telnyx_token: token.filter(|_| provider == Provider::Telnyx),
    };
    let mut calls = Vec::new();
    for n in 1..=args.calls {
        let params = CallParams {
            custom_parameters: args.params.iter().cloned().collect(),
            first_timestamp_ms: args.first_timestamp,
            shared_chunk_counter: args.shared_chunk_counter,
            tracks: CallParams::with_tracks(args.track.tracks()).tracks,
            ..CallParams::of(provider, format)
        };
        let url = args.url.clone();
        let script = script.clone();
        let dialer = dialer.clone();
        calls.push(tokio::spawn(async move {
            let call_sid = params.call_sid.clone();
            let mut call = TwilioCall::connect_via(&dialer, &url, params, Playout::RealTime)
                .await
                .map_err(|e| format!("call {n}: cannot connect to {url}: {e}"))?;
            call.begin().map_err(|e| format!("call {n}: {e}"))?;
            println!("call {n}: connected, callSid {call_sid}");
            let report = twilio_emulator::play::run(call, &script)
                .await
                .map_err(|e| format!("call {n}: {e}"))?;
            Ok::<_, String>((n, report))
        }));
    }

    let mut failed = false;
    for call in calls {
        match call.await.expect("call task panicked") {
            Ok((n, report)) => {
                println!(
                    "call {n}: received {} media message(s) ({:.2} s of audio), {} mark(s) {:?}, {} clear(s), {:.2} s played{}",
                    report.media_messages,
                    format.duration_ns(report.media.len()) as f64 / 1e9,
                    report.marks.len(),
                    report.marks,
                    report.clears,
                    format.duration_ns(report.playback.played.len()) as f64 / 1e9,
                    match report.closed_by_plugin {
                        Some(Some(code)) => format!(", closed by the plugin (code {code})"),
                        Some(None) => ", closed by the plugin (no close code)".to_owned(),
                        None => String::new(),
                    }
                );
                for m in &report.playback.marks {
                    println!(
                        "call {n}: mark {:?} echoed at {:.3} s, after {:.3} s of audio played{}",
                        m.name,
                        m.at.as_secs_f64(),
                        format.duration_ns(m.played_samples) as f64 / 1e9,
                        if m.cleared { " (flushed by clear)" } else { "" }
                    );
                }
                if report.playback.clears > 0 {
                    println!(
                        "call {n}: {} clear(s) dropped {:.3} s of queued audio in all",
                        report.playback.clears,
                        format.duration_ns(report.playback.cleared_samples) as f64 / 1e9
                    );
                }
                if let Some(path) = &args.record {
                    let path = if args.calls == 1 {
                        path.clone()
                    } else {
                        path.with_file_name(format!(
                            "{}-{n}.wav",
                            path.file_stem().unwrap_or_default().to_string_lossy()
                        ))
                    };
                    let mut heard = Vec::new();
                    format.decode(&report.playback.played, &mut heard);
                    match audio::write_wav(&path, &heard, format.rate) {
                        Ok(()) => println!(
                            "call {n}: what the caller heard ({:.2} s): {}",
                            heard.len() as f64 / format.rate as f64,
                            path.display()
                        ),
                        Err(e) => {
                            eprintln!("twilio-emulator: {e}");
                            failed = true;
                        }
                    }
                }
                for why in &report.invalid {
                    println!("call {n}: Twilio would reject: {why}");
                    failed = true;
                }
                // The plugin ends a call it accepted with 1000 (end-stream,
                // EOS, idle); anything else is a refusal (1003, 1008, 1013)
                // or a dropped connection.
                if report
                    .closed_by_plugin
                    .is_some_and(|code| code != Some(1000))
                {
                    let code = match (report.closed_by_plugin.flatten(), &report.close_reason) {
                        (Some(code), Some(reason)) => format!("close code {code}: {reason:?}"),
                        (Some(code), None) => format!("close code {code}"),
                        (None, _) => "no close code".to_owned(),
                    };
                    eprintln!(
                        "twilio-emulator: call {n}: refused or dropped by the plugin ({code})"
                    );
                    failed = true;
                }
            }
            Err(e) => {
                eprintln!("twilio-emulator: {e}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jitter and skew are timings of a call in real time: with --fast they
    /// would be dropped without a word.
    #[test]
    fn fast_refuses_jitter_and_skew() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["twilio-emulator", "ws://127.0.0.1:8080/"];
            argv.extend(extra);
            Args::try_parse_from(argv)
        };
        assert!(parse(&["--fast"]).is_ok());
        assert!(parse(&["--jitter", "5", "--skew", "-50"]).is_ok());
        for refused in [["--jitter", "5"], ["--skew", "-50"]] {
            let err = parse(&[&["--fast"][..], &refused[..]].concat()).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{refused:?}"
            );
        }
    }
}
