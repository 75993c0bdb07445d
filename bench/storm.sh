#!/bin/sh
# The connect storm (issue 20; docs/benchmarks.md, "Connect storm"):
#
#     sh bench/storm.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE. A registry of
# LK_BENCH_STORM_DEVICES (10,000) devices, each with its own ES256 key
# (`latchkey-device simulate --create-keys`, `latchkey devices import`), and
# two Mosquitto processes (LK_MOSQUITTO) with the same TLS listener
# (bench/common.sh's start_mosquitto), both pinned to the last core:
#   ours  latchkey's plugin, allow_anonymous false, plugin_opt_metrics_file
#         and plugin_opt_token_cache_file (when the plugin knows it);
#   base  no plugin, allow_anonymous true (the token is sent as the password
#         and not checked).
# "At once": the whole fleet wants in at the start, and the simulators keep
# LK_BENCH_STORM_PARALLEL (100, Mosquitto 2.0.11's listen backlog) attempts
# in flight between them (`latchkey-device simulate --parallel`, which
# bounds the retries after the restart the same way), each started the
# moment another ends: the broker always has a full queue. More in flight
# measures the simulator instead: one process on one shared core playing
# 10,000 devices that each have a CPU of their own falls behind its own
# handshakes, its devices time out (30 s) and retry, and the storm
# collapses (docs/benchmarks.md). A simulator holds three descriptors per
# device (its socket and libmosquitto's socket pair), so the fleet is split
# over as many simulator processes as the open-file hard limit needs (two
# for 10,000 under 20,000; LK_BENCH_STORM_PER_SIM caps a share), started
# together, all pinned to core 0. Keys are loaded before the clock starts.
#   storm_devices          the fleet
#   storm_seconds          ours: the first simulator's first attempt to the
#                          last device's first CONNACK (polled every 50 ms)
#   storm_anonymous_seconds, storm_seconds_vs_anonymous
#                          the same fleet into base, and ours / base
#   storm_failures         devices that did not connect in the first storm,
#                          or did not come back after the restart, plus
#                          every refused CONNECT (both storms): target 0
#   broker_rss_kb_per_device     ours: (VmRSS with the fleet connected -
#                                VmRSS before) / devices
#   anonymous_rss_kb_per_connection  the same for base
#   broker_rss_vs_anonymous_tls  the two above, ours / base (target <= 1.1)
# The restart storm: with the fleet connected to ours, SIGTERM stops it (it
# saves its verified-token cache to the cache file), the same configuration
# starts again on the same port, and the same simulator processes, still
# running, reconnects every device: each keeps the token it connected with
# (the device client reuses a token until its refresh margin, as the agent
# does) and retries with IoT Core's backoff (1 s plus up to 1 s of jitter
# after the connection is lost, then 2 s, ...).
#   restart_storm_seconds        the restarted broker's listener open to the
#                                last device connected (the plugin's
#                                connections gauge, polled every 50 ms)
#   restart_storm_seconds_vs_first   that / storm_seconds
#   restart_storm_verifications  signature checks during that storm: the
#                                restarted plugin's cache_misses (its metrics
#                                file starts at 0 with it): target 0
#   restart_storm_tokens_signed  tokens the simulator signed after the
#                                restart (0: every device reused its token)
# The side storm (when either count below is not 0): ours is stopped once
# more, its token cache file removed (so that every token is checked again,
# as in the first storm), started again, and the whole fleet storms it a
# third time while, at the same moment, devices arrive through gateways and
# over latchkeyd's HTTP bridge (bench/storm_side.py, Debian's python3 and
# PyJWT; started the moment the first simulator starts its attempts, on
# core 0 with the simulators; 0 skips a part):
#   LK_BENCH_STORM_GATEWAY_DEVICES (1,000) devices bound to gateways, 100
#   to a gateway (gw-00..., ASSOCIATION_ONLY), each gateway one
#   latchkey-device agent that connects into the storm and attaches its
#   devices;
#   LK_BENCH_STORM_HTTP_DEVICES (1,000) devices posting one event each to
#   latchkeyd's device bridge (its own ES256 token as Bearer, a new TLS
#   connection per device, LK_BENCH_STORM_HTTP_PARALLEL (50) at once);
#   latchkeyd (pinned with the broker) publishes them into ours over its own
#   MQTT connection, and answers 200 once the broker has PUBACKed.
# It is a phase of its own so that what the side leaves in the broker is
# not in the memory figures, read after the first storm.
#   storm_with_side_seconds, storm_with_side_seconds_vs_first
#                          that storm's time (as storm_seconds), and / the
#                          first's; its devices not connected and its
#                          refused CONNECTs are in storm_failures too
#   storm_gateway_devices_attached, storm_http_devices_published
#                          of storm_gateway_devices, storm_http_devices
#   storm_gateway_seconds, storm_http_seconds
#                          the side's start to its last attach / 200
#   storm_side_failures    attaches the broker refused or that never came,
#                          plus posts not answered 200: target 0
# The figures are noisy on a shared machine: compare the ratios.
set -eu
BUILD=${1:?usage: sh bench/storm.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/storm.sh BUILD OUTFILE}
NDEV=${LK_BENCH_STORM_DEVICES:-10000}
PAR=${LK_BENCH_STORM_PARALLEL:-100}
SETTLE=${LK_BENCH_STORM_SETTLE:-22}     # seconds after the last CONNACK before RSS is read: two of the
                                         # plugin's activity flushes (10 s); the second gives the burst's table back
STORM_MAX=${LK_BENCH_STORM_MAX:-300}     # give up on a storm after that many seconds
REGISTRY=bench-storm
GWDEV=${LK_BENCH_STORM_GATEWAY_DEVICES:-1000}
HTTPDEV=${LK_BENCH_STORM_HTTP_DEVICES:-1000}
HTTPPAR=${LK_BENCH_STORM_HTTP_PARALLEL:-50}
NGW=$(( (GWDEV + 99) / 100 ))
PY=/usr/bin/python3

. bench/common.sh

MSHM="$BUILD/bench/mshm_read"
bench_need "$TOOL" "$DEVTOOL" "$PLUGIN" "$MOSQUITTO" "$MSHM"
[ "$HTTPDEV" -eq 0 ] || bench_need "$LKD"
if [ $((GWDEV + HTTPDEV)) -gt 0 ] && ! $PY -c 'import jwt' 2>/dev/null; then
    echo "storm.sh: $PY has no PyJWT (make deps)" >&2
    exit 1
fi

# The open-file limits, as high as allowed (inherited by the brokers and the
# simulators): the broker holds one socket per device, a simulator three
# (libmosquitto's socket pair beside each connection), so the fleet is split
# over as many simulator processes as the hard limit needs, all started
# together, each with its own id prefix and key store.
HARD=$(ulimit -Hn)
ulimit -n "$HARD" 2>/dev/null || true
if [ "$HARD" = unlimited ]; then
    PER=$NDEV
else
    PER=$(( (HARD - 64) / 3 ))
    [ "$HARD" -ge $((NDEV + 64)) ] ||
        echo "storm.sh: the open-file hard limit ($HARD) is below $((NDEV + 64)): devices will fail" >&2
fi
[ -z "${LK_BENCH_STORM_PER_SIM:-}" ] || [ "$LK_BENCH_STORM_PER_SIM" -ge "$PER" ] || PER=$LK_BENCH_STORM_PER_SIM
NSIM=$(( (NDEV + PER - 1) / PER ))
SIMPAR=$(( PAR / NSIM > 0 ? PAR / NSIM : 1 ))
# simn I: the devices of simulator I (1..NSIM)
simn() { echo $(( NDEV / NSIM + ($1 <= NDEV % NSIM ? 1 : 0) )); }

ours_PID=""
base_PID=""
SIM_PIDS=""
LKD_PID=""
SIDE_PID=""
bench_tmp storm SIM_PIDS ours_PID base_PID LKD_PID SIDE_PID

# --- the fleet's keys and the registry ---
"$TOOL" --db "$TMP/registry.db" registries create "$REGISTRY" --project "$PROJECT" \
    --region "$REGION" >/dev/null 2>&1
i=1
while [ $i -le "$NSIM" ]; do
    "$DEVTOOL" simulate --devices "$(simn $i)" --prefix "s$i-" --store "$TMP/fleet$i.lks" \
        --create-keys "$TMP/fleet$i.jsonl" 2>/dev/null
    "$TOOL" --db "$TMP/registry.db" devices import "$TMP/fleet$i.jsonl" --registry "$REGISTRY" \
        --project "$PROJECT" --region "$REGION" >/dev/null
    i=$((i + 1))
done

# The side's devices (bench/storm_side.py), one import with the bindings:
# the gateways and their devices share a key in the store side.lks, the HTTP
# devices one of openssl's (PyJWT signs their tokens).
if [ $((GWDEV + HTTPDEV)) -gt 0 ]; then
    "$TOOL" key generate --store "$TMP/side.lks" --key bench --alg ES256 > "$TMP/side-gw.pem"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/side-http.key" 2>/dev/null
    openssl pkey -in "$TMP/side-http.key" -pubout -out "$TMP/side-http.pem"
    awk -v ngw="$NGW" -v ngwdev="$GWDEV" -v nhttp="$HTTPDEV" -v gwpem="$TMP/side-gw.pem" \
        -v httppem="$TMP/side-http.pem" -v pairs="$TMP/side-pairs.jsonl" 'BEGIN {
        while ((getline l < gwpem) > 0) g = g l "\\n"
        while ((getline l < httppem) > 0) h = h l "\\n"
        c = "\"credentials\": [{\"publicKey\": {\"format\": \"ES256_PEM\", \"key\": \"%s\"}}]"
        if (ngwdev > 0)
            for (i = 0; i < ngw; i++)
                printf "{\"id\": \"gw-%02d\", " c ", \"gatewayConfig\": {\"gatewayType\": \"GATEWAY\", " \
                    "\"gatewayAuthMethod\": \"ASSOCIATION_ONLY\"}}\n", i, g
        for (i = 0; i < ngwdev; i++) {
            printf "{\"id\": \"ga-%05d\", " c "}\n", i, g
            printf "{\"gatewayId\": \"gw-%02d\", \"deviceId\": \"ga-%05d\"}\n", i % ngw, i > pairs
        }
        for (i = 0; i < nhttp; i++)
            printf "{\"id\": \"h-%05d\", " c "}\n", i, h
    }' > "$TMP/side.jsonl"
    BIND=""
    [ "$GWDEV" -eq 0 ] || BIND="--bindings $TMP/side-pairs.jsonl"
    # shellcheck disable=SC2086
    "$TOOL" --db "$TMP/registry.db" devices import "$TMP/side.jsonl" $BIND \
        --registry "$REGISTRY" --project "$PROJECT" --region "$REGION" >/dev/null
fi

# The token cache file (plugin_opt_token_cache_file) where the plugin has it;
# an older plugin refuses the option, and the restart storm then verifies
# every token again.
CACHE_LINE=""
if grep -aq token_cache_file "$PLUGIN"; then
    CACHE_LINE="plugin_opt_token_cache_file $TMP/token-cache"
else
    echo "storm.sh: this plugin has no plugin_opt_token_cache_file: the restart storm checks every signature again" >&2
fi

# --- the brokers: the same TLS listener ---
# LK_BENCH_STORM_TOKEN_CACHE: plugin_opt_token_cache (entries), the plugin's
# default (65,536) when unset.
SIZE_LINE=""
[ -z "${LK_BENCH_STORM_TOKEN_CACHE:-}" ] || SIZE_LINE="plugin_opt_token_cache $LK_BENCH_STORM_TOKEN_CACHE"
start_mosquitto ours tls "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_metrics_file $TMP/metrics" "$CACHE_LINE" \
    "$SIZE_LINE"
start_mosquitto base tls "allow_anonymous true"

rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
# The plugin's counters; -1 each when the file cannot be read, so that no figure
# built on them reads as a success (0 checks, 0 failures) by accident.
mshm() {
    "$MSHM" "$TMP/metrics" 2>/dev/null ||
        { echo "storm.sh: the plugin's metrics file could not be read" >&2; echo "-1 -1 -1 -1 -1"; }
}
sim_args() { # I PORT: simulator I's options for the broker on PORT
    echo "--store $TMP/fleet$1.lks --prefix s$1- --host 127.0.0.1 --port $2 --ca $TMP/ca.crt" \
        "--project $PROJECT --region $REGION --registry $REGISTRY"
}

# first_login WHO: one device into broker WHO (ours or base), retried for
# 5 s: the plugin refuses logins until its first tick.
first_login() {
    eval "_port=\$${1}_TLS"
    _n=0
    until $PINC "$DEVTOOL" simulate $(sim_args 1 "$_port") --devices 1 >/dev/null 2>&1; do
        _n=$((_n + 1))
        [ $_n -lt 10 ] || { echo "storm.sh: no device could connect to $1:" >&2; tail -20 "$TMP/$1.log" >&2; exit 1; }
        sleep 0.5
    done
}

# One device into each broker first: the RSS before the storm is that of a
# broker that has served.
first_login ours
first_login base

# lkd_start: latchkeyd with the device bridge into ours (for the HTTP
# devices), pinned with the broker, connected before the side storm.
DPORT=0
lkd_start() {
    [ "$HTTPDEV" -gt 0 ] || return 0
    start_latchkeyd "$ours_TLS"
}

# side_start / side_end: bench/storm_side.py beside the side storm (it
# waits for the simulators' first attempts), its figures in $TMP/side.txt;
# then the gateways (the driver stops them) and latchkeyd are gone
side_start() {
    [ $((GWDEV + HTTPDEV)) -gt 0 ] || return 0
    (
        export DEVTOOL PROJECT REGION REGISTRY TMP NGW PINC DPORT
        export PORT="$ours_TLS" CA="$TMP/ca.crt" STORE="$TMP/side.lks" KEY=bench GW_DEVICES="$GWDEV" \
            HTTP_DEVICES="$HTTPDEV" HTTP_PARALLEL="$HTTPPAR" MAX="$STORM_MAX" \
            HTTP_KEY="$TMP/side-http.key" START="$TMP/sidestorm-*.err"
        exec $PINC $PY bench/storm_side.py > "$TMP/side.txt" 2> "$TMP/side.err"
    ) &
    SIDE_PID=$!
}
side_end() {
    [ -n "$SIDE_PID" ] || return 0
    wait "$SIDE_PID" || echo "storm.sh: bench/storm_side.py failed" >&2
    SIDE_PID=""
    cat "$TMP/side.err" >&2
    if [ -n "$LKD_PID" ]; then
        kill -TERM "$LKD_PID" 2>/dev/null || true
        wait "$LKD_PID" 2>/dev/null || true
        LKD_PID=""
    fi
}

# storm NAME PORT: the whole fleet at once into the broker on PORT: every
# simulator started together in the background (SIM_PIDS), each with its
# share of PAR, summaries in $TMP/NAME-I.json. Returns once
# every device has connected (or a simulator ended, or STORM_MAX passed),
# with STORM_S: from the first simulator's first connection attempt (its
# keys loaded) to the last "all connected" (polled every 50 ms).
storm() {
    SIM_PIDS=""
    _i=1
    while [ $_i -le "$NSIM" ]; do
        _n=$(simn $_i)
        $PINC "$DEVTOOL" simulate $(sim_args $_i "$2") --devices "$_n" --parallel "$SIMPAR" \
            --duration 86400 --format json > "$TMP/$1-$_i.json" 2> "$TMP/$1-$_i.err" &
        SIM_PIDS="$SIM_PIDS $!"
        _i=$((_i + 1))
    done
    _t=0 _t0="" _t0last=""
    while :; do
        _now=$(now)
        _started=$(grep -l "connection attempts at once" "$TMP/$1"-*.err 2>/dev/null | wc -l)
        [ -n "$_t0" ] || [ "$_started" -eq 0 ] || _t0=$_now
        [ -n "$_t0last" ] || [ "$_started" -lt "$NSIM" ] || _t0last=$_now
        _done=$(grep -l "devices connected in" "$TMP/$1"-*.err 2>/dev/null | wc -l)
        [ "$_done" -lt "$NSIM" ] || break
        for _p in $SIM_PIDS; do kill -0 "$_p" 2>/dev/null || break 2; done
        [ $_t -lt $((STORM_MAX * 20)) ] || break
        sleep 0.05
        _t=$((_t + 1))
    done
    if [ "$_done" -ge "$NSIM" ]; then
        STORM_S=$(awk -v a="$_t0" -v b="$_now" 'BEGIN {printf "%.3f", b - a}')
    else
        STORM_S=null
    fi
    echo "$1: $NSIM simulators, the last started $(awk -v a="$_t0" -v b="${_t0last:-$_t0}" 'BEGIN {printf "%.2f", b - a}') s after the first; storm $STORM_S s" >&2
}
# stop_sims NAME: SIGTERM to the simulators, their summaries kept
stop_sims() {
    for _p in $SIM_PIDS; do kill -TERM "$_p" 2>/dev/null || true; done
    for _p in $SIM_PIDS; do
        _rc=0
        wait "$_p" || _rc=$?
        [ $_rc -eq 0 ] || echo "storm.sh: a simulator ($1) exited with $_rc" >&2
    done
    SIM_PIDS=""
    grep -hv "^latchkey-device: simulate: [0-9]* s: " "$TMP/$1"-*.err >&2 || true
}
# total NAME FIELD: FIELD summed over the simulators' JSON summaries
total() {
    cat "$TMP/$1"-*.json | sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" | awk '{s += $1} END {print s + 0}'
}

# --- the first storm, into ours ---
R0=$(rss "$ours_PID")
storm ours "$ours_TLS"
OURS_S=$STORM_S
sleep "$SETTLE"
R1=$(rss "$ours_PID")
set -- $(mshm)
FIRST_CONNECTED=$3
FIRST_REFUSALS=$5
echo "ours after the first storm: cache hits $1, misses $2, connections $3, connects $4, refusals $5" >&2

# restart_ours [fresh]: SIGTERM to ours, the same configuration again on the
# same port (fresh: without the token cache file it saved), until it
# listens; T_TERM, T_DOWN, T_UP
restart_ours() {
    T_TERM=$(now)
    kill -TERM "$ours_PID"
    wait "$ours_PID" 2>/dev/null || true
    T_DOWN=$(now)
    [ "${1:-}" != fresh ] || rm -f "$TMP/token-cache"
    : > "$TMP/ours.log"
    $PIN "$MOSQUITTO" -c "$TMP/ours.conf" >> "$TMP/ours.stderr" 2>&1 &
    ours_PID=$!
    n=0
    until grep -q "Opening ipv4 listen socket on port $ours_TLS" "$TMP/ours.log" 2>/dev/null; do
        n=$((n + 1))
        if [ $n -gt 3000 ] || ! kill -0 "$ours_PID" 2>/dev/null; then
            echo "storm.sh: the broker did not start again on port $ours_TLS:" >&2
            cat "$TMP/ours.stderr" "$TMP/ours.log" >&2
            exit 1
        fi
        sleep 0.01
    done
    T_UP=$(now)
}

# --- the restart storm: SIGTERM, the same configuration again, same port ---
restart_ours
echo "restart: SIGTERM to exit $(awk -v a="$T_TERM" -v b="$T_DOWN" 'BEGIN {printf "%.3f", b - a}') s, exit to listening $(awk -v a="$T_DOWN" -v b="$T_UP" 'BEGIN {printf "%.3f", b - a}') s" >&2
n=0
while :; do
    set -- $(mshm)
    [ "$3" -lt "$NDEV" ] || break
    n=$((n + 1))
    [ $n -lt $((STORM_MAX * 20)) ] || break
    [ $((n % 20)) -ne 0 ] ||
        echo "restart storm: $(awk -v a="$T_UP" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}') s: $3 connected, $2 signature checks" >&2
    sleep 0.05
done
T_ALL=$(now)
RESTART_S=$(awk -v a="$T_UP" -v b="$T_ALL" 'BEGIN {printf "%.3f", b - a}')
RESTART_CONNECTED=$3
RESTART_MISSES=$2
[ "$RESTART_MISSES" -ge 0 ] || RESTART_MISSES=unknown
RESTART_REFUSALS=$5
echo "ours after the restart storm: cache hits $1, misses $2, connections $3, connects $4, refusals $5" >&2
stop_sims ours

# --- the side storm: ours once more with its token cache emptied (a first
# storm again), the fleet, the gateways and the HTTP devices at once ---
SIDE_S=null
SIDE_FAILURES=0
if [ $((GWDEV + HTTPDEV)) -gt 0 ]; then
    restart_ours fresh
    first_login ours
    lkd_start
    side_start
    storm sidestorm "$ours_TLS"
    SIDE_S=$STORM_S
    side_end
    sleep 2     # the gateways' and latchkeyd's disconnects
    set -- $(mshm)
    echo "ours after the side storm: cache hits $1, misses $2, connections $3, connects $4, refusals $5" >&2
    SIDE_FAILURES=$(( (NDEV - $3) + $5 ))
    stop_sims sidestorm
fi

# --- the baseline storm, into base ---
B0=$(rss "$base_PID")
storm base "$base_TLS"
BASE_S=$STORM_S
sleep "$SETTLE"
B1=$(rss "$base_PID")
stop_sims base

# --- the figures ---
echo "ours: $(cat "$TMP"/ours-*.json)" >&2
echo "base: $(cat "$TMP"/base-*.json)" >&2
echo "broker RSS (kB): ours $R0 -> $R1, base $B0 -> $B1" >&2
TOKENS=$(total ours tokens)
# refusals: the plugin's count (every reason, with or without a CONNACK) in
# both of its lives; connected: its gauge of device connections
FAILURES=$(( (NDEV - FIRST_CONNECTED) + (NDEV - RESTART_CONNECTED) + FIRST_REFUSALS + RESTART_REFUSALS
              + SIDE_FAILURES ))

emit storm_devices "$NDEV"
emit storm_seconds "$( [ "$OURS_S" != null ] && echo "$OURS_S" || echo never)"
emit storm_anonymous_seconds "$( [ "$BASE_S" != null ] && echo "$BASE_S" || echo never)"
if [ "$OURS_S" != null ] && [ "$BASE_S" != null ]; then
    emit storm_seconds_vs_anonymous "$(awk -v o="$OURS_S" -v b="$BASE_S" 'BEGIN {printf "%.3f", o / b}')"
fi
emit storm_failures "$FAILURES"
KB_OURS=$(awk -v a="$R0" -v b="$R1" -v n="$NDEV" 'BEGIN {printf "%.2f", (b - a) / n}')
KB_BASE=$(awk -v a="$B0" -v b="$B1" -v n="$NDEV" 'BEGIN {printf "%.2f", (b - a) / n}')
emit broker_rss_kb_per_device "$KB_OURS"
emit anonymous_rss_kb_per_connection "$KB_BASE"
emit broker_rss_vs_anonymous_tls "$(awk -v o="$KB_OURS" -v b="$KB_BASE" 'BEGIN {printf "%.3f", (b > 0 ? o / b : 0)}')"
if [ "${RESTART_CONNECTED:-0}" -ge "$NDEV" ]; then
    emit restart_storm_seconds "$RESTART_S"
    [ "$OURS_S" = null ] ||
        emit restart_storm_seconds_vs_first "$(awk -v r="$RESTART_S" -v o="$OURS_S" 'BEGIN {printf "%.3f", r / o}')"
else
    emit restart_storm_seconds never
fi
emit restart_storm_verifications "$RESTART_MISSES"
emit restart_storm_tokens_signed "$(( ${TOKENS:-0} - NDEV ))"
if [ $((GWDEV + HTTPDEV)) -gt 0 ]; then
    emit storm_with_side_seconds "$( [ "$SIDE_S" != null ] && echo "$SIDE_S" || echo never)"
    [ "$SIDE_S" = null ] || [ "$OURS_S" = null ] ||
        emit storm_with_side_seconds_vs_first "$(awk -v s="$SIDE_S" -v o="$OURS_S" 'BEGIN {printf "%.3f", s / o}')"
fi
if [ -s "$TMP/side.txt" ]; then
    while IFS= read -r line; do
        emit "${line%%: *}" "${line#*: }"
    done < "$TMP/side.txt"
elif [ $((GWDEV + HTTPDEV)) -gt 0 ]; then
    emit storm_side_failures "$((GWDEV + HTTPDEV))"
fi
