"""latchkey backup | restore | migrate (docs/operations.md, "Backups", "Schema migrations").

A registry with devices and configs and a spool with queued messages are backed up while another process keeps
writing the registry (the latchkey tool, in a loop); the backup passes SQLite's integrity check and, restored into
another directory ("another machine"), holds every device and config that existed when the backup began. Then the
refusals: a backup over another, a tampered backup, a file that is not a registry, a backup newer than this
latchkey, a restore under a process that has the target open; and migrate --check.

The backups are read here with Python's own sqlite3 module (not our libraries) and edited on copies only.
"""
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import BIN, run_tool

FILL = Path(os.environ.get("LK_TEST_LIB_DIR", "build/tests")) / "lk_spool_fill"
P, L, R = "proj-one", "us-central1", "reg-1"
LOC = ("--project", P, "--region", L, "--registry", R)
EXISTS, BUSY, STORAGE, MIGRATE_DUE = 12, 18, 19, 25
NDEV = 6
BIG = "x" * 60000  # configs near IoT Core's 64 KiB: the database spans several backup steps


def ok(r):
    assert r.rc == 0, r
    return r


def refused(r, code, *words):
    assert r.rc == code, r
    for w in words:
        assert w in r.err, r
    return r


def devices(db):
    r = ok(run_tool("--db", db, "devices", "list", *LOC, "--format", "json"))
    return {d["id"] for d in json.loads(r.out)}


def config_of(db, dev):
    r = ok(run_tool("--db", db, "devices", "configs", "list", dev, *LOC, "--format", "json"))
    latest = max(json.loads(r.out), key=lambda c: int(c["version"]))
    return int(latest["version"])


def rewrite_manifest(d):
    """A backup dir whose files were edited on purpose: its manifest made to match again."""
    m = json.loads((d / "backup.json").read_text())
    for f in m["files"]:
        data = (d / f["name"]).read_bytes()
        f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (d / "backup.json").write_text(json.dumps(m))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("backup")
    live = base / "live"
    live.mkdir()
    db, spool = live / "registry.db", live / "spool.db"
    ok(run_tool("--db", db, "registries", "create", R, "--project", P, "--region", L))
    for i in range(NDEV):
        ok(run_tool("--db", db, "devices", "create", f"dev-{i}", *LOC))
        ok(run_tool("--db", db, "devices", "configs", "update", f"dev-{i}", *LOC, "--config-data", BIG + str(i)))
    ok(run_tool("--db", db, "subscriptions", "create", "push-a", "--project", P, "--topic", "telemetry",
                "--push-endpoint", "https://app.example.com/push"))
    lines = "".join(f"projects/{P}/subscriptions/push-a\tprojects/{P}/topics/telemetry\t42\t{1700000000000 + i}"
                    f"\t{{}}\t{b'hello'.hex()}\n" for i in range(5))
    fill = subprocess.run([str(FILL), str(spool)], input=lines, capture_output=True, text=True)
    assert fill.returncode == 0, fill.stderr

    # A writer in another process: configs of the existing devices and new devices, while the backup runs.
    stop = threading.Event()
    wrote = []

    def writer():
        n = 0
        while not stop.is_set():
            run_tool("--db", db, "devices", "configs", "update", f"dev-{n % NDEV}", *LOC,
                     "--config-data", BIG + f"w{n}")
            run_tool("--db", db, "devices", "create", f"extra-{n}", *LOC)
            wrote.append(n)
            n += 1

    before = {f"dev-{i}": config_of(db, f"dev-{i}") for i in range(NDEV)}
    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(wrote) < 2:  # the writer is under way before the backup starts
            stop.wait(0.01)
        out = base / "bk1"
        r = ok(run_tool("--db", db, "backup", out))
        writes_during = len(wrote)
        while len(wrote) < writes_during + 2:  # ... and after it ended
            stop.wait(0.01)
    finally:
        stop.set()
        t.join()
    after = {f"dev-{i}": config_of(db, f"dev-{i}") for i in range(NDEV)}
    return dict(base=base, db=db, spool=spool, out=out, backup_out=r.out, before=before, after=after)


def test_backup_files_and_manifest(setup):
    out = setup["out"]
    assert sorted(p.name for p in out.iterdir()) == ["backup.json", "registry.db", "spool.db"]
    assert out.stat().st_mode & 0o777 == 0o750
    m = json.loads((out / "backup.json").read_text())
    assert m["format"] == "latchkey-backup"
    kinds = {f["name"]: f for f in m["files"]}
    assert kinds["registry.db"]["kind"] == "registry" and kinds["spool.db"]["kind"] == "spool"
    for name, f in kinds.items():
        data = (out / name).read_bytes()
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
        assert f["schema_version"] == f["program_schema_version"]
        assert (out / name).stat().st_mode & 0o007 == 0  # never world-readable
        c = sqlite3.connect(f"file:{out / name}?mode=ro", uri=True)
        try:
            assert c.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        finally:
            c.close()
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary file left


def test_restore_on_another_machine(setup):
    other = setup["base"] / "other"
    other.mkdir()
    db2 = other / "registry.db"
    r = ok(run_tool("--db", db2, "restore", setup["out"]))
    assert "restore complete" in r.out
    # Every device and config that existed when the backup began is there; the writer's own changes are there
    # up to some instant, each whole (a config is one the writer wrote, of a version in between).
    got = devices(db2)
    assert {f"dev-{i}" for i in range(NDEV)} <= got
    for i in range(NDEV):
        v = config_of(db2, f"dev-{i}")
        assert setup["before"][f"dev-{i}"] <= v <= setup["after"][f"dev-{i}"]
    assert got <= devices(setup["db"])
    # The spool came along (beside --db by default): 5 queued messages.
    r = ok(run_tool("--db", db2, "subscriptions", "list", "--project", P, "--spool", other / "spool.db"))
    assert r.out.splitlines()[1].split()[5] == "5"
    # As the services expect it: WAL, -wal and -shm kept, mode as the registry creates a file.
    assert (other / "registry.db-shm").exists() and (other / "registry.db-wal").exists()
    assert db2.stat().st_mode & 0o007 == 0
    c = sqlite3.connect(db2)
    try:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        c.close()


def test_backup_never_overwrites(setup):
    before = (setup["out"] / "registry.db").read_bytes()
    refused(run_tool("--db", setup["db"], "backup", setup["out"]), EXISTS, "not empty")
    assert (setup["out"] / "registry.db").read_bytes() == before
    f = setup["base"] / "a-file"
    f.write_text("x")
    refused(run_tool("--db", setup["db"], "backup", f), EXISTS, "not a directory")


def test_tampered_backup_is_refused(setup, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(setup["out"], bad)
    data = bytearray((bad / "registry.db").read_bytes())
    data[-100] ^= 0xFF
    (bad / "registry.db").write_bytes(bytes(data))
    target = tmp_path / "t" / "registry.db"
    target.parent.mkdir()
    refused(run_tool("--db", target, "restore", bad), STORAGE, "does not match", "SHA-256")
    assert not target.exists()


def test_not_a_registry_is_refused(setup, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(setup["out"], bad)
    os.unlink(bad / "registry.db")
    c = sqlite3.connect(bad / "registry.db")
    c.execute("CREATE TABLE other(x)")
    c.commit()
    c.close()
    rewrite_manifest(bad)
    target = tmp_path / "registry.db"
    refused(run_tool("--db", target, "restore", bad), STORAGE, "not a latchkey registry")
    assert not target.exists()


def test_newer_backup_is_refused(setup, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(setup["out"], bad)
    c = sqlite3.connect(bad / "registry.db")
    c.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    c.commit()
    c.close()
    rewrite_manifest(bad)
    target = tmp_path / "registry.db"
    refused(run_tool("--db", target, "restore", bad), STORAGE, "newer than this program")
    assert not target.exists()
    refused(run_tool("--db", bad / "registry.db", "migrate", "--check"), STORAGE, "newer")


def test_restore_refuses_a_file_in_use(setup, tmp_path):
    target = tmp_path / "registry.db"
    ok(run_tool("--db", target, "restore", "--no-spool", setup["out"]))
    holder = sqlite3.connect(target)  # another process's connection, as the broker's
    try:
        holder.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        refused(run_tool("--db", target, "restore", "--no-spool", setup["out"]), BUSY, "is open in process",
                "stop them first")
        ok(run_tool("--db", target, "restore", "--no-spool", "--force", setup["out"]))
    finally:
        holder.close()
    assert not (tmp_path / "spool.db").exists()


def test_migrate_check(setup, tmp_path):
    db = tmp_path / "registry.db"
    shutil.copy(setup["out"] / "registry.db", db)
    r = ok(run_tool("--db", db, "migrate", "--check"))
    assert "no migration needed" in r.out
    c = sqlite3.connect(db)
    (version,) = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == 9  # schema 8 is schema 9 without the console's indexes (service/registry/schema.c)
    for index in ("devices_by_presence", "devices_blocked", "devices_gateways", "devices_by_activity",
                  "device_credentials_by_expiry"):
        c.execute(f"DROP INDEX {index}")
    c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version - 1,))
    c.commit()
    c.close()
    r = run_tool("--db", db, "migrate", "--check")
    assert r.rc == MIGRATE_DUE and f"from {version - 1} to {version}" in r.out, r
    r = ok(run_tool("--db", db, "migrate"))
    assert f"migrated from {version - 1} to {version}" in r.out
    ok(run_tool("--db", db, "migrate", "--check"))
    c = sqlite3.connect(db)
    try:
        assert c.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'devices_by_presence'").fetchone() == (1,)
    finally:
        c.close()


def test_help_texts():
    for cmd in ("backup", "restore", "migrate"):
        r = ok(run_tool(cmd, "--help"))
        assert r.out.startswith(f"usage: latchkey {cmd}")
        for opt in ("--db",):
            assert opt in r.out


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file its directory's group needs root")
def test_restore_as_root_keeps_owner_and_mode(setup, tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    os.chown(var, 0, 65534)  # as /var/lib/latchkey: root and the services' group
    os.chmod(var, 0o2770)
    db = var / "registry.db"
    ok(run_tool("--db", db, "restore", setup["out"]))
    for name in ("registry.db", "spool.db", "registry.db-wal", "registry.db-shm"):
        assert (var / name).stat().st_gid == 65534, name
    assert (var / "spool.db").stat().st_mode & 0o777 == 0o660  # both services write it
    os.chmod(db, 0o660)
    ok(run_tool("--db", db, "restore", setup["out"]))  # an existing file keeps its owner and mode
    assert db.stat().st_mode & 0o777 == 0o660 and db.stat().st_gid == 65534


def test_restore_checks_every_target_before_writing(setup, tmp_path):
    db = tmp_path / "registry.db"
    ok(run_tool("--db", db, "restore", setup["out"]))
    ok(run_tool("--db", db, "devices", "create", "after-restore", *LOC))
    holder = sqlite3.connect(tmp_path / "spool.db")  # latchkeyd still has the spool open
    try:
        holder.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        refused(run_tool("--db", db, "restore", setup["out"]), BUSY, "spool.db", "is open in process")
    finally:
        holder.close()
    assert "after-restore" in devices(db)  # the registry was not restored either


DEPLOY = Path(os.environ.get("LK_SOURCE_DIR", Path(__file__).resolve().parents[2])) / "tools/latchkey/deploy"
DOCS = DEPLOY.parents[2] / "docs/operations.md"


def unit_text(name):
    """The unit file as docs/operations.md shows it: without its comment lines."""
    lines = (DEPLOY / name).read_text().splitlines()
    return "\n".join(x for x in lines if not x.startswith("#")).strip()


def test_docs_show_the_shipped_units():
    doc = DOCS.read_text()
    for name in ("latchkey-backup.service", "latchkey-backup.timer"):
        block = doc[doc.index(f"`{name}`:"):]
        block = block[block.index("```\n") + 4:]
        assert block[:block.index("```")].strip() == unit_text(name), name


def test_timer_service_command(setup, tmp_path):
    """The service's ExecStart as systemd runs it ($$ and %% unescaped, ${KEEP} substituted), on test paths:
    a dated backup, then only the newest KEEP kept."""
    text = (DEPLOY / "latchkey-backup.service").read_text()
    start = text.index("ExecStart=/bin/sh -ec '") + len("ExecStart=/bin/sh -ec '")
    script = text[start:text.index("'\n", start)].replace("\\\n", " ")
    script = script.replace("$$", "$").replace("%%", "%").replace("${KEEP}", "2")
    state = tmp_path / "state"
    state.mkdir()
    for old in ("2020-01-01T000000Z", "2020-01-02T000000Z"):
        (state / old).mkdir()
    script = (script.replace("/var/lib/latchkey-backup", str(state))
              .replace("/var/lib/latchkey/registry.db", str(setup["db"]))
              .replace("/usr/bin/latchkey", str(BIN / "latchkey")))
    r = subprocess.run(["/bin/sh", "-ec", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    kept = sorted(p.name for p in state.iterdir())
    assert len(kept) == 2 and kept[0] == "2020-01-02T000000Z" and kept[1] > "2026", kept
    assert (state / kept[1] / "backup.json").exists() and (state / kept[1] / "spool.db").exists()
