"""Metrics (docs/metrics.md): the broker plugin's counters in its shared metrics file
(plugin_opt_metrics_file), read by latchkeyd (metrics_file) and served at GET /metrics in
Prometheus' text format, with the console's series and a device's recent refusals.

A real broker with the plugin and a real latchkeyd on the same registry; a device of
python3-cryptography keys and PyJWT tokens (plugin_common.py) connects, publishes an event and
a state, reconnects with the same token (a verified-token cache hit) and is refused twice (a
token of another key; a device that does not exist). The counters must move by exactly that;
the refusals endpoint must show the refusal with its reason and never the token. /metrics
takes credentials unless metrics_allow_unauthenticated says otherwise; a metrics file that is
short, of another kind or of another size is refused with a log line, and latchkeyd lives on.
"""
import os
import re
import subprocess
import time

from api_common import DAEMON, Api, Daemon, refused, service_account
from plugin_common import (CONNACK_NOT_AUTHORISED, Key, close, connack, connect, make_device, publish,
                           start_broker)
from broker import PROJECT, REGION, REGISTRY

REG = f"projects/{PROJECT}/locations/{REGION}/registries/{REGISTRY}"
SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def scrape(api):
    r = api.get("/metrics")
    assert r.status == 200, r
    assert r.headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"), r.headers
    out = {}
    for line in r.raw.decode().splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def reg(name, **labels):
    lab = ",".join([f'registry="{REG}"'] + [f'{k}="{v}"' for k, v in labels.items()])
    return f"{name}{{{lab}}}"


def wait_for(fn, what, timeout=10):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_counters_move_as_devices_connect_publish_and_are_refused(tmp_path_factory):
    base = tmp_path_factory.mktemp("metrics")
    mfile = base / "metrics"
    b = start_broker(tmp_path_factory, "broker", {"metrics_file": mfile})
    d = Daemon(base / "lkd", db=b.db, extra=["--metrics-file", mfile, "--metrics-sample-seconds", "1"])
    try:
        assert oct(os.stat(mfile).st_mode & 0o777) == "0o640"
        api = Api(d, service_account(d, "viewer-sa", "viewer"))
        m0 = scrape(api)
        assert m0["latchkey_plugin_metrics_up"] == 1
        # the bearer's any role; none is refused by default
        refused(Api(d, None).get("/metrics"), "UNAUTHENTICATED")

        dev = make_device(b, "metrics-dev")
        tok = dev.token()
        c = connect(b, dev.client_id, tok, tls=False)
        publish(c, dev.topic("events"), b"ev-1", qos=1)
        publish(c, dev.topic("state"), b"st-1", qos=1)
        m1 = wait_for(lambda: (lambda m: m if m.get(reg("latchkey_states_total"), 0) >= 1 else None)(scrape(api)),
                      "the state counted")
        assert m1[reg("latchkey_connections")] == 1
        close(c)
        wait_for(lambda: scrape(api)[reg("latchkey_connections")] == 0, "the connection gone from the gauge")
        c = connect(b, dev.client_id, tok, tls=False)  # the same token: a cache hit
        close(c)

        other = Key(b.base)
        bad = other.sign({"iat": int(time.time()), "exp": int(time.time()) + 600, "aud": PROJECT})
        assert connack(b, dev.client_id, bad, tls=False) == CONNACK_NOT_AUTHORISED
        ghost = dev.client_id.replace("metrics-dev", "no-such-dev")
        assert connack(b, ghost, tok, tls=False) == CONNACK_NOT_AUTHORISED

        m2 = wait_for(lambda: (lambda m: m if m.get(reg("latchkey_refusals_total", reason="no_such_device"))
                               == 1 else None)(scrape(api)), "the refusals counted")
        moved = {k: m2.get(k, 0) - m0.get(k, 0) for k in m2}
        assert moved[reg("latchkey_connects_total")] == 2, moved
        assert moved[reg("latchkey_events_total")] == 1, moved
        assert moved[reg("latchkey_states_total")] == 1, moved
        assert moved[reg("latchkey_refusals_total", reason="invalid_token")] == 1, moved
        assert moved[reg("latchkey_refusals_total", reason="no_such_device")] == 1, moved
        assert sum(v for k, v in moved.items() if k.startswith("latchkey_refusals_total")) == 2, moved
        assert moved["latchkey_token_cache_hits_total"] == 1, moved
        assert moved["latchkey_token_cache_misses_total"] == 2, moved   # the first token, the bad one
        assert moved["latchkey_registry_lookup_seconds_count"] == 4, moved
        assert m2['latchkey_registry_lookup_seconds_bucket{le="+Inf"}'] == m2["latchkey_registry_lookup_seconds_count"]
        assert m2[reg("latchkey_connections")] == 0
        assert m2['latchkey_api_requests_total{code="200"}'] >= 3
        assert m2['latchkey_api_requests_total{code="401"}'] >= 1

        # the device's recent refusals: newest first, the reason, never the token
        path = f"/console/api/{dev.client_id}/refusals"
        r = api.get(path)
        assert r.status == 200, r
        got = r.json["refusals"]
        assert [x["reason"] for x in got] == ["invalid_token"], got
        assert "signature" in got[0]["detail"].lower() and got[0]["time"].endswith("Z"), got
        assert tok not in r.raw.decode() and bad not in r.raw.decode()
        # a segment is percent-decoded, as a browser's encodeURIComponent leaves it
        assert api.get(path.replace("metrics-dev", "metrics%2Ddev")).json == r.json
        r = api.get(f"/console/api/{ghost}/refusals")
        assert [x["reason"] for x in r.json["refusals"]] == ["no_such_device"], r
        refused(Api(d, None).get(path), "UNAUTHENTICATED")
        outsider = Api(d, service_account(d, "other-viewer", "viewer", project="proj-two"))
        refused(outsider.get(path), "PERMISSION_DENIED")

        # the series: per-minute (here per-second) counts, the project's registries summed
        def series():
            s = api.get(f"/console/api/projects/{PROJECT}/series", query={"minutes": 30})
            assert s.status == 200, s
            return s.json if sum(s.json["connects"]) == 2 and sum(s.json["events"]) == 1 else None
        s = wait_for(series, "the series to show the connects", timeout=10)
        assert s["step"] == 1 and s["end"] > 0 and len(s["connects"]) == 30, s
        assert sum(s["states"]) == 1 and sum(s["refusals"]["invalid_token"]) == 1, s
        assert sum(s["refusals"]["no_such_device"]) == 1, s
        s = api.get(f"/console/api/projects/proj-two/series", query={"minutes": 30})
        refused(s, "PERMISSION_DENIED")
        refused(api.get(f"/console/api/projects/{PROJECT}/series", query={"minutes": 1441}), "INVALID_ARGUMENT")

        # the broker stops: its file goes, and the plugin's figures are reported down, not frozen
        b.stop()
        assert not mfile.exists()
        m3 = scrape(api)
        assert m3["latchkey_plugin_metrics_up"] == 0 and reg("latchkey_connects_total") not in m3
        assert "No such file" in d.log_text(), d.log_text()[-2000:]
    finally:
        d.stop()
        b.stop()


def test_unauthenticated_when_allowed_and_a_bad_file_refused(tmp_path):
    mfile = tmp_path / "metrics"
    mfile.write_bytes(b"LK")
    d = Daemon(tmp_path / "lkd", extra=["--metrics-file", mfile, "--metrics-allow-unauthenticated", "loopback"])
    try:
        anon = Api(d, None)
        m = scrape(anon)
        assert m["latchkey_plugin_metrics_up"] == 0
        assert not any(k.startswith("latchkey_connects_total") for k in m)
        assert re.search(r"metrics_file .*metrics: 2 bytes: too short", d.log_text()), d.log_text()[-2000:]
        # another file at the path is read again: of another kind, then of another size
        for content, words in ((b"\0" * 8192, "wrong magic"),
                               (bytes.fromhex("000a4c4b4d545231") + (1).to_bytes(4, "little")
                                + (64).to_bytes(4, "little") + b"\0" * 64, "size 64")):
            tmp = tmp_path / "metrics.new"
            tmp.write_bytes(content)
            os.replace(tmp, mfile)
            assert scrape(anon)["latchkey_plugin_metrics_up"] == 0
            assert words in d.log_text(), d.log_text()[-2000:]
        # a FIFO at the path does not hold latchkeyd in open()
        os.mkfifo(tmp_path / "fifo")
        os.replace(tmp_path / "fifo", mfile)
        assert scrape(anon)["latchkey_plugin_metrics_up"] == 0
        assert "not a regular file" in d.log_text(), d.log_text()[-2000:]
        r = anon.get("/console/api/projects/proj-one/locations/us-central1/registries/reg-1/devices/x/refusals")
        refused(r, "UNAUTHENTICATED")   # the console's endpoints always want credentials
        assert d.alive()
    finally:
        d.stop()
    r = subprocess.run([str(DAEMON), "--registry", str(tmp_path / "r.db"), "--metrics-allow-unauthenticated",
                        "yes-please"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "metrics_allow_unauthenticated must be off, loopback or on" in r.stderr, r
