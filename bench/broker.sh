#!/bin/sh
# The broker's figures (issue 5; docs/benchmarks.md, "Broker"):
#
#     sh bench/broker.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE. Two Mosquitto
# processes (the system's /usr/sbin/mosquitto, LK_MOSQUITTO) run side by side
# on random loopback ports, with the same configuration (docs/plugin.md's,
# plus a plain-TCP listener) except that:
#   ours      has latchkey's plugin (BUILD/lib/latchkey_plugin.so) and
#             allow_anonymous false;
#   baseline  has no plugin and allow_anonymous true.
# Both brokers are pinned to the same core (the last), the client
# (BUILD/bench/bench_connect) to another; measurements alternate ours and the
# baseline (the order flipped every pair), LK_BENCH_ROUNDS pairs, and the
# medians of the rates and of the per-pair ratios are reported:
#   connect_jwt_cold_per_s, connect_jwt_cold_vs_anonymous
#       plain TCP, the first connect of each of NDEV devices (credential
#       loaded from the registry and parsed), one pass
#   connect_jwt_per_s, connect_anonymous_per_s, connect_jwt_vs_anonymous
#       plain TCP, every connect a device (device cache warm) with its own
#       newly signed token (verified-token cache misses)
#   connect_jwt_cached_per_s, connect_jwt_cached_vs_anonymous
#       the same token reconnecting (verified-token cache hits)
#   connect_tls_jwt_per_s, connect_tls_anonymous_per_s,
#   connect_tls_jwt_vs_tls_anonymous
#       TLS (1.3, P-256 server certificate) both, fresh tokens
#   publish_jwt_per_s, publish_anonymous_per_s, publish_jwt_vs_anonymous
#       QoS 1 events from one device, counted at a subscriber (a backend on
#       latchkey/P/L/R/D/events; the same topic on the baseline)
#   *_broker_us   the broker's CPU microseconds per connect or message
#                 (/proc/PID/schedstat), medians: where the rate ratios come from
#   metrics_overhead, metrics_overhead_fresh
#       connects per second to a third broker, `metr`, which is `ours` with
#       plugin_opt_metrics_file (docs/metrics.md), over connects per second to
#       `ours`, alternated the same way (median of the per-pair ratios):
#       reconnects with the same token (cache hits: the cheapest connect, where
#       the counting weighs most), then with fresh tokens; *_cpu the same
#       from the broker's CPU microseconds per connect (off / on)
# Everything (CA, certificates, key store, registry) is made in a temporary
# directory and removed at exit, both brokers stopped.
set -eu
BUILD=${1:?usage: sh bench/broker.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/broker.sh BUILD OUTFILE}
ROUNDS=${LK_BENCH_ROUNDS:-5}
SECS=${LK_BENCH_SECONDS:-1}
NDEV=${LK_BENCH_BROKER_DEVICES:-2000}
NCONN=${LK_BENCH_CONNECTS:-2000}       # connects per round (bounded by time too)
NMSG=${LK_BENCH_MESSAGES:-20000}       # messages per round (bounded by time too)
PAR=${LK_BENCH_CONNECT_PARALLEL:-4}    # clients in flight at once
BC="$BUILD/bench/bench_connect"
REGISTRY=bench-registry

. bench/common.sh

bench_need "$TOOL" "$BC" "$PLUGIN" "$MOSQUITTO"

ours_PID=""
base_PID=""
metr_PID=""
bench_tmp broker ours_PID base_PID metr_PID

# --- the registry: NDEV devices sharing one key (software store) ---
"$TOOL" key generate --store "$TMP/keys.lks" --key bench --alg ES256 > "$TMP/pub.pem"
bench_fleet "$TMP/registry.db" "$TMP/pub.pem" "$NDEV" 6

# --- the two brokers (and the test CA, $TMP/ca.crt) ---
# one device publishes the whole event stream: lift the per-device rate limit; the connect
# rounds reconnect the same devices many times a minute: lift the per-device connect limit
start_mosquitto ours plain "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_messages_per_second 1000000" \
    "plugin_opt_connect_burst 100000" "plugin_opt_connects_per_minute 60000"
start_mosquitto base plain "allow_anonymous true"
start_mosquitto metr plain "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_messages_per_second 1000000" \
    "plugin_opt_connect_burst 100000" "plugin_opt_connects_per_minute 60000" \
    "plugin_opt_metrics_file $TMP/metrics"

DEV="--store $TMP/keys.lks --key bench --project $PROJECT --region $REGION --registry $REGISTRY --devices $NDEV"
SUB_TOPIC="latchkey/$PROJECT/$REGION/$REGISTRY/device-000000/events"

# The plugin refuses logins until its first tick: wait for a device to connect.
for who in ours metr; do
    eval "port=\$${who}_PLAIN"
    n=0
    until $PINC "$BC" connect --port "$port" $DEV --count 1 --seconds 2 >/dev/null 2>&1; do
        n=$((n + 1))
        [ $n -lt 50 ] || { echo "broker.sh: no device could connect:" >&2; tail -20 "$TMP/$who.log" >&2; exit 1; }
        sleep 0.1
    done
done

# run KIND WHO FIRST: one measurement, prints "RATE BROKER_US"; fresh tokens
# go to devices FIRST, FIRST+1, ... (not those of the previous rounds where
# NDEV allows)
run() {
    case $2 in
        ours) port_plain=$ours_PLAIN; port_tls=$ours_TLS; pid=$ours_PID ;;
        base) port_plain=$base_PLAIN; port_tls=$base_TLS; pid=$base_PID ;;
        metr) port_plain=$metr_PLAIN; port_tls=$metr_TLS; pid=$metr_PID ;;
    esac
    FIRST=$3
    case $1 in
        connect)
            $PINC "$BC" connect --port "$port_plain" --pid "$pid" $DEV --first "$FIRST" \
                --count "$NCONN" --seconds "$SECS" --parallel "$PAR" ;;
        cached)
            $PINC "$BC" connect --port "$port_plain" --pid "$pid" $DEV --tokens cached \
                --count "$NCONN" --seconds "$SECS" --parallel "$PAR" ;;
        tls)
            $PINC "$BC" connect --port "$port_tls" --ca "$TMP/ca.crt" --pid "$pid" $DEV \
                --first "$FIRST" --count "$NCONN" --seconds "$SECS" --parallel "$PAR" ;;
        publish)
            if [ "$2" = ours ]; then
                $PINC "$BC" publish --port "$port_plain" --pid "$pid" $DEV --count "$NMSG" \
                    --seconds "$SECS" --sub-topic "$SUB_TOPIC" \
                    --sub-user backend:bench-backend --sub-pass "$SECRET"
            else
                $PINC "$BC" publish --port "$port_plain" --pid "$pid" $DEV --count "$NMSG" \
                    --seconds "$SECS"
            fi ;;
    esac
}

# pairs KIND NAME_OURS NAME_BASE RATIO_NAME
pairs() {
    ours=""; base=""; ratios=""; ocpu=""; bcpu=""
    i=0
    while [ $i -lt "$ROUNDS" ]; do
        f1=$(( (2 * i * NCONN) % NDEV )); f2=$(( ((2 * i + 1) * NCONN) % NDEV ))
        if [ $((i % 2)) -eq 0 ]; then
            o=$(run "$1" ours "$f1"); b=$(run "$1" base "$f2")
        else
            b=$(run "$1" base "$f1"); o=$(run "$1" ours "$f2")
        fi
        or=${o% *}; br=${b% *}
        ours="$ours $or"; base="$base $br"
        ocpu="$ocpu ${o#* }"; bcpu="$bcpu ${b#* }"
        ratios="$ratios $(awk -v o="$or" -v b="$br" 'BEGIN {printf "%.4f", o / b}')"
        i=$((i + 1))
    done
    echo "$4 pairs (ours/baseline):$ratios" >&2
    emit "$2" "$(echo $ours | tr ' ' '\n' | median)"
    [ -z "$3" ] || emit "$3" "$(echo $base | tr ' ' '\n' | median)"
    emit "$4" "$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"
    emit "${2%_per_s}_broker_us" "$(echo $ocpu | tr ' ' '\n' | median)"
    [ -z "$3" ] || emit "${3%_per_s}_broker_us" "$(echo $bcpu | tr ' ' '\n' | median)"
}

# Cold devices: every device's first connect after the broker started loads
# and parses its credential (the plugin's device cache misses). One pass over
# all NDEV devices, once, beside one anonymous pass of as many connects; it
# also warms the device cache for the figures that follow.
o=$($PINC "$BC" connect --port "$ours_PLAIN" --pid "$ours_PID" $DEV --first 0 --count "$NDEV" \
    --seconds 120 --parallel "$PAR")
b=$($PINC "$BC" connect --port "$base_PLAIN" --pid "$base_PID" $DEV --first 0 --count "$NDEV" \
    --seconds 120 --parallel "$PAR")
emit connect_jwt_cold_per_s "${o% *}"
emit connect_jwt_cold_vs_anonymous "$(awk -v o="${o% *}" -v b="${b% *}" 'BEGIN {printf "%.3f", o / b}')"
emit connect_jwt_cold_broker_us "${o#* }"

pairs connect connect_jwt_per_s connect_anonymous_per_s connect_jwt_vs_anonymous
pairs cached connect_jwt_cached_per_s "" connect_jwt_cached_vs_anonymous
pairs tls connect_tls_jwt_per_s connect_tls_anonymous_per_s connect_tls_jwt_vs_tls_anonymous
pairs publish publish_jwt_per_s publish_anonymous_per_s publish_jwt_vs_anonymous

# metrics_overhead: the metrics file on (metr) over off (ours). metr's device
# cache is warmed first, as ours' was by the cold pass.
$PINC "$BC" connect --port "$metr_PLAIN" --pid "$metr_PID" $DEV --first 0 --count "$NDEV" \
    --seconds 120 --parallel "$PAR" >/dev/null
# onoff KIND NAME: alternated pairs as in pairs(), metr against ours, twice
# ROUNDS of them (the difference is small beside the machine's noise); also
# NAME_cpu, the broker's CPU per connect off over on (/proc/PID/schedstat:
# what the broker itself spent, less moved by other load).
onoff() {
    ratios=""; cpu=""
    i=0
    while [ $i -lt $((2 * ROUNDS)) ]; do
        f1=$(( (2 * i * NCONN) % NDEV )); f2=$(( ((2 * i + 1) * NCONN) % NDEV ))
        if [ $((i % 2)) -eq 0 ]; then
            m=$(run "$1" metr "$f1"); o=$(run "$1" ours "$f2")
        else
            o=$(run "$1" ours "$f1"); m=$(run "$1" metr "$f2")
        fi
        ratios="$ratios $(awk -v m="${m% *}" -v o="${o% *}" 'BEGIN {printf "%.4f", m / o}')"
        cpu="$cpu $(awk -v m="${m#* }" -v o="${o#* }" 'BEGIN {printf "%.4f", o / m}')"
        i=$((i + 1))
    done
    echo "$2 pairs (metrics on/off):$ratios" >&2
    echo "$2 CPU pairs (broker us off/on):$cpu" >&2
    emit "$2" "$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"
    emit "${2}_cpu" "$(echo $cpu | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"
}
onoff cached metrics_overhead
onoff connect metrics_overhead_fresh
[ -s "$TMP/metrics" ] || { echo "broker.sh: the metr broker made no metrics file" >&2; exit 1; }
