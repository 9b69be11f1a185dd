//! TLS for a listener that serves `wss://` itself: the certificate chain and
//! key files of `tls-certificate` / `tls-key`, loaded into a rustls acceptor
//! when the listener binds, and loaded again when they change (a renewal),
//! looked at no more than once a second as connections arrive. The
//! handshake itself runs in `accept`.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The PEM files of a listener's certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The acceptor, or an error naming the property and file at fault and
    /// what the file should hold.
    pub fn acceptor(&self) -> io::Result<TlsAcceptor> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        let (cert, key) = (self.certificate.display(), self.key.display());
        let certs = CertificateDer::pem_file_iter(&self.certificate)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| invalid(format!("tls-certificate {cert}: {}", pem_error(&e))))?;
        if certs.is_empty() {
            return Err(invalid(format!(
                "tls-certificate {cert} holds no PEM certificate \
                 (-----BEGIN CERTIFICATE-----)"
            )));
        }
        let private_key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| match e {
            pem::Error::NoItemsFound => invalid(format!(
                "tls-key {key} holds no PEM private key \
                 (-----BEGIN PRIVATE KEY-----, or RSA or EC PRIVATE KEY)"
            )),
            e => invalid(format!("tls-key {key}: {}", pem_error(&e))),
        })?;
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private_key))
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => invalid(
                format!("tls-key {key} is not the private key of tls-certificate {cert}"),
            ),
            e => invalid(format!("tls-certificate {cert} with tls-key {key}: {e}")),
        })?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// How often at most a listener looks at its files for a change.
const RECHECK: Duration = Duration::from_secs(1);

/// A file's identity and version as its metadata tells them (following a
/// symlink, as certbot's `live/` ones are): device, inode, modification
/// and change times, size; `None` if it cannot be read. The change time
/// moves with a `chmod` or `chown` too, so a pair that failed to load for
/// its permissions is tried again once they are mended.
type Stamp = Option<(u64, u64, [i64; 4], u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    let times = [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()];
    Some((m.dev(), m.ino(), times, m.len()))
}

/// A listener's TLS, owned by its accept loop: the acceptor for the next
/// connection, from the files as they were when last looked at.
pub struct Tls {
    files: TlsFiles,
    acceptor: TlsAcceptor,
    /// The files as last looked at, whether they loaded or not: a pair that
    /// failed is tried again only once either file changes.
    seen: [Stamp; 2],
    checked: Instant,
}

impl Tls {
    /// The listener's TLS, or the error of `TlsFiles::acceptor`.
    pub fn load(files: TlsFiles) -> io::Result<Tls> {
        let seen = files.stamps();
        Ok(Tls {
            acceptor: files.acceptor()?,
            files,
            seen,
            checked: Instant::now(),
        })
    }

    /// The acceptor for a connection arriving now. If a second has passed
    /// since the files were last looked at and either has changed, they
    /// are loaded again; a pair that does not load (unreadable, or a key
    /// not the certificate's) leaves the acceptor as it was, with a
    /// warning.
    pub fn acceptor(&mut self) -> TlsAcceptor {
        let now = Instant::now();
        if now.duration_since(self.checked) >= RECHECK {
            self.checked = now;
            let seen = self.files.stamps();
            if seen != self.seen {
                self.seen = seen;
                match self.files.acceptor() {
                    Ok(acceptor) => {
                        self.acceptor = acceptor;
                        gst::info!(
                            crate::call::CAT,
                            "{}: certificate loaded again (the files changed)",
                            self.files.certificate.display()
                        );
                    }
                    Err(e) => gst::warning!(
                        crate::call::CAT,
                        "the TLS files changed but do not load, the previous certificate is kept: {e}"
                    ),
                }
            }
        }
        self.acceptor.clone()
    }
}

impl TlsFiles {
    fn stamps(&self) -> [Stamp; 2] {
        [stamp(&self.certificate), stamp(&self.key)]
    }
}

/// A PEM file's error, with an unreadable file's reason as the OS gives it.
fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::Io(e) => e.to_string(),
        e => format!("not a valid PEM file ({e:?})"),
    }
}

/// The alert a client sent when it refused our certificate (expired, not
/// trusted, unusable), from a failed handshake's error.
fn certificate_refused(e: &io::Error) -> Option<rustls::AlertDescription> {
    use rustls::AlertDescription as A;
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA),
        ) => Some(*alert),
        _ => None,
    }
}

/// Logs a failed TLS handshake: at INFO (scanners and dropped connections
/// fail it all day), but a client that refused our certificate at WARNING,
/// once a minute at most: an expired or untrusted certificate fails every
/// call, and would otherwise show only at INFO.
pub(super) fn handshake_failed(peer: std::net::SocketAddr, e: &io::Error) {
    let Some(alert) = certificate_refused(e) else {
        gst::info!(crate::call::CAT, "{peer}: TLS handshake failed: {e}");
        return;
    };
    static WARNED: super::throttle::Throttle = super::throttle::Throttle::new();
    if WARNED.due(Duration::from_secs(60)) {
        gst::warning!(
            crate::call::CAT,
            "{peer}: TLS handshake failed: the client refused our certificate ({alert:?}): \
             check tls-certificate (expired? issued by a CA the client trusts? the whole \
             chain?); said once a minute at most"
        );
    } else {
        gst::info!(crate::call::CAT, "{peer}: TLS handshake failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Writes `files` (name, contents) into a fresh folder of this test.
    fn folder(test: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("twiliostream-tls-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        dir
    }

    fn error(dir: &Path, certificate: &str, key: &str) -> String {
        let files = TlsFiles {
            certificate: dir.join(certificate),
            key: dir.join(key),
        };
        match files.acceptor() {
            Ok(_) => panic!("{certificate} and {key} were accepted"),
            Err(e) => e.to_string().replace(&format!("{}/", dir.display()), ""),
        }
    }

    fn pair() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_client_refusing_our_certificate_is_told_from_other_failures() {
        use rustls::AlertDescription as A;
        let failed = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        for alert in [A::CertificateExpired, A::UnknownCA, A::BadCertificate] {
            let e = failed(rustls::Error::AlertReceived(alert));
            assert_eq!(certificate_refused(&e), Some(alert));
        }
        // A client's own trouble, a scanner, a dropped connection: not ours.
        let others = [
            failed(rustls::Error::AlertReceived(A::ProtocolVersion)),
            failed(rustls::Error::General("x".into())),
            io::Error::from(io::ErrorKind::UnexpectedEof),
        ];
        for e in others {
            assert_eq!(certificate_refused(&e), None, "{e}");
        }
    }

    #[test]
    fn a_matching_pair_is_accepted() {
        let (cert, key) = pair();
        let dir = folder("ok", &[("cert.pem", &cert), ("key.pem", &key)]);
        let files = TlsFiles {
            certificate: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        assert!(files.acceptor().is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A `chmod` alone (what mends a key the listener could not read) is a
    /// change of the file, as a new file in its place is.
    #[test]
    fn a_change_of_permissions_is_a_change_of_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = folder("stamp", &[("key.pem", "k")]);
        let path = dir.join("key.pem");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let before = stamp(&path);
        assert!(before.is_some());
        assert_eq!(stamp(&path), before, "nothing changed");
        // Past the file system's clock tick (10 ms at most).
        std::thread::sleep(Duration::from_millis(30));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_ne!(stamp(&path), before);
        assert_eq!(stamp(&dir.join("missing.pem")), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn errors_name_the_property_and_what_the_file_lacks() {
        let (cert, key) = pair();
        let (_, other_key) = pair();
        let dir = folder(
            "bad",
            &[
                ("cert.pem", &cert),
                ("key.pem", &key),
                ("other-key.pem", &other_key),
            ],
        );
        // The two files given the wrong way round.
        assert_eq!(
            error(&dir, "key.pem", "cert.pem"),
            "tls-certificate key.pem holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        );
        assert_eq!(
            error(&dir, "cert.pem", "cert.pem"),
            "tls-key cert.pem holds no PEM private key \
             (-----BEGIN PRIVATE KEY-----, or RSA or EC PRIVATE KEY)"
        );
        assert_eq!(
            error(&dir, "cert.pem", "other-key.pem"),
            "tls-key other-key.pem is not the private key of tls-certificate cert.pem"
        );
        assert!(
            error(&dir, "cert.pem", "missing.pem")
                .starts_with("tls-key missing.pem: No such file or directory"),
            "{}",
            error(&dir, "cert.pem", "missing.pem")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
