"""Helpers shared by latchkeyd's admin API tests (tests/integration/test_api_*.py).

No tests here. What it gives:
  - make_ca / issue_cert: a TLS CA and server certificates for 127.0.0.1 (python3-cryptography);
  - Daemon: build/bin/latchkeyd on a random port over TLS with a registry file of its own,
    started and stopped (SIGTERM; the exit code must be 0), its log (stderr) in a file;
  - ServiceAccount: a service account and its Google-style JSON key file, made with
    `latchkey service-accounts create`, or written straight into the registry (sqlite3) the way
    the tool does, so that the tests do not rest on the tool alone;
  - Api: a small HTTPS client (http.client, the test CA) that authenticates either way a
    Google client library does: a self-signed JWT (PyJWT) as the Bearer token, or the RFC 7523
    JWT-bearer grant at token_uri for an access token.

Everything the tests check against is independent of latchkey's code: PyJWT, cryptography,
http.client, paho (broker.py).
"""
import base64
import datetime
import http.client
import ipaddress
import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import time
import urllib.parse
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from conftest import BIN, run_tool, server_timeout, valgrind_prefix

DAEMON = BIN / "latchkeyd"
P, L, R = "proj-one", "us-central1", "reg-1"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ROLES = {"viewer": 1, "deviceController": 2, "provisioner": 3, "editor": 4, "admin": 5}

def tool_has_service_accounts():
    r = run_tool("service-accounts", "--help")
    return r.rc == 0 and "service-accounts" in (r.out + r.err)


# ---- TLS ----

def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(base: Path, cn="latchkeyd test CA"):
    """A CA (P-256): (cert, key, path of its PEM)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
          .public_key(key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(key, hashes.SHA256()))
    path = base / "ca.crt"
    path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca, key, path


def issue_cert(ca, ca_key, crt_path: Path, key_path: Path, cn="127.0.0.1"):
    """A server certificate for 127.0.0.1 / localhost signed by ca; returns its serial number."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    serial = x509.random_serial_number()
    crt = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
           .public_key(key.public_key()).serial_number(serial)
           .not_valid_before(now - datetime.timedelta(hours=1))
           .not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName([
               x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
               critical=False)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                          critical=False)
           .sign(ca_key, hashes.SHA256()))
    crt_path.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    return serial


# ---- the daemon ----

class Daemon:
    """latchkeyd over TLS on 127.0.0.1:0 with the registry file db (a new one by default)."""

    def __init__(self, base: Path, db=None, extra=(), start=True, tls=True):
        self.base = Path(base)
        self.base.mkdir(parents=True, exist_ok=True)
        self.db = Path(db) if db else self.base / "registry.db"
        self.extra = list(extra)
        self.tls = tls
        self.ca, self.ca_key, self.ca_path = make_ca(self.base)
        self.cert_path, self.key_path = self.base / "server.crt", self.base / "server.key"
        self.serial = issue_cert(self.ca, self.ca_key, self.cert_path, self.key_path)
        self.port_file = self.base / "port"
        self.log_path = self.base / "latchkeyd.log"
        self.proc = None
        self.port = None
        if start:
            self.start()

    @property
    def token_uri(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/token"

    def start(self, timeout=10):
        if not DAEMON.exists():
            pytest.fail(f"{DAEMON} is not built")
        if self.port_file.exists():
            self.port_file.unlink()
        args = [str(DAEMON), "--registry", str(self.db), "--admin-listen", "127.0.0.1:0",
                "--port-file", str(self.port_file), "--verbose", "on"]
        if self.tls:
            args += ["--tls-cert", str(self.cert_path), "--tls-key", str(self.key_path)]
        else:
            args += ["--plain-http", "on"]
        args += [str(a) for a in self.extra]
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*valgrind_prefix(), *args], stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + server_timeout(timeout)
        while not (self.port_file.exists() and self.port_file.read_text().strip()):
            if self.proc.poll() is not None:
                pytest.fail(f"latchkeyd exited with {self.proc.returncode}:\n{self.log_text()}")
            if time.time() > deadline:
                self.proc.kill()
                pytest.fail(f"latchkeyd wrote no port file:\n{self.log_text()}")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20, expect_rc=0):
        """SIGTERM, then the exit code (asserted to be expect_rc unless None)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(server_timeout(timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"latchkeyd did not stop on SIGTERM:\n{self.log_text()[-3000:]}")
        finally:
            self.logf.close()
        self.proc = None
        if expect_rc is not None:
            assert rc == expect_rc, f"latchkeyd exited {rc}:\n{self.log_text()[-3000:]}"
        return rc

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def ssl_context(self, ca_path=None):
        ctx = ssl.create_default_context(cafile=str(ca_path or self.ca_path))
        ctx.check_hostname = True
        return ctx

    def tls_socket(self, timeout=10):
        """A raw TLS socket to the daemon (handshake done)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.ssl_context().wrap_socket(s, server_hostname="127.0.0.1")

    def dump(self):
        """Every row of the registry file, to compare before and after a refused request."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return "\n".join(con.iterdump())
        finally:
            con.close()


# ---- service accounts ----

class ServiceAccount:
    """A service account and its key (RSA-2048), as Google's JSON key file has them."""

    def __init__(self, key_file: Path):
        self.key_file = Path(key_file)
        info = json.loads(self.key_file.read_text())
        self.info = info
        self.email = info["client_email"]
        self.project = info["project_id"]
        self.key_id = info["private_key_id"]
        self.token_uri = info["token_uri"]
        self.private_key = serialization.load_pem_private_key(info["private_key"].encode(), None)

    def jwt(self, aud=None, scope=SCOPE, iat=None, ttl=3600, exp=None, kid=None, iss=None, sub=None,
            key=None, alg="RS256", extra=None, drop=()):
        """A self-signed JWT: kid = private_key_id, iss = sub = client_email, scope or aud, iat, exp."""
        now = int(time.time()) if iat is None else int(iat)
        claims = {"iss": self.email if iss is None else iss, "sub": self.email if sub is None else sub,
                  "iat": now, "exp": now + ttl if exp is None else int(exp)}
        if scope is not None:
            claims["scope"] = scope
        if aud is not None:
            claims["aud"] = aud
        claims.update(extra or {})
        for k in drop:
            claims.pop(k, None)
        headers = {"kid": self.key_id if kid is None else kid}
        return jwt.encode(claims, key or self.private_key, algorithm=alg, headers=headers)

    def assertion(self, **kw):
        """The RFC 7523 assertion: aud = token_uri (no scope needed, as google-auth sends one)."""
        kw.setdefault("aud", self.token_uri)
        return self.jwt(**kw)


def _write_key_file(path: Path, project, name, key_id, priv, token_uri):
    email = f"{name}@{project}.iam.latchkey"
    pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": key_id,
        "private_key": pem, "client_email": email, "client_id": "",
        "auth_uri": token_uri, "token_uri": token_uri,
    }, indent=2))
    os.chmod(path, 0o600)
    return email


def sa_via_sql(db: Path, name, project, role, token_uri, key_file: Path, email=None):
    """A service account written straight into the registry (schema 4), as the tool would."""
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = os.urandom(20).hex()
    email = _write_key_file(key_file, project, name, key_id, priv, token_uri)
    pub = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    con = sqlite3.connect(str(db), timeout=30)
    try:
        with con:
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("INSERT OR IGNORE INTO service_accounts(email, project, name, role, created) "
                        "VALUES (?, ?, ?, ?, ?)", (email, project, name, ROLES[role], int(time.time())))
            con.execute("INSERT INTO service_account_keys(key_id, email, public_pem, disabled, created) "
                        "VALUES (?, ?, ?, 0, ?)", (key_id, email, pub, int(time.time())))
    finally:
        con.close()
    return ServiceAccount(key_file)


def sa_via_tool(db: Path, name, project, role, token_uri, key_file: Path):
    r = run_tool("--db", db, "service-accounts", "create", name, "--project", project, "--role", role,
                 "--token-uri", token_uri, "--key-file", key_file)
    assert r.rc == 0, r
    return ServiceAccount(key_file)


_TOOL = None


def service_account(daemon: Daemon, name, role, project=P, via=None):
    """A service account for daemon's registry; via "tool", "sql" or None (the tool when it can)."""
    global _TOOL
    if via is None:
        if _TOOL is None:
            _TOOL = tool_has_service_accounts()
        via = "tool" if _TOOL else "sql"
    key_file = daemon.base / f"{name}-{project}-{os.urandom(3).hex()}.json"
    make = sa_via_tool if via == "tool" else sa_via_sql
    return make(daemon.db, name, project, role, daemon.token_uri, key_file)


def set_key_disabled(db: Path, key_id, disabled=True):
    con = sqlite3.connect(str(db), timeout=30)
    try:
        with con:
            con.execute("UPDATE service_account_keys SET disabled = ? WHERE key_id = ?", (int(disabled), key_id))
    finally:
        con.close()


def delete_key(db: Path, key_id):
    con = sqlite3.connect(str(db), timeout=30)
    try:
        with con:
            con.execute("DELETE FROM service_account_keys WHERE key_id = ?", (key_id,))
    finally:
        con.close()


# ---- the client ----

class Resp:
    def __init__(self, status, body: bytes, headers):
        self.status = status
        self.raw = body
        self.headers = headers
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def code(self):
        """The canonical code's name of an error ({"error": {"status": ...}}), or None."""
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("status")
        return None

    @property
    def message(self):
        return self.json["error"]["message"] if self.code else ""

    def __repr__(self):
        return f"<{self.status} {self.raw[:600]!r}>"


# Google's HTTP status for each canonical code (google.rpc.Code).
HTTP = {"OK": 200, "INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
        "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
        "ABORTED": 409, "RESOURCE_EXHAUSTED": 429, "UNIMPLEMENTED": 501, "INTERNAL": 500,
        "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504}


def ok(r, status=200):
    assert r.status == status, r
    return r.json


def refused(r, code, *words):
    """r is Google's error object with code (and its HTTP status); its message holds words."""
    assert r.status == HTTP[code] and r.code == code, (code, r)
    err = r.json["error"]
    assert err["code"] == HTTP[code], r
    for w in words:
        assert w.lower() in err["message"].lower(), (w, r)
    return err["message"]


def registries_path(project=P, loc=L):
    return f"/v1/projects/{project}/locations/{loc}/registries"


def registry_path(reg=R, project=P, loc=L):
    return f"{registries_path(project, loc)}/{reg}"


def devices_path(reg=R, project=P, loc=L):
    return f"{registry_path(reg, project, loc)}/devices"


def device_path(dev, reg=R, project=P, loc=L):
    return f"{devices_path(reg, project, loc)}/{dev}"


class Api:
    """HTTPS to the daemon as a service account: mode "jwt" (self-signed) or "token" (grant)."""

    def __init__(self, daemon: Daemon, sa: ServiceAccount = None, mode="jwt"):
        self.d = daemon
        self.sa = sa
        self.mode = mode
        self._access = None

    def conn(self, timeout=30):
        if self.d.tls:
            return http.client.HTTPSConnection("127.0.0.1", self.d.port, timeout=timeout,
                                               context=self.d.ssl_context())
        return http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=timeout)

    def grant(self, assertion=None, grant_type=GRANT, form=None):
        """POST /token; returns Resp (200 {access_token, expires_in, token_type} or an OAuth error)."""
        if form is None:
            form = {"grant_type": grant_type, "assertion": assertion or self.sa.assertion()}
            form = {k: v for k, v in form.items() if v is not None}
        body = form if isinstance(form, (bytes, str)) else urllib.parse.urlencode(form)
        return self.raw_request("POST", "/token", body.encode() if isinstance(body, str) else body,
                                {"Content-Type": "application/x-www-form-urlencoded"})

    def access_token(self, refresh=False):
        if self._access is None or refresh:
            r = self.grant()
            assert r.status == 200, r
            assert r.json["token_type"] == "Bearer" and int(r.json["expires_in"]) > 0, r
            self._access = r.json["access_token"]
        return self._access

    def bearer(self):
        if self.sa is None:
            return None
        return self.access_token() if self.mode == "token" else self.sa.jwt()

    def raw_request(self, method, path, body=None, headers=None, conn=None):
        c = conn or self.conn()
        try:
            c.request(method, path, body=body, headers=headers or {})
            resp = c.getresponse()
            data = resp.read()
            return Resp(resp.status, data, dict(resp.getheaders()))
        finally:
            if conn is None:
                c.close()

    def call(self, method, path, body=None, query=None, token=None, headers=None, raw=None, conn=None):
        """One API call: body is JSON (dict), raw is bytes sent as is; token overrides the Bearer."""
        h = {"Accept": "application/json"}
        tok = token if token is not None else self.bearer()
        if tok:
            h["Authorization"] = f"Bearer {tok}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        if query:
            path += "?" + urllib.parse.urlencode(query, doseq=True, safe="$;=,")
        return self.raw_request(method, path, data, h, conn)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, {} if body is None and "raw" not in kw else body, **kw)

    def patch(self, path, body, **kw):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    # conveniences
    def create_registry(self, reg, **fields):
        return self.post(registries_path(), {"id": reg, **fields})

    def create_device(self, dev, reg=R, **fields):
        return self.post(devices_path(reg), {"id": dev, **fields})


# ---- device keys (made here, never by latchkey) ----

def es256_key():
    priv = ec.generate_private_key(ec.SECP256R1())
    pem = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return priv, pem


def rsa_key():
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return priv, pem


def cred(pem, fmt="ES256_PEM", expiration=None):
    c = {"publicKey": {"format": fmt, "key": pem}}
    if expiration:
        c["expirationTime"] = expiration
    return c


def b64(data: bytes, urlsafe=False, pad=True):
    s = (base64.urlsafe_b64encode if urlsafe else base64.standard_b64encode)(data).decode()
    return s if pad else s.rstrip("=")


def unb64(s: str) -> bytes:
    return base64.b64decode(s + "=" * (-len(s) % 4))


# ---- fixtures' building blocks ----

class Env:
    """A running daemon, registry reg-1 (made with the latchkey tool before the daemon starts),
    an admin service account and a client for it (api), and a client with no credentials (anon)."""

    def __init__(self, base: Path, extra=(), db=None, mode="jwt", make_registry=True):
        self.daemon = Daemon(base, db=db, extra=extra, start=False)
        if make_registry:
            r = run_tool("--db", self.daemon.db, "registries", "create", R, "--project", P, "--region", L)
            assert r.rc in (0, 12), r
        self.daemon.start()
        self.admin_sa = service_account(self.daemon, "admin-sa", "admin")
        self.api = Api(self.daemon, self.admin_sa, mode)
        self.anon = Api(self.daemon, None)

    def as_role(self, role, project=P, mode="jwt", via=None):
        sa = service_account(self.daemon, f"sa-{role.lower()}-{os.urandom(2).hex()}", role, project, via)
        return Api(self.daemon, sa, mode)

    def lk(self, *args):
        return run_tool("--db", self.daemon.db, *args)

    def stop(self):
        self.daemon.stop()


@pytest.fixture
def env(tmp_path):
    """Env(tmp_path); stopped after, and latchkeyd must exit 0."""
    e = Env(tmp_path / "lkd")
    yield e
    assert e.daemon.alive(), "latchkeyd died:\n" + e.daemon.log_text()[-3000:]
    e.stop()
