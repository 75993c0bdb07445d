"""MQTT's bytes written by hand, for the suites and benchmarks that must send what no client library would: a
malformed or oversized CONNECT, a packet cut short, a minimal client. No pytest here (bench/flood.py imports it)."""


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
