"""Key rotation without downtime, and credential expiry (docs/device.md "Rotating keys",
docs/provisioning.md "Rotating a device's key"), against a real Mosquitto with latchkey's plugin.

  - a connected device moves to its new key with zero refused connections: credential 2 added,
    the agent told to switch (SIGHUP with --next-key-file), the server accepts the next key,
    `latchkey devices keys` shows credential 2 last used, credential 1 removed, the device stays
    connected and a restart on the new key connects at once;
  - a device told to switch to a key the registry does not have falls back to its key at once
    (one refusal, no backoff), while running and at start (--next-key);
  - a credential that expires closes the live connection at its expiry, and refuses the next
    connect.

Short (about 15 s in all): one broker, activity written every second.
"""
import json
import os
import signal
import time

import pytest

from conftest import run_tool
from plugin_common import start_broker
from test_device_agent import Agent, agent_args, backend, device_refusals, log_lines, wait_payloads

EXIT_REFUSED = 30


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory, "rotation", opts={"activity_flush": 1})
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _agents_cleanup():
    Agent.live = []
    yield
    agents, Agent.live = Agent.live, []
    for a in agents:
        a.kill()


_n = [0]


def new_key(b, alg="ES256"):
    """A key in the broker's software store: (name, public PEM path)."""
    _n[0] += 1
    name = f"rot-{_n[0]}-{os.urandom(3).hex()}"
    r = run_tool("key", "generate", "--store", b.store, "--key", name, "--alg", alg)
    assert r.rc == 0, r
    pem = b.base / f"{name}.pem"
    pem.write_text(r.out)
    return name, pem


def keys_of(d):
    """`latchkey devices keys D --format json`: the device's entry."""
    r = d.devices("keys", d.id, "--format", "json")
    assert r.rc == 0, r
    (entry,) = json.loads(r.out)
    assert entry["id"] == d.id
    return entry


def wait_last_used(d, index, timeout=8):
    deadline = time.time() + timeout
    while True:
        e = keys_of(d)
        used = [c["index"] for c in e["credentials"] if c["lastUsed"]]
        if used == [index] or time.time() > deadline:
            return e, used
        time.sleep(0.3)


def test_connected_device_moves_to_its_new_key_with_zero_refusals(broker, tmp_path):
    b = broker
    d = b.device(f"rot-move-{os.urandom(2).hex()}")
    be = backend(b)
    # The device's next key exists before the switch (a software store is read at start).
    k2, pem2 = new_key(b)
    switch = tmp_path / "next-key"
    a = Agent(agent_args(b, d, "--next-key-file", switch))
    a.wait_connected()
    e, used = wait_last_used(d, 0)
    assert used == [0], e

    # credential 2, then the switch
    r = d.devices("credentials", "create", d.id, "--path", pem2, "--type", "es256")
    assert r.rc == 0, r
    switch.write_text(k2 + "\n")
    before = len(a.err)
    a.proc.send_signal(signal.SIGHUP)
    i, _, _ = a.wait_err(r"accepted the next key", timeout=15, after=before)
    a.wait_connected(after=before)
    e, used = wait_last_used(d, 1)
    assert used == [1], e
    assert e["lastKey"]["removed"] is False

    # credential 1 removed: the device, on credential 2, stays connected
    r = d.devices("credentials", "delete", d.id, "0")
    assert r.rc == 0, r
    a.send("after-rotation")
    got = wait_payloads(be, d.downstream("events"), [b"after-rotation"])
    assert b"after-rotation" in got, a.dump()
    time.sleep(1.5)     # a tick and more: a removed credential in use would have closed it
    assert not log_lines(b, "event=close ", f" device={d.client_id} "), b.log_text()[-2000:]
    e, used = wait_last_used(d, 0)      # credential 2 is index 0 now
    assert len(e["credentials"]) == 1 and used == [0], e
    assert a.proc.poll() is None, a.dump()
    assert a.stop() == 0, a.dump()

    # a restart on the new key connects at once
    args = agent_args(b, d)
    args[args.index("--key") + 1] = k2
    c = Agent(args)
    c.wait_connected()
    assert c.stop() == 0, c.dump()
    assert not device_refusals(b, d), "a connection was refused during the rotation"


def test_switch_to_an_unknown_key_falls_back_at_once(broker, tmp_path):
    b = broker
    k3, _ = new_key(b)                  # never registered
    d = b.device(f"rot-back-{os.urandom(2).hex()}")
    switch = tmp_path / "next-key"
    a = Agent(agent_args(b, d, "--next-key-file", switch))
    a.wait_connected()
    switch.write_text(k3 + "\n")
    before = len(a.err)
    a.proc.send_signal(signal.SIGHUP)
    _, _, t_refused = a.wait_err(r"refused the next key", timeout=15, after=before)
    i, _, t_back = a.wait_err(r"\bconnected\b", timeout=10, after=before + 1)
    assert t_back - t_refused < 2.0, a.dump()
    lines = [l for _, l in a.err[before:i]]
    assert not any("next attempt in" in l for l in lines), a.dump()      # no backoff
    assert len(device_refusals(b, d)) == 1, b.log_text()[-2000:]
    e, used = wait_last_used(d, 0)
    assert used == [0], e
    assert a.stop() == 0, a.dump()

    # at start: --next-key tried first, refused, the key connects at once
    args = agent_args(b, d, "--next-key", k3)
    s = Agent(args)
    s.wait_err(r"refused the next key", timeout=15)
    s.wait_connected()
    assert s.stop() == 0, s.dump()
    assert len(device_refusals(b, d)) == 2

    # a next key that is not in the store at all: refused by the agent, the device goes on
    switch.write_text("no-such-key\n")
    a = Agent(agent_args(b, d, "--next-key-file", switch))
    a.wait_connected()
    before = len(a.err)
    a.proc.send_signal(signal.SIGHUP)
    a.wait_err(r"no-such-key", timeout=10, after=before)
    time.sleep(0.5)
    assert a.proc.poll() is None, a.dump()
    assert a.stop() == 0, a.dump()


def test_credential_expiry_closes_the_live_connection_and_refuses_after(broker):
    b = broker
    k, pem = new_key(b)
    dev_id = f"rot-exp-{os.urandom(2).hex()}"
    expires = int(time.time()) + 3
    r = b.lk("devices", "create", dev_id, "--registry", b.registry, "--project", b.project,
             "--region", b.region, "--public-key", f"path={pem},type=es256,expiration-time={expires}")
    assert r.rc == 0, r

    class D:
        pass
    d = D()
    d.id, d.project, d.region, d.registry, d.key, d.store = (dev_id, b.project, b.region,
                                                             b.registry, k, b.store)
    from broker import client_id
    d.client_id = client_id(dev_id, b.registry, b.project, b.region)
    a = Agent(agent_args(b, d, "--max-refusals", "2", "--backoff-max", "1"))
    a.wait_connected()
    assert time.time() < expires, "connected too late to see the expiry of a live connection"
    deadline = expires + 5
    while not log_lines(b, "event=close ", f" device={d.client_id} ", "credential") and time.time() < deadline:
        time.sleep(0.2)
    closed = log_lines(b, "event=close ", f" device={d.client_id} ", "credential")
    assert closed, b.log_text()[-3000:]
    assert "expired" in closed[0], closed
    # and every attempt after it is refused: the agent gives up
    assert a.wait_exit(20) == EXIT_REFUSED, a.dump()
    assert device_refusals(b, d), b.log_text()[-3000:]


def test_agent_x5c(broker, tmp_path):
    """--x5c: a PEM chain in the token's header. Its file errors are the agent's; a registry without
    just-in-time registration refuses a token that carries x5c (as IoT Core did)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime

    b = broker
    d = b.device(f"rot-x5c-{os.urandom(2).hex()}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, d.id)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = cert.public_bytes(serialization.Encoding.PEM)

    missing = Agent(agent_args(b, d, "--x5c", tmp_path / "missing.pem"))
    assert missing.wait_exit(10) == 3, missing.dump()
    empty = tmp_path / "empty.pem"
    empty.write_text("no certificate here\n")
    e = Agent(agent_args(b, d, "--x5c", empty))
    assert e.wait_exit(10) == 34, e.dump()
    four = tmp_path / "four.pem"
    four.write_bytes(pem * 4)
    f = Agent(agent_args(b, d, "--x5c", four))
    assert f.wait_exit(10) == 2, f.dump()
    assert "more than 3 certificates" in f.err_text(), f.dump()

    one = tmp_path / "one.pem"
    one.write_bytes(pem)
    before = len(device_refusals(b, d))
    a = Agent(agent_args(b, d, "--x5c", one, "--max-refusals", "1"))
    assert a.wait_exit(15) == EXIT_REFUSED, a.dump()
    refused = device_refusals(b, d)[before:]
    assert refused and "x5c" in refused[0], refused
