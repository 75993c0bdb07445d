"""The side arrivals of bench/storm.sh's first storm (which sets up the registry, the broker and
latchkeyd and passes everything here through the environment). Prints `name: value` lines on
standard output; details on standard error.

Waits until a storm simulator has started its connection attempts (START, a file glob, the
simulators' standard error), then at once, side by side:
  gateways  NGW latchkey-device gateway agents (gw-00...), each attaching its share of GW_DEVICES
            bound devices (ga-00000..., association only), counted by the agents' progress lines
            (`attached D`, printed for each attach the broker took); a device the broker refused
            (an `error: ... @D` line on the agent's standard output) or never attached is a failure
  http      HTTP_DEVICES devices (h-00000...) each posting one event to latchkeyd's device bridge
            (POST .../devices/D:publishEvent, its own ES256 token as Bearer, a new TLS connection
            per device, HTTP_PARALLEL at once); anything but 200 (or no answer within MAX s) is a
            failure; no retries
Each part's seconds: from the start to its last success.
"""
import concurrent.futures
import glob
import http.client
import os
import re
import ssl
import subprocess
import sys
import threading
import time

import jwt

E = os.environ
DEVTOOL, PORT, CA, STORE, KEY = E["DEVTOOL"], E["PORT"], E["CA"], E["STORE"], E["KEY"]
PROJECT, REGION, REGISTRY, TMP = E["PROJECT"], E["REGION"], E["REGISTRY"], E["TMP"]
NGWDEV, NGW, NHTTP = int(E["GW_DEVICES"]), int(E["NGW"]), int(E["HTTP_DEVICES"])
HPAR, MAX = int(E["HTTP_PARALLEL"]), float(E["MAX"])
PINC = E.get("PINC", "").split()


def log(msg):
    print(f"storm_side: {msg}", file=sys.stderr, flush=True)


def gateways(t0, result):
    procs, errs, outs = [], [], []
    for g in range(NGW):
        args = []
        for i in range(g, NGWDEV, NGW):
            args += ["--attach", f"ga-{i:05d}"]
        errs.append(os.path.join(TMP, f"side-gw{g}.err"))
        outs.append(os.path.join(TMP, f"side-gw{g}.out"))
        procs.append(subprocess.Popen(
            [*PINC, DEVTOOL, "--host", "127.0.0.1", "--port", PORT, "--ca", CA, "--project", PROJECT,
             "--region", REGION, "--registry", REGISTRY, "--device", f"gw-{g:02d}", "--key", KEY,
             "--store", STORE, *args],
            stdin=subprocess.DEVNULL, stdout=open(outs[-1], "w"), stderr=open(errs[-1], "w")))
    attached, refused, last = set(), set(), None
    attached_re = re.compile(r": attached (ga-\d+)")
    refused_re = re.compile(r"^error: .*@(ga-\d+)", re.M)
    while time.monotonic() - t0 < MAX:
        n = len(attached)
        for path in errs:
            with open(path, errors="replace") as f:
                attached.update(attached_re.findall(f.read()))
        if len(attached) != n:
            last = time.monotonic()
        if len(attached) >= NGWDEV or all(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    for path in outs:
        with open(path, errors="replace") as f:
            refused.update(refused_re.findall(f.read()))
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if len(attached) < NGWDEV or refused:
        for path in errs + outs:
            with open(path, errors="replace") as f:
                lines = [x for x in f.read().splitlines() if ": attached " not in x]
            if lines:
                log(f"{os.path.basename(path)}: " + " | ".join(lines[-5:]))
    result["gw_attached"] = len(attached)
    result["gw_failed"] = len(refused | (set(f"ga-{i:05d}" for i in range(NGWDEV)) - attached))
    result["gw_s"] = last - t0 if last is not None and len(attached) >= NGWDEV else None


def http_part(t0, result, tokens, body):
    ctx = ssl.create_default_context(cafile=CA)
    prefix = f"/v1/projects/{PROJECT}/locations/{REGION}/registries/{REGISTRY}/devices/"
    dport = int(E["DPORT"])

    def one(i):
        dev = f"h-{i:05d}"
        try:
            c = http.client.HTTPSConnection("127.0.0.1", dport, context=ctx, timeout=MAX)
            c.request("POST", f"{prefix}{dev}:publishEvent", body=body,
                      headers={"Authorization": f"Bearer {tokens[i]}",
                               "Content-Type": "application/json"})
            r = c.getresponse()
            text = r.read()
            c.close()
            if r.status == 200:
                return True, time.monotonic(), None
            return False, None, f"{dev}: {r.status} {text[:200]!r}"
        except Exception as e:  # noqa: BLE001 -- every failure is counted and one shown
            return False, None, f"{dev}: {type(e).__name__}: {e}"

    ok, last, why = 0, None, []
    with concurrent.futures.ThreadPoolExecutor(HPAR) as ex:
        for good, t, w in ex.map(one, range(NHTTP)):
            if good:
                ok += 1
                last = t if last is None or t > last else last
            elif len(why) < 5:
                why.append(w)
    for w in why:
        log(f"http: {w}")
    result["http_ok"] = ok
    result["http_s"] = last - t0 if last is not None and ok >= NHTTP else None


def main():
    # before the clock: the HTTP devices' tokens (PyJWT, ES256, aud = the project, 2 hours) and
    # the event's body
    tokens, body = [], b""
    if NHTTP:
        with open(E["HTTP_KEY"]) as f:
            key = f.read()
        now = int(time.time())
        tokens = [jwt.encode({"iat": now, "exp": now + 7200, "aud": PROJECT}, key, algorithm="ES256")
                  for _ in range(NHTTP)]
        body = b'{"binaryData": "c3Rvcm0gc2lkZSBldmVudA=="}'
    deadline = time.monotonic() + MAX
    while time.monotonic() < deadline:
        started = False
        for path in glob.glob(E["START"]):
            with open(path, errors="replace") as f:
                if "connection attempts at once" in f.read():
                    started = True
        if started:
            break
        time.sleep(0.02)
    t0 = time.monotonic()
    log("the storm started: gateways and HTTP devices go")
    result = {}
    parts = []
    if NGWDEV:
        parts.append(threading.Thread(target=gateways, args=(t0, result)))
    if NHTTP:
        parts.append(threading.Thread(target=http_part, args=(t0, result, tokens, body)))
    for p in parts:
        p.start()
    for p in parts:
        p.join()

    def secs(v):
        return f"{v:.3f}" if v is not None else "never"

    failures = 0
    if NGWDEV:
        print(f"storm_gateway_devices: {NGWDEV}")
        print(f"storm_gateway_devices_attached: {result['gw_attached']}")
        print(f"storm_gateway_seconds: {secs(result['gw_s'])}")
        failures += result["gw_failed"]
    if NHTTP:
        print(f"storm_http_devices: {NHTTP}")
        print(f"storm_http_devices_published: {result['http_ok']}")
        print(f"storm_http_seconds: {secs(result['http_s'])}")
        failures += NHTTP - result["http_ok"]
    print(f"storm_side_failures: {failures}")


if __name__ == "__main__":
    main()
