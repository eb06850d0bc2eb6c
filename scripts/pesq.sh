#!/usr/bin/env bash
# Speech quality through the host, as a listener hears it: wideband PESQ
# (ITU-T P.862.2, the Python `pesq` package) of assets/speech.wav read by one
# talker bot and recorded by one listener bot, through a real headless host.
#
#   usage: scripts/pesq.sh [--loss PCT] [--runs N] [--copies N] [--frame-ms 10|20]
#                          [--voice-processing on|off] [--warmup S] [--keep DIR]
#
#   --loss PCT   drop PCT % of the audio datagrams to the host AND from the
#                host (nftables `numgen random` on the input hook of `lo`;
#                on loopback every packet passes that hook once)
#   --runs N     repeat and print every score and their mean (default 1)
#   --copies N   the talker reads the speech N times, 0.5 s apart (default 2:
#                about 9 s, P.862 wants 8-20 s)
#   --warmup S   the talker first reads S seconds of the speech backwards
#                (unscored; default 0), so that loss reports, redundancy and
#                jitter buffers have settled when the scored speech starts:
#                the steady state of a call, not its first seconds
#   --keep DIR   copy the reference, every recording, the bots' JSON
#                reports and the host's log to DIR (to listen to them, or to
#                look for slips; with SAPORA_LOG=warn,sapora::jitter=debug
#                the logs hold every jitter-buffer event, host and listener:
#                frames lost, stretched for, dropped, and the depth)
#   --voice-processing on|off
#                the talker's microphone chain (echo cancellation, noise
#                suppression, gain control; default off: the source is a
#                clean recording and this measures the path through the
#                host; `on` scores what a listener hears from a real mic's
#                chain as well)
#
# Everything runs inside a fresh network namespace (`unshare --net`) whose
# only interface is loopback. Needs root (namespace, nftables), python3 with
# numpy, scipy and pesq (scripts/setup.sh installs them). If a Python package
# is missing the script says so and prints no score (exit code 2).
#
# Environment: SAPORA_BIN (a built `sapora` binary; default: `cargo build`
# and target/debug/sapora under CARGO_TARGET_DIR).
#
# On a busy machine, threads that wake late make the jitter buffers wait and
# then drop frames: 20 ms slips that lower the score whatever the network
# does (a clean run then scores anywhere from 2.4 to 4.2). To measure the
# path rather than the machine, run at real-time priority, with SAPORA_BIN
# set so that no build runs at that priority:
#   SAPORA_BIN=target/debug/sapora chrt -r 5 scripts/pesq.sh --loss 10 --runs 5
set -euo pipefail
cd "$(dirname "$0")/.."

loss=0 runs=1 copies=2 frame_ms=20 voice=off keep= warmup=0
while [ $# -gt 0 ]; do
    case "$1" in
        --loss) loss=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --copies) copies=$2; shift 2 ;;
        --frame-ms) frame_ms=$2; shift 2 ;;
        --voice-processing) voice=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        -h|--help) sed -n '2,44p' "$0"; exit 0 ;;
        *) echo "pesq.sh: unknown argument $1 (see --help)" >&2; exit 1 ;;
    esac
done
case "$voice" in on) voice_args=() ;; off) voice_args=(--aec off --noise-suppression off --agc off) ;;
    *) echo "pesq.sh: --voice-processing takes on or off" >&2; exit 1 ;; esac
case "$loss" in ''|*[!0-9]*) echo "pesq.sh: --loss takes a whole percentage 0-100" >&2; exit 1 ;; esac
[ "$loss" -le 100 ] || { echo "pesq.sh: --loss takes a whole percentage 0-100" >&2; exit 1; }
case "$runs$copies" in *[!0-9]*) echo "pesq.sh: --runs and --copies take counts" >&2; exit 1 ;; esac
case "$warmup" in ''|*[!0-9.]*|*.*.*) echo "pesq.sh: --warmup takes seconds, e.g. 3 or 2.5" >&2; exit 1 ;; esac

if ! python3 -c 'import numpy, scipy, pesq' 2>/dev/null; then
    echo "pesq.sh: SKIPPED, no score computed: python3 cannot import numpy, scipy and pesq" >&2
    echo "pesq.sh: (scripts/setup.sh installs them: python3 -m pip install numpy scipy pesq)" >&2
    exit 2
fi

if [ -z "${SAPORA_PESQ_IN_NETNS:-}" ]; then
    if [ -z "${SAPORA_BIN:-}" ]; then
        cargo build --quiet
        SAPORA_BIN="${CARGO_TARGET_DIR:-target}/debug/sapora"
    fi
    command -v nft >/dev/null || { echo "pesq.sh: nft not found (scripts/setup.sh installs nftables)" >&2; exit 1; }
    export SAPORA_BIN SAPORA_PESQ_IN_NETNS=1
    exec unshare --net "$0" --loss "$loss" --runs "$runs" --copies "$copies" --frame-ms "$frame_ms" \
        --voice-processing "$voice" --warmup "$warmup" ${keep:+--keep "$(realpath -m "$keep")"}
fi

# From here on: inside our own network namespace.
ip link set lo up
export SAPORA_DISCOVERY_ADDR=127.255.255.255
work=$(mktemp -d /tmp/sapora-pesq.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    if [ -n "$keep" ]; then mkdir -p "$keep" && cp "$work"/*.wav "$work"/*.json "$work"/*.log "$keep"/ 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

ref="$work/reference.wav"
python3 scripts/pesq_score.py --make-reference assets/speech.wav "$copies" "$ref"
talk="$work/talk.wav"
python3 scripts/pesq_score.py --make-talk "$ref" "$warmup" "$talk"
speech_s=$(python3 -c "import wave; w = wave.open('$talk'); print(w.getnframes() / w.getframerate())")

offset=100
"$SAPORA_BIN" host --headless --no-discovery --bind 127.0.0.1 --port-offset "$offset" \
    --audio-frame-ms "$frame_ms" >"$work/host.log" 2>&1 &
pids+=($!)
# Audio rides the QUIC link on the host port (UDP 5000 + offset): the loss
# below drops QUIC packets, datagrams and control alike.
audio_port=$((5000 + offset))
for _ in $(seq 50); do
    grep -q "Ports:" "$work/host.log" && break
    sleep 0.1
done
grep -q "Ports: $audio_port/udp" "$work/host.log" || { echo "pesq.sh: the host did not start:" >&2; cat "$work/host.log" >&2; exit 1; }

if [ "$loss" -gt 0 ]; then
    nft -f - <<EOF
table inet sapora_pesq {
    chain input {
        type filter hook input priority 0; policy accept;
        udp dport $audio_port numgen random mod 100 < $loss counter drop comment "to the host"
        udp sport $audio_port numgen random mod 100 < $loss counter drop comment "from the host"
    }
}
EOF
fi

scores=()
for run in $(seq 1 "$runs"); do
    rec="$work/heard-$run.wav"
    talk_s=$(awk -v s="$speech_s" 'BEGIN {printf "%.1f", s + 1.5}')
    # The listener records 6.5 s beyond the speech: through 10 % loss the
    # talker's QUIC handshake can take a few seconds (lost handshake packets
    # wait for their retransmission timer), and a recording that ends before
    # the speech does cannot be scored (the score aligns and cuts it anyway).
    listen_s=$(awk -v s="$speech_s" 'BEGIN {printf "%.1f", s + 8}')
    "$SAPORA_BIN" bot "127.0.0.1:$((5000 + offset))" --name "listener$run" --room pesq \
        --speaker "record:$rec" --duration "$listen_s" --report json >"$work/listener-$run.json" 2>&1 &
    listener=$!
    # The talker starts once the listener is in the room (a handshake
    # through the loss can take seconds, or fall back to TLS), so that the
    # recording holds all of the speech.
    for _ in $(seq 100); do
        grep -aq "listener$run joined" "$work/host.log" && break
        sleep 0.1
    done
    sleep 1.5
    "$SAPORA_BIN" bot "127.0.0.1:$((5000 + offset))" --name "talker$run" --room pesq \
        --mic "file:$talk" "${voice_args[@]}" --duration "$talk_s" --report json >"$work/talker-$run.json" 2>&1 &
    talker=$!
    pids+=("$listener" "$talker")
    wait "$talker" || true
    wait "$listener" || true
    if ! out=$(python3 scripts/pesq_score.py "$ref" "$rec"); then
        echo "pesq.sh: run $run not scored; listener said: $(cat "$work/listener-$run.json")" >&2
        exit 1
    fi
    score=$(python3 -c "import json, sys; print(json.loads(sys.argv[1])['pesq_wb'])" "$out")
    scores+=("$score")
    echo "run $run: $out"
    for who in listener talker; do
        python3 - "$work/$who-$run.json" "$who" <<'PY' || true
import json, sys
try:
    r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception:
    sys.exit(0)
keys = ["audio_packets_received", "audio_packets_sent", "audio_frames_concealed",
        "audio_loss_down_percent", "audio_loss_up_percent", "audio_fec_expected_loss_percent",
        "audio_passthrough_share", "audio_red_depth", "audio_red_frames_sent",
        "audio_frames_recovered", "audio_comfort_noise_frames", "errors"]
print("  %s: %s" % (sys.argv[2], json.dumps({k: r.get(k) for k in keys})))
PY
    done
done
if [ "$loss" -gt 0 ]; then
    echo "nftables drops:"
    nft list table inet sapora_pesq | grep -o 'packets [0-9]* bytes [0-9]* drop comment "[^"]*"' | sed 's/^/  /'
fi
mean=$(printf '%s\n' "${scores[@]}" | awk '{s += $1} END {printf "%.3f", s / NR}')
echo "{\"pesq_wb_mean\": $mean, \"runs\": $runs, \"loss_percent_each_way\": $loss, \"warmup_s\": $warmup, \"frame_ms\": $frame_ms, \"scores\": [$(IFS=,; echo "${scores[*]}")]}"
