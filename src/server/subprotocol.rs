//! The WebSocket subprotocol an upgrade is answered with (RFC 6455
//! §4.2.2): one the client offers in `Sec-WebSocket-Protocol` and the
//! path's dialect speaks, or none. A client may offer several, on one
//! header line (comma-separated) or several; the server answers at most
//! one, and only one that was offered (§4.1: a client fails the connection
//! on any other). Clients differ on an offer left unanswered:
//! libwebsockets (Somleng's `mod_twilio_stream`) goes on with the protocol
//! it asked for, tungstenite fails the connection.

use crate::protocol::dialect::Choice;

/// Somleng's (`mod_twilio_stream`, an open-source Twilio): Twilio's
/// messages, so spoken by the `twilio` and `auto` dialects.
pub const SOMLENG: &str = "audio.somleng.org";

/// Whether a path of `dialect` speaks the subprotocol `name` (compared
/// without regard to ASCII case).
fn speaks(dialect: Choice, name: &str) -> bool {
    name.eq_ignore_ascii_case(SOMLENG) && matches!(dialect, Choice::Auto | Choice::Twilio)
}

/// The subprotocol to answer: the first one offered in `lines` (the
/// values of the request's `Sec-WebSocket-Protocol` header lines, as
/// bytes) that `dialect` speaks, spelled exactly as the client spelled it
/// (libwebsockets compares the answer with its offer byte for byte).
/// Lines that are not text and empty list elements are skipped.
pub fn select<'a>(lines: impl IntoIterator<Item = &'a [u8]>, dialect: Choice) -> Option<&'a str> {
    lines
        .into_iter()
        .filter_map(|line| std::str::from_utf8(line).ok())
        .flat_map(|line| line.split(','))
        .map(|name| name.trim_matches([' ', '\t']))
        .find(|name| !name.is_empty() && speaks(dialect, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick<'a>(lines: &[&'a str], dialect: Choice) -> Option<&'a str> {
        select(lines.iter().map(|l| l.as_bytes()), dialect)
    }

    #[test]
    fn somlengs_offer_is_answered_as_spelled() {
        for dialect in [Choice::Auto, Choice::Twilio] {
            assert_eq!(pick(&["audio.somleng.org"], dialect), Some(SOMLENG));
            assert_eq!(
                pick(&["Audio.Somleng.ORG"], dialect),
                Some("Audio.Somleng.ORG")
            );
        }
    }

    #[test]
    fn the_known_one_is_found_in_lists_and_lines() {
        let d = Choice::Auto;
        assert_eq!(pick(&["chat, audio.somleng.org"], d), Some(SOMLENG));
        assert_eq!(pick(&["chat,audio.somleng.org,x"], d), Some(SOMLENG));
        assert_eq!(pick(&[" , \taudio.somleng.org\t ,"], d), Some(SOMLENG));
        assert_eq!(pick(&["chat", "x, audio.somleng.org"], d), Some(SOMLENG));
        let lines: [&[u8]; 2] = [b"\xff\xfe", b"audio.somleng.org"];
        assert_eq!(select(lines, d), Some(SOMLENG));
    }

    #[test]
    fn nothing_known_gets_no_answer() {
        let d = Choice::Auto;
        assert_eq!(pick(&[], d), None);
        assert_eq!(pick(&[""], d), None);
        assert_eq!(pick(&[" , ,"], d), None);
        assert_eq!(pick(&["audio.jambonz.org", "chat"], d), None);
        assert_eq!(
            pick(&["audio.somleng.org.evil, xaudio.somleng.org"], d),
            None
        );
        assert_eq!(pick(&["audio.somleng.org;q=1"], d), None);
    }

    #[test]
    fn other_dialects_do_not_speak_somlengs() {
        for dialect in [Choice::SignalWire, Choice::Telnyx] {
            assert_eq!(pick(&["audio.somleng.org"], dialect), None);
        }
    }
}
