#!/usr/bin/env bash
# Idle-host benchmark: a headless host with 200 bots in 20 rooms (10 each),
# nobody talking: every bot has an open microphone that hears silence
# (`--mic file:` a silent WAV) and a speaker (`--speaker null`), so all 200
# run an audio engine. Their voice processing is off: it changes nothing the
# host receives, and 200 echo cancellers would take more than this 2-core
# machine has (joins then time out). Prints the host's resident memory, its CPU use over a
# measuring window, and the audio datagrams each member received per second.
# Everything stays on 127.0.0.1 / 127.255.255.255.
#   usage: scripts/bench-idle.sh [SECONDS]   (default 30)
# Environment: SAPORA_BIN (a built binary; default: `cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
# The bots stay this long: 20 s of staggered starts, up to 60 s for all 200
# to join on a loaded machine, the measuring window, and a margin.
run=$((secs + 90))
if [ -z "${SAPORA_BIN:-}" ]; then
    cargo build --release --quiet
    SAPORA_BIN="${CARGO_TARGET_DIR:-target}/release/sapora"
fi
bin=$SAPORA_BIN
work=$(mktemp -d /tmp/sapora-bench-idle.XXXXXX)
silence="$work/silence.wav"
python3 -c "
import wave
w = wave.open('$silence', 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(48000)
w.writeframes(b'\0\0' * 4800); w.close()"
offset=$((30000 + RANDOM % 1000))
export SAPORA_DISCOVERY_ADDR=127.255.255.255
# All 200 bots come from 127.0.0.1: lift the per-address connection cap
# (64 by default) that would otherwise refuse most of them.
"$bin" host --headless --bind 127.0.0.1 --port-offset "$offset" \
    --max-connections-per-address 400 >"$work/host.log" 2>&1 &
host=$!
trap 'kill $host ${bots[*]:-} 2>/dev/null || true; rm -rf "$work"' EXIT
sleep 0.5
bots=()
# The bots use QUIC, as members on a LAN do: under the load of 200 joining
# at once a handshake can take longer than the 2 s after which a client
# would otherwise try the TLS fallback, and the bench would measure a mix.
export SAPORA_TRANSPORT=${SAPORA_TRANSPORT:-quic}
for r in $(seq 1 20); do
  "$bin" bot "127.0.0.1:$((5000 + offset))" --name "r${r}bot" --room "room$r" --count 10 \
      --mic "file:$silence" --speaker null --duration "$run" --report json \
      --aec off --noise-suppression off --agc off \
      >"$work/bots-$r.json" 2>&1 &
  bots+=($!)
  # One room at a time: 200 members joining in the same instant starve
  # this machine's two cores, and a QUIC handshake then outlasts the 5 s
  # connect timeout (82 of 200 did so without the pause).
  sleep 1
done
# Measure an idle meeting, not the joins: wait (up to 60 s) until all 200
# have joined (a join costs a TLS handshake and the passcode-free admission),
# then 3 s more for the first heartbeats to settle.
for _ in $(seq 1 600); do
    members=$(grep -c " joined " "$work/host.log" || true)
    [ "$members" -ge 200 ] && break
    sleep 0.1
done
sleep 3
members=$(grep -c " joined " "$work/host.log" || true)
tick=$(getconf CLK_TCK)
# CPU ticks of the host's audio threads (names start with sapora-audio).
audio_ticks() {
    local t=0 f
    for f in /proc/$host/task/*; do
        if grep -q '^sapora-audio' "$f/comm" 2>/dev/null; then
            t=$((t + $(awk '{print $14 + $15}' "$f/stat")))
        fi
    done
    echo "$t"
}
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$host/stat)
a0=$(audio_ticks)
sleep "$secs"
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$host/stat)
a1=$(audio_ticks)
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$host/status)
hwm_kb=$(awk '/VmHWM/ {print $2}' /proc/$host/status)
cpu=$(awk -v a=$((u1 + s1 - u0 - s0)) -v t="$tick" -v s="$secs" 'BEGIN {printf "%.3f", 100 * a / t / s}')
audio_cpu=$(awk -v a=$((a1 - a0)) -v t="$tick" -v s="$secs" 'BEGIN {printf "%.3f", 100 * a / t / s}')
for b in "${bots[@]}"; do wait "$b" || true; done
# Audio datagrams received per member per second, over the bots' whole run
# (joining included, so the rate is a slight underestimate only if some bot
# joined late): mean and worst.
pps=$(cat "$work"/bots-*.json | python3 -c "
import json, sys
reports = [json.loads(l) for l in sys.stdin if l.startswith('{')]
rates = [r['audio_packets_received'] / $run for r in reports]
transports = {}
for r in reports:
    transports[str(r.get('transport'))] = transports.get(str(r.get('transport')), 0) + 1
errors = {}
for r in reports:
    for e in r.get('errors') or []:
        errors[e[:120]] = errors.get(e[:120], 0) + 1
for e, k in sorted(errors.items(), key=lambda x: -x[1])[:5]:
    print('bench-idle: %d bots: %s' % (k, e), file=sys.stderr)
print('{\"audio_members\": %d, \"audio_packets_per_member_per_s_mean\": %.2f, \"audio_packets_per_member_per_s_max\": %.2f, \"transports\": %s}' % (len(rates), sum(rates) / max(len(rates), 1), max(rates or [0]), json.dumps(transports)))")
echo "{\"members\": $members, \"seconds\": $secs, \"host_rss_mb\": $(awk -v k="$rss_kb" 'BEGIN{printf "%.1f", k/1024}'), \"host_peak_rss_mb\": $(awk -v k="$hwm_kb" 'BEGIN{printf "%.1f", k/1024}'), \"host_cpu_percent_of_one_core\": $cpu, \"host_audio_threads_cpu_percent\": $audio_cpu, \"audio\": $pps}"
