#!/usr/bin/env bash
# Install the system packages Sapora's build and tests need.
#
# Idempotent: packages already installed are left alone, and apt-get (and
# sudo) only run when something is missing. Non-interactive, so it works in
# CI with no standard input. On a system without apt/dpkg it prints what to
# install and carries on.
#
# Usage: scripts/setup.sh
set -euo pipefail

# ---------------------------------------------------------------------------
# Debian/Ubuntu packages: the ONE list. Add new system dependencies here.
# ---------------------------------------------------------------------------
PACKAGES=(
    pkg-config        # -sys crates find C libraries with it
    build-essential   # C compiler and make, for crates that build C
    iproute2          # `ip`: network namespaces for the tests and the simulated LAN (scripts/lan.sh)
    util-linux        # `unshare`, `nsenter`: tests run in network namespaces; scripts/lan.sh
    nftables          # `nft`: firewall rules on the simulated LAN (tests/lan.rs, scripts/lan.sh)
    libasound2-dev    # audio devices (cpal -> alsa-sys)
    libopus-dev       # Opus codec (opus -> audiopus_sys; without it, it needs cmake)
    libclang-dev      # camera (nokhwa -> v4l2-sys-mit, bindgen needs libclang)
    libxcb1-dev libxcb-shm0-dev libxcb-randr0-dev   # screen capture (scrap links xcb)
    # For the scripts that run the app and screen sharing without a display
    # (scripts/screenshot.sh, scripts/screen-demo.sh); small, so always installed.
    xvfb xdotool xterm x11-utils imagemagick
    zenity            # the app's file dialog where no XDG desktop portal runs (rfd falls back to it)
    ffmpeg opus-tools # ffprobe and opusinfo check recordings (tests/record.rs)
)

say() { printf '==> setup: %s\n' "$*"; }
warn() { printf 'setup: warning: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
    warn "cargo not found: install Rust (1.85 or newer) with rustup, then run this again"
    warn "(if it is installed, add ~/.cargo/bin to PATH: . \"\$HOME/.cargo/env\")"
    exit 1
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    warn "not a Debian/Ubuntu system (no apt-get/dpkg): install these packages (or your"
    warn "distribution's equivalents) yourself, then carry on: ${PACKAGES[*]}"
    exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    say "system packages present: ${PACKAGES[*]}"
    exit 0
fi

say "installing missing packages: ${missing[*]}"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        warn "not root and sudo is not installed: as root, run: apt-get install -y ${missing[*]}"
        exit 1
    fi
    # Without a terminal sudo cannot ask for a password: fail fast instead of hanging.
    if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
say "installed: ${missing[*]}"
