#!/bin/sh
# make demo: a device with its key in a PKCS#11 token talks to a self-hosted
# Mosquitto through the latchkey plugin, end to end, on this machine.
#
#   sh scripts/demo.sh [BUILD_DIR]      (default build; `make demo` builds it first)
#
# Everything happens in a temporary directory; every process started here is
# stopped and the directory removed on exit, also on failure or Ctrl-C. The
# demo exits non-zero when telemetry, config or command does not arrive within
# $LK_DEMO_TIMEOUT seconds (default 20), so CI catches a broken demo.
# LK_DEMO_KEEP=1 keeps the directory (logs, database) for a look afterwards.
set -eu

BUILD=$(cd "${1:-build}" && pwd)
LK="$BUILD/bin/latchkey"
LKD="$BUILD/bin/latchkeyd"
DEVICE_BIN="$BUILD/bin/latchkey-device"
PLUGIN="$BUILD/lib/latchkey_plugin.so"
MOSQUITTO=/usr/sbin/mosquitto
PY=/usr/bin/python3
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
TIMEOUT=${LK_DEMO_TIMEOUT:-20}

PROJECT=demo-project REGION=us-central1 REGISTRY=demo-registry DEVICE=demo-device BACKEND=demo-consumer
DOWN="latchkey/$PROJECT/$REGION/$REGISTRY/$DEVICE"    # where a backend sees the device

for f in "$LK" "$LKD" "$DEVICE_BIN" "$PLUGIN" "$MOSQUITTO" "$SOFTHSM_MODULE" /usr/bin/mosquitto_sub; do
    [ -e "$f" ] || { echo "demo: $f is missing (run 'make demo', which installs and builds)" >&2; exit 1; }
done

START=$(date +%s)
WORK=$(mktemp -d /tmp/latchkey-demo.XXXXXX)
BROKER_PID="" CONSUMER_PID="" AGENT_PID="" API_PID=""

# ---- helpers ----------------------------------------------------------------

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# Print a command as a person would type it (quoted where needed, the build
# directory left out, $WORK by name), then SUFFIX as it is ("&", "<events &").
showbg() { # SUFFIX COMMAND ARGS...
    suffix=$1; shift
    line="\$"
    for a in "$@"; do
        case $a in
            *[!A-Za-z0-9_./:=,@%+-]* | "") a="'$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;;
        esac
        line="$line $a"
    done
    printf '%s%s\n' "$line" "$suffix" | sed -e "s#$BUILD/bin/##g" -e "s#$WORK#\$WORK#g" >&2
}
show() { showbg "" "$@"; }
run() { show "$@"; "$@"; }

# A free TCP port of 127.0.0.1.
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

alive() { # PID: running (not exited, not a zombie waiting to be reaped)
    [ -n "$1" ] && [ -r "/proc/$1/status" ] &&
        ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

# Print the lines of FILE not printed yet, each prefixed with LABEL.
shown() {
    n=$(cat "$1.shown" 2>/dev/null || echo 0)
    total=$(wc -l <"$1")
    awk -v p="  $2 " -v a="$((n + 1))" -v b="$total" 'NR >= a && NR <= b { print p $0 }' "$1"
    echo "$total" >"$1.shown"
}

FAILED=""
fail() {
    FAILED=1
    printf '\n\033[1;31mdemo FAILED: %s\033[0m\n' "$*" >&2
    for f in mosquitto.log mosquitto.stderr consumer.out device.out device.err latchkeyd.log; do
        [ ! -s "$WORK/$f" ] || { echo "--- last lines of $f:" >&2; tail -n 15 "$WORK/$f" >&2; }
    done
    exit 1
}

check_alive() {
    alive "$BROKER_PID" || fail "the broker exited"
    [ -z "$API_PID" ] || alive "$API_PID" || fail "latchkeyd exited"
    [ -z "$CONSUMER_PID" ] || alive "$CONSUMER_PID" || fail "the consumer (mosquitto_sub) exited"
    if [ -n "$AGENT_PID" ] && ! alive "$AGENT_PID"; then
        rc=0; wait "$AGENT_PID" || rc=$?
        AGENT_PID=""
        fail "the device agent exited with code $rc (docs/device.md)"
    fi
}

# Wait until FILE holds COUNT lines containing TEXT, at most $TIMEOUT seconds.
wait_for() { # FILE TEXT COUNT WHAT
    i=0
    while [ "$(grep -cF -- "$2" "$1" || true)" -lt "$3" ]; do
        check_alive
        i=$((i + 1))
        [ "$i" -le $((TIMEOUT * 5)) ] || fail "$4 did not arrive within $TIMEOUT s"
        sleep 0.2
    done
}

# SIGTERM, at most 10 s to exit (then SIGKILL); returns the exit code.
stop() { # PID
    kill -TERM "$1" 2>/dev/null || true
    i=0
    while alive "$1" && [ "$i" -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    alive "$1" && kill -KILL "$1" 2>/dev/null
    src=0; wait "$1" || src=$?
    return "$src"
}

cleanup() {
    rc=$?
    trap - EXIT INT TERM
    [ "$rc" -eq 0 ] || [ -n "$FAILED" ] || (fail "a command failed (exit $rc)") || true
    exec 3>&-
    for pid in $AGENT_PID $API_PID $CONSUMER_PID $BROKER_PID; do stop "$pid" || true; done
    if [ -n "${LK_DEMO_KEEP:-}" ]; then echo "demo: kept $WORK (LK_DEMO_KEEP)" >&2; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'FAILED=1; echo "demo: interrupted" >&2; exit 130' INT
trap 'FAILED=1; echo "demo: terminated" >&2; exit 143' TERM

cd "$WORK"
echo "Working in WORK=$WORK (removed at the end)"
# The broker runs under its own user, as Debian's mosquitto.service runs it:
# it may pass through $WORK (not list it) and owns its own directory.
BROKER_USER=$(id -un) API_USER=$(id -un) API_GROUP=$(id -gn) AS_API=""
if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
    BROKER_USER=mosquitto
    # latchkeyd runs as its own system user, as its systemd unit does
    # (docs/daemon.md); it shares the registry with the broker through the
    # group latchkey.
    id latchkey >/dev/null 2>&1 ||
        useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin latchkey
    API_USER=latchkey API_GROUP=latchkey AS_API="setpriv --reuid=latchkey --regid=latchkey --init-groups --"
    chmod 711 "$WORK"
    # Mosquitto loads plugins after switching user, which may not read a
    # build in a private directory; `make install` puts it where it can.
    install -m 644 "$PLUGIN" "$WORK/latchkey_plugin.so"
    PLUGIN="$WORK/latchkey_plugin.so"
fi

# ---- 1. TLS -----------------------------------------------------------------

say "1. A CA and the broker's certificate for 127.0.0.1/localhost (P-256, openssl)"
run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
run openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=latchkey demo CA" \
    -addext "keyUsage = critical, keyCertSign, cRLSign" -out ca.crt
run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
run openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
set -- "basicConstraints = critical, CA:FALSE" "keyUsage = critical, digitalSignature" \
    "extendedKeyUsage = serverAuth" "subjectAltName = IP:127.0.0.1, DNS:localhost"
showbg " >server.ext" printf '%s\n' "$@"
printf '%s\n' "$@" >server.ext
run openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 -days 2 \
    -extfile server.ext -out server.crt
chmod 600 ca.key
chgrp "$(id -gn "$BROKER_USER")" server.key && chmod 640 server.key
openssl x509 -in server.crt -noout -ext subjectAltName,extendedKeyUsage | sed 's/^/  /'

# ---- 2. registry ------------------------------------------------------------

say "2. The registry database, a registry, and a backend for the downstream consumer"
run install -d -o "$BROKER_USER" -g "$API_GROUP" -m 2770 broker
show export LATCHKEY_DB="$WORK/broker/registry.db"
export LATCHKEY_DB="$WORK/broker/registry.db"
run "$LK" registries create "$REGISTRY" --project "$PROJECT" --region "$REGION"
run chown "$BROKER_USER:$API_GROUP" broker/registry.db broker/registry.db-wal broker/registry.db-shm
run chmod 660 broker/registry.db broker/registry.db-wal broker/registry.db-shm
# The secret goes only into files of mode 0600: mosquitto_sub reads "-P
# SECRET" from $XDG_CONFIG_HOME/mosquitto_sub, so it is never on a command
# line (which `ps` shows every user) nor in this transcript.
OLD_UMASK=$(umask)
run umask 077
showbg " >backend.txt" "$LK" backends create "$BACKEND" --project "$PROJECT"
"$LK" backends create "$BACKEND" --project "$PROJECT" >backend.txt
run mkdir consumer
showbg " >consumer/mosquitto_sub" sed -n 's/^secret: */-P /p' backend.txt
sed -n 's/^secret: */-P /p' backend.txt >consumer/mosquitto_sub
run rm backend.txt
run umask "$OLD_UMASK"
grep -q '^-P [A-Za-z0-9_-]' consumer/mosquitto_sub ||
    fail "no secret in the output of 'latchkey backends create'"
echo "  username: backend:$BACKEND; its secret (shown only once) is in \$WORK/consumer/mosquitto_sub," \
    "mode $(stat -c %04a consumer/mosquitto_sub)"

# ---- 3. broker --------------------------------------------------------------

say "3. Mosquitto with the latchkey plugin, TLS on 127.0.0.1, a free port"
PORT=$(free_port)
cat >mosquitto.conf <<EOF
per_listener_settings false
allow_anonymous false
max_keepalive 800
message_size_limit 262144
set_tcp_nodelay true
persistence false
user $BROKER_USER
log_dest file $WORK/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
log_timestamp_format %H:%M:%S

listener $PORT 127.0.0.1
certfile $WORK/server.crt
keyfile $WORK/server.key
tls_version tlsv1.2
max_qos 1

plugin $PLUGIN
plugin_opt_registry $WORK/broker/registry.db
EOF
sed -e "s|$WORK|\$WORK|g" -e 's/^/  /' mosquitto.conf
touch mosquitto.log && chown "$BROKER_USER" mosquitto.log
showbg " &" "$MOSQUITTO" -c "$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >mosquitto.stderr 2>&1 &
BROKER_PID=$!
i=0
until grep -q "listen socket on port $PORT" mosquitto.log; do
    alive "$BROKER_PID" || { cat mosquitto.stderr >&2; fail "the broker did not start"; }
    i=$((i + 1)); [ "$i" -le 50 ] || fail "the broker does not listen on $PORT after 10 s"
    sleep 0.2
done
grep -e "listen socket" -e "latchkey" mosquitto.log | sed 's/^/  broker | /'

# ---- 4. device key ----------------------------------------------------------

say "4. A SoftHSM2 token, the device key generated inside it, the device registered"
mkdir softhsm
printf 'directories.tokendir = %s/softhsm\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK" >softhsm2.conf
show export SOFTHSM2_CONF="$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
run softhsm2-util --init-token --free --label demo --so-pin 5678 --pin 1234 >/dev/null
(umask 077; echo 1234 >pin)
KEY="pkcs11:token=demo;object=$DEVICE?module-path=$SOFTHSM_MODULE&pin-source=file:$WORK/pin"
run "$LK" key generate --key "$KEY" | tee "$DEVICE.pem"
run "$LK" devices create "$DEVICE" --registry "$REGISTRY" --project "$PROJECT" --region "$REGION" \
    --public-key "path=$DEVICE.pem,type=es256"

echo "  The agent's MQTT password is such a token; PyJWT (an independent implementation) checks one:"
showbg " >token.jwt" "$LK" token --key "$KEY" --aud "$PROJECT" --ttl 600
"$LK" token --key "$KEY" --aud "$PROJECT" --ttl 600 >token.jwt
"$PY" - token.jwt "$DEVICE.pem" "$PROJECT" <<'PYEOF'
import json, sys, jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
tok, pem, aud = open(sys.argv[1]).read().strip(), open(sys.argv[2], "rb").read(), sys.argv[3]
claims = jwt.decode(tok, load_pem_public_key(pem), algorithms=["ES256"], audience=aud)
print("  ", json.dumps(jwt.get_unverified_header(tok)), json.dumps(claims), "- signature verified by PyJWT", jwt.__version__)
PYEOF
echo "  ... and latchkey's verifier (the broker's code) says why it refuses one for another project:"
rc=0
showbg " <token.jwt" "$LK" token verify --credential "$DEVICE.pem" --aud other-project
"$LK" token verify --credential "$DEVICE.pem" --aud other-project <token.jwt >verify.out 2>&1 || rc=$?
sed 's/^/  /' verify.out
[ "$rc" -eq 9 ] || fail "token verify with a wrong audience exited $rc, not 9"
rm token.jwt

# ---- 5. consumer ------------------------------------------------------------

say "5. The downstream consumer: a backend subscribed to latchkey/$PROJECT/#"
touch consumer.out
showbg " &" env XDG_CONFIG_HOME="$WORK/consumer" mosquitto_sub -h 127.0.0.1 -p "$PORT" --cafile ca.crt \
    -i "$BACKEND" -u "backend:$BACKEND" -t "latchkey/$PROJECT/#" -q 1 -v
env XDG_CONFIG_HOME="$WORK/consumer" mosquitto_sub -h 127.0.0.1 -p "$PORT" --cafile ca.crt \
    -i "$BACKEND" -u "backend:$BACKEND" -t "latchkey/$PROJECT/#" -q 1 -v >consumer.out 2>&1 &
CONSUMER_PID=$!
i=0
until grep -qF "$BACKEND 1 latchkey/$PROJECT/#" mosquitto.log; do   # "log_type subscribe"
    check_alive
    i=$((i + 1)); [ "$i" -le $((TIMEOUT * 5)) ] || fail "the consumer did not subscribe within $TIMEOUT s"
    sleep 0.2
done
grep -F -e "backend:$BACKEND" -e "$BACKEND 1 " mosquitto.log | sed 's/^/  broker | /'

# ---- 6. agent ---------------------------------------------------------------

say "6. The device agent: its key in the token, telemetry from its standard input"
# A FIFO held open by this shell (fd 3) is the agent's standard input: each
# line written to it is one event; the agent runs until SIGTERM.
mkfifo events
exec 3<>events
touch device.out device.err
showbg " <events &" "$DEVICE_BIN" --host 127.0.0.1 --port "$PORT" --ca ca.crt --project "$PROJECT" \
    --region "$REGION" --registry "$REGISTRY" --device "$DEVICE" --key "$KEY"
"$DEVICE_BIN" --host 127.0.0.1 --port "$PORT" --ca ca.crt --project "$PROJECT" --region "$REGION" \
    --registry "$REGISTRY" --device "$DEVICE" --key "$KEY" <events >device.out 2>device.err 3>&- &
AGENT_PID=$!
for t in 21.5 21.7 22.0; do
    showbg " >events" echo "{\"temp\": $t}"
    echo "{\"temp\": $t}" >&3
done
wait_for consumer.out "$DOWN/events " 3 "the telemetry (3 events)"
shown device.err "device (log) |"
shown consumer.out "consumer     |"

# ---- 7. config and command --------------------------------------------------

say "7. A new config and a command, from the registry to the device"
wait_for device.out "config: " 1 "the device's first config (on subscribe)"
run "$LK" devices configs update "$DEVICE" --registry "$REGISTRY" --project "$PROJECT" --region "$REGION" \
    --config-data '{"interval": 10}' | sed 's/^/  /'
wait_for device.out 'config: {"interval": 10}' 1 "the config update"
run "$LK" devices commands send "$DEVICE" --registry "$REGISTRY" --project "$PROJECT" --region "$REGION" \
    --command-data 'blink led 3' --timeout "$TIMEOUT" ||
    fail "latchkey devices commands send failed (exit $?)"
wait_for device.out "command: blink led 3" 1 "the command"
shown device.out "device       |"
shown device.err "device (log) |"

# ---- 8. the admin API --------------------------------------------------------

say "8. The admin API: latchkeyd, a service account's key file, a backend's calls (IoT Core's REST API)"
API_PORT=$(free_port)
DEV_PORT=$(free_port)
run umask 077
run "$LK" service-accounts create demo-backend --project "$PROJECT" --role editor \
    --token-uri "https://127.0.0.1:$API_PORT/token" --key-file api-key.json
run umask "$OLD_UMASK"
"$PY" -c 'import json,sys; k=json.load(open(sys.argv[1])); print("  key file:", ", ".join(sorted(k)))' api-key.json
install -m 640 -g "$API_GROUP" server.key api.key
touch latchkeyd.log
showbg " &" $AS_API "$LKD" --registry "$WORK/broker/registry.db" --admin-listen "127.0.0.1:$API_PORT" \
    --tls-cert "$WORK/server.crt" --tls-key "$WORK/api.key" \
    --device-listen "127.0.0.1:$DEV_PORT" --broker "127.0.0.1:$PORT" --broker-ca "$WORK/ca.crt"
$AS_API "$LKD" --registry "$WORK/broker/registry.db" --admin-listen "127.0.0.1:$API_PORT" \
    --tls-cert "$WORK/server.crt" --tls-key "$WORK/api.key" \
    --device-listen "127.0.0.1:$DEV_PORT" --broker "127.0.0.1:$PORT" --broker-ca "$WORK/ca.crt" \
    >latchkeyd.log 2>&1 &
API_PID=$!
i=0
until grep -q "admin API on" latchkeyd.log && grep -q "bridge: connected" latchkeyd.log; do
    check_alive
    i=$((i + 1)); [ "$i" -le 50 ] || fail "latchkeyd does not listen on $API_PORT, or its bridge is not connected, after 10 s"
    sleep 0.2
done
shown latchkeyd.log "latchkeyd    |"
echo "  A backend signs a JWT with the key file, as Google's client libraries do, and calls the API:"
showbg " <<'PYEOF'   (the backend below: get the device, send a config, send a command)" \
    "$PY" - "$API_PORT" api-key.json ca.crt "$PROJECT" "$REGION" "$REGISTRY" "$DEVICE"
"$PY" - "$API_PORT" api-key.json ca.crt "$PROJECT" "$REGION" "$REGISTRY" "$DEVICE" <<'PYEOF' || fail "the backend's API calls failed"
import base64, http.client, json, ssl, sys, time, jwt
port, keyfile, ca, project, region, registry, device = sys.argv[1:]
key = json.load(open(keyfile))
now = int(time.time())
token = jwt.encode({"iss": key["client_email"], "sub": key["client_email"], "iat": now, "exp": now + 3600,
                    "scope": "https://www.googleapis.com/auth/cloudiot"},
                   key["private_key"], algorithm="RS256", headers={"kid": key["private_key_id"]})
api = http.client.HTTPSConnection("127.0.0.1", int(port), context=ssl.create_default_context(cafile=ca))
name = f"projects/{project}/locations/{region}/registries/{registry}/devices/{device}"
def call(method, path, body=None):
    api.request(method, "/v1/" + path, json.dumps(body) if body is not None else None,
                {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    r = api.getresponse()
    answer = json.loads(r.read() or b"{}")
    print(f"   {method} /v1/{path} -> {r.status}")
    if r.status != 200:
        sys.exit(f"   {answer}")
    return answer
d = call("GET", name + "?fieldMask=config,lastEventTime")
print("     ", json.dumps({k: d[k] for k in ("id", "numId", "config") if k in d}))
c = call("POST", name + ":modifyCloudToDeviceConfig",
         {"versionToUpdate": d["config"]["version"], "binaryData": base64.b64encode(b'{"interval": 30}').decode()})
print("      config version", c["version"])
call("POST", name + ":sendCommandToDevice", {"binaryData": base64.b64encode(b"reboot now").decode()})
PYEOF
wait_for device.out 'config: {"interval": 30}' 1 "the config sent through the API"
wait_for device.out "command: reboot now" 1 "the command sent through the API"
shown device.out "device       |"
shown latchkeyd.log "latchkeyd    |"
echo "  A device without MQTT (IoT Core's HTTP bridge): its own token, an event, then its config, with curl:"
DEV_URL="https://127.0.0.1:$DEV_PORT/v1/projects/$PROJECT/locations/$REGION/registries/$REGISTRY/devices/$DEVICE"
printf '$ TOKEN=$(latchkey token --key "$KEY" --aud %s)\n' "$PROJECT" >&2
TOKEN=$("$LK" token --key "$KEY" --aud "$PROJECT") || fail "latchkey token failed"
EVENT=$(printf '{"temp": 22.4, "via": "https"}' | base64 -w0)
printf '$ curl -sS --cacert ca.crt -H "Authorization: Bearer $TOKEN" -d %s %s\n' \
    "'{\"binaryData\": \"$EVENT\"}'" "$DEV_URL:publishEvent" >&2
out=$(curl -sS --cacert ca.crt -H "Authorization: Bearer $TOKEN" -d "{\"binaryData\": \"$EVENT\"}" \
    "$DEV_URL:publishEvent" -w ' HTTP %{http_code}') || fail "curl could not post the event"
echo "  $out"
case "$out" in *"HTTP 200") ;; *) fail "the HTTP bridge refused the event: $out" ;; esac
wait_for consumer.out '"via": "https"' 1 "the event posted over HTTPS"
printf '$ curl -sS --cacert ca.crt -H "Authorization: Bearer $TOKEN" %s\n' "'$DEV_URL/config?localVersion=0'" >&2
out=$(curl -sS --cacert ca.crt -H "Authorization: Bearer $TOKEN" "$DEV_URL/config?localVersion=0" \
    -w ' HTTP %{http_code}') || fail "curl could not read the config"
echo "  $out"
case "$out" in *"HTTP 200") ;; *) fail "the HTTP bridge refused the config read: $out" ;; esac
unset TOKEN
shown consumer.out "consumer     |"

# ---- 8b. the web console ------------------------------------------------------

# An operator signs in to the console that latchkeyd serves (docs/console.md).
if "$LK" operators --help >/dev/null 2>&1; then
    say "8b. The web console: an operator, its sign-in, the fleet in a browser"
    CONSOLE_PASSWORD=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(12))')
    printf '%s\n' "$CONSOLE_PASSWORD" >console-password
    show "$LK" operators create demo-operator --project "$PROJECT" --role editor --password-file console-password
    "$LK" operators create demo-operator --project "$PROJECT" --role editor --password-file console-password \
        || fail "latchkey operators create failed"
    out=$(curl -sS --cacert ca.crt -o /dev/null -w '%{http_code}' "https://127.0.0.1:$API_PORT/console/") \
        || fail "curl could not fetch the console"
    [ "$out" = 200 ] || fail "GET /console/ answered $out"
    out=$(printf '{"name": "demo-operator", "password": "%s"}' "$CONSOLE_PASSWORD" |
        curl -sS --cacert ca.crt -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
            --data-binary @- "https://127.0.0.1:$API_PORT/console/api/signin") || fail "curl could not sign in"
    [ "$out" = 200 ] || fail "the console's sign-in answered $out"
    echo "  The console: https://127.0.0.1:$API_PORT/console/ (the demo's CA: \$WORK/ca.crt)"
    echo "  operator demo-operator, password $CONSOLE_PASSWORD (signed in with curl: HTTP 200)"
    if [ -n "${LK_DEMO_CONSOLE:-}" ]; then
        printf '  LK_DEMO_CONSOLE is set: open the console now; press Enter to go on and stop.' >&2
        read -r _ </dev/tty || true
    else
        echo "  (LK_DEMO_CONSOLE=1 make demo pauses here, so that you can open it in a browser.)"
    fi
fi

# ---- 9. stop ----------------------------------------------------------------

say "9. Stop the agent (SIGTERM: it flushes and exits 0), the consumer, the broker"
show kill -TERM "$AGENT_PID"
rc=0; stop "$AGENT_PID" || rc=$?
AGENT_PID=""
shown device.err "device (log) |"
echo "  latchkey-device exited with code $rc"
[ "$rc" -eq 0 ] || fail "the agent exited with code $rc after SIGTERM, not 0"
wait_for consumer.out "$DOWN/offline " 1 "the device's offline message"
shown consumer.out "consumer     |"
echo "  the broker's log (the plugin's lines, and the device's clean DISCONNECT):"
grep -e "latchkey:" -e "Client projects/.* disconnected" mosquitto.log | sed 's/^/  broker | /'
show kill -TERM "$API_PID" "$CONSUMER_PID" "$BROKER_PID"
rc=0; stop "$API_PID" || rc=$?
API_PID=""
[ "$rc" -eq 0 ] || fail "latchkeyd exited with code $rc after SIGTERM, not 0"
shown latchkeyd.log "latchkeyd    |"
stop "$CONSUMER_PID" || true
CONSUMER_PID=""
rc=0; stop "$BROKER_PID" || rc=$?
BROKER_PID=""
[ "$rc" -eq 0 ] || fail "the broker exited with code $rc"

# ---- 10. by hand ------------------------------------------------------------

say "10. The same for real"
echo "  README.md, 'Run it for real': the same steps on a Debian 12 machine, the broker as a service with"
echo "  Debian's mosquitto.service, a device on ports 8883 and 443, then as a service receiving config and commands."

echo "  docs/daemon.md: latchkeyd as a service, service accounts and roles, Google's client libraries."

say "Done in $(($(date +%s) - START)) s: telemetry, config and command went through the broker, through the admin API, and an HTTP device's event and config through the device bridge."
