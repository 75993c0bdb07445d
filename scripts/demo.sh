#!/bin/sh
# make demo: what latchkey can do so far, end to end, on this machine.
# Everything happens in a temporary directory that is removed at the end.
set -eu
BUILD=${1:-build}
LK="$BUILD/bin/latchkey"
PY=/usr/bin/python3
WORK=$(mktemp -d /tmp/latchkey-demo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*" >&2; "$@"; }

check_token() { # TOKEN PUBKEY.pem AUD — checked by PyJWT, an independent implementation
    "$PY" - "$1" "$2" "$3" <<'PYEOF'
import json, sys, jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
tok, pem, aud = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3]
claims = jwt.decode(tok, load_pem_public_key(pem), algorithms=["ES256", "RS256"], audience=aud)
print("  header:", json.dumps(jwt.get_unverified_header(tok)))
print("  claims:", json.dumps(claims))
print("  signature verified by PyJWT", jwt.__version__)
bad = tok[:-5] + ("A" if tok[-5] != "A" else "B") + tok[-4:]
try:
    jwt.decode(bad, load_pem_public_key(pem), algorithms=["ES256", "RS256"], audience=aud)
    sys.exit("a tampered token verified!")
except jwt.InvalidSignatureError:
    print("  one changed character: refused (InvalidSignatureError)")
PYEOF
}

say "1. A device key in the software key store (development only)"
run "$LK" key generate --store "$WORK/keys.lks" --key demo-device-1 | tee "$WORK/dev1.pem"
run ls -l "$WORK/keys.lks"

say "2. The device makes its MQTT password: a token for project 'demo-project', valid 20 minutes"
TOKEN=$("$LK" token --store "$WORK/keys.lks" --key demo-device-1 --aud demo-project --ttl 1200)
echo "$TOKEN"
check_token "$TOKEN" "$WORK/dev1.pem" demo-project

say "3. The same with a key made inside a PKCS#11 token (SoftHSM2): it never leaves the token"
mkdir -p "$WORK/softhsm"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK/softhsm" > "$WORK/softhsm2.conf"
export SOFTHSM2_CONF="$WORK/softhsm2.conf"
run softhsm2-util --init-token --free --label demo --so-pin 5678 --pin 1234 >/dev/null
URI="pkcs11:token=demo;object=demo-device-2?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=1234"
run "$LK" key generate --key "$URI" | tee "$WORK/dev2.pem"
TOKEN=$("$LK" token --key "$URI" --aud demo-project --ttl 1200)
echo "$TOKEN"
check_token "$TOKEN" "$WORK/dev2.pem" demo-project

say "4. The service side checks it with latchkey's own verifier (the same code the broker uses)"
run "$LK" token verify --credential "$WORK/dev2.pem" --aud demo-project "$TOKEN"
echo "  ... and says precisely why a token is refused:"
"$LK" token verify --credential "$WORK/dev2.pem" --aud other-project "$TOKEN" || true
"$LK" token verify --credential "$WORK/dev1.pem" --aud demo-project "$TOKEN" || true

say "5. The device registry (one SQLite file): a registry, the two devices, a config"
export LATCHKEY_DB="$WORK/registry.db"
REG="--registry demo-registry --project demo-project --region us-central1"
run "$LK" registries create demo-registry --project demo-project --region us-central1
# shellcheck disable=SC2086
run "$LK" devices create demo-device-1 $REG --public-key "path=$WORK/dev1.pem,type=es256"
# shellcheck disable=SC2086
run "$LK" devices create demo-device-2 $REG --public-key "path=$WORK/dev2.pem,type=es256"
# shellcheck disable=SC2086
run "$LK" devices configs update demo-device-1 $REG --config-data '{"interval": 60}'
# shellcheck disable=SC2086
run "$LK" devices list $REG
echo "  ... a bad id and a version conflict are refused with the reason, and nothing is written:"
# shellcheck disable=SC2086
"$LK" devices create 9bad $REG || true
# shellcheck disable=SC2086
"$LK" devices configs update demo-device-1 $REG --config-data x --version-to-update 1 || true

say "Done. To do this by hand, see README.md ('Using latchkey')."
