# Shared by scripts/demo and scripts/test: set-up of a fresh Debian 12 machine.
# Sourced, not run.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Where cargo puts what it builds (a relative CARGO_TARGET_DIR is taken from
# ROOT, where the scripts run cargo).
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
[[ $TARGET == /* ]] || TARGET="$ROOT/$TARGET"

# Debian packages the build, the tests and the demo need (nginx: the test of
# the reverse-proxy recipe runs a real one; espeak: the bots and the emulated
# caller speak; libav: avdec_g722 after the src in tests/compressed.rs;
# python3-gi, the GIR data and GStreamer's Python overrides:
# examples/python/voicebot.py).
DEBIAN_PACKAGES=(
  build-essential pkg-config libglib2.0-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  nginx
  gstreamer1.0-espeak
  gstreamer1.0-libav
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 python3-gst-1.0
)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Installs whatever of DEBIAN_PACKAGES (and "$@") is missing, and finds cargo.
setup() {
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    local sudo=
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install Rust with rustup (https://rustup.rs)" >&2
    exit 1
  }
}

# Copies the built plugin (profile $1: debug or release) into a folder of its
# own and points GStreamer at it, with a throwaway registry.
use_plugin() {
  local dir="$TARGET/gst-plugins/$1"
  mkdir -p "$dir"
  cp "$TARGET/$1/libgsttwiliostream.so" "$dir/"
  export GST_PLUGIN_PATH="$dir"
  export GST_REGISTRY="$dir/registry.bin"
}
