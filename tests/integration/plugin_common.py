"""Helpers shared by the plugin behaviour tests (test_plugin_auth/topics/delivery.py).

No tests here. Built on tests/integration/broker.py (the harness); what is added:
devices whose keys are made with python3-cryptography and whose tokens are made with
PyJWT (independent of latchkey's own token code), refusal checks against the broker log,
and small waits. Everything is generic over docs/plugin.md, the contract.
"""
import base64
import json
import os
import subprocess
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import broker as _harness
from broker import Broker, Refused, client_id, PROJECT, REGION, REGISTRY  # noqa: F401

# The harness reads LK_PLUGIN; the documented way to run these tests also gives LK_LIB_DIR.
if "LK_PLUGIN" not in os.environ and os.environ.get("LK_LIB_DIR"):
    _harness.PLUGIN = Path(os.environ["LK_LIB_DIR"]) / "latchkey_plugin.so"

CONNACK_NOT_AUTHORISED = 5
SUBACK_FAILURE = 0x80


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def start_broker(tmp_path_factory, name, opts=None):
    if not _harness.PLUGIN.exists():
        pytest.fail(f"the plugin {_harness.PLUGIN} is not built (set LK_LIB_DIR / LK_PLUGIN)")
    return Broker(tmp_path_factory.mktemp(name), opts=opts)


class Key:
    """A key pair made here (python3-cryptography), its public PEM on disk."""
    _n = 0

    def __init__(self, base, alg="ES256"):
        Key._n += 1
        self.alg = alg
        if alg == "ES256":
            self.priv = ec.generate_private_key(ec.SECP256R1())
        else:
            self.priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.pem = self.priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.path = base / f"pykey-{os.getpid()}-{Key._n}.pem"
        self.path.write_bytes(self.pem)

    @property
    def type(self):
        return "es256" if self.alg == "ES256" else "rsa"

    def sign(self, claims, alg=None, headers=None):
        return jwt.encode(claims, self.priv, algorithm=alg or self.alg, headers=headers)


def claims(aud, iat=None, ttl=3600, exp=None):
    iat = int(time.time()) if iat is None else int(iat)
    return {"iat": iat, "exp": iat + ttl if exp is None else int(exp), "aud": aud}


class Dev:
    """A device created with `latchkey devices create --public-key path=...,type=...`."""

    def __init__(self, broker, device_id, registry, project, region, keys, num_id):
        self.broker = broker
        self.id = device_id
        self.registry, self.project, self.region = registry, project, region
        self.keys = keys
        self.num_id = num_id
        self.client_id = client_id(device_id, registry, project, region)
        self.loc = ["--registry", registry, "--project", project, "--region", region]

    def token(self, key=0, ttl=3600, iat=None, exp=None, aud=None, alg=None, headers=None):
        k = self.keys[key] if isinstance(key, int) else key
        return k.sign(claims(self.project if aud is None else aud, iat, ttl, exp), alg=alg,
                      headers=headers)

    def devices(self, *args):
        return self.broker.lk("devices", *args, *self.loc)

    def topic(self, kind, sub=None):
        t = f"/devices/{self.id}/{kind}"
        return t + "/" + sub if sub else t

    def downstream(self, kind, sub=None):
        t = f"latchkey/{self.project}/{self.region}/{self.registry}/{self.id}/{kind}"
        return t + "/" + sub if sub else t

    def presence_topic(self):
        """latchkey/P/presence/L/R/D: the retained presence (docs/plugin.md, "Presence")."""
        return f"latchkey/{self.project}/presence/{self.region}/{self.registry}/{self.id}"


def ensure_registry(broker, registry, project=PROJECT, region=REGION, *extra):
    r = broker.lk("registries", "create", registry, "--project", project, "--region", region, *extra)
    assert r.rc in (0, 12), r
    return registry


def make_device(broker, device_id, registry=REGISTRY, project=PROJECT, region=REGION,
                algs=("ES256",), expiration=None, extra=()):
    """A device with fresh keys of algs, registered as es256 / rsa public keys."""
    keys = [Key(broker.base, a) for a in algs]
    args = []
    for i, k in enumerate(keys):
        spec = f"path={k.path},type={k.type}"
        exp = expiration[i] if isinstance(expiration, (list, tuple)) else expiration
        if exp is not None:
            spec += f",expiration-time={exp}"
        args += ["--public-key", spec]
    r = broker.lk("devices", "create", device_id, "--registry", registry, "--project", project,
                  "--region", region, *args, *extra, "--format", "json")
    assert r.rc == 0, r
    return Dev(broker, device_id, registry, project, region, keys, int(json.loads(r.out)["numId"]))


def connect(broker, cid, password, username="unused", tls=False, **kw):
    """A connected client that does NOT reconnect by itself when the broker closes it
    (paho's loop_start would otherwise come back, hiding or confusing a close)."""
    c = broker.connect(cid, password, username=username, tls=tls, **kw)
    c._reconnect_on_failure = False
    return c


def connack(broker, cid, password, username="unused", tls=False, **kw):
    """The CONNACK return code: 0 (then disconnects cleanly) or the refusal code."""
    try:
        c = broker.connect(cid, password, username=username, tls=tls, **kw)
    except Refused as e:
        return e.rc
    c._reconnect_on_failure = False
    Broker.close(c)
    return 0


def close(c):
    try:
        Broker.close(c)
    except Exception:
        pass


def log_line(broker, *needles, timeout=3.0, after=0):
    """The first log line (from character offset `after`) holding every needle, or None."""
    deadline = time.time() + timeout
    while True:
        text = broker.log_text()[after:]
        for line in text.splitlines():
            if all(n in line for n in needles):
                return line
        if time.time() > deadline:
            return None
        time.sleep(0.05)


def assert_refused(broker, cid, password, reasons, username="unused", tls=False, name_in_log=True):
    """CONNACK 5 and one `latchkey: event=refused ...` log line naming the client and one of reasons
    (LK_ERR_ symbols or words); the token never in the log."""
    mark = len(broker.log_text())
    rc = connack(broker, cid, password, username=username, tls=tls)
    assert rc == CONNACK_NOT_AUTHORISED, f"{cid}: CONNACK {rc}, expected 5"
    needles = ["latchkey", "refused"] + ([cid] if name_in_log else [])
    line = log_line(broker, *needles, after=mark)
    assert line is not None, f"no refusal line for {cid!r}:\n{broker.log_text()[mark:][-3000:]}"
    if isinstance(reasons, str):
        reasons = [reasons]
    assert any(r.lower() in line.lower() for r in reasons), (reasons, line)
    for r in reasons:   # a refusal from the verifier or registry names its error symbol
        if r.startswith("LK_ERR_") and len(reasons) == 1:
            assert f"err={r}" in line, line
    assert_secret_not_logged(broker, password)
    return line


def assert_secret_not_logged(broker, secret):
    if not secret:
        return
    log = broker.log_text()
    assert secret not in log, "the token/secret appears in the broker log"
    if secret.count(".") == 2:
        sig = secret.split(".")[2].rstrip("=")
        if len(sig) >= 16:
            assert sig not in log, "the token's signature appears in the broker log"


def wait_disconnected(c, timeout):
    """Seconds until the broker closed c (time.time() of the close), or None."""
    if c.disconnected.wait(timeout):
        return time.time()
    return None


def still_connected(c, seconds):
    return not c.disconnected.wait(seconds)


def publish(c, topic, payload, qos=0, retain=False, timeout=3):
    info = c.publish(topic, payload, qos=qos, retain=retain)
    if qos:
        info.wait_for_publish(timeout)
    return info


def received(c, topic=None, payload=None, timeout=0.0):
    """Messages c has received (optionally on topic / with payload), waiting up to timeout for one."""
    deadline = time.time() + timeout
    with c.got:
        while True:
            msgs = [m for m in c.messages if (topic is None or m.topic == topic)
                    and (payload is None or m.payload == payload)]
            if msgs or time.time() >= deadline:
                return msgs
            c.got.wait(max(0.0, deadline - time.time()))


def backend_secret(broker, name, project=PROJECT):
    """`latchkey backends create NAME --project P`; xfail if the command does not exist yet."""
    r = broker.lk("backends", "create", name, "--project", project)
    if r.rc != 0 and ("backends" in r.err and ("unknown" in r.err.lower() or "usage" in r.err.lower())
                      or r.rc == 2):
        pytest.xfail(f"`latchkey backends create` not available yet: {r.err.strip()[:200]}")
    assert r.rc == 0, r
    out = r.out.strip()
    if out.startswith("{"):
        return json.loads(out)["secret"]
    for line in out.splitlines():
        if line.lower().startswith("secret"):
            return line.split(":", 1)[1].strip()
    return out.splitlines()[-1].strip()


def mosquitto_client(prog, broker, cid, password, *args, tls=True, username="unused", cafile=None,
                     timeout=10):
    """mosquitto_pub / mosquitto_sub (Debian's mosquitto-clients) against the broker."""
    cmd = [prog, "-h", broker.host, "-V", "mqttv311", "-i", cid]
    if tls:
        cmd += ["-p", str(broker.tls_port), "--cafile", str(cafile or broker.ca_path)]
    else:
        cmd += ["-p", str(broker.plain_port)]
    if username is not None:
        cmd += ["-u", username]
    if password is not None:
        cmd += ["-P", password]
    return subprocess.run(cmd + list(args), capture_output=True, timeout=timeout)
