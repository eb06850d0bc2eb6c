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
    nftables          # `nft`: firewall rules on the simulated LAN (tests/lan.rs, scripts/lan.sh) and random loss (scripts/pesq.sh)
    libasound2-dev    # audio devices (cpal -> alsa-sys)
    libopus-dev       # Opus codec (opus -> audiopus_sys; without it, it needs cmake)
    libclang-dev      # camera (nokhwa -> v4l2-sys-mit, bindgen needs libclang)
    libxcb1-dev libxcb-shm0-dev libxcb-randr0-dev   # X11 screen capture (scrap links xcb; xcap uses randr)
    # Wayland screen capture (xcap, cargo feature wayland-capture): the desktop
    # portal's PipeWire stream (pipewire-sys: bindgen with libclang above) and
    # libwayshot's GBM/EGL.
    libpipewire-0.3-dev libgbm-dev libegl-dev libwayland-dev
    dbus-daemon       # a private session bus for the portal tests (media::screen::portal)
    # The Windows check in .ci/run (cargo check --target x86_64-pc-windows-gnu):
    # build scripts compile C for Windows (ring) and build Opus with cmake.
    gcc-mingw-w64-x86-64-win32 cmake
    # For the scripts that run the app and screen sharing without a display
    # (scripts/screenshot.sh, scripts/screen-demo.sh); small, so always installed.
    xvfb xdotool xterm x11-utils imagemagick
    zenity            # the app's file dialog where no XDG desktop portal runs (rfd falls back to it)
    ffmpeg opus-tools # ffprobe and opusinfo check recordings (tests/record.rs)
    # Browser guests end to end (tests/browser.rs): headless chromium driven by
    # playwright-core (node and npm: see the npm section below).
    chromium
)

say() { printf '==> setup: %s\n' "$*"; }
warn() { printf 'setup: warning: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
    warn "cargo not found: install Rust (1.91 or newer) with rustup, then run this again"
    warn "(if it is installed, add ~/.cargo/bin to PATH: . \"\$HOME/.cargo/env\")"
    exit 1
fi
# Voice processing (sonora) needs Rust 1.91: say so before a long build fails.
rust_minor=$(rustc --version 2>/dev/null | sed -n 's/^rustc 1\.\([0-9]*\).*/\1/p')
if [ -n "$rust_minor" ] && [ "$rust_minor" -lt 91 ]; then
    warn "Rust $(rustc --version | cut -d' ' -f2) is too old: Sapora needs 1.91 or newer (run: rustup update)"
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

SUDO=()
if [ "$(id -u)" -ne 0 ] && [ ${#missing[@]} -gt 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        warn "not root and sudo is not installed: as root, run: apt-get install -y ${missing[*]}"
        exit 1
    fi
    # Without a terminal sudo cannot ask for a password: fail fast instead of hanging.
    if [ -t 0 ]; then SUDO=(sudo); else SUDO=(sudo -n); fi
fi

export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -eq 0 ]; then
    say "system packages present: ${PACKAGES[*]}"
else
    say "installing missing packages: ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    say "installed: ${missing[*]}"
fi

# ---------------------------------------------------------------------------
# Python packages (pip), for scripts/pesq.sh only: numpy, scipy and pesq
# (ITU-T P.862 PESQ; built from source, so it needs the C compiler above and
# Python's headers). Not fatal: without them scripts/pesq.sh says it cannot
# score and prints no score.
# ---------------------------------------------------------------------------
PIP_PACKAGES=(numpy scipy pesq)
if ! command -v python3 >/dev/null 2>&1; then
    warn "python3 not found: scripts/pesq.sh will not score (install python3, then run this again)"
elif python3 -c 'import numpy, scipy, pesq' 2>/dev/null; then
    say "python packages present: ${PIP_PACKAGES[*]}"
else
    if ! python3 -m pip --version >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends python3-pip python3-dev || true
    fi
    say "installing python packages: ${PIP_PACKAGES[*]}"
    # numpy first: pesq's build imports it. A Debian system Python refuses
    # pip installs (PEP 668) unless told otherwise; this is a test tool.
    for pkgs in "numpy scipy" "pesq"; do
        # shellcheck disable=SC2086
        python3 -m pip install --quiet $pkgs 2>/dev/null \
            || python3 -m pip install --quiet --break-system-packages $pkgs \
            || warn "pip could not install $pkgs: scripts/pesq.sh will not score"
    done
fi

# ---------------------------------------------------------------------------
# npm packages, for tests/browser.rs only: playwright-core (pinned in
# tests/browser/package.json and package-lock.json; it drives the chromium
# installed above, and downloads no browser of its own). Not fatal: without
# it tests/browser.rs says so and skips.
# ---------------------------------------------------------------------------
browser_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/browser"
# node and npm from Debian unless some node (e.g. NodeSource's, which bundles
# npm and conflicts with Debian's npm package) is installed already.
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    say "installing node and npm (Debian packages nodejs npm)"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends nodejs npm \
        || warn "apt-get could not install nodejs npm"
fi
if ! command -v npm >/dev/null 2>&1; then
    warn "npm not found: tests/browser.rs will skip (install nodejs and npm, then run this again)"
elif [ -f "$browser_dir/node_modules/playwright-core/package.json" ] \
    && [ "$(node -p "require('$browser_dir/node_modules/playwright-core/package.json').version" 2>/dev/null)" \
        = "$(node -p "require('$browser_dir/package.json').dependencies['playwright-core']" 2>/dev/null)" ]; then
    say "npm packages present: playwright-core (tests/browser)"
else
    say "installing npm packages: playwright-core (tests/browser)"
    (cd "$browser_dir" && npm ci --no-audit --no-fund --silent) \
        || warn "npm could not install playwright-core: tests/browser.rs will skip"
fi
