#!/usr/bin/python3
"""bench/api.sh's client for latchkeyd's admin API (Debian's python3 and
PyJWT; the standard library's HTTP over TLS with the bench CA).

    api_client.py token PORT CA KEY_FILE
        an access token by the RFC 7523 grant at /token: printed.
    api_client.py device PORT CA TOKEN REGISTRY DEVICE PEM OUT
        creates REGISTRY and DEVICE (one ES256_PEM credential, some metadata)
        and writes the device's JSON as GET returns it to OUT; prints the
        device's path under /v1/.
    api_client.py check PORT CA TOKEN PATH...
        GETs each path once on one connection; prints "status bytes" each.
    api_client.py pages PORT CA TOKEN REGISTRY PAGE N
        times N GETs of devices?pageSize=500 (pageToken of page PAGE - 1:
        base64url("d:" + the last id of that page), the ids being
        device-%09d) beside N of page 1, alternating, on one keep-alive
        connection, each after one untimed warm-up; checks every answer (500
        devices, the expected first id, a next token) and prints
        "page_ms page1_ms" (medians).
    api_client.py subscription PORT CA TOKEN NAME TOPIC ENDPOINT
        creates push subscription NAME of topic TOPIC (projects/P/topics/T)
        to ENDPOINT (retry backoff 0.1 s to 1 s).
    api_client.py stats PORT CA TOKEN NAME
        prints the subscription's queue figures: "depth acked enqueued".
"""
import base64
import http.client
import json
import ssl
import statistics
import sys
import time

import jwt

PROJECT = "bench-project"
REGION = "us-central1"
PAGE = 500


def conn(port, ca):
    ctx = ssl.create_default_context(cafile=ca)
    return http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=120)


def call(c, method, path, token=None, body=None, ctype="application/json"):
    headers = {}
    if token:
        headers["Authorization"] = "Bearer " + token
    if body is not None:
        headers["Content-Type"] = ctype
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    return r.status, r.read()


def must(status, data, what):
    if status != 200:
        sys.exit(f"api_client.py: {what}: HTTP {status}: {data[:400]!r}")
    return json.loads(data)


def token(port, ca, key_file):
    info = json.load(open(key_file))
    now = int(time.time())
    assertion = jwt.encode({"iss": info["client_email"], "sub": info["client_email"], "aud": info["token_uri"],
                            "scope": "https://www.googleapis.com/auth/cloud-platform",
                            "iat": now, "exp": now + 3600},
                           info["private_key"], algorithm="RS256", headers={"kid": info["private_key_id"]})
    form = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=" + assertion
    c = conn(port, ca)
    st, data = call(c, "POST", "/token", body=form, ctype="application/x-www-form-urlencoded")
    print(must(st, data, "POST /token")["access_token"])


def device(port, ca, tok, registry, dev, pem_file, out):
    pem = open(pem_file).read()
    c = conn(port, ca)
    base = f"/v1/projects/{PROJECT}/locations/{REGION}/registries"
    must(*call(c, "POST", base, tok, {"id": registry, "mqttConfig": {"mqttEnabledState": "MQTT_ENABLED"}}),
         "create registry")
    must(*call(c, "POST", f"{base}/{registry}/devices", tok,
               {"id": dev, "credentials": [{"publicKey": {"format": "ES256_PEM", "key": pem}}],
                "metadata": {"site": "bench-hall-7", "model": "sensor-v2"}}), "create device")
    path = f"{base}/{registry}/devices/{dev}"
    st, data = call(c, "GET", path, tok)
    must(st, data, "get device")
    with open(out, "wb") as f:
        f.write(data)
    print(path)


def check(port, ca, tok, paths):
    c = conn(port, ca)
    for p in paths:
        st, data = call(c, "GET", p, tok)
        print(st, len(data))


def pages(port, ca, tok, registry, page, n):
    c = conn(port, ca)
    base = f"/v1/projects/{PROJECT}/locations/{REGION}/registries/{registry}/devices?pageSize={PAGE}"
    first = (page - 1) * PAGE
    tok_page = base64.urlsafe_b64encode(f"d:device-{first - 1:09d}".encode()).decode().rstrip("=")
    want = {base: "device-000000000", f"{base}&pageToken={tok_page}": f"device-{first:09d}"}
    times = {p: [] for p in want}
    for i in range(n + 1):
        for p in (list(want) if i % 2 == 0 else list(want)[::-1]):
            t0 = time.perf_counter()
            st, data = call(c, "GET", p, tok)
            dt = (time.perf_counter() - t0) * 1000
            j = must(st, data, p)
            devs = j.get("devices", [])
            if len(devs) != PAGE or devs[0]["id"] != want[p] or "nextPageToken" not in j:
                sys.exit(f"api_client.py: {p}: {len(devs)} devices from "
                         f"{devs[0]['id'] if devs else None}, expected {PAGE} from {want[p]}")
            if i > 0:
                times[p].append(dt)
    med = [statistics.median(times[p]) for p in want]
    print(f"{med[1]:.2f} {med[0]:.2f}")


def subscription(port, ca, tok, name, topic, endpoint):
    c = conn(port, ca)
    must(*call(c, "PUT", f"/v1/projects/{PROJECT}/subscriptions/{name}", tok,
               {"topic": topic, "pushConfig": {"pushEndpoint": endpoint},
                "retryPolicy": {"minimumBackoff": "0.1s", "maximumBackoff": "1s"}}), "create subscription")


def stats(port, ca, tok, name):
    c = conn(port, ca)
    j = must(*call(c, "GET", f"/v1/projects/{PROJECT}/subscriptions/{name}:stats", tok), "stats")
    print(j.get("depth", 0), j.get("acked", 0), j.get("enqueued", 0))


def main(a):
    if len(a) < 2:
        sys.exit(__doc__)
    cmd = a[1]
    if cmd == "token" and len(a) == 5:
        token(a[2], a[3], a[4])
    elif cmd == "device" and len(a) == 9:
        device(*a[2:9])
    elif cmd == "check" and len(a) >= 6:
        check(a[2], a[3], a[4], a[5:])
    elif cmd == "subscription" and len(a) == 8:
        subscription(*a[2:8])
    elif cmd == "stats" and len(a) == 6:
        stats(*a[2:6])
    elif cmd == "pages" and len(a) == 8:
        pages(a[2], a[3], a[4], a[5], int(a[6]), int(a[7]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
