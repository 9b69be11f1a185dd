//! Any text frame: parsing never panics, the media fast path agrees with
//! serde, and whatever parses survives the checks the server applies (base64
//! decode) and a JSON round trip.

#![no_main]

use gsttwiliostream::protocol::{Inbound, Outbound, write_media_json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The media fast path answers only as serde would.
    let parsed = Inbound::parse(text);
    match (&parsed, Inbound::parse_with_serde(text)) {
        (Ok(fast), Ok(serde)) => assert_eq!(fast, &serde),
        (Err(_), Err(_)) => {}
        (fast, serde) => panic!("fast path {fast:?} but serde {serde:?}"),
    }
    if let Ok(msg) = parsed {
        let _ = msg.event();
        let _ = msg.stream_sid();
        if let Inbound::Media { media, stream_sid, .. } = &msg {
            let mut ulaw = Vec::new();
            if media.decode_payload(&mut ulaw).is_ok() {
                // What the sink would send back parses as exactly that.
                let mut json = String::new();
                write_media_json(stream_sid, &ulaw, &mut json);
                let back: Outbound = serde_json::from_str(&json).expect("our own media JSON");
                assert_eq!(back, Outbound::media(stream_sid, &ulaw));
            }
        }
        // Re-serialising a parsed message gives one that parses the same.
        let again = msg.to_json();
        let reparsed = Inbound::parse(&again).expect("re-serialised message parses");
        assert_eq!(reparsed.event(), msg.event());
    }
    let _ = serde_json::from_str::<Outbound>(text);
});
