//! G.722 and Opus calls (Telnyx), passed through end to end over real
//! loopback WebSockets: the src puts out each payload as it came, with the
//! caps GStreamer's decoders take (opusdec after it gives what it gives for
//! the packets themselves, sample for sample); the sink sends encoded input
//! into a call of the same codec (each Opus packet a message, G.722 in 20 ms
//! frames); a codec that cannot be made is an error, not noise.

mod common;

use base64::Engine as _;
use common::sink::*;
use common::src::{assert_contiguous, in_both_modes, start};
use common::*;
use gst::prelude::*;
use gsttwiliostream::codec::WireFormat;
use gsttwiliostream::protocol::Outbound;
use twilio_emulator::{CallParams, Playout, Provider, Received, TwilioCall};

in_both_modes!(
    opus_packets_come_out_one_buffer_each,
    opusdec_after_the_src_decodes_the_calls_packets,
    g722_comes_out_as_it_came,
    avdec_g722_after_the_src_decodes_the_calls_audio,
    opus_echo_sends_back_each_packet_as_it_came,
    opus_echo_through_a_queue_sends_back_each_packet_as_it_came,
    g722_echo_sends_back_each_frame_as_it_came,
);

/// `n` 20 ms Opus packets of a 440 Hz tone, as opusenc makes them (its
/// stream headers left out).
fn opus_packets(n: usize) -> Vec<Vec<u8>> {
    let p = pipeline(&format!(
        "audiotestsrc num-buffers={n} samplesperbuffer=960 freq=440 volume=0.3 ! \
         audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 ! fakesink name=sink"
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let got = collector.wait_eos();
    set_state(&p, gst::State::Null);
    let packets: Vec<Vec<u8>> = got
        .buffers
        .iter()
        .filter(|b| !b.flags().contains(gst::BufferFlags::HEADER))
        .map(|b| b.map_readable().unwrap().to_vec())
        .collect();
    assert!(packets.len() >= n - 1, "{} packets", packets.len());
    packets
}

/// A Telnyx call streaming `format` sends `payloads`, one message each, then stop.
fn play(url: &str, format: WireFormat, payloads: &[Vec<u8>]) {
    rt().block_on(async {
        let params = CallParams::of(Provider::Telnyx, format);
        let mut call = TwilioCall::start(url, params).await.unwrap();
        for payload in payloads {
            call.send_media(payload).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
}

/// Each buffer's bytes.
fn buffer_bytes(got: &common::Collected) -> Vec<Vec<u8>> {
    got.buffers
        .iter()
        .map(|b| b.map_readable().unwrap().to_vec())
        .collect()
}

fn sink_caps(p: &gst::Pipeline) -> gst::Caps {
    by_name(p, "sink")
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .unwrap()
}

fn opus_packets_come_out_one_buffer_each() {
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! audio/x-opus ! fakesink name=sink sync=false");
    let packets = opus_packets(25);
    play(&url, WireFormat::OPUS, &packets);
    let got = collector.wait_eos();
    assert_eq!(buffer_bytes(&got), packets);
    assert!(
        got.buffers
            .iter()
            .all(|b| b.duration() == Some(gst::ClockTime::from_mseconds(20)))
    );
    assert_contiguous(&got.buffers);
    assert_eq!(
        sink_caps(&p).to_string(),
        "audio/x-opus, channel-mapping-family=(int)0, rate=(int)48000, channels=(int)1"
    );
    set_state(&p, gst::State::Null);
}

/// What `decoder` (a launch line) makes of `buffers` on its own, as S16LE
/// mono at `rate`: each buffer 20 ms after the one before.
fn decoded_alone(decoder: &str, caps: &str, rate: u32, buffers: &[Vec<u8>]) -> Vec<i16> {
    init();
    let mut h = gst_check::Harness::new_parse(decoder);
    h.set_src_caps_str(caps);
    h.set_sink_caps_str(&format!("audio/x-raw,format=S16LE,rate={rate},channels=1"));
    h.play();
    for (i, bytes) in buffers.iter().enumerate() {
        let mut buffer = gst::Buffer::from_slice(bytes.clone());
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(20 * i as u64));
        b.set_duration(gst::ClockTime::from_mseconds(20));
        h.push(buffer).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let mut out = Vec::new();
    while let Some(buffer) = h.try_pull() {
        let map = buffer.map_readable().unwrap();
        out.extend(
            map.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]])),
        );
    }
    out
}

/// What opusdec makes of `packets` on its own.
fn opusdec_alone(packets: &[Vec<u8>]) -> Vec<i16> {
    decoded_alone(
        "opusdec",
        "audio/x-opus,channel-mapping-family=0,rate=48000,channels=1",
        48000,
        packets,
    )
}

fn opusdec_after_the_src_decodes_the_calls_packets() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! opusdec ! \
         audio/x-raw,format=S16LE,rate=48000,channels=1 ! fakesink name=sink sync=false",
    );
    let packets = opus_packets(25);
    play(&url, WireFormat::OPUS, &packets);
    let got = collector.wait_eos().samples();
    let alone = opusdec_alone(&packets);
    assert_eq!(got.len(), 960 * packets.len());
    assert_eq!(got, alone);
    // The tone, not silence.
    assert!(got.iter().map(|&s| s.unsigned_abs()).max().unwrap() > 3000);
    set_state(&p, gst::State::Null);
}

fn g722_comes_out_as_it_came() {
    let (p, collector, url) =
        start("twiliostreamsrc name=src port=0 ! audio/G722 ! fakesink name=sink sync=false");
    let frames: Vec<Vec<u8>> = (0..10u32)
        .map(|f| (0..160u32).map(|i| (i * 13 + f * 7) as u8).collect())
        .collect();
    play(&url, WireFormat::G722, &frames);
    let got = collector.wait_eos();
    assert_eq!(got.bytes(), frames.concat());
    assert_eq!(got.buffers.len(), 10);
    assert!(
        got.buffers
            .iter()
            .all(|b| b.duration() == Some(gst::ClockTime::from_mseconds(20)))
    );
    assert_contiguous(&got.buffers);
    assert_eq!(
        sink_caps(&p).to_string(),
        "audio/G722, rate=(int)16000, channels=(int)1"
    );
    set_state(&p, gst::State::Null);
}

/// `frames` 20 ms G.722 frames (160 bytes) of a 440 Hz tone at 16 kHz, as
/// avenc_g722 (FFmpeg, `gstreamer1.0-libav`) makes them.
fn g722_frames(frames: usize) -> Vec<Vec<u8>> {
    let p = pipeline(&format!(
        "audiotestsrc num-buffers={frames} samplesperbuffer=320 freq=440 volume=0.3 ! \
         audio/x-raw,format=S16LE,rate=16000,channels=1 ! avenc_g722 ! fakesink name=sink"
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let bytes = collector.wait_eos().bytes();
    set_state(&p, gst::State::Null);
    assert!(bytes.len() >= 160 * (frames - 1), "{} bytes", bytes.len());
    bytes.chunks_exact(160).map(<[u8]>::to_vec).collect()
}

/// What avdec_g722 makes of `frames` on its own.
fn avdec_g722_alone(frames: &[Vec<u8>]) -> Vec<i16> {
    decoded_alone(
        "avdec_g722 ! audioconvert",
        "audio/G722,rate=16000,channels=1",
        16000,
        frames,
    )
}

fn avdec_g722_after_the_src_decodes_the_calls_audio() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 ! avdec_g722 ! audioconvert ! \
         audio/x-raw,format=S16LE,rate=16000,channels=1 ! fakesink name=sink sync=false",
    );
    let frames = g722_frames(25);
    play(&url, WireFormat::G722, &frames);
    let got = collector.wait_eos().samples();
    let alone = avdec_g722_alone(&frames);
    assert_eq!(got.len(), 320 * frames.len());
    assert_eq!(got, alone);
    // The tone, not silence.
    assert!(got.iter().map(|&s| s.unsigned_abs()).max().unwrap() > 3000);
    set_state(&p, gst::State::Null);
}

/// A Telnyx call streaming `format` into `twiliostreamsrc ! {between}
/// twiliostreamsink` sends `payloads`: what comes back, payload for payload.
fn echo(between: &str, format: WireFormat, payloads_in: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let (p, _collector, url) = start(&format!(
        "twiliostreamsrc name=src port=0 ! {between} twiliostreamsink name=sink"
    ));
    let mut call = telnyx_call(&url, format);
    for payload in payloads_in {
        call.send_media(payload).unwrap();
    }
    let bus = p.bus().unwrap();
    let error = || bus.pop_filtered(&[gst::MessageType::Error]);
    let got = receive_until(&mut call, |got| {
        if let Some(error) = error() {
            set_state(&p, gst::State::Null);
            panic!("{error:?}");
        }
        payloads(got).len() >= payloads_in.len()
    });
    call.send_stop().unwrap();
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
    payloads(&got)
}

/// The src switches to the call's own caps at `start` (not to PCM at the
/// call's 48 kHz, which it cannot output), which the sink takes.
fn opus_echo_sends_back_each_packet_as_it_came() {
    let packets = opus_packets(25);
    assert_eq!(echo("", WireFormat::OPUS, &packets), packets);
}

fn opus_echo_through_a_queue_sends_back_each_packet_as_it_came() {
    let packets = opus_packets(25);
    assert_eq!(echo("queue !", WireFormat::OPUS, &packets), packets);
}

fn g722_echo_sends_back_each_frame_as_it_came() {
    let frames = g722_frames(25);
    assert_eq!(echo("queue !", WireFormat::G722, &frames), frames);
}

/// A Telnyx call of `format` to `url`: how it was closed, and why.
fn refused_call(url: &str, format: WireFormat) -> (Option<Received>, Option<String>) {
    rt().block_on(async {
        let params = CallParams::of(Provider::Telnyx, format);
        let mut call = TwilioCall::start(url, params).await.unwrap();
        (call.recv_timeout(PATIENCE).await, call.close_reason())
    })
}

/// What `bus` was told: each WARNING's and ERROR's message.
fn told(bus: &gst::Bus) -> Vec<String> {
    drain_messages(bus)
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            gst::MessageView::Error(e) => Some(format!("ERROR {}", e.error())),
            _ => None,
        })
        .collect()
}

/// Downstream that takes raw audio only: an Opus or G.722 call (passed
/// through only) is refused at its `start`, 1003 with the reason and a
/// WARNING, and the pipeline takes the next call.
#[test]
fn a_compressed_call_into_raw_audio_only_is_refused_at_start() {
    // (pending-timeout=0: refused at once.)
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 pending-timeout=0 ! audio/x-raw,rate=8000 ! \
         fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    let mut reasons = Vec::new();
    for (format, why) in [
        (
            WireFormat::OPUS,
            "the src's downstream takes no audio/x-opus; this call carries OPUS@48000",
        ),
        (
            WireFormat::G722,
            "the src's downstream takes no audio/G722; this call carries G722@16000",
        ),
    ] {
        let closed = refused_call(&url, format);
        assert_eq!(
            closed,
            (Some(Received::Closed(Some(1003))), Some(why.to_owned()))
        );
        reasons.push(format!("Refused a call (close code 1003): {why}"));
    }
    assert_eq!(told(&bus), reasons);
    assert_eq!(by_name(&p, "src").property::<u64>("refused-calls"), 2);
    // A call it takes comes out.
    play(&url, WireFormat::PCMA, &[vec![0xD5; 160]]);
    assert_eq!(collector.wait_eos().samples(), vec![8; 160]);
    set_state(&p, gst::State::Null);
}

/// Opus output only (no decoder after it): a call of another codec is
/// refused at its `start`, and an Opus call after it comes out.
#[test]
fn opus_output_refuses_a_call_of_another_codec() {
    let (p, collector, url) = start(
        "twiliostreamsrc name=src port=0 pending-timeout=1 ! audio/x-opus ! fakesink name=sink sync=false",
    );
    let bus = p.bus().unwrap();
    let why = "the src's downstream takes compressed audio only; this call carries PCMA@8000";
    let closed = refused_call(&url, WireFormat::PCMA);
    assert_eq!(
        closed,
        (Some(Received::Closed(Some(1003))), Some(why.to_owned()))
    );
    assert_eq!(
        told(&bus),
        [format!("Refused a call (close code 1003): {why}")]
    );
    let packets = opus_packets(3);
    play(&url, WireFormat::OPUS, &packets);
    let got = collector.wait_eos();
    assert_eq!(buffer_bytes(&got), packets);
    set_state(&p, gst::State::Null);
}

/// The sink dialled by a Telnyx call streaming `format`.
fn dial_telnyx(sink: &gst::Element, format: WireFormat) -> TwilioCall {
    telnyx_call(&url_of(sink), format)
}

/// A Telnyx call streaming `format` to `url`, started, its playout instant.
fn telnyx_call(url: &str, format: WireFormat) -> TwilioCall {
    rt().block_on(async {
        let params = CallParams::of(Provider::Telnyx, format);
        let mut call = TwilioCall::connect_with(url, params, Playout::Instant)
            .await
            .unwrap();
        call.begin().unwrap();
        call
    })
}

fn payloads(got: &[Received]) -> Vec<Vec<u8>> {
    got.iter()
        .filter_map(|r| match r {
            Received::Message(Outbound::Media { media, .. }, _) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(&media.payload)
                    .unwrap(),
            ),
            _ => None,
        })
        .collect()
}

#[test]
fn the_sink_sends_each_opus_packet_as_a_message() {
    let mut h = sink_harness("audio/x-opus,channel-mapping-family=0,channels=1");
    let sink = h.element().unwrap();
    let mut call = dial_telnyx(&sink, WireFormat::OPUS);
    let mut header =
        gst::Buffer::from_slice(b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0".to_vec());
    header
        .get_mut()
        .unwrap()
        .set_flags(gst::BufferFlags::HEADER);
    h.push(header).unwrap();
    let packets = opus_packets(5);
    for packet in &packets {
        h.push(gst::Buffer::from_slice(packet.clone())).unwrap();
    }
    let got = receive_until(&mut call, |got| payloads(got).len() >= packets.len());
    assert_eq!(payloads(&got), packets);
    assert_eq!(sink.property::<u64>("chunks-sent"), packets.len() as u64);
}

/// G.722 goes out in 20 ms frames; the last, short one (at EOS) is padded
/// to Telnyx's 20 ms with the code that decodes to silence soonest: after
/// a tone, FFmpeg's decoder plays it below −40 dBFS within 6 ms.
#[test]
fn the_sink_sends_g722_in_20_ms_frames_the_last_one_padded() {
    let mut h = sink_harness("audio/G722,rate=16000,channels=1");
    let sink = h.element().unwrap();
    let mut call = dial_telnyx(&sink, WireFormat::G722);
    let g722 = g722_frames(5).concat()[..730].to_vec();
    h.push(gst::Buffer::from_slice(g722[..150].to_vec()))
        .unwrap();
    h.push(gst::Buffer::from_slice(g722[150..].to_vec()))
        .unwrap();
    h.push_event(gst::event::Eos::new());
    let got = payloads(&receive_until(&mut call, |got| payloads(got).len() >= 5));
    let mut last = g722[640..].to_vec();
    last.resize(160, 0xFF);
    let expected: Vec<&[u8]> = vec![
        &g722[..160],
        &g722[160..320],
        &g722[320..480],
        &g722[480..640],
        &last,
    ];
    assert_eq!(got, expected);
    let decoded = avdec_g722_alone(&got);
    let loudest = |samples: &[i16]| samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
    // Two samples a byte: the tone until the cut, silence 6 ms after it.
    assert!(loudest(&decoded[1000..1460]) > 3000);
    assert!(
        loudest(&decoded[1460 + 96..]) < 328,
        "{:?}",
        &decoded[1460..]
    );
}

#[test]
fn g722_input_into_a_call_of_another_codec_is_an_error() {
    let mut h = sink_harness("audio/G722,rate=16000,channels=1");
    let sink = h.element().unwrap();
    let _call = dial_telnyx(&sink, WireFormat::PCMU);
    assert_eq!(
        h.push(gst::Buffer::from_slice(vec![0u8; 160])),
        Err(gst::FlowError::NotNegotiated)
    );
}
