#!/bin/sh
# The console's device search (issue 18; docs/benchmarks.md, "Console"):
#
#     sh bench/console_search.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE:
#   console_device_search_ms        median of every timed search (goal <= 200):
#                                   GET /console/api/.../registries/R/devices?...
#                                   through latchkeyd over TLS (a viewer's
#                                   access token), pageSize 200, 16 kinds of
#                                   search (each filter alone, dense and
#                                   sparse, deep pages, combinations, and the
#                                   documented worst case), LK_BENCH_CONSOLE_ROUNDS
#                                   (15) each
#   console_device_search_worst_ms  the slowest single search of them
#   console_get_device_ms           the baseline, same run, same connection,
#                                   after each search: GET /v1/.../devices/D
#   console_search_vs_get_device    the first over the third
#   console_overview_ms             median GET /console/api/projects/P/overview
#                                   (the counts of the 1,000,000 devices)
# and, per kind, "console: KIND median worst devices".
#
# The registry: 1,000,000 devices dev-0000000 ... made in about a minute by
# direct SQLite inserts (sqlite3, one transaction) into a database whose
# schema the real tool made (`latchkey registries create`), then kept as
# BUILD/bench-console-1m.db (remove it to make it again). The import path
# (`latchkey devices import`, ~4,000 devices/s here: over 4 minutes) could
# not set what the search filters on anyway: presence and activity times are
# the broker's records. Credentials are rows with a placeholder PEM (the
# search reads only their expiry). The mix: 10% online, 40% offline, 50%
# never seen; 0.1% blocked; 0.2% gateways; activity times spread over 2,000
# hours, creation over 400 days; a quarter with a credential expiring over
# the next 2,000 days.
set -eu
BUILD=${1:?usage: sh bench/console_search.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/console_search.sh BUILD OUTFILE}
ROUNDS=${LK_BENCH_CONSOLE_ROUNDS:-15}
NBIG=1000000
CACHE="$BUILD/bench-console-1m.db"
PY=/usr/bin/python3
REGISTRY=bench-console

. bench/common.sh
bench_need "$LKD" "$TOOL" bench/console_search.py bench/api_client.py
command -v sqlite3 >/dev/null 2>&1 || { echo "console_search.sh: sqlite3 is missing" >&2; exit 1; }

LKD_PID=""
bench_tmp console LKD_PID
PART="$CACHE.part"
trap 'rm -f "$PART" "$PART-wal" "$PART-shm"; _bench_cleanup' EXIT
bench_certs

count_devices() {
    sqlite3 "$1" "SELECT count(*) FROM devices" 2>/dev/null || echo 0
}
if [ "$(count_devices "$CACHE")" -ne "$NBIG" ]; then
    rm -f "$CACHE" "$CACHE-wal" "$CACHE-shm" "$PART" "$PART-wal" "$PART-shm"
    t0=$(date +%s)
    "$TOOL" --db "$PART" registries create "$REGISTRY" --project "$PROJECT" --region "$REGION" >/dev/null
    # x is the id's number; h, a permutation of it, draws the attributes
    # (so that they are spread over the id order).
    T=$(date +%s)
    sqlite3 "$PART" > /dev/null <<SQL
PRAGMA synchronous=OFF;
PRAGMA foreign_keys=ON;
BEGIN;
WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < $NBIG - 1),
     a(x, h) AS (SELECT x, (x * 7919) % $NBIG FROM c)
INSERT INTO devices(registry, device_id, created, presence, presence_time, blocked, gateway_type,
                    last_heartbeat, last_event)
SELECT (SELECT id FROM registries), printf('dev-%07d', x), $T - (h % 400) * 86400 - 3600,
       CASE WHEN h % 10 = 0 THEN 1 WHEN h % 10 < 5 THEN 2 ELSE 0 END,
       CASE WHEN h % 10 < 5 THEN $T - 60 ELSE 0 END,
       h % 1000 = 0, CASE WHEN h % 500 = 1 THEN 1 ELSE 0 END,
       CASE WHEN h % 10 = 0 THEN $T - (h % 600) WHEN h % 10 < 5 THEN $T - (h % 2000) * 3600 ELSE 0 END,
       CASE WHEN h % 20 = 0 THEN $T - 60 ELSE 0 END
FROM a;
INSERT INTO device_credentials(num_id, pos, format, pem, expires)
SELECT num_id, 0, 1, 'bench placeholder', $T + ((((num_id - 1) * 7919) % $NBIG) / 4 % 2000) * 86400 + 3600
FROM devices WHERE (((num_id - 1) * 7919) % $NBIG) % 4 = 0;
-- the baseline's device has its first config, as every device the tool makes
INSERT INTO device_configs(num_id, version, cloud_update_time, data)
SELECT num_id, 1, $T, x'' FROM devices WHERE device_id = 'dev-0500000';
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
SQL
    [ "$(count_devices "$PART")" -eq "$NBIG" ] || { echo "console_search.sh: $PART is not $NBIG devices" >&2; exit 1; }
    mv "$PART" "$CACHE"
    echo "console: made $CACHE (sqlite3 inserts into the tool's schema) in $(( $(date +%s) - t0 )) s"
else
    echo "console: reusing $CACHE ($NBIG devices)"
fi
cat "$CACHE" > /dev/null   # in the OS page cache, as a serving daemon's file is

rm -f "$TMP/port"
$PIN "$LKD" --registry "$CACHE" --admin-listen 127.0.0.1:0 --tls-cert "$TMP/server.crt" \
    --tls-key "$TMP/server.key" --port-file "$TMP/port" >> "$TMP/latchkeyd.log" 2>&1 &
LKD_PID=$!
_n=0
while [ ! -s "$TMP/port" ]; do
    kill -0 "$LKD_PID" 2>/dev/null && [ $_n -lt 600 ] || {
        echo "console_search.sh: latchkeyd did not start:" >&2; cat "$TMP/latchkeyd.log" >&2; exit 1; }
    sleep 0.1
    _n=$((_n + 1))
done
PORT=$(cat "$TMP/port")
"$TOOL" --db "$CACHE" service-accounts delete bench-console --project "$PROJECT" >/dev/null 2>&1 || true
"$TOOL" --db "$CACHE" service-accounts create bench-console --project "$PROJECT" --role viewer \
    --token-uri "https://127.0.0.1:$PORT/token" --key-file "$TMP/sa.json" >/dev/null 2>"$TMP/sa.err" || {
    cat "$TMP/sa.err" >&2; exit 1; }
TOKEN=$($PY bench/api_client.py token "$PORT" "$TMP/ca.crt" "$TMP/sa.json")
$PINC $PY bench/console_search.py "$PORT" "$TMP/ca.crt" "$TOKEN" "$REGISTRY" "$ROUNDS" > "$TMP/search.txt"
kill -TERM "$LKD_PID"
_rc=0
wait "$LKD_PID" || _rc=$?
LKD_PID=""
[ "$_rc" -eq 0 ] || { echo "console_search.sh: latchkeyd exited $_rc:" >&2; tail -20 "$TMP/latchkeyd.log" >&2; exit 1; }
"$TOOL" --db "$CACHE" service-accounts delete bench-console --project "$PROJECT" >/dev/null 2>&1 || true

n=$(wc -l < "$TMP/search.txt")
head -n $((n - 2)) "$TMP/search.txt" | sed 's/^/console: /'
set -- $(tail -n 1 "$TMP/search.txt")
emit console_device_search_ms "$1"
emit console_device_search_worst_ms "$2"
echo "console: the slowest kind (by median): $4"
emit console_get_device_ms "$3"
emit console_search_vs_get_device "$(awk -v a="$1" -v b="$3" 'BEGIN {printf "%.2f", a / b}')"
emit console_overview_ms "$(tail -n 2 "$TMP/search.txt" | head -n 1 | awk '{print $2}')"
