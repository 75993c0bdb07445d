"""Just-in-time registration (docs/provisioning.md, "Just-in-time registration").

An independent client: the CA, intermediates, device certificates and CRLs are made with
python3-cryptography, tokens with PyJWT (`headers={"x5c": [...]}`), connections with paho, against
a real Mosquitto with latchkey's plugin. A device the registry does not know, whose token carries a
chain to a registry CA with its id as the leaf's subject CN, is registered on its first connection;
everything else is refused with one log line naming why, and nothing is written.
"""
import base64
import datetime
import json
import os
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plugin_common import (CONNACK_NOT_AUTHORISED, PROJECT, REGION, assert_refused, claims,
                           client_id, close, connack, connect, log_line, publish, received,
                           start_broker)

P, L = PROJECT, REGION
NOW = datetime.datetime.now(datetime.timezone.utc)


def _cert(subject_cn, key, issuer_cn, issuer_key, ca=False, pathlen=None, serial=None, days=30):
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
         .public_key(key.public_key())
         .serial_number(serial or x509.random_serial_number())
         .not_valid_before(NOW - datetime.timedelta(hours=1))
         .not_valid_after(NOW + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None),
                        critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


class CA:
    def __init__(self, name, parent=None):
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        if parent is None:
            self.cert = _cert(name, self.key, name, self.key, ca=True, pathlen=2, days=365)
        else:
            self.cert = _cert(name, self.key, parent.name, parent.key, ca=True, pathlen=0, days=365)

    @property
    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def device(self, cn, serial=None):
        k = ec.generate_private_key(ec.SECP256R1())
        return k, _cert(cn, k, self.name, self.key, serial=serial)

    def crl(self, serials):
        b = (x509.CertificateRevocationListBuilder()
             .issuer_name(self.cert.subject)
             .last_update(NOW - datetime.timedelta(minutes=5))
             .next_update(NOW + datetime.timedelta(days=7)))
        for s in serials:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(s)
                .revocation_date(NOW - datetime.timedelta(minutes=1)).build())
        return b.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def b64der(cert):
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def x5c_token(key, chain, aud=P, ttl=3600):
    import jwt
    return jwt.encode(claims(aud, ttl=ttl), key, algorithm="ES256",
                      headers={"x5c": [b64der(c) for c in chain]})


def registry(b, name, ca, jit=True, max_devices=None):
    path = b.base / f"{name}-ca.pem"
    path.write_bytes(ca.pem)
    r = b.lk("registries", "create", name, "--project", P, "--region", L,
             "--public-key-path", str(path))
    assert r.rc == 0, r
    if jit:
        extra = ["--max-devices", str(max_devices)] if max_devices else []
        r = b.lk("registries", "jit", "--registry", name, "--project", P, "--region", L,
                 "--enable", *extra)
        assert r.rc == 0, r
    return name


def add_crl(b, reg, pem, tmp):
    """The registry's CRL, by the tool (`latchkey registries crls add`)."""
    path = tmp / "crl.pem"
    path.write_bytes(pem)
    r = b.lk("registries", "crls", "add", "--path", str(path), "--registry", reg, "--project", P,
             "--region", L)
    assert r.rc == 0, r


def backend(b, name):
    secret = b.backend(name)
    c = connect(b, f"{name}/t", secret, username=f"backend:{name}")
    assert b.subscribe(c, f"latchkey/{P}/#", 1) in (0, 1)
    return c


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    b = start_broker(tmp_path_factory, "jit", opts={"jit_burst": 1000, "jit_per_minute": 60000})
    root = CA("jit-root")
    inter = CA("jit-inter", parent=root)
    reg = registry(b, "reg-jit", root)
    yield b, root, inter, reg
    b.stop()


def known_device(b, reg, ca, dev):
    """A device registered by the tool with a certificate of ca (a registry with CA certificates
    takes only certificates): (its private key, its certificate)."""
    k, cert = ca.device(dev)
    path = b.base / f"{reg}-{dev}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    r = b.lk("devices", "create", dev, "--registry", reg, "--project", P, "--region", L,
             "--public-key", f"path={path},type=es256-x509")
    assert r.rc == 0, r
    return k, cert


def describe(b, reg, dev):
    return b.lk("devices", "describe", dev, "--registry", reg, "--project", P, "--region", L,
                "--format", "json")


def test_first_connection_registers(env):
    b, root, inter, reg = env
    be = backend(b, "jit-app")
    k, cert = root.device("jit-1")
    cid = client_id("jit-1", reg)
    c = connect(b, cid, x5c_token(k, [cert]))
    try:
        assert c.rc == 0
        got = received(be, f"latchkey/{P}/{L}/{reg}/jit-1/registered", timeout=5)
        assert got, "no registered event"
        ev = json.loads(got[0].payload)
        assert ev["deviceId"] == "jit-1" and ev["via"] == "mqtt" and ev["deviceNumId"].isdigit()
        publish(c, "/devices/jit-1/events", b"hello", qos=1)
        assert received(be, f"latchkey/{P}/{L}/{reg}/jit-1/events", b"hello", timeout=5)
    finally:
        close(c)
        close(be)
    r = describe(b, reg, "jit-1")
    assert r.rc == 0, r
    d = json.loads(r.out)
    assert d["credentials"][0]["publicKey"]["format"] == "ES256_X509_PEM"
    # the same device again: now a known device, x5c ignored, its credential verifies
    assert connack(b, cid, x5c_token(k, [cert])) == 0
    # and a plain token (no x5c) of the same key works too
    import jwt
    assert connack(b, cid, jwt.encode(claims(P), k, algorithm="ES256")) == 0


def test_chain_through_intermediate(env):
    b, root, inter, reg = env
    k, cert = inter.device("jit-via-inter")
    assert connack(b, client_id("jit-via-inter", reg), x5c_token(k, [cert, inter.cert])) == 0
    # without the intermediate the leaf does not chain to the registry CA
    k2, cert2 = inter.device("jit-no-inter")
    assert_refused(b, client_id("jit-no-inter", reg), x5c_token(k2, [cert2]), "LK_ERR_REG_CERT")
    assert describe(b, reg, "jit-no-inter").rc != 0


def test_unchained_refused(env):
    b, root, inter, reg = env
    other = CA("other-root")
    k, cert = other.device("jit-stranger")
    assert_refused(b, client_id("jit-stranger", reg), x5c_token(k, [cert]), "LK_ERR_REG_CERT")
    assert describe(b, reg, "jit-stranger").rc != 0


def test_certificate_naming_another_id_refused(env):
    b, root, inter, reg = env
    k, cert = root.device("jit-named")
    assert_refused(b, client_id("jit-other-name", reg), x5c_token(k, [cert]),
                   ["LK_ERR_REG_CERT", "LK_ERR_REG_INVALID"])
    assert describe(b, reg, "jit-other-name").rc != 0


def test_one_certificate_one_device(env):
    b, root, inter, reg = env
    k, cert = root.device("jit-once")
    cid = client_id("jit-once", reg)
    assert connack(b, cid, x5c_token(k, [cert])) == 0
    r = b.lk("devices", "delete", "jit-once", "--registry", reg, "--project", P, "--region", L)
    assert r.rc == 0, r
    time.sleep(0.3)  # the change feed reaches the broker on its tick
    assert_refused(b, cid, x5c_token(k, [cert]), "LK_ERR_REG_EXISTS")


def test_revoked_certificate_refused(env, tmp_path):
    b, root, inter, reg = env
    serial = x509.random_serial_number()
    k, cert = root.device("jit-revoked", serial=serial)
    add_crl(b, reg, root.crl([serial]), tmp_path)
    assert_refused(b, client_id("jit-revoked", reg), x5c_token(k, [cert]), "LK_ERR_REG_CERT")
    assert describe(b, reg, "jit-revoked").rc != 0


def test_signed_by_another_key_refused(env):
    b, root, inter, reg = env
    k, cert = root.device("jit-thief")
    thief = ec.generate_private_key(ec.SECP256R1())
    assert_refused(b, client_id("jit-thief", reg), x5c_token(thief, [cert]),
                   "LK_ERR_TOKEN_SIGNATURE")
    assert describe(b, reg, "jit-thief").rc != 0


def test_replayed_token_of_another_device_refused(env):
    b, root, inter, reg = env
    k, cert = root.device("jit-victim")
    tok = x5c_token(k, [cert])
    assert connack(b, client_id("jit-victim", reg), tok) == 0
    # the same token for an unknown id: the certificate names jit-victim
    assert_refused(b, client_id("jit-replay", reg), tok, ["LK_ERR_REG_CERT", "LK_ERR_REG_INVALID"])
    # and for a known device: only its own keys verify
    known_device(b, reg, root, "jit-known")
    assert_refused(b, client_id("jit-known", reg), tok, "LK_ERR_TOKEN_SIGNATURE")


def test_registry_without_jit_refuses_x5c(env):
    b, root, inter, _ = env
    reg = registry(b, "reg-nojit", root, jit=False)
    k, cert = root.device("nojit-1")
    assert_refused(b, client_id("nojit-1", reg), x5c_token(k, [cert]), "no such device")
    assert describe(b, reg, "nojit-1").rc != 0
    # a known device's token with x5c: refused as before JIT existed
    kk, kcert = known_device(b, reg, root, "nojit-known")
    import jwt
    tok = jwt.encode(claims(P), kk, algorithm="ES256", headers={"x5c": [b64der(kcert)]})
    assert_refused(b, client_id("nojit-known", reg), tok, "LK_ERR_TOKEN_HEADER")
    assert connack(b, client_id("nojit-known", reg), jwt.encode(claims(P), kk, algorithm="ES256")) == 0
    # the tool shows the setting
    r = b.lk("registries", "jit", "--registry", reg, "--project", P, "--region", L, "--show",
             "--format", "json")
    assert r.rc == 0 and json.loads(r.out)["enabled"] is False, r


def _until(f, timeout=4.0):
    """f() until it is true, for at most timeout s (well under the 60 s re-read backstop)."""
    deadline = time.time() + timeout
    while True:
        v = f()
        if v or time.time() > deadline:
            return v
        time.sleep(0.2)


def test_setting_change_followed_at_once(env):
    """lk_registry_set_jit appends LK_CHANGE_REGISTRY: the broker drops its cached setting on its
    next tick, not when its 60 s re-read comes."""
    b, root, _, _ = env
    reg = registry(b, "reg-toggle", root, jit=False)
    loc = ["--registry", reg, "--project", P, "--region", L]
    k, cert = root.device("toggle-1")
    cid = client_id("toggle-1", reg)
    assert_refused(b, cid, x5c_token(k, [cert]), "no such device")   # "off" now cached
    assert b.lk("registries", "jit", "--enable", *loc).rc == 0
    assert _until(lambda: connack(b, cid, x5c_token(k, [cert])) == 0), b.log_text()[-2000:]
    assert describe(b, reg, "toggle-1").rc == 0
    # and off again: the next unknown device is refused at once
    assert b.lk("registries", "jit", "--disable", *loc).rc == 0
    k2, cert2 = root.device("toggle-2")
    cid2 = client_id("toggle-2", reg)
    assert _until(lambda: connack(b, cid2, x5c_token(k2, [cert2])) == CONNACK_NOT_AUTHORISED)
    assert describe(b, reg, "toggle-2").rc != 0


def test_jit_cap(env):
    b, root, inter, _ = env
    reg = registry(b, "reg-cap", root, max_devices=1)
    k1, c1 = root.device("cap-1")
    k2, c2 = root.device("cap-2")
    assert connack(b, client_id("cap-1", reg), x5c_token(k1, [c1])) == 0
    assert_refused(b, client_id("cap-2", reg), x5c_token(k2, [c2]), "LK_ERR_REG_LIMIT")
    r = b.lk("registries", "jit", "--registry", reg, "--project", P, "--region", L, "--show",
             "--format", "json")
    assert r.rc == 0 and json.loads(r.out)["registered"] == "1", r


def test_flood_stopped_at_rate(tmp_path_factory):
    """jit_burst 3, jit_per_minute 1: the fourth first connection in a row is closed without a
    CONNACK (the device backs off) before any signature or chain is looked at."""
    b = start_broker(tmp_path_factory, "jitflood", opts={"jit_burst": 3, "jit_per_minute": 1})
    try:
        root = CA("flood-root")
        reg = registry(b, "reg-flood", root)
        stranger = CA("flood-stranger")
        for i in range(3):
            k, cert = stranger.device(f"flood-{i}")
            assert_refused(b, client_id(f"flood-{i}", reg), x5c_token(k, [cert]), "LK_ERR_REG_CERT")
        mark = len(b.log_text())
        k, cert = root.device("flood-good")
        rc = connack(b, client_id("flood-good", reg), x5c_token(k, [cert]))
        assert rc not in (0, CONNACK_NOT_AUTHORISED), rc
        assert log_line(b, "refused", "jit_per_minute", after=mark), b.log_text()[mark:]
        assert describe(b, reg, "flood-good").rc != 0
    finally:
        b.stop()


def test_flood_without_x5c_spends_nothing(tmp_path_factory):
    """Unknown ids with plain tokens (no x5c) are refused as unknown before the JIT bucket: with
    jit_burst 2, ten of them leave room for a real first connection."""
    import jwt
    b = start_broker(tmp_path_factory, "jitplain", opts={"jit_burst": 2, "jit_per_minute": 1})
    try:
        root = CA("plain-root")
        reg = registry(b, "reg-plain", root)
        for i in range(10):
            k = ec.generate_private_key(ec.SECP256R1())
            assert_refused(b, client_id(f"plain-{i}", reg), jwt.encode(claims(P), k, algorithm="ES256"),
                           "no x5c")
        k, cert = root.device("plain-good")
        assert connack(b, client_id("plain-good", reg), x5c_token(k, [cert])) == 0
        assert describe(b, reg, "plain-good").rc == 0
    finally:
        b.stop()


def test_http_bridge_first_request_registers(tmp_path):
    pytest.importorskip("requests")
    from test_http_bridge import Bridge
    br = Bridge(tmp_path)
    try:
        b = br.b
        root = CA("http-root")
        path = b.base / "http-ca.pem"
        path.write_bytes(root.pem)
        loc = ["--registry", b.registry, "--project", P, "--region", L]
        assert b.lk("registries", "credentials", "create", "--path", str(path), *loc).rc == 0
        k, cert = root.device("http-jit")
        # JIT off: refused, and latchkeyd caches the setting ...
        r = br.event("http-jit", b"first", x5c_token(k, [cert]))
        assert r.status_code == 401, r.text
        # ... which the change feed drops when it changes (not the 60 s re-read)
        assert b.lk("registries", "jit", "--enable", *loc).rc == 0
        r = br.event("http-jit", b"first", x5c_token(k, [cert]))
        assert r.status_code == 200, r.text
        assert describe(b, b.registry, "http-jit").rc == 0
        # from another CA: refused, nothing written
        k2, cert2 = CA("http-stranger").device("http-stranger")
        r = br.event("http-stranger", b"x", x5c_token(k2, [cert2]))
        assert r.status_code == 401, r.text
        assert describe(b, b.registry, "http-stranger").rc != 0
    finally:
        br.stop()


def test_rest_api_latchkey_jit_config(tmp_path):
    """The admin API's extension field of DeviceRegistry: shown once JIT was on, changed alone by
    PATCH updateMask=latchkeyJitConfig, refused at creation and mixed with other fields."""
    from api_common import Env, ok, refused, registry_path
    e = Env(tmp_path / "lkd")
    try:
        root = CA("api-root")
        ok(e.api.create_registry("api-jit", credentials=[
            {"publicKeyCertificate": {"format": "X509_CERTIFICATE_PEM", "certificate": root.pem.decode()}}]))
        assert "latchkeyJitConfig" not in ok(e.api.get(registry_path("api-jit")))
        got = ok(e.api.patch(registry_path("api-jit"), {"latchkeyJitConfig": {"enabled": True, "maxDevices": "5"}},
                             query={"updateMask": "latchkeyJitConfig"}))
        assert got["latchkeyJitConfig"] == {"enabled": True, "maxDevices": "5", "registered": "0"}, got
        refused(e.api.patch(registry_path("api-jit"), {"latchkeyJitConfig": {"enabled": False}, "logLevel": "INFO"},
                            query={"updateMask": "latchkeyJitConfig,logLevel"}), "INVALID_ARGUMENT", "alone")
        refused(e.api.patch(registry_path("api-jit"), {"latchkeyJitConfig": {"enabled": "yes"}},
                            query={"updateMask": "latchkeyJitConfig"}), "INVALID_ARGUMENT", "enabled")
        refused(e.api.create_registry("api-jit2", latchkeyJitConfig={"enabled": True}), "INVALID_ARGUMENT",
                "after creation")
        # absent from the body: off; the cap stays, so the field is still shown
        got = ok(e.api.patch(registry_path("api-jit"), {}, query={"updateMask": "latchkeyJitConfig"}))
        assert got["latchkeyJitConfig"] == {"enabled": False, "maxDevices": "5", "registered": "0"}, got
        got = ok(e.api.patch(registry_path("api-jit"), {"latchkeyJitConfig": {"enabled": True}},
                             query={"updateMask": "latchkeyJitConfig"}))
        assert got["latchkeyJitConfig"]["maxDevices"] == "5", got
        # the list shows it too (read after the list's own read, not inside it)
        listed = {r["id"]: r for r in ok(e.api.get(registry_path("api-jit").rsplit("/", 1)[0]))
                  ["deviceRegistries"]}
        assert listed["api-jit"]["latchkeyJitConfig"] == got["latchkeyJitConfig"], listed
    finally:
        assert e.daemon.alive(), e.daemon.log_text()[-3000:]
        e.stop()
