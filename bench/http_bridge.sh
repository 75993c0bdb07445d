#!/bin/sh
# latchkeyd's HTTP device bridge (issue 14; docs/benchmarks.md, "HTTP device
# bridge"):
#
#     sh bench/http_bridge.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE:
#   http_publish_event_per_s   POST .../devices/D:publishEvent through
#                              latchkeyd's device listener (TLS, keep-alive):
#                              wrk LK_BENCH_HTTP_WRK ("-t2 -c32") with
#                              bench/http_bridge.lua, every request the next
#                              of NDEV devices (NDEV = the connections, 32)
#                              with that device's ES256 token; the body
#                              {"binaryData": base64 of PAYLOAD}, PAYLOAD 1,024
#                              random bytes; answered 200 once the broker has
#                              PUBACKed latchkeyd's QoS 1 publish of the event
#   mqtt_publish_event_per_s   the baseline, same run: the same devices, the
#                              same tokens, the same PAYLOAD bytes, published
#                              by BUILD/bench/bench_publish over MQTT 3.1.1 +
#                              TLS to the same broker, QoS 1, one device per
#                              connection, as many connections and threads as
#                              wrk's, each waiting for its PUBACK before the
#                              next event (as a keep-alive connection waits
#                              for its 200)
#   http_publish_vs_mqtt       mean of the per-pair ratios (goal >= 0.5)
#   http_publish_lkd_us        latchkeyd's CPU microseconds per event (all its
#                              threads, /proc/PID/task/*/schedstat)
#   http_publish_broker_us, mqtt_publish_broker_us
#                              the broker's CPU microseconds per event in each
#   http_publish_vs_mqtt_cpu   the baseline's server CPU per event over the
#                              bridge's (latchkeyd's + the broker's), mean of
#                              the pairs: what the rate ratio is when the
#                              server's core is the bottleneck
#
# One Mosquitto (the system's, LK_MOSQUITTO) with latchkey's plugin on the
# registry file latchkeyd serves (plugin_opt_messages_per_second 1000000:
# the plugin counts both surfaces against one per-device rate), a TLS
# listener for the devices and for latchkeyd's own MQTT 5 connection
# (--broker-ca, the bench CA), and a plain-TCP one for the backend. Both the
# broker and latchkeyd are pinned to the last core (PIN), the clients (wrk,
# bench_publish, the backend) to the first (PINC): the bridge's events cost
# latchkeyd's CPU and the broker's on one core, the baseline's the broker's.
#
# A backend consumes the events in both runs: mosquitto_sub -V mqttv5 as
# backend:bench-backend (its secret from `latchkey backends create`, passed
# in its config file, not on its command line), QoS 1, on
# latchkey/P/L/R/+/events, one line per event into a file. Each run's count
# there is checked: the MQTT run's must equal the events bench_publish saw
# acknowledged (MQTT 3.1.1 has no refusal in a PUBACK: a dropped event shows
# only here); the HTTP run's must be between wrk's answers and that plus
# the connections (wrk does not count the answers in flight at its end).
#
# Order: http, mqtt, mqtt, http (the second pair swapped, so drift on the
# shared machine falls on both), LK_BENCH_HTTP_SECONDS (5) each, after an
# untimed second of each that fills latchkeyd's token and device caches.
# Any non-2xx answer (or socket error) in an HTTP run stops the bench with
# the answer shown; any refused or unacknowledged event in an MQTT run does
# too. Everything is made in a temporary directory, removed at exit.
set -eu
BUILD=${1:?usage: sh bench/http_bridge.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/http_bridge.sh BUILD OUTFILE}
SECS=${LK_BENCH_HTTP_SECONDS:-5}
WRK_OPTS=${LK_BENCH_HTTP_WRK:-"-t2 -c32"}
BP="$BUILD/bench/bench_publish"
LUA=bench/http_bridge.lua
PY=/usr/bin/python3
REGISTRY=bench-http
PAYLOAD_BYTES=1024

. bench/common.sh
bench_need "$LKD" "$TOOL" "$BP" "$PLUGIN" "$MOSQUITTO" "$LUA"
for c in wrk mosquitto_sub; do
    command -v $c >/dev/null 2>&1 || {
        echo "http_bridge.sh: $c is missing: sh scripts/install-deps.sh test" >&2; exit 1; }
done

# wrk's connections and threads: the baseline uses as many
CONNS=$(echo " $WRK_OPTS " | sed -n 's/.* -c *\([0-9][0-9]*\) .*/\1/p')
THREADS=$(echo " $WRK_OPTS " | sed -n 's/.* -t *\([0-9][0-9]*\) .*/\1/p')
CONNS=${CONNS:-10} THREADS=${THREADS:-2}   # wrk's own defaults
NDEV=$CONNS

LKD_PID=""
ours_PID=""
SUB_PID=""
bench_tmp http LKD_PID SUB_PID ours_PID
bench_certs

# --- the registry: NDEV devices sharing one key, a backend ---
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/dev.key" 2>/dev/null
openssl pkey -in "$TMP/dev.key" -pubout -out "$TMP/dev.pem"
bench_fleet "$TMP/registry.db" "$TMP/dev.pem" "$NDEV" 3

# Tokens (PyJWT, ES256, aud = the project, 2 hours): "DEVICE_ID TOKEN" lines,
# the same for both runs. The event: PAYLOAD_BYTES random bytes, and the
# HTTP body carrying them in base64.
$PY - "$TMP/dev.key" "$NDEV" "$PROJECT" > "$TMP/devices.txt" <<'EOF'
import sys, time
import jwt
key = open(sys.argv[1]).read()
now = int(time.time())
for i in range(int(sys.argv[2])):
    print("device-%03d %s" % (i, jwt.encode({"iat": now, "exp": now + 7200, "aud": sys.argv[3]}, key,
                                            algorithm="ES256")))
EOF
openssl rand -out "$TMP/payload.bin" "$PAYLOAD_BYTES"
printf '{"binaryData": "%s"}' "$(base64 -w0 "$TMP/payload.bin")" > "$TMP/body.json"
PREFIX="/v1/projects/$PROJECT/locations/$REGION/registries/$REGISTRY/devices/"

# --- the broker, latchkeyd, the backend ---
# one device sends thousands of events a second, and reconnects every run
# (docs/plugin.md's settings); the backend may fall behind during a run: its
# queue is docs/plugin.md's million, not Mosquitto's default thousand, past
# which events would be dropped
start_mosquitto ours plain "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_messages_per_second 1000000" \
    "plugin_opt_connect_burst 100000" "plugin_opt_connects_per_minute 60000" \
    "max_inflight_messages 20" "max_queued_messages 1000000"

start_latchkeyd "$ours_TLS"

mkdir "$TMP/subcfg"
printf -- '-u backend:bench-backend\n-P %s\n' "$SECRET" > "$TMP/subcfg/mosquitto_sub"
chmod 600 "$TMP/subcfg/mosquitto_sub"
: > "$TMP/sub.txt"
XDG_CONFIG_HOME="$TMP/subcfg" $PINC mosquitto_sub -V mqttv5 -h 127.0.0.1 -p "$ours_PLAIN" \
    -i bench-backend/sub -q 1 -t "latchkey/$PROJECT/$REGION/$REGISTRY/+/events" -F %t \
    > "$TMP/sub.txt" 2> "$TMP/sub.err" &
SUB_PID=$!

sub_count() { wc -l < "$TMP/sub.txt"; }
# sub_wait C0 MIN: wait until the backend has seen at least MIN events more
# than C0 and its count has stopped moving (0.4 s), at most 30 s (it may be
# well behind the run: it shares core 0 with the clients); prints the count
sub_wait() {
    _c=$(sub_count); _n=0; _still=0
    while [ $_n -lt 150 ]; do
        sleep 0.2
        _n=$((_n + 1))
        _d=$(sub_count)
        if [ "$_d" -eq "$_c" ] && [ "$((_d - $1))" -ge "$2" ]; then
            _still=$((_still + 1))
            [ $_still -lt 2 ] || break
        else
            _still=0
        fi
        _c=$_d
    done
    echo "$_d"
}

# One event by curl shows the bridge's answer before anything is timed, and
# waits for the backend to be subscribed (it sees an event).
post_one() {
    curl -sS --cacert "$TMP/ca.crt" -o "$TMP/one.txt" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $(head -1 "$TMP/devices.txt" | cut -d' ' -f2)" \
        -H "Content-Type: application/json" --data-binary @"$TMP/body.json" \
        "https://127.0.0.1:$DPORT${PREFIX}device-000:publishEvent"
}
n=0
while [ "$(sub_count)" -eq 0 ]; do
    st=$(post_one) || st=error
    [ "$st" = 200 ] || {
        echo "http_bridge.sh: publishEvent answered $st:" >&2; cat "$TMP/one.txt" >&2; echo >&2
        tail -5 "$TMP/latchkeyd.log" >&2; exit 1; }
    kill -0 "$SUB_PID" 2>/dev/null && [ $n -lt 50 ] || {
        echo "http_bridge.sh: the backend sees no event:" >&2; cat "$TMP/sub.err" >&2; exit 1; }
    sleep 0.1
    n=$((n + 1))
done

# cpu_ns PID: the CPU time of all of PID's threads so far, ns
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }

# http_run SECONDS: RATE, N (answers), LKD_US and BROKER_US (CPU per event)
http_run() {
    _c0=$(sub_wait 0 0); _l0=$(cpu_ns "$LKD_PID"); _b0=$(cpu_ns "$ours_PID")
    # shellcheck disable=SC2086
    $PINC wrk $WRK_OPTS -d"${1}s" -s "$LUA" "https://127.0.0.1:$DPORT" -- \
        "$TMP/devices.txt" "$TMP/body.json" "$PREFIX" > "$TMP/wrk.txt" 2>&1 || {
        echo "http_bridge.sh: wrk failed:" >&2; cat "$TMP/wrk.txt" >&2; exit 1; }
    if grep -q "Non-2xx\|non-2xx\|Socket errors" "$TMP/wrk.txt"; then
        echo "http_bridge.sh: publishEvent had non-2xx answers or socket errors:" >&2
        cat "$TMP/wrk.txt" >&2; tail -5 "$TMP/latchkeyd.log" >&2; exit 1
    fi
    RATE=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$TMP/wrk.txt")
    N=$(awk '/ requests in / {print $1}' "$TMP/wrk.txt")
    # the CPU once the backend has had every event: what delivering them cost too
    _c1=$(sub_wait "$_c0" "$N"); _l1=$(cpu_ns "$LKD_PID"); _b1=$(cpu_ns "$ours_PID")
    [ "$((_c1 - _c0))" -ge "$N" ] && [ "$((_c1 - _c0))" -le "$((N + CONNS))" ] || {
        echo "http_bridge.sh: wrk had $N answers, the backend $((_c1 - _c0)) events:" >&2
        tail -5 "$TMP/ours.log" >&2; exit 1; }
    # per event the broker took (wrk's answers and those in flight at its end)
    LKD_US=$(awk -v a="$_l0" -v b="$_l1" -v n="$((_c1 - _c0))" 'BEGIN {printf "%.1f", (b - a) / 1000 / n}')
    BROKER_US=$(awk -v a="$_b0" -v b="$_b1" -v n="$((_c1 - _c0))" 'BEGIN {printf "%.1f", (b - a) / 1000 / n}')
}

# mqtt_run SECONDS: RATE, N (PUBACKs within the time) and BROKER_US
mqtt_run() {
    _c0=$(sub_wait 0 0); _b0=$(cpu_ns "$ours_PID")
    $PINC "$BP" --port "$ours_TLS" --ca "$TMP/ca.crt" --devices "$TMP/devices.txt" \
        --payload "$TMP/payload.bin" --project "$PROJECT" --region "$REGION" --registry "$REGISTRY" \
        --connections "$CONNS" --threads "$THREADS" --seconds "$1" > "$TMP/bp.txt" 2>&1 || {
        echo "http_bridge.sh: bench_publish failed:" >&2; cat "$TMP/bp.txt" >&2; tail -5 "$TMP/ours.log" >&2
        exit 1; }
    set -- $(cat "$TMP/bp.txt")
    RATE=$1 N=$2
    _c1=$(sub_wait "$_c0" "$3"); _b1=$(cpu_ns "$ours_PID")
    [ "$((_c1 - _c0))" -eq "$3" ] || {
        echo "http_bridge.sh: $3 events acknowledged over MQTT, the backend saw $((_c1 - _c0)):" >&2
        tail -5 "$TMP/ours.log" >&2; exit 1; }
    # the broker's CPU over every event it took, connects and all
    BROKER_US=$(awk -v a="$_b0" -v b="$_b1" -v n="$3" 'BEGIN {printf "%.1f", (b - a) / 1000 / n}')
}

# untimed: every device's token verified once, every device in latchkeyd's
# cache, the broker's device cache warm for the MQTT connects
http_run 1
mqtt_run 1
echo "http bridge: $NDEV devices, $PAYLOAD_BYTES-byte events ($(wc -c < "$TMP/body.json")-byte body); wrk $WRK_OPTS -d${SECS}s"
ours=""; base=""; ratios=""; pairs=""; lcpu=""; hbcpu=""; mbcpu=""; cratios=""
for order in hm mh; do
    if [ "$order" = hm ]; then
        http_run "$SECS"; o=$RATE; ol=$LKD_US; ob=$BROKER_US
        mqtt_run "$SECS"; b=$RATE; bb=$BROKER_US
    else
        mqtt_run "$SECS"; b=$RATE; bb=$BROKER_US
        http_run "$SECS"; o=$RATE; ol=$LKD_US; ob=$BROKER_US
    fi
    r=$(awk -v o="$o" -v b="$b" 'BEGIN {printf "%.4f", o / b}')
    cr=$(awk -v l="$ol" -v o="$ob" -v b="$bb" 'BEGIN {printf "%.4f", b / (l + o)}')
    ours="$ours $o"; base="$base $b"; ratios="$ratios $r"; pairs="$pairs $o/$b=$r"
    lcpu="$lcpu $ol"; hbcpu="$hbcpu $ob"; mbcpu="$mbcpu $bb"; cratios="$cratios $cr"
done
echo "http bridge pairs (HTTP / MQTT events per s):$pairs"
echo "http bridge CPU us an event (latchkeyd, broker | MQTT broker):$lcpu /$hbcpu |$mbcpu"

kill -TERM "$LKD_PID"
rc=0
wait "$LKD_PID" || rc=$?
LKD_PID=""
[ "$rc" -eq 0 ] || { echo "http_bridge.sh: latchkeyd exited $rc:" >&2; tail -20 "$TMP/latchkeyd.log" >&2; exit 1; }

mean() { tr ' ' '\n' | awk 'NF {s += $1; n++} END {printf "%.4f", s / n}'; }
emit http_publish_event_per_s "$(echo $ours | mean | awk '{printf "%.0f", $1}')"
emit mqtt_publish_event_per_s "$(echo $base | mean | awk '{printf "%.0f", $1}')"
emit http_publish_vs_mqtt "$(echo $ratios | mean | awk '{printf "%.3f", $1}')"
emit http_publish_lkd_us "$(echo $lcpu | mean | awk '{printf "%.1f", $1}')"
emit http_publish_broker_us "$(echo $hbcpu | mean | awk '{printf "%.1f", $1}')"
emit mqtt_publish_broker_us "$(echo $mbcpu | mean | awk '{printf "%.1f", $1}')"
emit http_publish_vs_mqtt_cpu "$(echo $cratios | mean | awk '{printf "%.3f", $1}')"
