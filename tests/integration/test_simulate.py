"""`latchkey-device simulate` (docs/device.md, "the fleet simulator") against a real broker.

A fleet's keys and import file are made by `simulate --create-keys` and imported with
`latchkey devices import`; the fleet then runs in one simulator process. What arrives is counted
independently by a backend (username backend:NAME) subscribed to latchkey/P/#: every event the
simulator reports as published must arrive (at least once), and its summary must agree.
"""
import json
import re
import signal
import subprocess
import time

from broker import Broker, PROJECT, REGION, REGISTRY, make_tls
from conftest import run_tool, tool_argv


def sim(*args):
    return run_tool("simulate", *args, binary="latchkey-device")


def create_keys(base, n, prefix="sim-"):
    store, jsonl = base / "fleet.lks", base / "fleet.jsonl"
    r = sim("--devices", n, "--store", store, "--prefix", prefix, "--create-keys", jsonl)
    assert r.rc == 0, r
    lines = jsonl.read_text().splitlines()
    assert len(lines) == n
    return store, jsonl, [json.loads(line) for line in lines]


def fleet_args(b, store, n, *extra):
    return ["--devices", n, "--store", store, "--host", "127.0.0.1", "--port", b.tls_port,
            "--ca", b.ca_path, "--project", PROJECT, "--region", REGION, "--registry", REGISTRY,
            "--format", "json", *extra]


def import_devices(b, path):
    r = b.lk("devices", "import", path, "--registry", REGISTRY, "--project", PROJECT,
             "--region", REGION)
    assert r.rc == 0, r


def backend(b):
    secret = b.backend("be-sim")
    c = b.connect("be-sim/client", secret, username="backend:be-sim")
    assert b.subscribe(c, f"latchkey/{PROJECT}/#", 1) in (0, 1)
    return c


def summary(r):
    return json.loads(r.out.strip().splitlines()[-1])


def test_usage_and_help():
    r = sim("--help")
    assert r.rc == 0 and "--create-keys" in r.out and "--parallel" in r.out, r
    assert sim().rc == 2
    r = sim("--devices", "0", "--store", "x.lks")
    assert r.rc == 2 and "--devices" in r.err, r
    r = sim("--devices", "3", "--store", "x.lks", "--rate", "-1", "--create-keys", "x")
    assert r.rc == 2 and "--rate" in r.err, r
    r = sim("--devices", "3", "--store", "x.lks")
    assert r.rc == 2 and "--host" in r.err, r
    r = sim("--devices", "3", "--store", "x.lks", "--prefix", "1-", "--create-keys", "x")
    assert r.rc == 2 and "device id" in r.err, r


def r_pem(store, key):
    r = run_tool("key", "public", "--store", store, "--key", key)
    assert r.rc == 0, r
    return r.out


def test_create_keys_once_and_missing_keys(tmp_path):
    store, jsonl, devs = create_keys(tmp_path, 5)
    assert [d["id"] for d in devs] == [f"sim-{i:05d}" for i in range(1, 6)]
    for d in devs:
        (cred,) = d["credentials"]
        assert cred["publicKey"]["format"] == "ES256_PEM"
        assert cred["publicKey"]["key"].startswith("-----BEGIN PUBLIC KEY-----\n")
    assert len({d["credentials"][0]["publicKey"]["key"] for d in devs}) == 5
    # again, with more devices: the existing keys are kept, only the new ones are made
    r = sim("--devices", "7", "--store", store, "--create-keys", tmp_path / "more.jsonl")
    assert r.rc == 0 and "2 keys created" in r.err, r
    more = [json.loads(x) for x in (tmp_path / "more.jsonl").read_text().splitlines()]
    assert more[:5] == devs
    # a key made otherwise (RS256) is kept and exported as it is
    r = run_tool("key", "generate", "--store", store, "--key", "sim-00008", "--alg", "RS256")
    assert r.rc == 0, r
    r = sim("--devices", "8", "--store", store, "--create-keys", "-")
    assert r.rc == 0 and "0 keys created" in r.err, r
    last = json.loads(r.out.splitlines()[-1])
    assert last["id"] == "sim-00008"
    assert last["credentials"][0]["publicKey"]["format"] == "RSA_PEM"
    assert last["credentials"][0]["publicKey"]["key"] == r_pem(store, "sim-00008")
    # running needs every key: a missing one is exit 3, before any traffic
    ca = make_tls(tmp_path)[0]
    run = ["--host", "127.0.0.1", "--port", "1", "--ca", ca, "--project", PROJECT,
           "--region", REGION, "--registry", REGISTRY]
    r = sim("--devices", "9", "--store", store, *run)
    assert r.rc == 3 and "no key 'sim-00009'" in r.err, r
    # a missing store: exit 3; a CA file without a certificate: exit 24, a missing one 3
    # (docs/cli.md: both are configuration errors, as for the agent)
    r = sim("--devices", "2", "--store", tmp_path / "none.lks", *run)
    assert r.rc == 3, r
    run[run.index("--ca") + 1] = jsonl
    r = sim("--devices", "2", "--store", store, *run)
    assert r.rc == 24 and "--ca" in r.err and "certificate" in r.err, r
    run[run.index("--ca") + 1] = tmp_path / "no-such-ca.pem"
    r = sim("--devices", "2", "--store", store, *run)
    assert r.rc == 3 and "no-such-ca.pem: No such file or directory" in r.err, r


def wait_events(c, n, timeout=10):
    """Wait until c has received n distinct events (device, sequence number); returns
    {device: {sequence numbers}} and the number of event messages (duplicates included)."""
    deadline = time.time() + timeout
    with c.got:
        while True:
            seen, count = {}, 0
            for m in c.messages:
                if not m.topic.endswith("/events"):
                    continue
                count += 1
                dev = m.topic.split("/")[4]
                head = m.payload.decode().split(" ")
                assert head[0] == dev and len(m.payload) == 40, (m.topic, m.payload)
                seen.setdefault(dev, set()).add(int(head[1]))
            if sum(len(v) for v in seen.values()) >= n or time.time() > deadline:
                return seen, count
            c.got.wait(max(0.01, deadline - time.time()))


def test_fleet_connects_publishes_refreshes(tmp_path):
    n = 50
    b = Broker(tmp_path / "broker")
    try:
        store, jsonl, _ = create_keys(tmp_path, n)
        import_devices(b, jsonl)
        be = backend(b)
        # 1 event/s per device for 20 s; tokens of 12 s are refreshed 5 s before exp,
        # so every device reconnects at least once while publishing
        r = sim(*fleet_args(b, store, n, "--parallel", "8", "--rate", "1", "--duration", "20",
                            "--token-lifetime", "12", "--payload-bytes", "40"))
        assert r.rc == 0, r
        s = summary(r)
        assert s["devices"] == n and s["connected"] == n and s["failed"] == 0, s
        assert s["connect_s"] is not None and 0 < s["connect_s"] <= s["elapsed_s"], s
        assert s["refusals"] == 0 and s["tls_failures"] == 0, s
        assert s["attempts"] >= n + s["refreshes"], s
        assert s["refreshes"] >= n, s
        assert s["tokens"] >= n + s["refreshes"], s
        assert s["undelivered"] == 0 and s["delivered"] == s["published"], s
        # about n × (20 s − ramp) events; at least half of that
        assert s["published"] >= n * (20 - s["connect_s"]) * 0.5, s
        assert s["peak_rss_kb"] > 0 and s["elapsed_s"] >= 20, s
        # downstream: every published event arrives (at least once)
        seen, count = wait_events(be, s["published"])
        assert sum(len(v) for v in seen.values()) == s["published"], (count, s)
        assert count >= s["published"]
        assert len(seen) == n
        for dev, seqs in seen.items():
            assert seqs == set(range(1, len(seqs) + 1)), (dev, sorted(seqs))
        b.close(be)
    finally:
        b.stop()


def test_unregistered_devices_are_refused(tmp_path):
    n, missing = 20, 5
    b = Broker(tmp_path / "broker")
    try:
        store, jsonl, _ = create_keys(tmp_path, n)
        part = tmp_path / "part.jsonl"
        part.write_text("".join(line + "\n" for line in jsonl.read_text().splitlines()[:n - missing]))
        import_devices(b, part)
        be = backend(b)  # also: the plugin has ticked
        b.close(be)
        r = sim(*fleet_args(b, store, n))
        assert r.rc == 35, r
        s = summary(r)
        assert s["devices"] == n and s["connected"] == n - missing, s
        assert s["failed"] == missing and s["connect_s"] is None, s
        # each unregistered device gave up after 3 freshly signed tokens were refused
        assert s["refusals"] == 3 * missing, s
        assert s["tls_failures"] == 0, s
        gave_up = set(re.findall(r"(sim-\d{5}): gave up", r.err))
        assert gave_up == {f"sim-{i:05d}" for i in range(n - missing + 1, n + 1)}, r.err
        assert "LK_ERR_REFUSED" in r.err, r.err
    finally:
        b.stop()


def test_fleet_comes_back_after_a_broker_restart_with_its_tokens(tmp_path):
    """The broker restarts under a running fleet: every device reconnects with the token it
    had (no new token: its lifetime is not near its end), the retries through --parallel's
    slots (3 here, for 30 devices that all lost their connection at once)."""
    n = 30
    b = Broker(tmp_path / "broker")
    proc = None
    try:
        store, jsonl, _ = create_keys(tmp_path, n)
        import_devices(b, jsonl)
        b.close(backend(b))
        out, err = tmp_path / "sim.out", tmp_path / "sim.err"
        with open(out, "wb") as o, open(err, "wb") as e:
            proc = subprocess.Popen(tool_argv("simulate", *fleet_args(b, store, n, "--parallel", 3,
                                                                      "--duration", 120),
                                              binary="latchkey-device"), stdout=o, stderr=e)
        deadline = time.time() + 30
        while f"all {n} devices connected" not in err.read_text():
            assert time.time() < deadline and proc.poll() is None, err.read_text()
            time.sleep(0.05)
        b.stop()
        mark = len(b.log_text())
        b.start()
        # every device connects again (the plugin's connect log lines, after the restart)
        deadline = time.time() + 60
        while True:
            back = set(re.findall(r"event=connect .*?devices/(sim-\d{5})", b.log_text()[mark:]))
            if len(back) == n:
                break
            assert time.time() < deadline, (sorted(back), err.read_text())
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, err.read_text()
        s = json.loads(out.read_text().strip().splitlines()[-1])
        assert s["connected"] == n and s["failed"] == 0, s
        assert s["tokens"] == n, s            # the same tokens after the restart
        assert s["disconnects"] >= 2 * n, s   # the restart, then the stop
        assert s["refusals"] == 0 and s["tls_failures"] == 0, s
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        b.stop()
