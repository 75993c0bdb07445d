"""Faults around storage (issue 20; docs/robustness.md, "Faults"): an import killed with SIGKILL (the tool's
own, and latchkeyd's devices:importManifest), and the disk full during an import and during push queueing.

Real SQLite files, a real Mosquitto with latchkey's plugin, a real latchkeyd. "Killed during the import" is
made sure of, not guessed: the kill comes only once another process (Python's sqlite3) finds the registry's
write lock taken, that is, inside the import's transaction. A full disk is a small tmpfs mounted in the test's
directory (root only; skipped saying so otherwise) and filled with a file, then freed. What is checked against
is independent of latchkey: SQLite's `PRAGMA integrity_check` and counts read with Python's sqlite3, the push
endpoint's record, the devices' own count of PUBACKs.
"""
import base64
import json
import os
import random
import sqlite3
import subprocess
import threading
import time

import pytest

from api_common import Env, devices_path, ok, P as AP, L as AL
from broker import Broker
from conftest import integrity, run_tool, tool_argv
from plugin_common import make_device
from push_endpoint import Endpoint
from test_delivery import Device as EventDevice, Stack, wait
from test_manifest_import import ca_cert, device_line, leaf, pem, write_manifest

from cryptography.hazmat.primitives.asymmetric import ec

pytestmark = pytest.mark.db_only("the registry file itself is killed, filled and checked")

LOC = ["--registry", "reg-1", "--project", AP, "--region", AL]


def count_devices(db, prefix):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT count(*) FROM devices WHERE device_id LIKE ?", (prefix + "%",)).fetchone()[0]
    finally:
        con.close()


def write_locked(db):
    """True when another process holds the database's write lock (a write transaction is open)."""
    con = sqlite3.connect(str(db), timeout=0, isolation_level=None)
    try:
        con.execute("BEGIN IMMEDIATE")
        con.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as e:
        assert "locked" in str(e) or "busy" in str(e), e
        return True
    finally:
        con.close()


def kill_inside_the_transaction(proc, db, timeout=30):
    """SIGKILL proc once it holds db's write lock (after a random few milliseconds). True when it was still
    running at the kill; False when it had finished (and committed) first: then the kill proved nothing."""
    deadline = time.time() + timeout
    while not write_locked(db):
        if proc.poll() is not None:
            return False
        assert time.time() < deadline, "the import never took the write lock"
        time.sleep(0.0005)
    time.sleep(random.uniform(0.0, 0.01))
    alive = proc.poll() is None
    proc.kill()
    proc.wait()
    return alive


def device_lines(n, prefix):
    return "".join(json.dumps({"id": f"{prefix}-{i:06d}", "metadata": {"batch": prefix, "n": str(i)}}) + "\n"
                   for i in range(n))


# ---- 1. imports killed ----

def test_tool_import_killed_is_all_or_nothing(tmp_path):
    """`latchkey devices import` killed with SIGKILL inside its transaction, again and again: each time the
    registry has all of the batch or none of it (none at least twice: killed before the commit) and passes
    integrity_check; the same command run again imports it all."""
    db = tmp_path / "registry.db"
    assert run_tool("--db", db, "registries", "create", "reg-1", "--project", AP, "--region", AL).rc == 0
    n, nothing = 1500, 0
    for attempt in range(8):
        f = tmp_path / f"batch-{attempt}.jsonl"
        f.write_text(device_lines(n, f"imp{attempt}"))
        proc = subprocess.Popen(tool_argv("--db", db, "devices", "import", f, *LOC), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        killed = kill_inside_the_transaction(proc, db)
        assert integrity(db) == [("ok",)]
        got = count_devices(db, f"imp{attempt}-")
        assert got in (0, n), f"a killed import left {got} of its {n} devices"
        nothing += got == 0
        assert killed or got == n
        if nothing == 2:
            break
    assert nothing == 2, "the import always committed before the kill: make it larger"
    r = run_tool("--db", db, "devices", "import", f, *LOC)
    assert r.rc == 0, r
    assert count_devices(db, f"imp{attempt}-") == n
    assert integrity(db) == [("ok",)]


def test_daemon_killed_during_manifest_import_is_all_or_nothing(tmp_path):
    """latchkeyd killed with SIGKILL while it imports a signed manifest (devices:importManifest, within its
    1 MiB body), until a kill lands before the commit: after each restart the batch is all there or not at all
    (all of it whenever the import was answered 200), and the file passes integrity_check; the same request
    then imports every device. (The write lock is the import's: authenticating a call writes nothing.)"""
    e = Env(tmp_path / "lkd")
    try:
        make = manifests(e, tmp_path)
        n, path = 150, devices_path() + ":importManifest"
        for attempt in range(6):
            prefix = f"man{attempt}-"
            body, hdr = make(prefix, n, attempt)
            answers = []
            t = threading.Thread(target=lambda: answers.append(_post_or_error(e, path, body, hdr)), daemon=True)
            t.start()
            kill_inside_the_transaction(e.daemon.proc, e.daemon.db)
            e.daemon.logf.close()
            t.join(10)
            assert integrity(e.daemon.db) == [("ok",)]
            got = count_devices(e.daemon.db, prefix)
            assert got in (0, n), f"a killed import left {got} of its {n} devices"
            if answers and answers[0] is not None:
                assert answers[0].status != 200 or got == n, "an import answered 200 is not all there"
            e.daemon.start()
            if got == 0:
                break
        assert got == 0, "the import always committed before the kill: make it larger"
        rep = ok(e.api.post(path, raw=body, headers=hdr))
        assert rep["imported"] == n, rep
        assert count_devices(e.daemon.db, prefix) == n
        assert integrity(e.daemon.db) == [("ok",)]
    finally:
        e.stop()


def manifests(e, tmp_path):
    """Registry reg-1 of e trusts a CA and a manifest signer made here; returns make(prefix, n, k) -> (the
    body of a signed manifest of n devices prefix0000..., its headers for devices:importManifest)."""
    ca, ca_key = ca_cert("Fault CA")
    (tmp_path / "ca.pem").write_text(pem(ca))
    loc = ["--project", AP, "--region", AL]
    assert e.lk("registries", "credentials", "create", "--registry", "reg-1", "--path", tmp_path / "ca.pem",
                *loc).rc == 0
    signer = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "s.pem").write_text(pem(signer.public_key()))
    assert e.lk("registries", "signers", "add", "--label", "acme", "--path", tmp_path / "s.pem",
                "--registry", "reg-1", *loc).rc == 0

    def make(prefix, n, k):
        lines = []
        for i in range(n):
            c, pub = leaf(f"{prefix}{i:04d}", ca, ca_key)
            lines.append(device_line(f"{prefix}{i:04d}", c, pub))
        m = write_manifest(tmp_path / f"b{k}.jsonl", lines, signer, batch=f"batch-{k}")
        body = m.read_bytes()
        assert len(body) < 1 << 20
        return body, {"Content-Type": "application/x-ndjson",
                      "X-Latchkey-Manifest-Signature": (tmp_path / f"b{k}.jsonl.jws").read_text().strip()}
    return make


def _post_or_error(e, path, body, hdr):
    try:
        return e.api.post(path, raw=body, headers=hdr)
    except OSError:
        return None


# ---- 2. the disk full ----

class SmallDisk:
    """A tmpfs of size bytes mounted on path; fill() takes every free byte, free() gives it back."""

    def __init__(self, path, size):
        if os.geteuid() != 0:
            pytest.skip("a full disk is a tmpfs mounted for the test: needs root")
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs for the full disk: {r.stderr.strip()}")
        self.path = path
        self.filler = path / "filler"

    def fill(self):
        with open(self.filler, "ab", buffering=0) as f:
            block = b"\0" * 4096
            try:
                while True:
                    f.write(block)
            except OSError:
                pass
        st = os.statvfs(self.path)
        assert st.f_bavail == 0, "the disk is not full"

    def free(self):
        self.filler.unlink()

    def umount(self):
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True)


@pytest.fixture
def disk(tmp_path):
    d = SmallDisk(tmp_path / "small", 8 << 20)
    yield d
    d.umount()


def test_disk_full_during_import(tmp_path, disk):
    """The registry on a full disk: `devices import` exits 19 saying the disk is full, writes none of its
    batch and leaves a sound file; the devices already there are intact. Space back, the same command
    imports it all."""
    db = disk.path / "registry.db"
    assert run_tool("--db", db, "registries", "create", "reg-1", "--project", AP, "--region", AL).rc == 0
    (tmp_path / "first.jsonl").write_text(device_lines(200, "old"))
    assert run_tool("--db", db, "devices", "import", tmp_path / "first.jsonl", *LOC).rc == 0
    f = tmp_path / "batch.jsonl"
    f.write_text(device_lines(1000, "new"))
    disk.fill()
    r = run_tool("--db", db, "devices", "import", f, *LOC)
    assert r.rc == 19, r
    assert "LK_ERR_REG_STORAGE" in r.err and ("full" in r.err.lower() or "space" in r.err.lower()), r.err
    assert "nothing was imported" in r.err or "Imported" not in r.out, r
    disk.free()
    assert integrity(db) == [("ok",)]
    assert count_devices(db, "new-") == 0 and count_devices(db, "old-") == 200
    r = run_tool("--db", db, "devices", "import", f, *LOC)
    assert r.rc == 0, r
    assert count_devices(db, "new-") == 1000 and count_devices(db, "old-") == 200
    assert integrity(db) == [("ok",)]


def test_disk_full_during_push_queueing(tmp_path, disk):
    """The push spool on a full disk. The broker does not acknowledge an event it could not queue (the
    device's connection closes without PUBACK, the log says why); the device sends it again. latchkeyd
    keeps the acknowledgements it cannot write and pauses that subscription. Space back, every event the
    device saw acknowledged reaches the push endpoint, the queue empties, and the spool passes
    integrity_check."""
    ep = Endpoint(tmp_path / "ep", "push")
    s = Stack(tmp_path, ep.ca_path, spool=disk.path / "spool.db")
    try:
        s.subscribe("durable", "ev-all", ep.url("/ok"))
        d = EventDevice(s.b, s.b.device("dev-full"))
        d.send([b"before %03d" % i + b"." * 2000 for i in range(20)], timeout=30)
        wait(lambda: len(set(ep.acked_data("/ok"))) == 20, 20, "the events before the disk filled")
        # queued, not delivered yet: the first one's POST is answered only once the disk is full, so that its
        # acknowledgement cannot be written; latchkeyd keeps it in memory, tries again, and takes nothing new
        # for the subscription meanwhile (it would be offered again)
        filled = threading.Event()
        ep.rules["/ok"] = lambda k, b: (filled.wait(30), 200)[1] if k == 20 else 200
        queued = [b"queued %03d" % i + b"." * 2000 for i in range(20)]
        d.send(queued, timeout=30)
        disk.fill()
        filled.set()
        wait(lambda: "acknowledgement(s) to the spool" in s.d.log_text(), 20, "latchkeyd saying acks wait")
        line = next(ln for ln in s.d.log_text().splitlines() if "acknowledgement(s) to the spool" in ln)
        assert "disk is full (kept, tried again)" in line, line
        payloads = [b"while full %04d " % i + b"." * 4000 for i in range(150)]
        mark = len(s.b.log_text())
        sender = threading.Thread(target=d.send, args=(payloads,), kwargs={"timeout": 120}, daemon=True)
        sender.start()
        wait(lambda: "event=spool_failed" in s.b.log_text()[mark:], 30, "the broker saying the spool failed")
        line = next(ln for ln in s.b.log_text()[mark:].splitlines() if "event=spool_failed" in ln)
        assert "full" in line.lower() and "not acknowledged" in line, line
        time.sleep(1.0)
        assert len(d.acked & set(payloads)) < len(payloads), "every event was queued on a full disk"
        disk.free()
        sender.join(120)
        assert not sender.is_alive(), "the device could not get its events acknowledged after space came back"
        assert d.acked >= set(payloads)
        wait(lambda: set(ep.acked_data("/ok")) >= set(queued + payloads), 60, "every acknowledged event pushed")
        wait(lambda: s.stats("durable")["depth"] == 0, 20, "an empty queue")
        assert integrity(s.spool) == [("ok",)]
        assert s.d.alive() and s.b.running()
    finally:
        s.stop()
        ep.close()


def test_api_on_a_full_disk(tmp_path, disk):
    """latchkeyd's registry on a full disk: a write (a device, a signed manifest's import) answers 500 with
    LK_ERR_REG_STORAGE, saying the registry's storage failed (the log says why), and writes nothing; reads
    still answer; space back, the same calls succeed."""
    e = Env(tmp_path / "lkd", db=disk.path / "registry.db")
    try:
        ok(e.api.create_device("dev-before"))
        body, hdr = manifests(e, tmp_path)("full-", 100, 0)
        path = devices_path() + ":importManifest"
        disk.fill()
        for r in (e.api.create_device("dev-while-full"), e.api.post(path, raw=body, headers=hdr)):
            assert r.status == 500, r
            assert "LK_ERR_REG_STORAGE" in r.raw.decode() and "the registry's storage failed" in r.message, r
        assert "disk is full" in e.daemon.log_text(), e.daemon.log_text()[-2000:]
        assert ok(e.api.get(devices_path() + "/dev-before"))["id"] == "dev-before"
        assert count_devices(e.daemon.db, "full-") == 0
        disk.free()
        ok(e.api.create_device("dev-while-full"))
        assert ok(e.api.post(path, raw=body, headers=hdr))["imported"] == 100
        assert count_devices(e.daemon.db, "full-") == 100
        assert integrity(e.daemon.db) == [("ok",)]
    finally:
        e.stop()


def test_broker_registry_on_a_full_disk(tmp_path, disk):
    """The broker's registry on a full disk: devices still connect and their events reach a backend; a state
    report, published downstream at once, waits for the registry (as for a lock) and is written when space
    comes back, not lost."""
    from plugin_common import backend_secret, close, connect, log_line, publish, received
    b = Broker(tmp_path / "b", db=disk.path / "registry.db", opts={"activity_flush": 1})
    try:
        d = make_device(b, "dev-state")
        be = connect(b, "be-full/t", backend_secret(b, "be-full"), username="backend:be-full")
        assert b.subscribe(be, "latchkey/proj-one/#", 1) == 1
        disk.fill()
        mark = len(b.log_text())
        c = connect(b, d.client_id, d.token())
        try:
            publish(c, d.topic("events"), b"event on a full disk", qos=1)
            assert received(be, d.downstream("events"), b"event on a full disk", timeout=5)
            publish(c, d.topic("state"), b"state on a full disk", qos=1)
            assert received(be, d.downstream("state"), b"state on a full disk", timeout=5)
            time.sleep(1.5)
            assert log_line(b, "(LK_ERR_REG_STORAGE): state reports wait", after=mark), b.log_text()[mark:][-2000:]
            disk.free()
            deadline = time.time() + 5
            while True:
                r = d.devices("states", "list", d.id, "--format", "json")
                assert r.rc == 0, r
                got = [base64.b64decode(s["binaryData"]) for s in json.loads(r.out)]
                if got:
                    break
                assert time.time() < deadline, b.log_text()[mark:][-2000:]
                time.sleep(0.2)
            assert got == [b"state on a full disk"]
            assert b.running()
        finally:
            close(c)
            close(be)
        assert integrity(b.db) == [("ok",)]
    finally:
        b.stop()
