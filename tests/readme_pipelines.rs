//! Every pipeline README.md shows parses against the registered plugin and
//! the GStreamer elements `scripts/lib.sh` installs: each `gst-launch-1.0`
//! command (code blocks, with `\` continuations, shell quoting, environment
//! assignments and `-m`/`-v`/`-e` options; and inline code) and the Python
//! example's `Gst.parse_launch` string. A misspelt element, property or enum
//! value, or a link no pad allows, fails here. Each is parsed as
//! `gst-launch-1.0` parses its arguments (`gst_parse_launchv`), with `port=`
//! set to 0, and set to NULL without playing; the echo line is also played
//! with a call through it.
//!
//! Nothing is skipped: the files, paths and `...` tokens the commands name
//! are read only when a pipeline starts. Mentions that are not commands (a
//! bare `gst-launch-1.0` in prose, the shorthand in a `#` comment of the
//! demo's description) are left out, and every other occurrence of
//! `gst-launch-1.0` in the README must be a command read here.

mod common;

use common::app::*;
use common::sink::*;
use common::*;
use gst::prelude::*;

const LAUNCH: &str = "gst-launch-1.0";

/// A pipeline of the README and the line it starts on.
#[derive(Debug)]
struct Shown {
    line: usize,
    pipeline: Pipeline,
}

#[derive(Debug)]
enum Pipeline {
    /// A command's arguments, as the shell gives them to `gst-launch-1.0`.
    Launch(Vec<String>),
    /// A description in one string, as `Gst.parse_launch` takes it.
    Description(String),
}

/// Splits a shell command into words: whitespace outside quotes separates
/// them, single quotes keep everything, double quotes and a backslash
/// outside quotes escape. Control operators (`&`, `;`, `|`) end it.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '&' | ';' | '|' => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The pipeline arguments of a `gst-launch-1.0` command line (after any
/// `VAR=value` prefixes; options dropped), or None for another command.
fn launch_args(command: &str) -> Option<Vec<String>> {
    let words = shell_words(command);
    let mut words = words.into_iter().skip_while(|w| {
        w.split_once('=').is_some_and(|(var, _)| {
            !var.is_empty() && var.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        })
    });
    if words.next()? != LAUNCH {
        return None;
    }
    Some(words.skip_while(|w| w.starts_with('-')).collect())
}

/// Every pipeline README.md shows, and how many occurrences of
/// `gst-launch-1.0` are mentions rather than commands.
fn shown(readme: &str) -> (Vec<Shown>, usize) {
    let mut out = Vec::new();
    let mut mentions = 0;
    let lines: Vec<&str> = readme.lines().collect();
    let mut fence: Option<&str> = None;
    let mut prose = String::new();
    let mut prose_lines = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(lang) = line.trim_start().strip_prefix("```") {
            fence = if fence.is_some() {
                None
            } else {
                Some(lang.trim())
            };
            i += 1;
            continue;
        }
        match fence {
            None => {
                prose.push_str(line);
                prose.push('\n');
                prose_lines.push(i + 1);
                i += 1;
            }
            Some("python") if line.contains("parse_launch(") => {
                let start = i + 1;
                let mut text = String::new();
                while !text.contains(')') || text.matches('"').count() % 2 == 1 {
                    text.push_str(lines[i]);
                    i += 1;
                }
                let call = &text[text.find("parse_launch(").unwrap()..];
                // The concatenated string literals (none of them escapes).
                let desc: String = call.split('"').skip(1).step_by(2).collect();
                let pipeline = Pipeline::Description(desc);
                out.push(Shown {
                    line: start,
                    pipeline,
                });
            }
            Some(_) => {
                let start = i + 1;
                let mut command = String::new();
                while let Some(head) = lines[i].strip_suffix('\\') {
                    command.push_str(head);
                    i += 1;
                }
                command.push_str(lines[i]);
                i += 1;
                let command = command.trim_start();
                if command.starts_with('#') {
                    mentions += command.matches(LAUNCH).count();
                } else if let Some(args) = launch_args(command) {
                    let pipeline = Pipeline::Launch(args);
                    out.push(Shown {
                        line: start,
                        pipeline,
                    });
                }
            }
        }
    }
    // Inline code, which may run over a line break.
    let mut at = 0;
    for (n, span) in prose.split('`').enumerate() {
        let line = prose_lines[prose[..at].matches('\n').count()];
        at += span.len() + 1;
        let span = span.replace('\n', " ");
        if n % 2 == 0 {
            continue;
        } else if span == LAUNCH {
            mentions += 1;
        } else if let Some(args) = launch_args(&span) {
            let pipeline = Pipeline::Launch(args);
            out.push(Shown { line, pipeline });
        }
    }
    (out, mentions)
}

fn readme() -> String {
    std::fs::read_to_string(common::installed::repo().join("README.md")).unwrap()
}

/// `word`, or `port=0` for any `port=`: nothing binds a fixed port.
fn port_zero(word: &str) -> &str {
    if word.starts_with("port=") {
        "port=0"
    } else {
        word
    }
}

/// The pipeline, parsed as `gst-launch-1.0` (or `Gst.parse_launch`) would.
fn parse(pipeline: &Pipeline) -> Result<gst::Pipeline, gst::glib::Error> {
    init();
    let flags = gst::ParseFlags::FATAL_ERRORS;
    let e = match pipeline {
        Pipeline::Launch(args) => {
            let args: Vec<&str> = args.iter().map(|a| port_zero(a)).collect();
            gst::parse::launchv_full(&args, None, flags)?
        }
        Pipeline::Description(desc) => {
            let desc: Vec<&str> = desc.split(' ').map(port_zero).collect();
            gst::parse::launch_full(&desc.join(" "), None, flags)?
        }
    };
    Ok(e.downcast().expect("a pipeline"))
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.pipeline {
            Pipeline::Launch(args) => {
                write!(f, "README.md:{}: {LAUNCH} {}", self.line, args.join(" "))
            }
            Pipeline::Description(d) => write!(f, "README.md:{}: \"{d}\"", self.line),
        }
    }
}

#[test]
fn every_readme_pipeline_parses() {
    let readme = readme();
    let (shown, mentions) = shown(&readme);
    let commands = shown
        .iter()
        .filter(|s| matches!(s.pipeline, Pipeline::Launch(_)))
        .count();
    assert_eq!(
        readme.matches(LAUNCH).count(),
        commands + mentions,
        "a gst-launch-1.0 in README.md that is neither read here nor a mention: {shown:#?}"
    );
    let mut failures = Vec::new();
    for s in &shown {
        match parse(&s.pipeline) {
            Ok(p) => p.set_state(gst::State::Null).map(|_| ()).unwrap(),
            Err(e) => failures.push(format!("{s}\n  {e}")),
        }
    }
    assert!(failures.is_empty(), "\n{}\n", failures.join("\n"));
    // The Python example's string, and the gst-launch commands.
    assert!(shown.len() > 20, "{shown:#?}");
}

#[test]
fn the_split_follows_the_shell() {
    assert_eq!(
        launch_args(r#"A=1 B= gst-launch-1.0 -m -v a  text="x, \"y\"" b='c d' e\ f ! g &"#),
        Some(
            vec!["a", r#"text=x, "y""#, "b=c d", "e f", "!", "g"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    assert_eq!(launch_args("cargo run -- gst-launch-1.0"), None);
}

/// The README's first example, the echo, played as written (on port 0): a
/// call's audio comes back to it, through the src's decode and upsampling
/// and the sink's downsampling and encode, and Twilio's `stop` ends it.
#[test]
fn the_readme_echo_line_echoes_a_call() {
    let (shown, _) = shown(&readme());
    let echo = &shown[0];
    assert!(
        matches!(&echo.pipeline, Pipeline::Launch(a)
            if a.iter().filter(|a| a.starts_with("twiliostream")).count() == 2),
        "the first example is not the echo: {echo}"
    );
    let p = parse(&echo.pipeline).unwrap();
    let src = p
        .iterate_elements()
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.factory().unwrap().name() == "twiliostreamsrc")
        .unwrap();
    set_bounded(&p, gst::State::Playing);
    let sent = tones(50);
    let mut call = instant_call(&url_of(&src));
    for chunk in sent.chunks(160) {
        call.send_media(chunk).unwrap();
    }
    // All but the last frame (held back by the filters' delays) comes back
    // before `stop`.
    let got = receive_until(&mut call, |got| media_bytes(got).len() >= sent.len() - 160);
    call.send_stop().unwrap();
    wait_eos(&p.bus().unwrap());
    rt().block_on(call.close());
    set_bounded(&p, gst::State::Null);

    // The caller's two tones come back at their level, and little else:
    // over half a second past the filters' start-up (whole periods of both),
    // each tone's amplitude and what remains besides them.
    let echoed = media_bytes(&got);
    let (sent, echoed) = (tones_in(&sent[320..4320]), tones_in(&echoed[320..4320]));
    for (tone, (s, e)) in ["440 Hz", "1230 Hz"]
        .iter()
        .zip(sent.0.iter().zip(echoed.0))
    {
        assert!(
            (e / s - 1.0).abs() < 0.02,
            "{tone}: sent {s:.0}, echoed {e:.0}"
        );
    }
    assert!(
        echoed.1 > 30.0,
        "the echo is not the caller's audio: {echoed:?}"
    );
}

/// The amplitudes of [`tones`]'s 440 and 1230 Hz in μ-law `ulaw` (whole
/// periods of both), and how far (dB) what remains lies below them.
fn tones_in(ulaw: &[u8]) -> ([f64; 2], f64) {
    let x: Vec<f64> = ulaw
        .iter()
        .map(|&c| gsttwiliostream::codec::g711::decode(c) as f64)
        .collect();
    let mut fitted = vec![0.0; x.len()];
    let mut amplitudes = [0.0; 2];
    for (amplitude, freq) in amplitudes.iter_mut().zip([440.0, 1230.0]) {
        let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
        let (mut c, mut s) = (0.0, 0.0);
        for (n, v) in x.iter().enumerate() {
            c += v * (w * n as f64).cos();
            s += v * (w * n as f64).sin();
        }
        let (c, s) = (2.0 * c / x.len() as f64, 2.0 * s / x.len() as f64);
        for (n, f) in fitted.iter_mut().enumerate() {
            *f += c * (w * n as f64).cos() + s * (w * n as f64).sin();
        }
        *amplitude = c.hypot(s);
    }
    (amplitudes, snr_db(&fitted, &x))
}
