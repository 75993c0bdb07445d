"""Shared subscriptions for backends (docs/plugin.md, "Shared subscriptions"): $share/GROUP/FILTER
is judged on FILTER as a plain subscription is; members of a group each get part and together all
of the events, one device's events in order and to one member while the live members stay the
same; a member killed with kill -9 gets, when it comes back with its client id, what it had been
sent and had not acknowledged, and the others get everything after; with every member offline
the messages wait in their sessions (Mosquitto's own dealing) and arrive on reconnect.

The members that are killed are separate processes (MEMBER below, paho, MQTT 3.1.1 with a
persistent session): each writes every message to a file before paho acknowledges it (paho 1.6
sends the PUBACK after on_message returns), so "written" covers "acknowledged".
"""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from broker import Broker
from plugin_common import PROJECT, backend_secret, close, connect, log_line, make_device

P = PROJECT
N_DEVICES = 20
N_EVENTS = 10_000          # in all, N_EVENTS / N_DEVICES per device

MEMBER = r"""
import sys, paho.mqtt.client as mqtt
host, port, cid, user, secret, filt, out = sys.argv[1:8]
f = open(out, "a", buffering=1)
f.write("START\n")
c = mqtt.Client(client_id=cid, clean_session=False, protocol=mqtt.MQTTv311)
c.username_pw_set(user, secret)
c.max_inflight_messages_set(20)
def on_connect(cl, ud, flags, rc):
    if rc:
        f.write(f"REFUSED {rc}\n"); sys.exit(1)
    cl.subscribe(filt, 1)
def on_subscribe(cl, ud, mid, granted):
    f.write(f"SUBACK {granted[0]}\n")
def on_message(cl, ud, m):
    f.write(f"M {m.topic} {m.payload.decode()}\n")
c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
c.connect(host, int(port), 60)
c.loop_forever()
"""


@pytest.fixture(scope="module")
def b(tmp_path_factory):
    # The shipped configuration's queue sizes (service/plugin/deploy): Mosquitto's default
    # max_queued_messages 1000 would drop a slow member's surplus.
    br = Broker(tmp_path_factory.mktemp("share"), opts={"messages_per_second": 1000000},
                extra_conf="max_queued_messages 1000000\nmax_inflight_messages 20\n")
    yield br
    br.stop()


@pytest.fixture(scope="module")
def devices(b):
    return [make_device(b, f"share-dev-{i}") for i in range(N_DEVICES)]


def events_filter():
    return f"latchkey/{P}/+/+/+/events/#"


class Member:
    """A member process: client id cid of backend name, in group."""

    def __init__(self, b, tmp, name, secret, cid, group):
        self.b, self.out = b, tmp / f"{cid.replace('/', '_')}.log"
        self.args = [sys.executable, "-c", MEMBER, b.host, str(b.plain_port), cid,
                     f"backend:{name}", secret, f"$share/{group}/{events_filter()}", str(self.out)]
        self.proc = None

    def start(self, timeout=10):
        n = self.text().count("SUBACK")
        self.proc = subprocess.Popen(self.args)
        deadline = time.time() + timeout
        while self.text().count("SUBACK") == n:
            assert time.time() < deadline, f"no SUBACK: {self.text()[-500:]}"
            assert self.proc.poll() is None, self.text()[-500:]
            time.sleep(0.02)
        assert [l for l in self.text().splitlines() if l.startswith("SUBACK")][-1] == "SUBACK 1"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    def text(self):
        return self.out.read_text() if self.out.exists() else ""

    def got(self):
        return [line.split(" ", 2)[1:] for line in self.text().splitlines() if line.startswith("M ")]


def publish_all(b, devices, n_per_device, tag, after=None):
    """Each device publishes n_per_device QoS 1 events "TAG:DEV:SEQ" at once (one thread each);
    after(k) is called by device 0 after its k-th event. Returns the payloads by topic."""
    sent = {}
    errors = []

    def run(d, idx):
        c = connect(b, d.client_id, d.token(), tls=False)
        c.max_inflight_messages_set(100)
        try:
            infos = []
            for s in range(n_per_device):
                infos.append(c.publish(d.topic("events"), f"{tag}:{idx}:{s:05d}".encode(), qos=1))
                if after and idx == 0:
                    after(s)
            for i in infos:
                i.wait_for_publish(60)
                if not i.is_published():
                    errors.append(f"{d.id}: not acknowledged")
                    break
        finally:
            close(c)

    threads = [threading.Thread(target=run, args=(d, i)) for i, d in enumerate(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    for i, d in enumerate(devices):
        sent[d.downstream("events")] = [f"{tag}:{i}:{s:05d}" for s in range(n_per_device)]
    return sent


def by_topic(pairs, tag):
    out = {}
    for topic, payload in pairs:
        if payload.startswith(tag + ":"):
            out.setdefault(topic, []).append(payload)
    return out


def assert_in_order(per_topic, who):
    for topic, payloads in per_topic.items():
        assert payloads == sorted(payloads), f"{who}: {topic} out of order"


# ---- the access check ----

def test_share_judged_as_the_filter_behind_it(b):
    secret = backend_secret(b, "share-acl")
    c = connect(b, "share-acl", secret, username="backend:share-acl", tls=False)
    try:
        assert b.subscribe(c, f"$share/g1/{events_filter()}", 1) == 1
        assert b.subscribe(c, f"$share/g2/latchkey/{P}/+/+/+/state", 1) == 1
        # another project's topics, as a plain subscription would be
        assert b.subscribe(c, "$share/g3/latchkey/other-project/#", 1) == 0x80
        assert b.subscribe(c, "$share/g3/#", 1) == 0x80
        assert b.subscribe(c, "$share/g3/latchkey/+/#", 1) == 0x80
        # malformed: refused, with the reason in the log
        mark = len(b.log_text())
        assert b.subscribe(c, f"$share//latchkey/{P}/#", 1) == 0x80
        assert log_line(b, "share-acl", "refused", "group name", "empty", after=mark)
        assert b.subscribe(c, f"$share/+/latchkey/{P}/#", 1) == 0x80
        assert log_line(b, "share-acl", "refused", "'+' or '#'", after=mark)
        assert b.subscribe(c, "$share/g4", 1) == 0x80
        assert log_line(b, "share-acl", "refused", "$share/GROUP/FILTER", after=mark)
    finally:
        close(c)


def test_devices_cannot_share(b, devices):
    d = devices[0]
    c = connect(b, d.client_id, d.token(), tls=False)
    try:
        assert b.subscribe(c, f"$share/g/latchkey/{P}/#", 1) == 0x80
        assert b.subscribe(c, f"$share/g/{d.topic('config')}", 1) == 0x80
    finally:
        close(c)


def test_overlapping_share_and_plain_refused(b):
    """One client id may not hold a share and another subscription that overlaps it: a READ check
    does not say which of its subscriptions it is for (docs/plugin.md)."""
    secret = backend_secret(b, "share-ovl")
    c = connect(b, "share-ovl", secret, username="backend:share-ovl", tls=False)
    try:
        assert b.subscribe(c, f"$share/g/{events_filter()}", 1) == 1
        mark = len(b.log_text())
        assert b.subscribe(c, f"latchkey/{P}/#", 1) == 0x80
        assert log_line(b, "share-ovl", "refused", "overlaps", after=mark)
        assert b.subscribe(c, f"latchkey/{P}/l/r/d/events", 1) == 0x80
        assert b.subscribe(c, f"$share/h/latchkey/{P}/+/r/#", 1) == 0x80
        assert b.subscribe(c, f"latchkey/{P}/+/+/+/online", 1) == 1     # no overlap
        # plain first, then an overlapping share: refused too
        assert b.subscribe(c, f"$share/h/latchkey/{P}/+/+/+/+", 1) == 0x80
        c.unsubscribe(f"$share/g/{events_filter()}")
        time.sleep(0.3)
        assert b.subscribe(c, f"latchkey/{P}/l/r/d/events", 1) == 1
    finally:
        close(c)
    # a clean start forgets it all
    c = connect(b, "share-ovl", secret, username="backend:share-ovl", tls=False)
    try:
        assert b.subscribe(c, f"$share/g/latchkey/{P}/#", 1) == 1
    finally:
        close(c)


def test_share_limit_per_client(b):
    secret = backend_secret(b, "share-lim")
    c = connect(b, "share-lim", secret, username="backend:share-lim", tls=False)
    try:
        for i in range(16):
            assert b.subscribe(c, f"$share/g/latchkey/{P}/l{i}/#", 1) == 1
        mark = len(b.log_text())
        assert b.subscribe(c, f"$share/g/latchkey/{P}/l16/#", 1) == 0x80
        assert log_line(b, "share-lim", "refused", "plugin_opt_share_max_per_client", after=mark)
    finally:
        close(c)


# ---- dealing ----

def test_two_members_share_all_events(b, devices):
    """NAME/a and NAME/b in one group each get part and together exactly all N_EVENTS (the
    plugin denies Mosquitto's own copy, so none twice), each device's events to one member and in
    order; a plain subscriber beside them still gets every event."""
    secret = backend_secret(b, "share-two")
    plain_secret = backend_secret(b, "share-plain")
    a = connect(b, "share-two/a", secret, username="backend:share-two", tls=False,
                clean_session=False)
    m2 = connect(b, "share-two/b", secret, username="backend:share-two", tls=False,
                 clean_session=False)
    plain = connect(b, "share-plain", plain_secret, username="backend:share-plain", tls=False)
    try:
        assert b.subscribe(a, f"$share/work/{events_filter()}", 1) == 1
        assert b.subscribe(m2, f"$share/work/{events_filter()}", 1) == 1
        assert b.subscribe(plain, f"latchkey/{P}/#", 1) == 1
        t0 = time.time()
        sent = publish_all(b, devices, N_EVENTS // N_DEVICES, "two")
        pairs = lambda c: [(m.topic, m.payload.decode()) for m in list(c.messages)]  # noqa: E731
        deadline = time.time() + 30
        while time.time() < deadline:
            n = sum(len(v) for v in by_topic(pairs(a), "two").values()) + \
                sum(len(v) for v in by_topic(pairs(m2), "two").values())
            if n >= N_EVENTS:
                break
            time.sleep(0.1)
        elapsed = time.time() - t0
        time.sleep(0.5)             # any duplicate would arrive now
        ga, gb = by_topic(pairs(a), "two"), by_topic(pairs(m2), "two")
        na, nb = sum(map(len, ga.values())), sum(map(len, gb.values()))
        print(f"\n{N_EVENTS} events in {elapsed:.1f} s: {na} to a, {nb} to b")
        assert na and nb, (na, nb)
        assert na + nb == N_EVENTS, f"{na} + {nb} != {N_EVENTS}"
        for topic, want in sent.items():
            assert not (topic in ga and topic in gb), f"{topic} dealt to both members"
            assert sorted(ga.get(topic, []) + gb.get(topic, [])) == want
        assert_in_order(ga, "a")
        assert_in_order(gb, "b")
        deadline = time.time() + 30
        while sum(map(len, by_topic(pairs(plain), "two").values())) < N_EVENTS \
                and time.time() < deadline:
            time.sleep(0.1)
        gp = by_topic(pairs(plain), "two")
        missing = {t: len(set(v) - set(gp.get(t, []))) for t, v in sent.items()}
        assert gp == sent, f"the plain subscriber missed events: {missing}"
    finally:
        for c in (a, m2, plain):
            close(c)


def test_mqtt5_copy_has_the_attributes(b, devices):
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    secret = backend_secret(b, "share-v5")
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    c = connect(b, "share-v5", secret, username="backend:share-v5", tls=False,
                protocol=mqtt.MQTTv5, properties=props)
    try:
        assert b.subscribe(c, f"$share/v5/{events_filter()}", 1) == 1
        d = devices[1]
        dc = connect(b, d.client_id, d.token(), tls=False)
        dc.publish(d.topic("events") + "/sub/folder", b"v5", qos=1).wait_for_publish(5)
        close(dc)
        msgs = Broker.wait_messages(c, 1, timeout=5)
        assert msgs and msgs[0].payload == b"v5" and msgs[0].qos == 1
        assert msgs[0].topic == d.downstream("events", "sub/folder")
        up = dict(msgs[0].properties.UserProperty)
        assert up == {"deviceId": d.id, "deviceNumId": str(d.num_id),
                      "deviceRegistryLocation": d.region, "deviceRegistryId": d.registry,
                      "projectId": d.project, "subFolder": "sub/folder"}, up
        time.sleep(0.3)
        assert len(c.messages) == 1
    finally:
        close(c)


def test_member_killed_mid_stream(b, devices, tmp_path):
    """kill -9 of one member in the middle: the other gets everything after; the killed one,
    back with its client id, gets what it had been sent and not acknowledged; together all."""
    secret = backend_secret(b, "share-kill")
    ma = Member(b, tmp_path, "share-kill", secret, "share-kill/a", "k")
    mb = Member(b, tmp_path, "share-kill", secret, "share-kill/b", "k")
    ma.start()
    mb.start()
    per = N_EVENTS // N_DEVICES
    killed = threading.Event()
    publishing = threading.Event()

    def killer():
        # in the middle: once a has written a tenth of the events
        while publishing.is_set() or not killed.is_set():
            if len(ma.got()) >= N_EVENTS // 10:
                ma.kill()
                killed.set()
                return
            if not publishing.is_set() and killed.is_set():
                return
            time.sleep(0.01)

    try:
        publishing.set()
        k = threading.Thread(target=killer, daemon=True)
        k.start()
        sent = publish_all(b, devices, per, "kill")
        publishing.clear()
        k.join(10)
        assert killed.is_set(), "a never got a tenth of the events"
        first_a = by_topic(ma.got(), "kill")
        time.sleep(1)
        ma.start()                               # the same client id, its session resumes
        want = sum(len(v) for v in sent.values())
        deadline = time.time() + 30
        while time.time() < deadline:
            got = set(p for _, p in ma.got() + mb.got() if p.startswith("kill:"))
            if len(got) >= want:
                break
            time.sleep(0.1)
        ga, gb = by_topic(ma.got(), "kill"), by_topic(mb.got(), "kill")
        union = {t: sorted(set(ga.get(t, []) + gb.get(t, []))) for t in sent}
        missing = sum(len(set(sent[t]) - set(union[t])) for t in sent)
        assert missing == 0, f"{missing} events lost"
        na1 = sum(map(len, first_a.values()))
        na, nb = sum(map(len, ga.values())), sum(map(len, gb.values()))
        pa = [p for v in ga.values() for p in v]
        pb = set(p for v in gb.values() for p in v)
        print(f"\nkill: a got {na1} before the kill, {na - na1} after coming back; b got {nb}; "
              f"{na + nb - want} duplicates ({len(pa) - len(set(pa))} within a: processed, not yet "
              f"acknowledged; {len(set(pa) & pb)} in both)")
        # the plugin's dealing never gives one event to both members
        assert not set(pa) & pb
        assert na > na1, "a got nothing back: nothing was pending for it?"
        assert na1 and nb > want // 2
        assert_in_order(gb, "b")
        # a's redelivered events come again after what it had written: in order, once each
        assert_in_order({t: list(dict.fromkeys(v)) for t, v in ga.items()}, "a")
    finally:
        ma.stop()
        mb.stop()


def test_all_members_offline_messages_wait(b, devices, tmp_path):
    """With no live member Mosquitto's dealing stands: each offline member's share waits in its
    session and arrives when it comes back."""
    secret = backend_secret(b, "share-off")
    ma = Member(b, tmp_path, "share-off", secret, "share-off/a", "o")
    mb = Member(b, tmp_path, "share-off", secret, "share-off/b", "o")
    ma.start()
    mb.start()
    ma.stop()
    mb.stop()
    time.sleep(0.3)
    sent = publish_all(b, devices[:4], 50, "off")
    try:
        ma.start()
        mb.start()
        want = sum(len(v) for v in sent.values())
        deadline = time.time() + 10
        while time.time() < deadline:
            if len(set(p for _, p in ma.got() + mb.got() if p.startswith("off:"))) >= want:
                break
            time.sleep(0.1)
        ga, gb = by_topic(ma.got(), "off"), by_topic(mb.got(), "off")
        na, nb = sum(map(len, ga.values())), sum(map(len, gb.values()))
        assert na and nb, (na, nb)
        for t in sent:
            assert sorted(set(ga.get(t, []) + gb.get(t, []))) == sent[t]
        assert_in_order(ga, "a")
        assert_in_order(gb, "b")
    finally:
        ma.stop()
        mb.stop()


def test_membership_changes_move_only_what_they_must(b, devices):
    """Rendezvous hashing: the same live members deal each device to the same member every time;
    a member that unsubscribes (or disconnects) leaves its devices to the others, and nothing goes
    to it any more; when it is back, the first split comes back."""
    secret = backend_secret(b, "share-hrw")
    filt = f"$share/hrw/{events_filter()}"
    cs = {k: connect(b, f"share-hrw/{k}", secret, username="backend:share-hrw", tls=False,
                     clean_session=False) for k in "abc"}

    def owners(tag):
        sent = publish_all(b, devices, 5, tag)
        want = sum(map(len, sent.values()))
        deadline = time.time() + 10
        got = {}
        while time.time() < deadline:
            got = {k: by_topic([(m.topic, m.payload.decode()) for m in list(c.messages)], tag)
                   for k, c in cs.items()}
            if sum(len(v) for g in got.values() for v in g.values()) >= want:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        got = {k: by_topic([(m.topic, m.payload.decode()) for m in list(c.messages)], tag)
               for k, c in cs.items()}
        owner = {}
        for k, g in got.items():
            for t, v in g.items():
                assert t not in owner, f"{t} dealt to {owner[t]} and {k}"
                assert v == sent[t], f"{k}: {t} incomplete or out of order"
                owner[t] = k
        assert set(owner) == set(sent)
        return owner

    try:
        for c in cs.values():
            assert b.subscribe(c, filt, 1) == 1
        first = owners("h1")
        assert owners("h2") == first                      # stable
        assert len(set(first.values())) == 3, first       # 20 devices over 3 members
        cs["c"].unsubscribe(filt)
        time.sleep(0.3)
        second = owners("h3")
        assert "c" not in second.values()
        assert all(second[t] == k for t, k in first.items() if k != "c"), "devices of a, b moved"
        assert b.subscribe(cs["c"], filt, 1) == 1
        assert owners("h4") == first                      # the same split again
    finally:
        for c in cs.values():
            close(c)


def test_resumed_session_deals_again_only_after_subscribing(b, devices):
    """A member whose session resumes takes part in the plugin's dealing only after it subscribes
    again in the new connection (its session may be one the broker let expire); until then the
    live member gets everything and the resumed one nothing new."""
    secret = backend_secret(b, "share-res")
    filt = f"$share/res/{events_filter()}"
    a = connect(b, "share-res/a", secret, username="backend:share-res", tls=False,
                clean_session=False)
    m2 = connect(b, "share-res/b", secret, username="backend:share-res", tls=False,
                 clean_session=False)
    try:
        assert b.subscribe(a, filt, 1) == 1
        assert b.subscribe(m2, filt, 1) == 1
        close(a)
        time.sleep(0.3)
        a = connect(b, "share-res/a", secret, username="backend:share-res", tls=False,
                    clean_session=False)             # the session resumes; no SUBSCRIBE
        sent = publish_all(b, devices, 5, "res1")
        want = sum(map(len, sent.values()))
        got_b = Broker.wait_messages(m2, want, timeout=10)
        time.sleep(0.5)
        assert len([m for m in got_b if m.payload.startswith(b"res1:")]) == want
        assert not [m for m in a.messages if m.payload.startswith(b"res1:")]
        assert b.subscribe(a, filt, 1) == 1
        sent = publish_all(b, devices, 5, "res2")
        time.sleep(1)
        na = len([m for m in a.messages if m.payload.startswith(b"res2:")])
        nb = len([m for m in m2.messages if m.payload.startswith(b"res2:")])
        assert na and nb and na + nb == want, (na, nb)
    finally:
        close(a)
        close(m2)


def test_routed_topic_is_shared_alike(b):
    """Events routed by the registry's notification config (latchkey/P/topics/T/...) are dealt to
    a group on that topic as the default topic's are: the plugin deals after routing."""
    from plugin_common import ensure_registry
    reg = ensure_registry(b, "share-routed")
    r = b.lk("registries", "update", reg, "--project", P, "--region", b.region,
             "--event-notification-config", f"topic=projects/{P}/topics/shared-t")
    assert r.rc == 0, r
    devs = [make_device(b, f"share-rdev-{i}", registry=reg) for i in range(6)]
    secret = backend_secret(b, "share-rt")
    filt = f"$share/rt/latchkey/{P}/topics/shared-t/#"
    a = connect(b, "share-rt/a", secret, username="backend:share-rt", tls=False)
    m2 = connect(b, "share-rt/b", secret, username="backend:share-rt", tls=False)
    try:
        assert b.subscribe(a, filt, 1) == 1
        assert b.subscribe(m2, filt, 1) == 1
        sent = publish_all(b, devs, 20, "rt")
        want = sum(map(len, sent.values()))
        deadline = time.time() + 10
        while time.time() < deadline and len(a.messages) + len(m2.messages) < want:
            time.sleep(0.05)
        time.sleep(0.3)
        ga = by_topic([(m.topic, m.payload.decode()) for m in a.messages], "rt")
        gb = by_topic([(m.topic, m.payload.decode()) for m in m2.messages], "rt")
        assert ga and gb
        routed = {f"latchkey/{P}/topics/shared-t/{d.region}/{reg}/{d.id}/events": v
                  for d, v in zip(devs, sent.values())}
        assert sorted(list(ga) + list(gb)) == sorted(routed), (list(ga), list(gb))
        for t, v in {**ga, **gb}.items():
            assert v == routed[t]
    finally:
        close(a)
        close(m2)
