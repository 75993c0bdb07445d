#!/bin/sh
# The device fleet (docs/benchmarks.md, "Device fleet (simulate)"):
#
#     sh bench/simulate.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE. One Mosquitto
# (LK_MOSQUITTO, default /usr/sbin/mosquitto) with latchkey's plugin and a TLS
# listener on a random loopback port, its open-file limit raised to the hard
# limit; a registry of LK_BENCH_SIM_DEVICES (2,000) devices, each with its
# own ES256 key, made by `latchkey-device simulate --create-keys` and
# imported by `latchkey devices import`. Then the whole fleet runs in one
# `latchkey-device simulate` process (at most LK_BENCH_SIM_PARALLEL, 64,
# connection attempts at once, LK_BENCH_SIM_RATE, 0.05, events per second per
# device) until every device has connected, and LK_BENCH_SIM_HOLD (10) seconds
# more; then SIGTERM stops it (queues flushed) and its summary is read.
#   simulate_devices_connected   devices that connected (of the fleet)
#   simulate_connect_s           start to the last device's first CONNACK
#   simulate_connects_per_s      devices / connect_s
#   simulate_client_us_per_connect, simulate_broker_us_per_connect
#                                CPU (/proc/PID/schedstat) of the simulator and
#                                of the broker during the ramp, per device
#   simulate_peak_rss_kb         the simulator's peak memory
#   simulate_broker_rss_kb       the broker's peak memory (VmHWM)
# The baseline, same listener, same run: `openssl s_time -new` full TLS
# handshakes, one at a time, LK_BENCH_SIM_STIME (5) seconds before the fleet
# and again after it, the mean of the two:
#   tls_handshakes_per_s
#   tls_handshake_client_us      s_time's own user CPU per handshake (compare
#                                with simulate_client_us_per_connect)
#   simulate_connects_per_s_vs_tls_handshakes   (devices / connect_s) / handshakes per s
# The broker is pinned to the last core, the simulator and s_time to core 0.
# Everything is made in a temporary directory, removed at exit, the broker
# and the simulator stopped.
set -eu
BUILD=${1:?usage: sh bench/simulate.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/simulate.sh BUILD OUTFILE}
NDEV=${LK_BENCH_SIM_DEVICES:-2000}
PAR=${LK_BENCH_SIM_PARALLEL:-64}
RATE=${LK_BENCH_SIM_RATE:-0.05}
HOLD=${LK_BENCH_SIM_HOLD:-10}
STIME=${LK_BENCH_SIM_STIME:-5}
RAMP_MAX=${LK_BENCH_SIM_RAMP_MAX:-300}   # give up if the fleet has not connected by then
REGISTRY=bench-fleet

. bench/common.sh

bench_need "$TOOL" "$DEVTOOL" "$PLUGIN" "$MOSQUITTO"

# The broker holds one socket per device: its open-file limit (inherited
# from this shell) as high as allowed.
HARD=$(ulimit -Hn)
ulimit -n "$HARD" 2>/dev/null || true
if [ "$HARD" != unlimited ] && [ "$HARD" -lt $((NDEV + 64)) ]; then
    echo "simulate.sh: the open-file hard limit ($HARD) is below $((NDEV + 64)): devices will fail" >&2
fi

broker_PID=""
SIM_PID=""
bench_tmp sim SIM_PID broker_PID

# --- the fleet's keys and the registry ---
"$TOOL" --db "$TMP/registry.db" registries create "$REGISTRY" --project "$PROJECT" \
    --region "$REGION" >/dev/null 2>&1
"$DEVTOOL" simulate --devices "$NDEV" --store "$TMP/fleet.lks" --create-keys "$TMP/fleet.jsonl" \
    2>/dev/null
"$TOOL" --db "$TMP/registry.db" devices import "$TMP/fleet.jsonl" --registry "$REGISTRY" \
    --project "$PROJECT" --region "$REGION" >/dev/null

# --- the broker (and the test CA, $TMP/ca.crt): TLS listener on a random port ---
start_mosquitto broker tls "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db"
PORT=$broker_TLS

SIM="$DEVTOOL simulate --store $TMP/fleet.lks --host 127.0.0.1 --port $PORT --ca $TMP/ca.crt
     --project $PROJECT --region $REGION --registry $REGISTRY"

# The plugin refuses logins until its first tick: wait until one device gets in.
n=0
until $PINC $SIM --devices 1 >/dev/null 2>&1; do
    n=$((n + 1))
    [ $n -lt 10 ] || { echo "simulate.sh: no device could connect:" >&2; tail -20 "$TMP/broker.log" >&2; exit 1; }
    sleep 0.5
done

# handshakes: full TLS handshakes per second, one at a time, counted by
# s_time over wall-clock time; prints "RATE CLIENT_US", CLIENT_US being
# s_time's own user CPU per handshake ("connections/user sec")
handshakes() {
    t0=$(date +%s.%N)
    $PINC openssl s_time -connect "127.0.0.1:$PORT" -new -time "$STIME" -CAfile "$TMP/ca.crt" \
        > "$TMP/stime.out" 2>/dev/null || true
    t1=$(date +%s.%N)
    c=$(awk '/connections in .*real seconds/ {print $1; exit}' "$TMP/stime.out")
    u=$(awk '/connections\/user sec/ {for (i = 1; i <= NF; i++) if ($i == "connections/user") print $(i - 1); exit}' \
        "$TMP/stime.out")
    awk -v c="${c:-0}" -v a="$t0" -v b="$t1" -v u="${u:-0}" \
        'BEGIN {printf "%.1f %.0f", c / (b - a), (u > 0 ? 1e6 / u : 0)}'
}

hs1=$(handshakes)

# --- the fleet: until every device has connected, plus HOLD seconds ---
$PINC $SIM --devices "$NDEV" --parallel "$PAR" --rate "$RATE" --duration 86400 --format json \
    > "$TMP/sim.json" 2> "$TMP/sim.err" &
SIM_PID=$!
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }
t=0
S0=""
while ! grep -q "all $NDEV devices connected" "$TMP/sim.err" 2>/dev/null; do
    kill -0 "$SIM_PID" 2>/dev/null || break
    [ $t -lt $((RAMP_MAX * 20)) ] || break
    # the ramp starts once the keys are loaded: CPU of both sides from there
    if [ -z "$S0" ] && grep -q "connection attempts at once" "$TMP/sim.err" 2>/dev/null; then
        S0=$(cpu_ns "$SIM_PID"); B0=$(cpu_ns "$broker_PID")
    fi
    sleep 0.05
    t=$((t + 1))
done
S1=$(cpu_ns "$SIM_PID"); B1=$(cpu_ns "$broker_PID")
grep -q "all $NDEV devices connected" "$TMP/sim.err" 2>/dev/null && sleep "$HOLD"
BROKER_RSS=$(awk '/^VmHWM:/ {print $2}' "/proc/$broker_PID/status" 2>/dev/null || echo 0)
kill -TERM "$SIM_PID" 2>/dev/null || true
rc=0
wait "$SIM_PID" || rc=$?
SIM_PID=""
grep -v "^latchkey-device: simulate: [0-9]* s: " "$TMP/sim.err" >&2 || true
[ $rc -eq 0 ] || echo "simulate.sh: the simulator exited with $rc (not every device connected or delivered)" >&2

hs2=$(handshakes)

field() { sed -n "s/.*\"$1\": \\([^,}]*\\).*/\\1/p" "$TMP/sim.json"; }
CONNECTED=$(field connected)
CONNECT_S=$(field connect_s)
echo "s_time handshakes/s and client us/handshake before and after the fleet: $hs1, $hs2" >&2
echo "fleet: $(cat "$TMP/sim.json")" >&2
HS=$(awk -v a="${hs1% *}" -v b="${hs2% *}" 'BEGIN {printf "%.1f", (a + b) / 2}')
HSUS=$(awk -v a="${hs1#* }" -v b="${hs2#* }" 'BEGIN {printf "%.0f", (a + b) / 2}')

emit simulate_devices_connected "${CONNECTED:-0}"
if [ -n "$CONNECT_S" ] && [ "$CONNECT_S" != null ]; then
    emit simulate_connect_s "$CONNECT_S"
    emit simulate_connects_per_s "$(awk -v n="$NDEV" -v s="$CONNECT_S" 'BEGIN {printf "%.1f", n / s}')"
else
    emit simulate_connect_s never
fi
if [ -n "$S0" ]; then
    # CPU per device connected during the ramp (polled every 50 ms: approximate)
    emit simulate_client_us_per_connect "$(awk -v a="$S0" -v b="$S1" -v n="$NDEV" 'BEGIN {printf "%.0f", (b - a) / n / 1000}')"
    emit simulate_broker_us_per_connect "$(awk -v a="$B0" -v b="$B1" -v n="$NDEV" 'BEGIN {printf "%.0f", (b - a) / n / 1000}')"
fi
emit simulate_peak_rss_kb "$(field peak_rss_kb)"
emit simulate_broker_rss_kb "$BROKER_RSS"
emit tls_handshakes_per_s "$HS"
emit tls_handshake_client_us "$HSUS"
if [ -n "$CONNECT_S" ] && [ "$CONNECT_S" != null ]; then
    emit simulate_connects_per_s_vs_tls_handshakes \
        "$(awk -v n="$NDEV" -v s="$CONNECT_S" -v h="$HS" 'BEGIN {printf "%.3f", (n / s) / h}')"
fi
