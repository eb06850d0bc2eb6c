#!/usr/bin/env bash
# End-to-end check of the desktop app under Xvfb: a headless host on
# 127.0.0.1, the app joined as "Alice" with the test camera, and two bots with
# test cameras. Takes screenshots of the whole screen (ImageMagick `import`).
#
#   scripts/screenshot.sh [OUT_DIR]        (default: target/screenshots)
#
# It doubles as the app's benchmark (CPU of the app process, and join →
# first remote frame from the app's log):
#   BOTS="B1 B2 B3 B4 B5 B6 B7 B8" MEASURE_SECS=20 scripts/screenshot.sh   nine tiles
#   ... ALWAYS_FULL=true ...                                                 nine full-size
#   BOT_CAMERA=none APP_CAMERA=none MEASURE_SECS=20 scripts/screenshot.sh  idle call
#
# Needs: Xvfb, ImageMagick. Everything stays on loopback. The app renders
# with the tiny-skia software backend (ICED_BACKEND=tiny-skia), as on a
# machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-target/screenshots}
DISPLAY_NUM=${SCREENSHOT_DISPLAY:-:97}
OFFSET=${PORT_OFFSET:-370}
PORT=$((5000 + OFFSET))
WAIT=${WAIT_SECS:-6}
BOTS=${BOTS:-Bob Carol}
BOT_CAMERA=${BOT_CAMERA:-test}
APP_CAMERA=${APP_CAMERA:-test}
MEASURE=${MEASURE_SECS:-0}
# ALWAYS_FULL=true: receive 640×480 from everyone even in the 3×3 grid.
ALWAYS_FULL=${ALWAYS_FULL:-false}
# SHARE=1: one more bot, Dana, presents a synthetic screen (call-presenting.png).
SHARE=${SHARE:-0}
mkdir -p "$OUT"

# PROFILE=release for benchmark figures (the bots' test cameras are our own
# code, slow unoptimised).
PROFILE=${PROFILE:-debug}
if [ "$PROFILE" = release ]; then cargo build --quiet --release; else cargo build --quiet; fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE/sapora

CFG=$(mktemp -d)
LOGS=$(mktemp -d)
# No sound card here: a tone microphone and a silent speaker.
cat >"$CFG/settings.json" <<JSON
{ "name": "Alice", "camera": "test", "mic": "none", "speaker": "null", "quality": "Standard",
  "always_full": $ALWAYS_FULL }
JSON
export SAPORA_CONFIG_DIR=$CFG SAPORA_DISCOVERY_ADDR=127.255.255.255 ICED_BACKEND=tiny-skia
export SAPORA_LOG=${SAPORA_LOG:-warn,sapora::ui=info}

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$CFG"
}
trap cleanup EXIT

Xvfb "$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$LOGS/xvfb.log" 2>&1 &
PIDS+=($!)
sleep 1

"$BIN" host --headless --bind 127.0.0.1 --port-offset "$OFFSET" --no-discovery --name demo-host \
    >"$LOGS/host.log" 2>&1 &
PIDS+=($!)
sleep 0.5

# Bots receive nothing (--subscribe none): only the app's decoding counts.
for who in $BOTS; do
    "$BIN" bot "127.0.0.1:$PORT" --name "$who" --camera "$BOT_CAMERA" --subscribe none \
        --duration $((WAIT + MEASURE + 60)) >"$LOGS/bot-$who.log" 2>&1 &
    PIDS+=($!)
done
if [ "$SHARE" = 1 ]; then
    "$BIN" bot "127.0.0.1:$PORT" --name Dana --share-screen test:1280x720 --screen-fps 5 \
        --duration $((WAIT + MEASURE + 60)) >"$LOGS/bot-Dana.log" 2>&1 &
    PIDS+=($!)
fi
sleep 1

DISPLAY=$DISPLAY_NUM "$BIN" join "127.0.0.1:$PORT" --name Alice --camera "$APP_CAMERA" --mic none --speaker null \
    >"$LOGS/app.log" 2>&1 &
APP=$!
PIDS+=($APP)

sleep "$WAIT"
import -display "$DISPLAY_NUM" -window root "$OUT/call.png"
sleep 1
# A second picture a second later: the test patterns must have moved.
import -display "$DISPLAY_NUM" -window root "$OUT/call-later.png"
if command -v compare >/dev/null; then
    diff=$(compare -metric AE "$OUT/call.png" "$OUT/call-later.png" null: 2>&1 || true)
    echo "pixels that changed in 1 s: $diff"
fi
if [ "$MEASURE" -gt 0 ]; then
    ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
    t0=$(ticks "$APP"); s0=$(date +%s.%N)
    sleep "$MEASURE"
    t1=$(ticks "$APP"); s1=$(date +%s.%N)
    hz=$(getconf CLK_TCK)
    echo "app CPU over ${MEASURE} s: $(echo "($t1 - $t0) / $hz / ($s1 - $s0) * 100" | bc -l | cut -c1-5) % of one core"
    import -display "$DISPLAY_NUM" -window root "$OUT/call-measured.png"
fi
grep -hE "first remote frame|frames/s shown" "$LOGS/app.log" | tail -n 3 | sed "s/\x1b\[[0-9;]*m//g; s/.*INFO //" || true
echo "screenshots: $OUT/call.png $OUT/call-later.png (logs in $LOGS)"
