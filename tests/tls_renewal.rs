//! A certificate renewed while the listener runs (certbot replacing the
//! files): the next connection a second or more later gets the new
//! certificate, with no restart; a pair that does not load (the key of
//! another certificate, as halfway through a renewal) leaves the previous
//! one served until the files change again; a call gets through after all
//! of it.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use twilio_emulator::Dialer;
use twilio_emulator::audio::decode;

/// Longer than the listener waits between looks at its files.
const PAST_RECHECK: Duration = Duration::from_millis(1100);

/// A fresh self-signed pair for `localhost` in its own folder under `dir`.
fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    self_signed(&sub, "localhost")
}

/// Puts `from` in place of `to` as certbot does: a new file renamed over
/// the old one.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn der(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}

/// The certificate the listener on `port` presents to a client trusting
/// `trusted`, or the handshake's error.
fn served(port: u16, trusted: &Path) -> Result<Vec<u8>, std::io::Error> {
    let config: Arc<rustls::ClientConfig> = Dialer::trusting(trusted).unwrap();
    rt().block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(
            PATIENCE,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .expect("the listener never answered")?;
        let chain = tls.get_ref().1.peer_certificates().unwrap();
        Ok(chain[0].to_vec())
    })
}

#[test]
fn a_renewed_certificate_is_served_without_a_restart() {
    let dir = temp_dir("tls-renewal");
    let (cert, key) = pair(&dir, "live");
    let first = dir.join("first.pem");
    std::fs::copy(&cert, &first).unwrap();
    let (p, collector, port) = tls_src(&cert, &key, "");
    assert_eq!(served(port, &first).unwrap(), der(&first));

    // Renewed: certificate, then key, each renamed into place.
    let (second, second_key) = pair(&dir, "second");
    replace(&second, &cert);
    replace(&second_key, &key);
    std::thread::sleep(PAST_RECHECK);
    assert_eq!(served(port, &second).unwrap(), der(&second));
    assert!(
        served(port, &first).is_err(),
        "the old certificate still served"
    );

    // Halfway through another renewal: the new key, the old certificate.
    let (third, third_key) = pair(&dir, "third");
    replace(&third_key, &key);
    std::thread::sleep(PAST_RECHECK);
    assert_eq!(
        served(port, &second).unwrap(),
        der(&second),
        "a pair that does not load replaced the certificate served"
    );
    // And done: the pair loads once the certificate changes too.
    replace(&third, &cert);
    std::thread::sleep(PAST_RECHECK);
    assert_eq!(served(port, &third).unwrap(), der(&third));

    // A whole call over the renewed certificate.
    let ulaw: Vec<u8> = (0..1600).map(|i| (i % 251) as u8).collect();
    let tls = Dialer::trusting(&third).unwrap();
    call_over_tls(tls, &format!("wss://localhost:{port}/"), &ulaw);
    assert_eq!(collector.wait_eos().samples(), decode(&ulaw));
    set_state(&p, gst::State::Null);
    std::fs::remove_dir_all(&dir).unwrap();
}
