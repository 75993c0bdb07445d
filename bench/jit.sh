#!/bin/sh
# Just-in-time registration (docs/provisioning.md, "Just-in-time registration";
# docs/benchmarks.md):
#
#     sh bench/jit.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE. One Mosquitto with
# latchkey's plugin (plain TCP, pinned to the last core), a registry with a
# P-256 CA and JIT on, the JIT rate lifted (what is measured is the work,
# not the limit). The driver, bench/jit_run.py (python3-cryptography, PyJWT),
# makes LK_BENCH_JIT_DEVICES (200) device certificates and their x5c tokens
# beforehand, then alternates, on core 0, one first connection of an unknown
# device (token with x5c: verified with the leaf, chain checked, the device
# written, verified again, connected) and one connection of a registered
# device with a fresh token (device cache warm, token cache missed):
#   jit_first_connect_ms              CONNECT sent to CONNACK, the median (goal <= 50)
#   connect_registered_ms             the same for the registered device, same run
#   jit_first_connect_vs_registered   the ratio of the medians
set -eu
BUILD=${1:?usage: sh bench/jit.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/jit.sh BUILD OUTFILE}
NDEV=${LK_BENCH_JIT_DEVICES:-200}
REGISTRY=bench-jit
PY=/usr/bin/python3

. bench/common.sh

bench_need "$TOOL" "$PLUGIN" "$MOSQUITTO"
if ! $PY -c 'import jwt, cryptography' 2>/dev/null; then
    echo "jit.sh: skipped: $PY has no PyJWT or cryptography (make deps)" >&2
    exit 0
fi

broker_PID=""
bench_tmp jit broker_PID

export TMP TOOL PROJECT REGION REGISTRY NDEV
$PY bench/jit_run.py setup >&2
start_mosquitto broker plain "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_jit_per_minute 600000" \
    "plugin_opt_jit_burst 100000" "plugin_opt_connect_burst 100000" \
    "plugin_opt_connects_per_minute 60000"
export PORT="$broker_PLAIN"
$PINC $PY bench/jit_run.py run > "$TMP/jit.txt" || { echo "jit.sh: failed" >&2; tail -20 "$TMP/broker.log" >&2; exit 1; }
while IFS= read -r line; do
    emit "${line%%: *}" "${line#*: }"
done < "$TMP/jit.txt"
