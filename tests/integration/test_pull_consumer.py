"""The worked example of docs/delivery.md ("In place of a Pub/Sub pull subscription"),
examples/pull_consumer.py, run as documented against the real broker: it stores every event once,
also when it is killed with SIGKILL in the middle and started again with the same client id."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker import Broker
from plugin_common import PROJECT, backend_secret, close, connect, make_device, publish

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pull_consumer.py"
N = 240
PACE = 1 / 80     # under the device limit of 100 events a second (docs/plugin.md)


@pytest.fixture(scope="module")
def b(tmp_path_factory):
    br = Broker(tmp_path_factory.mktemp("pull"), persistence=True)
    yield br
    br.stop()


def consumer(b, tmp_path, secret_file, db, count=0):
    return subprocess.Popen(["/usr/bin/python3", str(EXAMPLE), "--host", b.host, "--port", str(b.tls_port),
                             "--cafile", str(b.ca_path), "--backend", "puller", "--secret-file", str(secret_file),
                             "--filter", f"latchkey/{PROJECT}/+/+/+/events", "--db", str(db),
                             "--count", str(count)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored(db):
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT payload FROM events ORDER BY id")]
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def wait_rows(db, n, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(stored(db)) >= n:
            return True
        time.sleep(0.05)
    return False


def test_pull_consumer_stores_each_event_once_across_a_kill(b, tmp_path):
    secret_file = tmp_path / "puller.secret"
    secret_file.write_text(backend_secret(b, "puller") + "\n")
    os.chmod(secret_file, 0o600)
    db = tmp_path / "events.db"
    d = make_device(b, "dev-pull")

    p = consumer(b, tmp_path, secret_file, db)
    try:
        # The first connection makes the persistent session and its subscription.
        assert wait_rows(db, 0, 5)
        deadline = time.time() + 10
        while time.time() < deadline and "puller/worker-1 " not in b.log_path.read_text(errors="replace"):
            time.sleep(0.05)
        time.sleep(0.5)
        c = connect(b, d.client_id, d.token())
        try:
            want = [f"event-{i:04d}".encode() for i in range(N)]
            for i, payload in enumerate(want):
                publish(c, d.topic("events"), payload, qos=1)
                time.sleep(PACE)
                if i == N // 3:
                    assert wait_rows(db, 1, 10), p.stderr.read() if p.poll() is not None else "no row"
                    p.send_signal(signal.SIGKILL)
                    p.wait(timeout=10)
        finally:
            close(c)
        # Everything published while it was dead waits in its session; started again, it gets it all.
        p = consumer(b, tmp_path, secret_file, db)
        assert wait_rows(db, N, 30), f"{len(stored(db))} of {N} stored"
        time.sleep(0.5)
        got = stored(db)
        assert sorted(got) == want, (len(got), len(set(got)))
        assert got == want, "not in order"
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
