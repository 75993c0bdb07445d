"""latchkeyd's push subscriptions (docs/daemon.md, "Push subscriptions").

A real latchkeyd with `spool FILE`; the spool is filled through lk_spool_enqueue (tests/shims/spool_fill.c,
as the broker plugin does), and the push endpoints are HTTPS servers in this process (http.server + ssl, a CA
made here). What is checked against is independent of latchkey: Python's json/base64, PyJWT's PyJWKClient for
the OIDC tokens, the endpoint's own record of what it received.
"""
import base64
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from api_common import P, Env, ok, refused
from push_endpoint import ACK_CODES, Endpoint

FILL = Path(os.environ.get("LK_TEST_LIB_DIR", "build/tests")) / "lk_spool_fill"
SUBS = f"/v1/projects/{P}/subscriptions"


# ---- the spool ----

def attrs(num):
    return {"deviceId": f"dev-{num}", "deviceNumId": str(num), "deviceRegistryId": "reg-1",
            "deviceRegistryLocation": "us-central1", "projectId": P, "subFolder": "alerts"}


def fill(spool: Path, subs, topic, n, keys=(101, 102, 103, 104), age_ms=0):
    """n messages on topic queued for subs (names S), published age_ms ago: [(id, key, data, publish_ms)]."""
    now = int(time.time() * 1000) - age_ms
    msgs, lines = [], []
    for i in range(n):
        key = keys[i % len(keys)]
        data = f"message {i} of {key}".encode()
        lines.append("\t".join([",".join(f"projects/{P}/subscriptions/{s}" for s in subs),
                                f"projects/{P}/topics/{topic}", str(key), str(now + i),
                                json.dumps(attrs(key)), data.hex()]))
        msgs.append((key, data, now + i))
    r = subprocess.run([str(FILL), str(spool)], input="\n".join(lines) + "\n", capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    ids = [int(x) for x in r.stdout.split()]
    assert len(ids) == n
    return [(ids[i],) + msgs[i] for i in range(n)]


# ---- the daemon ----

@pytest.fixture
def oidc_key(tmp_path):
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p = tmp_path / "oidc.pem"
    p.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return p


@pytest.fixture
def ep(tmp_path):
    e = Endpoint(tmp_path / "ep")
    yield e
    e.close()


def start(tmp_path, ep, oidc_key=None, extra=()):
    spool = tmp_path / "spool.db"
    args = ["--spool", spool, "--push-ca", ep.ca_path, "--drain-seconds", "2", *extra]
    if oidc_key:
        args += ["--push-oidc-key", oidc_key]
    env = Env(tmp_path / "lkd", extra=args, make_registry=False)
    env.spool = spool
    return env


def create(env, name, endpoint, topic="events", **more):
    body = {"topic": f"projects/{P}/topics/{topic}", "pushConfig": {"pushEndpoint": endpoint},
            "retryPolicy": {"minimumBackoff": "0.1s", "maximumBackoff": "0.4s"}}
    for k, v in more.items():
        if k == "push":
            body["pushConfig"].update(v)
        else:
            body[k] = v
    return env.api.call("PUT", f"{SUBS}/{name}", body)


def stats(env, name):
    return ok(env.api.get(f"{SUBS}/{name}:stats"))


def wait(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out: {what}")


def check_body(body, m, sub, attempt=None):
    mid, key, data, pub = m
    msg = body["message"]
    assert list(body) == ["message", "subscription"] + (["deliveryAttempt"] if attempt else []), body
    assert list(msg) == ["attributes", "data", "messageId", "message_id", "publishTime", "publish_time"], msg
    assert msg["messageId"] == msg["message_id"] == str(mid)
    assert base64.b64decode(msg["data"]) == data
    assert msg["attributes"] == attrs(key)
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(pub // 1000)) + ".%03dZ" % (pub % 1000)
    assert msg["publishTime"] == msg["publish_time"] == t
    assert body["subscription"] == f"projects/{P}/subscriptions/{sub}"


def in_order(received, msgs):
    """The acknowledged deliveries of each device come in the order of their messages."""
    key_of = {m[0]: m[1] for m in msgs}
    last, seen = {}, set()
    for _, _, body, st in received:
        mid = int(body["message"]["messageId"])
        if st not in ACK_CODES or mid in seen:
            continue  # a failure, or a message sent again (at least once): its first 2xx counts
        seen.add(mid)
        k = key_of[mid]
        assert mid > last.get(k, 0), f"device {k}: {mid} after {last.get(k)}"
        last[k] = mid


# ---- tests ----

def test_delivery_retries_timeout_dead_letter_and_bad_certificate(tmp_path, ep):
    bad = Endpoint(tmp_path / "bad", name="other")   # a certificate latchkeyd's push_ca did not sign
    env = start(tmp_path, ep)
    try:
        ep.rules["/flaky"] = lambda k, b: 503 if k < 6 else 200
        ep.rules["/slow"] = lambda k, b: ("sleep", 11, 200) if k == 0 else 204
        ep.rules["/fail"] = lambda k, b: 500
        ok(create(env, "okay", ep.url("/ok")))
        ok(create(env, "flaky", ep.url("/flaky")))
        ok(create(env, "slow", ep.url("/slow"), ackDeadlineSeconds=10))
        ok(create(env, "failing", ep.url("/fail"),
                  deadLetterPolicy={"deadLetterTopic": f"projects/{P}/topics/dead", "maxDeliveryAttempts": 5}))
        ok(create(env, "deadletters", ep.url("/dl"), topic="dead"))
        ok(create(env, "badcert", bad.url("/x")))
        msgs = fill(env.spool, ["okay", "flaky", "slow", "failing", "badcert"], "events", 40, keys=range(101, 111))
        ids = {m[0] for m in msgs}
        by_id = {m[0]: m for m in msgs}

        def acked(path):
            return {int(b["message"]["messageId"]) for p, _, b, st in ep.of(path) if st in ACK_CODES}

        wait(lambda: acked("/ok") == ids and acked("/flaky") == ids and acked("/dl") == ids, 20,
             "ok, flaky and the dead letters")
        for path, sub in (("/ok", "okay"), ("/flaky", "flaky")):
            for _, h, b, _ in ep.of(path):
                check_body(b, by_id[int(b["message"]["messageId"])], sub)
                assert h["Content-Type"] == "application/json"
            in_order(ep.of(path), msgs)
        assert len([g for g in ep.of("/flaky") if g[3] == 503]) == 6
        # dead-lettered after 5 attempts, each carrying deliveryAttempt 1..5
        for mid in ids:
            att = sorted(b["deliveryAttempt"] for _, _, b, _ in ep.of("/fail") if int(b["message"]["messageId"]) == mid)
            assert att == [1, 2, 3, 4, 5], (mid, att)
            check_body(next(b for _, _, b, _ in ep.of("/fail") if int(b["message"]["messageId"]) == mid),
                       by_id[mid], "failing", attempt=True)
        for _, _, b, _ in ep.of("/dl"):
            check_body(b, by_id[int(b["message"]["messageId"])], "deadletters")
        st = stats(env, "failing")
        assert st["deadLettered"] == "40" and st["depth"] == "0", st
        # the timed-out POST is sent again (at least once)
        wait(lambda: acked("/slow") == ids, 20, "the slow endpoint after its timeout")
        assert stats(env, "slow")["depth"] == "0"
        # bad certificate: nothing reached it, nothing acknowledged
        assert bad.got == []
        st = stats(env, "badcert")
        assert st["depth"] == "40" and st["acked"] == "0", st
        st = stats(env, "okay")
        assert st["acked"] == "40" and st["enqueued"] == "40" and st["depth"] == "0", st
        log = env.daemon.log_text()
        assert re.search(r"badcert: \d+ failed attempt.*(SSL|certificate)", log), log[-2000:]
        assert "HTTP 503" in log and "HTTP 500" in log
        # metrics: Prometheus text, to any role's credentials (docs/metrics.md)
        m = env.api.get("/metrics")
        assert m.status == 200, m
        text = m.raw.decode()
        assert f'latchkey_push_queue_depth{{subscription="projects/{P}/subscriptions/badcert"}} 40' in text
        assert f'latchkey_push_acked_total{{subscription="projects/{P}/subscriptions/okay"}} 40' in text
        assert "# TYPE latchkey_push_latency_seconds histogram" in text
    finally:
        bad.close()
        env.stop()


def test_oidc_token_and_static_header(tmp_path, ep, oidc_key):
    env = start(tmp_path, ep, oidc_key)
    try:
        aud = "https://push.example.test/handler"
        email = f"pusher@{P}.iam.latchkey"
        ok(create(env, "oidc", ep.url("/oidc"), push={"oidcToken": {"serviceAccountEmail": email, "audience": aud}}))
        secret = "s3cret-" + os.urandom(8).hex()
        got = ok(create(env, "hdr", ep.url("/hdr"), push={"latchkeyHeader": {"name": "X-Push-Secret", "value": secret}}))
        assert got["pushConfig"]["latchkeyHeader"] == {"name": "X-Push-Secret"}, got
        assert secret not in env.api.get(f"{SUBS}/hdr").raw.decode()
        fill(env.spool, ["oidc", "hdr"], "events", 4)
        wait(lambda: len(ep.of("/oidc")) >= 4 and len(ep.of("/hdr")) >= 4, 10, "both endpoints")
        assert all(h["X-Push-Secret"] == secret for _, h, _, _ in ep.of("/hdr"))
        # the token, checked with PyJWT's JWKS client against latchkeyd's published keys
        https = urllib.request.HTTPSHandler(context=env.daemon.ssl_context())
        urllib.request.install_opener(urllib.request.build_opener(https))
        base = f"https://127.0.0.1:{env.daemon.port}"
        disc = json.loads(urllib.request.urlopen(base + "/.well-known/openid-configuration").read())
        assert disc["issuer"] == base and disc["jwks_uri"] == base + "/oauth2/v3/certs", disc
        assert disc["id_token_signing_alg_values_supported"] == ["RS256"]
        tok = ep.of("/oidc")[0][1]["Authorization"].removeprefix("Bearer ")
        key = jwt.PyJWKClient(disc["jwks_uri"]).get_signing_key_from_jwt(tok)
        claims = jwt.decode(tok, key.key, algorithms=["RS256"], audience=aud, issuer=base)
        assert claims["email"] == claims["sub"] == claims["azp"] == email and claims["email_verified"] is True
        assert claims["exp"] - claims["iat"] == 3600
        assert jwt.get_unverified_header(tok)["typ"] == "JWT"
        with pytest.raises(jwt.InvalidAudienceError):
            jwt.decode(tok, key.key, algorithms=["RS256"], audience="https://elsewhere", issuer=base)
        log = env.daemon.log_text()
        assert secret not in log and tok not in log and tok.split(".")[2] not in log
    finally:
        urllib.request.install_opener(None)
        env.stop()


def test_kill_9_loses_nothing(tmp_path, ep):
    ep.rules["/ok"] = lambda k, b: ("sleep", 0.05, 200)
    env = start(tmp_path, ep)
    ok(create(env, "durable", ep.url("/ok")))
    msgs = fill(env.spool, ["durable"], "events", 300, keys=range(1000, 1010))
    wait(lambda: len(ep.of("/ok")) >= 60, 20, "some deliveries before the kill")
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.proc.wait()
    env.daemon.logf.close()
    before = len(ep.of("/ok"))
    assert before < 300, "everything was delivered before the kill: the test proves nothing"
    env.daemon.start()
    ids = {m[0] for m in msgs}
    wait(lambda: {int(b["message"]["messageId"]) for _, _, b, _ in ep.of("/ok")} >= ids, 30, "all after restart")
    wait(lambda: stats(env, "durable")["depth"] == "0", 5, "an empty queue")
    in_order(ep.of("/ok"), msgs)
    env.stop()


def test_sigterm_lets_posts_in_flight_finish(tmp_path, ep):
    """SIGTERM: the POST in flight finishes and is acknowledged; nothing new is taken; the rest stays queued."""
    ep.rules["/drain"] = lambda k, b: ("sleep", 1.0, 200)
    env = start(tmp_path, ep)
    ok(create(env, "draining", ep.url("/drain")))
    fill(env.spool, ["draining"], "events", 3, keys=(7,))
    wait(lambda: ep.count.get("/drain", 0) >= 1, 10, "the first POST")
    t = time.time()
    env.daemon.stop()                       # SIGTERM; exit code 0 asserted
    assert time.time() - t < 2.5
    assert ep.count["/drain"] == 1
    ep.rules["/drain"] = lambda k, b: 503
    env.daemon.start()
    st = stats(env, "draining")
    assert st["acked"] == "1" and st["depth"] == "2", st
    env.stop()


def test_retention_and_deleted_subscription(tmp_path, ep):
    """Messages older than messageRetentionDuration expire unsent; a deleted subscription's queue goes."""
    ep.rules["/never"] = lambda k, b: 500
    env = start(tmp_path, ep)
    try:
        ok(create(env, "short-lived", ep.url("/never"), messageRetentionDuration="600s"))
        ok(create(env, "doomed", ep.url("/never")))
        time.sleep(1.2)  # the worker has seen both (and made its first expiry pass, on an empty queue)
        fill(env.spool, ["short-lived"], "events", 3, age_ms=3600 * 1000)
        fill(env.spool, ["doomed"], "events", 5)
        wait(lambda: stats(env, "short-lived")["expired"] == "3", 10, "the old messages expired")
        assert stats(env, "short-lived")["depth"] == "0"
        assert not [g for g in ep.of("/never") if g[2]["subscription"].endswith("/short-lived")]
        wait(lambda: ep.count.get("/never", 0) >= 5, 10, "the doomed subscription's attempts")
        ok(env.api.delete(f"{SUBS}/doomed"))
        metric = f'latchkey_push_queue_depth{{subscription="projects/{P}/subscriptions/doomed"}}'
        wait(lambda: metric not in env.api.get("/metrics").raw.decode(), 10, "its queue gone")
        assert "is no longer a subscription: its queue is gone" in env.daemon.log_text()
    finally:
        env.stop()


def test_rest_methods_and_iam(tmp_path, ep):
    env = start(tmp_path, ep)
    try:
        got = ok(create(env, "sub-one", ep.url("/a"), ackDeadlineSeconds=20, messageRetentionDuration="3600s",
                        push={"oidcToken": {"serviceAccountEmail": f"p@{P}.iam.latchkey"}}))
        assert got["name"] == f"projects/{P}/subscriptions/sub-one" and got["topic"] == f"projects/{P}/topics/events"
        assert got["ackDeadlineSeconds"] == 20 and got["messageRetentionDuration"] == "3600s", got
        assert got["retryPolicy"] == {"minimumBackoff": "0.100s", "maximumBackoff": "0.400s"}, got
        assert ok(env.api.get(f"{SUBS}/sub-one")) == got
        refused(create(env, "sub-one", ep.url("/a")), "ALREADY_EXISTS")
        refused(create(env, "sub-two", ep.url("/a"), topic="x"), "INVALID_ARGUMENT")  # topic too short
        refused(env.api.call("PUT", f"{SUBS}/sub-two", {"topic": f"projects/other-proj/topics/events",
                                                        "pushConfig": {"pushEndpoint": ep.url("/a")}}),
                "INVALID_ARGUMENT", "topics")
        refused(create(env, "sub-two", ep.url("/a"), filter="x"), "INVALID_ARGUMENT", "filter")
        refused(create(env, "sub-two", "http://example.com/push"), "INVALID_ARGUMENT")
        refused(env.api.call("PUT", f"{SUBS}/sub-two", {"topic": f"projects/{P}/topics/events"}),
                "INVALID_ARGUMENT", "pushEndpoint")
        refused(env.api.get(f"{SUBS}/nope-sub"), "NOT_FOUND")
        lst = ok(env.api.get(SUBS))
        assert [s["name"] for s in lst["subscriptions"]] == [f"projects/{P}/subscriptions/sub-one"]
        st = stats(env, "sub-one")
        assert st["depth"] == "0" and st["oldestUnackedMessageAge"] == "0s", st
        viewer, other = env.as_role("viewer"), env.as_role("editor", project="proj-two")
        assert ok(viewer.get(f"{SUBS}/sub-one")) == got
        ok(viewer.get(f"{SUBS}/sub-one:stats"))
        refused(viewer.call("PUT", f"{SUBS}/sub-three", {"topic": f"projects/{P}/topics/events",
                                                         "pushConfig": {"pushEndpoint": ep.url("/a")}}),
                "PERMISSION_DENIED")
        refused(viewer.delete(f"{SUBS}/sub-one"), "PERMISSION_DENIED")
        refused(other.get(f"{SUBS}/sub-one"), "PERMISSION_DENIED")
        refused(env.anon.get(SUBS), "UNAUTHENTICATED")
        ok(env.api.delete(f"{SUBS}/sub-one"))
        refused(env.api.get(f"{SUBS}/sub-one"), "NOT_FOUND")
        assert ok(env.api.get(SUBS)) == {"subscriptions": []}
        # no key configured: no JWKS
        assert env.anon.raw_request("GET", "/oauth2/v3/certs").status == 404
    finally:
        env.stop()
