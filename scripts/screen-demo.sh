#!/usr/bin/env bash
# Screen sharing tried as a new user would, without a real display:
#   Xvfb :99 (1920x1080) with an xterm that xdotool types into,
#   a host on 127.0.0.1, a presenter bot sharing :99 and a viewer bot that
#   saves what it sees as a PNG.
# Needs: xvfb, xterm, xdotool (Debian packages). Sends nothing beyond 127.0.0.1.
# Usage: scripts/screen-demo.sh [OUT.png]     (default: target/screen-demo.png)
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-target/screen-demo.png}
DISP=${SCREEN_DEMO_DISPLAY:-:99}
OFFSET=${SCREEN_DEMO_PORT_OFFSET:-3300}
BIN=${SAPORA_BIN:-target/release/sapora}
export SAPORA_DISCOVERY_ADDR=127.255.255.255

for tool in Xvfb xterm xdotool; do
    command -v "$tool" >/dev/null || { echo "screen-demo: $tool is missing (apt-get install xvfb xterm xdotool)" >&2; exit 1; }
done
if [ ! -x "$BIN" ]; then
    echo "screen-demo: building $BIN"
    cargo build --release --bin sapora
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

Xvfb "$DISP" -screen 0 1920x1080x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do DISPLAY=$DISP xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done

DISPLAY=$DISP xterm -geometry 110x40+40+40 -fa Monospace -fs 9 -bg '#1d1f21' -fg '#e0e0e0' -T "screen demo" &
pids+=($!)
sleep 1

"$BIN" host --headless --bind 127.0.0.1 --port-offset "$OFFSET" --no-discovery >/dev/null &
pids+=($!)
sleep 1
CONTROL=127.0.0.1:$((5000 + OFFSET))

"$BIN" bot "$CONTROL" --name presenter --share-screen "$DISP" --duration 9 --report json >target/screen-demo-presenter.json &
pids+=($!)
sleep 1
"$BIN" bot "$CONTROL" --name viewer --view-screen --save-png "$OUT" --duration 7 --report json >target/screen-demo-viewer.json &
viewer=$!
pids+=($viewer)

# Type into the terminal while it is being shared.
sleep 1
DISPLAY=$DISP xdotool search --name "screen demo" windowactivate --sync 2>/dev/null || true
DISPLAY=$DISP xdotool type --delay 40 "echo 'Hello from Sapora screen sharing: 12 px text stays readable.'"
DISPLAY=$DISP xdotool key Return
DISPLAY=$DISP xdotool type --delay 20 "ls -l /usr/bin | head -20"
DISPLAY=$DISP xdotool key Return

wait "$viewer"
echo "viewer:    $(cat target/screen-demo-viewer.json)"
sleep 2.5
echo "presenter: $(cat target/screen-demo-presenter.json)"
if [ -s "$OUT" ]; then
    echo "screen-demo: the viewer saved what it saw in $OUT"
else
    echo "screen-demo: no PNG was saved" >&2
    exit 1
fi
