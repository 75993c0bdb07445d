"""The verified-token cache across a broker restart (plugin_opt_token_cache_file, docs/plugin.md,
"Restarts: the verified-token cache on disk").

A token verified before the restart connects after it without a signature check (the
connect's log line says cached=1); what changed while the broker was down is enforced all
the same: a blocked device, a credential replaced, a registry-wide change; a damaged file
is refused with the reason and the broker starts with an empty cache.
"""
import os
import re
import sqlite3
import stat

import pytest

from broker import Broker, Refused


def connect_line(b, dev, after):
    """The connect log line of dev written after offset after."""
    text = b.log_text()[after:]
    lines = [ln for ln in text.splitlines() if "event=connect " in ln and dev.client_id in ln]
    assert lines, text[-2000:]
    return lines[-1]


def connects(b, dev, token):
    """Connect with token; returns the log line's cached=N value."""
    mark = len(b.log_text())
    c = b.connect(dev.client_id, token)
    b.close(c)
    line = connect_line(b, dev, mark)
    return int(re.search(r"cached=(\d)", line).group(1))


@pytest.fixture()
def broker(tmp_path):
    b = Broker(tmp_path, opts={"token_cache_file": str(tmp_path / "tokens")})
    yield b
    b.stop()


def test_restart_keeps_verified_tokens_but_not_revocations(broker):
    b = broker
    keep, blocked, rekeyed = b.device(), b.device(), b.device()
    toks = {d.id: d.token() for d in (keep, blocked, rekeyed)}
    for d in (keep, blocked, rekeyed):
        assert connects(b, d, toks[d.id]) == 0          # first: a full check
        assert connects(b, d, toks[d.id]) == 1          # again: the cache
    b.stop()
    assert "3 verified tokens saved to" in b.log_text()
    st = os.stat(b.base / "tokens")
    assert stat.S_IMODE(st.st_mode) == 0o600
    data = (b.base / "tokens").read_bytes()
    for t in toks.values():                              # hashes only, never a token
        for part in t.split("."):
            assert part.encode() not in data

    # while the broker is down: one device blocked, another's key replaced
    assert blocked.devices("update", blocked.id, "--blocked").rc == 0
    other = b.device()                                   # a fresh key, its PEM beside the store
    r = rekeyed.devices("credentials", "create", rekeyed.id, "--path", str(other.pem_path),
                        "--type", "es256")
    assert r.rc == 0, r
    assert rekeyed.devices("credentials", "delete", rekeyed.id, "0").rc == 0

    mark = len(b.log_text())
    b.start()
    b.wait_log("3 verified tokens restored from")
    assert connects(b, keep, toks[keep.id]) == 1         # no signature check after the restart
    with pytest.raises(Refused):
        b.connect(blocked.client_id, toks[blocked.id])
    with pytest.raises(Refused):
        b.connect(rekeyed.client_id, toks[rekeyed.id])
    log = b.log_text()[mark:]
    assert "the device is blocked" in log
    assert "LK_ERR_TOKEN_SIGNATURE" in log


def test_registry_wide_change_while_down_empties_it(broker):
    b = broker
    d = b.device()
    tok = d.token()
    assert connects(b, d, tok) == 0
    b.stop()
    r = b.lk("registries", "update", b.registry, "--project", b.project, "--region", b.region,
             "--log-level", "debug")
    assert r.rc == 0, r
    b.start()
    b.wait_log("not used: a registry changed since it was saved")
    assert connects(b, d, tok) == 0


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(p.read_bytes()[:-5]), "LK_ERR_STORE_CORRUPT"),
    (lambda p: p.write_bytes(b"not a cache file at all, not at all"), "LK_ERR_STORE_FOREIGN"),
    (lambda p: os.chmod(p, 0o660), "LK_ERR_STORE_PERMS"),
])
def test_damaged_file_is_refused_and_the_broker_starts(broker, damage, reason):
    b = broker
    d = b.device()
    tok = d.token()
    assert connects(b, d, tok) == 0
    b.stop()
    damage(b.base / "tokens")
    b.start()
    b.wait_log(reason)
    assert "starting empty" in b.log_text()
    assert connects(b, d, tok) == 0
    # and the next save replaces the bad file with a good one
    b.stop()
    assert stat.S_IMODE(os.stat(b.base / "tokens").st_mode) == 0o600
    b.start()
    b.wait_log("1 verified tokens restored from")


def test_file_saved_against_a_newer_registry_is_not_used(broker):
    """A registry restored from an older backup: its change feed is behind the file's, so the file is not
    used (its entries were verified against a registry that is no longer there)."""
    b = broker
    d = b.device()
    tok = d.token()
    older = b.base / "older.db"
    src, dst = sqlite3.connect(str(b.db)), sqlite3.connect(str(older))
    src.backup(dst)
    src.close()
    dst.close()
    for i in range(3):   # the live registry moves on
        assert d.devices("update", d.id, "--metadata", f"n={i}").rc == 0
    assert connects(b, d, tok) == 0
    b.stop()
    for suffix in ("-wal", "-shm"):
        p = b.base / ("registry.db" + suffix)
        if p.exists():
            p.unlink()
    older.replace(b.db)
    b.start()
    b.wait_log("was saved against a newer registry")
    assert connects(b, d, tok) == 0
