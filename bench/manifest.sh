#!/bin/sh
# Importing a factory's signed manifest (issue 17; docs/benchmarks.md):
#
#     sh bench/manifest.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE:
#   import_manifest_devices_per_s   `latchkey devices import --manifest` of
#                                   LK_BENCH_MANIFEST_DEVICES (100,000) devices
#                                   into a new registry, the whole command
#                                   timed (signature, every line, the import)
#   openssl_verify_es256_per_s      `openssl speed ecdsap256` verify/s, run
#                                   right after each import on one core (the
#                                   import itself uses every core)
#   import_manifest_vs_verify       median of the per-pair ratios: 1.0 would be
#                                   one ECDSA verification per device and
#                                   nothing else (the registry checks each
#                                   certificate's signature)
#
# The manifest (one CA, P-256 keys, one certificate per device, signed by a
# manufacturer key) is made once by bench/manifest_gen.py and kept in
# BUILD/bench-manifest-N/ (~150 MB for 100,000); remove it to make it again.
set -eu
BUILD=${1:?usage: sh bench/manifest.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/manifest.sh BUILD OUTFILE}
N=${LK_BENCH_MANIFEST_DEVICES:-100000}
ROUNDS=${LK_BENCH_MANIFEST_ROUNDS:-3}
SECS=${LK_BENCH_SECONDS:-1}
CACHE="$BUILD/bench-manifest-$N"
REGISTRY=bench-manifest

. bench/common.sh

bench_need "$TOOL"

if [ ! -f "$CACHE/manifest.jsonl.jws" ]; then
    echo "bench/manifest.sh: making a $N-device manifest in $CACHE (once)..." >&2
    rm -rf "$CACHE"
    /usr/bin/python3 bench/manifest_gen.py "$CACHE.part" "$N"
    mv "$CACHE.part" "$CACHE"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lkbench-manifest.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
LOC="--project $PROJECT --region $REGION"

ours=""; base=""; ratios=""
i=0
while [ $i -lt "$ROUNDS" ]; do
    db="$TMP/r$i.db"
    "$TOOL" --db "$db" registries create "$REGISTRY" $LOC >/dev/null 2>&1
    "$TOOL" --db "$db" registries credentials create --registry "$REGISTRY" --path "$CACHE/ca.pem" $LOC >/dev/null
    "$TOOL" --db "$db" registries signers add --label bench-fab --path "$CACHE/signer.pem" \
        --registry "$REGISTRY" $LOC >/dev/null
    t0=$(date +%s.%N)
    # not pinned: the import checks the devices on every core
    "$TOOL" --db "$db" devices import --manifest "$CACHE/manifest.jsonl" --registry "$REGISTRY" $LOC \
        --format json > "$TMP/report.json"
    t1=$(date +%s.%N)
    o=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f", n / (b - a)}')
    b=$($PIN openssl speed -seconds "$SECS" ecdsap256 2>/dev/null | awk '/bits ecdsa \(nistp256\)/ {print int($NF)}')
    ours="$ours $o"; base="$base $b"
    ratios="$ratios $(awk -v o="$o" -v b="$b" 'BEGIN {printf "%.4f", o / b}')"
    rm -f "$db" "$db-wal" "$db-shm"
    i=$((i + 1))
done
echo "manifest import pairs (ours/openssl verify):$ratios"
emit import_manifest_devices_per_s "$(echo $ours | tr ' ' '\n' | median)"
emit openssl_verify_es256_per_s "$(echo $base | tr ' ' '\n' | median)"
emit import_manifest_vs_verify "$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"
