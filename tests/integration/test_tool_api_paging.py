"""latchkey --api follows a listing's nextPageToken whole, whatever its length.

A stand-in for latchkeyd on loopback plain HTTP (the tool allows http:// only
there) answers `devices list` in two pages joined by a 2000-character token;
the tool used to stop silently at a token of 900 characters or more (exit 0,
half the list), and to cut a long escaped token to fit a fixed buffer.
"""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import run_tool

TOKEN = "t" * 1000 + "+/=" * 333 + "z"  # escaped, it is longer still


def device(i):
    return {"id": f"dev-{i}", "name": f"projects/proj-one/locations/here/registries/reg/devices/dev-{i}",
            "numId": str(1000 + i), "credentials": [], "config": {"version": "1"}}


class Fake(BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        Fake.seen.append(q.get("pageToken", [None])[0])
        if u.path.endswith("/devices"):
            if "pageToken" not in q:
                body = {"devices": [device(1)], "nextPageToken": TOKEN}
            elif q["pageToken"] == [TOKEN]:
                body = {"devices": [device(2)]}
            else:
                self.send_response(400)
                self.end_headers()
                return
        else:
            body = {"config": {"version": "1"}}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_long_page_token_is_followed(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kf = tmp_path / "key.json"
    kf.write_text(json.dumps({
        "type": "service_account", "project_id": "proj-one", "private_key_id": "a" * 40,
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "client_email": "tool-admin@proj-one.iam.latchkey"}))
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        for fmt in ("json", "text"):
            r = run_tool("--api", url, "--key-file", kf, "devices", "list", "--project", "proj-one",
                         "--region", "here", "--registry", "reg", "--format", fmt)
            assert r.rc == 0, r
            assert "dev-1" in r.out and "dev-2" in r.out, r
    finally:
        srv.shutdown()
    assert TOKEN in Fake.seen
