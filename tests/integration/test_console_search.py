"""The console's fleet data through latchkeyd (issue 18; docs/console.md "Finding devices").

A registry of 3,000 devices made with `latchkey devices import` (blocked ones, gateways, credentials
expiring at many dates), then the broker's records (presence, activity times) and older creation times
written into the registry file with sqlite3, as the broker plugin writes them. A viewer service account
(bearer JWT) reads:
  - GET /console/api/projects/P/overview: each registry's counts, as counted here;
  - GET .../registries/R/devices: each filter alone and combined, paged through to the end with no
    duplicate and no gap, in id order, each device's fields;
  - refusals: every bad parameter (400, with what is wrong), another project (403), no credentials
    (401), an unknown registry (404), a method other than GET.
The expected answers are computed here from the data the test wrote, not by latchkey.
"""
import datetime
import json
import os
import sqlite3
import time

import pytest

from api_common import Api, Daemon, P, L, R, es256_key, ok, refused, service_account
from conftest import run_tool

N = 3000
NOW = int(time.time())
DAY, HOUR = 86400, 3600
CONSOLE = "/console/api/projects"


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def model(i):
    """Device i's attributes (i is the order of import, not the id order). Times are half an hour
    or half a day off every boundary the filters draw, so the test does not race the clock."""
    d = {
        "id": f"dev-{(i * 7919) % N:05d}",
        "blocked": i % 13 == 0,
        "gateway": i % 11 == 0,
        "presence": 1 if i % 7 == 0 else 2 if i % 7 in (1, 2) else 0,
        "created": NOW - 30 * DAY if i % 5 else NOW - 1800,
        "heartbeat": 0 if i % 3 == 0 else NOW - (i % 100) * HOUR - 1800,
        "event": NOW - (i % 50) * 60 - 30 if i % 4 == 0 else 0,
        "expiry": 0 if i % 4 == 0 else NOW + ((i % 60) - 10) * DAY + DAY // 2,
    }
    d["activity"] = max(d["heartbeat"], d["event"], d["created"])
    return d


DEVICES = sorted((model(i) for i in range(N)), key=lambda d: d["id"].encode())
PRESENCE = {"never": 0, "online": 1, "offline": 2}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    base = tmp_path_factory.mktemp("console")
    daemon = Daemon(base / "lkd", start=False)
    db = daemon.db
    for project, reg in ((P, R), (P, "reg-empty"), ("proj-two", R)):
        r = run_tool("--db", db, "registries", "create", reg, "--project", project, "--region", L)
        assert r.rc == 0, r
    _, pem = es256_key()
    lines = []
    for i in range(N):
        d = model(i)
        c = {"publicKey": {"format": "ES256_PEM", "key": pem}}
        if d["expiry"]:
            c["expirationTime"] = rfc3339(d["expiry"])
        o = {"id": d["id"], "blocked": d["blocked"], "credentials": [c]}
        if d["gateway"]:
            o["gatewayConfig"] = {"gatewayType": "GATEWAY", "gatewayAuthMethod": "ASSOCIATION_ONLY"}
        lines.append(json.dumps(o))
    r = run_tool("--db", db, "devices", "import", "-", "--registry", R, "--project", P, "--region", L,
                 input="\n".join(lines) + "\n")
    assert r.rc == 0, r
    # The other project's registry has devices too: they must never show in P's answers.
    r = run_tool("--db", db, "devices", "import", "-", "--registry", R, "--project", "proj-two",
                 "--region", L, input="\n".join(lines[:50]) + "\n")
    assert r.rc == 0, r
    # What the broker records (presence, activity), and older creation times.
    con = sqlite3.connect(db)
    con.executemany(
        "UPDATE devices SET presence = ?, presence_time = ?, created = ?, last_heartbeat = ?, "
        "last_event = ? WHERE device_id = ? AND registry = "
        "(SELECT id FROM registries WHERE project = ? AND registry_id = ?)",
        [(d["presence"], NOW if d["presence"] else 0, d["created"], d["heartbeat"], d["event"], d["id"],
          P, R) for d in DEVICES])
    con.commit()
    con.close()
    daemon.start()
    viewer = Api(daemon, service_account(daemon, "console-viewer", "viewer"))
    other = Api(daemon, service_account(daemon, "other-viewer", "viewer", project="proj-two"))
    yield daemon, viewer, other
    daemon.stop()


def search_path(reg=R, project=P, loc=L):
    return f"{CONSOLE}/{project}/locations/{loc}/registries/{reg}/devices"


def walk(api, query, page_size=200):
    """Every page: the devices in order, each page but the last full."""
    got, token, pages = [], None, 0
    while True:
        q = dict(query, pageSize=page_size)
        if token:
            q["pageToken"] = token
        body = ok(api.get(search_path(), query=q))
        pages += 1
        got += body["devices"]
        token = body.get("nextPageToken")
        if not token:
            return got, pages
        assert len(body["devices"]) == page_size, body


def expect(prefix=None, state=(), silent=None, expiring=None):
    out = []
    for d in DEVICES:
        if prefix and not d["id"].startswith(prefix):
            continue
        if any(s in PRESENCE and d["presence"] != PRESENCE[s] for s in state):
            continue
        if "blocked" in state and not d["blocked"]:
            continue
        if "gateway" in state and not d["gateway"]:
            continue
        if silent is not None and not d["activity"] < NOW - silent * HOUR:
            continue
        if expiring is not None and not (d["expiry"] and d["expiry"] <= NOW + expiring * DAY):
            continue
        out.append(d["id"])
    return out


def test_overview(fleet):
    daemon, viewer, other = fleet
    body = ok(viewer.get(f"{CONSOLE}/{P}/overview"))
    regs = {r["name"]: r for r in body["registries"]}
    assert list(regs) == [f"projects/{P}/locations/{L}/registries/{R}",
                          f"projects/{P}/locations/{L}/registries/reg-empty"]
    r = regs[f"projects/{P}/locations/{L}/registries/{R}"]
    assert r == {"name": r["name"], "devices": N,
                 "online": sum(d["presence"] == 1 for d in DEVICES),
                 "offline": sum(d["presence"] == 2 for d in DEVICES),
                 "neverSeen": sum(d["presence"] == 0 for d in DEVICES),
                 "blocked": sum(d["blocked"] for d in DEVICES)}
    e = regs[f"projects/{P}/locations/{L}/registries/reg-empty"]
    assert (e["devices"], e["online"], e["offline"], e["neverSeen"], e["blocked"]) == (0, 0, 0, 0, 0)
    two = ok(other.get(f"{CONSOLE}/proj-two/overview"))["registries"]
    assert [x["devices"] for x in two] == [50]


@pytest.mark.parametrize("query", [
    {},
    {"q": "dev-01"},
    {"q": "dev-0123"},
    {"q": "nothing"},
    {"state": "online"},
    {"state": "offline"},
    {"state": "never"},
    {"state": "blocked"},
    {"state": "gateway"},
    {"silentHours": "1"},
    {"silentHours": "90"},
    {"expiringDays": "0"},
    {"expiringDays": "30"},
    {"state": "online,gateway"},
    {"state": "blocked,never", "q": "dev-0"},
    {"state": "offline", "silentHours": "24", "expiringDays": "3650"},
    {"state": "gateway,blocked", "expiringDays": "20", "q": "dev-"},
])
def test_filters(fleet, query):
    daemon, viewer, _ = fleet
    want = expect(query.get("q"), tuple(query.get("state", "").split(",")) if "state" in query else (),
                  int(query["silentHours"]) if "silentHours" in query else None,
                  int(query["expiringDays"]) if "expiringDays" in query else None)
    got, pages = walk(viewer, query)
    ids = [d["id"] for d in got]
    assert ids == want, (query, len(ids), len(want))
    assert pages == max(1, -(-len(want) // 200))


def test_paging_small_pages_and_fields(fleet):
    daemon, viewer, _ = fleet
    got, pages = walk(viewer, {"q": "dev-000"}, page_size=7)
    ids = [d["id"] for d in got]
    assert ids == expect("dev-000") and len(set(ids)) == len(ids) == 100 and pages == 15
    # The default page is 50.
    body = ok(viewer.get(search_path()))
    assert len(body["devices"]) == 50 and body["nextPageToken"]
    by_id = {d["id"]: d for d in DEVICES}
    for dev in got:
        m = by_id[dev["id"]]
        assert dev["blocked"] is m["blocked"] and dev["gateway"] is m["gateway"]
        assert dev["presence"] == ["never", "online", "offline"][m["presence"]]
        assert int(dev["numId"]) > 0
        assert dev.get("lastHeartbeatTime") == (rfc3339(m["heartbeat"]) if m["heartbeat"] else None)
        assert dev.get("lastEventTime") == (rfc3339(m["event"]) if m["event"] else None)
        assert dev.get("credentialExpiry") == (rfc3339(m["expiry"]) if m["expiry"] else None)
        assert "lastStateTime" not in dev and "lastErrorTime" not in dev


@pytest.mark.parametrize("query,words", [
    ({"pageSize": "201"}, ["pageSize"]),
    ({"pageSize": "-1"}, ["pageSize"]),
    ({"pageSize": "ten"}, ["pageSize"]),
    ({"state": "sleeping"}, ["sleeping", "online, offline, never, blocked, gateway"]),
    ({"state": "online,offline"}, ["exclude each other"]),
    ({"silentHours": "0"}, ["silentHours"]),
    ({"silentHours": "87601"}, ["silentHours"]),
    ({"silentHours": "1h"}, ["silentHours"]),
    ({"expiringDays": "-1"}, ["expiringDays"]),
    ({"expiringDays": "3651"}, ["expiringDays"]),
    ({"q": "1dev"}, ["q:", "not the start of a device id"]),
    ({"q": "dev 1"}, ["not the start of a device id"]),
    ({"pageToken": "not-a-token"}, ["pageToken"]),
    ({"pageToken": "ZDox"}, ["pageToken"]),   # "d:1": not a device id
    ({"sort": "id"}, ["unknown query parameter", "sort"]),
])
def test_bad_parameters(fleet, query, words):
    _, viewer, _ = fleet
    refused(viewer.get(search_path(), query=query), "INVALID_ARGUMENT", *words)


def test_repeated_parameter(fleet):
    _, viewer, _ = fleet
    refused(viewer.get(search_path() + "?state=online&state=blocked"), "INVALID_ARGUMENT",
            "more than once")


def test_access(fleet):
    daemon, viewer, other = fleet
    refused(other.get(search_path()), "PERMISSION_DENIED", "proj-one")
    refused(other.get(f"{CONSOLE}/{P}/overview"), "PERMISSION_DENIED")
    refused(Api(daemon, None).get(search_path()), "UNAUTHENTICATED")
    refused(Api(daemon, None).get(f"{CONSOLE}/{P}/overview"), "UNAUTHENTICATED")
    refused(viewer.get(search_path(reg="no-such-reg")), "NOT_FOUND", "no-such-reg")
    refused(viewer.post(search_path()), "NOT_FOUND", "takes GET")
    refused(viewer.get(f"{CONSOLE}/{P}/nothing-here"), "NOT_FOUND")
