#!/bin/sh
# The device registry's figures (issue 4; docs/benchmarks.md):
#
#     sh bench/registry.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE:
#   import_devices_per_s        `latchkey devices import FILE` of
#                               LK_BENCH_IMPORT_DEVICES (100,000) devices into
#                               a new registry, the whole command timed
#   sqlite_insert_rows_per_s    raw SQLite: as many rows (id, PEM) with one
#                               prepared INSERT in one transaction
#   import_vs_sqlite_insert     median of the per-pair ratios
#   registry_devices            devices in the 1,000,000-device registry
#   registry_lookup_us (+ _p90_us, _p99_us), sqlite_pk_lookup_us,
#   registry_lookup_vs_sqlite_pk
#                               bench_registry lookup on that registry
#
# Every device has one ES256_PEM credential: the same P-256 public key, made
# here at run time. The 1M-device registry is made once with the real tool
# (from standard input) and kept as BUILD/bench-registry-1m.db (~340 MB);
# a later run reuses it when it holds exactly 1,000,000 devices, and
# otherwise makes it again. Remove it to force a rebuild.
set -eu
BUILD=${1:?usage: sh bench/registry.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/registry.sh BUILD OUTFILE}
ROUNDS=${LK_BENCH_ROUNDS:-5}
NIMPORT=${LK_BENCH_IMPORT_DEVICES:-100000}
NBIG=1000000
LOOKUP_PAIRS=${LK_BENCH_LOOKUP_PAIRS:-10}
BR="$BUILD/bench/bench_registry"
CACHE="$BUILD/bench-registry-1m.db"
# What bench_registry.c expects: keep in step with BENCH_* there.
REGISTRY=bench-registry

. bench/common.sh

bench_need "$TOOL" "$BR"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lkbench-registry.XXXXXX")
PART="$CACHE.part"
cleanup() {
    rm -rf "$TMP"
    rm -f "$PART" "$PART-wal" "$PART-shm" "$PART-journal"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One P-256 public key for every device (a benchmark: the registry checks
# each credential, and the fast path it takes is the same for any key).
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/key.pem" 2>/dev/null
openssl pkey -in "$TMP/key.pem" -pubout -out "$TMP/pub.pem"
rm -f "$TMP/key.pem"

# JSON lines of N devices, device-000000000 ..., on standard output.
devices_jsonl() {
    awk -v n="$1" -v pemfile="$TMP/pub.pem" 'BEGIN {
        while ((getline l < pemfile) > 0) k = k l "\\n"
        for (i = 0; i < n; i++)
            printf "{\"id\": \"device-%09d\", \"credentials\": [{\"publicKey\": " \
                   "{\"format\": \"ES256_PEM\", \"key\": \"%s\"}}]}\n", i, k
    }'
}

new_registry() {
    rm -f "$1" "$1-wal" "$1-shm"
    "$TOOL" --db "$1" registries create "$REGISTRY" --project "$PROJECT" --region "$REGION" \
        >/dev/null 2>&1
}

# --- import: the real tool on a file, beside raw SQLite inserts ---
devices_jsonl "$NIMPORT" > "$TMP/devices.jsonl"
ours=""; base=""; ratios=""; pairs=""
i=0
while [ "$i" -lt "$ROUNDS" ]; do
    db="$TMP/import.db"
    new_registry "$db"
    t=$($PIN "$BR" time "$TOOL" --db "$db" devices import "$TMP/devices.jsonl" \
        --registry "$REGISTRY" --project "$PROJECT" --region "$REGION" 2>"$TMP/import.log") || {
        cat "$TMP/import.log" >&2; exit 1; }
    n=$("$BR" count "$db")
    [ "$n" -eq "$NIMPORT" ] || { echo "registry.sh: imported $n devices, not $NIMPORT" >&2; exit 1; }
    rm -f "$db" "$db-wal" "$db-shm"
    o=$(awk -v n="$NIMPORT" -v t="$t" 'BEGIN {printf "%.0f", n / t}')
    b=$($PIN "$BR" insert "$TMP/raw.db" "$NIMPORT" "$TMP/pub.pem")
    rm -f "$TMP/raw.db" "$TMP/raw.db-wal" "$TMP/raw.db-shm"
    r=$(awk -v o="$o" -v b="$b" 'BEGIN {printf "%.4f", o / b}')
    ours="$ours $o"; base="$base $b"; ratios="$ratios $r"; pairs="$pairs $o/$b=$r"
    i=$((i + 1))
done
rm -f "$TMP/devices.jsonl"
echo "import pairs, $NIMPORT devices (latchkey import / sqlite insert, per s):$pairs"
emit import_devices_per_s "$(echo $ours | tr ' ' '\n' | median)"
emit sqlite_insert_rows_per_s "$(echo $base | tr ' ' '\n' | median)"
emit import_vs_sqlite_insert "$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"

# --- the 1M-device registry, made once with the same tool ---
n=$("$BR" count "$CACHE" 2>/dev/null) || n=0
if [ "$n" -ne "$NBIG" ]; then
    [ -e "$CACHE" ] && echo "registry.sh: $CACHE holds $n devices, not $NBIG: making it again"
    rm -f "$CACHE" "$CACHE-wal" "$CACHE-shm"
    new_registry "$PART"
    t=$(devices_jsonl "$NBIG" | "$BR" time "$TOOL" --db "$PART" devices import - \
        --registry "$REGISTRY" --project "$PROJECT" --region "$REGION" 2>"$TMP/import.log") || {
        cat "$TMP/import.log" >&2; exit 1; }
    n=$("$BR" count "$PART")   # opening and closing it also checkpoints the WAL (an empty -wal stays: the registry keeps it)
    [ "$n" -eq "$NBIG" ] && [ ! -s "$PART-wal" ] || {
        echo "registry.sh: made $n devices, not $NBIG" >&2; exit 1; }
    mv "$PART" "$CACHE"
    echo "registry: made $CACHE ($NBIG devices, $(du -m "$CACHE" | cut -f1) MB) in $(
        awk -v t="$t" 'BEGIN {printf "%.1f", t}') s, $(
        awk -v n="$NBIG" -v t="$t" 'BEGIN {printf "%.0f", n / t}') devices/s (import from standard input)"
else
    echo "registry: reusing $CACHE ($NBIG devices)"
fi

# --- lookups on it: ours and raw SQLite in alternating slices ---
# The file is read once first, so that it is in the OS page cache whether it
# was just made or kept from an earlier run (a broker's database is: it reads
# it all day); a handle's own 64 MiB page cache holds a fifth of it.
cat "$CACHE" > /dev/null
$PIN "$BR" lookup "$CACHE" "$LOOKUP_PAIRS" > "$TMP/lookup.txt"
while IFS= read -r line; do
    emit "${line%%: *}" "${line#*: }"
done < "$TMP/lookup.txt"
