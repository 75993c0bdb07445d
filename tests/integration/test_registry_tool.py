"""The admin tool's smaller edges (issue 11, item 9): databases that are
empty, not ours or not ours to write; listing as a user who may only read;
the database's mode; credentials told apart by fingerprint; token verify
against the registry; each subcommand's own --help; expired and PKCS#1
credentials.

Permission tests run commands as the user nobody (setpriv, or runuser) and
are skipped, saying why, when neither exists or the tests do not run as
root.
"""
import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import BIN, run_tool

P, L, R = "proj-one", "us-central1", "reg-1"
LOC = ["--project", P, "--region", L]
USAGE, FILE_NOT_FOUND, INVALID_TOKEN = 2, 3, 9
NOT_FOUND, EXISTS, CONFLICT, LIMIT, INVALID, CERT, NOT_EMPTY, BUSY, STORAGE, IMPORT = range(11, 21)


def lkdb(db, *args, input=None, env=None):
    return run_tool("--db", db, *args, input=input, env=env)


def ok(r):
    assert r.rc == 0, r
    return r


def js(r):
    assert r.rc == 0, r
    return json.loads(r.out)


def dev(db, *args, **kw):
    return lkdb(db, "devices", *args, "--registry", R, *LOC, **kw)


def key_pair():
    k = ec.generate_private_key(ec.SECP256R1())
    pem = k.public_key().public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return k, pem


def fingerprint(pem):
    key = serialization.load_pem_public_key(pem.encode())
    return hashlib.sha256(key.public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def es256_token(key, aud, iat, exp):
    head = b64u(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    body = b64u(json.dumps({"iat": iat, "exp": exp, "aud": aud}).encode())
    der = key.sign(f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{head}.{body}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


# ---- running as another user ----

def as_nobody_prefix():
    if os.geteuid() != 0:
        return None, "the tests do not run as root, so they cannot become another user"
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"], None
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"], None
    return None, "neither setpriv nor runuser exists to run a command as nobody"


class Result:
    def __init__(self, cp):
        self.rc, self.out, self.err = cp.returncode, cp.stdout, cp.stderr

    def __repr__(self):
        return f"<rc={self.rc} out={self.out[:200]!r} err={self.err[:400]!r}>"


def as_nobody(*args):
    prefix, why = as_nobody_prefix()
    if prefix is None:
        pytest.skip(why)
    env = {k: v for k, v in os.environ.items() if k != "LATCHKEY_DB"}
    cp = subprocess.run([*prefix, str(BIN / "latchkey"), *map(str, args)], capture_output=True, text=True,
                        env=env, timeout=60)
    return Result(cp)


@pytest.fixture
def shared():
    """A directory only root may write (as /var/lib/latchkey for the broker), readable by all: under
    /tmp itself, since pytest's own temporary directories are closed to other users."""
    d = Path(tempfile.mkdtemp(prefix="lk-shared-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "registry.db"
    ok(lkdb(path, "registries", "create", R, *LOC))
    return path


# ---- databases that are not registries, or not ours ----

@pytest.mark.db_only("an empty or foreign database file, as the tool opens it")
def test_empty_or_foreign_database_is_named_plainly(tmp_path):
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for args in (("registries", "list"), ("devices", "list", "--registry", R, *LOC),
                 ("devices", "create", "dev-1", "--registry", R, *LOC), ("backends", "list")):
        r = lkdb(empty, *args)
        assert r.rc == STORAGE, r
        assert f"{empty} is an empty database, not a latchkey registry" in r.err
        assert "LK_REG_CREATE" not in r.err  # no library jargon
        assert "'registries create' or 'backends create' make a registry database" in r.err
        assert empty.stat().st_size == 0  # and not a byte written to it
    text = tmp_path / "notes.db"
    text.write_text("shopping list\n")
    r = lkdb(text, "registries", "list")
    assert r.rc == STORAGE and "is not a latchkey registry database (not an SQLite database at all)" in r.err, r
    assert "file is not a database" not in r.err
    assert text.read_text() == "shopping list\n"


@pytest.mark.db_only("the tool's own access to the database file")
def test_permission_problems_are_not_no_such_file(shared):
    # creating a database where one may not write
    r = as_nobody("--db", shared / "new.db", "registries", "create", R, *LOC)
    assert r.rc != 0
    assert "No such file" not in r.err, r
    assert "Permission denied" in r.err and f"the directory {shared} must be writable by you" in r.err, r
    # a database one may not read
    db = shared / "registry.db"
    ok(lkdb(db, "registries", "create", R, *LOC))
    os.chmod(db, 0o600)
    r = as_nobody("--db", db, "registries", "list")
    assert r.rc == 1 and "No such file" not in r.err, r
    assert f"registry database {db} is not readable by you" in r.err and "mode 0600" in r.err, r
    # a database one may read but not write, for a command that writes
    os.chmod(db, 0o644)
    r = as_nobody("--db", db, "devices", "create", "dev-1", "--registry", R, *LOC)
    assert r.rc == 1 and f"registry database {db} is not writable by you" in r.err, r
    assert "attempt to write a readonly database" not in r.err


@pytest.mark.db_only("the tool's own access to the database file")
def test_listing_works_for_a_reader_who_may_not_write(shared):
    db = shared / "registry.db"
    ok(lkdb(db, "registries", "create", R, *LOC))
    ok(lkdb(db, "devices", "create", "dev-1", "--registry", R, *LOC))
    ok(lkdb(db, "backends", "create", "analytics", "--project", P))
    # the broker's layout: files of another owner, group-readable; the reader is in the group
    for f in shared.iterdir():
        os.chown(f, 0, 65534)
    assert (shared / "registry.db-wal").exists() and (shared / "registry.db-shm").exists()
    for args in (("registries", "list"), ("registries", "describe", R, *LOC),
                 ("devices", "list", "--registry", R, *LOC), ("devices", "describe", "dev-1", "--registry", R, *LOC),
                 ("devices", "credentials", "list", "dev-1", "--registry", R, *LOC),
                 ("devices", "configs", "list", "dev-1", "--registry", R, *LOC), ("backends", "list")):
        # nobody's group is nogroup (65534): read access through the group, as 0640 gives it
        r = as_nobody("--db", db, *args)
        assert r.rc == 0, (args, r)
    assert "dev-1" in as_nobody("--db", db, "devices", "list", "--registry", R, *LOC).out
    # a reader never writes: nothing of nobody's appears in the directory
    assert all(f.stat().st_uid == 0 for f in shared.iterdir())
    # without the -wal/-shm files (a database last closed by an older latchkey) SQLite cannot read it
    # without creating them: the message says which permission to grant
    os.unlink(shared / "registry.db-wal")
    os.unlink(shared / "registry.db-shm")
    r = as_nobody("--db", db, "registries", "list")
    assert r.rc != 0, r
    assert f"grant write permission on {shared}" in r.err and "-shm" in r.err, r


@pytest.mark.db_only("the mode of a database file the tool creates")
def test_new_database_is_not_world_readable(tmp_path):
    db = tmp_path / "registry.db"
    cp = subprocess.run(["sh", "-c", f'umask 022 && exec "{BIN / "latchkey"}" --db "{db}" registries create '
                                     f'{R} --project {P} --region {L}'], capture_output=True, text=True)
    assert cp.returncode == 0, cp
    ok(lkdb(db, "devices", "create", "dev-1", "--registry", R, *LOC))
    for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o640, (name, oct(mode))
    # root creating it in the broker's directory gives it the directory's owner (the broker's user)
    if os.geteuid() == 0:
        d = tmp_path / "broker"
        d.mkdir()
        os.chown(d, 65534, 65534)
        ok(lkdb(d / "registry.db", "registries", "create", R, *LOC))
        for name in ("registry.db", "registry.db-wal", "registry.db-shm"):
            st = (d / name).stat()
            assert (st.st_uid, st.st_gid) == (65534, 65534), name


# ---- credentials ----

def test_fingerprints_tell_credentials_apart(db, tmp_path):
    keys = [key_pair()[1] for _ in range(2)]
    paths = []
    for i, k in enumerate(keys):
        p = tmp_path / f"k{i}.pem"
        p.write_text(k)
        paths.append(p)
    ok(dev(db, "create", "dev-1", "--public-key", f"path={paths[0]},type=es256",
           "--public-key", f"path={paths[1]},type=es256"))
    creds = js(dev(db, "describe", "dev-1", "--format", "json"))["credentials"]
    assert [c["sha256"] for c in creds] == [fingerprint(k) for k in keys]
    rows = ok(dev(db, "credentials", "list", "dev-1")).out.splitlines()
    assert rows[0].split()[-1] == "SHA256"
    assert [r.split()[-1] for r in rows[1:]] == [fingerprint(k) for k in keys]
    assert js(dev(db, "credentials", "describe", "dev-1", "1", "--format", "json"))["sha256"] == fingerprint(keys[1])


def test_expired_credential_is_accepted_with_a_warning(db, tmp_path):
    p = tmp_path / "k.pem"
    p.write_text(key_pair()[1])
    r = ok(dev(db, "create", "dev-1", "--public-key", f"path={p},type=es256,expiration-time=2020-01-01"))
    assert f"warning: the credential from {p} expired at 2020-01-01T00:00:00Z: stored" in r.err, r
    r = ok(dev(db, "credentials", "create", "dev-1", "--path", p, "--type", "es256", "--expiration-time", "1600000000"))
    assert "expired at 2020-09-13T12:26:40Z" in r.err, r
    r = ok(dev(db, "credentials", "create", "dev-1", "--path", p, "--type", "es256", "--expiration-time", "2099-01-01"))
    assert "warning" not in r.err


def test_pkcs1_rsa_public_key(db, tmp_path):
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pkcs1 = tmp_path / "rsa-pkcs1.pem"
    pkcs1.write_bytes(k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1))
    spki = k.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    r = ok(dev(db, "create", "dev-rsa", "--public-key", f"path={pkcs1},type=rsa"))
    assert "holds an RSA PUBLIC KEY (PKCS#1): registered as the same key in a PUBLIC KEY block" in r.err
    got = js(dev(db, "describe", "dev-rsa", "--format", "json"))["credentials"][0]
    assert got["publicKey"] == {"format": "RSA_PEM", "key": spki}
    assert got["sha256"] == fingerprint(spki)
    # as an ES256 key it is refused, saying what it is
    r = dev(db, "credentials", "create", "dev-rsa", "--path", pkcs1, "--type", "es256")
    assert r.rc == INVALID and "is an RSA PUBLIC KEY (PKCS#1), but its type says ES256_PEM" in r.err, r
    # a broken one: what it is and how to convert a good one
    bad = tmp_path / "bad-pkcs1.pem"
    bad.write_text("-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n")
    r = dev(db, "credentials", "create", "dev-rsa", "--path", bad, "--type", "rsa")
    assert r.rc == INVALID and "RSA PUBLIC KEY (PKCS#1)" in r.err and "openssl rsa -RSAPublicKey_in" in r.err, r
    assert "not exactly one PEM block" not in r.err
    # token verify reads it too
    r = run_tool("token", "verify", "--credential", pkcs1, "--aud", P, "x.y.z")
    assert r.rc == INVALID_TOKEN and "LK_ERR_CRED_INVALID" not in r.err, r


# ---- token verify against the registry ----

def test_token_verify_with_the_registry(db, tmp_path):
    k1, pem1 = key_pair()
    k2, pem2 = key_pair()
    p1, p2 = tmp_path / "k1.pem", tmp_path / "k2.pem"
    p1.write_text(pem1)
    p2.write_text(pem2)
    ok(dev(db, "create", "dev-1", "--public-key", f"path={p1},type=es256",
           "--public-key", f"path={p2},type=es256"))
    now = int(time.time())
    tok = es256_token(k2, P, now, now + 600)
    args = ["token", "verify", "--device", "dev-1", "--registry", R, *LOC, "--db", db]
    r = ok(run_tool(*args, "-", input=tok))
    assert f"credential   2 of 2: device dev-1 credential 1 (ES256_PEM, sha256 {fingerprint(pem2)})" in r.out
    # the same fingerprint as 'devices describe' shows
    assert fingerprint(pem2) in ok(dev(db, "describe", "dev-1")).out
    j = js(run_tool(*args, "--format", "json", "-", input=tok))
    assert j["credential"] == {"position": 2, "count": 2, "device": "dev-1", "index": 1, "format": "ES256_PEM",
                               "sha256": fingerprint(pem2)}
    # LATCHKEY_DB and the numId work too; --aud, if given, must be the project
    num = js(dev(db, "describe", "dev-1", "--format", "json"))["numId"]
    ok(run_tool("token", "verify", "--device", num, "--registry", R, *LOC, "--aud", P, "-", input=tok,
                env={"LATCHKEY_DB": str(db)}))
    r = run_tool(*args, "--aud", "other-project", "-", input=tok)
    assert r.rc == USAGE and "is not the device's project" in r.err, r
    # another key's token is refused, with the verifier's reason
    k3, _ = key_pair()
    r = run_tool(*args, "-", input=es256_token(k3, P, now, now + 600))
    assert r.rc == INVALID_TOKEN and "LK_ERR_TOKEN_SIGNATURE" in r.err, r
    # a blocked device: the token is good, the broker still refuses
    ok(dev(db, "update", "dev-1", "--blocked"))
    r = run_tool(*args, "-", input=tok)
    assert r.rc == INVALID_TOKEN and "device dev-1 is blocked" in r.err and "the token verifies" in r.err, r
    # registry errors and usage
    r = run_tool("token", "verify", "--device", "nope", "--registry", R, *LOC, "--db", db, "-", input=tok)
    assert r.rc == NOT_FOUND, r
    r = run_tool(*args, "--credential", p1, "-", input=tok)
    assert r.rc == USAGE and "exclude each other" in r.err, r
    ok(dev(db, "create", "dev-none"))
    r = run_tool("token", "verify", "--device", "dev-none", "--registry", R, *LOC, "--db", db, "-", input=tok)
    assert r.rc == INVALID_TOKEN and "has no credentials" in r.err, r


# ---- --help ----

SUBCOMMANDS = {
    ("registries", "create"): "registries create REGISTRY",
    ("registries", "list"): "registries list",
    ("registries", "describe"): "registries describe REGISTRY",
    ("registries", "update"): "registries update REGISTRY",
    ("registries", "delete"): "registries delete REGISTRY",
    ("registries", "import"): "registries import FILE",
    ("registries", "credentials", "create"): "registries credentials create",
    ("registries", "credentials", "list"): "registries credentials list",
    ("registries", "credentials", "describe"): "registries credentials describe INDEX",
    ("registries", "credentials", "delete"): "registries credentials delete INDEX",
    ("devices", "create"): "devices create DEVICE",
    ("devices", "list"): "devices list",
    ("devices", "describe"): "devices describe DEVICE",
    ("devices", "update"): "devices update DEVICE",
    ("devices", "delete"): "devices delete DEVICE",
    ("devices", "import"): "devices import FILE",
    ("devices", "credentials", "create"): "devices credentials create DEVICE",
    ("devices", "credentials", "list"): "devices credentials list DEVICE",
    ("devices", "credentials", "describe"): "devices credentials describe [DEVICE] INDEX",
    ("devices", "credentials", "delete"): "devices credentials delete [DEVICE] INDEX",
    ("devices", "configs", "update"): "devices configs update DEVICE",
    ("devices", "configs", "list"): "devices configs list DEVICE",
    ("devices", "configs", "describe"): "devices configs describe DEVICE",
    ("devices", "states", "list"): "devices states list DEVICE",
    ("devices", "commands", "send"): "devices commands send DEVICE",
    ("backends", "create"): "backends create NAME",
    ("backends", "list"): "backends list",
    ("backends", "delete"): "backends delete NAME",
}


@pytest.mark.parametrize("cmd", sorted(SUBCOMMANDS), ids=" ".join)
def test_each_subcommand_has_its_own_help(cmd):
    r = ok(run_tool(*cmd, "--help"))
    first = r.out.splitlines()[0]
    assert first.startswith("usage: latchkey [--db FILE] ") and SUBCOMMANDS[cmd] in first, r.out
    # not the whole group: no other subcommand's usage line
    others = [v for k, v in SUBCOMMANDS.items() if k[0] == cmd[0] and k != cmd and v not in SUBCOMMANDS[cmd]]
    for o in others:
        assert f"  {o.split(' ', 1)[1]}" not in r.out and f"] {o}" not in r.out, (o, r.out)
    assert r.err == ""
