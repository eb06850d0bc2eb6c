#!/usr/bin/env bash
# Idle-host benchmark: a headless host with 200 bots in 20 rooms (10 each),
# nobody talking. Prints the host's resident memory and CPU use over a
# measuring window. Everything stays on 127.0.0.1 / 127.255.255.255.
#   usage: scripts/bench-idle.sh [SECONDS]   (default 30)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
cargo build --release --quiet
bin=target/release/sapora
offset=$((30000 + RANDOM % 1000))
export SAPORA_DISCOVERY_ADDR=127.255.255.255
"$bin" host --headless --bind 127.0.0.1 --port-offset "$offset" >/tmp/sapora-bench-host.log 2>&1 &
host=$!
trap 'kill $host ${bots[*]:-} 2>/dev/null || true' EXIT
sleep 0.5
bots=()
for r in $(seq 1 20); do
  "$bin" bot "127.0.0.1:$((5000 + offset))" --name "r${r}bot" --room "room$r" --count 10 >/dev/null 2>&1 &
  bots+=($!)
done
sleep 3   # let everyone join and the first heartbeats settle
members=$(grep -c " joined " /tmp/sapora-bench-host.log || true)
tick=$(getconf CLK_TCK)
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$host/stat)
sleep "$secs"
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$host/stat)
rss_kb=$(awk '/VmRSS/ {print $2}' /proc/$host/status)
hwm_kb=$(awk '/VmHWM/ {print $2}' /proc/$host/status)
cpu=$(awk -v a=$((u1 + s1 - u0 - s0)) -v t="$tick" -v s="$secs" 'BEGIN {printf "%.3f", 100 * a / t / s}')
echo "{\"members\": $members, \"seconds\": $secs, \"host_rss_mb\": $(awk -v k="$rss_kb" 'BEGIN{printf "%.1f", k/1024}'), \"host_peak_rss_mb\": $(awk -v k="$hwm_kb" 'BEGIN{printf "%.1f", k/1024}'), \"host_cpu_percent_of_one_core\": $cpu}"
