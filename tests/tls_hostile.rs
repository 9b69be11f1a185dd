//! Hostile clients of a listener that speaks TLS itself (`tls-certificate`,
//! `tls-key`): what is not TLS 1.2 or 1.3 gets a fatal alert and is closed
//! at once, a handshake that stalls is dropped at `handshake-timeout` or
//! evicted by `max-connections` like any other, the bound on what a
//! connection may send before `start` holds over TLS as without, a call
//! that drops is said to have dropped as without TLS, HTTP refusals end
//! with close_notify, strangers on a listener two elements share count on
//! their own path only, and a real call gets through after all of it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

use common::raw::masked_text;
use common::*;
use gst::prelude::*;
use twilio_emulator::audio::decode;
use twilio_emulator::{CallParams, Dialer};

/// A pipeline around a src listening with a fresh self-signed certificate
/// for `localhost`.
struct TlsSrc {
    p: gst::Pipeline,
    src: gst::Element,
    collector: Collector,
    cert: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl TlsSrc {
    fn start(name: &str, props: &str) -> TlsSrc {
        let dir = temp_dir(name);
        let (cert, key) = self_signed(&dir, "localhost");
        let (p, collector, port) = tls_src(&cert, &key, props);
        let src = by_name(&p, "src");
        TlsSrc {
            p,
            src,
            collector,
            cert,
            dir,
            port,
        }
    }

    fn tls(&self) -> Arc<rustls::ClientConfig> {
        Dialer::trusting(&self.cert).unwrap()
    }

    fn url(&self) -> String {
        format!("wss://localhost:{}/", self.port)
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.port)).unwrap()
    }

    /// The first flight of a real TLS 1.2/1.3 client: its ClientHello.
    fn client_hello(&self) -> Vec<u8> {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(self.tls(), name).unwrap();
        let mut hello = Vec::new();
        client.write_tls(&mut hello).unwrap();
        hello
    }

    /// A whole wss:// call of `ulaw`, ended by the caller; its audio must
    /// come out whole.
    fn real_call(&self, ulaw: &[u8]) {
        call_over_tls(self.tls(), &self.url(), ulaw);
        assert_eq!(self.collector.wait_eos().samples(), decode(ulaw));
    }

    fn stop(self) {
        set_state(&self.p, gst::State::Null);
        std::fs::remove_dir_all(&self.dir).unwrap();
    }
}

/// What the server sends until it closes the connection (a reset counts
/// as closed; a read still waiting after PATIENCE fails the test).
fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("not closed: {e} (after {} bytes)", got.len()),
        }
    }
}

/// A TLS 1.0 (`minor` 1) or 1.1 (2) ClientHello of a client that knows
/// nothing newer: no extensions, two CBC suites of its time.
fn legacy_hello(minor: u8) -> Vec<u8> {
    let mut body = vec![3, minor];
    body.extend([7; 32]); // random
    body.push(0); // no session id
    body.extend([0, 4, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend([1, 0]); // null compression only
    let mut record = vec![
        0x16,
        3,
        1,
        0,
        body.len() as u8 + 4,
        1,
        0,
        0,
        body.len() as u8,
    ];
    record.extend(body);
    record
}

/// A TLS record of one fatal alert (its description not checked: that is
/// rustls' choice).
fn is_fatal_alert(bytes: &[u8]) -> bool {
    matches!(bytes, [0x15, 3, 3, 0, 2, 2, _])
}

/// What is not TLS 1.2 or 1.3 is refused at once (not at the 60 s
/// `handshake-timeout`) with a fatal alert; handshakes that stall are
/// evicted, oldest first, when max-connections is reached, so that a real
/// call gets in; none of them is counted in `rejected-connections` (no
/// path was asked for yet); and the element stops with stalled handshakes
/// still open.
#[test]
fn hostile_handshakes_are_refused_or_evicted_and_a_call_gets_in() {
    let t = TlsSrc::start("tls-hostile", "handshake-timeout=60 max-connections=4");
    let garbage: Vec<u8> = (0..3000u32).map(|i| (i * 97 % 251) as u8).collect();
    for (what, bytes) in [
        ("a plain ws:// upgrade", UPGRADE),
        ("garbage", &garbage),
        ("a TLS 1.0 ClientHello", &legacy_hello(1)),
        ("a TLS 1.1 ClientHello", &legacy_hello(2)),
    ] {
        let mut s = t.connect();
        s.write_all(bytes).unwrap();
        let got = until_closed(&mut s);
        assert!(is_fatal_alert(&got), "{what}: answered {got:02x?}");
    }
    // A client's alert in place of its hello: closed without a word.
    let mut s = t.connect();
    s.write_all(&[0x15, 3, 3, 0, 2, 2, 40]).unwrap();
    assert_eq!(until_closed(&mut s), b"");

    // Three times max-connections of ClientHellos left unanswered, each in
    // its handshake (the server's hello read) before the next comes.
    let hello = t.client_hello();
    let stalled: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = t.connect();
            s.write_all(&hello).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut first = [0u8; 1];
            s.read_exact(&mut first).unwrap();
            assert_eq!(first, [0x16], "a handshake record");
            s
        })
        .collect();
    let ulaw: Vec<u8> = (0..1600u32).map(|i| (i * 7 % 256) as u8).collect();
    t.real_call(&ulaw);
    // Eight made room for the later ones, one for the call.
    for mut s in stalled.into_iter().take(9) {
        until_closed(&mut s);
    }
    assert_eq!(t.src.property::<u64>("rejected-connections"), 0);
    t.stop();
}

/// Over TLS as without: a connection not started yet that sends part of a
/// message far over `max-message-size` is closed with 1009 once it sent
/// more than a start message takes, counted; a ClientHello and then
/// nothing is dropped at `handshake-timeout`; a call after both gets in.
#[test]
fn before_start_the_bounds_hold_over_tls() {
    let t = TlsSrc::start("tls-bounds", "max-message-size=4096 handshake-timeout=3");
    let mut stalled = t.connect();
    stalled.write_all(&t.client_hello()).unwrap();
    rt().block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", t.port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(t.tls())
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut ws, _) = tokio_tungstenite::client_async(t.url().as_str(), tls)
            .await
            .unwrap();
        // A text frame of 15 * 4096 bytes (masked with a zero key), of
        // which 40 KiB are sent.
        let mut bytes = vec![0x81, 0x80 | 127];
        bytes.extend((15u64 * 4096).to_be_bytes());
        bytes.extend([0; 4]);
        bytes.extend(std::iter::repeat_n(b'x', 40 * 1024));
        let tls = ws.get_mut();
        use tokio::io::AsyncWriteExt;
        tls.write_all(&bytes).await.unwrap();
        tls.flush().await.unwrap();
        assert_eq!(common::raw::next_close(&mut ws).await, Some(1009));
    });
    counter_reaches(&t.src, "rejected-connections", 1);
    // Not evicted (max-connections is far): the timeout ends it.
    let got = until_closed(&mut stalled);
    assert_eq!(
        got.first(),
        Some(&0x16),
        "the server's hello, then the close"
    );
    t.real_call(&[0x80; 160]);
    t.stop();
}

/// Over TLS (a client of the test's own, every byte in reach): sends an
/// upgrade and, once answered 101, `then`; reads until the server is
/// done. What it sent after the 101, and whether it ended TLS with
/// close_notify (rustls' read_to_end is an `UnexpectedEof` error without).
fn upgraded_over_tls(t: &TlsSrc, then: &[u8]) -> (Vec<u8>, std::io::Result<usize>) {
    let mut tcp = t.connect();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut client = rustls::ClientConnection::new(t.tls(), name).unwrap();
    let mut tls = rustls::Stream::new(&mut client, &mut tcp);
    upgrade(&mut tls);
    tls.write_all(then).unwrap();
    let mut got = Vec::new();
    let ended = tls.read_to_end(&mut got);
    (got, ended)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Sends `UPGRADE` on `tls` and reads the answer's head, a 101.
fn upgrade(tls: &mut impl ReadWrite) {
    tls.write_all(UPGRADE).unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tls.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101 "),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

const UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A connection the server closes (no `start` in time, 1008; a call with
/// no media for `idle-timeout`, 1000), or whose close it answers, ends
/// with TLS's close_notify after the close frame (RFC 8446 6.1), not with a bare TCP close: a TLS
/// client reading on takes that for a truncation.
#[test]
fn the_server_ends_tls_with_close_notify() {
    // 3 s: the TLS handshake and the upgrade must fit in it, on a busy
    // machine too.
    let t = TlsSrc::start("tls-notify", "handshake-timeout=3 idle-timeout=1");
    let (got, ended) = upgraded_over_tls(&t, b"");
    assert_eq!(
        got,
        [&[0x88, 29, 0x03, 0xf0][..], b"no start message within 3 s"].concat()
    );
    assert!(ended.is_ok(), "no start: {ended:?}");
    t.stop();
    // The rest must reach the server before its handshake timeout: a long
    // one, so that a busy machine's stall cannot turn them into 1008.
    let t = TlsSrc::start("tls-notify-2", "handshake-timeout=60 idle-timeout=1");
    // The client's close (masked, zero key, 1000) is answered, then TLS ends.
    let close = [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8];
    let (got, ended) = upgraded_over_tls(&t, &close);
    assert_eq!(got, [0x88, 2, 0x03, 0xe8]);
    assert!(ended.is_ok(), "closed by the client: {ended:?}");

    let (got, ended) = upgraded_over_tls(&t, &masked_text(&start_text(&CallParams::default())));
    assert_eq!(got, [0x88, 2, 0x03, 0xe8]);
    assert!(ended.is_ok(), "idle call: {ended:?}");
    t.stop();
}

/// The `start` of an inbound-only call of `params`.
fn start_text(params: &CallParams) -> String {
    format!(
        r#"{{"event":"start","sequenceNumber":"1","streamSid":"{sid}","start":{{"accountSid":"{account}","streamSid":"{sid}","callSid":"{call}","tracks":["inbound"],"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}}}}"#,
        sid = params.stream_sid,
        account = params.account_sid,
        call = params.call_sid,
    )
}

/// A call over TLS whose connection ends without a close frame is said to
/// have dropped, as without TLS, whether TLS ended with close_notify or
/// with a bare TCP close (rustls' "peer closed connection without sending
/// TLS close_notify" is no connection error of the call's); its audio
/// before the drop came out. A close_notify is answered with ours.
#[test]
fn a_call_dropped_over_tls_is_said_to_have_dropped() {
    for close_notify in [false, true] {
        let t = TlsSrc::start(&format!("tls-dropped-{close_notify}"), "");
        let params = CallParams::default();
        let media = format!(
            r#"{{"event":"media","streamSid":"{}","media":{{"timestamp":"0","payload":"gICAgA=="}}}}"#,
            params.stream_sid
        );
        let mut tcp = t.connect();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(t.tls(), name).unwrap();
        let mut tls = rustls::Stream::new(&mut client, &mut tcp);
        upgrade(&mut tls);
        tls.write_all(&masked_text(&start_text(&params))).unwrap();
        tls.write_all(&masked_text(&media)).unwrap();
        counter_reaches(&t.src, "chunks-received", 1);
        if close_notify {
            client.send_close_notify();
            client.write_tls(&mut tcp).unwrap();
            // Answered in kind (RFC 8446 6.1): without it, read_to_end is
            // rustls' `UnexpectedEof`.
            tcp.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut tls = rustls::Stream::new(&mut client, &mut tcp);
            let ended = tls.read_to_end(&mut Vec::new());
            assert!(ended.is_ok(), "{ended:?}");
        }
        drop(tcp);
        assert_eq!(t.collector.wait_eos().samples(), vec![32124; 4]);
        let warning = warnings(&t.p.bus().unwrap()).pop().expect("a warning");
        assert!(
            warning
                .contains("the connection dropped without a close frame before any stop message"),
            "close_notify {close_notify}: {warning}"
        );
        t.stop();
    }
}

/// Two elements on one TLS listener (one port, paths /a and /b): a
/// stranger on either path is closed, and counted on that path alone; one
/// on a path neither serves gets 404, counted nowhere; neither element
/// posts or pushes anything for them, and a call on each path then comes
/// out whole.
#[test]
fn strangers_on_a_shared_tls_listener_count_on_their_own_path() {
    let port = common::app::free_port();
    let dir = temp_dir("tls-shared");
    let (cert, key) = self_signed(&dir, "localhost");
    let element = |path: &str| {
        let p = pipeline(&format!(
            "twiliostreamsrc name=src port={port} path={path} tls-certificate={} tls-key={} \
             ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
            cert.display(),
            key.display()
        ));
        let collector = Collector::attach(&by_name(&p, "sink"));
        set_state(&p, gst::State::Playing);
        let src = by_name(&p, "src");
        (p, src, collector)
    };
    let (pa, a, ca) = element("/a");
    let (pb, b, cb) = element("/b");
    let tls = Dialer::trusting(&cert).unwrap();
    // Sends `request` and then `then`; all the server sent until it closed.
    let stranger = |request: &str, then: &[u8]| {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(tls.clone(), name).unwrap();
        let mut tls = rustls::Stream::new(&mut client, &mut tcp);
        tls.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            tls.read_exact(&mut byte).unwrap();
            got.push(byte[0]);
        }
        tls.write_all(then).unwrap();
        let ended = tls.read_to_end(&mut got);
        assert!(
            ended.is_ok(),
            "{request:?}: {ended:?} after {:?}",
            String::from_utf8_lossy(&got)
        );
        got
    };
    let upgrade = |path: &str| {
        std::str::from_utf8(UPGRADE)
            .unwrap()
            .replacen("GET / ", &format!("GET {path} "), 1)
    };
    let media =
        r#"{"event":"media","streamSid":"MZ1","media":{"timestamp":"0","payload":"gICAgA=="}}"#;
    // The 101's head, then a close frame: 0x88, its length, code, reason.
    let closed = |code: u16, reason: &str| {
        let mut frame = vec![0x88, 2 + reason.len() as u8];
        frame.extend(code.to_be_bytes());
        frame.extend(reason.as_bytes());
        frame
    };
    let got = stranger(&upgrade("/a"), &masked_text(media));
    assert!(got.starts_with(b"HTTP/1.1 101 "));
    assert!(got.ends_with(&closed(
        1008,
        "expected a start message: media before start"
    )));
    // A binary frame (masked, zero key) of one byte.
    let got = stranger(&upgrade("/b"), &[0x82, 0x81, 0, 0, 0, 0, 7]);
    assert!(got.ends_with(&closed(1003, "text messages only")));
    let no_key = upgrade("/b").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert!(stranger(&no_key, b"").starts_with(b"HTTP/1.1 400 "));
    assert!(stranger(&upgrade("/c"), b"").starts_with(b"HTTP/1.1 404 "));
    counter_reaches(&a, "rejected-connections", 1);
    counter_reaches(&b, "rejected-connections", 2);
    for (p, collector) in [(&pa, &ca), (&pb, &cb)] {
        assert!(drain_messages(&p.bus().unwrap()).iter().all(|m| {
            !matches!(
                m.view(),
                gst::MessageView::Element(_) | gst::MessageView::Warning(_)
            )
        }));
        assert!(collector.snapshot().buffers.is_empty());
    }
    let ulaw: Vec<u8> = (0..1600u32).map(|i| (i * 7 % 256) as u8).collect();
    for (path, collector) in [("/a", &ca), ("/b", &cb)] {
        call_over_tls(tls.clone(), &format!("wss://localhost:{port}{path}"), &ulaw);
        assert_eq!(collector.wait_eos().samples(), decode(&ulaw), "{path}");
    }
    assert_eq!(a.property::<u64>("rejected-connections"), 1);
    assert_eq!(b.property::<u64>("rejected-connections"), 2);
    set_state(&pa, gst::State::Null);
    set_state(&pb, gst::State::Null);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The HTTP refusals of an upgrade the plugin could take (404: no element
/// on the path, 403: no signature) are answered as its other refusals
/// are: with their length, then TLS's close_notify (without it, a TLS
/// client takes the answer for a truncated one), and a client still
/// sending after the request gets the answer, not a reset.
#[test]
fn refused_upgrades_end_with_close_notify() {
    let t = TlsSrc::start("tls-refused", "path=/media auth-token=secret");
    for (path, status, body) in [
        (
            "/elsewhere",
            "404 Not Found",
            "no stream is served on this path\n",
        ),
        ("/media", "403 Forbidden", ""),
    ] {
        let mut tcp = t.connect();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = rustls::ClientConnection::new(t.tls(), name).unwrap();
        let mut tls = rustls::Stream::new(&mut client, &mut tcp);
        let request =
            std::str::from_utf8(UPGRADE)
                .unwrap()
                .replacen("GET / ", &format!("GET {path} "), 1);
        tls.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            tls.read_exact(&mut byte).unwrap();
            got.push(byte[0]);
        }
        // Still sending (as a client that does not wait for the 101).
        for _ in 0..32 {
            tls.write_all(&[0x81; 4096]).unwrap();
        }
        let ended = tls.read_to_end(&mut got);
        let got = String::from_utf8_lossy(&got);
        assert!(ended.is_ok(), "{path}: {ended:?} after {got:?}");
        let (head, answer) = got.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{head}"
        );
        assert!(head.contains("\r\nConnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", answer.len())),
            "{head}"
        );
        assert!(answer.ends_with(body), "{answer:?}");
    }
    assert_eq!(t.src.property::<u64>("signature-failures"), 1);
    t.stop();
}
