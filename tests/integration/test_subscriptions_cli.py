"""latchkey subscriptions (push subscriptions, registry schema 6) and the presence columns of
`devices list`, against real SQLite files.

The registry file is read back with python's sqlite3 (independent of latchkey's code); the
spool's queue figures come from a spool made and filled through lk_spool_enqueue (the test
program lk_spool_fill), as the broker plugin fills it. Refusals must write nothing; the static
header's value must never be printed.
"""
import json
import os
import sqlite3
import subprocess
from pathlib import Path

from conftest import BIN, run_tool

FILL = Path(os.environ.get("LK_TEST_LIB_DIR", "build/tests")) / "lk_spool_fill"

P, L, R = "proj-one", "us-central1", "reg-1"
LOC = ("--project", P, "--region", L)
USAGE, NOT_FOUND, EXISTS, LIMIT, INVALID = 2, 11, 12, 14, 15
SECRET = "s3cr3t-header-value"


def lkdb(db, *args, input=None):
    return run_tool("--db", db, *args, input=input)


def ok(r):
    assert r.rc == 0, r
    return r


def refused(r, code, *words):
    assert r.rc == code, r
    for w in words:
        assert w in r.err, (w, r.err)
    assert SECRET not in r.out + r.err
    return r


def dump(db):
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        return (c.execute("SELECT * FROM subscriptions ORDER BY project, name").fetchall(),
                c.execute("SELECT seq, kind FROM changes ORDER BY seq").fetchall())


def test_subscriptions_lifecycle(tmp_path):
    db = tmp_path / "r.db"
    r = ok(lkdb(db, "subscriptions", "create", "push-a", "--project", P, "--topic", "telemetry",
                "--push-endpoint", "https://app.example.com/push", "--push-header", f"X-Api-Key: {SECRET}",
                "--dead-letter-topic", "dead", "--max-delivery-attempts", "7", "--min-backoff", "0.5",
                "--max-backoff", "60", "--ack-deadline", "30", "--retention", "3600"))
    assert r.out == f"Created subscription [projects/{P}/subscriptions/push-a].\n"
    hf = tmp_path / "header"
    hf.write_text(f"Authorization: Bearer {SECRET}\n")
    ok(lkdb(db, "subscriptions", "create", f"projects/{P}/subscriptions/push-b",
            "--topic", f"projects/{P}/topics/telemetry", "--push-endpoint", "http://127.0.0.1:8080/x",
            "--push-header-file", hf))
    ok(lkdb(db, "subscriptions", "create", "push-c", "--project", "proj-two", "--topic", "other",
            "--push-endpoint", "https://[::1]:8443/", "--oidc-service-account", "pusher@proj-two.example",
            "--oidc-audience", "https://aud.example"))
    with sqlite3.connect(db) as c:
        rows = {r[1]: r for r in c.execute(
            "SELECT project, name, topic, push_endpoint, auth, auth_header_name, auth_header_value, oidc_email, "
            "oidc_audience, min_backoff_ms, max_backoff_ms, ack_deadline_ms, dead_letter_topic, "
            "max_delivery_attempts, retention_ms FROM subscriptions")}
        kinds = [k for (k,) in c.execute("SELECT kind FROM changes")]
    assert rows["push-a"] == (P, "push-a", "telemetry", "https://app.example.com/push", 1, "X-Api-Key", SECRET,
                              None, None, 500, 60000, 30000, "dead", 7, 3600000)
    assert rows["push-b"][5:7] == ("Authorization", f"Bearer {SECRET}")
    assert rows["push-b"][9:] == (10000, 600000, 10000, None, 0, 604800000)  # the defaults
    assert rows["push-c"][4:9] == (2, None, None, "pusher@proj-two.example", "https://aud.example")
    assert kinds == [8, 8, 8]  # LK_CHANGE_SUBSCRIPTION

    # list: every project, or one; the header's value never
    r = ok(lkdb(db, "subscriptions", "list"))
    lines = r.out.splitlines()
    assert lines[0].split() == ["NAME", "PROJECT", "TOPIC", "ENDPOINT", "AUTH"]
    assert [x.split() for x in lines[1:]] == [
        ["push-a", P, "telemetry", "https://app.example.com/push", "header"],
        ["push-b", P, "telemetry", "http://127.0.0.1:8080/x", "header"],
        ["push-c", "proj-two", "other", "https://[::1]:8443/", "oidc"]]
    lst = json.loads(ok(lkdb(db, "subscriptions", "list", "--project", P, "--format", "json")).out)
    assert [x["name"] for x in lst] == [f"projects/{P}/subscriptions/push-a", f"projects/{P}/subscriptions/push-b"]
    d = json.loads(ok(lkdb(db, "subscriptions", "describe", "push-a", "--project", P, "--format", "json")).out)
    assert d == {
        "name": f"projects/{P}/subscriptions/push-a", "topic": f"projects/{P}/topics/telemetry",
        "pushConfig": {"pushEndpoint": "https://app.example.com/push", "latchkeyHeader": {"name": "X-Api-Key"}},
        "ackDeadlineSeconds": 30, "retryPolicy": {"minimumBackoff": "0.500s", "maximumBackoff": "60s"},
        "deadLetterPolicy": {"deadLetterTopic": f"projects/{P}/topics/dead", "maxDeliveryAttempts": 7},
        "messageRetentionDuration": "3600s", "createTime": d["createTime"]}
    d = json.loads(ok(lkdb(db, "subscriptions", "describe", "push-c", "--project", "proj-two",
                           "--format", "json")).out)
    assert d["pushConfig"]["oidcToken"] == {"serviceAccountEmail": "pusher@proj-two.example",
                                            "audience": "https://aud.example"}
    for args in (("list",), ("list", "--format", "json"), ("describe", "push-a", "--project", P),
                 ("describe", "push-b", "--project", P, "--format", "json")):
        r = ok(lkdb(db, "subscriptions", *args))
        assert SECRET not in r.out + r.err and "Bearer" not in r.out

    ok(lkdb(db, "subscriptions", "delete", "push-b", "--project", P))
    refused(lkdb(db, "subscriptions", "delete", "push-b", "--project", P), NOT_FOUND, "does not exist")
    refused(lkdb(db, "subscriptions", "describe", "push-b", "--project", P), NOT_FOUND, "does not exist")


def test_subscription_refusals_write_nothing(tmp_path):
    db = tmp_path / "r.db"
    base = ("subscriptions", "create", "push-x", "--project", P, "--topic", "telemetry",
            "--push-endpoint", "https://app.example.com/push")
    ok(lkdb(db, *base))
    before = dump(db)
    cases = [
        ((), EXISTS, "exists already"),
        (("--push-endpoint", "http://app.example.com/"), INVALID, "only to a loopback host"),
        (("--push-endpoint", "https://u:p@app.example.com/"), INVALID, "user:password@"),
        (("--push-endpoint", "ftp://x.example/"), INVALID, "must start with https://"),
        (("--push-header", f"Bad Name: {SECRET}"), INVALID, "an HTTP token"),
        (("--push-header", f"Content-Type: {SECRET}"), INVALID, "set by latchkeyd itself"),
        (("--push-header", "no-colon"), USAGE, "'Name: value'"),
        (("--push-header", f"X: {SECRET}", "--oidc-service-account", "a@b.c"), USAGE, "one authentication"),
        (("--oidc-service-account", "not-an-email"), INVALID, "must be an address"),
        (("--oidc-audience", "x"), USAGE, "needs --oidc-service-account"),
        (("--max-delivery-attempts", "5"), USAGE, "needs --dead-letter-topic"),
        (("--dead-letter-topic", "dead", "--max-delivery-attempts", "4"), USAGE, "from 5 to 100"),
        (("--dead-letter-topic", "telemetry"), INVALID, "own topic"),
        (("--dead-letter-topic", "projects/other/topics/dead"), USAGE, "not of project"),
        (("--min-backoff", "0"), USAGE, "give at least 0.001"),
        (("--min-backoff", "601"), USAGE, "from 0 to 600"),
        (("--min-backoff", "20", "--max-backoff", "10"), INVALID, "above the maximum"),
        (("--ack-deadline", "5"), INVALID, "ack deadline 5000 ms is out of range: 10 to 600 s"),
        (("--retention", "60"), INVALID, "message retention"),
        (("--retention", "2678401"), USAGE, "--retention"),
        (("--topic", "x"), INVALID, "topic id 'x' is invalid"),
        (("--topic", "goog-t"), INVALID, "topic id 'goog-t' is invalid"),
        (("--spool", "s.db"), USAGE, "not an option of this command"),
    ]
    for extra, code, words in cases:
        args = list(base)
        if extra and extra[0] in ("--topic", "--push-endpoint"):
            i = args.index(extra[0])
            args[i + 1] = extra[1]
            extra = extra[2:]
        r = lkdb(db, *args, *extra)
        refused(r, code, words)
        assert dump(db) == before, extra
    refused(lkdb(db, "subscriptions", "create", "xy", "--project", P, "--topic", "telemetry",
                 "--push-endpoint", "https://a.example/"), INVALID, "subscription id 'xy' is invalid")
    refused(lkdb(db, "subscriptions", "create", "push-y", "--topic", "telemetry",
                 "--push-endpoint", "https://a.example/"), USAGE, "--project is required")
    refused(run_tool("--api", "https://127.0.0.1:1", "subscriptions", "list"), USAGE, "works only with --db")
    assert dump(db) == before


def test_queue_figures_from_the_spool(tmp_path):
    db, spool = tmp_path / "r.db", tmp_path / "spool.db"
    for s in ("push-a", "push-b"):
        ok(lkdb(db, "subscriptions", "create", s, "--project", P, "--topic", "telemetry",
                "--push-endpoint", "https://app.example.com/push"))
    # Filled through lk_spool_enqueue by the test program tests/shims/spool_fill.c (not through ctypes: in the
    # sanitizer build the library needs the sanitizer's runtime first, which python does not load).
    import time
    t0 = int(time.time() * 1000) - 90_000  # published 90 s ago
    lines = "".join(f"projects/{P}/subscriptions/push-a\tprojects/{P}/topics/telemetry\t42\t{t0 + i}\t{{}}\t"
                    f"{b'hello'.hex()}\n" for i in range(3))  # the third is over push-a's bound of 2: dropped
    fill = subprocess.run([str(FILL), str(spool), "2"], input=lines, capture_output=True, text=True)
    assert fill.returncode == 0, fill.stderr

    r = ok(lkdb(db, "subscriptions", "list", "--spool", spool))
    lines = [x.split() for x in r.out.splitlines()]
    assert lines[0] == ["NAME", "PROJECT", "TOPIC", "ENDPOINT", "AUTH", "DEPTH", "OLDEST", "DROPPED",
                        "DEAD_LETTERED"]
    assert lines[1][:6] == ["push-a", P, "telemetry", "https://app.example.com/push", "none", "2"]
    assert 89 <= int(lines[1][6].rstrip("s")) <= 120 and lines[1][7:] == ["1", "0"]
    assert lines[2][5:] == ["0", "-", "0", "0"]  # never queued
    d = json.loads(ok(lkdb(db, "subscriptions", "describe", "push-a", "--project", P, "--spool", spool,
                           "--format", "json")).out)
    st = d["stats"]
    assert {k: st[k] for k in ("depth", "bytes", "enqueued", "acked", "deadLettered", "dropped", "expired")} == \
        {"depth": "2", "bytes": "10", "enqueued": "2", "acked": "0", "deadLettered": "0", "dropped": "1",
         "expired": "0"}
    assert st["oldestUnackedMessageAge"].endswith("s")
    # the spool is read, never written (no file made, nothing changed)
    refused(lkdb(db, "subscriptions", "list", "--spool", tmp_path / "none.db"), 3, "none.db")  # a named file
    assert not (tmp_path / "none.db").exists()


def test_devices_list_presence(tmp_path):
    db = tmp_path / "r.db"
    ok(lkdb(db, "registries", "create", R, *LOC))
    for d in ("dev-a", "dev-b", "dev-c"):
        ok(lkdb(db, "devices", "create", d, "--registry", R, *LOC))
    with sqlite3.connect(db) as c:  # as the broker records them
        c.execute("UPDATE devices SET presence = 1, presence_time = 1700000100, presence_detail = '192.0.2.1:5',"
                  " last_event = 1700000050, last_heartbeat = 1700000090 WHERE device_id = 'dev-a'")
        c.execute("UPDATE devices SET presence = 2, presence_time = 1700000200, presence_detail = 'the broker "
                  "restarted', last_state = 1700000150 WHERE device_id = 'dev-b'")
    rows = [x.split() for x in ok(lkdb(db, "devices", "list", "--registry", R, *LOC)).out.splitlines()]
    assert rows[0] == ["ID", "NUM_ID", "BLOCKED", "CREDENTIALS", "CONFIG_VERSION", "LAST_SEEN", "PRESENCE"]
    assert [(x[0], x[5], x[6]) for x in rows[1:]] == [
        ("dev-a", "2023-11-14T22:14:50Z", "online"), ("dev-b", "2023-11-14T22:15:50Z", "offline"),
        ("dev-c", "-", "never")]
    on = ok(lkdb(db, "devices", "list", "--registry", R, *LOC, "--online")).out.splitlines()
    assert [x.split()[0] for x in on[1:]] == ["dev-a"]
    off = ok(lkdb(db, "devices", "list", "--registry", R, *LOC, "--offline", "--limit", "1")).out.splitlines()
    assert [x.split()[0] for x in off[1:]] == ["dev-b"]
    js = json.loads(ok(lkdb(db, "devices", "list", "--registry", R, *LOC, "--format", "json")).out)
    assert js[0]["presence"] == {"online": True, "time": "2023-11-14T22:15:00Z", "address": "192.0.2.1:5"}
    assert js[1]["presence"] == {"online": False, "time": "2023-11-14T22:16:40Z", "reason": "the broker restarted"}
    assert "presence" not in js[2]
    refused(lkdb(db, "devices", "list", "--registry", R, *LOC, "--online", "--offline"), USAGE, "exclude each other")
    refused(lkdb(db, "devices", "describe", "dev-a", "--registry", R, *LOC, "--online"), USAGE,
            "not an option of this command")
    # deleting a device that has a presence record leaves its tombstone for the broker
    ok(lkdb(db, "devices", "delete", "dev-a", "--registry", R, *LOC))
    ok(lkdb(db, "devices", "delete", "dev-c", "--registry", R, *LOC))
    with sqlite3.connect(db) as c:
        assert c.execute("SELECT device_id FROM presence_tombstones").fetchall() == [("dev-a",)]
        assert c.execute("SELECT count(*) FROM changes WHERE kind = 9").fetchone() == (1,)
    # a registry may not be made in location "topics"
    refused(lkdb(db, "registries", "create", "reg-t", "--project", P, "--region", "topics"), INVALID,
            "location 'topics' is reserved")
