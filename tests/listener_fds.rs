//! A listener in a process out of file descriptors before `max-connections`
//! is reached: the oldest connection that is not a call yet makes room, as
//! at `max-connections`, so idle sockets cannot keep a call out. A binary
//! of its own: the test takes every descriptor the process has left.

mod common;

use std::sync::Arc;

use common::raw::masked_text;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, Dialer};

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// TLS to 127.0.0.1:`port` (no name looked up: that takes a descriptor).
async fn tls(
    port: u16,
    config: &Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connector = tokio_rustls::TlsConnector::from(config.clone());
    tokio::time::timeout(PATIENCE, connector.connect(name, tcp))
        .await
        .expect("the listener never answered")
        .unwrap()
}

#[test]
fn out_of_descriptors_an_idle_connection_makes_room_for_a_call() {
    let dir = temp_dir("fds");
    let (cert, key) = self_signed(&dir, "localhost");
    let (p, collector, port) = tls_src(&cert, &key, "handshake-timeout=60");
    let config = Dialer::trusting(&cert).unwrap();
    let sid = CallParams::default().stream_sid;
    let start = format!(
        r#"{{"event":"start","streamSid":"{sid}","start":{{"accountSid":"AC1","streamSid":"{sid}","callSid":"CA1","tracks":["inbound"],"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#
    );
    let media = format!(
        r#"{{"event":"media","streamSid":"{sid}","media":{{"timestamp":"0","payload":"gICAgA=="}}}}"#
    );
    let stop = format!(
        r#"{{"event":"stop","streamSid":"{sid}","stop":{{"accountSid":"AC1","callSid":"CA1"}}}}"#
    );
    rt().block_on(async {
        // Idle strangers, each accepted (its TLS done), far below
        // max-connections (4096).
        let mut strangers = Vec::new();
        for _ in 0..4 {
            strangers.push(tls(port, &config).await);
        }
        // Every descriptor left taken; one given back for the call's socket.
        let mut taken = Vec::new();
        let full = loop {
            match std::fs::File::open("/dev/null") {
                Ok(file) => taken.push(file),
                Err(e) => break e,
            }
        };
        assert_eq!(full.raw_os_error(), Some(24), "{full}");
        drop(taken.pop());
        let mut call = tls(port, &config).await;
        drop(taken);
        call.write_all(UPGRADE).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(call.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101 "));
        for text in [&start, &media, &stop] {
            call.write_all(&masked_text(text)).await.unwrap();
        }
        call.flush().await.unwrap();
        // The oldest stranger made room.
        let mut rest = Vec::new();
        let ended = strangers[0].read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "{ended:?} {rest:?}");
    });
    assert_eq!(collector.wait_eos().samples(), decode(&[0x80; 4]));
    set_state(&p, gst::State::Null);
    std::fs::remove_dir_all(&dir).unwrap();
}
