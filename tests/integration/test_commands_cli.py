"""latchkey devices commands send / latchkey backends: the tool against real SQLite files.

The broker's side of a command is played by a fake broker: a thread with its
own sqlite3 connection that does what the plugin does through the library
(lk_registry_commands_pending, then lk_registry_command_decide: one
UPDATE ... WHERE status = 0). Nothing here needs Mosquitto; the plugin's own
suite covers the delivery to a device.
"""
import base64
import hashlib
import json
import re
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from conftest import BIN, run_tool

P, L, R = "proj-one", "us-central1", "reg-1"
LOC = ["--project", P, "--region", L]

# Exit codes (docs/cli.md).
USAGE = 2
NOT_FOUND, EXISTS, LIMIT, INVALID = 11, 12, 14, 15
NOT_CONNECTED, NO_BROKER = 21, 22

# lk_reg_command_status
PENDING, DELIVERED, NOT_CONNECTED_ST, EXPIRED = 0, 1, 2, 3
CHANGE_COMMAND, CHANGE_BACKEND = 5, 7


def lkdb(db, *args, input=None, env=None):
    return run_tool("--db", db, *args, input=input, env=env)


def ok(r):
    assert r.rc == 0, r
    return r


def refused(r, code, *words):
    assert r.rc == code, r
    assert r.err.startswith("latchkey: "), r
    for w in words:
        assert w.lower() in r.err.lower(), (w, r)


def dump(db):
    cp = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, text=True, check=True)
    return cp.stdout


def query(db, sql, *args):
    c = sqlite3.connect(str(db), timeout=10)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def send(db, device, *args, registry=R):
    return lkdb(db, "devices", "commands", "send", device, "--registry", registry, *LOC, *args)


@pytest.fixture
def db(tmp_path):
    d = tmp_path / "registry.db"
    ok(lkdb(d, "registries", "create", R, *LOC))
    ok(lkdb(d, "devices", "create", "dev1", "--registry", R, *LOC))
    ok(lkdb(d, "devices", "create", "dev2", "--registry", R, *LOC))
    return d


class FakeBroker:
    """Decides every pending command as `outcome`, after `delay` seconds."""

    def __init__(self, db, outcome, delay=0.1):
        self.db, self.outcome, self.delay = str(db), outcome, delay
        self.seen = []          # (id, num_id, device_id, subfolder, data)
        self.won = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        c = sqlite3.connect(self.db, timeout=10, isolation_level=None)
        try:
            while not self.stop.is_set():
                rows = c.execute(
                    "SELECT c.id, c.num_id, d.device_id, c.subfolder, c.data FROM commands c "
                    "JOIN devices d ON d.num_id = c.num_id WHERE c.status = 0 ORDER BY c.id").fetchall()
                for row in rows:
                    if row[0] in [s[0] for s in self.seen]:
                        continue
                    self.seen.append(row)
                    time.sleep(self.delay)
                    cur = c.execute("UPDATE commands SET status = ?, decided = ? WHERE id = ? AND status = 0",
                                    (self.outcome, int(time.time()), row[0]))
                    self.won.append(cur.rowcount == 1)
                time.sleep(0.02)
        finally:
            c.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


# ---- devices commands send ----

@pytest.mark.db_only("--timeout is the tool's own wait; through the API latchkeyd waits its command_wait_ms")
def test_no_broker_times_out_and_expires(db):
    t0 = time.monotonic()
    r = send(db, "dev1", "--command-data", "reboot", "--timeout", "1")
    elapsed = time.monotonic() - t0
    refused(r, NO_BROKER, "no broker picked the command up within 1 s",
            "is the broker running with the latchkey plugin")
    assert r.out == ""
    assert 1.0 <= elapsed < 4, elapsed
    rows = query(db, "SELECT c.status, c.decided > 0, c.data, c.subfolder, d.device_id FROM commands c "
                     "JOIN devices d ON d.num_id = c.num_id")
    assert rows == [(EXPIRED, 1, b"reboot", None, "dev1")]
    # The queued command was announced on the change feed with the device's numId.
    num = query(db, "SELECT num_id FROM devices WHERE device_id = 'dev1'")[0][0]
    assert (CHANGE_COMMAND, num) in query(db, "SELECT kind, num_id FROM changes")


def test_broker_too_late_cannot_deliver(db):
    """A broker deciding after the sender withdrew the command loses."""
    r = send(db, "dev1", "--command-data", "x", "--timeout", "1")
    assert r.rc == NO_BROKER, r
    with FakeBroker(db, DELIVERED, delay=0):
        time.sleep(0.3)
    (cid, status), = query(db, "SELECT id, status FROM commands")
    assert status == EXPIRED
    # Nothing pending is left for a broker to pick up.
    assert query(db, "SELECT count(*) FROM commands WHERE status = 0") == [(0,)]


def test_delivered(db, tmp_path):
    data = bytes(range(256)) * 3
    f = tmp_path / "cmd.bin"
    f.write_bytes(data)
    with FakeBroker(db, DELIVERED) as b:
        r = send(db, "dev1", "--command-file", f, "--subfolder", "motor/left", "--timeout", "10")
    assert r.rc == 0, r
    assert r.out == ""
    assert len(b.seen) == 1 and b.won == [True]
    cid, num, device, subfolder, got = b.seen[0]
    assert (device, subfolder, bytes(got)) == ("dev1", "motor/left", data)
    assert query(db, "SELECT status FROM commands WHERE id = ?", cid) == [(DELIVERED,)]


def test_delivered_json_and_other_names(db):
    num = query(db, "SELECT num_id FROM devices WHERE device_id = 'dev2'")[0][0]
    with FakeBroker(db, DELIVERED) as b:
        r = send(db, str(num), "--command-data", "on", "--format", "json")
        assert r.rc == 0, r
        assert json.loads(r.out) == {}
        full = f"projects/{P}/locations/{L}/registries/{R}/devices/dev2"
        r = lkdb(db, "devices", "commands", "send", full, "--command-data", "off")
        assert r.rc == 0, r
        r = lkdb(db, "devices", "commands", "send", "--device", "dev2", "--registry", R, *LOC,
                 "--command-data", "")
        assert r.rc == 0, r
    assert [(s[2], bytes(s[4])) for s in b.seen] == [("dev2", b"on"), ("dev2", b"off"), ("dev2", b"")]


def test_not_connected(db):
    with FakeBroker(db, NOT_CONNECTED_ST):
        r = send(db, "dev1", "--command-data", "x")
    refused(r, NOT_CONNECTED)
    assert r.err.strip() == ("latchkey: devices commands send: device dev1 is not connected or not "
                             "subscribed to /devices/dev1/commands/# (FAILED_PRECONDITION)")
    assert r.out == ""
    assert query(db, "SELECT status FROM commands") == [(NOT_CONNECTED_ST,)]


@pytest.mark.db_only("through the API latchkeyd waits for the broker, and withdraws the command itself")
def test_interrupt_withdraws(db):
    p = subprocess.Popen([str(BIN / "latchkey"), "--db", str(db), "devices", "commands", "send", "dev1",
                          "--registry", R, *LOC, "--command-data", "x", "--timeout", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while query(db, "SELECT count(*) FROM commands") == [(0,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 130, (out, err)
    assert "withdrawn" in err
    assert query(db, "SELECT status FROM commands") == [(EXPIRED,)]


def test_send_refusals_write_nothing(db, tmp_path):
    ok(lkdb(db, "devices", "update", "dev2", "--blocked", "--registry", R, *LOC))
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (256 * 1024 + 1))
    before = dump(db)
    refused(send(db, "nope", "--command-data", "x"), NOT_FOUND, "'nope' does not exist")
    refused(send(db, "dev1", "--command-data", "x", registry="reg-2"), NOT_FOUND, "does not exist")
    refused(send(db, "dev2", "--command-data", "x"), INVALID, "'dev2' is blocked")
    for bad in ["a+b", "a/#", "/a", "a/", "a//b", "x" * 257]:
        refused(send(db, "dev1", "--command-data", "x", "--subfolder", bad), INVALID, "subfolder")
    refused(send(db, "dev1", "--command-file", big), LIMIT, "262144")
    refused(send(db, "dev1"), USAGE, "exactly one of --command-data")
    refused(send(db, "dev1", "--command-data", "x", "--command-file", big), USAGE, "exactly one")
    refused(send(db, "dev1", "--command-data", "x", "--timeout", "0"), USAGE, "--timeout")
    refused(send(db, "dev1", "--command-data", "x", "--timeout", "3601"), USAGE, "--timeout")
    refused(lkdb(db, "devices", "commands", "push", "dev1"), USAGE, "unknown command 'push'")
    assert dump(db) == before
    # The largest command is accepted.
    ok_file = tmp_path / "max.bin"
    ok_file.write_bytes(b"y" * (256 * 1024))
    with FakeBroker(db, DELIVERED, delay=0):
        assert send(db, "dev1", "--command-file", ok_file).rc == 0


def test_help(db):
    r = lkdb(db, "devices", "commands", "--help")
    assert r.rc == 0 and "--command-data" in r.out and "FAILED_PRECONDITION" in r.out
    assert "commands send" in lkdb(db, "devices", "--help").out
    assert "backends" in run_tool("--help").out


# ---- backends ----

SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def stored_hash(db, name):
    rows = query(db, "SELECT project, secret_sha256 FROM backends WHERE name = ?", name)
    return rows[0] if rows else None


def test_backend_create_text(tmp_path):
    db = tmp_path / "b.db"
    r = ok(lkdb(db, "backends", "create", "analytics", "--project", P))
    lines = r.out.splitlines()
    assert lines[0] == "username: backend:analytics"
    assert lines[1].startswith("secret:")
    secret = lines[1].split()[1]
    assert SECRET_RE.match(secret), secret
    assert len(base64.urlsafe_b64decode(secret + "=")) == 32
    assert "shown only this once" in r.err and "backend:analytics" in r.err
    assert secret not in r.err
    # Only SHA-256 over the secret's text (the MQTT password as sent) is kept.
    project, h = stored_hash(db, "analytics")
    assert project == P
    assert bytes(h) == hashlib.sha256(secret.encode("ascii")).digest()
    raw = db.read_bytes() + (tmp_path / "b.db-wal").read_bytes() if (tmp_path / "b.db-wal").exists() \
        else db.read_bytes()
    assert secret.encode() not in raw
    assert secret not in dump(db)
    # The change feed tells the broker.
    assert query(db, "SELECT kind, num_id FROM changes") == [(CHANGE_BACKEND, 0)]


def test_backend_create_json_secrets_differ(tmp_path):
    db = tmp_path / "b.db"
    a = json.loads(ok(lkdb(db, "backends", "create", "alpha1", "--project", P, "--format", "json")).out)
    b = json.loads(ok(lkdb(db, "backends", "create", "bravo1", "--project", "proj-two", "--format", "json")).out)
    assert a["name"] == "alpha1" and a["project"] == P and a["username"] == "backend:alpha1"
    assert SECRET_RE.match(a["secret"]) and SECRET_RE.match(b["secret"])
    assert a["secret"] != b["secret"]
    assert bytes(stored_hash(db, "bravo1")[1]) == hashlib.sha256(b["secret"].encode()).digest()


def test_backend_list_delete(tmp_path):
    db = tmp_path / "b.db"
    refused(lkdb(db, "backends", "list"), NOT_FOUND, "does not exist")  # no database yet
    ok(lkdb(db, "backends", "create", "zeta", "--project", P))
    ok(lkdb(db, "backends", "create", "alpha", "--project", P))
    ok(lkdb(db, "backends", "create", "other", "--project", "proj-two"))
    everything = json.loads(ok(lkdb(db, "backends", "list", "--format", "json")).out)
    assert [(b["project"], b["name"]) for b in everything] == [(P, "alpha"), (P, "zeta"), ("proj-two", "other")]
    assert all(set(b) == {"name", "project", "username", "createTime"} for b in everything)
    assert everything[0]["username"] == "backend:alpha"
    mine = json.loads(ok(lkdb(db, "backends", "list", "--project", "proj-two", "--format", "json")).out)
    assert [b["name"] for b in mine] == ["other"]
    text = ok(lkdb(db, "backends", "list", env={"LATCHKEY_PROJECT": P})).out.splitlines()
    assert text[0].split() == ["NAME", "PROJECT", "USERNAME", "CREATED"]
    assert [l.split()[0] for l in text[1:]] == ["alpha", "zeta"]
    assert json.loads(ok(lkdb(db, "backends", "list", "--project", "nobody-here", "--format", "json")).out) == []

    r = ok(lkdb(db, "backends", "delete", "zeta"))
    assert r.out.strip() == "Deleted backend [zeta]."
    assert json.loads(ok(lkdb(db, "backends", "delete", "alpha", "--format", "json")).out) == {}
    assert stored_hash(db, "zeta") is None
    kinds = query(db, "SELECT kind, num_id FROM changes ORDER BY seq")
    assert kinds == [(CHANGE_BACKEND, 0)] * 5
    refused(lkdb(db, "backends", "delete", "zeta"), NOT_FOUND, "backend 'zeta' does not exist")


def test_backend_refusals_write_nothing(tmp_path):
    db = tmp_path / "b.db"
    ok(lkdb(db, "backends", "create", "analytics", "--project", P))
    before = dump(db)
    r = lkdb(db, "backends", "create", "analytics", "--project", "proj-two")
    refused(r, EXISTS, "backend 'analytics' exists already", "unique")
    assert r.out == ""
    refused(lkdb(db, "backends", "create", "1bad", "--project", P), INVALID, "backend name '1bad' is invalid")
    refused(lkdb(db, "backends", "create", "goog-x", "--project", P), INVALID, "backend name")
    refused(lkdb(db, "backends", "create", "a/b", "--project", P), INVALID, "backend name")
    refused(lkdb(db, "backends", "create", "ok-name", "--project", "Bad"), INVALID, "project id 'Bad'")
    refused(lkdb(db, "backends", "create", "ok-name"), USAGE, "--project is required")
    refused(lkdb(db, "backends", "create", "--project", P), USAGE, "which backend")
    refused(lkdb(db, "backends", "create", "a", "b", "--project", P), USAGE, "unexpected argument 'b'")
    assert lkdb(db, "backends", "create", "x1", "--project", P, "--registry", R).rc == USAGE
    refused(lkdb(db, "backends", "delete", "nobody"), NOT_FOUND, "does not exist")
    assert lkdb(db, "backends", "delete", "-x").rc in (USAGE, INVALID)
    refused(lkdb(db, "backends", "list", "--project", "X"), INVALID, "project id")
    refused(lkdb(db, "backends", "rename", "x"), USAGE, "unknown command 'rename'")
    assert dump(db) == before
    # A refused name never creates a database.
    fresh = tmp_path / "fresh.db"
    refused(lkdb(fresh, "backends", "create", "1bad", "--project", P), INVALID)
    assert not fresh.exists()
