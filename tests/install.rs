//! `scripts/install`: the plugin installed into a (temporary) home folder is
//! found by a fresh `gst-inspect-1.0` with no `GST_PLUGIN_PATH`, and gone
//! again after `--uninstall`.

mod common;

use common::installed::Home;

#[test]
fn installed_per_user_gst_inspect_finds_it_and_uninstall_removes_it() {
    let home = Home::new("install");
    let inspect = || {
        home.command("gst-inspect-1.0")
            .arg("twiliostreamsrc")
            .output()
            .expect("run gst-inspect-1.0")
    };
    assert!(
        !inspect().status.success(),
        "found before it was installed: the test's environment leaks a plugin path"
    );

    home.install(&[]);
    let installed = home.plugin_dir().join("libgsttwiliostream.so");
    assert!(installed.is_file(), "{} missing", installed.display());
    let out = inspect();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "gst-inspect-1.0 failed after install:\n{text}"
    );
    assert!(
        text.contains(&format!("Filename                 {}", installed.display())),
        "loaded from elsewhere:\n{text}"
    );
    let sink = home
        .command("gst-inspect-1.0")
        .arg("twiliostreamsink")
        .output()
        .unwrap();
    assert!(sink.status.success());

    // Installing again replaces it in place.
    home.install(&[]);
    assert!(inspect().status.success());

    let out = home.install(&["--uninstall"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed"));
    assert!(!installed.exists());
    let out = inspect();
    assert!(!out.status.success(), "still found after --uninstall");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No such element or plugin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The plugin's debug categories exist once it is loaded, before any
/// element is made: `--gst-debug-help` lists them (they were made at the
/// elements' first use).
#[test]
fn gst_debug_help_lists_the_plugins_categories() {
    let home = Home::new("debug-help");
    home.install(&[]);
    let out = home
        .command("gst-launch-1.0")
        .arg("--gst-debug-help")
        .output()
        .expect("run gst-launch-1.0");
    let text = String::from_utf8_lossy(&out.stdout);
    for category in [
        "twiliostreamsrc",
        "twiliostreamsink",
        "twiliostream ",
        "twiliostream-runtime",
    ] {
        assert!(text.contains(category), "{category} not in:\n{text}");
    }
}
