#!/usr/bin/python3
"""A voice bot on twiliostream, in Python with PyGObject.

The same bot as examples/voicebot (Rust), for the installed plugin
(scripts/install) and Debian's python3-gi (hence /usr/bin/python3 above: a
pyenv or venv Python has no `gi` unless built with it). One pipeline per call:

    twiliostreamsrc ! queue ! level ! fakesink     (voice activity; speech-to-text would go here)
    appsrc (prompts: espeak at 24 kHz) ! twiliostreamsink sync=false

The bot feeds its prompts into the appsrc in real time, 100 ms ahead, the
way a streaming text-to-speech engine delivers audio, so nothing waits
upstream of the sink. That makes the sink's action signals exact enough:
`send-mark` once a prompt has gone into the sink, and `clear` on barge-in
(when the caller starts speaking, by `level` against a threshold with a hang
time, or presses a key), after which `twilio-clear` tells how much of the
prompt the caller heard. `#` says goodbye and, once the caller has heard it,
`end-stream` hands the call back to the TwiML. Both elements' `stats` are
printed at the end.

    /usr/bin/python3 examples/python/voicebot.py --port 8080
    cargo run -p twilio-emulator -- ws://127.0.0.1:8080/ --say "Hello there" --audio-at 4.5 \\
        --seconds 16 --dtmf 2@10 --dtmf '#@12' --linger 5
"""

import argparse
import sys
import time

import gi

gi.require_version("Gst", "1.0")
from gi.repository import GLib, Gst  # noqa: E402

RATE = 24000  # the prompts' rate, as most TTS engines give it
CHUNK = RATE // 50  # 20 ms of samples
CHUNK_NS = 20 * Gst.MSECOND
LEAD_NS = 100 * Gst.MSECOND  # how far ahead of real time the prompts are fed
CLOCK_TIME_NONE = 2**64 - 1


def synthesize(text):
    """`text` spoken by GStreamer's espeak element: S16LE mono bytes at RATE."""
    tts = Gst.parse_launch(
        "espeak name=voice ! audioconvert ! audioresample "
        f"! audio/x-raw,format=S16LE,rate={RATE},channels=1 ! appsink name=out sync=false"
    )
    tts.get_by_name("voice").set_property("text", text)
    tts.set_state(Gst.State.PLAYING)
    # appsink holds EOS back until every sample is pulled: pull to the end.
    out = tts.get_by_name("out")
    pcm = bytearray()
    while (sample := out.emit("try-pull-sample", 10 * Gst.SECOND)) is not None:
        buf = sample.get_buffer()
        pcm += buf.extract_dup(0, buf.get_size())
    done = out.get_property("eos")
    error = tts.get_bus().pop_filtered(Gst.MessageType.ERROR)
    tts.set_state(Gst.State.NULL)
    if not done or error is not None:
        raise RuntimeError(f"espeak failed for {text!r}: {error and error.parse_error()[0].message}")
    return bytes(pcm)


class Vad:
    """Voice activity from level's RMS: speech starts after `onset` ns above
    `threshold_db`, and ends after `hang` ns below it."""

    def __init__(self, threshold_db=-35.0, onset=60 * Gst.MSECOND, hang=600 * Gst.MSECOND):
        self.threshold_db, self.onset, self.hang = threshold_db, onset, hang
        self.loud_since = None
        self.speaking_since = None
        self.last_loud = 0

    def feed(self, start, end, rms_db):
        """One interval; ("started", t), ("ended", from, to) or None."""
        loud = rms_db >= self.threshold_db
        if self.speaking_since is None:
            if not loud:
                self.loud_since = None
                return None
            if self.loud_since is None:
                self.loud_since = start
            if end - self.loud_since >= self.onset:
                self.speaking_since, self.last_loud = self.loud_since, end
                return ("started", self.loud_since)
        elif loud:
            self.last_loud = end
        elif end - self.last_loud >= self.hang:
            turn = ("ended", self.speaking_since, self.last_loud)
            self.speaking_since = self.loud_since = None
            return turn
        return None


class Prompt:
    def __init__(self, name, text, pcm):
        self.name, self.text, self.pcm = name, text, pcm
        self.fed = 0  # bytes pushed so far
        self.start = None  # running time of its first sample
        self.mark_due = False  # fed whole: send its mark at the next tick
        self.duration = len(pcm) // 2 * Gst.SECOND // RATE


def secs(ns):
    return ns / Gst.SECOND


class Bot:
    def __init__(self, pipeline, loop):
        self.pipeline, self.loop = pipeline, loop
        self.src = pipeline.get_by_name("in")
        self.tts = pipeline.get_by_name("tts")
        self.out = pipeline.get_by_name("out")
        self.t0 = time.monotonic()
        self.queue = []  # prompts to feed, the first one feeding
        self.fed = []  # fed whole, mark sent or due
        self.interrupted = []  # cut by a barge-in, until twilio-clear
        self.fed_until = 0  # running time the next chunk starts at
        self.hang_up_after = None
        self.vad = Vad()
        GLib.timeout_add(20, self.feed)

    def say(self, line):
        print(f"[bot {time.monotonic() - self.t0:6.2f}s] {line}", flush=True)

    def speaking(self):
        return bool(self.queue or self.fed)

    def play(self, name, text):
        prompt = Prompt(name, text, synthesize(text))
        self.say(f'saying "{name}" ({secs(prompt.duration):.2f} s): "{text}"')
        self.queue.append(prompt)

    def feed(self):
        """Every 20 ms: push the prompts up to LEAD ahead of real time; send
        the mark of a prompt fed whole one tick later (it is in the sink)."""
        for p in [p for p in self.fed if p.mark_due]:
            p.mark_due = False
            self.out.emit("send-mark", p.name)
        now = self.pipeline.get_current_running_time()
        self.fed_until = max(self.fed_until, now)
        while self.queue and self.fed_until < now + LEAD_NS:
            p = self.queue[0]
            if p.start is None:
                p.start = self.fed_until
            chunk = p.pcm[p.fed : p.fed + 2 * CHUNK]
            p.fed += len(chunk)
            buf = Gst.Buffer.new_wrapped(chunk)
            buf.pts = self.fed_until
            buf.duration = len(chunk) // 2 * Gst.SECOND // RATE
            self.fed_until += buf.duration
            self.tts.emit("push-buffer", buf)
            if p.fed >= len(p.pcm):
                p.mark_due = True
                self.fed.append(self.queue.pop(0))
        return GLib.SOURCE_CONTINUE

    def interrupt(self, why):
        """Barge-in: stop feeding, and `clear` what the sink and Twilio hold."""
        cut = self.fed + [p for p in self.queue if p.start is not None]
        self.say(f"barge-in ({why}): stopping {[p.name for p in self.fed + self.queue]}")
        self.interrupted += cut
        self.queue, self.fed = [], []
        self.out.emit("clear")

    def level(self, s):
        start, duration = s.get_value("running-time"), s.get_value("duration")
        turn = self.vad.feed(start, start + duration, s.get_value("rms")[0])
        if turn and turn[0] == "started":
            self.say(f"the caller started speaking (running time {secs(turn[1]):.2f} s)")
            if self.speaking():
                self.interrupt("the caller speaks")
        elif turn:
            spoke = secs(turn[2] - turn[1])
            self.say(f"the caller stopped speaking ({spoke:.1f} s)")
            self.play(
                "heard-you",
                f"I heard you talk for {max(spoke, 1):.0f} seconds, but I only "
                "understand keys. Please press one.",
            )

    def cleared(self, s):
        ok, played = s.get_uint64("played")
        ok, dropped = s.get_uint64("dropped")
        self.say(f"Twilio cleared ({s.get_string('reason')}): {secs(dropped):.2f} s sent and never heard")
        for p in self.interrupted:
            heard = 0 if played == CLOCK_TIME_NONE else min(max(played - p.start, 0), p.duration)
            self.say(
                f'  the caller heard {secs(heard):.2f} s of "{p.name}" '
                f"({100 * heard / p.duration:.0f} % of {secs(p.duration):.2f} s)"
            )
        self.interrupted = []

    def on_message(self, _bus, msg):
        if msg.type == Gst.MessageType.ELEMENT:
            s = msg.get_structure()
            name = s.get_name()
            if name == "level":
                self.level(s)
            elif name == "twilio-start":
                params = s.get_value("custom-parameters")
                caller = params.get_string("caller") if params else None
                # (An array: reading it needs GStreamer's overrides, python3-gst-1.0.)
                tracks = ", ".join(s.get_value("tracks"))
                self.say(
                    f"call {s.get_string('call-sid')} from {caller or 'an unknown caller'} "
                    f"started (tracks: {tracks})"
                )
                self.play("greeting", "Hello, and thanks for calling the twiliostream demo.")
                self.play(
                    "menu",
                    "You can talk to me, or press a key on your phone. "
                    "Press the hash key when you want to hang up.",
                )
            elif name == "twilio-dtmf":
                digit = s.get_string("digit")
                self.say(f"the caller pressed {digit}")
                if self.speaking():
                    self.interrupt(f"key {digit}")
                if digit == "#":
                    self.play("goodbye", "Goodbye, and thanks for calling.")
                    self.hang_up_after = "goodbye"
                else:
                    self.play(f"digit-{digit}", f"You pressed {digit}.")
            elif name == "twilio-clear":
                self.cleared(s)
            elif name == "twilio-mark":
                mark = s.get_string("name")
                played = any(p.name == mark for p in self.fed)
                self.fed = [p for p in self.fed if p.name != mark]
                self.say(f'mark "{mark}" came back: ' + ("played to the end" if played else "cleared by the barge-in"))
                if mark == self.hang_up_after:
                    self.say("goodbye played, ending the stream (end-stream)")
                    self.out.emit("end-stream", False)
            elif name == "twilio-stop":
                self.say("the caller hung up")
                self.loop.quit()
            elif name == "twilio-ended":
                self.say(f"stream ended by the bot ({s.get_string('reason')}): Twilio goes on with the TwiML")
                self.loop.quit()
        elif msg.type == Gst.MessageType.WARNING:
            err = msg.parse_warning()[0]
            self.say(f"warning: {err.message}")
            # The connection ended without stop (dropped, or no media for
            # idle-timeout): the src goes EOS, but the appsrc branch never
            # ends, so no EOS reaches the bus.
            if msg.src == self.src and err.matches(Gst.ResourceError.quark(), Gst.ResourceError.READ):
                self.say("the call dropped")
                self.loop.quit()
        elif msg.type == Gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            self.say(f"error: {err.message} ({debug})")
            self.exit_code = 1
            self.loop.quit()
        elif msg.type == Gst.MessageType.EOS:
            self.loop.quit()


def stats(element):
    s = element.get_property("stats")
    fields = []
    for i in range(s.n_fields()):
        key = s.nth_field_name(i)
        value = s.get_value(key)
        fields.append(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(fields)


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--host", default="127.0.0.1", help="address to listen on")
    args.add_argument("--port", type=int, default=8080, help="port to listen on (0: any free port)")
    args.add_argument("--path", default="/", help="URL path of the stream")
    args = args.parse_args()

    Gst.init(None)
    if Gst.ElementFactory.find("twiliostreamsrc") is None:
        sys.exit("twiliostreamsrc not found: install the plugin with scripts/install")
    pipeline = Gst.parse_launch(
        f"twiliostreamsrc name=in host={args.host} port={args.port} path={args.path} "
        "! queue ! level interval=20000000 ! fakesink sync=false async=false "
        "appsrc name=tts format=time is-live=true "
        f"caps=audio/x-raw,format=S16LE,rate={RATE},channels=1,layout=interleaved "
        "! twiliostreamsink name=out sync=false"
    )
    loop = GLib.MainLoop()
    bot = Bot(pipeline, loop)
    bot.exit_code = 0
    bus = pipeline.get_bus()
    bus.add_signal_watch()
    bus.connect("message", bot.on_message)
    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        sys.exit("the pipeline did not start (is the port free?)")
    src = pipeline.get_by_name("in")
    bot.say(f"listening on ws://{args.host}:{src.get_property('bound-port')}{src.get_property('path')}")
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    bot.say(f"caller side (twiliostreamsrc): {stats(src)}")
    bot.say(f"bot side (twiliostreamsink): {stats(bot.out)}")
    pipeline.set_state(Gst.State.NULL)
    return bot.exit_code


if __name__ == "__main__":
    sys.exit(main())
