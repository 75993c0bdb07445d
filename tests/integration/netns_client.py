"""Clients for test_broker_limits.py, run inside its network namespace (`ip netns exec NS
python3 netns_client.py MODE ...`; Python 3.11 has no os.setns).

Each mode prints one JSON line with what happened. `bigconnect` and `flood` then keep their
sockets open until a line arrives on standard input (so that the test can measure the broker
while they are held), and close them.

  bigconnect --src A --port P --ca CA --n N --announce BYTES --send BYTES
      N TLS connections from A, each sending a CONNECT fixed header that announces BYTES of
      remaining length, then up to --send bytes of it.
  flood --src A[,B...] --port P --n N [--wait S]
      N plain TCP connections at once from A (and B..., in turn; to ::1 from IPv6 addresses),
      never sending anything: how many were accepted, refused (reset), left unanswered (dropped),
      and how many the broker still holds after S s.
  device --port P --ca CA   (standard input: {"client_id", "token", "topic"})
      a device's MQTT 3.1.1 connection over TLS from 127.0.0.1 with paho: CONNACK code and time,
      then one QoS 1 publish and its PUBACK. The token comes on standard input, not argv.
"""
import argparse
import errno
import json
import select
import socket
import ssl
import sys
import threading
import time
from mqtt_wire import varint


def closed_by_peer(s):
    """True when the peer has closed s (EOF or reset), without consuming data."""
    r, _, _ = select.select([s], [], [], 0)
    if not r:
        return False
    try:
        if isinstance(s, ssl.SSLSocket):  # no MSG_PEEK through TLS; what it reads is not needed
            s.settimeout(0.2)
            return s.recv(1) == b""
        return s.recv(1, socket.MSG_PEEK) == b""
    except (socket.timeout, ssl.SSLWantReadError):
        return False
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True


def hold(result, socks):
    print(json.dumps(result), flush=True)
    sys.stdin.readline()
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def bigconnect(a):
    ctx = ssl.create_default_context(cafile=a.ca)
    socks, per = [], []
    chunk = b"\0" * (1 << 20)
    for _ in range(a.n):
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.bind((a.src, 0))
        raw.settimeout(10)
        raw.connect(("127.0.0.1", a.port))
        s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        socks.append(s)
        sent, err = 0, None
        try:
            s.sendall(b"\x10" + varint(a.announce))
            while sent < a.send:
                n = min(len(chunk), a.send - sent)
                s.sendall(chunk[:n])
                sent += n
        except (OSError, ssl.SSLError) as e:
            err = type(e).__name__
        per.append({"sent": sent, "error": err})
    time.sleep(1.0)  # let the broker read what is in flight
    for p, s in zip(per, socks):
        p["closed"] = p["error"] is not None or closed_by_peer(s)
    hold({"sockets": per, "cut_off": sum(p["closed"] for p in per)}, socks)


def flood(a):
    socks, state = [], {}
    srcs = a.src.split(",")
    for i in range(a.n):
        src = srcs[i % len(srcs)]
        v6 = ":" in src
        s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((src, 0))
        rc = s.connect_ex(("::1" if v6 else "127.0.0.1", a.port))
        socks.append(s)
        state[s] = "pending" if rc in (errno.EINPROGRESS, 0) else "refused"
    deadline = time.time() + a.timeout
    while time.time() < deadline:
        pending = [s for s in socks if state[s] == "pending"]
        if not pending:
            break
        _, w, _ = select.select([], pending, [], max(0.0, deadline - time.time()))
        for s in w:
            e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            state[s] = "accepted" if e == 0 else "refused"
    time.sleep(a.wait)
    accepted = [s for s in socks if state[s] == "accepted"]
    held = [s for s in accepted if not closed_by_peer(s)]
    hold({"attempted": a.n, "accepted": len(accepted), "held": len(held),
          "refused": sum(1 for s in socks if state[s] == "refused"),
          "unanswered": sum(1 for s in socks if state[s] == "pending")}, socks)


def device(a):
    import paho.mqtt.client as mqtt
    req = json.loads(sys.stdin.readline())
    out = {"rc": None, "connect_s": None, "published": False, "error": None}
    got = threading.Event()
    c = mqtt.Client(client_id=req["client_id"], protocol=mqtt.MQTTv311, clean_session=True)
    c.username_pw_set("unused", req["token"])
    c.tls_set(ca_certs=a.ca, cert_reqs=ssl.CERT_REQUIRED)

    def on_connect(cl, ud, flags, rc):
        out["rc"] = rc
        out["connect_s"] = round(time.time() - t0, 3)
        got.set()

    def on_disconnect(cl, ud, rc):
        cl._thread_terminate = True  # no automatic reconnect
        got.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    t0 = time.time()
    try:
        c.connect("127.0.0.1", a.port, keepalive=60)
    except (OSError, ssl.SSLError) as e:
        out["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out), flush=True)
        return
    c.loop_start()
    if not got.wait(10):
        out["error"] = "no CONNACK within 10 s"
    elif out["rc"] is None:
        out["error"] = "the connection was closed before CONNACK"
    elif out["rc"] == 0:
        info = c.publish(req["topic"], b'{"t": 21.5}', qos=1)
        info.wait_for_publish(5)
        out["published"] = info.is_published()
    c.disconnect()
    c.loop_stop()
    print(json.dumps(out), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["bigconnect", "flood", "device"])
    p.add_argument("--src", default="127.0.0.2")
    p.add_argument("--port", type=int, default=8883)
    p.add_argument("--ca")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--announce", type=int, default=200_000_000)
    p.add_argument("--send", type=int, default=0)
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("--wait", type=float, default=1.5)
    a = p.parse_args()
    {"bigconnect": bigconnect, "flood": flood, "device": device}[a.mode](a)


if __name__ == "__main__":
    main()
