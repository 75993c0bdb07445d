"""latchkey-device as a gateway (docs/device.md, "Gateways"), against a real Mosquitto with latchkey's
plugin (its gateway side, docs/plugin.md).

  - an ASSOCIATION_ONLY gateway attaches three bound devices and refuses-to-attach an unbound one:
    "attached" for the three, the server's GATEWAY_ATTACHMENT_ERROR for the fourth on standard output
    (text and JSON); events (with a subfolder) and state for the attached devices, and the gateway's
    own events, reach a backend as each device's own (gatewayId in the attributes); a config update
    and a command for an attached device are printed with its name; a line for the unbound device
    waits (it is held), a line for a device never named is skipped;
  - '@DEVICE/attach' and '@DEVICE/detach' lines attach and detach a device while the agent runs;
  - a DEVICE_AUTH_TOKEN_ONLY gateway attaches an unbound device with its own token (signed by its
    key in the same store, --attach DEVICE:KEY), and is refused one without a token;
  - a broker restart: the agent reconnects, attaches every device again and only then sends what
    was queued for them meanwhile;
  - command-line errors (exit 2): a bad --attach, --gateway-rate without --attach; a device key that
    does not exist (exit 3);
  - no token in any output, ever.
"""
import json
import time

import pytest

from plugin_common import PROJECT, REGION, close, received, start_broker
from test_device_agent import (EXIT_KEY_NOT_FOUND, EXIT_OK, EXIT_USAGE, Agent, _agents_cleanup,  # noqa: F401
                               agent_args, backend, payloads, send_command, uniq, wait_payloads)

ATTACHED_RE = r"\battached {}\b"


def gateway(b, gid, method):
    return b.device(gid, extra=["--device-type", "gateway", "--auth-method", method])


def bind(b, gw, dev):
    r = b.lk("devices", "gateways", "bind", "--gateway", gw.id, "--device", dev.id,
             "--registry", dev.registry, "--project", PROJECT, "--region", REGION)
    assert r.rc == 0, r


def props(msg):
    return dict(getattr(getattr(msg, "properties", None), "UserProperty", []) or [])


def messages(c, topic):
    with c.got:
        return [m for m in c.messages if m.topic == topic]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = start_broker(tmp_path_factory, "gateway")
    yield b
    b.stop()


def test_association_only_gateway(broker):
    b = broker
    gw = gateway(b, uniq("gw-assoc"), "association-only")
    nodes = [b.device(uniq(f"node{i}")) for i in range(3)]
    for n in nodes:
        bind(b, gw, n)
    stranger = b.device(uniq("stranger"))         # not bound
    be = backend(b)
    try:
        a = Agent(agent_args(b, gw, *[x for n in nodes + [stranger] for x in ("--attach", n.id)],
                             "--format", "json"))
        for n in nodes:
            a.wait_err(ATTACHED_RE.format(n.id), timeout=30)
        # the server refuses the unbound one, on the errors topic
        _, m, _ = a.wait_out(r'^\{"type":"error".*GATEWAY_ATTACHMENT_ERROR', timeout=15)
        err = json.loads(m.string)
        assert err["device"] == stranger.id and err["error_type"] == "GATEWAY_ATTACHMENT_ERROR", err
        assert err["topic"] == f"/devices/{stranger.id}/attach" and err["description"], err
        a.wait_err(rf"attaching {stranger.id} again in", timeout=5)   # held, retried later

        ev, st, sub, own = (uniq(x) for x in ("ev", "st", "sub", "own"))
        a.send(f"@{nodes[0].id} {ev}")
        a.send(f"@{nodes[1].id}/state {st}")
        a.send(f"@{nodes[2].id}/events/sensors/t {sub}")
        a.send(own)
        a.send(f"@{stranger.id} held")                # waits: the device is not attached
        a.send(f"@never-named-{uniq('x')} skipped")
        assert wait_payloads(be, nodes[0].downstream("events"), [ev.encode()]) == [ev.encode()]
        assert received(be, nodes[1].downstream("state"), st.encode(), timeout=10)
        assert wait_payloads(be, nodes[2].downstream("events", "sensors/t"), [sub.encode()]) == \
            [sub.encode()]
        assert wait_payloads(be, gw.downstream("events"), [own.encode()]) == [own.encode()]
        # the device's message, naming its gateway
        p = props(messages(be, nodes[0].downstream("events"))[0])
        assert p.get("deviceId") in (None, nodes[0].id) and p.get("gatewayId") in (None, gw.id), p
        a.wait_err(r"not attached \(--attach\): skipped", timeout=5)
        assert payloads(be, stranger.downstream("events")) == []

        # config and command for an attached device, printed with its name
        cfg = uniq("cfg")
        r = nodes[0].devices("configs", "update", nodes[0].id, "--config-data", cfg)
        assert r.rc == 0, r
        _, m, _ = a.wait_out(rf'"device":"{nodes[0].id}".*"data":"{cfg}"', timeout=15)
        assert json.loads(m.string)["type"] == "config"
        send_command(nodes[1], "--command-data", "open", "--subfolder", "valve/3")
        _, m, _ = a.wait_out(rf'"device":"{nodes[1].id}".*"subfolder":"valve/3"', timeout=15)
        assert json.loads(m.string) == {"type": "command", "device": nodes[1].id,
                                        "subfolder": "valve/3", "data": "open"}
        a.kill()   # the held line is never delivered: no clean stop expected
    finally:
        close(be)


def test_attach_and_detach_while_running(broker):
    """@DEVICE/attach and @DEVICE/detach input lines: a device attached later (association only),
    its events delivered, then detached after them; a line for it afterwards is skipped, and the
    broker saw the detach (its offline message names the gateway)."""
    b = broker
    gw = gateway(b, uniq("gw-live"), "association-only")
    n = b.device(uniq("live"))
    bind(b, gw, n)
    be = backend(b)
    try:
        a = Agent(agent_args(b, gw, "--gateway"))
        a.wait_connected()
        a.send(f"@{n.id}/attach")
        a.wait_err(ATTACHED_RE.format(n.id), timeout=15)
        evs = [uniq("live-ev") for _ in range(3)]
        for e in evs:
            a.send(f"@{n.id} {e}")
        a.send(f"@{n.id}/detach")
        a.wait_err(rf"\bdetached {n.id}\b", timeout=15)
        assert wait_payloads(be, n.downstream("events"), [e.encode() for e in evs]) == \
            [e.encode() for e in evs], a.dump()
        assert received(be, n.downstream("offline"), timeout=10), payloads(be, n.downstream("offline"))
        a.send(f"@{n.id} after")
        a.wait_err(rf"a line for {n.id}, which is not attached", timeout=5)
        assert a.stop() == EXIT_OK, a.dump()
        assert b"after" not in payloads(be, n.downstream("events"))
    finally:
        close(be)


def test_device_auth_token_only_gateway_text(broker):
    b = broker
    gw = gateway(b, uniq("gw-token"), "device-auth-token-only")
    own_key = b.device(uniq("keyed"))              # not bound: its token is what counts
    keyless = b.device(uniq("keyless"))
    be = backend(b)
    try:
        a = Agent(agent_args(b, gw, "--attach", f"{own_key.id}:{own_key.key}", "--attach", keyless.id))
        a.wait_err(ATTACHED_RE.format(own_key.id) + " with its own token", timeout=30)
        a.wait_out(rf"^error: GATEWAY_ATTACHMENT_ERROR @{keyless.id}: .+ \(PUBLISH /devices/{keyless.id}/attach\)$",
                   timeout=15)
        ev = uniq("tok")
        a.send(f"@{own_key.id} {ev}")
        assert wait_payloads(be, own_key.downstream("events"), [ev.encode()]) == [ev.encode()]
        assert a.stop() in (EXIT_OK, 33), a.dump()
    finally:
        close(be)


def test_reattached_after_broker_restart(tmp_path_factory):
    b = start_broker(tmp_path_factory, "gw-restart")
    be = None
    try:
        gw = gateway(b, "gw-restart", "association-only")
        nodes = [b.device(f"rnode{i}") for i in range(3)]
        for n in nodes:
            bind(b, gw, n)
        a = Agent(agent_args(b, gw, *[x for n in nodes for x in ("--attach", n.id)],
                             "--backoff-max", "2"))
        for n in nodes:
            a.wait_err(ATTACHED_RE.format(n.id), timeout=30)
        mark = len(a.err)
        b.stop()
        a.wait_err(r"next attempt in", timeout=15, after=mark)
        queued = [f"down-{i}" for i in range(3)]
        for n, q in zip(nodes, queued):
            a.send(f"@{n.id} {q}")
        b.start()
        be = backend(b, "be-gw-restart")
        for n in nodes:
            a.wait_err(ATTACHED_RE.format(n.id), timeout=30, after=mark)
        for n, q in zip(nodes, queued):
            assert wait_payloads(be, n.downstream("events"), [q.encode()], timeout=15) == [q.encode()], \
                a.dump()
        # not one of them was refused as "not attached": every attach went first
        assert "GATEWAY_DEVICE_NOT_ATTACHED" not in a.out_text(), a.dump()
        assert a.stop() == EXIT_OK, a.dump()
    finally:
        if be is not None:
            close(be)
        b.stop()


def test_device_token_refreshed_without_loss(tmp_path_factory):
    """Tokens of 10 s (the broker's skew 0): the gateway reconnects every ~5 s and attaches its
    devices again; a device attached later than the gateway connected (here: created only after the
    agent's first attach was refused) has its own token replaced on the connection before it
    expires (the broker drops an attachment whose token expired). No event is lost, the device's
    errors are only the first refusal."""
    b = start_broker(tmp_path_factory, "gw-refresh", opts={"skew": 0})
    be = None
    try:
        gw = gateway(b, "gw-refresh", "device-auth-token-only")
        d = b.device("keyed-refresh")
        r = d.devices("delete", d.id)
        assert r.rc == 0, r
        be = backend(b, "be-gw-refresh")
        a = Agent(agent_args(b, gw, "--attach", f"{d.id}:{d.key}", "--token-lifetime", 10,
                             "--refresh-margin", 5, "--backoff-max", 2, "--exit-on-eof"))
        a.wait_out(rf"^error: GATEWAY_ATTACHMENT_ERROR @{d.id}: ", timeout=30)
        time.sleep(0.5)
        r = d.devices("create", d.id, "--public-key", f"path={d.pem_path},type=es256")
        assert r.rc == 0, r
        a.wait_err(ATTACHED_RE.format(d.id), timeout=30)
        t_end = time.time() + 15
        n = 0
        while time.time() < t_end:
            a.send(f"@{d.id} n-{n}")
            n += 1
            time.sleep(0.05)
            assert a.proc.poll() is None, a.dump()
        a.close_stdin()
        assert a.wait_exit(30) == EXIT_OK, a.dump()
        want = [f"n-{i}".encode() for i in range(n)]
        got = wait_payloads(be, d.downstream("events"), want, timeout=10)
        missing = sorted(set(want) - set(got), key=lambda p: int(p[2:]))
        assert not missing, f"{len(missing)} of {n} events lost: {missing[:10]}" + a.dump()
        # the refusal only (not the refused subscriptions that follow it: the client's own probe)
        assert a.out_text().count("error:") == 1, a.dump()
        log = b.log_text().splitlines()
        attaches = [l for l in log if "event=attach " in l and f" device={d.client_id} gateway={gw.client_id} by=token" in l]
        connects = [l for l in log if "event=connect " in l and f" device={gw.client_id} " in l]
        # every connection attached it, and at least one connection twice (a new token on it)
        assert len(attaches) > len(connects) >= 3, (len(attaches), len(connects), a.dump())
    finally:
        if be is not None:
            close(be)
        b.stop()


@pytest.mark.parametrize("args,word", [
    (["--attach", "1bad"], "device id"),
    (["--attach", "node-1:"], "empty key"),
    (["--attach", "node-1", "--attach", "node-1"], "twice"),
    (["--gateway-rate", "10"], "--gateway or --attach"),
    (["--attach", "node-1", "--gateway-rate", "0"], "--gateway-rate"),
])
def test_usage_errors(broker, args, word):
    gw = broker.device(uniq("gw-usage"), extra=["--device-type", "gateway"])
    a = Agent(agent_args(broker, gw, *args))
    assert a.wait_exit(10) == EXIT_USAGE, a.dump()
    assert word in a.err_text(), a.dump()


def test_unknown_device_key_exit_3(broker):
    gw = broker.device(uniq("gw-nokey"), extra=["--device-type", "gateway"])
    a = Agent(agent_args(broker, gw, "--attach", "node-1:no-such-key"))
    assert a.wait_exit(10) == EXIT_KEY_NOT_FOUND, a.dump()
