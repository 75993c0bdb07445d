#!/usr/bin/python3
"""A backend that takes the place of a Pub/Sub pull subscriber: it acknowledges only what it has processed.

It keeps a persistent MQTT session (clean_session off, a fixed client id), so the broker holds what arrives while it
is away, and it processes each message inside on_message. paho-mqtt sends the PUBACK of a QoS 1 message only
after on_message returns: if processing raises, or the process dies, the message is not acknowledged, and the
broker sends it again when the consumer reconnects with the same client id (flagged as a duplicate).

What it does with a message: one row in a SQLite table, committed before on_message returns. A message that was
committed but whose PUBACK was lost (the process died between the two) comes back as a duplicate; the
(topic, payload digest) of duplicates is checked against the newest rows, so it is stored once.

    pull_consumer.py --host mqtt.example.com --port 8883 --cafile /etc/latchkey/ca.crt \
        --backend analytics --secret-file ~/.config/latchkey/analytics.secret \
        --filter 'latchkey/my-project/#' --db events.db

--group G joins the shared subscription $share/G/FILTER, so that several copies of this program (each with its own
--worker name) share the load.
"""
import argparse
import hashlib
import signal
import sqlite3
import ssl
import sys

import paho.mqtt.client as mqtt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=8883)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--backend", required=True, help="the backend's name (latchkey backends create NAME)")
    ap.add_argument("--secret-file", required=True, help="a file holding the backend's secret")
    ap.add_argument("--worker", default="worker-1", help="this copy's name: the client id is BACKEND/WORKER")
    ap.add_argument("--filter", required=True, help="e.g. latchkey/my-project/#")
    ap.add_argument("--group", help="share the load with the other members of this group")
    ap.add_argument("--db", required=True)
    ap.add_argument("--count", type=int, default=0, help="exit after storing this many messages (0: never)")
    a = ap.parse_args()

    with open(a.secret_file) as f:
        secret = f.read().strip()

    db = sqlite3.connect(a.db)
    db.execute("CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, topic TEXT, digest BLOB, payload BLOB)")
    db.commit()
    stored = 0

    def on_connect(client, userdata, flags, rc):
        if rc != 0:
            print(f"refused: {mqtt.connack_string(rc)}", file=sys.stderr)
            client.disconnect()
            return
        # Subscribing again on every connection is harmless with a persistent session, and it is what tells the
        # broker plugin which members of a group are alive.
        filt = f"$share/{a.group}/{a.filter}" if a.group else a.filter
        client.subscribe(filt, qos=1)

    def on_message(client, userdata, msg):
        nonlocal stored
        digest = hashlib.sha256(msg.topic.encode() + b"\0" + msg.payload).digest()
        if msg.dup:
            seen = db.execute("SELECT 1 FROM (SELECT topic, digest FROM events ORDER BY id DESC LIMIT 1000) "
                              "WHERE topic = ? AND digest = ?", (msg.topic, digest)).fetchone()
            if seen:
                return  # stored before the process died: acknowledge it again, store it once
        with db:  # one transaction; an exception here leaves the message unacknowledged
            db.execute("INSERT INTO events(topic, digest, payload) VALUES (?, ?, ?)", (msg.topic, digest, msg.payload))
        stored += 1
        if a.count and stored >= a.count:
            client.disconnect()

    client = mqtt.Client(client_id=f"{a.backend}/{a.worker}", clean_session=False, protocol=mqtt.MQTTv311)
    client.username_pw_set(f"backend:{a.backend}", secret)
    client.tls_set(ca_certs=a.cafile, cert_reqs=ssl.CERT_REQUIRED)
    client.on_connect = on_connect
    client.on_message = on_message
    signal.signal(signal.SIGTERM, lambda *_: client.disconnect())
    client.connect(a.host, a.port, keepalive=30)
    client.loop_forever(retry_first_connection=True)
    print(f"stored {stored} messages", file=sys.stderr)


if __name__ == "__main__":
    main()
