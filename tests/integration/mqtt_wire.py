"""MQTT's bytes written by hand, for the suites and benchmarks that must send what no client library would: a
malformed or oversized CONNECT, a packet cut short, a minimal client. No pytest here (bench/flood.py imports it)."""
import socket
import struct


def varint(n):
    """MQTT's variable byte integer (a remaining length)."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s16(b):
    """A two-byte length, then the bytes (a str is UTF-8 encoded)."""
    b = b.encode() if isinstance(b, str) else b
    return len(b).to_bytes(2, "big") + b


def connect_packet(cid, password, username=b"unused", name=b"MQTT", level=4, flags=None,
                   keepalive=60, header=0x10, length=None, props=b""):
    """A CONNECT: flags default to clean session + username + password (as given); length replaces the
    remaining length's bytes (to lie about it)."""
    cid = cid.encode() if isinstance(cid, str) else cid
    password = password.encode() if isinstance(password, str) else password
    if flags is None:
        flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = s16(name) + bytes([level, flags]) + keepalive.to_bytes(2, "big") + props + s16(cid)
    if username is not None:
        body += s16(username)
    if password is not None:
        body += s16(password)
    rl = varint(len(body)) if length is None else length
    return bytes([header]) + rl + body


class RawClient:
    """A minimal MQTT client over a plain socket, MQTT 3.1.1 (protocol=4) or 5: it shows what the broker
    answers (a missing PUBACK, a closed connection) where a client library would hide or retry it. The
    CONNACK's reason code is in connack (-1: closed without one)."""

    def __init__(self, host, port, client_id, username, password, protocol=4, clean=True, keepalive=60):
        self.v5 = protocol == 5
        self.sock = socket.create_connection((host, port), timeout=5)
        self.mid = 0
        self.sock.sendall(connect_packet(client_id, password, username=username, level=protocol,
                                  flags=(0x02 if clean else 0) | (0x80 if username is not None else 0)
                                  | (0x40 if password is not None else 0),
                                  keepalive=keepalive, props=varint(0) if self.v5 else b""))
        pkt = self.read()
        if pkt is None:
            self.connack = -1
        else:
            assert pkt[0] == 0x20, pkt
            self.connack = pkt[1][1]

    def _packet(self, first, body):
        self.sock.sendall(bytes([first]) + varint(len(body)) + body)

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def read(self, timeout=5):
        """(first byte, body) of the next packet; None when the broker closed the connection."""
        self.sock.settimeout(timeout)
        try:
            h = self._recv(1)
            if h is None:
                return None
            n, mul = 0, 1
            while True:
                b = self._recv(1)
                if b is None:
                    return None
                n += (b[0] & 0x7F) * mul
                mul *= 128
                if not b[0] & 0x80:
                    break
            body = self._recv(n) if n else b""
            return None if body is None else (h[0], body)
        except (ConnectionResetError, BrokenPipeError):
            return None

    def _next_mid(self):
        self.mid = self.mid % 65535 + 1
        return self.mid

    def publish(self, topic, payload, qos=1, retain=False):
        """QoS 1: the PUBACK's reason code (0 in MQTT 3.1.1), or None when the broker closed the connection
        without one; QoS 0: None."""
        mid = self._next_mid()
        body = s16(topic) + (struct.pack("!H", mid) if qos else b"") + (varint(0) if self.v5 else b"")
        try:
            self._packet(0x30 | (qos << 1) | (1 if retain else 0), body + payload)
        except OSError:
            return None
        if not qos:
            return None
        pkt = self.read()
        if pkt is None:
            return None
        assert pkt[0] == 0x40 and struct.unpack("!H", pkt[1][:2])[0] == mid, pkt
        return pkt[1][2] if len(pkt[1]) > 2 else 0

    def subscribe(self, topic, qos=1):
        """The SUBACK's reason codes."""
        mid = self._next_mid()
        self._packet(0x82, struct.pack("!H", mid) + (varint(0) if self.v5 else b"") + s16(topic) + bytes([qos]))
        pkt = self.read()
        assert pkt is not None and pkt[0] == 0x90, pkt
        b = pkt[1][2:]
        if self.v5:
            b = b[1 + b[0]:]           # short properties only
        return list(b)

    def alive(self):
        """A PINGREQ answered: the connection stands."""
        try:
            self._packet(0xC0, b"")
        except OSError:
            return False
        pkt = self.read()
        return pkt is not None and pkt[0] == 0xD0

    def close(self):
        try:
            self._packet(0xE0, b"\x00\x00" if self.v5 else b"")
        except OSError:
            pass
        self.sock.close()
