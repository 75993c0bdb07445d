#!/usr/bin/python3
"""bench/console_search.sh's client: times the console's device search through latchkeyd
(Debian's python3; the standard library's HTTP over TLS with the bench CA, one keep-alive
connection).

    console_search.py PORT CA TOKEN REGISTRY ROUNDS

For each kind of search below, ROUNDS timed GETs of
/console/api/projects/P/locations/L/registries/REGISTRY/devices?... (pageSize 200, the most), each
followed by the baseline: GET /v1/.../devices/dev-0500000 (one device: the same TLS connection, the
same authentication, one read transaction), after one untimed warm-up of each. Every answer is
checked (200; the kinds that must find devices found some). Prints one line per kind,
"kind median_ms worst_ms devices", then "overview median_ms", then the last line:
"search_median_ms search_worst_ms get_device_median_ms worst_kind".
"""
import http.client
import json
import ssl
import statistics
import sys
import time
import urllib.parse

PROJECT = "bench-project"
REGION = "us-central1"

# (name, query, must find some). The data (console_search.sh): 10% online, 40% offline, 50% never;
# 0.1% blocked, 0.2% gateways; silent for 24 h: ~90% (dense); for 9,550 h: ~0.25% (sparse); a
# credential expiring within 30 days: ~0.4% (sparse), within 3,650 days: 25% (dense).
KINDS = [
    ("all", {}, True),
    ("all_deep", {"pageToken": "dev-0900000"}, True),
    ("prefix", {"q": "dev-01234"}, True),
    ("online", {"state": "online"}, True),
    ("offline_deep", {"state": "offline", "pageToken": "dev-0900000"}, True),
    ("never", {"state": "never"}, True),
    ("blocked", {"state": "blocked"}, True),
    ("gateway", {"state": "gateway"}, True),
    ("silent_24h", {"silentHours": "24"}, True),
    ("silent_9550h", {"silentHours": "9550"}, True),
    ("expiring_30d", {"expiringDays": "30"}, True),
    ("expiring_3650d", {"expiringDays": "3650"}, True),
    ("online_blocked", {"state": "online,blocked"}, True),
    ("gateway_silent_prefix", {"state": "gateway", "silentHours": "24", "q": "dev-05"}, True),
    ("never_expiring_30d", {"state": "never", "expiringDays": "30"}, True),
    # The worst case the docs name: two dense filters whose AND is empty (online devices all spoke
    # within minutes): the walk of the online index reaches its end.
    ("worst_online_silent", {"state": "online", "silentHours": "24"}, False),
]


def token_for(last_id):
    import base64
    return base64.urlsafe_b64encode(b"d:" + last_id.encode()).decode().rstrip("=")


def main(port, ca, tok, registry, rounds):
    ctx = ssl.create_default_context(cafile=ca)
    c = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx, timeout=120)
    headers = {"Authorization": "Bearer " + tok}
    base = f"/console/api/projects/{PROJECT}/locations/{REGION}/registries/{registry}/devices"
    get = f"/v1/projects/{PROJECT}/locations/{REGION}/registries/{registry}/devices/dev-0500000"

    def timed(path):
        t0 = time.perf_counter()
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        data = r.read()
        dt = (time.perf_counter() - t0) * 1000
        if r.status != 200:
            sys.exit(f"console_search.py: {path}: HTTP {r.status}: {data[:400]!r}")
        return dt, json.loads(data)

    all_search, base_times, lines = [], [], []
    worst_kind, worst_med = None, -1.0
    for name, q, must in KINDS:
        q = dict(q, pageSize="200")
        if "pageToken" in q:
            q["pageToken"] = token_for(q["pageToken"])
        path = base + "?" + urllib.parse.urlencode(q, safe=",")
        _, j = timed(path)          # warm-up, and the check
        n = len(j.get("devices", []))
        if must and n == 0:
            sys.exit(f"console_search.py: {name}: no devices found: {path}")
        timed(get)
        times = []
        for _ in range(rounds):
            dt, _ = timed(path)
            times.append(dt)
            bt, _ = timed(get)
            base_times.append(bt)
        all_search += times
        med = statistics.median(times)
        if med > worst_med:
            worst_kind, worst_med = name, med
        lines.append(f"{name} {med:.2f} {max(times):.2f} {n}")
    ov = []
    for i in range(rounds + 1):
        dt, j = timed(f"/console/api/projects/{PROJECT}/overview")
        if i > 0:
            ov.append(dt)
    for line in lines:
        print(line)
    print(f"overview {statistics.median(ov):.2f}")
    print(f"{statistics.median(all_search):.2f} {max(all_search):.2f} "
          f"{statistics.median(base_times):.2f} {worst_kind}")


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
