"""The measurements of bench/gateway.sh (which sets up the registry and the broker and passes
everything here through the environment). Prints `name: value` lines on standard output; details
on standard error.

  attach   one `latchkey-device --attach ...` gateway attaching NDEV bound devices, timed at a
           backend by the devices' online messages (the plugin announces each attach it takes):
           (NDEV - 1) / (last - first), ROUNDS times, the median    -> gateway_attach_per_s
  events   NEV devices each sending EVENTS events (QoS 1), counted at a backend subscribed to
           latchkey/P/#, from the first event received to the last: once through one gateway
           agent (--attach the NEV devices, input lines '@DEVICE PAYLOAD' in turn), once as NEV
           agents connected directly; the order alternates every round; the medians of each and
           of the per-round ratios                                  -> gateway_events_per_s,
           direct_events_per_s, gateway_events_vs_direct (goal >= 0.8)
"""
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

E = os.environ
DEVTOOL, HOST, PORT, PLAIN, CA = E["DEVTOOL"], "127.0.0.1", E["PORT"], int(E["PLAIN"]), E["CA"]
STORE, KEY, PROJECT, REGION, REGISTRY = E["STORE"], E["KEY"], E["PROJECT"], E["REGION"], E["REGISTRY"]
SECRET, GW = E["SECRET"], E["GW"]
NDEV, NEV, EVENTS, ROUNDS = int(E["NDEV"]), int(E["NEV"]), int(E["EVENTS"]), int(E["ROUNDS"])
PINC = E.get("PINC", "").split()


def dev(i):
    return f"device-{i:06d}"


def agent(device, *extra, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE):
    """latchkey-device as DEVICE (the shared key), on core 0."""
    return subprocess.Popen([*PINC, DEVTOOL, "--host", HOST, "--port", PORT, "--ca", CA,
                             "--project", PROJECT, "--region", REGION, "--registry", REGISTRY,
                             "--device", device, "--key", KEY, "--store", STORE, *extra],
                            stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr)


def attach_round(sink):
    """NDEV / the time between the first and the last device's online message at the backend
    (the plugin announces each attach it takes), one gateway agent attaching every device."""
    args = []
    for i in range(NDEV):
        args += ["--attach", dev(i)]
    sink.start(lambda m: m.topic.endswith("/online") and "/device-" in m.topic)
    p = agent(GW, "--gateway-rate", "100000", "--quiet", *args, stderr=subprocess.DEVNULL)
    rate, n = sink.wait(NDEV, 120)
    p.terminate()
    p.wait(30)
    if n < NDEV:
        print(f"gateway_run: attach: only {n} of {NDEV} devices attached", file=sys.stderr)
        return None
    time.sleep(1)  # the broker's offline messages for this round
    return rate


class Sink:
    """A backend counting the events of one round (payloads starting with the round's tag)."""

    def __init__(self):
        self.c = mqtt.Client(client_id=f"bench-backend/gw-{os.getpid()}", protocol=mqtt.MQTTv311)
        self.c.username_pw_set("backend:bench-backend", SECRET)
        self.lock = threading.Condition()
        self.match = None
        self.times = []
        self.c.on_message = self.on_message
        self.c.connect("127.0.0.1", PLAIN)
        self.c.loop_start()
        # QoS 0 and a deep queue (gateway.sh): Mosquitto drops QoS 1 messages beyond
        # max_queued_messages for a subscriber slower than the devices
        r, _ = self.c.subscribe(f"latchkey/{PROJECT}/#", 0)
        assert r == 0
        time.sleep(0.5)

    def on_message(self, c, u, m):
        if self.match is not None and self.match(m):
            with self.lock:
                self.times.append(time.monotonic())
                self.lock.notify_all()

    def start(self, match):
        with self.lock:
            self.match, self.times = match, []

    def wait(self, n, timeout, quiet_s=10):
        """Until n arrived, timeout passed, or nothing arrived for quiet_s."""
        deadline = time.time() + timeout
        with self.lock:
            seen, last = 0, time.time()
            while len(self.times) < n and time.time() < deadline and time.time() - last < quiet_s:
                self.lock.wait(0.2)
                if len(self.times) != seen:
                    seen, last = len(self.times), time.time()
            t = list(self.times)
        if len(t) < 2 or t[-1] == t[0]:
            return None, len(t)
        return (len(t) - 1) / (t[-1] - t[0]), len(t)


def events_round(sink, mode, r, tmp):
    tag = f"r{r}-{mode}-".encode()
    sink.start(lambda m: m.payload.startswith(tag))
    total = NEV * EVENTS
    procs = []
    if mode == "gateway":
        path = os.path.join(tmp, f"gw-{r}.txt")
        with open(path, "w") as f:
            for k in range(EVENTS):
                for i in range(NEV):
                    f.write(f"@{dev(i)} {tag.decode()}{i}-{k}\n")
        args = []
        for i in range(NEV):
            args += ["--attach", dev(i)]
        procs.append(agent(GW, *args, "--events", path, "--exit-on-eof", "--quiet",
                           "--max-rate", "10000", "--gateway-rate", "100000",
                           stderr=open(os.path.join(tmp, f"gw-{r}.err"), "w")))
    else:
        for i in range(NEV):
            path = os.path.join(tmp, f"d{i}-{r}.txt")
            with open(path, "w") as f:
                for k in range(EVENTS):
                    f.write(f"{tag.decode()}{i}-{k}\n")
            procs.append(agent(dev(i), "--events", path, "--exit-on-eof", "--quiet",
                               "--max-rate", "10000",
                               stderr=open(os.path.join(tmp, f"d{i}-{r}.err"), "w")))
    rate, n = sink.wait(total, 120)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    if n < total:
        print(f"gateway_run: {mode}: {n} of {total} events arrived", file=sys.stderr)
        for name in sorted(os.listdir(tmp)):
            if name.endswith(f"-{r}.err"):
                with open(os.path.join(tmp, name)) as f:
                    text = f.read().strip()
                if text:
                    print(f"gateway_run: {name}: {text[-500:]}", file=sys.stderr)
    return rate


def main():
    what = sys.argv[1]
    sink = Sink()
    if what == "attach":
        rates = [x for x in (attach_round(sink) for _ in range(ROUNDS)) if x is not None]
        print(f"gateway_run: attaches/s per round: {[round(x) for x in rates]}", file=sys.stderr)
        print(f"gateway_attach_per_s: {statistics.median(rates):.0f}" if rates
              else "gateway_attach_per_s: never")
        return
    gw, direct, ratios = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ROUNDS):
            order = ("gateway", "direct") if r % 2 == 0 else ("direct", "gateway")
            got = {m: events_round(sink, m, r, tmp) for m in order}
            if got["gateway"] and got["direct"]:
                gw.append(got["gateway"])
                direct.append(got["direct"])
                ratios.append(got["gateway"] / got["direct"])
    print(f"gateway_run: events/s gateway {[round(x) for x in gw]}, direct {[round(x) for x in direct]}",
          file=sys.stderr)
    if not ratios:
        print("gateway_events_vs_direct: never")
        return
    print(f"gateway_events_per_s: {statistics.median(gw):.0f}")
    print(f"direct_events_per_s: {statistics.median(direct):.0f}")
    print(f"gateway_events_vs_direct: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
