#!/bin/sh
# make bench-max: the largest fleet one broker keeps connected over TLS
# (docs/benchmarks.md, "How many devices one broker holds"):
#
#     sh bench/max.sh BUILD OUTFILE      # from the repository root
#
# One Mosquitto with latchkey's plugin (pinned to the last core) and idle
# devices with IoT Core's keep-alive (60 s, Google's samples), simulated on
# the same machine by `latchkey-device simulate` processes of
# LK_BENCH_MAX_SLICE (5,000) devices each, each with its own ES256 keys.
# Slices are added one after the other until LK_BENCH_MAX_DEVICES (100,000)
# are connected or a slice cannot connect whole; then the fleet is watched
# idle for LK_BENCH_MAX_HOLD (60) seconds. Prints:
#   max_connected_devices          established device connections at the end
#   max_limited_by                 what stopped the ramp (or "target")
#   max_open_files_limit           the broker's RLIMIT_NOFILE (one descriptor a device)
#   max_broker_rss_kb_per_device   the broker's memory growth per connected device
#   max_broker_idle_cpu_percent    the broker's CPU (% of one core) with the fleet idle
#   max_broker_idle_us_per_device_s   the same per device, µs of CPU a second
#   max_projected_by_memory        devices half of this machine's memory would hold
#   max_projected_by_cpu           devices one core would keep alive
# Minutes long; not in CI and not in `make bench`.
set -eu
BUILD=${1:?usage: sh bench/max.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/max.sh BUILD OUTFILE}
TARGET=${LK_BENCH_MAX_DEVICES:-100000}
SLICE=${LK_BENCH_MAX_SLICE:-5000}
HOLD=${LK_BENCH_MAX_HOLD:-60}
RAMP_MAX=${LK_BENCH_MAX_RAMP:-180}   # seconds a slice may take to connect
REGISTRY=bench-max

. bench/common.sh
bench_need "$TOOL" "$DEVTOOL" "$PLUGIN" "$MOSQUITTO"

# Every process here inherits this shell's open-file limit: as high as allowed.
HARD=$(ulimit -Hn)
ulimit -n "$HARD" 2>/dev/null || true
NOFILE=$(ulimit -n)

broker_PID=""
SIMS=""
bench_tmp max broker_PID SIMS

"$TOOL" --db "$TMP/registry.db" registries create "$REGISTRY" --project "$PROJECT" \
    --region "$REGION" >/dev/null 2>&1
start_mosquitto broker tls "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_token_cache 262144" \
    "plugin_opt_device_cache 262144" "plugin_opt_log_level error"
PORT=$broker_TLS
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$broker_PID/status" 2>/dev/null || echo 0; }
cpu_ns() { awk '{print $1}' "/proc/$1/schedstat" 2>/dev/null || echo 0; }
established() {
    ss -Htn state established "( sport = :$PORT )" 2>/dev/null | wc -l
}
RSS0=$(rss)

limit=target
k=0
while [ $((k * SLICE)) -lt "$TARGET" ]; do
    k=$((k + 1))
    n=$SLICE
    [ $((k * SLICE)) -le "$TARGET" ] || n=$((TARGET - (k - 1) * SLICE))
    "$DEVTOOL" simulate --devices "$n" --store "$TMP/s$k.lks" --prefix "m$k-" \
        --create-keys "$TMP/s$k.jsonl" 2>/dev/null
    "$TOOL" --db "$TMP/registry.db" devices import "$TMP/s$k.jsonl" --registry "$REGISTRY" \
        --project "$PROJECT" --region "$REGION" >/dev/null
    before=$(established)
    $PINC "$DEVTOOL" simulate --devices "$n" --store "$TMP/s$k.lks" --prefix "m$k-" \
        --host 127.0.0.1 --port "$PORT" --ca "$TMP/ca.crt" --project "$PROJECT" --region "$REGION" \
        --registry "$REGISTRY" --duration 86400 --parallel 64 --format json \
        > "$TMP/s$k.json" 2> "$TMP/s$k.err" &
    SIMS="$SIMS $!"
    t=0
    while ! grep -q "all $n devices connected" "$TMP/s$k.err" 2>/dev/null; do
        [ $t -lt $((RAMP_MAX * 10)) ] || break
        kill -0 "${SIMS##* }" 2>/dev/null || break
        sleep 0.1
        t=$((t + 1))
    done
    now=$(established)
    echo "max.sh: slice $k: $((now - before)) of $n connected, $now in all, broker RSS $(rss) kB" >&2
    if ! grep -q "all $n devices connected" "$TMP/s$k.err" 2>/dev/null; then
        # Why: the broker's descriptors, its memory, or the clients'.
        if grep -qi "too many open files\|max_connections" "$TMP/broker.log" 2>/dev/null ||
           [ "$now" -ge $((NOFILE - 64)) ]; then
            limit="open files (the broker's RLIMIT_NOFILE, $NOFILE)"
        elif grep -qi "out of memory\|memory_limit" "$TMP/broker.log" 2>/dev/null; then
            limit="memory"
        else
            limit="slice $k did not connect whole in $RAMP_MAX s (see its errors below)"
        fi
        grep -v "^latchkey-device: simulate: [0-9]* s: " "$TMP/s$k.err" | tail -5 >&2 || true
        tail -5 "$TMP/broker.log" >&2 || true
        break
    fi
done

# The fleet idle: keep-alives only.
sleep 5
C0=$(cpu_ns "$broker_PID")
sleep "$HOLD"
C1=$(cpu_ns "$broker_PID")
N=$(established)
RSS1=$(rss)
MEM=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)

emit max_connected_devices "$N"
emit max_limited_by "\"$limit\""
emit max_open_files_limit "$NOFILE"
if [ "$N" -gt 0 ]; then
    PER=$(awk -v a="$RSS0" -v b="$RSS1" -v n="$N" 'BEGIN {printf "%.1f", (b - a) / n}')
    emit max_broker_rss_kb_per_device "$PER"
    emit max_broker_idle_cpu_percent "$(awk -v a="$C0" -v b="$C1" -v s="$HOLD" \
        'BEGIN {printf "%.2f", (b - a) / 1e9 / s * 100}')"
    US=$(awk -v a="$C0" -v b="$C1" -v s="$HOLD" -v n="$N" 'BEGIN {printf "%.3f", (b - a) / 1e3 / s / n}')
    emit max_broker_idle_us_per_device_s "$US"
    emit max_projected_by_memory "$(awk -v m="$MEM" -v p="$PER" 'BEGIN {printf "%d", (p > 0 ? m / 2 / p : 0)}')"
    emit max_projected_by_cpu "$(awk -v u="$US" 'BEGIN {printf "%d", (u > 0 ? 1e6 / u : 0)}')"
fi
for p in $SIMS; do kill -TERM "$p" 2>/dev/null || true; done
for p in $SIMS; do wait "$p" 2>/dev/null || true; done
SIMS=""
