//! The plugin installed by `scripts/install` into a throwaway home folder,
//! as a user would have it: GStreamer finds it in
//! `~/.local/share/gstreamer-1.0/plugins` with no `GST_PLUGIN_PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Environment variables that would point GStreamer (or GLib's user
/// folders) elsewhere than the temporary home.
const CLEARED: &[&str] = &[
    "GST_PLUGIN_PATH",
    "GST_PLUGIN_PATH_1_0",
    "GST_REGISTRY",
    "GST_REGISTRY_1_0",
    "XDG_DATA_HOME",
    "XDG_CACHE_HOME",
];

/// A temporary `HOME`, removed on drop.
pub struct Home {
    pub path: PathBuf,
}

impl Home {
    pub fn new(tag: &str) -> Home {
        let path =
            std::env::temp_dir().join(format!("twiliostream-home-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Home { path }
    }

    /// `program` with this home and nothing else telling GStreamer where
    /// plugins are.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for var in CLEARED {
            cmd.env_remove(var);
        }
        cmd.env("HOME", &self.path);
        cmd
    }

    /// Runs `scripts/install` with `args`, taking the library this test
    /// binary was built with (no second build: cargo holds the build lock
    /// while tests run).
    pub fn install(&self, args: &[&str]) -> Output {
        let out = self
            .command("bash")
            .arg(repo().join("scripts/install"))
            .arg("--lib")
            .arg(built_plugin())
            .args(args)
            .output()
            .expect("run bash scripts/install");
        assert!(
            out.status.success(),
            "scripts/install {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Where the plugin lands.
    pub fn plugin_dir(&self) -> PathBuf {
        self.path.join(".local/share/gstreamer-1.0/plugins")
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The plugin built with this test binary: beside it in `deps/` (cargo
/// copies it up to `target/<profile>/` only when the library itself is
/// what was asked to build).
pub fn built_plugin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let lib = exe.with_file_name("libgsttwiliostream.so");
    assert!(lib.is_file(), "{} not built", lib.display());
    lib
}
