//! Behind a reverse proxy: real nginx terminates TLS in front of the plugin
//! (as the README's recipe does) and a signed call goes through it. nginx
//! listens on a Unix socket, so the test needs no port of its own; the
//! emulator dials wss://voice.example.com/media through that socket.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use twilio_emulator::{CallParams, Dialer, Playout, TwilioCall};

const TOKEN: &str = "12345";
const PUBLIC_URL: &str = "wss://voice.example.com/media";

fn nginx_binary() -> Option<&'static str> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nginx(binary: &str, dir: &Path, upstream_port: u32) -> Nginx {
    let cert = rcgen::generate_simple_self_signed(vec!["voice.example.com".to_owned()]).unwrap();
    std::fs::write(dir.join("voice.crt"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("voice.key"), cert.signing_key.serialize_pem()).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let d = dir.display();
    // The README's recipe, on a Unix socket, as a foreground single process.
    let conf = format!(
        r#"
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{}}
http {{
    access_log off;
    client_body_temp_path {d}/tmp;
    proxy_temp_path {d}/tmp;
    fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp;
    scgi_temp_path {d}/tmp;
    server {{
        listen unix:{d}/nginx.sock ssl;
        server_name voice.example.com;
        ssl_certificate {d}/voice.crt;
        ssl_certificate_key {d}/voice.key;
        location /media {{
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(binary)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .spawn()
        .expect("cannot start nginx");
    let nginx = Nginx(child);
    let deadline = Instant::now() + PATIENCE;
    while std::os::unix::net::UnixStream::connect(dir.join("nginx.sock")).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    nginx
}

#[test]
fn a_signed_call_through_nginx_terminating_tls() {
    let Some(binary) = nginx_binary() else {
        // scripts/test installs nginx and sets this, so CI always runs it.
        assert!(
            std::env::var_os("TWILIOSTREAM_REQUIRE_NGINX").is_none(),
            "nginx is not installed"
        );
        eprintln!("nginx is not installed: skipping (scripts/test installs it)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("twiliostream-nginx-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let p = pipeline(&format!(
        "twiliostreamsrc name=src port=0 path=/media auth-token={TOKEN} public-url={PUBLIC_URL} \
         ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false"
    ));
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let _nginx = start_nginx(binary, &dir, src.property::<u32>("bound-port"));

    let through_nginx = |token: Option<&str>| Dialer {
        auth_token: token.map(str::to_owned),
        tls: Some(Dialer::trusting(&dir.join("voice.crt")).unwrap()),
        unix_socket: Some(dir.join("nginx.sock")),
        ..Dialer::default()
    };

    // Unsigned: the plugin's 403 comes back through the proxy.
    let refused = rt().block_on(TwilioCall::connect_via(
        &through_nginx(None),
        PUBLIC_URL,
        CallParams::default(),
        Playout::Instant,
    ));
    match refused {
        Err(twilio_emulator::call::WsError::Http(r)) => assert_eq!(r.status(), 403),
        Err(e) => panic!("expected HTTP 403, got {e}"),
        Ok(_) => panic!("an unsigned call got through"),
    }
    assert_eq!(src.property::<u64>("signature-failures"), 1);

    // Signed over the public URL, as Twilio does: a call, audio intact.
    let ulaw: Vec<u8> = (0..3200u32).map(|i| (i * 13 % 256) as u8).collect();
    rt().block_on(async {
        let mut call = TwilioCall::connect_via(
            &through_nginx(Some(TOKEN)),
            PUBLIC_URL,
            CallParams::default(),
            Playout::Instant,
        )
        .await
        .expect("a signed call through nginx");
        call.begin().unwrap();
        for chunk in ulaw.chunks(160) {
            call.send_media(chunk).unwrap();
        }
        call.send_stop().unwrap();
        call.close().await;
    });
    let got = collector.wait_eos();
    assert_eq!(got.samples(), twilio_emulator::audio::decode(&ulaw));
    let port = src.property::<u32>("bound-port");
    set_state(&p, gst::State::Null);

    // Without public-url, behind the same nginx, dialled on a port of its
    // own: `$http_host` passes the port on, so the URL the plugin checks
    // is the one dialled (`$host` would drop it: a 403).
    let p = pipeline(&format!(
        "twiliostreamsrc name=src port={port} path=/media auth-token={TOKEN} ! fakesink"
    ));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let dial = |url: &str| {
        rt().block_on(async {
            let dialer = through_nginx(Some(TOKEN));
            let call =
                TwilioCall::connect_via(&dialer, url, CallParams::default(), Playout::Instant);
            match call.await {
                Ok(call) => {
                    call.close().await;
                    None
                }
                Err(twilio_emulator::call::WsError::Http(r)) => Some(r.status().as_u16()),
                Err(e) => panic!("{url}: {e}"),
            }
        })
    };
    assert_eq!(dial("wss://voice.example.com:8443/media"), None);
    assert_eq!(src.property::<u64>("signature-failures"), 0);
    set_state(&p, gst::State::Null);
    std::fs::remove_dir_all(&dir).ok();
}
