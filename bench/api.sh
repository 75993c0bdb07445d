#!/bin/sh
# latchkeyd's admin API (issue 13; docs/benchmarks.md, "Admin API"):
#
#     sh bench/api.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE:
#   api_get_device_per_s       GET .../devices/D (a device with one ES256_PEM
#                              credential and metadata, its newest config
#                              read with it; no state, as it never sent one),
#                              authenticated by an access token,
#                              wrk on keep-alive TLS connections
#   api_static_per_s           the baseline, same run, same wrk settings:
#                              GET /v1/bench:static (latchkeyd --bench-static
#                              FILE), the same access-token authentication,
#                              then a fixed body of the same bytes (FILE is
#                              the device's JSON as the first daemon gave it)
#                              with no registry work
#   api_get_device_vs_static   mean of the per-pair ratios (target >= 0.7)
#   api_get_device_cpu_us, api_static_cpu_us, api_get_device_vs_static_cpu
#                              latchkeyd's own CPU time per request in the
#                              same runs (/proc/PID/schedstat), and static's over
#                              device's: less moved by other load than rates
#   api_list_devices_page_ms   median of LK_BENCH_API_PAGES (20) GETs of
#                              devices?pageSize=500&pageToken=T, T the token
#                              given with page 999, so page 1,000 (devices
#                              499,500..499,999) of a 1,000,000-device
#                              registry (target <= 100)
#   api_list_devices_page1_ms  page 1 of the same registry, the same way,
#                              alternating with the above
#
# wrk runs LK_BENCH_API_WRK ("-t2 -c32", keep-alive) for LK_BENCH_API_SECONDS
# (5) per run, pinned to the first core, latchkeyd to the last (PIN): device,
# static, static, device (the order swapped in the second pair, so drift
# on the shared machine falls on both). Any non-2xx answer stops the bench.
#
# The 1M-device registry: BUILD/bench-api-1m.db, kept. A copy of
# bench/registry.sh's BUILD/bench-registry-1m.db when that holds 1,000,000
# devices, else made the same way, by the real tool: `latchkey devices
# import -` (15,000 to 27,000 devices/s on a shared 2-core machine, about a minute:
# fast enough, so no rows written by hand with sqlite3). The service account
# is made with `latchkey service-accounts`.
set -eu
BUILD=${1:?usage: sh bench/api.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/api.sh BUILD OUTFILE}
SECS=${LK_BENCH_API_SECONDS:-5}
WRK_OPTS=${LK_BENCH_API_WRK:-"-t2 -c32"}
NPAGES=${LK_BENCH_API_PAGES:-20}
NBIG=1000000
CACHE="$BUILD/bench-api-1m.db"
SHARED="$BUILD/bench-registry-1m.db"
PY=/usr/bin/python3
CLIENT=bench/api_client.py
REGISTRY=bench-registry    # the 1M registry's name, as bench/registry.sh makes it

. bench/common.sh
bench_need "$LKD" "$TOOL" "$CLIENT"
command -v wrk >/dev/null 2>&1 || {
    echo "api.sh: wrk is missing: sh scripts/install-deps.sh test" >&2; exit 1; }

LKD_PID=""
bench_tmp api LKD_PID
PART="$CACHE.part"
trap 'rm -f "$PART" "$PART-wal" "$PART-shm"; _bench_cleanup' EXIT
bench_certs

# start_lkd DB [OPTION VALUE...]: latchkeyd (TLS, pinned) on DB; sets
# LKD_PID and PORT, and makes a service account and an access token (TOKEN).
start_lkd() {
    _db=$1
    shift
    rm -f "$TMP/port"
    $PIN "$LKD" --registry "$_db" --admin-listen 127.0.0.1:0 --tls-cert "$TMP/server.crt" \
        --tls-key "$TMP/server.key" --port-file "$TMP/port" "$@" >> "$TMP/latchkeyd.log" 2>&1 &
    LKD_PID=$!
    _n=0
    while [ ! -s "$TMP/port" ]; do
        kill -0 "$LKD_PID" 2>/dev/null && [ $_n -lt 600 ] || {
            echo "api.sh: latchkeyd did not start:" >&2; cat "$TMP/latchkeyd.log" >&2; exit 1; }
        sleep 0.1
        _n=$((_n + 1))
    done
    PORT=$(cat "$TMP/port")
    # The bench's own service account (an editor), made afresh each time:
    # the token_uri in its key file names this daemon's port.
    "$TOOL" --db "$_db" service-accounts delete bench-api --project "$PROJECT" >/dev/null 2>&1 || true
    rm -f "$TMP/sa.json"
    "$TOOL" --db "$_db" service-accounts create bench-api --project "$PROJECT" --role editor \
        --token-uri "https://127.0.0.1:$PORT/token" --key-file "$TMP/sa.json" >/dev/null 2>"$TMP/sa.err" || {
        cat "$TMP/sa.err" >&2; exit 1; }
    TOKEN=$($PY "$CLIENT" token "$PORT" "$TMP/ca.crt" "$TMP/sa.json")
}

stop_lkd() {
    kill -TERM "$LKD_PID"
    _rc=0
    wait "$LKD_PID" || _rc=$?
    LKD_PID=""
    [ "$_rc" -eq 0 ] || { echo "api.sh: latchkeyd exited $_rc:" >&2; tail -20 "$TMP/latchkeyd.log" >&2; exit 1; }
}

# cpu_ns: latchkeyd's CPU time so far, ns (as bench/broker.sh's *_broker_us).
cpu_ns() { awk '{print $1}' "/proc/$LKD_PID/schedstat"; }

# wrk_run PATH: RATE (requests per second) and CPU_US (latchkeyd's CPU
# microseconds per request, which other load on the shared machine moves
# less than the rate), after checking every answer was 2xx.
wrk_run() {
    _t0=$(cpu_ns)
    # shellcheck disable=SC2086
    $PINC wrk $WRK_OPTS -d"${SECS}s" -H "Authorization: Bearer $TOKEN" \
        "https://127.0.0.1:$PORT$1" > "$TMP/wrk.txt" 2>&1 || {
        echo "api.sh: wrk failed:" >&2; cat "$TMP/wrk.txt" >&2; exit 1; }
    _t1=$(cpu_ns)
    if grep -q "Non-2xx" "$TMP/wrk.txt"; then
        echo "api.sh: $1 had non-2xx answers:" >&2; cat "$TMP/wrk.txt" >&2; exit 1
    fi
    RATE=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$TMP/wrk.txt")
    CPU_US=$(awk -v a="$_t0" -v b="$_t1" '/ requests in / {printf "%.1f", (b - a) / 1000 / $1}' "$TMP/wrk.txt")
}

# --- GET device vs the static body ---
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/dev.key" 2>/dev/null
openssl pkey -in "$TMP/dev.key" -pubout -out "$TMP/dev.pem"
start_lkd "$TMP/api.db"
DEV=$($PY "$CLIENT" device "$PORT" "$TMP/ca.crt" "$TOKEN" bench-api bench-device "$TMP/dev.pem" \
    "$TMP/static.json")
stop_lkd
start_lkd "$TMP/api.db" --bench-static "$TMP/static.json"
sizes=$($PY "$CLIENT" check "$PORT" "$TMP/ca.crt" "$TOKEN" "$DEV" /v1/bench:static | tr '\n' ' ')
set -- $sizes
[ "$1" = 200 ] && [ "$3" = 200 ] && [ "$2" = "$4" ] || {
    echo "api.sh: device and static answers differ (status bytes): $sizes" >&2; exit 1; }
echo "api: GET device and bench:static both answer $2 bytes; wrk $WRK_OPTS -d${SECS}s"
ours=""; base=""; ratios=""; pairs=""; ocpu=""; bcpu=""; cratios=""
for order in ds sd; do
    if [ "$order" = ds ]; then
        wrk_run "$DEV"; o=$RATE; oc=$CPU_US
        wrk_run /v1/bench:static; b=$RATE; bc=$CPU_US
    else
        wrk_run /v1/bench:static; b=$RATE; bc=$CPU_US
        wrk_run "$DEV"; o=$RATE; oc=$CPU_US
    fi
    r=$(awk -v o="$o" -v b="$b" 'BEGIN {printf "%.4f", o / b}')
    cr=$(awk -v o="$oc" -v b="$bc" 'BEGIN {printf "%.4f", b / o}')
    ours="$ours $o"; base="$base $b"; ratios="$ratios $r"; pairs="$pairs $o/$b=$r"
    ocpu="$ocpu $oc"; bcpu="$bcpu $bc"; cratios="$cratios $cr"
done
stop_lkd
echo "api pairs (GET device / static, per s):$pairs"
echo "api latchkeyd CPU us a request (GET device, static):$ocpu /$bcpu"
mean() { awk '{s += $1; n++} END {printf "%.4f", s / n}'; }
emit api_get_device_per_s "$(echo $ours | tr ' ' '\n' | mean | awk '{printf "%.0f", $1}')"
emit api_static_per_s "$(echo $base | tr ' ' '\n' | mean | awk '{printf "%.0f", $1}')"
emit api_get_device_vs_static "$(echo $ratios | tr ' ' '\n' | mean | awk '{printf "%.3f", $1}')"
emit api_get_device_cpu_us "$(echo $ocpu | tr ' ' '\n' | mean | awk '{printf "%.1f", $1}')"
emit api_static_cpu_us "$(echo $bcpu | tr ' ' '\n' | mean | awk '{printf "%.1f", $1}')"
emit api_get_device_vs_static_cpu "$(echo $cratios | tr ' ' '\n' | mean | awk '{printf "%.3f", $1}')"

# --- a page deep in a 1,000,000-device registry ---
count_devices() {
    sqlite3 "$1" "SELECT count(*) FROM devices d JOIN registries r ON r.id = d.registry
        WHERE r.project = '$PROJECT' AND r.location = '$REGION' AND r.registry_id = '$REGISTRY'" 2>/dev/null || echo 0
}
n=$(count_devices "$CACHE")
if [ "$n" -ne "$NBIG" ]; then
    rm -f "$CACHE" "$CACHE-wal" "$CACHE-shm" "$PART" "$PART-wal" "$PART-shm"
    if [ -f "$SHARED" ] && [ ! -s "$SHARED-wal" ] && [ "$(count_devices "$SHARED")" -eq "$NBIG" ]; then
        cp "$SHARED" "$PART"
        echo "api: made $CACHE from $SHARED"
    else
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 2>/dev/null |
            openssl pkey -pubout -out "$TMP/pub.pem"
        "$TOOL" --db "$PART" registries create "$REGISTRY" --project "$PROJECT" --region "$REGION" >/dev/null
        t0=$(date +%s)
        awk -v n="$NBIG" -v pemfile="$TMP/pub.pem" 'BEGIN {
            while ((getline l < pemfile) > 0) k = k l "\\n"
            for (i = 0; i < n; i++)
                printf "{\"id\": \"device-%09d\", \"credentials\": [{\"publicKey\": " \
                       "{\"format\": \"ES256_PEM\", \"key\": \"%s\"}}]}\n", i, k
        }' | "$TOOL" --db "$PART" devices import - --registry "$REGISTRY" --project "$PROJECT" \
            --region "$REGION" > "$TMP/import.log" 2>&1 || { cat "$TMP/import.log" >&2; exit 1; }
        echo "api: made $CACHE by \`latchkey devices import -\` in $(( $(date +%s) - t0 )) s"
    fi
    [ "$(count_devices "$PART")" -eq "$NBIG" ] && [ ! -s "$PART-wal" ] || { echo "api.sh: $PART is not $NBIG devices" >&2; exit 1; }
    mv "$PART" "$CACHE"
else
    echo "api: reusing $CACHE ($NBIG devices)"
fi
cat "$CACHE" > /dev/null   # in the OS page cache, as a serving daemon's file is
start_lkd "$CACHE"
set -- $($PY "$CLIENT" pages "$PORT" "$TMP/ca.crt" "$TOKEN" "$REGISTRY" 1000 "$NPAGES")
stop_lkd
emit api_list_devices_page_ms "$1"
emit api_list_devices_page1_ms "$2"
