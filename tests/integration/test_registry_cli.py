"""latchkey registries / devices: the administration tool against real SQLite files.

Issue 4's promise from the command line: operators manage the registry the
way they managed IoT Core (gcloud iot ...), from scripts (IoT Core's JSON
shapes, documented exit codes), without losing anything when two of them act
at once or a machine dies mid-write. Every refusal is checked for its exit
code, its message and for having written nothing (the database's dump is
compared before and after).
"""
import base64
import datetime
import hashlib
import json
import os
import pty
import select
import signal
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import BIN, run_tool, tool_argv

P, L, R = "proj-one", "us-central1", "reg-1"
LOC = ["--project", P, "--region", L]

# Exit codes (docs/cli.md).
USAGE, FILE_NOT_FOUND = 2, 3
NOT_FOUND, EXISTS, CONFLICT, LIMIT, INVALID, CERT, NOT_EMPTY, BUSY, STORAGE, IMPORT = range(11, 21)


# ---- helpers ----

def lkdb(db, *args, input=None, env=None):
    return run_tool("--db", db, *args, input=input, env=env)


def ok(r):
    assert r.rc == 0, r
    return r


def js(r):
    assert r.rc == 0, r
    return json.loads(r.out)


def refused(r, code, *words):
    """The command failed with code and a message naming what is wrong."""
    assert r.rc == code, r
    assert r.err.startswith("latchkey: "), r
    for w in words:
        assert w.lower() in r.err.lower(), (w, r)


def dump(db):
    """Everything in the database, to show that a refusal wrote nothing."""
    cp = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, text=True, check=True)
    return cp.stdout


def dev(db, *args, registry=R, **kw):
    return lkdb(db, "devices", *args, "--registry", registry, *LOC, **kw)


def describe(db, device, registry=R):
    return js(dev(db, "describe", device, "--format", "json", registry=registry))


def device_count(db, registry=R):
    n = 0
    for reg in js(lkdb(db, "registries", "list", "--format", "json")):
        if reg["id"] == registry:
            n = len(js(dev(db, "list", "--format", "json", registry=registry)))
    return n


def registry_devices(db, registry=R):
    """The DEVICES column of 'registries list' (cheap for big registries)."""
    r = ok(lkdb(db, "registries", "list", *LOC))
    lines = r.out.splitlines()
    head = lines[0].split()
    for line in lines[1:]:
        cells = line.split()
        if cells[0] == registry:
            return int(cells[head.index("DEVICES")])
    raise AssertionError(f"registry {registry} not listed: {r.out}")


def sha256_of(pem):
    """The fingerprint the tool shows: SHA-256 of the DER SubjectPublicKeyInfo."""
    pem = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        key = x509.load_pem_x509_certificate(pem).public_key()
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_cert(subject, key, issuer=None, issuer_key=None, ca=False, days=(-1, 365)):
    issuer = issuer or subject
    issuer_key = issuer_key or key
    t = now_utc()
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(t + datetime.timedelta(days=days[0]))
         .not_valid_after(t + datetime.timedelta(days=days[1]))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False), critical=True)
    return b.sign(issuer_key, hashes.SHA256())


class PKI:
    """A registry CA, device certificates it signed, an expired CA, and an
    unrelated CA with a device certificate of its own."""

    def __init__(self, d):
        d.mkdir(exist_ok=True)
        ca_key, other_key, old_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        self.ca = make_cert("Latchkey Test CA", ca_key, ca=True)
        self.other_ca = make_cert("Other CA", other_key, ca=True)
        self.expired_ca = make_cert("Expired CA", old_key, ca=True, days=(-30, -1))
        self.paths = {}

        def leaf(name, issuer, issuer_key, days=(-1, 30)):
            k = ec.generate_private_key(ec.SECP256R1())
            c = make_cert(name, k, issuer=issuer, issuer_key=issuer_key, days=days)
            return c

        self.dev_cert = leaf("dev-x509", "Latchkey Test CA", ca_key)
        self.dev_cert2 = leaf("dev-x509-2", "Latchkey Test CA", ca_key)
        self.other_cert = leaf("dev-other", "Other CA", other_key)
        for name in ("ca", "other_ca", "expired_ca", "dev_cert", "dev_cert2", "other_cert"):
            p = d / f"{name}.pem"
            p.write_text(pem_cert(getattr(self, name)))
            self.paths[name] = p


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Public keys from 'latchkey key generate': es1..es4 (P-256), rsa1 (RSA 2048)."""
    d = tmp_path_factory.mktemp("keys")
    store = d / "keys.lks"
    out = {}
    for name, alg in (("es1", "ES256"), ("es2", "ES256"), ("es3", "ES256"), ("es4", "ES256"), ("rsa1", "RS256")):
        r = run_tool("key", "generate", "--store", store, "--key", name, "--alg", alg)
        assert r.rc == 0, r
        p = d / f"{name}.pem"
        p.write_text(r.out)
        out[name] = p
    return out


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def db(tmp_path):
    """A database with one registry, R."""
    path = tmp_path / "registry.db"
    ok(lkdb(path, "registries", "create", R, *LOC))
    return path


# ---- the database ----

@pytest.mark.db_only("which file is the database, and only 'registries create' creates one")
def test_database_is_required_and_only_registries_create_makes_it(tmp_path):
    env = {"LATCHKEY_DB": ""}
    r = run_tool("registries", "list", env=env)
    refused(r, USAGE, "--db", "LATCHKEY_DB")
    missing = tmp_path / "nope.db"
    for args in (("registries", "list"), ("registries", "describe", R, *LOC),
                 ("devices", "create", "dev-1", "--registry", R, *LOC),
                 ("devices", "list", "--registry", R, *LOC)):
        refused(lkdb(missing, *args), NOT_FOUND, str(missing), "does not exist")
        assert not missing.exists()
    # LATCHKEY_DB selects it too, and --db may follow the command.
    r = run_tool("registries", "create", R, *LOC, env={"LATCHKEY_DB": str(missing)})
    ok(r)
    assert "created registry database" in r.err
    assert missing.exists()
    assert [x["id"] for x in js(run_tool("registries", "list", "--db", missing, "--format", "json"))] == [R]
    # an invalid name never creates a database
    other = tmp_path / "other.db"
    refused(lkdb(other, "registries", "create", "1bad", *LOC), INVALID, "registry id", "start with a letter")
    refused(lkdb(other, "registries", "create", "reg-x", "--project", "P", "--region", L), INVALID, "project")
    assert not other.exists()


# ---- registries ----

def test_registry_lifecycle_and_json_shape(tmp_path):
    path = tmp_path / "r.db"
    reg = js(lkdb(path, "registries", "create", R, *LOC, "--format", "json",
                  "--event-notification-config", f"topic=projects/{P}/topics/ev1,subfolder=sub",
                  "--event-notification-config", "topic=all",  # gcloud's shorthand: this project's
                  "--state-pubsub-topic", f"projects/{P}/topics/st1"))
    assert reg["id"] == R
    assert reg["name"] == f"projects/{P}/locations/{L}/registries/{R}"
    assert reg["mqttConfig"] == {"mqttEnabledState": "MQTT_ENABLED"}
    assert reg["httpConfig"] == {"httpEnabledState": "HTTP_ENABLED"}
    assert reg["eventNotificationConfigs"] == [
        {"subfolderMatches": "sub", "pubsubTopicName": f"projects/{P}/topics/ev1"},
        {"pubsubTopicName": f"projects/{P}/topics/all"}]
    assert reg["stateNotificationConfig"] == {"pubsubTopicName": f"projects/{P}/topics/st1"}
    assert "credentials" not in reg

    # --location is gcloud's alias; a full resource name works too
    ok(lkdb(path, "registries", "create", "reg-2", "--project", P, "--location", L))
    full = f"projects/{P}/locations/{L}/registries/reg-2"
    assert js(lkdb(path, "registries", "describe", full, "--format", "json"))["id"] == "reg-2"

    lst = js(lkdb(path, "registries", "list", "--format", "json"))
    assert [x["id"] for x in lst] == [R, "reg-2"]
    text = ok(lkdb(path, "registries", "list", *LOC)).out.splitlines()
    assert text[0].split() == ["ID", "PROJECT", "LOCATION", "MQTT", "HTTP", "CA_CERTS", "DEVICES"]
    assert text[1].split() == [R, P, L, "enabled", "enabled", "0", "0"]
    # columns are aligned: every row starts its second column at the same offset
    assert len({line.index(P) for line in text[1:]}) == 1

    before = dump(path)
    refused(lkdb(path, "registries", "create", R, *LOC), EXISTS, R)
    assert dump(path) == before
    refused(lkdb(path, "registries", "update", R, *LOC), USAGE, "nothing to update")

    upd = js(lkdb(path, "registries", "update", R, *LOC, "--no-enable-mqtt-config",
                  "--clear-event-notification-configs", "--format", "json"))
    assert upd["mqttConfig"] == {"mqttEnabledState": "MQTT_DISABLED"}
    assert upd["httpConfig"] == {"httpEnabledState": "HTTP_ENABLED"}
    assert "eventNotificationConfigs" not in upd
    assert upd["stateNotificationConfig"] == {"pubsubTopicName": f"projects/{P}/topics/st1"}

    desc = ok(lkdb(path, "registries", "describe", R, *LOC)).out
    assert "mqttEnabledState: MQTT_DISABLED" in desc
    assert f"name: projects/{P}/locations/{L}/registries/{R}" in desc

    ok(lkdb(path, "registries", "delete", R, *LOC))
    refused(lkdb(path, "registries", "describe", R, *LOC), NOT_FOUND)
    refused(lkdb(path, "registries", "delete", R, *LOC), NOT_FOUND)
    assert js(lkdb(path, "registries", "delete", "reg-2", *LOC, "--format", "json")) == {}
    assert js(lkdb(path, "registries", "list", "--format", "json")) == []


def test_delete_non_empty_registry_is_refused(db, keys):
    ok(dev(db, "create", "dev-1"))
    before = dump(db)
    refused(lkdb(db, "registries", "delete", R, *LOC), NOT_EMPTY)
    assert dump(db) == before
    ok(dev(db, "delete", "dev-1"))
    ok(lkdb(db, "registries", "delete", R, *LOC))


def test_registry_ca_credentials(db, pki):
    r = js(lkdb(db, "registries", "credentials", "create", "--registry", R, *LOC,
                "--path", pki.paths["ca"], "--format", "json"))
    pkc = r["publicKeyCertificate"]
    assert pkc["format"] == "X509_CERTIFICATE_PEM"
    assert pkc["certificate"].strip() == pem_cert(pki.ca).strip()
    det = pkc["x509Details"]
    assert "Latchkey Test CA" in det["subject"] and "Latchkey Test CA" in det["issuer"]
    for k in ("startTime", "expiryTime"):
        assert det[k].endswith("Z") and "T" in det[k]
    assert "256" in det["publicKeyType"]

    lst = js(lkdb(db, "registries", "credentials", "list", "--registry", R, *LOC, "--format", "json"))
    assert len(lst) == 1
    text = ok(lkdb(db, "registries", "credentials", "list", "--registry", R, *LOC)).out
    assert text.splitlines()[0].split()[:2] == ["INDEX", "SUBJECT"]
    reg = js(lkdb(db, "registries", "describe", R, *LOC, "--format", "json"))
    assert len(reg["credentials"]) == 1
    assert js(lkdb(db, "registries", "list", "--format", "json"))[0]["credentials"] == reg["credentials"]

    one = js(lkdb(db, "registries", "credentials", "describe", "0", "--registry", R, *LOC, "--format", "json"))
    assert one == lst[0]
    refused(lkdb(db, "registries", "credentials", "describe", "5", "--registry", R, *LOC), NOT_FOUND)

    # a file that is not a certificate
    bad = db.parent / "bad.pem"
    bad.write_text("hello\n")
    before = dump(db)
    r = lkdb(db, "registries", "credentials", "create", "--registry", R, *LOC, "--path", bad)
    assert r.rc in (INVALID, CERT), r
    assert dump(db) == before

    ok(lkdb(db, "registries", "credentials", "delete", "0", "--registry", R, *LOC))
    assert js(lkdb(db, "registries", "credentials", "list", "--registry", R, *LOC, "--format", "json")) == []

    # create with --public-key-path: the CA comes with the registry ...
    reg2 = js(lkdb(db, "registries", "create", "reg-ca", *LOC, "--public-key-path", pki.paths["ca"],
                   "--format", "json"))
    assert len(reg2["credentials"]) == 1
    # ... and a refused CA leaves no registry behind
    r = lkdb(db, "registries", "create", "reg-bad", *LOC, "--public-key-path", bad)
    assert r.rc in (INVALID, CERT), r
    refused(lkdb(db, "registries", "describe", "reg-bad", *LOC), NOT_FOUND)


# ---- devices ----

def test_device_lifecycle_and_json_shape(db, keys, tmp_path):
    es1 = keys["es1"].read_text()
    big = tmp_path / "value.txt"
    big.write_text("line one\nline two\n")
    d = js(dev(db, "create", "dev-1", "--public-key", f"path={keys['es1']},type=es256",
               "--public-key", f"path={keys['rsa1']},type=rsa,expiration-time=2031-02-03T04:05:06Z",
               "--blocked", "--metadata", "site=berlin,floor=3", "--metadata-from-file", f"notes={big}",
               "--format", "json"))
    assert d["id"] == "dev-1"
    assert d["numId"].isdigit() and int(d["numId"]) > 0
    assert d["name"] == f"projects/{P}/locations/{L}/registries/{R}/devices/{d['numId']}"
    assert d["blocked"] is True
    assert d["credentials"][0] == {"publicKey": {"format": "ES256_PEM", "key": es1},
                                   "expirationTime": "1970-01-01T00:00:00Z", "sha256": sha256_of(es1)}
    assert d["credentials"][1]["sha256"] == sha256_of(keys["rsa1"].read_text())
    assert d["credentials"][1]["publicKey"]["format"] == "RSA_PEM"
    assert d["credentials"][1]["expirationTime"] == "2031-02-03T04:05:06Z"
    assert d["metadata"] == {"site": "berlin", "floor": "3", "notes": "line one\nline two\n"}
    assert d["config"]["version"] == "1"
    assert d["config"]["binaryData"] == ""
    assert d["config"]["cloudUpdateTime"].endswith("Z")
    assert "state" not in d

    # describe by id, numId and full name give the same document
    assert describe(db, "dev-1") == d
    assert describe(db, d["numId"]) == d
    by_name = d["name"].rsplit("/", 1)[0] + "/dev-1"
    assert js(lkdb(db, "devices", "describe", by_name, "--format", "json")) == d
    assert js(lkdb(db, "devices", "describe", d["name"], "--format", "json")) == d
    assert js(lkdb(db, "devices", "describe", "--device", "dev-1", "--registry", R, *LOC,
                   "--format", "json")) == d
    text = ok(dev(db, "describe", "dev-1")).out
    assert "id: dev-1" in text and f"numId: '{d['numId']}'" in text and "format: ES256_PEM" in text
    assert "-----BEGIN PUBLIC KEY-----" in text

    r = ok(dev(db, "create", "dev-2"))
    assert "Created device [dev-2]" in r.out
    lst = js(dev(db, "list", "--format", "json"))
    assert [x["id"] for x in lst] == ["dev-1", "dev-2"]
    assert lst[0]["numId"] == d["numId"] and lst[0]["credentials"] == d["credentials"]
    assert [x["id"] for x in js(dev(db, "list", "--limit", "1", "--format", "json"))] == ["dev-1"]
    rows = ok(dev(db, "list")).out.splitlines()
    assert rows[0].split() == ["ID", "NUM_ID", "BLOCKED", "CREDENTIALS", "CONFIG_VERSION", "LAST_SEEN", "PRESENCE"]
    assert rows[1].split() == ["dev-1", d["numId"], "true", "2", "1", "-", "never"]

    u = js(dev(db, "update", "dev-1", "--unblocked", "--metadata", "site=paris", "--format", "json"))
    assert u["blocked"] is False and u["metadata"] == {"site": "paris"}
    assert u["credentials"] == d["credentials"]
    u = js(dev(db, "update", "dev-1", "--clear-metadata", "--format", "json"))
    assert "metadata" not in u
    ok(dev(db, "update", "dev-1", "--blocked"))
    assert describe(db, "dev-1")["blocked"] is True
    refused(dev(db, "update", "dev-1"), USAGE, "nothing to update")

    ok(dev(db, "delete", "dev-1"))
    refused(dev(db, "describe", "dev-1"), NOT_FOUND)
    assert js(dev(db, "delete", "dev-2", "--format", "json")) == {}
    assert js(dev(db, "list", "--format", "json")) == []


def test_device_refusals_write_nothing(db, keys, tmp_path):
    ok(dev(db, "create", "dev-1", "--public-key", f"path={keys['es1']},type=es256"))
    before_dev = describe(db, "dev-1")
    before = dump(db)

    def same():
        assert dump(db) == before
        assert describe(db, "dev-1") == before_dev

    refused(dev(db, "create", "1dev"), INVALID, "device id", "letter")
    refused(dev(db, "create", "goog-dev"), INVALID, "goog")
    refused(dev(db, "create", "dev/1"), INVALID, "device id")
    refused(dev(db, "create", "dev-1"), EXISTS, "dev-1")
    refused(dev(db, "create", "dev-9", registry="no-such-reg"), NOT_FOUND)
    refused(dev(db, "describe", "dev-9"), NOT_FOUND)
    refused(dev(db, "update", "dev-9", "--blocked"), NOT_FOUND)
    refused(dev(db, "delete", "dev-9"), NOT_FOUND)
    refused(dev(db, "describe", "999999"), NOT_FOUND)
    # credentials: a type that does not match the key, garbage, a private key
    refused(dev(db, "create", "dev-3", "--public-key", f"path={keys['es1']},type=rsa"), INVALID)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    refused(dev(db, "create", "dev-3", "--public-key", f"path={junk},type=es256"), INVALID)
    refused(dev(db, "create", "dev-3", "--public-key", f"path={keys['es1']},type=dsa"), USAGE, "type", "es256")
    refused(dev(db, "create", "dev-3", "--public-key", f"path={keys['es1']}"), USAGE, "type")
    refused(dev(db, "create", "dev-3", "--public-key", f"path={tmp_path / 'missing.pem'},type=es256"),
            FILE_NOT_FOUND, "missing.pem")
    refused(dev(db, "create", "dev-3", "--public-key",
                f"path={keys['es1']},type=es256,expiration-time=tomorrow"), USAGE, "expiration")
    # a fourth credential
    four = [a for k in ("es1", "es2", "es3", "es4") for a in ("--public-key", f"path={keys[k]},type=es256")]
    refused(dev(db, "create", "dev-3", *four), LIMIT, "3")
    # metadata: a bad key, a duplicate key, a value that is too long
    refused(dev(db, "create", "dev-3", "--metadata", "1x=y"), INVALID, "metadata")
    refused(dev(db, "create", "dev-3", "--metadata", "a=1", "--metadata", "a=2"), USAGE, "twice")
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (32 * 1024 + 1))
    r = dev(db, "create", "dev-3", "--metadata-from-file", f"big={big}")
    assert r.rc in (LIMIT, INVALID), r
    refused(dev(db, "create", "dev-3", "--metadata", "novalue"), USAGE, "KEY=VALUE")
    refused(dev(db, "create", "dev-3", "--version-to-update", "3"), USAGE, "not an option")
    same()


def test_device_credentials(db, keys):
    ok(dev(db, "create", "dev-1", "--public-key", f"path={keys['es1']},type=es256"))
    d = js(dev(db, "credentials", "create", "dev-1", "--path", keys["es2"], "--type", "es256",
               "--expiration-time", "2030-01-01", "--format", "json"))
    assert len(d["credentials"]) == 2
    assert d["credentials"][1]["expirationTime"] == "2030-01-01T00:00:00Z"
    ok(dev(db, "credentials", "create", "--device", "dev-1", "--path", keys["rsa1"], "--type", "RSA_PEM",
           "--expiration-time", "1900000000"))
    lst = js(dev(db, "credentials", "list", "dev-1", "--format", "json"))
    assert [c["publicKey"]["format"] for c in lst] == ["ES256_PEM", "ES256_PEM", "RSA_PEM"]
    assert lst[2]["expirationTime"] == "2030-03-17T17:46:40Z"
    rows = ok(dev(db, "credentials", "list", "dev-1")).out.splitlines()
    assert rows[0].split() == ["INDEX", "FORMAT", "EXPIRATION_TIME", "SHA256"]
    assert rows[1].split() == ["0", "ES256_PEM", "never", sha256_of(keys["es1"].read_text())]
    # credentials told apart: each fingerprint is that of its own key (describe and list agree)
    assert [c["sha256"] for c in lst] == [sha256_of(keys[k].read_text()) for k in ("es1", "es2", "rsa1")]
    assert [r.split()[3] for r in rows[1:]] == [c["sha256"] for c in lst]
    assert [c["sha256"] for c in describe(db, "dev-1")["credentials"]] == [c["sha256"] for c in lst]
    assert f"sha256: {lst[1]['sha256']}" in ok(dev(db, "describe", "dev-1")).out
    assert js(dev(db, "credentials", "describe", "dev-1", "2", "--format", "json")) == lst[2]

    before = dump(db)
    refused(dev(db, "credentials", "create", "dev-1", "--path", keys["es3"], "--type", "es256"), LIMIT)
    refused(dev(db, "credentials", "delete", "dev-1", "7"), NOT_FOUND)
    refused(dev(db, "credentials", "delete", "dev-1"), USAGE, "INDEX")
    refused(dev(db, "credentials", "create", "dev-9", "--path", keys["es3"], "--type", "es256"), NOT_FOUND)
    assert dump(db) == before

    ok(dev(db, "credentials", "delete", "dev-1", "0"))
    lst2 = js(dev(db, "credentials", "list", "dev-1", "--format", "json"))
    assert lst2 == lst[1:]
    ok(dev(db, "credentials", "delete", "1", "--device", "dev-1"))
    assert js(dev(db, "credentials", "list", "dev-1", "--format", "json")) == [lst[1]]


def test_device_certificates_and_registry_ca(db, keys, pki):
    # without a CA: bare keys and self-signed certificates are accepted
    ok(dev(db, "create", "dev-self", "--public-key", f"path={pki.paths['other_ca']},type=es256-x509"))
    ok(lkdb(db, "registries", "credentials", "create", "--registry", R, *LOC, "--path", pki.paths["ca"]))
    d = js(dev(db, "create", "dev-x509", "--public-key", f"path={pki.paths['dev_cert']},type=es256-x509",
               "--format", "json"))
    assert d["credentials"][0]["publicKey"]["format"] == "ES256_X509_PEM"
    before_dev = describe(db, "dev-x509")
    before = dump(db)
    # bare key, certificate of another CA, the CA itself: refused, nothing written
    refused(dev(db, "create", "dev-bare", "--public-key", f"path={keys['es1']},type=es256"), CERT)
    refused(dev(db, "create", "dev-other", "--public-key", f"path={pki.paths['other_cert']},type=es256-x509"),
            CERT)
    refused(dev(db, "create", "dev-ca", "--public-key", f"path={pki.paths['ca']},type=es256-x509"), CERT)
    refused(dev(db, "credentials", "create", "dev-x509", "--path", keys["es1"], "--type", "es256"), CERT)
    refused(dev(db, "credentials", "create", "dev-x509", "--path", pki.paths["other_cert"],
                "--type", "es256-x509"), CERT)
    assert dump(db) == before
    assert describe(db, "dev-x509") == before_dev
    ok(dev(db, "credentials", "create", "dev-x509", "--path", pki.paths["dev_cert2"], "--type", "es256-x509"))


def test_expired_registry_ca(db, pki, tmp_path):
    """IoT Core checked the CA's validity: an expired CA cannot be added, and a
    device signed by a registry CA that has expired since is refused."""
    before = dump(db)
    refused(lkdb(db, "registries", "credentials", "create", "--registry", R, *LOC,
                 "--path", pki.paths["expired_ca"]), CERT, "expired")
    assert dump(db) == before

    # a CA that expires a few seconds from now, and a device certificate it signs
    ca_key, dev_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    t = now_utc()
    ca = (x509.CertificateBuilder()
          .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Short CA")]))
          .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Short CA")]))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(t - datetime.timedelta(days=1)).not_valid_after(t + datetime.timedelta(seconds=3))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = make_cert("dev-short", dev_key, issuer="Short CA", issuer_key=ca_key)
    (tmp_path / "short_ca.pem").write_text(pem_cert(ca))
    (tmp_path / "short_dev.pem").write_text(pem_cert(leaf))
    ok(lkdb(db, "registries", "credentials", "create", "--registry", R, *LOC, "--path", tmp_path / "short_ca.pem"))
    time.sleep(max(0.0, (t + datetime.timedelta(seconds=5) - now_utc()).total_seconds()))
    before = dump(db)
    refused(dev(db, "create", "dev-short", "--public-key", f"path={tmp_path / 'short_dev.pem'},type=es256-x509"),
            CERT, "expired")
    assert dump(db) == before


# ---- configs and states ----

def test_configs(db, tmp_path):
    ok(dev(db, "create", "dev-1"))
    c = js(dev(db, "configs", "update", "dev-1", "--config-data", "hello", "--format", "json"))
    assert c["version"] == "2" and base64.b64decode(c["binaryData"]) == b"hello"
    assert c["cloudUpdateTime"].endswith("Z")
    blob = bytes(range(256)) * 4
    f = tmp_path / "cfg.bin"
    f.write_bytes(blob)
    c = js(dev(db, "configs", "update", "--device", "dev-1", "--config-file", f, "--version-to-update", "2",
               "--format", "json"))
    assert c["version"] == "3" and base64.b64decode(c["binaryData"]) == blob
    text = ok(dev(db, "configs", "update", "dev-1", "--config-data", "x", "--version-to-update", "0")).out
    assert "version: '4'" in text

    before_dev = describe(db, "dev-1")
    before = dump(db)
    refused(dev(db, "configs", "update", "dev-1", "--config-data", "y", "--version-to-update", "3"),
            CONFLICT)
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * 65537)
    refused(dev(db, "configs", "update", "dev-1", "--config-file", big), LIMIT, "65536")
    refused(dev(db, "configs", "update", "dev-1", "--config-data", "z" * 65537), LIMIT)
    refused(dev(db, "configs", "update", "dev-1"), USAGE, "--config-file")
    refused(dev(db, "configs", "update", "dev-1", "--config-data", "a", "--config-file", f), USAGE)
    refused(dev(db, "configs", "update", "dev-1", "--config-data", "a", "--version-to-update", "x"), USAGE)
    refused(dev(db, "configs", "update", "dev-9", "--config-data", "a"), NOT_FOUND)
    assert dump(db) == before
    assert describe(db, "dev-1") == before_dev
    # exactly 64 KiB is allowed
    f.write_bytes(b"q" * 65536)
    ok(dev(db, "configs", "update", "dev-1", "--config-file", f))

    lst = js(dev(db, "configs", "list", "dev-1", "--format", "json"))
    assert [x["version"] for x in lst] == ["5", "4", "3", "2", "1"]
    assert base64.b64decode(lst[2]["binaryData"]) == blob
    assert [x["version"] for x in js(dev(db, "configs", "list", "dev-1", "--limit", "2", "--format", "json"))] \
        == ["5", "4"]
    rows = ok(dev(db, "configs", "list", "dev-1")).out.splitlines()
    assert rows[0].split() == ["VERSION", "CLOUD_UPDATE_TIME", "DEVICE_ACK_TIME", "BYTES"]
    assert rows[1].split()[0] == "5" and rows[1].split()[-1] == "65536"
    assert js(dev(db, "configs", "describe", "dev-1", "--format", "json")) == lst[0]
    assert describe(db, "dev-1")["config"] == lst[0]
    # only the newest 10 are kept
    for i in range(12):
        ok(dev(db, "configs", "update", "dev-1", "--config-data", f"v{i}"))
    lst = js(dev(db, "configs", "list", "dev-1", "--format", "json"))
    assert len(lst) == 10 and lst[0]["version"] == "17"


def test_states_list(db):
    ok(dev(db, "create", "dev-1"))
    assert js(dev(db, "states", "list", "dev-1", "--format", "json")) == []
    assert ok(dev(db, "states", "list", "dev-1")).out.split() == ["UPDATE_TIME", "BYTES"]
    refused(dev(db, "states", "list", "dev-9"), NOT_FOUND)


def test_gateways_bind_unbind_and_list(db):
    """gcloud iot devices gateways ..., devices create --device-type/--auth-method, devices list's
    gateway filters; every refusal with its exit code and nothing written."""
    ok(dev(db, "create", "gw-1", "--device-type", "gateway", "--auth-method", "association-only"))
    ok(dev(db, "create", "gw-2", "--device-type", "GATEWAY", "--auth-method", "DEVICE_AUTH_TOKEN_ONLY"))
    n1 = js(dev(db, "create", "node-1", "--format", "json"))["numId"]
    ok(dev(db, "create", "node-2", "--device-type", "non-gateway"))
    assert describe(db, "gw-1")["gatewayConfig"] == {"gatewayType": "GATEWAY", "gatewayAuthMethod": "ASSOCIATION_ONLY"}
    before = dump(db)
    refused(dev(db, "create", "gw-3", "--auth-method", "association-only"), USAGE, "--device-type gateway")
    refused(dev(db, "create", "gw-3", "--device-type", "router"), USAGE, "gateway, non-gateway")
    refused(dev(db, "create", "gw-3", "--device-type", "gateway", "--auth-method", "sometimes"), USAGE,
            "association-only")
    assert dump(db) == before

    def gw(*args):
        return lkdb(db, "devices", "gateways", *args, *LOC)
    assert ok(gw("bind", "--gateway", "gw-1", "--device", "node-1", "--registry", R)).out == \
        "Bound device [node-1] to gateway [gw-1].\n"
    # gcloud's resource flags; ids or numIds
    ok(gw("bind", "--gateway", "gw-1", "--device", "node-2", "--gateway-registry", R, "--device-registry", R,
          "--gateway-region", L, "--device-region", L))
    assert js(gw("bind", "--gateway", "gw-2", "--device", n1, "--registry", R, "--format", "json")) == {}
    ok(gw("bind", "--gateway", "gw-1", "--device", "node-1", "--registry", R))          # again: nothing changes

    def ids(r):
        return [d["id"] for d in js(r)]
    assert ids(gw("list-bound-devices", "--gateway", "gw-1", "--registry", R, "--format", "json")) == \
        ["node-1", "node-2"]
    assert ids(gw("list", "--registry", R, "--format", "json")) == ["gw-1", "gw-2"]
    assert ids(gw("list", "--registry", R, "--device", "node-1", "--format", "json")) == ["gw-1", "gw-2"]
    assert ids(dev(db, "list", "--device-type", "non-gateway", "--format", "json")) == ["node-1", "node-2"]
    assert ids(dev(db, "list", "--device-type", "gateway", "--format", "json")) == ["gw-1", "gw-2"]
    assert ids(dev(db, "list", "--gateway", "gw-2", "--format", "json")) == ["node-1"]
    assert ids(dev(db, "list", "--associations-device-id", "node-2", "--format", "json")) == ["gw-1"]
    assert ids(dev(db, "list", "--gateway", "gw-1", "--limit", "1", "--format", "json")) == ["node-1"]
    table = ok(gw("list-bound-devices", "--gateway", "gw-1", "--registry", R)).out.splitlines()
    assert table[0].split()[:2] == ["ID", "NUM_ID"] and [l.split()[0] for l in table[1:]] == ["node-1", "node-2"]

    before = dump(db)
    refused(gw("bind", "--gateway", "node-1", "--device", "node-2", "--registry", R), INVALID, "not a gateway")
    refused(gw("bind", "--gateway", "gw-1", "--device", "gw-2", "--registry", R), INVALID)
    refused(gw("bind", "--gateway", "gw-1", "--device", "ghost", "--registry", R), NOT_FOUND, "ghost")
    refused(gw("bind", "--gateway", "gw-1", "--device", "node-2", "--gateway-registry", R, "--device-registry",
               "reg-2"), INVALID, "different registries")
    refused(gw("bind", "--gateway", "gw-1", "--registry", R), USAGE, "--device")
    refused(gw("unbind", "--gateway", "gw-2", "--device", "node-2", "--registry", R), NOT_FOUND, "not bound")
    refused(gw("list-bound-devices", "--registry", R), USAGE, "--gateway")
    refused(gw("list-bound-devices", "--gateway", "gw-1", "--device", "node-1", "--registry", R), USAGE,
            "gateways list --device")
    refused(gw("list-bound-devices", "--gateway", "nobody", "--registry", R), NOT_FOUND, "nobody")
    refused(dev(db, "list", "--gateway", "gw-1", "--device-type", "gateway"), USAGE, "exclude")
    refused(gw("frobnicate"), USAGE, "unknown")
    assert dump(db) == before

    assert ok(gw("unbind", "--gateway", "gw-1", "--device", "node-1", "--registry", R)).out == \
        "Unbound device [node-1] from gateway [gw-1].\n"
    assert ids(gw("list-bound-devices", "--gateway", "gw-1", "--registry", R, "--format", "json")) == ["node-2"]
    # a gateway's auth method changes (devices update --auth-method, gcloud's)
    ok(dev(db, "update", "gw-2", "--auth-method", "association-and-device-auth-token"))
    assert describe(db, "gw-2")["gatewayConfig"]["gatewayAuthMethod"] == "ASSOCIATION_AND_DEVICE_AUTH_TOKEN"
    assert "list-bound-devices" in ok(run_tool("devices", "gateways", "--help")).out


def test_usage_errors(db):
    refused(lkdb(db, "devices", "frobnicate"), USAGE, "unknown")
    refused(lkdb(db, "registries", "frobnicate"), USAGE, "unknown")
    refused(dev(db, "list", "--format", "xml"), USAGE, "json")
    refused(lkdb(db, "devices", "list", *LOC), USAGE, "--registry")
    refused(lkdb(db, "devices", "list", "--registry", R, "--region", L), USAGE, "--project")
    refused(run_tool("devices", "list", "--registry", R, "--project", P, "--db", db), USAGE, "--region")
    # environment defaults for project and region
    assert js(lkdb(db, "devices", "list", "--registry", R, "--format", "json",
                   env={"LATCHKEY_PROJECT": P, "LATCHKEY_REGION": L})) == []
    assert "create REGISTRY" in ok(run_tool("registries", "--help")).out
    assert "import" in ok(run_tool("devices", "--help")).out
    assert "JSON lines" in ok(run_tool("devices", "import", "--help")).out
    assert "registries" in ok(run_tool("--help")).out


# ---- concurrency ----

def test_two_operators_racing_on_a_config_version(db):
    """Two processes update the same device's config from the same version at
    the same moment: each round exactly one wins, the other is told."""
    ok(dev(db, "create", "dev-1"))
    rounds = 25
    args = ["--db", str(db), "devices", "configs", "update", "dev-1", "--registry", R, *LOC]
    for i in range(rounds):
        version = int(describe(db, "dev-1")["config"]["version"])
        procs = [subprocess.Popen(tool_argv(*args, "--config-data", f"round {i} from {w}",
                                            "--version-to-update", str(version)),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for w in ("a", "b")]
        results = [(p.wait(timeout=60), p.stdout.read(), p.stderr.read()) for p in procs]
        for p in procs:
            p.stdout.close()
            p.stderr.close()
        codes = sorted(r[0] for r in results)
        assert codes == [0, CONFLICT], results
        loser = [r for r in results if r[0] == CONFLICT][0]
        assert "LK_ERR_REG_CONFLICT" in loser[2]
        winner = [r for r in results if r[0] == 0][0]
        cfg = describe(db, "dev-1")["config"]
        assert cfg["version"] == str(version + 1)
        assert f"version: '{version + 1}'" in winner[1]
        assert base64.b64decode(cfg["binaryData"]).decode().startswith(f"round {i} from ")
    assert describe(db, "dev-1")["config"]["version"] == str(1 + rounds)


def test_two_operators_creating_the_same_device(db):
    """Many processes create the same device at once: one wins, none corrupts."""
    procs = [subprocess.Popen(tool_argv("--db", db, "devices", "create", "dev-race",
                                        "--registry", R, *LOC, "--metadata", f"who=w{w}"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for w in range(6)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    for p in procs:
        p.stderr.close()
    assert codes == [0] + [EXISTS] * 5
    assert len(js(dev(db, "list", "--format", "json"))) == 1


def test_busy_database(db):
    """A writer that cannot get the write lock within --busy-timeout gives up
    with exit 18 and writes nothing; readers are not blocked (WAL)."""
    import sqlite3
    ok(dev(db, "create", "dev-1"))
    before = describe(db, "dev-1")
    holder = sqlite3.connect(str(db), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        t0 = time.monotonic()
        refused(dev(db, "configs", "update", "dev-1", "--config-data", "x", "--busy-timeout", "300"), BUSY)
        assert time.monotonic() - t0 >= 0.25
        refused(dev(db, "create", "dev-2", "--busy-timeout", "100"), BUSY)
        assert describe(db, "dev-1") == before
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert describe(db, "dev-1") == before
    ok(dev(db, "create", "dev-2"))


# ---- import ----

def write_lines(path, objs):
    with open(path, "w") as f:
        for o in objs:
            f.write((o if isinstance(o, str) else json.dumps(o)) + "\n")


def test_import_formats_and_summary(db, keys, tmp_path):
    es1, rsa1 = keys["es1"].read_text(), keys["rsa1"].read_text()
    f = tmp_path / "devs.jsonl"
    write_lines(f, [
        {"id": "imp-1", "credentials": [{"publicKey": {"format": "ES256_PEM", "key": es1},
                                         "expirationTime": "2031-01-01T00:00:00Z"}],
         "blocked": True, "metadata": {"a": "1", "b": "two"}, "config": base64.b64encode(b"cfg-1").decode()},
        "",
        {"id": "imp-2", "credentials": [{"format": "RSA_PEM", "key": rsa1, "expirationTime": 1900000000},
                                        {"format": "ES256_PEM", "key": es1}],
         "config": {"binaryData": base64.b64encode(b"\x00\x01\xff").decode()}},
        {"id": "imp-3"},
    ])
    r = ok(dev(db, "import", f))
    assert r.err == ""  # no progress when standard error is not a terminal
    assert "Imported 3 devices" in r.out and "devices/s" in r.out
    d1 = describe(db, "imp-1")
    assert d1["blocked"] is True and d1["metadata"] == {"a": "1", "b": "two"}
    assert d1["credentials"] == [{"publicKey": {"format": "ES256_PEM", "key": es1}, "sha256": sha256_of(es1),
                                  "expirationTime": "2031-01-01T00:00:00Z"}]
    assert d1["config"]["version"] == "1" and base64.b64decode(d1["config"]["binaryData"]) == b"cfg-1"
    d2 = describe(db, "imp-2")
    assert [c["publicKey"]["format"] for c in d2["credentials"]] == ["RSA_PEM", "ES256_PEM"]
    assert d2["credentials"][0]["expirationTime"] == "2030-03-17T17:46:40Z"
    assert base64.b64decode(d2["config"]["binaryData"]) == b"\x00\x01\xff"
    assert describe(db, "imp-3")["credentials"] == []

    # IoT Core JSON round trip: 'devices list --format json' output imports into another registry
    ok(lkdb(db, "registries", "create", "reg-2", *LOC))
    listed = js(dev(db, "list", "--format", "json"))
    g = tmp_path / "export.jsonl"
    write_lines(g, listed)
    s = js(dev(db, "import", g, "--format", "json", registry="reg-2"))
    assert s["imported"] == 3 and s["lines"] == 3 and s["seconds"] >= 0
    for a in listed:
        b = describe(db, a["id"], registry="reg-2")
        for k in ("credentials", "blocked"):
            assert a[k] == b[k]
        assert a.get("metadata") == b.get("metadata")
        assert b["numId"] != a["numId"]
    # from standard input
    ok(dev(db, "import", "-", input=json.dumps({"id": "imp-stdin"}) + "\n"))
    describe(db, "imp-stdin")


def test_import_with_bad_lines_imports_nothing(db, keys, tmp_path):
    es1 = keys["es1"].read_text()
    good = {"id": "ok-1", "credentials": [{"publicKey": {"format": "ES256_PEM", "key": es1}}]}
    f = tmp_path / "bad.jsonl"
    write_lines(f, [
        good,                                                    # 1
        {"id": "ok-2"},                                          # 2
        {"id": "1bad"},                                          # 3 invalid id
        '{"id": "dup-key", "id": "again"}',                      # 4 duplicate JSON key
        '{"id": "trunc"',                                        # 5 not JSON
        {"id": "ok-1"},                                          # 6 same id as line 1
        {"id": "x-fmt", "credentials": [{"format": "DSA_PEM", "key": es1}]},  # 7
        {"id": "x-field", "blokced": True},                      # 8 typo: unknown field
        {"id": "x-four", "credentials": [{"format": "ES256_PEM", "key": es1}] * 4},  # 9
        {"id": "x-cfg", "config": "not base64!"},                # 10
        {"id": "x-big", "config": base64.b64encode(b"c" * 65537).decode()},  # 11
        [1, 2],                                                  # 12 not an object
        {"id": "ok-3"},                                          # 13
    ])
    before = dump(db)
    r = dev(db, "import", f)
    assert r.rc == IMPORT, r
    for n in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12):
        assert f"line {n}:" in r.err, (n, r.err)
    for n in (1, 2, 13):
        assert f"line {n}:" not in r.err
    line3 = [x for x in r.err.splitlines() if "line 3:" in x][0]
    assert "'1bad'" in line3 and "device id" in line3 and "LK_ERR_REG_INVALID" in line3
    assert "blokced" in r.err and "DSA_PEM" in r.err
    assert "10 of 13 lines refused; nothing was imported" in r.err
    assert r.out == ""
    assert dump(db) == before
    refused(dev(db, "describe", "ok-1"), NOT_FOUND)
    # the JSON summary lists the refused lines for scripts
    r = dev(db, "import", f, "--format", "json")
    assert r.rc == IMPORT
    s = json.loads(r.out)
    assert s["imported"] == 0 and s["refused"] == 10
    assert [e["line"] for e in s["errors"]] == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert s["errors"][0]["id"] == "1bad" and s["errors"][0]["error"] == "LK_ERR_REG_INVALID"
    assert dump(db) == before
    # a line over 1 MiB is refused without reading it whole
    g = tmp_path / "long.jsonl"
    write_lines(g, [{"id": "ok-1"}, {"id": "long", "metadata": {"k": "v" * (1 << 20)}}])
    r = dev(db, "import", g)
    assert r.rc == IMPORT and "line 2:" in r.err and "1048576" in r.err, r
    # an existing device id refuses the whole import too
    ok(dev(db, "create", "ok-2"))
    before = dump(db)
    write_lines(g, [{"id": "new-1"}, {"id": "ok-2"}])
    r = dev(db, "import", g)
    assert r.rc == IMPORT and "line 2: device 'ok-2'" in r.err, r
    assert dump(db) == before
    refused(dev(db, "import", tmp_path / "missing.jsonl"), FILE_NOT_FOUND)
    refused(dev(db, "import", g, registry="reg-none"), NOT_FOUND)


N_BIG = 50_000


@pytest.fixture(scope="module")
def big_import(tmp_path_factory, keys):
    d = tmp_path_factory.mktemp("big")
    key = keys["es1"].read_text()
    f = d / "big.jsonl"
    with open(f, "w") as out:
        for i in range(N_BIG):
            out.write(json.dumps({"id": f"bulk-{i:06d}", "credentials": [{"publicKey": {
                "format": "ES256_PEM", "key": key}}], "metadata": {"n": str(i)}}) + "\n")
    return f


def fresh_db(tmp_path, name):
    path = tmp_path / name
    ok(lkdb(path, "registries", "create", R, *LOC))
    return path


def check_all_or_nothing(db):
    cp = subprocess.run(["sqlite3", str(db), "PRAGMA integrity_check"], capture_output=True, text=True)
    assert cp.returncode == 0 and cp.stdout.strip() == "ok", cp
    n = registry_devices(db)
    assert n in (0, N_BIG), n
    return n


def test_big_import_and_kill_at_any_moment(tmp_path, big_import):
    # the whole import, to know how long it takes
    db = fresh_db(tmp_path, "full.db")
    t0 = time.monotonic()
    r = ok(dev(db, "import", big_import))
    full = time.monotonic() - t0
    assert f"Imported {N_BIG} devices" in r.out
    assert check_all_or_nothing(db) == N_BIG
    assert describe(db, f"bulk-{N_BIG - 1:06d}")["metadata"] == {"n": str(N_BIG - 1)}

    # killed with SIGKILL at different moments: never a partial import
    outcomes = []
    for k, frac in enumerate((0.05, 0.2, 0.4, 0.6, 0.8, 0.95, 1.1)):
        db = fresh_db(tmp_path, f"kill-{k}.db")
        p = subprocess.Popen([str(BIN / "latchkey"), "--db", str(db), "devices", "import", str(big_import),
                              "--registry", R, *LOC], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(full * frac)
        p.send_signal(signal.SIGKILL)
        p.wait()
        outcomes.append(check_all_or_nothing(db))
        # the database stays usable for writers
        ok(dev(db, "create", "after-kill"))
        ok(dev(db, "delete", "after-kill"))
    assert 0 in outcomes  # at least one kill landed before the commit
    # after a kill, the same import runs to the end
    db = tmp_path / "kill-0.db"
    if registry_devices(db) == 0:
        ok(dev(db, "import", big_import))
        assert check_all_or_nothing(db) == N_BIG


@pytest.mark.db_only("devices import works only with --db")
def test_import_progress_on_a_terminal_then_kill(tmp_path, big_import):
    """Progress is shown when standard error is a terminal; a kill right after
    the first progress line leaves nothing behind."""
    db = fresh_db(tmp_path, "pty.db")
    master, slave = pty.openpty()
    p = subprocess.Popen([str(BIN / "latchkey"), "--db", str(db), "devices", "import", str(big_import),
                          "--registry", R, *LOC], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while b"importing: line" not in seen and time.monotonic() < deadline:
            rl, _, _ = select.select([master], [], [], 1)
            if rl:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert b"importing: line" in seen and b"devices/s" in seen, seen
        p.send_signal(signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    assert check_all_or_nothing(db) == 0
