#!/bin/sh
# Push delivery (issue 15; docs/benchmarks.md, "Push delivery"):
#
#     sh bench/push.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE:
#   push_events_per_s          device events pushed by latchkeyd to an HTTPS
#                              endpoint (a push subscription of the registry's
#                              topic): the events the devices had acknowledged
#                              in a run, over the time from the first one's
#                              arrival at the MQTT backend to the endpoint's
#                              receipt of the last (BUILD/bench/push_sink: a C
#                              HTTPS server on libevent/OpenSSL that answers
#                              204 at once and records the time)
#   mqtt_backend_events_per_s  the baseline, measured in the same bench run:
#                              an MQTT backend (mosquitto_sub, QoS 1, on the
#                              routed topic latchkey/P/topics/T/#) over the
#                              time from its first event to its last, while
#                              the topic has no push subscription (what a
#                              backend gets without push)
#   push_vs_mqtt_backend       push_events_per_s / mqtt_backend_events_per_s
#                              (goal >= 0.5)
#   mqtt_backend_spooled_events_per_s, push_keeps_up
#                              the MQTT backend's rate in the runs with the
#                              push subscription, and the mean of the per-run
#                              ratios push / that: whether latchkeyd keeps up
#                              with what the broker takes once it spools
#   push_drain_events_per_s    latchkeyd's own pace: a backlog of one run's
#                              events, queued while latchkeyd is stopped,
#                              over the time from its start to the
#                              endpoint's receipt of the last (32 devices:
#                              at most 32 POSTs at once, one per device)
#   mqtt_ingest_plain_events_per_s, mqtt_ingest_spooled_events_per_s
#                              the devices' own rate (PUBACKs a second, as
#                              bench_publish counts them) without a push
#                              subscription (two runs before it is made) and
#                              with one (the two runs above): what writing
#                              each event to the spool inside the broker's
#                              message event costs the ingest
#   broker_plain_us, broker_spooled_us
#                              the broker's CPU microseconds per event
#                              (/proc/PID/task/*/schedstat, all threads) in
#                              those runs, until the backend has them all
#   push_lkd_us                latchkeyd's CPU microseconds per event pushed
#                              (the runs with the subscription)
#   push_lost_after_kill       events acknowledged to the devices that never
#                              reached the endpoint, in a burst during which
#                              the broker is killed with SIGKILL (and started
#                              again: the devices resend what they had no
#                              PUBACK for) and then latchkeyd too while it
#                              pushes (and started again) (goal 0)
#
# The devices: BUILD/bench/bench_publish, LK_BENCH_PUSH_CONNECTIONS (32)
# devices of registry bench-push on their own MQTT 3.1.1 + TLS connections,
# 2 threads, each event (PAYLOAD_BYTES random bytes, QoS 1) after the
# previous one's PUBACK, for LK_BENCH_PUSH_SECONDS (5); two runs, after an
# untimed second. The registry routes every event (eventNotificationConfigs:
# one config, no subfolder) to topic bench-events; the plugin writes each to
# the spool (plugin_opt_spool) before the PUBACK; latchkeyd (`--spool`, its
# default push_max_in_flight 64, one POST per device at a time) pushes them.
# The broker and latchkeyd are pinned to the last core (PIN), the clients and
# the sink to the first (PINC). The kill run: bench/push_kill.py (paho, 4
# devices, LK_BENCH_PUSH_KILL_EVENTS (3000) events, resending after a lost
# connection); the broker is killed after 600 PUBACKs, latchkeyd once the
# endpoint has a third of them; distinct events are told apart at the
# endpoint by their data.
#
# A plugin without plugin_opt_spool or a latchkeyd without the push worker
# (a build before issue 15): the bench says so and prints no figure.
# Everything is made in a temporary directory, removed at exit.
set -eu
BUILD=${1:?usage: sh bench/push.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/push.sh BUILD OUTFILE}
SECS=${LK_BENCH_PUSH_SECONDS:-5}
CONNS=${LK_BENCH_PUSH_CONNECTIONS:-32}
KILL_N=${LK_BENCH_PUSH_KILL_EVENTS:-3000}
THREADS=2
BP="$BUILD/bench/bench_publish"
SINK="$BUILD/bench/push_sink"
CLIENT=bench/api_client.py
KILLER=bench/push_kill.py
PY=/usr/bin/python3
REGISTRY=bench-push
PAYLOAD_BYTES=1024

. bench/common.sh
bench_need "$LKD" "$TOOL" "$BP" "$SINK" "$PLUGIN" "$MOSQUITTO" "$CLIENT" "$KILLER"
command -v mosquitto_sub >/dev/null 2>&1 || {
    echo "push.sh: mosquitto_sub is missing: sh scripts/install-deps.sh test" >&2; exit 1; }
if ! grep -q spool_max_messages "$PLUGIN" || ! grep -q push_max_in_flight "$LKD"; then
    echo "push.sh: skipped: this build's plugin has no plugin_opt_spool or its latchkeyd no push worker"
    exit 0
fi
TOPIC="projects/$PROJECT/topics/bench-events"

LKD_PID=""
ours_PID=""
SUB_PID=""
SINK_PID=""
KILL_PID=""
bench_tmp push LKD_PID SUB_PID ours_PID SINK_PID KILL_PID
bench_certs

# --- the registry: CONNS devices sharing one key, a backend, the routing ---
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/dev.key" 2>/dev/null
openssl pkey -in "$TMP/dev.key" -pubout -out "$TMP/dev.pem"
bench_fleet "$TMP/registry.db" "$TMP/dev.pem" "$CONNS" 3
"$TOOL" --db "$TMP/registry.db" registries update "$REGISTRY" --project "$PROJECT" --region "$REGION" \
    --event-notification-config "topic=$TOPIC" >/dev/null
$PY - "$TMP/dev.key" "$CONNS" "$PROJECT" > "$TMP/devices.txt" <<'EOF'
import sys, time
import jwt
key = open(sys.argv[1]).read()
now = int(time.time())
for i in range(int(sys.argv[2])):
    print("device-%03d %s" % (i, jwt.encode({"iat": now, "exp": now + 7200, "aud": sys.argv[3]}, key,
                                            algorithm="ES256")))
EOF
head -4 "$TMP/devices.txt" > "$TMP/kill-devices.txt"
openssl rand -out "$TMP/payload.bin" "$PAYLOAD_BYTES"

# --- the broker, the endpoint, latchkeyd, the subscription, the backend ---
start_mosquitto ours plain "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_spool $TMP/spool.db" \
    "plugin_opt_messages_per_second 1000000" \
    "plugin_opt_connect_burst 100000" "plugin_opt_connects_per_minute 60000" \
    "max_inflight_messages 20" "max_queued_messages 1000000"

$PINC "$SINK" --cert "$TMP/server.crt" --key "$TMP/server.key" --port-file "$TMP/sinkport" \
    > "$TMP/sink.log" 2>&1 &
SINK_PID=$!

start_lkd() {
    rm -f "$TMP/port"
    $PIN "$LKD" --registry "$TMP/registry.db" --admin-listen 127.0.0.1:0 --port-file "$TMP/port" \
        --tls-cert "$TMP/server.crt" --tls-key "$TMP/server.key" \
        --spool "$TMP/spool.db" --push-ca "$TMP/ca.crt" >> "$TMP/latchkeyd.log" 2>&1 &
    LKD_PID=$!
    _n=0
    until [ -s "$TMP/port" ]; do
        kill -0 "$LKD_PID" 2>/dev/null && [ $_n -lt 300 ] || {
            echo "push.sh: latchkeyd did not start:" >&2; tail -20 "$TMP/latchkeyd.log" >&2; exit 1; }
        sleep 0.1
        _n=$((_n + 1))
    done
    PORT=$(cat "$TMP/port")
}
start_lkd
n=0
until [ -s "$TMP/sinkport" ]; do
    [ $n -lt 50 ] || { echo "push.sh: the sink did not start:" >&2; cat "$TMP/sink.log" >&2; exit 1; }
    sleep 0.1
    n=$((n + 1))
done
SINKPORT=$(cat "$TMP/sinkport")
"$TOOL" --db "$TMP/registry.db" service-accounts create bench-push --project "$PROJECT" --role editor \
    --token-uri "https://127.0.0.1:$PORT/token" --key-file "$TMP/sa.json" >/dev/null 2>"$TMP/sa.err" || {
    cat "$TMP/sa.err" >&2; exit 1; }
TOKEN=$($PY "$CLIENT" token "$PORT" "$TMP/ca.crt" "$TMP/sa.json")

mkdir "$TMP/subcfg"
printf -- '-u backend:bench-backend\n-P %s\n' "$SECRET" > "$TMP/subcfg/mosquitto_sub"
chmod 600 "$TMP/subcfg/mosquitto_sub"
: > "$TMP/sub.txt"
XDG_CONFIG_HOME="$TMP/subcfg" $PINC mosquitto_sub -V mqttv5 -h 127.0.0.1 -p "$ours_PLAIN" \
    -i bench-backend/sub -q 1 -t "latchkey/$PROJECT/topics/bench-events/#" -F %U \
    > "$TMP/sub.txt" 2> "$TMP/sub.err" &
SUB_PID=$!

sub_count() { wc -l < "$TMP/sub.txt"; }
# sink: REQUESTS UNIQUE FIRST_NS LAST_NS DATA
sink() { curl -sS --cacert "$TMP/ca.crt" "https://127.0.0.1:$SINKPORT/count"; }
sink_field() { sink | awk -v f="$1" '{print $f}'; }
# wait_for CMD MIN SECONDS: until CMD's number is at least MIN (else exit 1)
wait_for() {
    _n=0
    while [ "$($1)" -lt "$2" ]; do
        [ $_n -lt $(($3 * 10)) ] || {
            echo "push.sh: $1 stayed at $($1), below $2, for $3 s:" >&2
            tail -5 "$TMP/latchkeyd.log" "$TMP/ours.log" >&2; exit 1; }
        sleep 0.1
        _n=$((_n + 1))
    done
}
sink_unique() { sink_field 2; }
sink_data() { sink_field 5; }

# cpu_ns PID: the CPU time of all of PID's threads so far, ns
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {printf "%.0f", s}'; }
# per_event A B N: (B - A) ns over N events, in us
per_event() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {printf "%.1f", (b - a) / 1000 / n}'; }

publish() {
    $PINC "$BP" --port "$ours_TLS" --ca "$TMP/ca.crt" --devices "$TMP/devices.txt" \
        --payload "$TMP/payload.bin" --project "$PROJECT" --region "$REGION" --registry "$REGISTRY" \
        --connections "$CONNS" --threads "$THREADS" --seconds "$1" > "$TMP/bp.txt" 2>&1 || {
        echo "push.sh: bench_publish failed:" >&2; cat "$TMP/bp.txt" >&2; tail -5 "$TMP/ours.log" >&2
        exit 1; }
    TOTAL=$(awk '{print $3}' "$TMP/bp.txt")
}

# run SECONDS: PUSH_RATE, MQTT_RATE over the same TOTAL events
run() {
    _b0=$(sub_count); _s0=$(sink_unique); _cb0=$(cpu_ns "$ours_PID"); _cl0=$(cpu_ns "$LKD_PID")
    publish "$1"
    wait_for sub_count $((_b0 + TOTAL)) 30
    _cb1=$(cpu_ns "$ours_PID")
    wait_for sink_unique $((_s0 + TOTAL)) 120
    BROKER_US=$(per_event "$_cb0" "$_cb1" "$TOTAL")
    LKD_US=$(per_event "$_cl0" "$(cpu_ns "$LKD_PID")" "$TOTAL")
    [ "$(sub_count)" -eq $((_b0 + TOTAL)) ] || {
        echo "push.sh: $TOTAL events acknowledged, the backend saw $(($(sub_count) - _b0))" >&2; exit 1; }
    _t0=$(sed -n "$((_b0 + 1))p" "$TMP/sub.txt")
    _tb=$(sed -n "$((_b0 + TOTAL))p" "$TMP/sub.txt")
    _tp=$(sink_field 4)
    MQTT_RATE=$(awk -v n="$TOTAL" -v a="$_t0" -v b="$_tb" 'BEGIN {printf "%.0f", n / (b - a)}')
    PUSH_RATE=$(awk -v n="$TOTAL" -v a="$_t0" -v b="$_tp" 'BEGIN {printf "%.0f", n / (b / 1e9 - a)}')
}

# the ingest without a push subscription (nothing written to the spool), untimed second first
PLAIN_RATES=""
publish 1
PLAIN_US=""
BACKEND_PLAIN=""
for _ in 1 2; do
    _c0=$(sub_count); _b0=$(cpu_ns "$ours_PID")
    publish "$SECS"
    wait_for sub_count $((_c0 + TOTAL)) 30
    PLAIN_US="$PLAIN_US $(per_event "$_b0" "$(cpu_ns "$ours_PID")" "$TOTAL")"
    PLAIN_RATES="$PLAIN_RATES $(awk '{print $1}' "$TMP/bp.txt")"
    _t0=$(sed -n "$((_c0 + 1))p" "$TMP/sub.txt")
    _tb=$(sed -n "$((_c0 + TOTAL))p" "$TMP/sub.txt")
    BACKEND_PLAIN="$BACKEND_PLAIN $(awk -v n="$TOTAL" -v a="$_t0" -v b="$_tb" 'BEGIN {printf "%.0f", n / (b - a)}')"
done
$PY "$CLIENT" subscription "$PORT" "$TMP/ca.crt" "$TOKEN" bench-push "$TOPIC" \
    "https://127.0.0.1:$SINKPORT/push"
sleep 1.5    # the plugin reloads push subscriptions on the change feed

# untimed: the subscription reaches the sink, the caches are warm
run 1
echo "push: $CONNS devices, $PAYLOAD_BYTES-byte events, ${SECS}s runs"
ours=""; base=""; ratios=""; pairs=""
for _ in 1 2; do
    run "$SECS"
    r=$(awk -v o="$PUSH_RATE" -v b="$MQTT_RATE" 'BEGIN {printf "%.4f", o / b}')
    ours="$ours $PUSH_RATE"; base="$base $MQTT_RATE"; ratios="$ratios $r"
    SPOOL_RATES="${SPOOL_RATES:-} $(awk '{print $1}' "$TMP/bp.txt")"
    SPOOL_US="${SPOOL_US:-} $BROKER_US"; LKDS_US="${LKDS_US:-} $LKD_US"
    pairs="$pairs $PUSH_RATE/$MQTT_RATE=$r"
done
echo "push pairs (push / MQTT backend events per s):$pairs"

# --- the drain: a backlog made while latchkeyd is stopped, pushed at its pace ---
kill -TERM "$LKD_PID"
wait "$LKD_PID" || { echo "push.sh: latchkeyd did not exit 0" >&2; tail -20 "$TMP/latchkeyd.log" >&2; exit 1; }
LKD_PID=""
_s0=$(sink_unique)
publish "$SECS"
_t0=$(date +%s.%N)
start_lkd
wait_for sink_unique $((_s0 + TOTAL)) 120
DRAIN_RATE=$(awk -v n="$TOTAL" -v a="$_t0" -v b="$(sink_field 4)" 'BEGIN {printf "%.0f", n / (b / 1e9 - a)}')
echo "push drain: $TOTAL events queued while latchkeyd was stopped, pushed at $DRAIN_RATE per s from its start"

# --- the kill run ---
d0=$(sink_data)
: > "$TMP/progress"
$PINC $PY "$KILLER" "$ours_TLS" "$TMP/ca.crt" "$TMP/kill-devices.txt" "$PROJECT" "$REGION" "$REGISTRY" \
    "$KILL_N" "$PAYLOAD_BYTES" "$TMP/progress" > "$TMP/kill.txt" 2>&1 &
KILL_PID=$!
progress() { cat "$TMP/progress" 2>/dev/null | awk '{print $1 + 0} END {if (NR == 0) print 0}'; }
wait_for progress 600 60
kill -KILL "$ours_PID"
wait "$ours_PID" 2>/dev/null || true
: > "$TMP/ours.log"
$PIN "$MOSQUITTO" -c "$TMP/ours.conf" >> "$TMP/ours.stderr" 2>&1 &
ours_PID=$!
n=0
until grep -q "Opening ipv4 listen socket on port $ours_TLS" "$TMP/ours.log" 2>/dev/null; do
    kill -0 "$ours_PID" 2>/dev/null && [ $n -lt 100 ] || {
        echo "push.sh: the broker did not start again:" >&2; cat "$TMP/ours.stderr" "$TMP/ours.log" >&2; exit 1; }
    sleep 0.1
    n=$((n + 1))
done
sink_new() { echo $(($(sink_data) - d0)); }
wait_for sink_new $((KILL_N / 3)) 60
kill -KILL "$LKD_PID"
wait "$LKD_PID" 2>/dev/null || true
killed_at=$(sink_new)
start_lkd
rc=0
wait "$KILL_PID" || rc=$?
KILL_PID=""
[ "$rc" -eq 0 ] || { echo "push.sh: the kill run's devices failed:" >&2; cat "$TMP/kill.txt" >&2; exit 1; }
acked=$(tail -1 "$TMP/kill.txt")
# until the endpoint has them all, or nothing more arrives for 5 s
last=-1; still=0
while [ "$(sink_new)" -lt "$acked" ] && [ $still -lt 50 ]; do
    now=$(sink_new)
    if [ "$now" -eq "$last" ]; then still=$((still + 1)); else still=0; fi
    last=$now
    sleep 0.1
done
lost=$(( acked - $(sink_new) ))
[ "$lost" -ge 0 ] || lost=0
echo "push kill run: $acked events acknowledged; the endpoint had $killed_at when latchkeyd was killed, $(sink_new) at the end"

kill -TERM "$LKD_PID"
rc=0
wait "$LKD_PID" || rc=$?
LKD_PID=""
[ "$rc" -eq 0 ] || { echo "push.sh: latchkeyd exited $rc:" >&2; tail -20 "$TMP/latchkeyd.log" >&2; exit 1; }

mean() { tr ' ' '\n' | awk 'NF {s += $1; n++} END {printf "%.4f", s / n}'; }
PUSH_MEAN=$(echo $ours | mean | awk '{printf "%.0f", $1}')
BACKEND_MEAN=$(echo $BACKEND_PLAIN | mean | awk '{printf "%.0f", $1}')
emit push_events_per_s "$PUSH_MEAN"
emit mqtt_backend_events_per_s "$BACKEND_MEAN"
emit push_vs_mqtt_backend "$(awk -v o="$PUSH_MEAN" -v b="$BACKEND_MEAN" 'BEGIN {printf "%.3f", o / b}')"
emit mqtt_backend_spooled_events_per_s "$(echo $base | mean | awk '{printf "%.0f", $1}')"
emit push_keeps_up "$(echo $ratios | mean | awk '{printf "%.3f", $1}')"
emit push_drain_events_per_s "$DRAIN_RATE"
emit mqtt_ingest_plain_events_per_s "$(echo $PLAIN_RATES | mean | awk '{printf "%.0f", $1}')"
emit mqtt_ingest_spooled_events_per_s "$(echo $SPOOL_RATES | mean | awk '{printf "%.0f", $1}')"
emit broker_plain_us "$(echo $PLAIN_US | mean | awk '{printf "%.1f", $1}')"
emit broker_spooled_us "$(echo $SPOOL_US | mean | awk '{printf "%.1f", $1}')"
emit push_lkd_us "$(echo $LKDS_US | mean | awk '{printf "%.1f", $1}')"
emit push_lost_after_kill "$lost"
