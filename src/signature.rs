//! `X-Twilio-Signature` on the WebSocket upgrade: base64 of HMAC-SHA1 over
//! the public URL (as written in the TwiML, `wss://` scheme; the scheme and
//! host in any case, with or without `:443`), keyed with the account's
//! auth token. Compared in constant time. Also
//! SignalWire's `Authorization: Bearer` token ([`verify_bearer`]) and
//! Telnyx's bare `x-telnyx-streaming-auth-token` ([`verify_token`]).

use base64::Engine as _;
use hmac::{KeyInit, Mac};

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// The signature Twilio sends for `message` (a URL, or for webhooks the URL
/// followed by the sorted POST parameters).
pub fn sign(auth_token: &str, message: &str) -> String {
    let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
    mac.update(message.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` (base64, as in the header) is Twilio's for `url` or
/// for the same URL with the default port written out or left out.
pub fn verify(auth_token: &str, url: &str, signature: &str) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    url_forms(url).iter().any(|form| {
        let mut mac = HmacSha1::new_from_slice(auth_token.as_bytes()).expect("HMAC takes any key");
        mac.update(form.as_bytes());
        // Constant time in the signature's content.
        mac.verify_slice(&expected).is_ok()
    })
}

/// Whether `authorization` (the header's value) is `Bearer <token>`. Both
/// tokens are compared as HMACs of one key, so the time taken does not
/// depend on where they differ (nor much on their lengths).
pub fn verify_bearer(token: &str, authorization: &str) -> bool {
    let value = authorization.trim();
    let Some((scheme, given)) = value.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    verify_token(token, given)
}

/// Whether `given` (a header's value, surrounding blanks aside) is `token`,
/// compared as HMACs of one key, like [`verify_bearer`]: Telnyx's
/// `x-telnyx-streaming-auth-token` carries the token bare.
pub fn verify_token(token: &str, given: &str) -> bool {
    let digest = |s: &str| {
        let mut mac = HmacSha1::new_from_slice(b"twiliostream bearer").expect("any key");
        mac.update(s.as_bytes());
        mac
    };
    let expected = digest(token).finalize().into_bytes();
    digest(given.trim()).verify_slice(&expected).is_ok()
}

/// Why `url` (the `public-url` property) cannot be what Twilio signs, if
/// it cannot: Twilio dials only `wss://` URLs with a host and no query
/// string, and signs the URL with that scheme (an `https://` form of it
/// never matches), so any other form would refuse every call.
pub fn check_public_url(url: &str) -> Result<(), String> {
    let rest = url
        .get(..6)
        .filter(|scheme| scheme.eq_ignore_ascii_case("wss://"))
        .map(|_| &url[6..])
        .ok_or_else(|| {
            format!(
                "public-url {url:?} is not a wss:// URL: Twilio dials only wss:// and signs \
                 the URL with that scheme (write it as in the TwiML, wss://host/path)"
            )
        })?;
    if url.contains(['?', '#']) {
        return Err(format!(
            "public-url {url:?} holds a query string or fragment, which Twilio does not \
             allow in the <Stream> url"
        ));
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("public-url {url:?} names no host"));
    }
    Ok(())
}

/// The forms of `url` a signature may be over: `url` as given and with its
/// scheme and host in lower case (RFC 3986 §6.2.2.1: both are
/// case-insensitive; whether Twilio keeps the TwiML's case is unconfirmed,
/// and its own validators sign the lower-cased form), each also with
/// `:443` added (no port given) or removed (`:443` given) for `wss://`
/// URLs, in any case.
fn url_forms(url: &str) -> Vec<String> {
    let mut forms: Vec<String> = Vec::new();
    for base in [url.to_owned(), lower_scheme_and_host(url)] {
        for form in port_forms(base) {
            if !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms
}

/// `url` split as scheme (with `://`), userinfo (with `@`), host and port,
/// and the rest (from the path on); None without a `://`.
fn split_url(url: &str) -> Option<(&str, &str, &str, &str)> {
    let after_scheme = url.find("://")? + 3;
    let (scheme, rest) = url.split_at(after_scheme);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, host) = authority.split_at(authority.rfind('@').map_or(0, |at| at + 1));
    Some((scheme, userinfo, host, path))
}

/// `url` with its scheme and host (with the port) in ASCII lower case.
fn lower_scheme_and_host(url: &str) -> String {
    match split_url(url) {
        Some((scheme, userinfo, host, path)) => format!(
            "{}{userinfo}{}{path}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        ),
        None => url.to_owned(),
    }
}

/// `url`, plus for a `wss://` URL (scheme in any case) the form with
/// `:443` added (no port given) or removed (`:443` given).
fn port_forms(url: String) -> Vec<String> {
    let other = match split_url(&url) {
        Some((scheme, userinfo, host, path)) if scheme.eq_ignore_ascii_case("wss://") => {
            match host.strip_suffix(":443") {
                Some(bare) => Some(format!("{scheme}{userinfo}{bare}{path}")),
                // No port: a name, or an IPv6 address in brackets.
                None if !host.contains(':') || host.ends_with(']') => {
                    Some(format!("{scheme}{userinfo}{host}:443{path}"))
                }
                None => None,
            }
        }
        _ => None,
    };
    std::iter::once(url).chain(other).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of twilio-protocol.md (auth token 12345).
    const TOKEN: &str = "12345";

    #[test]
    fn twilio_webhook_vector_checks_the_hmac_itself() {
        let message = "https://mycompany.com/myapp.php?foo=1&bar=2CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212";
        assert_eq!(sign(TOKEN, message), "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }

    #[test]
    fn wss_vectors() {
        assert_eq!(
            sign(TOKEN, "wss://example.com/media-stream"),
            "XFfwGS2Ev7f9qAP9MmRoMS7C724="
        );
        assert_eq!(
            sign(TOKEN, "wss://example.com:443/media-stream"),
            "55OA2CdDEK8djZDRLLS9pHUR+JI="
        );
        assert_eq!(
            sign(TOKEN, "https://example.com/media-stream"),
            "+Nt/WUHH2g+0+t2rLN3k9fNhfEw="
        );
    }

    #[test]
    fn both_port_forms_validate() {
        for url in [
            "wss://example.com/media-stream",
            "wss://example.com:443/media-stream",
        ] {
            assert!(verify(TOKEN, url, "XFfwGS2Ev7f9qAP9MmRoMS7C724="), "{url}");
            assert!(verify(TOKEN, url, "55OA2CdDEK8djZDRLLS9pHUR+JI="), "{url}");
        }
    }

    #[test]
    fn an_https_signature_does_not_validate_a_wss_url() {
        assert!(!verify(
            TOKEN,
            "wss://example.com/media-stream",
            "+Nt/WUHH2g+0+t2rLN3k9fNhfEw="
        ));
    }

    #[test]
    fn wrong_token_path_or_garbage_fail() {
        let good = "XFfwGS2Ev7f9qAP9MmRoMS7C724=";
        assert!(!verify("54321", "wss://example.com/media-stream", good));
        assert!(!verify(TOKEN, "wss://example.com/other", good));
        assert!(!verify(TOKEN, "wss://example.com:8443/media-stream", good));
        assert!(!verify(TOKEN, "wss://example.com/media-stream", ""));
        assert!(!verify(
            TOKEN,
            "wss://example.com/media-stream",
            "not base64!"
        ));
        assert!(!verify(
            TOKEN,
            "wss://example.com/media-stream",
            "XFfwGS2Ev7f9qAP9MmRoMS7C72="
        ));
    }

    #[test]
    fn url_forms_cover_the_default_port_only() {
        assert_eq!(url_forms("wss://a.b/p"), ["wss://a.b/p", "wss://a.b:443/p"]);
        assert_eq!(
            url_forms("wss://a.b:443/p"),
            ["wss://a.b:443/p", "wss://a.b/p"]
        );
        assert_eq!(url_forms("wss://a.b:8443/p"), ["wss://a.b:8443/p"]);
        assert_eq!(
            url_forms("wss://[::1]/p"),
            ["wss://[::1]/p", "wss://[::1]:443/p"]
        );
        assert_eq!(url_forms("https://a.b/p"), ["https://a.b/p"]);
        assert_eq!(
            url_forms("wss://u:Pw@a.b/p"),
            ["wss://u:Pw@a.b/p", "wss://u:Pw@a.b:443/p"]
        );
    }

    #[test]
    fn scheme_and_host_are_taken_in_any_case() {
        assert_eq!(
            url_forms("WSS://Voice.Example.COM/Media"),
            [
                "WSS://Voice.Example.COM/Media",
                "WSS://Voice.Example.COM:443/Media",
                "wss://voice.example.com/Media",
                "wss://voice.example.com:443/Media",
            ]
        );
        assert_eq!(
            url_forms("Wss://U@A.b:443/p"),
            [
                "Wss://U@A.b:443/p",
                "Wss://U@A.b/p",
                "wss://U@a.b:443/p",
                "wss://U@a.b/p"
            ]
        );
        // Twilio's vectors, signed over the lower-case URL with and
        // without :443, validate the same URL in any case, both ways.
        for url in [
            "WSS://example.com/media-stream",
            "wss://EXAMPLE.com/media-stream",
            "Wss://Example.Com:443/media-stream",
        ] {
            assert!(verify(TOKEN, url, "XFfwGS2Ev7f9qAP9MmRoMS7C724="), "{url}");
            assert!(verify(TOKEN, url, "55OA2CdDEK8djZDRLLS9pHUR+JI="), "{url}");
        }
        // The path is case-sensitive; an https signature stays refused.
        let good = "XFfwGS2Ev7f9qAP9MmRoMS7C724=";
        assert!(!verify(TOKEN, "wss://example.com/Media-Stream", good));
        assert!(!verify(
            TOKEN,
            "WSS://example.com/media-stream",
            "+Nt/WUHH2g+0+t2rLN3k9fNhfEw="
        ));
    }

    #[test]
    fn public_urls_must_be_what_twilio_signs() {
        for url in [
            "wss://example.com/media-stream",
            "wss://example.com:443/media-stream",
            "WSS://example.com/media-stream",
            "wss://[::1]:8443/",
            "wss://example.com",
        ] {
            assert_eq!(check_public_url(url), Ok(()), "{url}");
        }
        for (url, why) in [
            ("https://example.com/media-stream", "not a wss:// URL"),
            ("ws://example.com/media-stream", "not a wss:// URL"),
            ("example.com/media-stream", "not a wss:// URL"),
            ("wss:/", "not a wss:// URL"),
            ("wss://example.com/media-stream?a=1", "query string"),
            ("wss://example.com/media-stream#a", "query string"),
            ("wss:///media-stream", "no host"),
            ("wss://", "no host"),
        ] {
            let err = check_public_url(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn bearer_tokens_must_match_exactly() {
        let token = "PT1234abcd";
        assert!(verify_bearer(token, "Bearer PT1234abcd"));
        assert!(verify_bearer(token, "bearer PT1234abcd "));
        for wrong in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer PT1234abc",
            "Bearer PT1234abcde",
            "Basic PT1234abcd",
            "PT1234abcd",
        ] {
            assert!(!verify_bearer(token, wrong), "{wrong:?}");
        }
    }

    #[test]
    fn bare_tokens_must_match_exactly() {
        let token = "PT1234abcd";
        assert!(verify_token(token, "PT1234abcd"));
        assert!(verify_token(token, " PT1234abcd "));
        for wrong in [
            "",
            "PT1234abc",
            "PT1234abcde",
            "pt1234abcd",
            "Bearer PT1234abcd",
        ] {
            assert!(!verify_token(token, wrong), "{wrong:?}");
        }
    }
}
