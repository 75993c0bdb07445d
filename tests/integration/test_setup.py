"""`latchkey setup` (docs/operations.md, "Setting up a broker: latchkey setup").

Everything under --root in a temporary directory, the templates from the source tree
(service/plugin/deploy, service/daemon/deploy) through --templates, the plugin of the build:
  - --test-ca: the files with the contract's modes, a drop-in that `latchkey broker check` finds
    clean, and a real Mosquitto started from it (ports moved to free ones on 127.0.0.1, paths
    moved under the root) that accepts a TLS connection verified with the generated ca.crt for
    --host, with the plugin serving the registry setup made;
  - a second run changes nothing and says "kept" on every line;
  - refusals, each naming the file and the reason: a --key that is not the --cert's, a
    certificate without --host in its subjectAltNames, an expired one, no certificate and no
    --test-ca, a drop-in that differs from what setup writes (kept unless --force, then .bak).
"""
import datetime
import getpass
import os
import socket
import ssl
import stat
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from broker import MOSQUITTO, PLUGIN, free_port
from conftest import REPO, run_tool

SOURCE = os.environ.get("LK_SOURCE_DIR", str(REPO))
TEMPLATES = ["--templates", f"{SOURCE}/service/plugin/deploy", "--templates", f"{SOURCE}/service/daemon/deploy"]
HOST = "localhost"


def setup(root, *args):
    return run_tool("setup", "--root", root, "--host", HOST, *TEMPLATES, "--plugin", PLUGIN, *args)


def mode(p):
    return stat.S_IMODE(os.lstat(p).st_mode)


def step_lines(out):
    """The step lines: VERB PATH ..."""
    return [l for l in out.splitlines() if l.split(" ", 1)[0] in
            ("created", "kept", "installed", "replaced", "checked", "skipped")]


def write_pair(d, name, sans=(HOST,), days=30, past=False, other_key=False):
    """A certificate (self-signed, serverAuth) and a key in d; returns (crt, key) paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    start = now - datetime.timedelta(days=60 if past else 0, hours=1)
    end = now - datetime.timedelta(days=1) if past else now + datetime.timedelta(days=days)
    n = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    crt = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(key.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .sign(key, hashes.SHA256()))
    if other_key:
        key = ec.generate_private_key(ec.SECP256R1())
    cp, kp = d / f"{name}.crt", d / f"{name}.key"
    cp.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cp, kp


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    r = setup(root, "--test-ca", "--registry", "reg-1", "--project", "proj-one", "--region", "us-central1",
              "--metrics")
    assert r.rc == 0, r
    return root, r


def test_files_and_modes(made):
    root, r = made
    etc, var = root / "etc/latchkey", root / "var/lib/latchkey"
    assert mode(etc) == 0o750 and mode(var) == 0o2770
    assert mode(etc / "server.crt") == 0o644 and mode(etc / "server.key") == 0o640
    assert mode(etc / "ca.crt") == 0o644 and mode(etc / "test-ca.key") == 0o600
    assert mode(etc / "latchkeyd.conf") == 0o640
    assert (var / "registry.db").is_file()
    units = root / "etc/systemd/system/mosquitto.service.d"
    assert sorted(p.name for p in units.iterdir()) == ["latchkey-limits.conf", "latchkey-sandbox.conf",
                                                          "latchkey-user.conf"]
    assert "TEST CA" in r.out and "for trials only" in r.out
    assert "systemctl daemon-reload && systemctl restart mosquitto" in r.out
    assert "created    registry  projects/proj-one/locations/us-central1/registries/reg-1" in r.out
    # not root's group file under --root: said, not silently skipped
    assert "skipped    group latchkey" in r.out
    conf = (root / "etc/mosquitto/conf.d/latchkey.conf").read_text()
    assert f"plugin {PLUGIN}\n" in conf
    assert "plugin_opt_registry /var/lib/latchkey/registry.db\n" in conf
    assert "plugin_opt_metrics_file /var/lib/latchkey/metrics\n" in conf
    assert "#plugin_opt_spool " in conf          # not asked for
    lkd = (root / "etc/latchkey/latchkeyd.conf").read_text()
    assert "tls_cert /etc/latchkey/server.crt\n" in lkd and "tls_key /etc/latchkey/server.key\n" in lkd
    assert "metrics_file /var/lib/latchkey/metrics\n" in lkd and "token_uri https://localhost:8443/token\n" in lkd
    # the server certificate: for --host, serverAuth, signed by the test CA
    crt = x509.load_pem_x509_certificate((etc / "server.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((etc / "ca.crt").read_bytes())
    assert crt.issuer == ca.subject
    assert crt.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.DNSName) == [HOST]
    assert (crt.not_valid_after - crt.not_valid_before).days in (825, 826)


def test_conf_passes_broker_check(made):
    root, _ = made
    r = run_tool("broker", "check", root / "etc/mosquitto/conf.d/latchkey.conf")
    assert r.rc == 0, r


def test_broker_serves_tls_for_host(made, tmp_path):
    root, _ = made
    p1, p2 = free_port(), free_port()
    text = (root / "etc/mosquitto/conf.d/latchkey.conf").read_text()
    text = (text.replace("listener 8883\n", f"listener {p1} 127.0.0.1\n")
            .replace("listener 443\n", f"listener {p2} 127.0.0.1\n")
            .replace("/etc/latchkey/", f"{root}/etc/latchkey/")
            .replace("/var/lib/latchkey/", f"{root}/var/lib/latchkey/")
            .replace("user mosquitto\n", f"user {getpass.getuser()}\n"))
    log = tmp_path / "mosquitto.log"
    text += f"persistence_location {tmp_path}/\nlog_dest file {log}\n"
    conf = tmp_path / "m.conf"
    conf.write_text(text)
    env = dict(os.environ)
    if os.environ.get("LK_SANITIZER_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["LK_SANITIZER_PRELOAD"]
        env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=err, stderr=err, env=env)
    try:
        ctx = ssl.create_default_context(cafile=str(root / "etc/latchkey/ca.crt"))
        deadline = time.time() + 10
        for port in (p1, p2):
            while True:
                assert proc.poll() is None, log.read_text() if log.exists() else ""
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as s, \
                            ctx.wrap_socket(s, server_hostname=HOST) as t:
                        assert t.version() in ("TLSv1.2", "TLSv1.3")
                    break
                except ConnectionRefusedError:
                    assert time.time() < deadline, "mosquitto did not listen"
                    time.sleep(0.05)
        # another name: the certificate does not cover it
        with socket.create_connection(("127.0.0.1", p1), timeout=2) as s:
            with pytest.raises(ssl.SSLCertVerificationError):
                ctx.wrap_socket(s, server_hostname="mqtt.other.example")
        assert "serving registry" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_second_run_keeps_everything(made):
    root, _ = made
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "registry.db" not in p.name}
    r = setup(root, "--test-ca", "--registry", "reg-1", "--project", "proj-one", "--region", "us-central1",
              "--metrics")
    assert r.rc == 0, r
    verbs = {l.split(" ", 1)[0] for l in step_lines(r.out)}
    assert verbs == {"kept", "checked", "skipped"}, r.out
    assert "kept       registry  projects/proj-one" in r.out
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "registry.db" not in p.name}
    assert after == before


def test_given_certificate_installed_then_kept(tmp_path):
    root = tmp_path / "root"
    crt, key = write_pair(tmp_path, "good")
    r = setup(root, "--cert", crt, "--key", key, "--no-fallback-port")
    assert r.rc == 0, r
    assert "installed  " in r.out and "ca.crt" not in r.out and not (root / "etc/latchkey/ca.crt").exists()
    assert (root / "etc/latchkey/server.key").read_bytes() == key.read_bytes()
    assert mode(root / "etc/latchkey/server.key") == 0o640
    assert "#listener 443\n" in (root / "etc/mosquitto/conf.d/latchkey.conf").read_text()
    # no option: the installed pair is checked and kept
    r = setup(root, "--no-fallback-port")
    assert r.rc == 0, r
    assert "kept       " + str(root / "etc/latchkey/server.crt") in r.out


@pytest.mark.parametrize("case,kw,reason", [
    ("mismatch", dict(other_key=True), "the key does not match the certificate"),
    ("no-san", dict(sans=("mqtt.other.example",)), "localhost is not among the certificate's subjectAltNames"),
    ("expired", dict(past=True), "the certificate expired"),
])
def test_certificate_refused(tmp_path, case, kw, reason):
    root = tmp_path / "root"
    crt, key = write_pair(tmp_path, case, **kw)
    r = setup(root, "--cert", crt, "--key", key)
    assert r.rc == 9, r
    assert str(crt) in r.err and reason in r.err, r.err
    assert not (root / "etc/latchkey/server.crt").exists()
    assert not (root / "etc/mosquitto").exists() and not (root / "var").exists()


def test_no_certificate_no_test_ca(tmp_path):
    r = setup(tmp_path / "root")
    assert r.rc == 2, r
    assert "server.crt" in r.err and "--cert FILE --key FILE" in r.err and "--test-ca" in r.err
    assert not (tmp_path / "root/etc/mosquitto").exists()


def test_different_drop_in_kept_unless_force(tmp_path):
    root = tmp_path / "root"
    dropin = root / "etc/mosquitto/conf.d/latchkey.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("# the operator's own\n")
    r = setup(root, "--test-ca")
    assert r.rc == 24, r
    assert str(dropin) in r.err and "differs" in r.err and "--force" in r.err
    assert dropin.read_text() == "# the operator's own\n"
    r = setup(root, "--test-ca", "--force")
    assert r.rc == 0, r
    assert "replaced   " + str(dropin) in r.out
    assert (root / "etc/mosquitto/conf.d/latchkey.conf.bak").read_text() == "# the operator's own\n"
    assert "plugin_opt_registry" in dropin.read_text()


def test_usage(tmp_path):
    r = run_tool("setup", "--help")
    assert r.rc == 0 and "--test-ca" in r.out and "--no-fallback-port" in r.out and "--root DIR" in r.out
    assert run_tool("setup", "--root", tmp_path, *TEMPLATES, "--test-ca").rc == 2          # no --host
    r = run_tool("setup", "--root", tmp_path, "--host", "a,DNS:evil", "--test-ca")
    assert r.rc == 2 and "neither a DNS name" in r.err
    r = setup(tmp_path, "--test-ca", "--registry", "reg-1")
    assert r.rc == 2 and "go together" in r.err
    r = setup(tmp_path, "--test-ca", "--registry", "r1", "--project", "proj-one", "--region", "us-central1")
    assert r.rc == 15 and "registry id 'r1' is invalid" in r.err       # checked before anything is written
    assert not any(tmp_path.iterdir())


def test_templates(tmp_path):
    """No broker template: refused before anything is written. No latchkeyd template (a
    broker-only machine): that step skipped, and latchkeyd left out of the next steps."""
    r = run_tool("setup", "--root", tmp_path / "a", "--host", HOST, "--test-ca", "--templates", tmp_path / "none",
                 "--plugin", PLUGIN)
    assert r.rc == 3 and "mosquitto/latchkey.conf" in r.err and str(tmp_path / "none") in r.err, r
    assert not (tmp_path / "a").exists()
    r = run_tool("setup", "--root", tmp_path / "b", "--host", HOST, "--test-ca", "--plugin", PLUGIN,
                 env={"LATCHKEY_TEMPLATES": f"{tmp_path}/none:{SOURCE}/service/plugin/deploy"})
    assert r.rc == 0, r
    assert "skipped    " + str(tmp_path / "b/etc/latchkey/latchkeyd.conf") in r.out
    assert "latchkeyd" not in r.out.split("Next")[1]
    assert not (tmp_path / "b/etc/latchkey/latchkeyd.conf").exists()


def _machine_state():
    """What `setup` without --root must refuse on this machine before touching /etc, or None."""
    import grp
    import pwd
    if os.geteuid() != 0:
        return None
    try:
        g = grp.getgrnam("latchkey")
    except KeyError:
        return "addgroup --system latchkey"
    try:
        pw = pwd.getpwnam("mosquitto")
    except KeyError:
        return None
    if pw.pw_gid != g.gr_gid and "mosquitto" not in g.gr_mem:
        return "adduser mosquitto latchkey"
    return None


@pytest.mark.skipif(_machine_state() is None,
                    reason="needs root on a machine without the group latchkey, or with mosquitto outside it")
def test_refused_on_the_machine_without_the_group():
    """As root on the machine itself: no group latchkey, or user mosquitto not in it, is refused
    before /etc is touched, with the command that fixes it."""
    r = run_tool("setup", "--host", HOST, *TEMPLATES, "--test-ca")
    assert r.rc == 1, r
    assert _machine_state() in r.err and "/etc/group" in r.err
    assert r.out == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
def test_group_from_roots_etc_group(tmp_path):
    """Under --root the image's own group file gives latchkey's gid (not the build host's)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/group").write_text("root:x:0:\nlatchkey:x:987:\n")
    r = setup(root, "--test-ca")
    assert r.rc == 0, r
    assert "skipped" not in r.out
    for p, gid, m in (("etc/latchkey", 987, 0o750), ("var/lib/latchkey", 987, 0o2770),
                      ("etc/latchkey/server.key", 987, 0o640), ("etc/latchkey/latchkeyd.conf", 987, 0o640),
                      ("etc/latchkey/test-ca.key", 0, 0o600), ("var/lib/latchkey/registry.db", 987, None)):
        st = os.lstat(root / p)
        assert (st.st_uid, st.st_gid) == (0, gid), p
        assert m is None or stat.S_IMODE(st.st_mode) == m, p
