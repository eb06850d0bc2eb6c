#!/usr/bin/env bash
# A simulated LAN for Sapora: N "machines" (network namespaces m1..mN) on a
# bridge, all inside one private `unshare --net --mount`, so nothing is ever
# sent outside namespaces this script made, and everything vanishes with it.
#
#   scripts/lan.sh [OPTIONS] -- COMMAND [ARGS...]
#       builds the LAN, runs COMMAND in the LAN's outer namespace (where
#       `ip netns exec mK ...` runs things on machine K), then tears it down.
#   scripts/lan.sh [OPTIONS] --hold
#       builds the LAN, prints "READY <pid>" and waits until stdin closes
#       (used by tests/common/lan.rs; run commands with
#       `nsenter -t <pid> -m -n ip netns exec mK ...`).
#   scripts/lan.sh doubleclick [RUNS [--force]]
#       the double-click race: three machines start `sapora` with no
#       arguments at the same moment (released by one barrier); checks that
#       one meeting with all three people remains within 10 s. Repeats RUNS
#       times (default 20) and prints "N of RUNS converged within 10 s, max
#       X s". With --force, discovery datagrams are dropped for the first
#       1.3 s, so all three always start hosting and must merge.
#
# Options:
#   -n N             machines (default 3). Machine K is 10.77.0.K/24 on eth0.
#   --gateway        give every machine a default route via 10.77.0.254 (a
#                    router address on the bridge); without it there is NO
#                    default route, like a lab LAN with no internet.
#   --vpn            every machine gets a tun interface vpn0 (10.200.K.2/24)
#                    that holds the default route, like a VPN client.
#   --second         a second bridge: machine K is also 10.78.0.K/24 on eth1.
#   --drop-udp K:PORTS
#                    on machine K, nftables drops incoming UDP to PORTS (e.g.
#                    1:5000), TCP still passes (repeatable).
#
# Environment: SAPORA (the sapora binary; default target/debug/sapora under
# CARGO_TARGET_DIR or ./target).
#
# Needs root (or a user namespace), iproute2, nftables and util-linux
# (`unshare`, `nsenter`); scripts/setup.sh installs them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

die() { printf 'lan.sh: %s\n' "$*" >&2; exit 2; }

case "${1:-}" in -h|--help) sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac

# ---------------------------------------------------------------------------
# The double-click race, repeated.
# ---------------------------------------------------------------------------
if [ "${1:-}" = doubleclick ]; then
    runs="${2:-20}"
    if [ "${3:-}" = --force ]; then export FORCE_RACE=1; fi
    sapora="${SAPORA:-${CARGO_TARGET_DIR:-$here/../target}/debug/sapora}"
    [ -x "$sapora" ] || die "no sapora binary at $sapora (cargo build, or set SAPORA)"
    export SAPORA="$sapora"
    ok=0
    max=0
    for i in $(seq 1 "$runs"); do
        out=$("$0" -n 4 -- "$0" _doubleclick_once 2>&1) || true
        t=$(printf '%s\n' "$out" | sed -n 's/^CONVERGED \([0-9.]*\)$/\1/p' | tail -1)
        h=$(printf '%s\n' "$out" | sed -n 's/^handovers: \([0-9]*\)$/\1/p' | tail -1)
        if [ -n "$t" ]; then
            ok=$((ok + 1))
            max=$(awk -v a="$max" -v b="$t" 'BEGIN { print (b > a) ? b : a }')
            printf 'run %2d: one meeting after %s s (%s host(s) handed over)\n' "$i" "$t" "${h:-?}"
        else
            printf 'run %2d: NOT converged\n%s\n' "$i" "$out" | head -40
        fi
    done
    printf '%d of %d converged within 10 s, max %s s\n' "$ok" "$runs" "$max"
    [ "$ok" -eq "$runs" ]
    exit $?
fi

# One run, inside the LAN: m1..m3 double-click, m4 watches with discover.
if [ "${1:-}" = _doubleclick_once ]; then
    [ -n "${SAPORA_LAN_INSIDE:-}" ] || die "_doubleclick_once runs inside the LAN"
    dir=$(mktemp -d)
    pids=()
    cleanup_once() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
        rm -rf "$dir"
    }
    trap cleanup_once EXIT
    # All three wait at one barrier (a fifo) and are released together: the
    # same second, to within milliseconds.
    mkfifo "$dir/go"
    for k in 1 2 3; do
        # stdin stays open (a fifo held by sleep) so a terminal client stays.
        mkfifo "$dir/in$k"
        sleep 60 >"$dir/in$k" &
        pids+=($!)
        ip netns exec "m$k" env -u SAPORA_DISCOVERY_ADDR -u DISPLAY -u WAYLAND_DISPLAY \
            USER="user$k" sh -c 'cat "$1" >/dev/null; exec "$0"' "$SAPORA" "$dir/go" \
            <"$dir/in$k" >"$dir/out$k" 2>&1 &
        pids+=($!)
    done
    if [ "${FORCE_RACE:-0}" = 1 ]; then
        # The worst case: nobody hears anybody during the 1 s search, so all
        # three start hosting; then the LAN heals and they must merge.
        for k in 1 2 3; do
            echo 'table inet race { chain input { type filter hook input priority 0; udp dport 5001 drop; }; }' |
                ip netns exec "m$k" nft -f -
        done
    fi
    sleep 0.3 # let all three reach the barrier
    start=$(date +%s.%N)
    : >"$dir/go"
    if [ "${FORCE_RACE:-0}" = 1 ]; then
        sleep 1.3
        for k in 1 2 3; do ip netns exec "m$k" nft delete table inet race; done
    fi
    while :; do
        json=$(ip netns exec m4 env -u SAPORA_DISCOVERY_ADDR "$SAPORA" discover --json --timeout 0.5 2>/dev/null || echo '[]')
        now=$(date +%s.%N)
        el=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.2f", b - a }')
        # One host, and the three double-clickers in its meeting: the
        # survivor is a relay, the two others joined it from the terminal,
        # so its room holds 2 people and no other host is left.
        hosts=$(printf '%s' "$json" | { grep -o '"host_id"' || true; } | wc -l)
        people=$(printf '%s' "$json" | sed -n 's/.*"people":\([0-9]*\).*/\1/p')
        if [ "$hosts" = 1 ] && [ "$people" = 2 ]; then
            # How many started hosting and then handed over (the race).
            merged=$(cat "$dir"/out* | { grep -c "at the same moment" || true; })
            echo "CONVERGED $el"
            echo "handovers: $merged"
            exit 0
        fi
        if awk -v e="$el" 'BEGIN { exit !(e > 10) }'; then
            echo "after $el s: $hosts host(s): $json"
            for k in 1 2 3; do echo "--- m$k"; cat "$dir/out$k"; done
            exit 1
        fi
    done
fi

# ---------------------------------------------------------------------------
# Enter a private network + mount namespace once.
# ---------------------------------------------------------------------------
if [ -z "${SAPORA_LAN_INSIDE:-}" ]; then
    command -v unshare >/dev/null || die "unshare not found (util-linux); run scripts/setup.sh"
    command -v ip >/dev/null || die "ip not found (iproute2); run scripts/setup.sh"
    if unshare --net --mount --propagation private true 2>/dev/null; then
        exec unshare --net --mount --propagation private \
            env SAPORA_LAN_INSIDE=1 bash "$0" "$@"
    fi
    die "cannot create network namespaces here (need root or CAP_SYS_ADMIN)"
fi

machines=3
gateway=0
vpn=0
second=0
drops=()
hold=0
cmd=()
while [ $# -gt 0 ]; do
    case "$1" in
        -n) machines="$2"; shift 2 ;;
        --gateway) gateway=1; shift ;;
        --vpn) vpn=1; shift ;;
        --second) second=1; shift ;;
        --drop-udp) drops+=("$2"); shift 2 ;;
        --hold) hold=1; shift ;;
        --) shift; cmd=("$@"); break ;;
        *) die "unknown option $1 (see scripts/lan.sh --help)" ;;
    esac
done
[ "$machines" -ge 1 ] && [ "$machines" -le 200 ] || die "-n must be 1..200"

# `ip netns add` bind-mounts under /run/netns: a tmpfs of our own keeps those
# mounts inside this mount namespace.
if ! mkdir -p /run/netns 2>/dev/null; then
    # Not allowed to create it (e.g. root only inside a user namespace): a
    # private /run for this mount namespace will do.
    mount -t tmpfs lan-run /run
    mkdir -p /run/netns
fi
mount -t tmpfs lan-netns /run/netns
ip link set lo up

ip link add br0 type bridge
ip link set br0 up
if [ "$second" = 1 ]; then
    ip link add br1 type bridge
    ip link set br1 up
fi
if [ "$gateway" = 1 ]; then
    ip addr add 10.77.0.254/24 brd + dev br0
fi

for k in $(seq 1 "$machines"); do
    m="m$k"
    ip netns add "$m"
    ip -n "$m" link set lo up
    ip link add "v$k" type veth peer name eth0 netns "$m"
    ip link set "v$k" master br0 up
    ip -n "$m" addr add "10.77.0.$k/24" brd + dev eth0
    ip -n "$m" link set eth0 up
    if [ "$second" = 1 ]; then
        ip link add "w$k" type veth peer name eth1 netns "$m"
        ip link set "w$k" master br1 up
        ip -n "$m" addr add "10.78.0.$k/24" brd + dev eth1
        ip -n "$m" link set eth1 up
    fi
    if [ "$vpn" = 1 ]; then
        # A tun device, like OpenVPN/WireGuard clients make: point-to-point,
        # no broadcast, and (with no VPN program attached) nothing gets out.
        ip -n "$m" tuntap add vpn0 mode tun
        ip -n "$m" addr add "10.200.$k.2/24" dev vpn0
        ip -n "$m" link set vpn0 up
        ip -n "$m" route add default dev vpn0
    elif [ "$gateway" = 1 ]; then
        ip -n "$m" route add default via 10.77.0.254
    fi
done

for d in "${drops[@]}"; do
    k="${d%%:*}"
    ports="${d#*:}"
    command -v nft >/dev/null || die "nft not found (nftables); run scripts/setup.sh"
    ip netns exec "m$k" nft -f - <<EOF
table inet lanfw {
    chain input {
        type filter hook input priority 0; policy accept;
        udp dport { $ports } drop
    }
}
EOF
done

if [ "$hold" = 1 ]; then
    echo "READY $$"
    # Until whoever started us closes our stdin (or dies).
    cat >/dev/null || true
    exit 0
fi

if [ ${#cmd[@]} -eq 0 ]; then
    echo "LAN up: machines m1..m$machines (10.77.0.K). Example:"
    echo "  ip netns exec m1 sapora host --headless"
    echo "Starting a shell in the LAN; exit it to tear the LAN down."
    cmd=(bash -i)
fi
export SAPORA_LAN_MACHINES="$machines"
"${cmd[@]}"
