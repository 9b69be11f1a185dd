//! The auth token from the environment (for gst-launch use), in a process
//! of its own since it changes the environment.

mod common;

use common::*;
use gst::prelude::*;

use gsttwiliostream::codec::WireFormat;
use twilio_emulator::{CallParams, Dialer, Playout, Provider, TwilioCall};

#[test]
fn twilio_auth_token_from_the_environment_and_an_empty_property_disables_it() {
    // SAFETY: this test binary has no other test and sets it before any thread reads it.
    unsafe { std::env::set_var("TWILIO_AUTH_TOKEN", "12345") };
    init();
    // The warning that the variable is not used where it is not Twilio's.
    let warned = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    gst::log::set_threshold_for_name("twiliostream", gst::DebugLevel::Warning);
    gst::log::add_log_function({
        let warned = warned.clone();
        move |cat, level, _, _, _, _, msg| {
            let text = msg.get().map(|m| m.to_string()).unwrap_or_default();
            if cat.name() == "twiliostream"
                && level == gst::DebugLevel::Warning
                && text.contains("TWILIO_AUTH_TOKEN is set")
            {
                warned.lock().unwrap().push(text);
            }
        }
    });
    let dial = |dialer: &Dialer, url: &str| {
        rt().block_on(TwilioCall::connect_via(
            dialer,
            url,
            CallParams::default(),
            Playout::Instant,
        ))
        .map(|_| ())
        .map_err(|e| e.to_string())
    };

    let p = pipeline("twiliostreamsrc name=src port=0 ! fakesink");
    set_state(&p, gst::State::Playing);
    let url = url_of(&by_name(&p, "src"));
    assert!(dial(&Dialer::default(), &url).unwrap_err().contains("403"));
    let signed = Dialer {
        auth_token: Some("12345".into()),
        signed_url: Some(url.replacen("ws://", "wss://", 1)),
        ..Dialer::default()
    };
    dial(&signed, &url).expect("signed with the token from the environment");
    set_state(&p, gst::State::Null);

    // auth-token="" turns the check off despite the environment.
    let p = pipeline("twiliostreamsrc name=src port=0 auth-token=\"\" ! fakesink");
    set_state(&p, gst::State::Playing);
    dial(&Dialer::default(), &url_of(&by_name(&p, "src"))).expect("no check");
    set_state(&p, gst::State::Null);
    // The variable is Twilio's: a path fixed to a provider that never
    // sends X-Twilio-Signature does not take it (its calls would all get
    // 403); `auto` may take Twilio's calls, and does.
    for (dialect, provider) in [
        ("signalwire", Provider::SignalWire),
        ("telnyx", Provider::Telnyx),
    ] {
        let p = pipeline(&format!(
            "twiliostreamsrc name=src port=0 dialect={dialect} ! fakesink"
        ));
        set_state(&p, gst::State::Playing);
        let src = by_name(&p, "src");
        let url = url_of(&src);
        rt().block_on(async {
            let params = CallParams::of(provider, WireFormat::PCMU);
            let mut call =
                TwilioCall::connect_via(&Dialer::default(), &url, params, Playout::Instant)
                    .await
                    .unwrap_or_else(|e| panic!("{dialect}: an unsigned call refused: {e}"));
            call.begin().unwrap();
            call.close().await;
        });
        assert_eq!(src.property::<u64>("signature-failures"), 0, "{dialect}");
        set_state(&p, gst::State::Null);
        // ... which the log says, as a WARNING, once the element listens.
        let warned = std::mem::take(&mut *warned.lock().unwrap());
        assert_eq!(warned.len(), 1, "{dialect}: {warned:?}");
        assert!(warned[0].contains("not authenticated"), "{warned:?}");
        // Named by the URL it listens on (the bound port, not port=0).
        assert!(warned[0].starts_with(&format!("{url}: ")), "{warned:?}");
    }
    // Not where the variable is used, nor where a bearer token is set.
    let p = pipeline(
        "twiliostreamsrc name=src port=0 dialect=signalwire auth-bearer-token=s3cret ! fakesink",
    );
    set_state(&p, gst::State::Playing);
    set_state(&p, gst::State::Null);
    let p = pipeline("twiliostreamsrc name=src port=0 dialect=twilio ! fakesink");
    set_state(&p, gst::State::Playing);
    assert!(
        dial(&Dialer::default(), &url_of(&by_name(&p, "src")))
            .unwrap_err()
            .contains("403")
    );
    set_state(&p, gst::State::Null);
    assert_eq!(*warned.lock().unwrap(), Vec::<String>::new());
}
