"""The plugin's authentication (docs/plugin.md, "Authentication"), from independent clients.

Devices get keys from python3-cryptography and tokens from PyJWT; they connect with paho
(and mosquitto_pub) to a real Mosquitto. Every refusal must be CONNACK 5 with one broker
log line `latchkey: event=refused level=info device=DEVICE-PATH addr=ADDRESS reason=... err=LK_ERR_...` that never
contains the token.
"""
import base64
import hashlib
import hmac
import json
import socket
import ssl
import time

import paho.mqtt.client as mqtt
import pytest

from plugin_common import (CONNACK_NOT_AUTHORISED, PROJECT, REGION, REGISTRY, Key, assert_refused,
                                assert_secret_not_logged, b64u, claims, client_id, close, connack,
                                connect, ensure_registry, log_line, make_device, mosquitto_client,
                                start_broker, still_connected, wait_disconnected)

from broker import make_tls

P, L, R = PROJECT, REGION, REGISTRY


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory, "auth")  # default options: skew 600, lifetime 86400
    yield b
    b.stop()


@pytest.fixture(scope="module")
def dev(broker):
    """An ordinary ES256 device of reg-1."""
    return make_device(broker, "dev-ok")


# ---- success ----

@pytest.mark.parametrize("tls", [True, False])
def test_es256_device_connects(broker, dev, tls):
    mark = len(broker.log_text())
    tok = dev.token()
    c = connect(broker, dev.client_id, tok, tls=tls)
    try:
        assert c.rc == 0
        line = log_line(broker, "latchkey: event=connect ", dev.client_id, after=mark)
        assert line is not None, broker.log_text()[mark:]
        assert " cred=sha256:" in line and " until=" in line, line
        assert still_connected(c, 0.2)
    finally:
        close(c)
    assert_secret_not_logged(broker, tok)


def test_rs256_device_connects(broker):
    d = make_device(broker, "dev-rsa", algs=("RS256",))
    assert connack(broker, d.client_id, d.token(), tls=True) == 0


def test_device_with_both_key_types_uses_either(broker):
    d = make_device(broker, "dev-both", algs=("ES256", "RS256"))
    assert connack(broker, d.client_id, d.token(key=0)) == 0
    assert connack(broker, d.client_id, d.token(key=1)) == 0


def test_padded_signature_is_accepted(broker, dev):
    """Google's Embedded C SDK pads the signature segment with '='; IoT Core accepted it and
    plugin_opt_base64_padding defaults to allow."""
    h, p, s = dev.token().split(".")
    assert len(s) % 4 != 0
    padded = f"{h}.{p}.{s}{'=' * (-len(s) % 4)}"
    assert connack(broker, dev.client_id, padded) == 0


def test_lifetime_of_exactly_24h_is_accepted(broker, dev):
    assert connack(broker, dev.client_id, dev.token(ttl=86400)) == 0


@pytest.mark.parametrize("username", ["unused", "", "ignored" * 30, "backend:nobody",
                                      "projects/x/locations/y/registries/z/devices/w"])
def test_username_is_ignored(broker, dev, username):
    # A device client id always takes the device path, whatever the username says (even one
    # shaped like a backend's); the safest reading of "the username is ignored".
    assert connack(broker, dev.client_id, dev.token(), username=username) == 0


def test_mosquitto_pub_connects_over_tls(broker, dev):
    cp = mosquitto_client("mosquitto_pub", broker, dev.client_id, dev.token(),
                          "-t", dev.topic("events"), "-m", "hello", "-q", "1")
    assert cp.returncode == 0, cp


def test_mosquitto_pub_refused(broker, dev):
    tok = dev.token(aud="proj-wrong")
    cp = mosquitto_client("mosquitto_pub", broker, dev.client_id, tok,
                          "-t", dev.topic("events"), "-m", "hello", "-q", "1")
    assert cp.returncode != 0
    assert b"not authori" in cp.stderr.lower(), cp
    assert_secret_not_logged(broker, tok)


def test_second_connection_with_same_client_id_replaces_the_first(broker, dev):
    a = connect(broker, dev.client_id, dev.token())
    b = connect(broker, dev.client_id, dev.token(ttl=1800))
    try:
        assert wait_disconnected(a, 2) is not None, "the older connection was not closed"
        # The newer one is fully alive: its state must not have been dropped by the old
        # connection's disconnect event (docs: state kept per struct mosquitto *).
        assert still_connected(b, 0.5)
        assert broker.subscribe(b, dev.topic("config"), 1) == 1
        assert broker.wait_messages(b, 1, timeout=1.0, topic=dev.topic("config")), \
            "the replacing connection got no config"
    finally:
        close(a)
        close(b)


# ---- refusals: client id ----

MALFORMED = [
    "projects/{P}/locations/{L}/registries/{R}/devices/",
    "projects/{P}/locations/{L}/registries/{R}/devices/dev-ok/extra",
    "projects/{P}/locations/{L}/registries/{R}/devices/dev-ok/",
    "projects/{P}/locations/{L}/registries/{R}",
    "/projects/{P}/locations/{L}/registries/{R}/devices/dev-ok",
    "projects/{P}/location/{L}/registries/{R}/devices/dev-ok",
    "Projects/{P}/locations/{L}/registries/{R}/devices/dev-ok",
    "projects/{P}//locations/{L}/registries/{R}/devices/dev-ok",
    "projects/Proj_One/locations/{L}/registries/{R}/devices/dev-ok",
    "projects/{P}/locations/{L}/registries/{R}/devices/1dev",
    "projects/{P}/locations/{L}/registries/{R}/devices/dv",
    "projects/{P}/locations/{L}/registries/{R}/devices/goog-dev",
    "projects/{P}/locations/{L}/registries/{R}/devices/dev ok",
    "dev-ok",
    "projects/{P}/locations/{L}/registries/{R}/devices/dev-ok ",
]


@pytest.mark.parametrize("form", MALFORMED)
def test_malformed_client_id_refused(broker, dev, form):
    cid = form.format(P=P, L=L, R=R)
    # The password is a valid token of dev-ok: only the client id is wrong. Not a device
    # path means "not a device" (docs: then only a backend could be meant, and there is none).
    assert_refused(broker, cid, dev.token(), ["client id", "not a device", "backend", "LK_ERR_"])


def test_empty_client_id_refused(broker, dev):
    # MQTT 3.1.1 lets the broker assign an id to a clean session; that id is no device path.
    assert_refused(broker, "", dev.token(), ["device path", "backend", "client id"], name_in_log=False)


# ---- refusals: device lookup ----

def test_unknown_device(broker, dev):
    cid = client_id("dev-nobody")
    assert_refused(broker, cid, dev.token(), ["LK_ERR_REG_NOT_FOUND", "unknown", "not found"])


@pytest.mark.parametrize("where", ["registry", "project", "region"])
def test_unknown_registry(broker, dev, where):
    cid = {"registry": client_id("dev-ok", registry="reg-nope"),
           "project": client_id("dev-ok", project="proj-nope"),
           "region": client_id("dev-ok", region="europe-west1")}[where]
    tok = dev.token(aud="proj-nope") if where == "project" else dev.token()
    assert_refused(broker, cid, tok, ["LK_ERR_REG_NOT_FOUND", "unknown", "not found"])


def test_blocked_device(broker):
    d = make_device(broker, "dev-blocked", extra=("--blocked",))
    assert_refused(broker, d.client_id, d.token(), ["blocked"])


def test_registry_with_mqtt_disabled(broker):
    ensure_registry(broker, "reg-nomqtt", P, L, "--no-enable-mqtt-config")
    d = make_device(broker, "dev-nomqtt", registry="reg-nomqtt")
    assert_refused(broker, d.client_id, d.token(), ["mqtt", "disabled"])


def test_registry_update_disables_mqtt(broker):
    ensure_registry(broker, "reg-toggle", P, L)
    d = make_device(broker, "dev-toggle", registry="reg-toggle")
    assert connack(broker, d.client_id, d.token()) == 0          # now cached by the plugin
    r = broker.lk("registries", "update", "reg-toggle", "--project", P, "--region", L,
                  "--no-enable-mqtt-config")
    assert r.rc == 0, r
    time.sleep(0.3)                                              # a tick or two
    assert_refused(broker, d.client_id, d.token(), ["mqtt", "disabled"])
    r = broker.lk("registries", "update", "reg-toggle", "--project", P, "--region", L,
                  "--enable-mqtt-config")
    assert r.rc == 0, r
    time.sleep(0.3)
    assert connack(broker, d.client_id, d.token()) == 0


# ---- refusals: password / token ----

def test_missing_password(broker, dev):
    assert_refused(broker, dev.client_id, None, ["password", "LK_ERR_"], username="unused")


def test_no_username_no_password(broker, dev):
    assert_refused(broker, dev.client_id, None, ["password", "LK_ERR_"], username=None)


def test_empty_password(broker, dev):
    assert_refused(broker, dev.client_id, "", ["password", "LK_ERR_TOKEN_MALFORMED", "LK_ERR_"])


def test_expired_token(broker, dev):
    now = int(time.time())
    assert_refused(broker, dev.client_id, dev.token(iat=now - 1400, ttl=700), "LK_ERR_TOKEN_EXPIRED")


def test_future_iat(broker, dev):
    now = int(time.time())
    assert_refused(broker, dev.client_id, dev.token(iat=now + 700, ttl=600), "LK_ERR_TOKEN_FUTURE")


def test_lifetime_too_long(broker, dev):
    assert_refused(broker, dev.client_id, dev.token(ttl=86400 + 600 + 60), "LK_ERR_TOKEN_LIFETIME")


def test_exp_before_iat(broker, dev):
    now = int(time.time())
    assert_refused(broker, dev.client_id, dev.token(iat=now, exp=now - 1), "LK_ERR_TOKEN_LIFETIME")


@pytest.mark.parametrize("aud", ["proj-two", "proj-on", "proj-one ", "PROJ-ONE", ""])
def test_wrong_audience(broker, dev, aud):
    assert_refused(broker, dev.client_id, dev.token(aud=aud), "LK_ERR_TOKEN_AUDIENCE")


def test_audience_as_list(broker, dev):
    tok = dev.keys[0].sign({"iat": int(time.time()), "exp": int(time.time()) + 600, "aud": [P]})
    assert_refused(broker, dev.client_id, tok, ["LK_ERR_TOKEN_CLAIM", "LK_ERR_TOKEN_AUDIENCE"])


def test_missing_exp(broker, dev):
    tok = dev.keys[0].sign({"iat": int(time.time()), "aud": P})
    assert_refused(broker, dev.client_id, tok, "LK_ERR_TOKEN_CLAIM")


def test_signed_by_another_key(broker, dev):
    other = Key(broker.base, "ES256")
    assert_refused(broker, dev.client_id, dev.token(key=other), "LK_ERR_TOKEN_SIGNATURE")


def test_claims_changed_after_signing(broker, dev):
    h, p, s = dev.token().split(".")
    c = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    c["exp"] += 1
    forged = f"{h}.{b64u(json.dumps(c, separators=(',', ':')).encode())}.{s}"
    assert_refused(broker, dev.client_id, forged, "LK_ERR_TOKEN_SIGNATURE")


def test_alg_none(broker, dev):
    c = claims(P)
    none_header = b64u(b'{"alg":"none","typ":"JWT"}')
    unsigned = f"{none_header}.{b64u(json.dumps(c).encode())}."
    # Empty third segment: the verifier's segment rule (malformed) may fire before the alg rule.
    assert_refused(broker, dev.client_id, unsigned, ["LK_ERR_TOKEN_ALG", "LK_ERR_TOKEN_MALFORMED"])
    # With a signature segment present, it is the alg that is refused.
    sig = dev.token().split(".")[2]
    assert_refused(broker, dev.client_id, unsigned + sig, "LK_ERR_TOKEN_ALG")


def test_hs256_with_public_key_as_secret(broker, dev):
    """The classic key-confusion attack: HMAC keyed with the device's public PEM."""
    head = b64u(b'{"alg":"HS256","typ":"JWT"}')
    body = b64u(json.dumps(claims(P)).encode())
    mac = hmac.new(dev.keys[0].pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert_refused(broker, dev.client_id, f"{head}.{body}.{b64u(mac)}", "LK_ERR_TOKEN_ALG")


def test_rs256_token_for_es256_only_device(broker, dev):
    rsa_key = Key(broker.base, "RS256")
    assert_refused(broker, dev.client_id, dev.token(key=rsa_key), "LK_ERR_TOKEN_ALG")


def test_header_with_jwk_refused(broker, dev):
    tok = dev.token(headers={"jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}})
    assert_refused(broker, dev.client_id, tok, "LK_ERR_TOKEN_HEADER")


def test_malformed_token(broker, dev):
    assert_refused(broker, dev.client_id, "not-a-token", "LK_ERR_TOKEN_MALFORMED")


def test_token_too_long(broker, dev):
    # plugin_opt_max_token_length defaults to 4096 bytes.
    tok = dev.keys[0].sign({**claims(P), "pad": "x" * 4200})
    assert len(tok) > 4096
    assert_refused(broker, dev.client_id, tok, "LK_ERR_TOKEN_TOO_LARGE")


def test_credential_expired(broker):
    d = make_device(broker, "dev-credexp", expiration="2020-01-01T00:00:00Z")
    assert_refused(broker, d.client_id, d.token(), "LK_ERR_NO_CREDENTIAL")


def test_only_unexpired_credential_is_tried(broker):
    # Credential 0 expired, credential 1 valid: a token of key 0 fails, of key 1 succeeds.
    d = make_device(broker, "dev-credmix", algs=("ES256", "ES256"),
                    expiration=["2020-01-01T00:00:00Z", None])
    assert_refused(broker, d.client_id, d.token(key=0), ["LK_ERR_TOKEN_SIGNATURE", "LK_ERR_NO_CREDENTIAL"])
    assert connack(broker, d.client_id, d.token(key=1)) == 0


def test_token_of_removed_key(broker):
    d = make_device(broker, "dev-rmkey", algs=("ES256", "ES256"))
    tok0 = d.token(key=0)
    assert connack(broker, d.client_id, tok0) == 0      # verified and cached
    r = d.devices("credentials", "delete", d.id, "0")
    assert r.rc == 0, r
    time.sleep(0.3)
    # The same token again: neither the device cache nor the verified-token cache may keep it.
    assert_refused(broker, d.client_id, tok0, "LK_ERR_TOKEN_SIGNATURE")
    assert connack(broker, d.client_id, d.token(key=1)) == 0


# ---- TLS, client side ----

def test_server_certificate_from_another_ca_is_refused_by_client(broker, dev, tmp_path):
    other_ca, _, _ = make_tls(tmp_path)
    c = mqtt.Client(client_id=dev.client_id, protocol=mqtt.MQTTv311)
    c.username_pw_set("unused", dev.token())
    c.tls_set(ca_certs=str(other_ca), cert_reqs=ssl.CERT_REQUIRED)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect(broker.host, broker.tls_port, 60)
    cp = mosquitto_client("mosquitto_pub", broker, dev.client_id, dev.token(),
                          "-t", dev.topic("events"), "-m", "x", cafile=other_ca)
    assert cp.returncode != 0, cp


def test_plain_mqtt_on_tls_port_gets_nothing(broker, dev):
    # A client that skips TLS on the TLS listener is never authenticated.
    assert connack(broker, dev.client_id, dev.token(), tls=False, port=broker.tls_port) != 0


# ---- the log, overall ----

def test_no_token_anywhere_in_log(broker, dev):
    tok = dev.token(ttl=1234)
    assert connack(broker, dev.client_id, tok) == 0
    assert connack(broker, dev.client_id + "x", tok) == CONNACK_NOT_AUTHORISED
    log = broker.log_text()
    assert tok not in log and tok.split(".")[2] not in log
    # and no raw JWT-looking string at all
    assert "eyJ" not in log, [ln for ln in log.splitlines() if "eyJ" in ln][:3]
