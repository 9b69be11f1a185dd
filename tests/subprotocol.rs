//! The WebSocket subprotocol (`Sec-WebSocket-Protocol`, RFC 6455 §4.2.2):
//! Somleng's `audio.somleng.org`, offered alone, in a list, over several
//! header lines or in any case, is answered in the 101 as the client
//! spelled it; an offer of nothing we speak gets no answer. The 101's head
//! is checked byte for byte on a raw loopback socket, and the call then
//! goes on over that socket.

mod common;

use std::io::{Read, Write};

use base64::Engine as _;
use common::src::start;
use common::*;
use futures::SinkExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::Role;

/// RFC 6455 §1.3's example key, and the accept value it gives.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

const SID: &str = "MZ0123456789abcdef0123456789abcdef";

/// A src putting out the call's μ-law as it came.
fn listening(props: &str) -> (gst::Pipeline, Collector, String) {
    start(&format!(
        "twiliostreamsrc name=src port=0 {props} ! audio/x-mulaw ! fakesink name=sink sync=false"
    ))
}

/// The 101 the server must send, byte for byte (tungstenite writes header
/// names in lower case), with `protocol` answered or not.
fn switching(protocol: Option<&str>) -> String {
    let answered = protocol.map_or(String::new(), |p| {
        format!("sec-websocket-protocol: {p}\r\n")
    });
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-accept: {ACCEPT}\r\n{answered}\r\n"
    )
}

/// Sends an upgrade request for `url` with the header lines `extra` (each
/// ending in CRLF) on a raw socket; returns the answer's head as it came
/// (nothing past it is read) and the socket.
fn upgrade(url: &str, extra: &str) -> (String, std::net::TcpStream) {
    let rest = url.strip_prefix("ws://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\
         {extra}\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed after {head:?}");
        head.push(byte[0]);
    }
    (String::from_utf8(head).unwrap(), s)
}

/// 20 ms of μ-law that is not silence.
fn payload() -> Vec<u8> {
    (0..160u32).map(|i| (i * 37 % 251) as u8).collect()
}

/// Plays a call as Somleng sends one (Twilio's messages) on `ws`: start,
/// one chunk of [`payload`], stop.
async fn somleng_call<S>(ws: &mut WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let payload = base64::engine::general_purpose::STANDARD.encode(payload());
    for text in [
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_owned(),
        format!(
            r#"{{"event":"start","sequenceNumber":"1","start":{{"streamSid":"{SID}",
            "accountSid":"AC1","callSid":"CA1","tracks":["inbound"],"mediaFormat":
            {{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}},"streamSid":"{SID}"}}"#
        ),
        format!(
            r#"{{"event":"media","sequenceNumber":"2","media":{{"track":"inbound","chunk":"1",
            "timestamp":"0","payload":"{payload}"}},"streamSid":"{SID}"}}"#
        ),
        format!(
            r#"{{"event":"stop","sequenceNumber":"3","stop":{{"accountSid":"AC1",
            "callSid":"CA1"}},"streamSid":"{SID}"}}"#
        ),
    ] {
        ws.send(Message::text(text)).await.unwrap();
    }
    let _ = ws.close(None).await;
}

/// Goes on, as the client, over the socket `upgrade` left after the 101,
/// and checks that the call's audio came out as sent.
fn the_call_works(socket: std::net::TcpStream, collector: &Collector) {
    rt().block_on(async {
        socket.set_nonblocking(true).unwrap();
        let socket = tokio::net::TcpStream::from_std(socket).unwrap();
        let mut ws = WebSocketStream::from_raw_socket(socket, Role::Client, None).await;
        somleng_call(&mut ws).await;
    });
    assert_eq!(collector.wait_eos().bytes(), payload());
}

#[test]
fn somlengs_offer_is_answered_and_the_call_works() {
    let (p, collector, url) = listening("");
    let (head, socket) = upgrade(&url, "Sec-WebSocket-Protocol: audio.somleng.org\r\n");
    assert_eq!(head, switching(Some("audio.somleng.org")));
    the_call_works(socket, &collector);
    set_state(&p, gst::State::Null);
}

#[test]
fn an_offer_over_several_lines_in_any_case_is_answered_as_spelled() {
    let (p, collector, url) = listening("dialect=twilio");
    let (head, socket) = upgrade(
        &url,
        "sec-websocket-protocol: chat, superchat\r\n\
         SEC-WEBSOCKET-PROTOCOL: x ,\tAudio.Somleng.ORG , y\r\n",
    );
    assert_eq!(head, switching(Some("Audio.Somleng.ORG")));
    the_call_works(socket, &collector);
    set_state(&p, gst::State::Null);
}

#[test]
fn an_offer_of_nothing_we_speak_gets_no_answer_and_the_call_works() {
    for extra in [
        "",
        "Sec-WebSocket-Protocol: audio.jambonz.org, chat\r\n",
        "Sec-WebSocket-Protocol: audio.somleng.org.example\r\n",
    ] {
        let (p, collector, url) = listening("");
        let (head, socket) = upgrade(&url, extra);
        assert_eq!(head, switching(None), "{extra:?}");
        the_call_works(socket, &collector);
        set_state(&p, gst::State::Null);
    }
}

/// Somleng speaks Twilio's messages: a path whose dialect is another does
/// not claim its subprotocol.
#[test]
fn a_path_of_another_dialect_does_not_answer_somlengs() {
    for dialect in ["telnyx", "signalwire"] {
        let (p, _collector, url) = listening(&format!("dialect={dialect}"));
        let (head, _socket) = upgrade(&url, "Sec-WebSocket-Protocol: audio.somleng.org\r\n");
        assert_eq!(head, switching(None), "{dialect}");
        set_state(&p, gst::State::Null);
    }
}

/// tungstenite's client fails the connection when its offer goes
/// unanswered (libwebsockets, Somleng's, goes on without): with the
/// answer, it connects and the call works.
#[test]
fn a_client_that_requires_an_answer_gets_one() {
    let (p, collector, url) = listening("");
    rt().block_on(async {
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "chat, audio.somleng.org".parse().unwrap(),
        );
        let (mut ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("the offer answered");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "audio.somleng.org"
        );
        somleng_call(&mut ws).await;
    });
    assert_eq!(collector.wait_eos().bytes(), payload());
    set_state(&p, gst::State::Null);
}
