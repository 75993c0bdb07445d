#!/bin/sh
# make bench: every figure is printed as `name: value` and written to
# BUILD/bench.txt. Throughput is measured beside a baseline in the same run
# (the machine is shared and noisy): runs alternate ours/baseline and the
# median of each is kept, and the ratio is what to compare across machines.
set -eu
BUILD=${1:-build}
OUT="$BUILD/bench.txt"
ROUNDS=${LK_BENCH_ROUNDS:-5}
SECS=${LK_BENCH_SECONDS:-1}
: > "$OUT"
. bench/common.sh

# openssl speed prints "256 bits ecdsa (nistp256)  0.0000s 0.0001s 40000.0 12000.0":
# the first rate is signatures per second.
openssl_sign_es256() {
    $PIN openssl speed -seconds "$SECS" ecdsap256 2>/dev/null |
        awk '/bits ecdsa \(nistp256\)/ {print int($(NF-1))}'
}

echo "latchkey bench on $(nproc) cores, $(uname -m), $(openssl version)"

# --- the core on a Cortex-M0+ (flash, stack, heap) ---
if [ -x bench/core_metrics.sh ] || [ -f bench/core_metrics.sh ]; then
    sh bench/core_metrics.sh "$OUT"
fi

# --- token signing vs raw ECDSA signing ---
ours=""; base=""; ratios=""
i=0
while [ $i -lt "$ROUNDS" ]; do
    o=$($PIN "$BUILD/bench/bench_sign" ES256 "$SECS")
    b=$(openssl_sign_es256)
    ours="$ours $o"; base="$base $b"
    ratios="$ratios $(awk -v o="$o" -v b="$b" 'BEGIN {printf "%.4f", o / b}')"
    i=$((i + 1))
done
echo "sign ES256 pairs (ours/openssl):$ratios"
emit sign_es256_per_s "$(echo $ours | tr ' ' '\n' | median)"
emit openssl_sign_es256_per_s "$(echo $base | tr ' ' '\n' | median)"
# The median of the per-pair ratios: each pair ran back to back on one core.
emit sign_es256_vs_openssl "$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"
emit sign_rs256_per_s "$($PIN "$BUILD/bench/bench_sign" RS256 "$SECS")"

# --- token verification (issue 3) vs raw OpenSSL verify and libjwt ---
# bench_verify alternates ours and each baseline in short slices inside one
# process and prints its own `name: value` figures (medians of per-pair
# ratios); its per-pair spread goes to stderr.
$PIN "$BUILD/bench/bench_verify" "$ROUNDS" "$SECS" > "$BUILD/bench_verify.txt"
while IFS= read -r line; do
    emit "${line%%: *}" "${line#*: }"
done < "$BUILD/bench_verify.txt"
# For reference: openssl speed's own ECDSA P-256 verify figure (last column).
emit openssl_speed_verify_es256_per_s "$($PIN openssl speed -seconds "$SECS" ecdsap256 2>/dev/null |
    awk '/bits ecdsa \(nistp256\)/ {print int($NF)}')"
sh bench/registry.sh "$BUILD" "$OUT"
sh bench/manifest.sh "$BUILD" "$OUT"
sh bench/broker.sh "$BUILD" "$OUT"
sh bench/jit.sh "$BUILD" "$OUT"
sh bench/simulate.sh "$BUILD" "$OUT"
sh bench/storm.sh "$BUILD" "$OUT"
sh bench/flood.sh "$BUILD" "$OUT"
sh bench/api.sh "$BUILD" "$OUT"
/usr/bin/python3 bench/daemon_rss.py "$BUILD" "$OUT"
sh bench/http_bridge.sh "$BUILD" "$OUT"
sh bench/push.sh "$BUILD" "$OUT"
sh bench/gateway.sh "$BUILD" "$OUT"
sh bench/provision.sh "$BUILD" "$OUT"
sh bench/console_search.sh "$BUILD" "$OUT"
sh bench/backup.sh "$BUILD" "$OUT"
sh bench/soak.sh "$BUILD" "$OUT"
