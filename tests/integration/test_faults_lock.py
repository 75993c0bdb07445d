"""Faults around the registry (issue 20; docs/robustness.md, "Faults"): the registry held by a long writer.

A real Mosquitto with latchkey's plugin and a real latchkeyd on the same registry file; devices are paho
MQTT 3.1.1 clients; the long writer is Python's sqlite3 module (another process than the broker, the tool and
latchkeyd) holding `BEGIN IMMEDIATE`. What is checked against is independent of latchkey: what the devices
received, the API's and the tool's answers, SQLite's own `PRAGMA integrity_check`.
"""
import json
import sqlite3
import threading

from api_common import Env, device_path, refused
from broker import Broker
from conftest import integrity
from plugin_common import (CONNACK_NOT_AUTHORISED, backend_secret, close, connack, connect, log_line, make_device,
                           publish, received, wait_disconnected)


def test_long_writer_clear_errors_service_goes_on_revocation_enforced(tmp_path):
    """Another process holds the registry's write lock until every check below is done (longer than every
    busy timeout: latchkeyd's is 5 s). Meanwhile the tool's write exits 18 (busy)
    after its --busy-timeout and latchkeyd's answers 503 UNAVAILABLE after its 5 s, both saying so; reads
    answer; the broker keeps serving connected devices and connects new ones; a device blocked just before
    the lock is closed and refused while it is held (reads do not wait for writers: the change feed is read
    within a tick), and a credential deleted just after it is released closes its connection too. Nothing
    is written by the refused writes, and the file passes integrity_check."""
    b = Broker(tmp_path / "b")
    e = Env(tmp_path / "lkd", db=b.db, make_registry=False)
    blocked, revoked, steady, late = (make_device(b, n) for n in ("blocked-dev", "revoked-dev", "steady-dev",
                                                                    "late-dev"))
    backend = connect(b, "be-watch/t", backend_secret(b, "be-watch"), username="backend:be-watch")
    assert b.subscribe(backend, "latchkey/proj-one/#", 1) == 1
    cb, cr, cs = (connect(b, d.client_id, d.token()) for d in (blocked, revoked, steady))
    holder = sqlite3.connect(str(b.db), timeout=5, isolation_level=None)
    try:
        assert blocked.devices("update", blocked.id, "--blocked").rc == 0
        holder.execute("BEGIN IMMEDIATE")

        api_answer = []
        api = threading.Thread(target=lambda: api_answer.append(
            e.api.patch(device_path(revoked.id), {"blocked": True}, query={"updateMask": "blocked"})), daemon=True)
        api.start()
        # the tool: a clear error after its busy timeout
        r = b.lk("devices", "update", revoked.id, "--blocked", "--busy-timeout", "300", *revoked.loc)
        assert r.rc == 18, r
        assert "LK_ERR_REG_BUSY" in r.err and "busy" in r.err.lower(), r.err
        r = b.lk("devices", "describe", steady.id, *steady.loc, "--format", "json")
        assert r.rc == 0, r                                          # reads do not wait for writers
        # the broker: the device blocked before the lock is closed and refused
        assert wait_disconnected(cb, 5) is not None, "the blocked device stayed connected while the lock was held"
        assert connack(b, blocked.client_id, blocked.token()) == CONNACK_NOT_AUTHORISED
        # ... and keeps serving the others: events flow, a new device connects and gets its config
        for i in range(5):
            publish(cs, steady.topic("events"), f"under lock {i}".encode(), qos=1)
        assert received(backend, steady.downstream("events"), b"under lock 4", timeout=5)
        cl = connect(b, late.client_id, late.token())
        try:
            assert b.subscribe(cl, late.topic("config"), 1) == 1
            assert received(cl, late.topic("config"), b"", timeout=5)
        finally:
            close(cl)
        api.join(30)     # latchkeyd waits its busy timeout (5 s): the lock is held longer than every one
        assert api_answer, "latchkeyd did not answer"
        refused(api_answer[0], "UNAVAILABLE")
        assert api_answer[0].status == 503, api_answer
        assert not cr.disconnected.is_set()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        # the refused writes wrote nothing: the device is not blocked
        assert still_unblocked(revoked)
        assert not cr.disconnected.is_set()
        # a credential deleted just after the lock: its connection is closed, its token refused
        r = revoked.devices("credentials", "delete", revoked.id, "0")
        assert r.rc == 0, r
        assert wait_disconnected(cr, 5) is not None, "the connection of a deleted credential stayed"
        assert connack(b, revoked.client_id, revoked.token()) == CONNACK_NOT_AUTHORISED
        assert not cs.disconnected.is_set(), "the steady device was closed"
        assert log_line(b, blocked.client_id, "blocked")
        assert integrity(b.db) == [("ok",)]
        assert e.daemon.alive()
    finally:
        for c in (cb, cr, cs, backend):
            close(c)
        e.stop()
        b.stop()


def still_unblocked(d):
    r = d.devices("describe", d.id, "--format", "json")
    assert r.rc == 0, r
    return not json.loads(r.out).get("blocked", False)
