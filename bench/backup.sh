#!/bin/sh
# Backing up and restoring the registry (issue 19; docs/benchmarks.md):
#
#     sh bench/backup.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE:
#   backup_registry_mb_per_s     `latchkey backup` of a registry of
#                                LK_BENCH_BACKUP_DEVICES (100,000) devices: the
#                                whole command (the online copy with SQLite's
#                                backup API, the integrity check, fsync, the
#                                SHA-256 of backup.json)
#   sqlite3_backup_mb_per_s      the baseline, in the same run: SQLite's own
#                                shell copying the same file (`.backup`, the
#                                same API in one step, nothing checked)
#   backup_vs_sqlite3            median of the per-pair ratios of the two rates
#   restore_registry_mb_per_s    `latchkey restore --force` of that backup over
#                                the registry (checks, then the copy)
set -eu
BUILD=${1:?usage: sh bench/backup.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/backup.sh BUILD OUTFILE}
N=${LK_BENCH_BACKUP_DEVICES:-100000}
ROUNDS=${LK_BENCH_ROUNDS:-5}
REGISTRY=bench-backup

. bench/common.sh

bench_need "$TOOL"
command -v sqlite3 >/dev/null || { echo "bench/backup.sh: sqlite3 is missing" >&2; exit 1; }
TMP=$(mktemp -d /tmp/latchkey-bench-backup.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM

openssl ecparam -name prime256v1 -genkey -noout -out "$TMP/k.pem" 2>/dev/null
openssl ec -in "$TMP/k.pem" -pubout -out "$TMP/pub.pem" 2>/dev/null
bench_fleet "$TMP/registry.db" "$TMP/pub.pem" "$N" 6
mb=$(stat -c %s "$TMP/registry.db" | awk '{printf "%.3f", $1 / 1048576}')
echo "bench/backup.sh: a registry of $N devices, $mb MiB" >&2

now_ms() { date +%s%3N; }
ours=""; base=""; ratios=""; rest=""
i=0
while [ $i -lt "$ROUNDS" ]; do
    t0=$(now_ms)
    $PIN "$TOOL" --db "$TMP/registry.db" backup --no-spool "$TMP/b$i" >/dev/null
    t1=$(now_ms)
    $PIN sqlite3 "$TMP/registry.db" ".backup '$TMP/s$i.db'"
    t2=$(now_ms)
    $PIN "$TOOL" --db "$TMP/registry.db" restore --no-spool --force "$TMP/b$i" >/dev/null
    t3=$(now_ms)
    o=$(awk -v m="$mb" -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", m * 1000 / t}')
    b=$(awk -v m="$mb" -v t=$((t2 - t1)) 'BEGIN {printf "%.1f", m * 1000 / t}')
    r=$(awk -v m="$mb" -v t=$((t3 - t2)) 'BEGIN {printf "%.1f", m * 1000 / t}')
    ours="$ours $o"; base="$base $b"; rest="$rest $r"
    ratios="$ratios $(awk -v o="$o" -v b="$b" 'BEGIN {printf "%.4f", o / b}')"
    rm -rf "$TMP/b$i" "$TMP/s$i.db"
    i=$((i + 1))
done
echo "backup pairs (ours/sqlite3):$ratios"
emit backup_registry_devices "$N"
emit backup_registry_mb "$mb"
emit backup_registry_mb_per_s "$(echo $ours | tr ' ' '\n' | median)"
emit sqlite3_backup_mb_per_s "$(echo $base | tr ' ' '\n' | median)"
emit backup_vs_sqlite3 "$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"
emit restore_registry_mb_per_s "$(echo $rest | tr ' ' '\n' | median)"
