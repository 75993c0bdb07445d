#!/bin/sh
# The broker's figures (issue 5; docs/benchmarks.md, "Broker"):
#
#     sh bench/broker.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE. Two Mosquitto
# processes (the system's /usr/sbin/mosquitto, LK_MOSQUITTO) run side by side
# on random loopback ports, with the same configuration (docs/plugin.md's,
# plus a plain-TCP listener) except that:
#   ours      has latchkey's plugin (BUILD/lib/latchkey_plugin.so) and
#             allow_anonymous false;
#   baseline  has no plugin and allow_anonymous true.
# Both brokers are pinned to the same core (the last), the client
# (BUILD/bench/bench_connect) to another; measurements alternate ours and the
# baseline (the order flipped every pair), LK_BENCH_ROUNDS pairs, and the
# medians of the rates and of the per-pair ratios are reported:
#   connect_jwt_cold_per_s, connect_jwt_cold_vs_anonymous
#       plain TCP, the first connect of each of NDEV devices (credential
#       loaded from the registry and parsed), one pass
#   connect_jwt_per_s, connect_anonymous_per_s, connect_jwt_vs_anonymous
#       plain TCP, every connect a device (device cache warm) with its own
#       newly signed token (verified-token cache misses)
#   connect_jwt_cached_per_s, connect_jwt_cached_vs_anonymous
#       the same token reconnecting (verified-token cache hits)
#   connect_tls_jwt_per_s, connect_tls_anonymous_per_s,
#   connect_tls_jwt_vs_tls_anonymous
#       TLS (1.3, P-256 server certificate) both, fresh tokens
#   publish_jwt_per_s, publish_anonymous_per_s, publish_jwt_vs_anonymous
#       QoS 1 events from one device, counted at a subscriber (a backend on
#       latchkey/P/L/R/D/events; the same topic on the baseline)
#   *_broker_us   the broker's CPU microseconds per connect or message
#                 (/proc/PID/schedstat), medians: where the rate ratios come from
# Everything (CA, certificates, key store, registry) is made in a temporary
# directory and removed at exit, both brokers stopped.
set -eu
BUILD=${1:?usage: sh bench/broker.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/broker.sh BUILD OUTFILE}
ROUNDS=${LK_BENCH_ROUNDS:-5}
SECS=${LK_BENCH_SECONDS:-1}
NDEV=${LK_BENCH_BROKER_DEVICES:-2000}
NCONN=${LK_BENCH_CONNECTS:-2000}       # connects per round (bounded by time too)
NMSG=${LK_BENCH_MESSAGES:-20000}       # messages per round (bounded by time too)
PAR=${LK_BENCH_CONNECT_PARALLEL:-4}    # clients in flight at once
MOSQUITTO=${LK_MOSQUITTO:-/usr/sbin/mosquitto}
TOOL="$BUILD/bin/latchkey"
PLUGIN=$(cd "$BUILD/lib" 2>/dev/null && pwd)/latchkey_plugin.so
BC="$BUILD/bench/bench_connect"
PROJECT=bench-project
REGION=us-central1
REGISTRY=bench-registry

NCPU=$(nproc)
BCPU=$((NCPU - 1))
CCPU=0
PINB="taskset -c $BCPU"
PINC="taskset -c $CCPU"
[ "$NCPU" -ge 2 ] || PINC=$PINB
command -v taskset >/dev/null 2>&1 || { PINB=""; PINC=""; }

. bench/common.sh

for f in "$TOOL" "$BC" "$PLUGIN" "$MOSQUITTO"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "broker.sh: $f is missing: build first" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lkbench-broker.XXXXXX")
OURS_PID=""
BASE_PID=""
cleanup() {
    for p in $OURS_PID $BASE_PID; do
        kill "$p" 2>/dev/null || true
    done
    for p in $OURS_PID $BASE_PID; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- TLS: a test CA and a server certificate for 127.0.0.1 (P-256) ---
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=latchkey bench CA" -keyout "$TMP/ca.key" -out "$TMP/ca.crt" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$TMP/server.key" -out "$TMP/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$TMP/ext"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" \
    -CAcreateserial -days 2 -extfile "$TMP/ext" -out "$TMP/server.crt" 2>/dev/null
chmod 600 "$TMP/server.key" "$TMP/ca.key"

# --- the registry: NDEV devices sharing one key (software store) ---
"$TOOL" key generate --store "$TMP/keys.lks" --key bench --alg ES256 > "$TMP/pub.pem"
"$TOOL" --db "$TMP/registry.db" registries create "$REGISTRY" --project "$PROJECT" \
    --region "$REGION" >/dev/null
awk -v n="$NDEV" -v pemfile="$TMP/pub.pem" 'BEGIN {
    while ((getline l < pemfile) > 0) k = k l "\\n"
    for (i = 0; i < n; i++)
        printf "{\"id\": \"device-%06d\", \"credentials\": [{\"publicKey\": " \
               "{\"format\": \"ES256_PEM\", \"key\": \"%s\"}}]}\n", i, k
}' > "$TMP/devices.jsonl"
"$TOOL" --db "$TMP/registry.db" devices import "$TMP/devices.jsonl" --registry "$REGISTRY" \
    --project "$PROJECT" --region "$REGION" >/dev/null
SECRET=$("$TOOL" --db "$TMP/registry.db" backends create bench-backend --project "$PROJECT" |
    awk -F': *' 'tolower($1) ~ /secret/ {print $2}')
[ -n "$SECRET" ] || { echo "broker.sh: no backend secret" >&2; exit 1; }

# --- the two brokers ---
# An even port (the TLS listener; the plain one is the next) below the
# ephemeral range: the connect loops leave thousands of TIME_WAIT sockets on
# ephemeral ports, on which mosquitto's bind() then fails.
EPH_LOW=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPH_LOW" -gt 12000 ] || EPH_LOW=32768
rand_port() { echo $(( 10000 + ($(od -An -N2 -tu2 /dev/urandom) % ((EPH_LOW - 10002) / 2)) * 2 )); }

write_conf() { # NAME TLS_PORT PLAIN_PORT
    {
        echo "per_listener_settings false"
        echo "max_keepalive 800"
        echo "message_size_limit 262144"
        echo "set_tcp_nodelay true"
        echo "persistence false"
        echo "user $(id -un)"
        echo "log_dest file $TMP/$1.log"
        echo "log_type error"
        echo "log_type warning"
        echo "log_type notice"
        echo "log_type information"
        echo ""
        echo "listener $2 127.0.0.1"
        echo "certfile $TMP/server.crt"
        echo "keyfile $TMP/server.key"
        echo "tls_version tlsv1.2"
        echo "max_qos 1"
        echo ""
        echo "listener $3 127.0.0.1"
        echo "max_qos 1"
        echo ""
        if [ "$1" = ours ]; then
            echo "allow_anonymous false"
            echo "plugin $PLUGIN"
            echo "plugin_opt_registry $TMP/registry.db"
            # one device publishes the whole event stream: lift the per-connection rate limit
            echo "plugin_opt_messages_per_second 1000000"
        else
            echo "allow_anonymous true"
        fi
    } > "$TMP/$1.conf"
}

# start NAME: sets NAME_PID, NAME_TLS, NAME_PLAIN; retries on a taken port
start_broker() {
    try=0
    while [ $try -lt 10 ]; do
        try=$((try + 1))
        tp=$(rand_port)
        pp=$((tp + 1))
        [ "$tp" != "${ours_TLS:-}" ] || continue
        write_conf "$1" "$tp" "$pp"
        : > "$TMP/$1.log"
        $PINB "$MOSQUITTO" -c "$TMP/$1.conf" > "$TMP/$1.stderr" 2>&1 &
        pid=$!
        n=0
        while [ $n -lt 50 ]; do
            if ! kill -0 "$pid" 2>/dev/null; then break; fi
            if grep -q "Error" "$TMP/$1.log" 2>/dev/null; then break; fi
            if grep -q "Opening ipv4 listen socket on port $pp" "$TMP/$1.log" 2>/dev/null &&
               grep -q "Opening ipv4 listen socket on port $tp" "$TMP/$1.log" 2>/dev/null; then
                eval "${1}_PID=$pid ${1}_TLS=$tp ${1}_PLAIN=$pp"
                return 0
            fi
            sleep 0.1
            n=$((n + 1))
        done
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    echo "broker.sh: mosquitto ($1) did not start:" >&2
    cat "$TMP/$1.stderr" "$TMP/$1.log" >&2 2>/dev/null || true
    exit 1
}
ours_PID=""; base_PID=""; ours_TLS=""
start_broker ours
OURS_PID=$ours_PID
start_broker base
BASE_PID=$base_PID
OURS_TLS=$ours_TLS; OURS_PLAIN=$ours_PLAIN; BASE_TLS=$base_TLS; BASE_PLAIN=$base_PLAIN

DEV="--store $TMP/keys.lks --key bench --project $PROJECT --region $REGION --registry $REGISTRY --devices $NDEV"
SUB_TOPIC="latchkey/$PROJECT/$REGION/$REGISTRY/device-000000/events"

# The plugin refuses logins until its first tick: wait for a device to connect.
n=0
until $PINC "$BC" connect --port "$OURS_PLAIN" $DEV --count 1 --seconds 2 >/dev/null 2>&1; do
    n=$((n + 1))
    [ $n -lt 50 ] || { echo "broker.sh: no device could connect:" >&2; tail -20 "$TMP/ours.log" >&2; exit 1; }
    sleep 0.1
done

# run KIND WHO FIRST: one measurement, prints "RATE BROKER_US"; fresh tokens
# go to devices FIRST, FIRST+1, ... (not those of the previous rounds where
# NDEV allows)
run() {
    case $2 in
        ours) port_plain=$OURS_PLAIN; port_tls=$OURS_TLS; pid=$OURS_PID ;;
        base) port_plain=$BASE_PLAIN; port_tls=$BASE_TLS; pid=$BASE_PID ;;
    esac
    FIRST=$3
    case $1 in
        connect)
            $PINC "$BC" connect --port "$port_plain" --pid "$pid" $DEV --first "$FIRST" \
                --count "$NCONN" --seconds "$SECS" --parallel "$PAR" ;;
        cached)
            $PINC "$BC" connect --port "$port_plain" --pid "$pid" $DEV --tokens cached \
                --count "$NCONN" --seconds "$SECS" --parallel "$PAR" ;;
        tls)
            $PINC "$BC" connect --port "$port_tls" --ca "$TMP/ca.crt" --pid "$pid" $DEV \
                --first "$FIRST" --count "$NCONN" --seconds "$SECS" --parallel "$PAR" ;;
        publish)
            if [ "$2" = ours ]; then
                $PINC "$BC" publish --port "$port_plain" --pid "$pid" $DEV --count "$NMSG" \
                    --seconds "$SECS" --sub-topic "$SUB_TOPIC" \
                    --sub-user backend:bench-backend --sub-pass "$SECRET"
            else
                $PINC "$BC" publish --port "$port_plain" --pid "$pid" $DEV --count "$NMSG" \
                    --seconds "$SECS"
            fi ;;
    esac
}

# pairs KIND NAME_OURS NAME_BASE RATIO_NAME
pairs() {
    ours=""; base=""; ratios=""; ocpu=""; bcpu=""
    i=0
    while [ $i -lt "$ROUNDS" ]; do
        f1=$(( (2 * i * NCONN) % NDEV )); f2=$(( ((2 * i + 1) * NCONN) % NDEV ))
        if [ $((i % 2)) -eq 0 ]; then
            o=$(run "$1" ours "$f1"); b=$(run "$1" base "$f2")
        else
            b=$(run "$1" base "$f1"); o=$(run "$1" ours "$f2")
        fi
        or=${o% *}; br=${b% *}
        ours="$ours $or"; base="$base $br"
        ocpu="$ocpu ${o#* }"; bcpu="$bcpu ${b#* }"
        ratios="$ratios $(awk -v o="$or" -v b="$br" 'BEGIN {printf "%.4f", o / b}')"
        i=$((i + 1))
    done
    echo "$4 pairs (ours/baseline):$ratios" >&2
    emit "$2" "$(echo $ours | tr ' ' '\n' | median)"
    [ -z "$3" ] || emit "$3" "$(echo $base | tr ' ' '\n' | median)"
    emit "$4" "$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"
    emit "${2%_per_s}_broker_us" "$(echo $ocpu | tr ' ' '\n' | median)"
    [ -z "$3" ] || emit "${3%_per_s}_broker_us" "$(echo $bcpu | tr ' ' '\n' | median)"
}

# Cold devices: every device's first connect after the broker started loads
# and parses its credential (the plugin's device cache misses). One pass over
# all NDEV devices, once, beside one anonymous pass of as many connects; it
# also warms the device cache for the figures that follow.
o=$($PINC "$BC" connect --port "$OURS_PLAIN" --pid "$OURS_PID" $DEV --first 0 --count "$NDEV" \
    --seconds 120 --parallel "$PAR")
b=$($PINC "$BC" connect --port "$BASE_PLAIN" --pid "$BASE_PID" $DEV --first 0 --count "$NDEV" \
    --seconds 120 --parallel "$PAR")
emit connect_jwt_cold_per_s "${o% *}"
emit connect_jwt_cold_vs_anonymous "$(awk -v o="${o% *}" -v b="${b% *}" 'BEGIN {printf "%.3f", o / b}')"
emit connect_jwt_cold_broker_us "${o#* }"

pairs connect connect_jwt_per_s connect_anonymous_per_s connect_jwt_vs_anonymous
pairs cached connect_jwt_cached_per_s "" connect_jwt_cached_vs_anonymous
pairs tls connect_tls_jwt_per_s connect_tls_anonymous_per_s connect_tls_jwt_vs_tls_anonymous
pairs publish publish_jwt_per_s publish_anonymous_per_s publish_jwt_vs_anonymous
