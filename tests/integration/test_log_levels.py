"""Per-device log levels and the key=value log (docs/plugin.md, "Logs"; docs/daemon.md, "Logs").

One broker (the plugin at its default level, info) and latchkeyd on the same registry file:
  - a device whose logLevel is DEBUG has its publishes (topic kind, size, QoS — never the
    payload), subscriptions and its token's times logged; a device at its registry's INFO has
    its connect logged but no publish;
  - a device's and a registry's logLevel set through the API apply at connect; set with
    `latchkey registries update --log-level` and `latchkey devices update --log-level` they reach a
    connected device live (the change feed); at NONE nothing about the device is written, not even
    its refusal;
  - every line of both logs parses as the documented grammar (a parser written here from the
    docs), every device line names the device's full path, and no token, secret or key is in
    either log.
"""
import re
import time

import pytest

from api_common import Env, device_path, registry_path
from plugin_common import close, connect, log_line, make_device, start_broker
from conftest import run_tool

# docs/plugin.md, "Logs": fields `key=value` separated by one space, the first event=, the
# second level=; a value bare (printable ASCII but space, '"', '\' and '=') or quoted with
# \" \\ \n \r \t \xHH escapes.
BARE = r'[!#-<>-\[\]-~]+'
QUOTED = r'"(?:[ !#-\[\]-~]|\\["\\nrt]|\\x[0-9a-f]{2})*"'
FIELD = re.compile(rf'([a-z_]+)=({BARE}|{QUOTED})')
LEVELS = {"error", "warn", "info", "debug"}
DEVICE_PATH = re.compile(r"projects/[^/ ]+/locations/[^/ ]+/registries/[^/ ]+/devices/[^/ ]+")


def parse(line):
    """The fields of one line (after the program's prefix), in order; raises on anything else."""
    fields, pos = [], 0
    while True:
        m = FIELD.match(line, pos)
        assert m, f"not key=value at {pos}: {line!r}"
        fields.append((m.group(1), m.group(2)))
        pos = m.end()
        if pos == len(line):
            break
        assert line[pos] == " " and line[pos + 1:pos + 2] != " ", f"not one space at {pos}: {line!r}"
        pos += 1
    assert [k for k, _ in fields[:2]] == ["event", "level"], line
    assert fields[1][1] in LEVELS, line
    keys = [k for k, _ in fields]
    assert len(keys) == len(set(keys)), f"a key twice: {line!r}"
    return dict(fields)


def ours(text, prefix):
    """The program's lines: the plugin's inside Mosquitto's ("TIME: latchkey: ..."), or
    latchkeyd's ("latchkeyd: ...")."""
    out = []
    for ln in text.splitlines():
        if prefix == "latchkey":
            m = re.match(r"^(?:\S+: )?latchkey: (.*)$", ln)
            if m:
                out.append(m.group(1))
        elif ln.startswith("latchkeyd: "):
            out.append(ln[len("latchkeyd: "):])
    return out


def lines_of(b, event, device, after=0):
    return [f for f in map(parse, ours(b.log_text()[after:], "latchkey"))
            if f["event"] == event and f.get("device") == device.client_id]


def publish(c, topic, payload, qos=1):
    info = c.publish(topic, payload, qos=qos)
    info.wait_for_publish(5)   # the PUBACK: the plugin has judged (and logged) it


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    b = start_broker(tmp_path_factory, "loglevels")
    e = Env(tmp_path_factory.mktemp("lkd"), db=b.db, make_registry=False)
    yield b, e
    assert e.daemon.alive(), e.daemon.log_text()[-3000:]
    e.stop()
    b.stop()


def test_levels_live_and_the_format(rig):
    b, e = rig
    api = e.api
    tokens = []
    # the registry at INFO, one device at DEBUG (its own), one at the registry's
    r = api.patch(registry_path(), {"logLevel": "INFO"}, query={"updateMask": "logLevel"})
    assert r.status == 200, r
    dbg = make_device(b, "log-debug")
    inf = make_device(b, "log-info")
    r = api.patch(device_path("log-debug"), {"logLevel": "DEBUG"}, query={"updateMask": "logLevel"})
    assert r.status == 200 and r.json["logLevel"] == "DEBUG", r

    mark = len(b.log_text())
    tokens += [dbg.token(), inf.token()]
    cd = connect(b, dbg.client_id, tokens[0])
    ci = connect(b, inf.client_id, tokens[1])
    try:
        assert b.subscribe(cd, dbg.topic("config"), 1) == 1
        assert b.subscribe(ci, inf.topic("config"), 1) == 1
        publish(cd, dbg.topic("events", "sensors"), b"secret-payload-1")
        publish(ci, inf.topic("events", "sensors"), b"secret-payload-2")
        publish(cd, dbg.topic("state"), b"st", qos=1)
        assert log_line(b, "event=publish ", f"device={dbg.client_id} ", "topic=state", after=mark)

        (conn_d,) = lines_of(b, "connect", dbg, mark)
        assert conn_d["level"] == "info" and conn_d["cred"].startswith("sha256:")
        assert {"iat", "exp", "alg", "keepalive", "until"} <= set(conn_d), conn_d
        pubs = lines_of(b, "publish", dbg, mark)
        ev = [p for p in pubs if p["topic"] == "events"]
        assert ev and ev[0]["subfolder"] == "sensors" and ev[0]["bytes"] == "16" and ev[0]["qos"] == "1" \
            and ev[0]["outcome"] == "accepted", pubs
        assert lines_of(b, "subscribe", dbg, mark)[0]["topic"] == "config"
        # at the registry's INFO: the connect, without the token's times, and no publish
        (conn_i,) = lines_of(b, "connect", inf, mark)
        assert "iat" not in conn_i and "exp" not in conn_i, conn_i
        assert not lines_of(b, "publish", inf, mark) and not lines_of(b, "subscribe", inf, mark)
        # a refusal at DEBUG says what the CONNECT asked for
        expired = dbg.token(ttl=60, iat=time.time() - 7200)
        tokens.append(expired)
        with pytest.raises(Exception):
            connect(b, dbg.client_id, expired)
        line = log_line(b, "event=refused ", f"device={dbg.client_id} ", after=mark)
        assert line and "err=LK_ERR_TOKEN_EXPIRED" in line and " protocol=4 clean=1 keepalive=60" in line, line

        # the registry to DEBUG (the tool, as `gcloud iot registries update --log-level`): its device
        # without a level of its own follows, live
        r = run_tool("--db", b.db, "registries", "update", inf.registry, "--project", inf.project,
                     "--region", inf.region, "--log-level", "debug")
        assert r.rc == 0, r
        m2 = len(b.log_text())
        deadline = time.time() + 5
        while not lines_of(b, "publish", inf, m2) and time.time() < deadline:
            publish(ci, inf.topic("events"), b"x")
            time.sleep(0.1)
        assert lines_of(b, "publish", inf, m2), b.log_text()[m2:][-2000:]

        # the device's own NONE wins over its registry's DEBUG: nothing about it, not even a
        # refusal (a second connection with a bad token); the tool sets it as the API does
        r = run_tool("--db", b.db, "devices", "update", "log-debug", "--registry", dbg.registry,
                     "--project", dbg.project, "--region", dbg.region, "--log-level", "none")
        assert r.rc == 0, r
        deadline = time.time() + 5
        m3 = len(b.log_text())
        while time.time() < deadline:   # live once the change feed has been read (a tick)
            m3 = len(b.log_text())
            publish(cd, dbg.topic("events"), b"y")
            publish(ci, inf.topic("events"), b"z")     # a line after it: the barrier
            if log_line(b, "event=publish ", f"device={inf.client_id} ", after=m3, timeout=2) and \
                    not lines_of(b, "publish", dbg, m3):
                break
            time.sleep(0.1)
        assert not lines_of(b, "publish", dbg, m3), b.log_text()[m3:][-2000:]
        bad = dbg.token(ttl=-10, iat=time.time() - 100)     # expired
        tokens.append(bad)
        with pytest.raises(Exception):
            connect(b, dbg.client_id, bad)
        publish(ci, inf.topic("events"), b"w")
        assert log_line(b, "event=publish ", f"device={inf.client_id} ", after=m3)
        assert not [f for f in map(parse, ours(b.log_text()[m3:], "latchkey"))
                    if f.get("device") == dbg.client_id], b.log_text()[m3:][-2000:]
    finally:
        close(cd)
        close(ci)

    # latchkeyd's refusal of a request whose path holds a quote and a backslash: one line, escaped
    r = api.get(device_path('no"such\\dev'))
    assert r.status in (400, 404), r
    time.sleep(0.2)
    refusals = [parse(ln) for ln in ours(e.daemon.log_text(), "latchkeyd") if ln.startswith("event=refused ")]
    assert any('such\\\\dev' in f["path"] and f["code"] in ("NOT_FOUND", "INVALID_ARGUMENT") for f in refusals), \
        refusals

    # every line of both logs: the grammar, the device's full path, no secret
    blog, dlog = b.log_text(), e.daemon.log_text()
    plug, daemon = ours(blog, "latchkey"), ours(dlog, "latchkeyd")
    assert plug and daemon
    for ln in plug + daemon:
        f = parse(ln)
        if "device" in f:
            assert DEVICE_PATH.fullmatch(f["device"]), ln
    changes = [parse(ln) for ln in daemon if ln.startswith("event=change ")]
    assert any(c.get("device") == dbg.client_id and c["action"] == "update" for c in changes), daemon
    assert any(c.get("registry", "").endswith("/registries/" + dbg.registry) for c in changes), daemon
    for t in tokens + [api.bearer()]:
        for text in (blog, dlog):
            assert t not in text and t.split(".")[2] not in text, "a token is in a log"
    assert "PRIVATE KEY" not in blog + dlog
    assert "secret-payload" not in blog + dlog


def test_unknown_device_refused_at_the_plugin_level(rig):
    """A refusal with no device record is logged at the plugin's level (info), with the path the
    client gave; its token is not in the log."""
    b, _ = rig
    mark = len(b.log_text())
    ghost = "projects/proj-one/locations/us-central1/registries/reg-1/devices/no-such"
    with pytest.raises(Exception):
        connect(b, ghost, "eyJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJwcm9qLW9uZSJ9.c2lnbmF0dXJlLW5vdC12YWxpZA")
    line = log_line(b, "event=refused ", f"device={ghost} ", after=mark)
    assert line and 'reason="no such device"' in line and "err=LK_ERR_REG_NOT_FOUND" in line, line
    assert "c2lnbmF0dXJlLW5vdC12YWxpZA" not in b.log_text()
