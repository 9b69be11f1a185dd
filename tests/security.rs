//! Ready for the public internet: only Twilio gets in (X-Twilio-Signature),
//! wss:// with the plugin's own TLS, and what is not a call gets an HTTP
//! answer. (Limits on messages and idle calls: `limits.rs`.)

mod common;

use std::io::Write;
use std::time::Duration;

use common::src::listening_src as echo;
use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, Dialer, Playout, TwilioCall};

const TOKEN: &str = "12345";

/// Dials, starts and sends one chunk; returns how the upgrade went.
fn try_call(dialer: &Dialer, url: &str) -> Result<TwilioCall, String> {
    rt().block_on(async {
        let mut call =
            TwilioCall::connect_via(dialer, url, CallParams::default(), Playout::Instant)
                .await
                .map_err(|e| match e {
                    twilio_emulator::call::WsError::Http(r) => {
                        format!("HTTP {}", r.status().as_u16())
                    }
                    other => other.to_string(),
                })?;
        call.begin().map_err(|e| e.to_string())?;
        call.send_media(&[0xFF; 160]).map_err(|e| e.to_string())?;
        Ok(call)
    })
}

fn signed(token: &str, signed_url: Option<&str>) -> Dialer {
    Dialer {
        auth_token: Some(token.to_owned()),
        signed_url: signed_url.map(str::to_owned),
        ..Dialer::default()
    }
}

fn wait_connected(src: &gst::Element) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !src.property::<bool>("connected") {
        assert!(std::time::Instant::now() < deadline, "no call arrived");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn only_signed_upgrades_become_calls() {
    let (p, src) = echo(&format!("auth-token={TOKEN} path=/media-stream"));
    let url = url_of(&src);

    assert_eq!(
        try_call(&Dialer::default(), &url).err().as_deref(),
        Some("HTTP 403")
    );
    assert_eq!(
        try_call(&signed("54321", None), &url).err().as_deref(),
        Some("HTTP 403")
    );
    // Twilio signs the wss:// URL: a signature over https:// is not one.
    let https = url.replacen("ws://", "https://", 1);
    assert_eq!(
        try_call(&signed(TOKEN, Some(&https)), &url)
            .err()
            .as_deref(),
        Some("HTTP 403")
    );
    assert_eq!(src.property::<u64>("signature-failures"), 3);
    assert!(
        !src.property::<bool>("connected"),
        "a refused upgrade became a call"
    );

    // Signed over the URL as the plugin sees it (wss:// + Host + path).
    let public = url.replacen("ws://", "wss://", 1);
    let call = try_call(&signed(TOKEN, Some(&public)), &url).expect("a signed call");
    wait_connected(&src);
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}

#[test]
fn the_public_url_is_what_is_signed() {
    let public = "wss://voice.example.com/media-stream";
    let (p, src) = echo(&format!(
        "auth-token={TOKEN} path=/media-stream public-url={public}"
    ));
    let url = url_of(&src);
    // Signed over the address dialled: not what Twilio signs behind a proxy.
    let dialled = url.replacen("ws://", "wss://", 1);
    assert_eq!(
        try_call(&signed(TOKEN, Some(&dialled)), &url)
            .err()
            .as_deref(),
        Some("HTTP 403")
    );
    // Signed over the public URL, with or without :443.
    let call = try_call(&signed(TOKEN, Some(public)), &url).expect("signed over the public URL");
    wait_connected(&src);
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);

    let (p, src) = echo(&format!(
        "auth-token={TOKEN} path=/media-stream public-url={public}"
    ));
    let with_port = "wss://voice.example.com:443/media-stream";
    let call = try_call(&signed(TOKEN, Some(with_port)), &url_of(&src)).expect(":443 form");
    wait_connected(&src);
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}

/// Twilio dials only wss:// URLs without a query and signs them with that
/// scheme: a `public-url` of another form can never match a real
/// signature, so the element refuses to start, saying why, rather than
/// answer every call with HTTP 403. Both elements, as the sink listens too.
#[test]
fn a_public_url_twilio_cannot_sign_is_refused() {
    init();
    for element in ["twiliostreamsrc", "twiliostreamsink"] {
        for (url, why) in [
            ("https://voice.example.com/media", "wss://"),
            ("ws://voice.example.com/media", "wss://"),
            ("voice.example.com/media", "wss://"),
            ("wss://voice.example.com/media?x=1", "query string"),
            ("wss://voice.example.com/media#x", "query string"),
            ("wss:///media", "host"),
        ] {
            let desc = match element {
                "twiliostreamsrc" => format!("twiliostreamsrc port=0 public-url={url} ! fakesink"),
                _ => format!("audiotestsrc ! twiliostreamsink port=0 public-url={url}"),
            };
            let p = pipeline(&desc);
            assert!(p.set_state(gst::State::Playing).is_err(), "{element} {url}");
            let error = first_error_text(&p.bus().unwrap()).expect("an error message");
            assert!(
                error.contains("public-url") && error.contains(why),
                "{element} {url}: {error}"
            );
            set_state(&p, gst::State::Null);
        }
    }
    // The forms Twilio signs are taken, with and without the port.
    for url in [
        "wss://voice.example.com/media",
        "wss://voice.example.com:443/media",
        "WSS://voice.example.com/media",
    ] {
        let p = pipeline(&format!(
            "twiliostreamsrc port=0 public-url={url} ! fakesink"
        ));
        set_state(&p, gst::State::Playing);
        set_state(&p, gst::State::Null);
    }
}

#[test]
fn the_auth_token_is_never_readable() {
    init();
    let src = gst::ElementFactory::make("twiliostreamsrc")
        .build()
        .unwrap();
    let pspec = src.find_property("auth-token").unwrap();
    assert!(pspec.flags().contains(gst::glib::ParamFlags::WRITABLE));
    assert!(!pspec.flags().contains(gst::glib::ParamFlags::READABLE));
    let sink = gst::ElementFactory::make("twiliostreamsink")
        .build()
        .unwrap();
    assert!(
        !sink
            .find_property("auth-token")
            .unwrap()
            .flags()
            .contains(gst::glib::ParamFlags::READABLE)
    );
}

#[test]
fn the_listener_speaks_wss_with_its_own_certificate() {
    let dir = temp_dir("tls");
    let (cert, key) = self_signed(&dir, "localhost");
    let (p, collector, port) = tls_src(&cert, &key, "");
    // Plain ws:// to a TLS listener does not get a call.
    assert!(try_call(&Dialer::default(), &format!("ws://127.0.0.1:{port}/")).is_err());
    let ulaw: Vec<u8> = (0..1600u32).map(|i| (i * 7 % 256) as u8).collect();
    let tls = Dialer::trusting(&cert).unwrap();
    call_over_tls(tls, &format!("wss://localhost:{port}/"), &ulaw);
    let got = collector.wait_eos();
    assert_eq!(got.samples(), twilio_emulator::audio::decode(&ulaw));
    set_state(&p, gst::State::Null);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tls_files_must_exist_and_go_together() {
    init();
    for props in [
        "tls-certificate=/nonexistent.crt tls-key=/nonexistent.key",
        "tls-certificate=/nonexistent.crt",
    ] {
        let p = pipeline(&format!("twiliostreamsrc port=0 {props} ! fakesink"));
        assert!(p.set_state(gst::State::Playing).is_err(), "{props}");
        let error = drain_messages(&p.bus().unwrap())
            .into_iter()
            .find_map(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().message().to_owned()),
                _ => None,
            })
            .unwrap();
        assert!(error.contains("Could not listen"), "{error}");
        p.set_state(gst::State::Null).unwrap();
    }
}

/// A load balancer's health check (plain HTTP, no upgrade) gets an HTTP
/// answer, not an empty reply, and takes nothing from the calls.
/// A header the check reads, sent twice, is refused (403), even when the
/// first would pass: which one counts is anyone's guess. Once, it passes.
#[test]
fn a_checked_header_sent_twice_is_refused() {
    use std::io::Read;
    let (p, src) = echo(&format!("auth-token={TOKEN} path=/media-stream"));
    let port = src.property::<u32>("bound-port") as u16;
    let host = format!("127.0.0.1:{port}");
    let good = gsttwiliostream::signature::sign(TOKEN, &format!("wss://{host}/media-stream"));
    let answer = |extra: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let request = format!(
            "GET /media-stream HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             X-Twilio-Signature: {good}\r\n{extra}\r\n"
        );
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = vec![0; 12];
        s.read_exact(&mut answer).unwrap();
        String::from_utf8(answer).unwrap()
    };
    assert_eq!(answer(""), "HTTP/1.1 101");
    assert_eq!(answer("X-Twilio-Signature: x\r\n"), "HTTP/1.1 403");
    assert_eq!(answer(&format!("Host: {host}\r\n")), "HTTP/1.1 403");
    assert_eq!(src.property::<u64>("signature-failures"), 2);
    set_state(&p, gst::State::Null);
}

#[test]
fn a_plain_http_request_is_answered_426() {
    use std::io::Read;
    let (p, src) = echo("");
    let port = src.property::<u32>("bound-port") as u16;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{answer:?}"
    );
    assert!(answer.contains("\r\nUpgrade: websocket\r\n"), "{answer:?}");
    // A real call still gets in.
    let call = try_call(&Dialer::default(), &url_of(&src)).expect("a call after the check");
    wait_connected(&src);
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}

/// An upgrade request that cannot be upgraded (tungstenite closes those
/// without a word) gets an HTTP error saying why, counted as a rejected
/// connection of the path it asked for; a path nobody serves counts nowhere.
#[test]
fn an_upgrade_request_that_cannot_be_upgraded_gets_an_http_error() {
    use std::io::Read;
    let (p, src) = echo("path=/media");
    let port = src.property::<u32>("bound-port") as u16;
    let head = |line: &str, version: &str, key: &str| {
        format!(
            "{line}\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: {version}\r\n{key}\r\n"
        )
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let bad = "400 Bad Request\r\n";
    let cases = [
        (head("GET /media HTTP/1.0", "13", key), bad),
        (head("POST /media HTTP/1.1", "13", key), bad),
        (head("GET /media?x=1 HTTP/1.1", "13", ""), bad),
        (
            head(
                "GET /media HTTP/1.1",
                "13",
                "Sec-WebSocket-Key: c2hvcnQ=\r\n",
            ),
            bad,
        ),
        (
            head("GET /media HTTP/1.1", "8", key),
            "426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n",
        ),
        (head("GET /elsewhere HTTP/1.0", "13", key), bad),
    ];
    let mut open = Vec::new();
    for (i, (request, status)) in cases.iter().enumerate() {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let expected = format!("HTTP/1.1 {status}");
        assert!(answer.starts_with(&expected), "{request:?}: {answer:?}");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let length = format!("\r\nContent-Length: {}\r\n", body.len());
        assert!(format!("{head}\r\n").contains(&length), "{answer:?}");
        assert!(body.len() > 1 && body.ends_with('\n'), "{answer:?}");
        // Counted by the time the answer is sent, not once the client has
        // gone (it keeps its end open here).
        let counted = (i as u64 + 1).min(cases.len() as u64 - 1);
        assert_eq!(src.property::<u64>("rejected-connections"), counted);
        open.push(s);
    }
    drop(open);
    // A real call still gets in.
    let call = try_call(&Dialer::default(), &url_of(&src)).expect("a call after them");
    wait_connected(&src);
    rt().block_on(call.close());
    assert_eq!(src.property::<u64>("rejected-connections"), 5);
    set_state(&p, gst::State::Null);
}

/// A client still sending when it is refused (a request's body, data sent
/// before the answer) gets the answer and then the end of the connection,
/// not a reset: the server reads and drops what follows before it closes.
#[test]
fn a_refused_client_still_sending_gets_the_answer_not_a_reset() {
    use std::io::Read;
    let (p, src) = echo("path=/media");
    let port = src.property::<u32>("bound-port") as u16;
    let body = vec![b'x'; 64 * 1024];
    let requests = [
        // A health check with a body: 426.
        (
            "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n",
            "HTTP/1.1 426 ",
        ),
        // An upgrade over HTTP/1.0 (nginx without proxy_http_version 1.1),
        // its client sending on: 400.
        (
            "GET /media HTTP/1.0\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            "HTTP/1.1 400 ",
        ),
    ];
    for (head, status) in requests {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(&[head.as_bytes(), &body].concat()).unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(status), "{head:?}: {answer:?}");
        // A client still sending its body as the answer comes: closed with
        // data unread, the server's socket would be reset, and those sends
        // fail (a proxy would report the reset, not the answer).
        for k in 0..32 {
            let sent = s.write_all(&body[..4096]);
            assert!(
                sent.is_ok(),
                "{head:?}: send {k} after the answer: {sent:?}"
            );
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    counter_reaches(&src, "rejected-connections", 1);
    set_state(&p, gst::State::Null);
}

#[test]
fn stalled_handshakes_time_out_and_do_not_keep_a_call_out() {
    let (p, src) = echo("handshake-timeout=1 max-connections=8");
    let port = src.property::<u32>("bound-port") as u16;
    // A flood: 20 sockets that never finish (or never start) the upgrade.
    let mut flood = Vec::new();
    for i in 0..20 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
                .unwrap();
        }
        flood.push(s);
    }
    // A real call still gets in.
    let call = try_call(&Dialer::default(), &url_of(&src)).expect("a call despite the flood");
    wait_connected(&src);
    // The stalled sockets are closed by the server within the timeout.
    for mut s in flood {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut buf = [0u8; 1];
        use std::io::Read;
        let closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
        assert!(closed, "a stalled handshake was kept open");
    }
    rt().block_on(call.close());
    set_state(&p, gst::State::Null);
}

#[test]
fn the_auth_token_env_variable_is_documented_and_the_property_wins() {
    // The variable itself is tested in tests/auth_env.rs (its own process).
    assert_eq!(
        gsttwiliostream::endpoint::AUTH_TOKEN_ENV,
        "TWILIO_AUTH_TOKEN"
    );
}

/// A path that needs percent-encoding is reached however either side
/// wrote it: the element's `path` as typed (`/äb c`), the request as a
/// client encodes it (lower- or upper-case escapes); a signed request is
/// verified against the URL as sent.
#[test]
fn a_path_that_needs_encoding_is_reached_as_requests_name_it() {
    init();
    let (p, src) = echo(r#"path="/äb c" auth-token=12345"#);
    assert_eq!(src.property::<String>("path"), "/%C3%A4b%20c");
    let port = src.property::<u32>("bound-port");
    for sent in ["/%C3%A4b%20c", "/%c3%a4b%20c"] {
        let url = format!("ws://127.0.0.1:{port}{sent}");
        let call = try_call(&signed(TOKEN, None), &url).expect(sent);
        drop(call);
    }
    // Another path still gets a 404.
    let url = format!("ws://127.0.0.1:{port}/%C3%A4b");
    assert_eq!(
        try_call(&signed(TOKEN, None), &url).err().as_deref(),
        Some("HTTP 404")
    );
    set_state(&p, gst::State::Null);
}
