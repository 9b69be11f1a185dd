//! Hostile WebSocket framing from a started call, written byte by byte:
//! messages split in odd ways (one byte a frame, pings between the
//! fragments, a UTF-8 character cut in two), and fragments that break
//! RFC 6455. A message however split is the message; a broken one fails
//! the connection with the code RFC 6455 asks for, the audio before it out.

mod common;

use std::time::Duration;

use common::raw::{self, RawWs};
use common::*;
use futures::{SinkExt, StreamExt};
use gst::prelude::*;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const PCM8K: &str =
    "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false";

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

/// One client frame (masked with a zero key, so the payload is as given).
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    out.extend([0; 4]);
    out.extend(payload);
    out
}

/// `text` as a fragmented message: `piece` bytes a frame, each followed by
/// `between` (e.g. a ping).
fn fragmented(text: &[u8], piece: usize, between: &[u8]) -> Vec<u8> {
    let pieces: Vec<&[u8]> = text.chunks(piece).collect();
    let mut out = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let opcode = if i == 0 { TEXT } else { CONTINUATION };
        out.extend(frame(i + 1 == pieces.len(), opcode, p));
        out.extend(between);
    }
    out
}

async fn write_raw(ws: &mut RawWs, bytes: &[u8]) {
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() {
        tcp.write_all(bytes).await.unwrap();
    }
}

/// A started call on a socket of the test's own.
async fn raw_call(url: &str) -> (RawWs, String) {
    let (ws, params) = raw::started_call(url).await;
    (ws, params.stream_sid)
}

fn media(sid: &str, timestamp: u64, payload: &str) -> String {
    format!(
        r#"{{"event":"media","streamSid":"{sid}","media":{{"timestamp":"{timestamp}","payload":"{payload}"}}}}"#
    )
}

/// What comes next on `ws` until its close frame: the pongs' count and
/// the close code (None: the connection ended without one).
async fn until_close(ws: &mut RawWs) -> (usize, Option<u16>) {
    let mut pongs = 0;
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                break (pongs, frame.map(|f| u16::from(f.code)));
            }
            Ok(Some(Ok(Message::Pong(_)))) => pongs += 1,
            Ok(Some(Ok(_))) => {}
            Ok(_) => break (pongs, None),
            Err(_) => panic!("neither a close nor the end"),
        }
    }
}

/// A media message one byte a frame, a ping after each, then a mark whose
/// name's `é` is cut between two frames, then `stop`: all as if whole.
#[test]
fn a_message_split_a_byte_a_frame_among_pings_is_the_message() {
    let p = pipeline(PCM8K);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let text = rt().block_on(async {
        let (mut ws, sid) = raw_call(&url).await;
        let chunk = media(&sid, 0, "gICAgA==");
        let ping = frame(true, PING, b"p");
        write_raw(&mut ws, &fragmented(chunk.as_bytes(), 1, &ping)).await;
        let mark = format!(r#"{{"event":"mark","streamSid":"{sid}","mark":{{"name":"café"}}}}"#);
        // Between the two bytes of `é`.
        let cut = mark.find('é').unwrap() + 1;
        let (a, b) = mark.as_bytes().split_at(cut);
        let mut bytes = frame(false, TEXT, a);
        bytes.extend(frame(true, CONTINUATION, b));
        write_raw(&mut ws, &bytes).await;
        let stop = format!(r#"{{"event":"stop","streamSid":"{sid}"}}"#);
        write_raw(&mut ws, &fragmented(stop.as_bytes(), 7, &[])).await;
        ws.close(None).await.ok();
        let (pongs, _) = until_close(&mut ws).await;
        assert_eq!(pongs, chunk.len());
        mark
    });
    assert!(text.contains("café"));
    assert_eq!(collector.wait_eos().samples(), vec![32124; 4]);
    let messages = drain_messages(&p.bus().unwrap());
    let marks = element_messages(&messages, "twilio-mark");
    assert_eq!(marks.len(), 1);
    assert_eq!(marks[0].get::<String>("name").unwrap(), "café");
    assert_eq!(element_messages(&messages, "twilio-stop").len(), 1);
    set_state(&p, gst::State::Null);
}

/// A call whose audio went out, then `bad` bytes: closed with `code`, the
/// call ended with a warning and EOS.
fn fails_with(bad: impl FnOnce(&str) -> Vec<u8>, code: Option<u16>) {
    let p = pipeline(PCM8K);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    let got = rt().block_on(async {
        let (mut ws, sid) = raw_call(&url).await;
        ws.send(Message::text(media(&sid, 0, "gICAgA==")))
            .await
            .unwrap();
        collector.wait_buffers(1);
        write_raw(&mut ws, &bad(&sid)).await;
        until_close(&mut ws).await.1
    });
    assert_eq!(got, code);
    assert_eq!(collector.wait_eos().samples(), vec![32124; 4]);
    let warning = warnings(&p.bus().unwrap()).pop().expect("a warning");
    assert!(warning.contains("before any stop message"), "{warning}");
    set_state(&p, gst::State::Null);
}

#[test]
fn a_continuation_without_a_first_fragment_is_a_protocol_error() {
    fails_with(|_| frame(true, CONTINUATION, b"{}"), Some(1002));
}

#[test]
fn a_new_message_inside_a_fragmented_one_is_a_protocol_error() {
    fails_with(
        |sid| {
            let chunk = media(sid, 20, "gICAgA==");
            let mut bytes = frame(false, TEXT, &chunk.as_bytes()[..10]);
            bytes.extend(frame(true, TEXT, chunk.as_bytes()));
            bytes
        },
        Some(1002),
    );
}

#[test]
fn a_fragmented_ping_is_a_protocol_error() {
    fails_with(|_| frame(false, PING, b"p"), Some(1002));
}

#[test]
fn a_ping_longer_than_125_bytes_is_a_protocol_error() {
    fails_with(|_| frame(true, PING, &[0; 126]), Some(1002));
}

/// A close in the middle of a fragmented message is answered.
#[test]
fn a_close_mid_fragment_is_answered() {
    fails_with(
        |sid| {
            let chunk = media(sid, 20, "gICAgA==");
            let mut bytes = frame(false, TEXT, &chunk.as_bytes()[..10]);
            bytes.extend(frame(true, CLOSE, &4000u16.to_be_bytes()));
            bytes
        },
        Some(4000),
    );
}

/// Fragments adding up to more than 16 times max-message-size: 1009 once
/// the limit is passed, not once the message ends (it never does here).
#[test]
fn fragments_beyond_the_hard_limit_are_closed_with_1009() {
    fails_with(
        |_| {
            let piece = vec![b' '; 60_000];
            let mut bytes = frame(false, TEXT, &piece);
            for _ in 0..20 {
                bytes.extend(frame(false, CONTINUATION, &piece));
            }
            bytes
        },
        Some(1009),
    );
}

/// A frame header announcing 2^62 bytes is refused at once, without
/// waiting for (or allocating) them.
#[test]
fn a_frame_announcing_exabytes_is_closed_with_1009() {
    fails_with(
        |_| {
            let mut bytes = vec![0x81, 0x80 | 127];
            bytes.extend((1u64 << 62).to_be_bytes());
            bytes.extend([0; 4]);
            bytes
        },
        Some(1009),
    );
}

/// An unmasked client frame: 1002.
#[test]
fn an_unmasked_frame_is_a_protocol_error() {
    fails_with(|_| vec![0x81, 0x02, b'{', b'}'], Some(1002));
}

/// A message fragmented into thousands of empty frames is still one
/// message (nothing piles up per frame).
#[test]
fn thousands_of_empty_fragments_make_one_message() {
    let p = pipeline(PCM8K);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    rt().block_on(async {
        let (mut ws, sid) = raw_call(&url).await;
        let chunk = media(&sid, 0, "gICAgA==");
        let mut bytes = frame(false, TEXT, chunk.as_bytes());
        for _ in 0..100_000 {
            bytes.extend(frame(false, CONTINUATION, b""));
        }
        bytes.extend(frame(true, CONTINUATION, b""));
        write_raw(&mut ws, &bytes).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        ws.close(None).await.ok();
        until_close(&mut ws).await;
    });
    assert_eq!(collector.wait_eos().samples(), vec![32124; 4]);
    set_state(&p, gst::State::Null);
}
