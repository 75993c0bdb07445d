#!/bin/sh
# Gateways (docs/benchmarks.md, "Gateways"; docs/device.md, "Gateways"):
#
#     sh bench/gateway.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE. One Mosquitto
# (LK_MOSQUITTO) with latchkey's plugin, a TLS listener for the devices and a
# plain one for the backend, pinned to the last core; the devices (the
# latchkey-device agent) on core 0. The registry: LK_BENCH_GW_DEVICES (1,000,
# the most a gateway may have attached) devices sharing one ES256 key, all
# bound to the gateway bench-gw (ASSOCIATION_ONLY). The plugin's per-device
# and gateway rates are lifted (and the agents' pacing raised to its most),
# so that what is measured is the machinery, not the rate limits.
#   gateway_attach_per_s      one gateway agent attaching every device, timed
#                             at a backend from the first device's online
#                             message to the last (the plugin announces each
#                             attach it takes); the median of LK_BENCH_ROUNDS
#                             (3 at most)
#   gateway_events_per_s, direct_events_per_s, gateway_events_vs_direct
#                             LK_BENCH_GW_EVENT_DEVICES (10) devices each
#                             sending LK_BENCH_GW_EVENTS (1,000) QoS 1 events,
#                             counted at a backend from the first to the last
#                             received: through one gateway, then connected
#                             directly (one agent each), alternating, same run;
#                             the ratio's goal is >= 0.8
# The driver is bench/gateway_run.py (Debian's python3 and paho-mqtt).
# Everything is made in a temporary directory, removed at exit; the broker
# stopped.
set -eu
BUILD=${1:?usage: sh bench/gateway.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/gateway.sh BUILD OUTFILE}
NDEV=${LK_BENCH_GW_DEVICES:-1000}
NEV=${LK_BENCH_GW_EVENT_DEVICES:-10}
EVENTS=${LK_BENCH_GW_EVENTS:-1000}
ROUNDS=${LK_BENCH_ROUNDS:-5}
[ "$ROUNDS" -le 3 ] || ROUNDS=3
REGISTRY=bench-gateway
PY=/usr/bin/python3

. bench/common.sh

bench_need "$TOOL" "$DEVTOOL" "$PLUGIN" "$MOSQUITTO"
if ! $PY -c 'import paho.mqtt.client' 2>/dev/null; then
    echo "gateway.sh: skipped: $PY has no paho-mqtt (make deps)" >&2
    exit 0
fi

broker_PID=""
bench_tmp gateway broker_PID

# --- the registry: NDEV devices sharing one key, a gateway, every device bound to it ---
"$TOOL" key generate --store "$TMP/keys.lks" --key bench --alg ES256 > "$TMP/pub.pem"
bench_fleet "$TMP/registry.db" "$TMP/pub.pem" "$NDEV" 6
LOC="--registry $REGISTRY --project $PROJECT --region $REGION"
"$TOOL" --db "$TMP/registry.db" devices create bench-gw $LOC --public-key "path=$TMP/pub.pem,type=es256" \
    --device-type gateway --auth-method association-only >/dev/null
i=0
while [ $i -lt "$NDEV" ]; do
    "$TOOL" --db "$TMP/registry.db" devices gateways bind --gateway bench-gw \
        --device "$(printf 'device-%06d' $i)" $LOC >/dev/null
    i=$((i + 1))
done

# --- the broker: rates lifted, attaches as often as the rounds need ---
start_mosquitto broker plain "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_messages_per_second 1000000" \
    "plugin_opt_gateway_messages_per_second 1000000" \
    "plugin_opt_connect_burst 100000" "plugin_opt_connects_per_minute 60000" \
    "max_queued_messages 10000000"

# The plugin refuses logins until its first tick: wait until the gateway gets in.
n=0
until "$DEVTOOL" --host 127.0.0.1 --port "$broker_TLS" --ca "$TMP/ca.crt" --project "$PROJECT" \
        --region "$REGION" --registry "$REGISTRY" --device bench-gw --key bench --store "$TMP/keys.lks" \
        --duration 1 --quiet --max-attempts 1 </dev/null >/dev/null 2>&1; do
    n=$((n + 1))
    [ $n -lt 10 ] || { echo "gateway.sh: the gateway could not connect:" >&2; tail -20 "$TMP/broker.log" >&2; exit 1; }
    sleep 0.5
done

export DEVTOOL PORT="$broker_TLS" PLAIN="$broker_PLAIN" CA="$TMP/ca.crt" STORE="$TMP/keys.lks" KEY=bench \
    PROJECT REGION REGISTRY SECRET GW=bench-gw NDEV NEV EVENTS ROUNDS PINC
for what in attach events; do
    $PY bench/gateway_run.py "$what" > "$TMP/$what.txt" || echo "gateway.sh: $what failed" >&2
    while IFS= read -r line; do
        emit "${line%%: *}" "${line#*: }"
    done < "$TMP/$what.txt"
done
