//! `scripts/lib.sh`, shared by `scripts/demo` and `scripts/test`: the plugin
//! is taken from where cargo built it, `CARGO_TARGET_DIR` included.

use std::path::Path;
use std::process::Command;

#[test]
fn use_plugin_takes_the_build_from_cargo_target_dir() {
    let target = std::env::temp_dir().join(format!("twiliostream-scripts-{}", std::process::id()));
    let built = target.join("release/libgsttwiliostream.so");
    std::fs::create_dir_all(built.parent().unwrap()).unwrap();
    // Not a library: use_plugin only copies it.
    std::fs::write(&built, b"the build under CARGO_TARGET_DIR").unwrap();

    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"set -euo pipefail; source "$1"; use_plugin release; echo "$GST_PLUGIN_PATH""#)
        .arg("bash")
        .arg(&lib)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "use_plugin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plugin_path = String::from_utf8(out.stdout).unwrap();
    let plugin_dir = Path::new(plugin_path.trim());
    assert_eq!(plugin_dir, target.join("gst-plugins/release"));
    assert_eq!(
        std::fs::read(plugin_dir.join("libgsttwiliostream.so")).unwrap(),
        b"the build under CARGO_TARGET_DIR"
    );
    std::fs::remove_dir_all(&target).unwrap();
}

/// `scripts/install` builds with cargo in the checkout, so a relative
/// `CARGO_TARGET_DIR` names a folder of the checkout, wherever the script is
/// run from. (A stand-in `cargo` on `PATH`: a real build here would wait for
/// the build lock cargo holds while tests run.)
#[test]
fn install_takes_a_relative_cargo_target_dir_from_the_checkout() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tag = format!("twiliostream-install-{}", std::process::id());
    let relative = format!("target/{tag}");
    let built = repo.join(&relative).join("release/libgsttwiliostream.so");
    std::fs::create_dir_all(built.parent().unwrap()).unwrap();
    std::fs::write(&built, b"the build under a relative CARGO_TARGET_DIR").unwrap();
    let elsewhere = std::env::temp_dir().join(&tag);
    let bin = elsewhere.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let cargo = bin.join("cargo");
    std::fs::write(&cargo, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let data = elsewhere.join("data");

    let out = Command::new("bash")
        .arg(repo.join("scripts/install"))
        .current_dir(&elsewhere)
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("CARGO_TARGET_DIR", &relative)
        .env("XDG_DATA_HOME", &data)
        .output()
        .expect("run bash");
    let installed = std::fs::read(data.join("gstreamer-1.0/plugins/libgsttwiliostream.so"));
    std::fs::remove_dir_all(repo.join(&relative)).unwrap();
    std::fs::remove_dir_all(&elsewhere).unwrap();
    assert!(
        out.status.success(),
        "scripts/install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        installed.unwrap(),
        b"the build under a relative CARGO_TARGET_DIR"
    );
}
