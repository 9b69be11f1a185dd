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
