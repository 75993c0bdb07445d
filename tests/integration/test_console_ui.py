"""The web console (docs/console.md): its files as latchkeyd serves them, and the console in a browser.

test_console_files: GET /console/ and its fixed list of files with their types and the security
headers (a strict Content-Security-Policy, no framing, no sniffing, no referrer); anything else
under /console/ is 404, traversal included; / redirects to /console/.

test_console_in_chromium: a real broker with latchkey's plugin and latchkeyd share a registry of
100,000 devices (one `latchkey devices import`); an operator (`latchkey operators create`) signs
in through Debian's Chromium, headless, driven by puppeteer-core (tests/console/console.js,
installed with npm ci from tests/console/package-lock.json); the console finds one device among
them by search, sends it a config and a command which the device (a paho client with a PyJWT
token, through the plugin) receives, blocks it and the broker cuts it off, and the refused connect
that follows appears on the device page without a reload; a viewer then finds every change
disabled. Any console error, page error, failed request or HTTP error in the page fails the test.
LK_SCREENSHOTS=DIR saves each page at 1280 and 390 px wide (docs/console/ holds a set).
"""
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization

from api_common import Env, env  # noqa: F401 (the fixture)
from broker import Broker, Refused
from conftest import REPO, BIN, run_tool
from npm_common import npm_install
from plugin_common import (REGION, REGISTRY, PROJECT, close, connect, make_device, publish, received,
                           wait_disconnected)

CONSOLE_SRC = REPO / "tests" / "console"
CONSOLE_NPM = BIN.parent / "console-client"
FILES = {"": "text/html", "index.html": "text/html", "app.js": "text/javascript",
         "device.js": "text/javascript", "chart.js": "text/javascript", "style.css": "text/css",
         "favicon.svg": "image/svg+xml"}
DEVICES = 100_000
TARGET = "dev-054321"


def get(daemon, path, method="GET", body=None, headers=None):
    con = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=daemon.ssl_context(), timeout=10)
    try:
        con.request(method, path, body, headers or {})
        r = con.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        con.close()


def test_console_files(env):
    index = None
    for name, ctype in FILES.items():
        status, h, body = get(env.daemon, "/console/" + name)
        assert status == 200 and h["content-type"].startswith(ctype), (name, status, h)
        csp = h["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY", h
        assert h["referrer-policy"] == "no-referrer", h
        assert body, name
        if name == "index.html":
            index = body
    assert get(env.daemon, "/console/")[2] == index
    # no inline script or handler: the CSP would block it, so none is written
    assert not re.search(rb"<script(?![^>]*\ssrc=)", index) and not re.search(rb"\son[a-z]+\s*=", index, re.I)
    for path in ["/", "/console"]:
        status, h, _ = get(env.daemon, path)
        assert status == 302 and h["location"] == "/console/", (path, status, h)
    for path in ["/console/nope.js", "/console/../console/index.html", "/console/%2e%2e/etc/passwd",
                 "/console/index.html/", "/console/INDEX.HTML", "/console//index.html", "/console/.",
                 "/console/app.js%00", "/console/style.css?x=1/../../"]:
        status, _, body = get(env.daemon, path)
        if path.startswith("/console/style.css?"):
            assert status == 200      # the query is not part of the name
            continue
        assert status == 404, (path, status, body[:200])
    assert get(env.daemon, "/console/index.html", "POST")[0] == 404
    assert get(env.daemon, "/console/", "HEAD")[0] == 200


# ---- the console in Chromium ----

def _operators_tool():
    r = run_tool("operators", "--help")
    return r.rc == 0 and "operators" in (r.out + r.err)


def _import_devices(b, n, skip):
    """n - 1 devices without credentials (ids dev-000000...), in one transaction."""
    path = b.base / "devices.jsonl"
    with open(path, "w") as f:
        for i in range(n):
            if f"dev-{i:06d}" != skip:
                f.write(f'{{"id": "dev-{i:06d}"}}\n')
    r = b.lk("devices", "import", str(path), "--registry", REGISTRY, "--project", PROJECT, "--region", REGION)
    assert r.rc == 0, r


def _missing_endpoints(daemon, password):
    """The console endpoints (docs/console.md) this latchkeyd answers 404, signed in as the operator."""
    status, h, body = get(daemon, "/console/api/signin", "POST", json.dumps({"name": "ops", "password": password}),
                          {"Content-Type": "application/json"})
    assert status == 200, (status, body)
    cookie = h["set-cookie"].split(";")[0]
    reg = f"/console/api/projects/{PROJECT}/locations/{REGION}/registries/{REGISTRY}"
    missing = []
    for path in [f"/console/api/projects/{PROJECT}/overview", f"/console/api/projects/{PROJECT}/series?minutes=60",
                 f"{reg}/devices?q={TARGET}", f"{reg}/devices/{TARGET}/refusals"]:
        if get(daemon, path, headers={"Cookie": cookie})[0] == 404:
            missing.append(path.split("?")[0].rsplit("/", 1)[1])
    get(daemon, "/console/api/signout", "POST", headers={"Cookie": cookie,
                                                          "X-CSRF-Token": json.loads(body)["csrf"]})
    return missing


@pytest.fixture
def stack(tmp_path):
    if not _operators_tool():
        pytest.fail("this build has no `latchkey operators` (the console's sign-in)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: run `sh scripts/install-deps.sh test`")
    mfile = tmp_path / "metrics"
    b = Broker(tmp_path / "broker", opts={"activity_flush": 1, "metrics_file": mfile}, start=False)
    _import_devices(b, DEVICES, TARGET)
    dev = make_device(b, TARGET, extra=("--metadata", "site=<i>berlin</i>"))
    b.start()
    e = Env(tmp_path / "lkd", db=b.db, make_registry=False,
            extra=["--metrics-file", mfile, "--metrics-sample-seconds", "1"])
    password = "console test " + os.urandom(6).hex()
    r = run_tool("--db", b.db, "operators", "create", "ops", "--project", PROJECT, "--role", "deviceController",
                 input=password + "\n")
    assert r.rc == 0, r
    r = run_tool("--db", b.db, "operators", "create", "watcher", "--project", PROJECT, "--role", "viewer",
                 input=password + "\n")
    assert r.rc == 0, r
    missing = _missing_endpoints(e.daemon, password)
    if missing:
        e.stop()
        b.stop()
        pytest.fail("this build's latchkeyd lacks the console endpoints " + ", ".join(missing))
    yield b, e, dev, password, chromium
    assert e.daemon.alive(), e.daemon.log_text()[-3000:]
    e.stop()
    b.stop()


def test_console_in_chromium(stack):
    b, e, dev, password, chromium = stack
    npm = npm_install(CONSOLE_SRC, CONSOLE_NPM, "puppeteer-core")
    c = connect(b, dev.client_id, dev.token())
    node = None
    try:
        assert b.subscribe(c, f"/devices/{dev.id}/config") == 1
        assert b.subscribe(c, f"/devices/{dev.id}/commands/#") == 1
        for i in range(12):      # something for the overview's plot of events
            publish(c, f"/devices/{dev.id}/events", f'{{"n": {i}}}'.encode(), qos=1)
        env = dict(os.environ, NODE_PATH=str(npm / "node_modules"), LK_URL=f"https://127.0.0.1:{e.daemon.port}",
                   LK_NAME="ops", LK_VIEWER_NAME="watcher", LK_PASSWORD=password, LK_LOCATION=REGION,
                   LK_REGISTRY=REGISTRY, LK_DEVICE=dev.id, LK_DEVICE_COUNT=str(DEVICES), LK_CHROMIUM=chromium)
        t0 = time.time()
        node = subprocess.Popen(["node", str(CONSOLE_SRC / "console.js")], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        seen = []
        while True:
            line = node.stdout.readline()
            assert line, f"console.js ended early after {seen}:\n{node.stderr.read()[-3000:]}"
            msg = json.loads(line)
            seen.append(msg["step"])
            if msg["step"] == "config-sent":
                search_ms = msg["searchMs"]
                # the page's fingerprint is the SHA-256 of the key's DER SubjectPublicKeyInfo
                der = dev.keys[0].priv.public_key().public_bytes(serialization.Encoding.DER,
                                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
                assert msg["fingerprint"] == hashlib.sha256(der).hexdigest(), msg
                got = received(c, f"/devices/{dev.id}/config", payload=msg["config"].encode(), timeout=10)
                assert got, "the device never received the config sent in the console"
            elif msg["step"] == "command-sent":
                got = received(c, f"/devices/{dev.id}/commands", payload=msg["command"].encode(), timeout=10)
                assert got, "the device never received the command sent in the console"
            elif msg["step"] == "blocked":
                assert wait_disconnected(c, 10), "the blocked device is still connected"
                with pytest.raises(Refused):
                    b.connect(dev.client_id, dev.token(), username="unused", tls=False)
            elif msg["step"] == "done":
                break
            node.stdin.write("ok\n")
            node.stdin.flush()
        assert msg["problems"] == [], "\n".join(msg["problems"])
        assert node.wait(30) == 0, node.stderr.read()[-3000:]
        assert "block" in msg["refusal"].lower(), msg["refusal"]
        assert seen == ["config-sent", "command-sent", "blocked", "done"]
        print(f"console test: {time.time() - t0:.1f} s in the browser; typing the id to its one row among "
              f"{DEVICES:,}: {search_ms} ms (typing and the search box's 300 ms debounce included)")
    finally:
        if node is not None and node.poll() is None:
            node.kill()
            node.wait()
        close(c)
