//! `examples/python/voicebot.py` as a Python developer runs it: Debian's
//! Python with python3-gi, the plugin as `scripts/install` installs it (into
//! a throwaway HOME: no `GST_PLUGIN_PATH`, so the install is what is tested
//! too). The test is the caller, through the emulator: it listens, speaks
//! (espeak-ng) during the menu, presses 2 during the answer, then #.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::installed::{Home, repo};
use twilio_emulator::{CallParams, Dialer, Ending, Playout, Script, TwilioCall, audio, speech};

/// Debian's Python, which python3-gi is for (a pyenv or venv `python3`
/// first on the PATH has no `gi`).
fn python() -> &'static str {
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// The bot's stdout, line by line, as it comes.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// `name`'s seconds in a transcript line `… heard 1.23 s of "name" …`.
fn heard_of(transcript: &str, name: &str) -> Option<f64> {
    let line = transcript
        .lines()
        .find(|l| l.contains(&format!(" s of \"{name}\"")))?;
    let (_, rest) = line.split_once("the caller heard ")?;
    rest.split_once(" s of")?.0.parse().ok()
}

/// `"name" (3.08 s)`: a prompt's length as the bot announced it.
fn length_of(transcript: &str, name: &str) -> f64 {
    let line = transcript
        .lines()
        .find(|l| l.contains(&format!("saying \"{name}\" (")))
        .unwrap_or_else(|| panic!("the bot never said {name:?}:\n{transcript}"));
    let (_, rest) = line.split_once(&format!("saying \"{name}\" (")).unwrap();
    rest.split_once(" s)").unwrap().0.parse().unwrap()
}

/// A throwaway home with the plugin installed, and the bot started in it
/// on a free port: the bot, its stdout, the transcript so far and the URL
/// it listens on.
fn start_bot(name: &str) -> (Home, Child, mpsc::Receiver<String>, String, String) {
    let home = Home::new(name);
    // No silent skip: CI must have PyGObject and GStreamer's GIR data.
    let check = home
        .command(python())
        .args([
            "-c",
            "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst",
        ])
        .output()
        .expect("run python3");
    assert!(
        check.status.success(),
        "{} cannot import gi.repository.Gst: install python3-gi and gir1.2-gstreamer-1.0 \
         (scripts/lib.sh's set-up does):\n{}",
        python(),
        String::from_utf8_lossy(&check.stderr)
    );
    home.install(&[]);

    let mut bot = home
        .command(python())
        .arg(repo().join("examples/python/voicebot.py"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python bot");
    let lines = lines_of(&mut bot);
    let mut transcript = String::new();
    let url = loop {
        let line = lines.recv_timeout(common::PATIENCE).unwrap_or_else(|_| {
            let _ = bot.kill();
            panic!("the bot did not start listening:\n{transcript}")
        });
        transcript += &line;
        transcript.push('\n');
        if let Some((_, url)) = line.split_once("listening on ") {
            break url.to_owned();
        }
    };

    (home, bot, lines, transcript, url)
}

/// Reads the bot's transcript up to a line containing `needle`.
fn wait_for_line(
    bot: &mut Child,
    lines: &mpsc::Receiver<String>,
    transcript: &mut String,
    needle: &str,
) {
    loop {
        let line = lines.recv_timeout(common::PATIENCE).unwrap_or_else(|_| {
            let _ = bot.kill();
            panic!("the bot never said {needle:?}:\n{transcript}")
        });
        *transcript += &line;
        transcript.push('\n');
        if line.contains(needle) {
            break;
        }
    }
}

/// Waits for the bot to exit after its call (killed after
/// `common::PATIENCE`), with the rest of its transcript.
fn wait_for_exit(
    bot: &mut Child,
    lines: &mpsc::Receiver<String>,
    transcript: &mut String,
) -> ExitStatus {
    let deadline = Instant::now() + common::PATIENCE;
    let status = loop {
        while let Ok(line) = lines.try_recv() {
            *transcript += &line;
            transcript.push('\n');
        }
        if let Some(status) = bot.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = bot.kill();
            panic!("the bot did not exit after the call:\n{transcript}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The last lines, written before the exit: all of them once the reader
    // reaches the end of the pipe (a second's wait could leave some out).
    while let Ok(line) = lines.recv_timeout(common::PATIENCE) {
        *transcript += &line;
        transcript.push('\n');
    }
    println!("{transcript}");
    status
}

#[test]
fn the_python_voice_bot_talks_barges_in_on_speech_and_keys_and_hands_the_call_back() {
    let (_home, mut bot, lines, mut transcript, url) = start_bot("python");

    // The caller, from the greeting on: 4.5 s of listening, a sentence,
    // silence; keys at 10 and 12 s.
    let mut caller = vec![0i16; 36000];
    caller.extend(
        speech::speak(
            "Hi, I would like to book a table for two, please.",
            speech::CALLER_VOICE,
        )
        .unwrap(),
    );
    caller.resize(16 * 8000, 0);

    let call = common::rt().block_on(async {
        let params = CallParams {
            custom_parameters: [("caller".to_owned(), "+15550100".to_owned())].into(),
            ..CallParams::default()
        };
        let mut call = TwilioCall::connect_via(&Dialer::default(), &url, params, Playout::RealTime)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    });
    // The caller's script runs from the greeting on (the bot's first
    // synthesis can take a second or more on a busy machine): its speech
    // then comes during the menu, not the greeting.
    wait_for_line(&mut bot, &lines, &mut transcript, "saying \"greeting\"");
    // `tracks`, an array, read as the README says Python reads it.
    assert!(
        transcript.contains("from +15550100 started (tracks: inbound)"),
        "{transcript}"
    );
    let report = common::rt().block_on(async {
        let script = Script {
            audio: audio::encode(&caller),
            dtmf: vec![(10.0, "2".to_owned()), (12.0, "#".to_owned())],
            linger: Duration::from_secs(10),
            ending: Ending::Stop,
            ..Script::default()
        };
        twilio_emulator::play::run(call, &script).await.unwrap()
    });

    let status = wait_for_exit(&mut bot, &lines, &mut transcript);
    assert!(status.success(), "the bot failed: {status}\n{transcript}");

    // Twilio's side: nothing it would reject; the bot hung up normally.
    assert!(report.invalid.is_empty(), "{:?}", report.invalid);
    assert_eq!(report.closed_by_plugin, Some(Some(1000)));

    // Barge-in on speech during the menu, and on the key during the answer:
    // one `clear` each, and `twilio-clear` reports what the caller heard.
    for line in [
        "the caller started speaking",
        "barge-in (the caller speaks): stopping ['menu']",
        "the caller stopped speaking",
        "saying \"heard-you\"",
        "the caller pressed 2",
        "barge-in (key 2): stopping ['heard-you']",
        "the caller pressed #",
        "mark \"goodbye\" came back: played to the end",
        "goodbye played, ending the stream (end-stream)",
        "stream ended by the bot (end-stream)",
        "clears-sent=2",
        "dtmf-received=2",
    ] {
        assert!(transcript.contains(line), "no {line:?} in:\n{transcript}");
    }
    assert_eq!(report.playback.clears, 2);
    let echoed: Vec<(&str, bool)> = report
        .playback
        .marks
        .iter()
        .map(|m| (m.name.as_str(), m.cleared))
        .collect();
    assert_eq!(
        echoed,
        [("greeting", false), ("digit-2", false), ("goodbye", false)],
        "the interrupted prompts' marks were never sent (send-mark follows a whole prompt)"
    );

    // What the sink says the caller heard of the interrupted prompts agrees
    // with what the emulated Twilio played: all of it is the three whole
    // prompts plus those parts.
    let menu = heard_of(&transcript, "menu").expect("no twilio-clear report for the menu");
    let answer = heard_of(&transcript, "heard-you").expect("no report for the answer");
    assert!(
        menu > 0.0 && menu < length_of(&transcript, "menu"),
        "{menu}"
    );
    assert!(
        answer > 0.0 && answer < length_of(&transcript, "heard-you"),
        "{answer}"
    );
    let whole = ["greeting", "digit-2", "goodbye"]
        .map(|n| length_of(&transcript, n))
        .iter()
        .sum::<f64>();
    let played = report.playback.played.len() as f64 / 8000.0;
    assert!(
        (played - (whole + menu + answer)).abs() < 0.3,
        "played {played:.2} s, the bot's account {:.2} s",
        whole + menu + answer
    );

    // And what the caller heard is speech, not silence.
    let heard = audio::decode(&report.playback.played);
    let rms = (heard.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / heard.len() as f64).sqrt();
    assert!(rms > 1000.0, "rms {rms}");
}

/// A call that ends without `stop` (the connection dropped, or silent for
/// `idle-timeout`) ends the src's branch with a WARNING and EOS, but the
/// appsrc's branch goes on, so no EOS reaches the bus: the bot ends at the
/// src's WARNING instead of waiting for good.
#[test]
fn the_python_voice_bot_exits_when_the_call_drops_without_stop() {
    let (_home, mut bot, lines, mut transcript, url) = start_bot("python-drop");
    let call = common::rt().block_on(async {
        let params = CallParams::default();
        let mut call = TwilioCall::connect_via(&Dialer::default(), &url, params, Playout::RealTime)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    });
    // The caller talks over the greeting: the bot stops feeding its appsrc
    // (a sink answering a fed appsrc with EOS would end the pipeline
    // anyway), then the connection drops.
    wait_for_line(&mut bot, &lines, &mut transcript, "saying \"menu\"");
    let report = common::rt().block_on(async {
        let script = Script {
            audio: audio::encode(&audio::tone(440.0, 0.5, 2.0)),
            linger: Duration::ZERO,
            ending: Ending::Drop,
            ..Script::default()
        };
        twilio_emulator::play::run(call, &script).await.unwrap()
    });
    assert!(report.invalid.is_empty(), "{:?}", report.invalid);

    let status = wait_for_exit(&mut bot, &lines, &mut transcript);
    assert!(status.success(), "the bot failed: {status}\n{transcript}");
    for line in [
        "barge-in (the caller speaks)",
        "the call dropped",
        "caller side (twiliostreamsrc): ",
        "bot side (twiliostreamsink): ",
    ] {
        assert!(transcript.contains(line), "no {line:?} in:\n{transcript}");
    }
}
