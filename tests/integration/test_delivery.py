"""Delivery to applications end to end (issue 15; docs/delivery.md): a real Mosquitto with latchkey's
plugin (routing by eventNotificationConfigs, the spool written before the PUBACK) and a real latchkeyd
(the push worker) on the same registry and spool files.

Devices are paho MQTT 3.1.1 clients over TLS (broker.py) with QoS 1 that count the PUBACKs they got; an
MQTT backend (paho) sees the routed topics; the push endpoints are HTTPS servers in this process
(http.server + ssl, a CA made here) that record every POST. What is checked against is independent of
latchkey: Python's json and base64, the endpoint's own record, the device's own count of PUBACKs.

The guarantee under test: an event whose PUBACK the device got reaches every push subscription of its
topic (at least once, in order per device), whatever process is killed with SIGKILL meanwhile.
"""
import base64
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import paho.mqtt.client as mqtt

from api_common import DAEMON, Api, Daemon, service_account
from push_endpoint import Endpoint
from broker import PLUGIN, Broker, Refused
from plugin_common import PROJECT as P, REGION as L, REGISTRY as R

SUBS = f"/v1/projects/{P}/subscriptions"


def _contains(path: Path, needle: bytes):
    try:
        return needle in path.read_bytes()
    except OSError:
        return False


# What each case waits for, by what the built programs contain (a branch not merged yet leaves them out).
WAIT_PLUGIN = None if _contains(PLUGIN, b"spool_max_messages") else \
    "waits for i15-plugin: the plugin has no plugin_opt_spool (routing and the spool enqueue)"
WAIT_PUSH = None if _contains(DAEMON, b"push_max_in_flight") else \
    "waits for i15-push (with i15-registry's subscriptions): latchkeyd has no push worker"
needs_all = pytest.mark.skipif(bool(WAIT_PLUGIN or WAIT_PUSH), reason=WAIT_PLUGIN or WAIT_PUSH or "")


def topic(t):
    return f"projects/{P}/topics/{t}"


# ---- the broker, latchkeyd, subscriptions ----

class Stack:
    """The broker (plugin with plugin_opt_spool) and latchkeyd (spool, push_ca) on one registry; registry
    reg-1 routes events by subfolder: alerts -> ev-alerts, metrics -> ev-metrics, anything else (the ""
    config) -> ev-all; states -> states. The per-device message rate is lifted (docs/plugin.md: over it an
    event is dropped, yet MQTT 3.1.1 still PUBACKs it): bursts here are about durability, not quotas."""

    def __init__(self, base: Path, push_ca, routing=True, spool=None):
        self.spool = spool or base / "spool.db"
        self.b = Broker(base / "broker", opts={"spool": self.spool, "activity_flush": 1,
                                                             "messages_per_second": 1000000}, start=False)
        if routing:
            r = self.b.lk("registries", "update", R, "--project", P, "--region", L,
                          "--event-notification-config", f"topic={topic('ev-alerts')},subfolder=alerts",
                          "--event-notification-config", f"topic={topic('ev-metrics')},subfolder=metrics",
                          "--event-notification-config", f"topic={topic('ev-all')}",
                          "--state-pubsub-topic", topic("states"))
            assert r.rc == 0, r
        self.b.start()
        self.d = Daemon(base / "lkd", db=self.b.db, extra=[
            "--spool", self.spool, "--push-ca", push_ca, "--drain-seconds", "2"])
        self.api = Api(self.d, service_account(self.d, "admin-sa", "admin"))

    def subscribe(self, name, t, endpoint, **more):
        body = {"topic": topic(t), "pushConfig": {"pushEndpoint": endpoint},
                "retryPolicy": {"minimumBackoff": "0.1s", "maximumBackoff": "0.4s"}, **more}
        r = self.api.call("PUT", f"{SUBS}/{name}", body)
        assert r.status == 200, (r.status, r.raw)
        return r

    def stats(self, name):
        r = self.api.get(f"{SUBS}/{name}:stats")
        assert r.status == 200, (r.status, r.raw)
        return {k: int(v) if isinstance(v, str) and v.isdigit() else v for k, v in json.loads(r.raw).items()}

    def kill_broker(self):
        self.b.proc.send_signal(signal.SIGKILL)
        self.b.proc.wait()
        self.b.proc = None
        self.b._stderr.close()

    def kill_daemon(self):
        self.d.proc.send_signal(signal.SIGKILL)
        self.d.proc.wait()
        self.d.logf.close()

    def stop(self):
        try:
            if self.d.alive():
                self.d.stop()
        finally:
            self.b.stop()


def wait(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out: {what}")


def pubsub_time(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def check_body(body, dev, data, sub, sub_folder=None, attempt=False):
    """Pub/Sub's push body with IoT Core's attributes."""
    msg = body["message"]
    assert list(body) == ["message", "subscription"] + (["deliveryAttempt"] if attempt else []), body
    assert list(msg) == ["attributes", "data", "messageId", "message_id", "publishTime", "publish_time"], msg
    assert base64.b64decode(msg["data"]) == data
    want = {"deviceId": dev.id, "deviceNumId": str(dev.num_id), "deviceRegistryId": R,
            "deviceRegistryLocation": L, "projectId": P}
    if sub_folder:
        want["subFolder"] = sub_folder
    assert msg["attributes"] == want, msg["attributes"]
    assert msg["messageId"] == msg["message_id"] and msg["messageId"].isdigit()
    assert msg["publishTime"] == msg["publish_time"]
    t = time.mktime(time.strptime(msg["publishTime"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(t - time.time()) < 120, msg["publishTime"]
    assert body["subscription"] == f"projects/{P}/subscriptions/{sub}"


class Device:
    """A device publishing QoS 1 events: it counts its PUBACKs, and after a lost connection connects again
    and resends, in order, every event it has no PUBACK for (what latchkey-device's queue does)."""

    def __init__(self, b: Broker, dev):
        self.b, self.dev = b, dev
        self.acked = set()
        self.lock = threading.Lock()

    def send(self, payloads, sub_folder=None, inflight=20, timeout=60, on_ack=None):
        t = self.dev.topic("events", sub_folder)
        pending = list(payloads)
        deadline = time.time() + timeout
        while pending:
            assert time.time() < deadline, f"{len(pending)} events never acknowledged"
            try:
                c = self.b.connect(self.dev.client_id, self.dev.token())
            except Refused:
                time.sleep(0.2)
                continue
            # paho must not reconnect by itself: a session it reopened behind our back would never
            # acknowledge what was in flight on the killed one, and this loop resends that itself
            c._reconnect_on_failure = False
            mids, early = {}, set()

            def on_publish(cl, ud, mid):
                # paho holds its own lock here: publish() is never called under self.lock
                with self.lock:
                    p = mids.get(mid)
                    if p is None:
                        early.add(mid)   # the PUBACK came before publish() returned its mid
                    else:
                        self.acked.add(p)
                if on_ack:
                    on_ack(len(self.acked))

            c.on_publish = on_publish
            for p in pending:
                while not c.disconnected.is_set() and time.time() < deadline:
                    with self.lock:
                        if sum(1 for m in mids.values() if m not in self.acked) < inflight:
                            break
                    time.sleep(0.002)
                if c.disconnected.is_set() or time.time() >= deadline:
                    break
                mid = c.publish(t, p, qos=1).mid
                with self.lock:
                    mids[mid] = p
                    if mid in early:
                        early.discard(mid)
                        self.acked.add(p)
            while not c.disconnected.is_set() and time.time() < deadline:
                with self.lock:
                    if all(m in self.acked for m in mids.values()):
                        break
                time.sleep(0.01)
            with self.lock:
                pending = [p for p in pending if p not in self.acked]
            self.b.close(c)
        return self


@pytest.fixture
def ep(tmp_path):
    e = Endpoint(tmp_path / "ep")
    yield e
    e.close()


# ---- tests ----

@needs_all
def test_routing_and_push_bodies(tmp_path, ep):
    s = Stack(tmp_path, ep.ca_path)
    try:
        for name, t in (("alerts", "ev-alerts"), ("metrics", "ev-metrics"), ("all", "ev-all"),
                        ("all-too", "ev-all"), ("states", "states")):
            s.subscribe(name, t, ep.url("/" + name))
        secret = s.b.backend("app")
        be = s.b.connect("app", secret, username="backend:app")
        assert s.b.subscribe(be, f"latchkey/{P}/#") == 1
        dev = s.b.device("dev-route")
        d = Device(s.b, dev)
        sent = {"alerts": [b"alert %d" % i for i in range(5)], "metrics": [b"metric %d" % i for i in range(5)],
                "other": [b"other %d" % i for i in range(5)], None: [b"plain %d" % i for i in range(5)]}
        for folder, payloads in sent.items():
            d.send(payloads, sub_folder=folder)
        c = s.b.connect(dev.client_id, dev.token())
        assert c.publish(dev.topic("state"), b"state one", qos=1).rc == 0
        time.sleep(0.3)
        s.b.close(c)

        # the MQTT backend: each event on the routed topic of its topic, the state on states'
        base = f"latchkey/{P}/topics/%s/{L}/{R}/{dev.id}/"
        want = {base % "ev-alerts" + "events/alerts": sent["alerts"],
                base % "ev-metrics" + "events/metrics": sent["metrics"],
                base % "ev-all" + "events/other": sent["other"], base % "ev-all" + "events": sent[None],
                base % "states" + "state": [b"state one"]}
        wait(lambda: len(be.messages) >= 21, 10, "the backend's 21 messages")
        got = {}
        for m in be.messages:
            if m.topic.startswith(f"latchkey/{P}/topics/"):
                got.setdefault(m.topic, []).append(m.payload)
        assert got == want, got
        # nothing went to the default topics
        assert not [m.topic for m in be.messages if m.topic.startswith(f"latchkey/{P}/{L}/")
                    and m.topic.endswith(("/events", "/state", "/alerts", "/metrics", "/other"))]

        # push: each subscription of a topic gets every message of it, in order, Pub/Sub's body
        expect = {"/alerts": (sent["alerts"], "alerts"), "/metrics": (sent["metrics"], "metrics"),
                  "/all": (sent["other"] + sent[None], "all"), "/all-too": (sent["other"] + sent[None], "all-too"),
                  "/states": ([b"state one"], "states")}
        wait(lambda: all(len(ep.acked_data(p)) >= len(v[0]) for p, v in expect.items()), 15, "every push")
        for path, (payloads, sub) in expect.items():
            assert ep.acked_data(path) == payloads, (path, ep.acked_data(path))
            for _, h, body, _ in ep.of(path):
                data = base64.b64decode(body["message"]["data"])
                folder = None
                if path in ("/alerts", "/metrics"):
                    folder = path[1:]
                elif data.startswith(b"other"):
                    folder = "other"
                check_body(body, dev, data, sub, folder)
                assert h["Content-Type"] == "application/json"
        ids = [b["message"]["messageId"] for p in ("/all", "/all-too") for _, _, b, _ in ep.of(p)]
        assert len(set(ids)) == 10, "one message, one id, in every subscription"
        for name in ("alerts", "all", "states"):
            st = s.stats(name)
            assert st["depth"] == 0 and st["acked"] == st["enqueued"] > 0, (name, st)
        be.disconnect()
    finally:
        s.stop()


@needs_all
def test_failing_slow_dead_letter_and_bad_certificate(tmp_path, ep):
    bad = Endpoint(tmp_path / "bad", "other")     # a certificate push_ca did not sign
    s = Stack(tmp_path, ep.ca_path)
    try:
        ep.rules["/flaky"] = lambda k, b: 503 if k < 4 else 200
        ep.rules["/slow"] = lambda k, b: ("sleep", 11, 200) if k == 0 else 204
        ep.rules["/fail"] = lambda k, b: 500
        s.subscribe("flaky", "ev-all", ep.url("/flaky"))
        s.subscribe("slow", "ev-all", ep.url("/slow"), ackDeadlineSeconds=10)
        s.subscribe("failing", "ev-all", ep.url("/fail"),
                    deadLetterPolicy={"deadLetterTopic": topic("dead"), "maxDeliveryAttempts": 5})
        s.subscribe("deadletters", "dead", ep.url("/dl"))
        s.subscribe("badcert", "ev-all", bad.url("/x"))
        dev = s.b.device("dev-fail")
        payloads = [b"event %d" % i for i in range(10)]
        Device(s.b, dev).send(payloads)
        wait(lambda: ep.acked_data("/flaky") == payloads and sorted(ep.acked_data("/dl")) == sorted(payloads),
             20, "the flaky endpoint's and the dead letters")
        assert len([g for g in ep.of("/flaky") if g[3] == 503]) == 4
        for p in payloads:
            att = sorted(b["deliveryAttempt"] for _, _, b, _ in ep.of("/fail")
                         if base64.b64decode(b["message"]["data"]) == p)
            assert att == [1, 2, 3, 4, 5], (p, att)
        assert s.stats("failing")["deadLettered"] == 10
        # the first POST timed out (its late 200 comes last) and was sent again: then all, in order
        wait(lambda: [base64.b64decode(b["message"]["data"]) for _, _, b, st in ep.of("/slow") if st == 204]
             == payloads, 25, "the slow endpoint after its timeout")
        wait(lambda: len(ep.of("/slow")) == 11, 5, "the first POST's late answer")
        assert [base64.b64decode(b["message"]["data"]) for _, _, b, st in ep.of("/slow") if st == 200] == [b"event 0"]
        assert s.stats("slow")["depth"] == 0
        assert bad.got == []
        st = s.stats("badcert")
        assert st["depth"] == 10 and st["acked"] == 0, st
    finally:
        bad.close()
        s.stop()


@needs_all
def test_kill_9_broker_and_latchkeyd_lose_nothing_acknowledged(tmp_path, ep):
    """A burst; the broker is killed with SIGKILL after some PUBACKs and started again, latchkeyd is killed
    while pushing and started again: every event the device saw acknowledged reaches the endpoint."""
    ep.rules["/ok"] = lambda k, b: ("sleep", 0.01, 200)
    s = Stack(tmp_path, ep.ca_path)
    try:
        s.subscribe("durable", "ev-all", ep.url("/ok"))
        dev = s.b.device("dev-burst")
        d = Device(s.b, dev)
        payloads = [b"burst %04d" % i for i in range(600)]
        killed = threading.Event()

        def on_ack(n):
            if n >= 150 and not killed.is_set():
                killed.set()
                threading.Thread(target=restart_broker, daemon=True).start()

        def restart_broker():
            s.kill_broker()
            time.sleep(0.3)
            s.b.start()

        d.send(payloads, on_ack=on_ack, timeout=90)
        assert killed.is_set()
        assert d.acked == set(payloads)
        wait(lambda: len(ep.of("/ok")) >= 50, 20, "some pushes before latchkeyd is killed")
        s.kill_daemon()
        assert len(set(ep.acked_data("/ok"))) < len(payloads), "all pushed before the kill: proves nothing"
        s.d.start()
        wait(lambda: set(ep.acked_data("/ok")) >= d.acked, 60, "every acknowledged event pushed")
        # in order per device: the first acknowledged delivery of each event comes after the previous one's
        firsts = []
        for p in ep.acked_data("/ok"):
            if p not in firsts:
                firsts.append(p)
        assert firsts == sorted(firsts), "out of order"
        wait(lambda: s.stats("durable")["depth"] == 0, 10, "an empty queue")
    finally:
        s.stop()
