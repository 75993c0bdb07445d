"""The broker refuses to start on a registry it cannot use, or with the plugin named twice, and says
what to fix (docs/plugin.md, "Files and users"): a damaged file, and a file its user cannot write
(Mosquitto switches to its user before it loads plugins). Before, it started on a damaged file and refused every device, and a permission problem
was reported without the owner, mode or path to fix.
"""
import os
import pwd
import shutil

import pytest

from broker import Broker
from plugin_common import make_device


def start_fails(b):
    with pytest.raises(RuntimeError) as e:
        b.start()
    return str(e.value)


def test_damaged_registry_stops_the_broker(tmp_path):
    b = Broker(tmp_path / "b", start=False)
    for i in range(200):
        b.lk("devices", "create", f"dev-{i:03d}", "--registry", b.registry, "--project", b.project,
             "--region", b.region)
    with open(b.db, "r+b") as f:
        f.seek(3 * 4096)
        f.write(bytes((i * 131 + 7) & 0xFF for i in range(3 * 4096)))
    log = start_fails(b)
    assert "latchkey: event=registry_open " in log and "is damaged" in log and "restore it" in log, log[-2000:]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching the broker to another user needs root")
def test_registry_the_broker_user_cannot_write_names_owner_mode_and_path(tmp_path):
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user (Debian's mosquitto package makes it)")
    base = tmp_path / "b"
    b = Broker(base, start=False, run_as="mosquitto")
    make_device(b, "dev-1")
    # a directory the broker's user may enter but not write, a file it may only read
    reg_dir = tmp_path / "lib"
    reg_dir.mkdir()
    shutil.move(str(b.db), reg_dir / "registry.db")
    b.db = reg_dir / "registry.db"
    os.chmod(reg_dir, 0o755)
    os.chmod(b.db, 0o644)
    # first a directory on the way that the broker's user may not enter (pytest's are 0700)
    blocked = next(p for p in reversed(reg_dir.parents) if p.stat().st_mode & 0o005 == 0)
    log = start_fails(b)
    assert f"cannot reach {reg_dir}: the directory {blocked} is root:root mode 0700" in log, \
        log[-2000:]
    # then every directory on the way open: the file and its directory are named
    for p in [reg_dir, *reg_dir.parents]:
        if p.stat().st_mode & 0o005 == 0:
            os.chmod(p, p.stat().st_mode | 0o005)
    log = start_fails(b)
    line = [ln for ln in log.splitlines() if "latchkey:" in ln and "registry" in ln]
    assert line, log[-2000:]
    text = line[-1]
    assert "runs as mosquitto" in text, text
    assert str(reg_dir) in text and "root:root mode 0755" in text, text
    assert "mode 0644" in text, text


def test_the_plugin_named_twice_stops_the_broker(tmp_path):
    b = Broker(tmp_path / "b", start=False)
    b.extra_conf = f"plugin {b.plugin}\nplugin_opt_registry {b.db}\n"
    log = start_fails(b)
    assert "latchkey: event=config level=error msg=\"the plugin is configured twice" in log, log[-2000:]
