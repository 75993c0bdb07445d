#!/usr/bin/python3
"""bench/push.sh's devices for the kill run: D devices (one MQTT 3.1.1 + TLS
connection each, Debian's paho) publish N events in all, QoS 1, up to 20 in
flight each, every event's payload unique ("push-kill DEVICE I" padded to
BYTES). A device whose connection is lost (the broker killed) connects again
and resends, in order, every event it has no PUBACK for, as latchkey-device's
queue does.

    push_kill.py PORT CA DEVICES_FILE PROJECT REGION REGISTRY N BYTES PROGRESS

DEVICES_FILE: lines "DEVICE_ID TOKEN". PROGRESS: rewritten with the number of
PUBACKed events as they come. Prints the number of distinct events PUBACKed
at the end (all N, or it exits 1 after 120 s).
"""
import os
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt


def main(a):
    port, ca, devfile, project, region, registry = a[1], a[2], a[3], a[4], a[5], a[6]
    n, size, progress = int(a[7]), int(a[8]), a[9]
    devs = [line.split() for line in open(devfile) if line.strip()]
    lock = threading.Lock()
    acked = set()
    deadline = time.time() + 120

    def report():
        with open(progress + ".tmp", "w") as f:
            f.write(f"{len(acked)}\n")
        os.replace(progress + ".tmp", progress)

    def device(k, dev, tok, payloads):
        topic = f"/devices/{dev}/events"
        pending = list(payloads)
        while pending and time.time() < deadline:
            c = mqtt.Client(client_id=f"projects/{project}/locations/{region}/registries/{registry}/devices/{dev}",
                            protocol=mqtt.MQTTv311, clean_session=True)
            c.username_pw_set("unused", tok)
            c.tls_set(ca_certs=ca, cert_reqs=ssl.CERT_REQUIRED)
            c.max_inflight_messages_set(20)
            mids, up, down = {}, threading.Event(), threading.Event()

            def on_connect(cl, ud, flags, rc):
                if rc == 0:
                    up.set()
                else:
                    down.set()

            def on_disconnect(cl, ud, rc):
                cl._thread_terminate = True
                down.set()

            early = set()

            def on_publish(cl, ud, mid):
                # paho holds its own lock here: publish() is never called under lock
                with lock:
                    p = mids.get(mid)
                    if p is None:
                        early.add(mid)   # the PUBACK came before publish() returned its mid
                    elif p not in acked:
                        acked.add(p)
                        if len(acked) % 50 == 0:
                            report()

            c.on_connect, c.on_disconnect, c.on_publish = on_connect, on_disconnect, on_publish
            try:
                c.connect("127.0.0.1", int(port), keepalive=60)
            except (OSError, ssl.SSLError):
                time.sleep(0.2)
                continue
            c.loop_start()
            if not up.wait(5) or down.is_set():
                c.loop_stop()
                time.sleep(0.2)
                continue
            for p in pending:
                while not down.is_set():
                    with lock:
                        if sum(1 for m in mids.values() if m not in acked) < 20:
                            break
                    time.sleep(0.001)
                if down.is_set():
                    break
                mid = c.publish(topic, p, qos=1).mid
                with lock:
                    mids[mid] = p
                    if mid in early:
                        early.discard(mid)
                        acked.add(p)
            while not down.is_set() and time.time() < deadline:
                with lock:
                    if all(m in acked for m in mids.values()):
                        break
                time.sleep(0.005)
            with lock:
                pending = [p for p in pending if p not in acked]
            c.disconnect()
            c.loop_stop()

    threads = []
    for k, (dev, tok) in enumerate(devs):
        mine = [(b"push-kill %s %06d " % (dev.encode(), i)).ljust(size, b".") for i in range(k, n, len(devs))]
        t = threading.Thread(target=device, args=(k, dev, tok, mine), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    report()
    if len(acked) != n:
        sys.exit(f"push_kill.py: {len(acked)} of {n} events acknowledged in 120 s")
    print(len(acked))


if __name__ == "__main__":
    main(sys.argv)
