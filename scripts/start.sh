#!/usr/bin/env bash
# Start a Sapora meeting on this machine: install what the build needs, build
# the release binary, and run `sapora host` with any arguments given here.
#
#   scripts/start.sh                      host on all interfaces, announce on the LAN
#   scripts/start.sh --room standup       host the meeting "standup"
#   scripts/start.sh --headless           relay only, no window
#
# Everything after the script name goes to `sapora host` (see `sapora host --help`).
set -euo pipefail

cd "$(dirname "$0")/.."

printf '==> scripts/setup.sh\n'
scripts/setup.sh

printf '==> cargo build --release\n'
cargo build --release --bin sapora

printf '==> sapora host %s\n' "$*"
# On Unix `cargo run` execs the program, so Ctrl+C reaches sapora directly and
# it can tell participants the meeting is over. (--quiet: already built above.)
exec cargo run --release --quiet --bin sapora -- host "$@"
