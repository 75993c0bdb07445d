#!/bin/sh
# Legitimate devices under hostile floods (issue 20; docs/benchmarks.md, "Floods"):
#
#     sh bench/flood.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE. One Mosquitto with
# latchkey's plugin (its defaults, the per-device connect limits included)
# and a TLS listener on a random loopback port, pinned to the last core; a
# registry of LK_BENCH_FLOOD_DEVICES (5,000) devices sharing one key (software
# store). The legitimate side is BUILD/bench/bench_connect: TLS handshake, a
# newly signed token (a signature check in the broker), CONNACK, disconnect,
# LK_BENCH_FLOOD_PARALLEL (4) at a time, each connect another device, for
# LK_BENCH_SECONDS (2) seconds; the rate is connects per second. The hostile
# side is bench/flood.py (Debian's python3), one process of
# LK_BENCH_FLOOD_THREADS (4) threads, one kind of flood at a time (see
# flood.py: tcp_idle tls_garbage malformed oversized bad_signature
# unknown_device takeover). Both clients run on core 0 at the same priority
# (the attacker's and the devices' machine: a 2-core box has no third), the
# broker alone on the other.
# For every kind, LK_BENCH_ROUNDS (3) pairs: the legitimate rate without a
# flood, then under it (the flooder started 0.5 s before), the order kept so
# that each flood is next to its own baseline; per kind the median of the
# per-pair ratios:
#   flood_<kind>_ratio            legit rate under the flood / without it
#   flood_<kind>_attempts_per_s   the flood's connections per second
#   flood_<kind>_broker_us_per_attempt
#                                 the broker's CPU per hostile connection,
#                                 measured with the flood alone for SECS
#   flood_legit_broker_us_per_connect
#                                 the same for a legitimate connect (median
#                                 of the baseline rounds): compare the two
#   flood_<kind>_broker_busy      the broker's core busy during the flooded
#                                 rounds (its CPU per legitimate connect x
#                                 legitimate connects per second; 1.0 = the
#                                 broker is the limit): below 1, what slowed
#                                 the devices was their own (shared) core
#   flood_legit_connects_per_s    the legitimate rate without a flood (median)
#   flood_legit_connect_ratio     the lowest of the per-kind ratios (worst flood)
#   flood_worst                   which kind that was
# And publishing: in each pair, also the events one device publishes (QoS 1,
# 64 bytes, 100 in flight, BUILD/bench/bench_connect publish over TLS)
# counted at a backend subscribed to them, alone and under the same flood
# (another device of pub-000000.. each round, so that no device reconnects
# often; the per-device message limit lifted, as in bench/broker.sh):
#   flood_<kind>_publish_ratio    events per second under the flood / without
#   flood_legit_publishes_per_s   without a flood (median)
#   flood_legit_publish_ratio     the lowest of the per-kind ratios
# Any refused or failed legitimate connect fails the run (bench_connect exits
# 1): a figure is only printed when every legitimate device got in, and every
# event published reached the backend.
# Then, as root with `ip` and `nft` (LK_BENCH_FLOOD_FIREWALL=0 skips it), the
# same again as the service is shipped: in a network namespace of its own,
# with the shipped service/plugin/deploy/latchkey.nft loaded (its figures as
# shipped, the port the broker's), the flooder on source 127.0.0.2 and the
# devices on 127.0.0.1 — one address for 5,000 devices, as behind a NAT
# gateway, so 127.0.0.1 is in the rules' exempt4 set as such a gateway would
# be. The same figures, named flood_firewalled_*:
#   flood_firewalled_<kind>_ratio, ..._attempts_per_s, ..._broker_busy,
#   flood_firewalled_legit_connect_ratio, flood_firewalled_worst
set -eu
BUILD=${1:?usage: sh bench/flood.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/flood.sh BUILD OUTFILE}
ROUNDS=${LK_BENCH_ROUNDS:-3}
SECS=${LK_BENCH_SECONDS:-2}
NDEV=${LK_BENCH_FLOOD_DEVICES:-5000}
PAR=${LK_BENCH_FLOOD_PARALLEL:-4}
THREADS=${LK_BENCH_FLOOD_THREADS:-4}
KINDS=${LK_BENCH_FLOOD_KINDS:-tcp_idle tls_garbage malformed oversized bad_signature unknown_device takeover}
# Inside the namespace (set by this script for its second run): the figures'
# prefix, the flooder's source address.
IN_NETNS=${LK_BENCH_FLOOD_IN_NETNS:-}
if [ -n "$IN_NETNS" ]; then FP=flood_firewalled_; FLOOD_SRC=127.0.0.2; else FP=flood_; FLOOD_SRC=; fi
BC="$BUILD/bench/bench_connect"
PY=/usr/bin/python3
REGISTRY=bench-flood

. bench/common.sh

bench_need "$TOOL" "$BC" "$PLUGIN" "$MOSQUITTO" bench/flood.py

# the idle flood holds hundreds of sockets in the broker
HARD=$(ulimit -Hn)
ulimit -n "$HARD" 2>/dev/null || true

broker_PID=""
FLOOD_PID=""
bench_tmp flood FLOOD_PID broker_PID

"$TOOL" key generate --store "$TMP/keys.lks" --key bench --alg ES256 > "$TMP/pub.pem"
bench_fleet "$TMP/registry.db" "$TMP/pub.pem" "$NDEV" 6
# the device the takeover flood fights over (not one of the legitimate ones)
"$TOOL" --db "$TMP/registry.db" devices create fought --registry "$REGISTRY" --project "$PROJECT" \
    --region "$REGION" --public-key "path=$TMP/pub.pem,type=es256" >/dev/null
FOUGHT="projects/$PROJECT/locations/$REGION/registries/$REGISTRY/devices/fought"
FTOKEN=$("$TOOL" token --key bench --store "$TMP/keys.lks" --aud "$PROJECT" --ttl 3600)
# the bad-signature flood aims at a real device: device-000000's path
VICTIM="projects/$PROJECT/locations/$REGION/registries/$REGISTRY/devices/device-000000"

# the publisher devices (one a round)
NPUB=64
awk -v n="$NPUB" -v pemfile="$TMP/pub.pem" 'BEGIN {
    while ((getline l < pemfile) > 0) k = k l "\\n"
    for (i = 0; i < n; i++)
        printf "{\"id\": \"pub-%06d\", \"credentials\": [{\"publicKey\": {\"format\": \"ES256_PEM\", \"key\": \"%s\"}}]}\n", i, k
}' > "$TMP/pub.jsonl"
"$TOOL" --db "$TMP/registry.db" devices import "$TMP/pub.jsonl" --registry "$REGISTRY" --project "$PROJECT" \
    --region "$REGION" >/dev/null

start_mosquitto broker tls "allow_anonymous false" "plugin $PLUGIN" \
    "plugin_opt_registry $TMP/registry.db" "plugin_opt_messages_per_second 1000000"
PORT=$broker_TLS
if [ -n "$IN_NETNS" ]; then
    # the shipped rules on this port, the devices' address exempt (see above)
    sed "s/^define MQTT_PORTS = .*/define MQTT_PORTS = { $PORT }/" service/plugin/deploy/latchkey.nft > "$TMP/latchkey.nft"
    nft -f "$TMP/latchkey.nft"
    nft add element inet latchkey exempt4 '{ 127.0.0.1 }'
fi
DEV="--store $TMP/keys.lks --key bench --project $PROJECT --region $REGION --registry $REGISTRY --devices $NDEV"

# The plugin refuses logins until its first tick: wait until one device gets in.
n=0
until $PINC "$BC" connect --port "$PORT" --ca "$TMP/ca.crt" $DEV --first "$((NDEV - 1))" \
        --count 1 --seconds 2 >/dev/null 2>&1; do
    n=$((n + 1))
    [ $n -lt 50 ] || { echo "flood.sh: no device could connect:" >&2; tail -20 "$TMP/broker.log" >&2; exit 1; }
    sleep 0.1
done

# Each legitimate round uses devices not used for a while: the per-device
# connect limit (10 at once, then 10 a minute) is the plugin's default here.
# legit: one round, in this shell (FIRST moves on); sets LEGIT, connects per
# second, and LEGIT_US, the broker's CPU microseconds per connect
FIRST=1
legit() {
    r=$($PINC "$BC" connect --port "$PORT" --ca "$TMP/ca.crt" --pid "$broker_PID" $DEV \
        --first "$FIRST" --count 100000 --seconds "$SECS" --parallel "$PAR")
    FIRST=$(( (FIRST + 2000) % (NDEV - 2) + 1 ))
    LEGIT=${r% *}
    LEGIT_US=${r#* }
}

# legit_pub: one publishing round; sets PUB, events per second received
PUBN=0
legit_pub() {
    _id=$(printf "pub-%06d" "$PUBN")
    r=$($PINC "$BC" publish --port "$PORT" --ca "$TMP/ca.crt" --store "$TMP/keys.lks" --key bench \
        --project "$PROJECT" --region "$REGION" --registry "$REGISTRY" --prefix pub- --devices "$NPUB" \
        --first "$PUBN" --count 1000000 --seconds "$SECS" \
        --sub-topic "latchkey/$PROJECT/$REGION/$REGISTRY/$_id/events" \
        --sub-user backend:bench-backend --sub-pass "$SECRET")
    PUBN=$(( (PUBN + 1) % NPUB ))
    PUB=${r% *}
}

flood_start() {
    if [ "$1" = bad_signature ]; then cid=$VICTIM; else cid=$FOUGHT; fi
    FLOOD_SRC=$FLOOD_SRC $PINC "$PY" bench/flood.py "$1" "$PORT" "$TMP/ca.crt" "$THREADS" "$FTOKEN" "$cid" \
        > "$TMP/flood.out" 2> "$TMP/flood.err" &
    FLOOD_PID=$!
    _n=0
    until grep -q "flooding with" "$TMP/flood.err" 2>/dev/null; do
        kill -0 "$FLOOD_PID" 2>/dev/null || { echo "flood.sh: flood.py $1 failed:" >&2; cat "$TMP/flood.err" >&2; exit 1; }
        _n=$((_n + 1)); [ $_n -lt 600 ] || { echo "flood.sh: flood.py $1 did not start" >&2; exit 1; }
        sleep 0.05
    done
    FLOOD_T0=$(date +%s.%N)
    sleep 0.5
}

# flood_stop: stops the flooder (in this shell: it is this shell's child)
# and sets RATE, its connections per second
flood_stop() {
    t1=$(date +%s.%N)
    kill -TERM "$FLOOD_PID" 2>/dev/null || true
    wait "$FLOOD_PID" 2>/dev/null || true
    FLOOD_PID=""
    a=$(cat "$TMP/flood.out" 2>/dev/null || echo 0)
    grep -v "flooding with" "$TMP/flood.err" | tail -3 >&2 || true
    FLOOD_N=${a:-0}
    RATE=$(awk -v a="${a:-0}" -v t0="$FLOOD_T0" -v t1="$t1" 'BEGIN {printf "%.0f", a / (t1 - t0)}')
}

echo "flood.sh: $NDEV devices, legitimate connects $PAR at a time for ${SECS}s, floods of $THREADS threads" >&2
WORST=""; WORST_R=""; BASES=""; LEGIT_BUS=""
PUB_BASES=""; PWORST_R=""
for kind in $KINDS; do
    ratios=""; rates=""; busy=""; pratios=""
    # the flood alone: the broker's CPU per hostile connection (the cost of
    # each kind, whatever the machine's load does to the rates)
    c0=$(awk '{print $1}' "/proc/$broker_PID/schedstat")
    flood_start "$kind"
    sleep "$SECS"
    c1=$(awk '{print $1}' "/proc/$broker_PID/schedstat")
    flood_stop
    emit "${FP}${kind}_broker_us_per_attempt" \
        "$(awk -v a="$c0" -v b="$c1" -v n="$FLOOD_N" 'BEGIN {printf "%.0f", (n > 0 ? (b - a) / n / 1000 : 0)}')"
    i=0
    while [ $i -lt "$ROUNDS" ]; do
        legit; b=$LEGIT
        LEGIT_BUS="$LEGIT_BUS $LEGIT_US"
        legit_pub; pb=$PUB
        flood_start "$kind"
        legit; f=$LEGIT
        legit_pub; pf=$PUB
        flood_stop
        PUB_BASES="$PUB_BASES $pb"
        pratios="$pratios $(awk -v f="$pf" -v b="$pb" 'BEGIN {printf "%.4f", f / b}')"
        rate=$RATE
        BASES="$BASES $b"; rates="$rates $rate"
        # the broker's core busy during the flooded round: CPU per connect x connects per s
        busy="$busy $(awk -v u="$LEGIT_US" -v r="$f" 'BEGIN {printf "%.2f", u * r / 1e6}')"
        ratios="$ratios $(awk -v f="$f" -v b="$b" 'BEGIN {printf "%.4f", f / b}')"
        echo "flood.sh: $kind: legit $b/s alone, $f/s under the flood ($rate attempts/s); events $pb/s alone, $pf/s under it" >&2
        i=$((i + 1))
    done
    kill -0 "$broker_PID" 2>/dev/null || { echo "flood.sh: the broker died under $kind" >&2; exit 1; }
    r=$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')
    emit "${FP}${kind}_ratio" "$r"
    emit "${FP}${kind}_attempts_per_s" "$(echo $rates | tr ' ' '\n' | median)"
    emit "${FP}${kind}_broker_busy" "$(echo $busy | tr ' ' '\n' | median)"
    pr=$(echo $pratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')
    emit "${FP}${kind}_publish_ratio" "$pr"
    if [ -z "$PWORST_R" ] || awk -v a="$pr" -v b="$PWORST_R" 'BEGIN {exit !(a < b)}'; then
        PWORST_R=$pr
    fi
    if [ -z "$WORST_R" ] || awk -v a="$r" -v b="$WORST_R" 'BEGIN {exit !(a < b)}'; then
        WORST=$kind; WORST_R=$r
    fi
done
emit "${FP}legit_connects_per_s" "$(echo $BASES | tr ' ' '\n' | median)"
emit "${FP}legit_broker_us_per_connect" "$(echo $LEGIT_BUS | tr ' ' '\n' | median)"
emit "${FP}legit_connect_ratio" "$WORST_R"
emit "${FP}worst" "$WORST"
emit "${FP}legit_publishes_per_s" "$(echo $PUB_BASES | tr ' ' '\n' | median)"
emit "${FP}legit_publish_ratio" "$PWORST_R"

# --- the same, as shipped: the firewall rules in front (see the top) ---
[ -z "$IN_NETNS" ] || exit 0
if [ "${LK_BENCH_FLOOD_FIREWALL:-1}" = 0 ]; then
    exit 0
elif [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null 2>&1 || ! command -v nft >/dev/null 2>&1; then
    echo "flood.sh: the firewalled run needs root, ip and nft (make deps): skipped" >&2
    exit 0
fi
NS=lkflood-$$
if ! ip netns add "$NS" 2>/dev/null; then
    echo "flood.sh: cannot create a network namespace: the firewalled run skipped" >&2
    exit 0
fi
rc=0
ip netns exec "$NS" ip link set lo up &&
    ip netns exec "$NS" env LK_BENCH_FLOOD_IN_NETNS=1 sh bench/flood.sh "$BUILD" "$OUT" || rc=$?
ip netns del "$NS" 2>/dev/null || true
exit $rc
