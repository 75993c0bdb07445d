"""The latchkey tool's suites through latchkeyd's admin API (LK_TOOL_VIA_API=1).

With the switch on, conftest.run_tool (and tool_argv, for the tests that
start the tool themselves) rewrites `--db FILE` into `--api URL --key-file
KEY --ca-file CA` for every command the tool offers through the API: a
latchkeyd (TLS, a test CA made here) is started on a random port over that
same registry file, with an admin service account for the command's
project, so the test's own checks (output, exit codes, the database's dump)
hold unchanged. A command the tool offers only with --db skips the test,
saying which; a test that is about the database file itself carries
@pytest.mark.db_only(reason).

The service account is made by `latchkey service-accounts create` over the
same registry file.
"""
import datetime
import ipaddress
import atexit
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VIA_API = os.environ.get("LK_TOOL_VIA_API") == "1"

# What the tool offers through the API (the rest works only with --db).
REMOTE = {
    "registries": {"create", "list", "describe", "update", "delete", "credentials"},
    "devices": {"create", "list", "describe", "update", "delete", "credentials", "configs", "states", "commands"},
}
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
DB_OPTS = ("--db",)
VALUE_OPTS = {"--db", "--project", "--region", "--location", "--registry", "--format", "--busy-timeout",
              "--device", "--public-key", "--metadata", "--metadata-from-file", "--limit", "--path", "--type",
              "--expiration-time", "--config-file", "--config-data", "--version-to-update",
              "--event-notification-config", "--state-pubsub-topic", "--public-key-path", "--command-data",
              "--command-file", "--subfolder", "--timeout", "--api", "--key-file", "--ca-file"}


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


class TestCA:
    """A CA and a server certificate for 127.0.0.1, made once per session."""

    def __init__(self, d: Path):
        d.mkdir(parents=True, exist_ok=True)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "latchkey tool-api test CA")])
        t = _now()
        ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(t - datetime.timedelta(days=1)).not_valid_after(t + datetime.timedelta(days=30))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
                .issuer_name(name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(t - datetime.timedelta(days=1)).not_valid_after(t + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.ca = d / "ca.pem"
        self.cert = d / "server.pem"
        self.key = d / "server.key"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        os.chmod(self.key, 0o600)


class Daemon:
    """latchkeyd over one registry file, with admin key files per project."""

    def __init__(self, db: Path, ca: TestCA, binary: Path, tool: Path):
        self.db = db
        self.ca = ca
        self.tool = tool
        self.dir = Path(str(db) + ".api")
        self.dir.mkdir(parents=True, exist_ok=True)
        port_file = self.dir / "port"
        self.log = open(self.dir / "latchkeyd.log", "wb")
        self.proc = subprocess.Popen(
            [str(binary), "--registry", str(db), "--admin-listen", "127.0.0.1:0", "--tls-cert", str(ca.cert),
             "--tls-key", str(ca.key), "--port-file", str(port_file), "--token-uri", "https://127.0.0.1/token"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"latchkeyd did not start: {(self.dir / 'latchkeyd.log').read_text()}")
            time.sleep(0.02)
        self.url = f"https://127.0.0.1:{int(port_file.read_text().strip())}"
        self.keys = {}

    def key_file(self, project):
        if project not in self.keys:
            self.keys[project] = self._make_account(project)
        return self.keys[project]

    def _make_account(self, project):
        """An admin service account of project, made by the tool itself (a
        failure fails the test: it is not papered over)."""
        out = self.dir / f"admin-{project}.json"
        r = subprocess.run([str(self.tool), "--db", str(self.db), "service-accounts", "create", "tool-admin",
                            "--project", project, "--role", "admin", "--token-uri", f"{self.url}/token",
                            "--key-file", str(out)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"service-accounts create for {project} exited {r.returncode}: {r.stderr}")
        return out

    def stop(self):
        """SIGTERM; returns latchkeyd's exit status (0 when it drained and left)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


_ca = None
_daemons = {}


def stop_all():
    """Stop every latchkeyd started; one that died or did not exit 0 fails the test."""
    bad = []
    for d in list(_daemons.values()):
        rc = d.stop()
        if rc != 0:
            bad.append(f"latchkeyd on {d.db} exited {rc}: {(d.dir / 'latchkeyd.log').read_text()[-2000:]}")
    _daemons.clear()
    assert not bad, "\n".join(bad)


@atexit.register
def _remove_ca():
    if _ca is not None:
        shutil.rmtree(_ca.ca.parent, ignore_errors=True)


def _command(args):
    """The command words (group, subcommand) without options."""
    words, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in VALUE_OPTS:
            skip = True
            continue
        if a.startswith("-"):
            continue
        words.append(a)
        if len(words) == 2:
            break
    return words


def _project(args, env):
    for i, a in enumerate(args):
        if a == "--project" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--project="):
            return a.split("=", 1)[1]
        m = re.match(r"^projects/([^/]+)/", a)
        if m:
            return m.group(1)
    return (env or {}).get("LATCHKEY_PROJECT") or os.environ.get("LATCHKEY_PROJECT")


def rewrite(args, env, bin_dir: Path):
    """args with --db FILE turned into the API's options (see the module's text)."""
    global _ca
    args = [str(a) for a in args]
    db = None
    for i, a in enumerate(args):
        if a == "--db" and i + 1 < len(args):
            db, pos, n = args[i + 1], i, 2
            break
        if a.startswith("--db="):
            db, pos, n = a[5:], i, 1
            break
    if db is None or db == "":
        return args
    words = _command(args[:pos] + args[pos + n:])
    if not words or words[0] not in REMOTE:
        if words and words[0] in ("backends", "token"):
            pytest.skip(f"'{' '.join(words)}' works only with --db (not offered through the API)")
        return args
    if len(words) > 1 and words[1] not in REMOTE[words[0]]:
        if words[1] in ("import",):
            pytest.skip(f"'{' '.join(words)}' works only with --db (not offered through the API)")
        return args
    path = os.path.realpath(db)
    if path not in _daemons:
        if _ca is None:
            _ca = TestCA(Path(tempfile.mkdtemp(prefix="lk-tool-api-ca-")))
        binary = Path(os.environ.get("LK_LATCHKEYD", bin_dir / "latchkeyd"))
        _daemons[path] = Daemon(Path(path), _ca, binary, bin_dir / "latchkey")
    d = _daemons[path]
    project = _project(args, env)
    if project is None or not PROJECT_RE.match(project):
        project = next(iter(d.keys), None) or "proj-one"
    key = d.key_file(project)
    return args[:pos] + ["--api", d.url, "--key-file", str(key), "--ca-file", str(_ca.ca)] + args[pos + n:]
