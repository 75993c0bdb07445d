# Shared by the bench scripts (sourced, after OUT is set): print a figure and
# append it to OUT, take the median of numbers on standard input, pin a
# command to the last core (PIN) so that ours and a baseline see the same
# core one after the other, and start a Mosquitto for a bench.
emit() { echo "$1: $2"; echo "$1: $2" >> "$OUT"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
CPU=$(( $(nproc) - 1 ))
PIN="taskset -c $CPU"
PINC="taskset -c 0"      # the clients; brokers on the last core (PIN)
command -v taskset >/dev/null 2>&1 || { PIN=""; PINC=""; }
# What the benchmarks run: the build's tools and plugin (BUILD, set by the
# script), and the broker.
MOSQUITTO=${LK_MOSQUITTO:-/usr/sbin/mosquitto}
TOOL="$BUILD/bin/latchkey"
DEVTOOL="$BUILD/bin/latchkey-device"
LKD="$BUILD/bin/latchkeyd"
PLUGIN=$(cd "$BUILD/lib" 2>/dev/null && pwd)/latchkey_plugin.so
# The benchmarks' registries live in one project and region.
PROJECT=bench-project
REGION=us-central1

# bench_fleet DB PEM N WIDTH: registry $REGISTRY in DB with N devices
# device-000... (WIDTH digits) sharing the public key in the file PEM, made
# by the tool (`devices import`), and the backend bench-backend, whose
# secret is put in SECRET.
bench_fleet() {
    "$TOOL" --db "$1" registries create "$REGISTRY" --project "$PROJECT" --region "$REGION" >/dev/null
    awk -v n="$3" -v w="$4" -v pemfile="$2" 'BEGIN {
        while ((getline l < pemfile) > 0) k = k l "\\n"
        f = "{\"id\": \"device-%0" w "d\", \"credentials\": [{\"publicKey\": " \
            "{\"format\": \"ES256_PEM\", \"key\": \"%s\"}}]}\n"
        for (i = 0; i < n; i++)
            printf f, i, k
    }' > "$TMP/devices.jsonl"
    "$TOOL" --db "$1" devices import "$TMP/devices.jsonl" --registry "$REGISTRY" \
        --project "$PROJECT" --region "$REGION" >/dev/null
    SECRET=$("$TOOL" --db "$1" backends create bench-backend --project "$PROJECT" |
        awk -F': *' 'tolower($1) ~ /secret/ {print $2}')
    [ -n "$SECRET" ] || { echo "bench: no backend secret" >&2; exit 1; }
}

# start_mosquitto NAME PLAIN [LINE...]
# Starts LK_MOSQUITTO ($MOSQUITTO), pinned with PIN, configured in
# $TMP/NAME.conf and logging to $TMP/NAME.log: a TLS listener (1.2 and up)
# on an even loopback port, with PLAIN = plain a plain-TCP listener on the
# next port too, then the configuration lines LINE... (the plugin or
# allow_anonymous). The first call makes, in $TMP, a test CA (ca.crt, for
# the clients) and its server certificate for 127.0.0.1 (P-256). Sets
# NAME_PID at once (for the caller's cleanup), then NAME_TLS and NAME_PLAIN;
# a port taken by another process is retried, 10 tries, then the script
# exits with the broker's output.
# bench_certs: in $TMP (once), a test CA (ca.crt) and its server certificate
# for 127.0.0.1 (server.crt, server.key; P-256).
bench_certs() {
    if [ ! -f "$TMP/server.crt" ]; then
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
    fi
}

start_mosquitto() {
    bench_certs
    _name=$1 _plain=$2
    shift 2
    # Ports below the ephemeral range: connect loops leave thousands of
    # TIME_WAIT sockets on ephemeral ports, on which mosquitto's bind() fails.
    _eph=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$_eph" -gt 12000 ] || _eph=32768
    _try=0
    while [ $_try -lt 10 ]; do
        _try=$((_try + 1))
        _tp=$(( 10000 + ($(od -An -N2 -tu2 /dev/urandom) % ((_eph - 10002) / 2)) * 2 ))
        _pp=$((_tp + 1))
        case " ${_lk_ports:-} " in *" $_tp "*) continue ;; esac
        {
            echo "per_listener_settings false"
            echo "max_keepalive 800"
            echo "message_size_limit 262144"
            echo "set_tcp_nodelay true"
            echo "persistence false"
            echo "user $(id -un)"
            echo "log_dest file $TMP/$_name.log"
            echo "log_type error"
            echo "log_type warning"
            echo "log_type notice"
            echo "log_type information"
            echo ""
            echo "listener $_tp 127.0.0.1"
            echo "certfile $TMP/server.crt"
            echo "keyfile $TMP/server.key"
            echo "tls_version tlsv1.2"
            echo "max_qos 1"
            echo ""
            if [ "$_plain" = plain ]; then
                echo "listener $_pp 127.0.0.1"
                echo "max_qos 1"
                echo ""
            fi
            for _line in "$@"; do echo "$_line"; done
        } > "$TMP/$_name.conf"
        : > "$TMP/$_name.log"
        $PIN "$MOSQUITTO" -c "$TMP/$_name.conf" > "$TMP/$_name.stderr" 2>&1 &
        _pid=$!
        eval "${_name}_PID=$_pid"
        _n=0
        while [ $_n -lt 50 ]; do
            kill -0 "$_pid" 2>/dev/null || break
            grep -q "Error" "$TMP/$_name.log" 2>/dev/null && break
            if grep -q "Opening ipv4 listen socket on port $_tp" "$TMP/$_name.log" 2>/dev/null &&
               { [ "$_plain" != plain ] ||
                 grep -q "Opening ipv4 listen socket on port $_pp" "$TMP/$_name.log" 2>/dev/null; }; then
                eval "${_name}_TLS=$_tp ${_name}_PLAIN=$_pp"
                _lk_ports="${_lk_ports:-} $_tp"
                return 0
            fi
            sleep 0.1
            _n=$((_n + 1))
        done
        kill "$_pid" 2>/dev/null || true
        wait "$_pid" 2>/dev/null || true
        eval "${_name}_PID="
    done
    echo "${0##*/}: mosquitto ($_name) did not start:" >&2
    cat "$TMP/$_name.stderr" "$TMP/$_name.log" >&2 2>/dev/null || true
    exit 1
}

# start_latchkeyd BROKER_TLS_PORT: $BUILD's latchkeyd ($LKD), pinned with the
# broker (PIN), with TLS ($TMP/server.crt), its admin API and device bridge
# on random loopback ports and its bridge into the broker at that port;
# logs to $TMP/latchkeyd.log. Sets LKD_PID at once (for the caller's
# cleanup), then DPORT (the device bridge's port) once the bridge has
# reached the broker; exits with both logs when it does not within 30 s.
start_latchkeyd() {
    rm -f "$TMP/dport" "$TMP/lkd-port"
    $PIN "$LKD" --registry "$TMP/registry.db" --admin-listen 127.0.0.1:0 \
        --port-file "$TMP/lkd-port" --tls-cert "$TMP/server.crt" --tls-key "$TMP/server.key" \
        --device-listen 127.0.0.1:0 --device-port-file "$TMP/dport" \
        --broker "127.0.0.1:$1" --broker-ca "$TMP/ca.crt" > "$TMP/latchkeyd.log" 2>&1 &
    LKD_PID=$!
    _n=0
    until [ -s "$TMP/dport" ] && grep -q "bridge: connected" "$TMP/latchkeyd.log"; do
        kill -0 "$LKD_PID" 2>/dev/null && [ $_n -lt 300 ] || {
            echo "${0##*/}: latchkeyd did not start or reach the broker:" >&2
            cat "$TMP/latchkeyd.log" >&2; tail -5 "$TMP/ours.log" >&2; exit 1; }
        sleep 0.1
        _n=$((_n + 1))
    done
    DPORT=$(cat "$TMP/dport")
}

# bench_tmp NAME VAR...: TMP, a new temporary directory, removed on exit once
# the processes whose ids the variables VAR... hold then are stopped.
bench_tmp() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/lkbench-$1.XXXXXX")
    shift
    _bench_vars="$*"
    trap _bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
_bench_cleanup() {
    _pids=""
    for _v in $_bench_vars; do eval "_pids=\"\$_pids \${$_v:-}\""; done
    for _p in $_pids; do kill "$_p" 2>/dev/null || true; done
    for _p in $_pids; do wait "$_p" 2>/dev/null || true; done
    rm -rf "$TMP"
}

# bench_need FILE...: each file exists, or the script stops and says so.
bench_need() {
    for _f in "$@"; do
        [ -x "$_f" ] || [ -f "$_f" ] || { echo "${0##*/}: $_f is missing: build first" >&2; exit 1; }
    done
}
