"""Google's own Node.js client (@google-cloud/iot) against latchkeyd.

tests/npm/client.js constructs the client exactly as docs/daemon.md tells
users (`new iot.v1.DeviceManagerClient({fallback: true, apiEndpoint,
port, protocol: 'https', keyFilename})`, the test CA in
NODE_EXTRA_CA_CERTS), runs the admin calls a provisioning script makes and
prints a JSON report of what the library returned and what it sent; this
file starts a real latchkeyd (TLS) on a fresh registry with a service
account, runs the script and checks the report.

The library is installed at test time with `npm ci` from the committed
tests/npm/package-lock.json (exact versions) into BUILD/npm-client (never
into the source tree), once per lock file: a stamp holding the lock's
SHA-256 says the install is complete. The install is tried twice; the test
is skipped only when the npm registry cannot be reached, and says so.
Needs node and npm (scripts/install-deps.sh test installs Debian's when
missing).
"""
import datetime
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import BIN, REPO
from npm_common import npm_install

NPM_SRC = REPO / "tests" / "npm"
NPM_DIR = Path(os.environ.get("LK_NPM_DIR", BIN.parent / "npm-client"))
PROJECT = "npm-project"
REGION = "us-central1"
REGISTRY = "npm-registry"
EXTRA = ["npm-a1", "npm-a2", "npm-a3", "npm-a4", "npm-a5", "npm-a6"]


# ---- the library, installed with npm ci (npm_common.py) ----

@pytest.fixture(scope="module")
def npm_client():
    # The script itself is read from the source tree each run; node resolves
    # @google-cloud/iot from NPM_DIR through NODE_PATH.
    return npm_install(NPM_SRC, NPM_DIR, "@google-cloud/iot")


# ---- a TLS latchkeyd with a service account ----

def _cert_pair(tmp):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "latchkey npm test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                         critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    os.chmod(tmp / "server.key", 0o600)


def _service_account(db, key_file, token_uri, name="npm-provisioner", role="editor", role_num=4):
    """A service account of PROJECT and its JSON key file: through the tool
    when it has `service-accounts`, else rows written with sqlite3 (schema 4)
    and the key file written here, the same as Google's."""
    tool = BIN / "latchkey"
    help_cp = subprocess.run([str(tool), "service-accounts", "--help"], capture_output=True, text=True)
    if help_cp.returncode == 0:
        cp = subprocess.run([str(tool), "--db", str(db), "service-accounts", "create", name, "--project", PROJECT,
                             "--role", role, "--token-uri", token_uri, "--key-file", str(key_file)],
                            capture_output=True, text=True, timeout=60)
        assert cp.returncode == 0, cp.stderr
        return json.loads(key_file.read_text()), "tool"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
    key_id = os.urandom(20).hex()
    email = f"{name}@{PROJECT}.iam.latchkey"
    now = int(time.time())
    con = sqlite3.connect(db, timeout=30)
    with con:
        con.execute("INSERT INTO service_accounts(email, project, name, role, created) VALUES(?,?,?,?,?)",
                    (email, PROJECT, name, role_num, now))
        con.execute("INSERT INTO service_account_keys(key_id, email, public_pem, disabled, created) "
                    "VALUES(?,?,?,0,?)", (key_id, email, pub, now))
    con.close()
    info = {"type": "service_account", "project_id": PROJECT, "private_key_id": key_id,
            "private_key": priv, "client_email": email, "client_id": "",
            "auth_uri": token_uri, "token_uri": token_uri}
    key_file.write_text(json.dumps(info, indent=2) + "\n")
    os.chmod(key_file, 0o600)
    return info, "sqlite3"


@pytest.fixture
def daemon(tmp_path, broker):
    """latchkeyd on the registry file of a running broker with latchkey's
    plugin (conftest's broker: its own registry reg-1 in proj-one), so that
    a command reaches the broker and a device not connected is
    FAILED_PRECONDITION, as on IoT Core."""
    _cert_pair(tmp_path)
    db = broker.db
    port_file = tmp_path / "port"
    log = open(tmp_path / "latchkeyd.log", "w")
    proc = subprocess.Popen([str(BIN / "latchkeyd"), "--registry", str(db), "--admin-listen", "127.0.0.1:0",
                             "--tls-cert", str(tmp_path / "server.crt"), "--tls-key", str(tmp_path / "server.key"),
                             "--port-file", str(port_file), "--command-wait-ms", "2000"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while not port_file.exists():
            assert proc.poll() is None, (tmp_path / "latchkeyd.log").read_text()
            assert time.time() < deadline, "latchkeyd wrote no port file in 20 s"
            time.sleep(0.05)
        port = int(port_file.read_text())
        token_uri = f"https://127.0.0.1:{port}/token"
        key_file = tmp_path / "sa-key.json"
        info, how = _service_account(db, key_file, token_uri)
        yield {"port": port, "key_file": key_file, "info": info, "how": how, "tmp": tmp_path,
               "ca": tmp_path / "ca.crt", "log": tmp_path / "latchkeyd.log", "proc": proc}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    assert proc.returncode == 0, (tmp_path / "latchkeyd.log").read_text()[-3000:]


def _run_client(npm_dir, d, es256_pub):
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=str(d["ca"]), NODE_PATH=str(npm_dir / "node_modules"))
    # Nothing of the user's Google set-up may steer the library elsewhere.
    for k in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT",
              "GOOGLE_CLOUD_UNIVERSE_DOMAIN", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        env.pop(k, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    cp = subprocess.run(["node", str(NPM_SRC / "client.js"), "--port", str(d["port"]),
                         "--key-file", str(d["key_file"]), "--project", PROJECT, "--location", REGION,
                         "--registry", REGISTRY, "--es256-pem", str(es256_pub)],
                        capture_output=True, text=True, timeout=300, env=env, cwd=npm_dir)
    assert cp.returncode == 0, f"client.js exit {cp.returncode}:\n{cp.stderr[-3000:]}"
    return json.loads(cp.stdout)


# google.rpc.Code numbers and the HTTP status Google pairs each with.
CODES = {"NOT_FOUND": (5, 404), "FAILED_PRECONDITION": (9, 400)}


def _refused(step, status):
    """A refusal as the library surfaces it. With @google-cloud/iot 5.2.1
    (google-gax 5.0.8 over gaxios 7) a REST error reaches the caller as
    gaxios' error: err.code is the HTTP status and the canonical status is
    only in the body (google-gax 6 maps it to err.code; iot 5.x cannot take
    it). Accept either, and check the canonical status latchkeyd sent."""
    num, http = CODES[status]
    assert step["error"] and step["rpcStatus"] == status, step
    assert step["code"] in (num, http), step
    if step["httpStatus"] is not None:
        assert step["httpStatus"] == http, step


def test_google_node_client_runs_every_admin_call(npm_client, daemon, tmp_path):
    dev_key = ec.generate_private_key(ec.SECP256R1())
    pub = tmp_path / "device-pub.pem"
    pub.write_bytes(dev_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    rep = _run_client(npm_client, daemon, pub)
    (tmp_path / "report.json").write_text(json.dumps(rep, indent=1))
    s = rep["steps"]
    failed = {k: v for k, v in s.items() if not v["ok"]}
    assert not failed, json.dumps(failed, indent=1)[:6000]
    assert rep["ok"]

    reg = s["createDeviceRegistry"]["result"]
    assert reg["id"] == REGISTRY
    assert reg["name"] == f"projects/{PROJECT}/locations/{REGION}/registries/{REGISTRY}"
    assert reg["mqttConfig"]["mqttEnabledState"] == "MQTT_ENABLED"
    assert reg["httpConfig"]["httpEnabledState"] == "HTTP_DISABLED"
    assert s["getDeviceRegistry"]["result"]["id"] == REGISTRY
    assert REGISTRY in s["listDeviceRegistries"]["result"]["ids"]

    dev = s["createDevice"]["result"]
    assert dev["id"] == "npm-device"
    assert int(dev["numId"]) > 0
    assert dev["credentials"][0]["publicKey"]["format"] == "ES256_PEM"
    assert dev["metadata"] == {"owner": "npm", "site": "lab"}
    assert s["getDevice"]["result"]["numId"] == dev["numId"]
    assert s["getDevice"]["result"]["config"]["version"] in ("1", 1)

    # Autopagination over several pages: 7 devices, 2 a page -> 4 requests.
    listed = s["listDevices"]["result"]
    assert listed["ids"] == sorted(["npm-device"] + EXTRA)
    assert len(set(listed["numIds"])) == 7
    assert s["listDevices"]["requests"] >= 4

    upd = s["updateDevice"]["result"]
    assert upd["blocked"] is True
    assert upd["metadata"] == {"owner": "npm", "site": "field"}

    cfg = s["modifyCloudToDeviceConfig"]["result"]
    assert str(cfg["version"]) == "2"
    stale = s["modifyCloudToDeviceConfigStale"]
    _refused(stale, "FAILED_PRECONDITION")    # versionToUpdate 1 is not current
    versions = s["listDeviceConfigVersions"]["result"]["deviceConfigs"]
    assert [str(v["version"]) for v in versions] == ["2", "1"]
    assert s["listDeviceStates"]["result"].get("deviceStates", []) == []

    cmd = s["sendCommandToDevice"]
    _refused(cmd, "FAILED_PRECONDITION")      # the device is not connected
    assert "connected" in cmd["rpcMessage"].lower() or "subscribed" in cmd["rpcMessage"].lower(), cmd

    gw = s["createGateway"]["result"]
    assert gw["gatewayConfig"]["gatewayType"] == "GATEWAY"
    assert s["listGatewayDevices"]["result"]["ids"] == ["npm-a1"]
    _refused(s["getDeviceMissing"], "NOT_FOUND")
    _refused(s["getDeletedDevice"], "NOT_FOUND")
    assert REGISTRY not in s["listDeviceRegistriesAfter"]["result"]["ids"]

    # What the library put on the wire.
    api = [r for r in rep["requests"] if r["path"].startswith("/v1/")]
    assert len(api) >= 25
    for r in api:
        assert "$alt=json%3Benum-encoding=int" in r["path"], r
        auth = r["headers"]["authorization"]
        assert auth and auth["scheme"] == "Bearer", r
        # The library signs its own JWT with the key file (no trip to
        # token_uri): RS256, kid = private_key_id, iss = sub = client_email,
        # the scopes as a claim and no aud (a non-Google apiEndpoint).
        jwt = auth["jwt"]
        assert jwt["header"]["alg"] == "RS256" and jwt["header"]["kid"] == daemon["info"]["private_key_id"]
        claims = jwt["claims"]
        assert claims["iss"] == claims["sub"] == daemon["info"]["client_email"]
        assert "https://www.googleapis.com/auth/cloudiot" in claims["scope"].split()
        assert claims["exp"] - claims["iat"] <= 3600
        assert r["headers"]["x-goog-api-client"].startswith("gax/")
    assert not [r for r in rep["requests"] if r["path"].startswith("/token")]

    # The log never holds a token.
    text = daemon["log"].read_text()
    assert not re.search(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ", text), "a JWT reached latchkeyd's log"
    assert "lkat_" not in text
