"""README's "Run it for real", run as written (issue 11): every block marked `<!-- readme-test: ... -->`
in order, in one shell, as root, on this machine's Debian packages — with the broker started by Debian's
mosquitto.service and README's drop-ins, so under its own user — ending with a device connected on 8883
and on 443, a backend receiving its events, and a config and a command reaching it as a service.

So that it leaves the machine alone, the steps run in a mount and network namespace of their own:
/etc, /var, /usr and /root are overlays whose changes vanish with it (the packages README builds are
installed with apt into those), SoftHSM2's token directory and
/run are empty, mqtt.example.com is 127.0.0.1, and ports 8883 and 443 are its own. systemd is not PID 1
here: `systemctl` and `journalctl` are tests/integration/fake_systemd.py, which runs the units as systemd
would (ExecStartPre with '+', User=, AmbientCapabilities=, LimitNOFILE=, Type=notify). Markers: `run` (must
succeed), `background` (started and left running), `retry` (run again for up to 15 s until it succeeds:
what a person does while a service comes up). The test fails when README drifts.
"""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

README = REPO / "README.md"
MARK = re.compile(r"<!-- readme-test: (run|background|retry) -->\s*\n```sh\n(.*?)\n```", re.S)


def blocks():
    return MARK.findall(README.read_text())


def test_readme_has_the_tested_walkthrough():
    kinds = [k for k, _ in blocks()]
    assert kinds.count("run") >= 7 and "background" in kinds and "retry" in kinds, kinds
    text = "\n".join(b for _, b in blocks())
    for needed in ("make deb", "apt install ./latchkey_", "latchkey setup", "systemctl restart mosquitto",
                   "--port 443", "--port 8883",
                   "commands send", "configs update"):
        assert needed in text, needed


@pytest.mark.skipif(os.geteuid() != 0, reason="README's steps are run as root")
@pytest.mark.skipif(bool(os.environ.get("LK_SANITIZER_PRELOAD")),
                    reason="README installs the normal build: tested in that stage")
def test_readme_steps_work_as_written(tmp_path):
    for tool in ("unshare", "setpriv", "ip", "softhsm2-util", "mosquitto_sub"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is missing")
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for name in ("systemctl", "journalctl"):
        (fakebin / name).symlink_to(Path(__file__).with_name("fake_systemd.py"))
    os.chmod(Path(__file__).with_name("fake_systemd.py"), 0o755)

    script = ["set -e", "cd " + str(REPO)]
    for i, (kind, body) in enumerate(blocks()):
        f = tmp_path / f"block{i}.sh"
        f.write_text(body + "\n")
        script.append(f"echo '== README block {i} ({kind})'")
        if kind == "run":
            script.append(f". {f}")
        elif kind == "background":
            script.append(f"( . {f} ) >{tmp_path}/bg{i}.out 2>&1 &")
            script.append(f"echo $! >>{tmp_path}/bg.pids")
            script.append("sleep 1")
        else:
            script.append(f"n=0; until ( . {f} ); do n=$((n + 1)); [ $n -lt 30 ] || exit 1; sleep 0.5; done")
    runner = tmp_path / "readme.sh"
    runner.write_text("\n".join(script) + "\n")

    (tmp_path / "upper").mkdir()
    setup = f"""
set -e
mount --make-rprivate /
for d in etc var usr root; do
    n=$(echo $d | tr / _)
    mkdir -p {tmp_path}/upper/$n {tmp_path}/work/$n
    mount -t overlay overlay -o lowerdir=/$d,upperdir={tmp_path}/upper/$n,workdir={tmp_path}/work/$n /$d
done
mount -t tmpfs -o mode=2770 tmpfs /var/lib/softhsm/tokens && chgrp softhsm /var/lib/softhsm/tokens
mount -t tmpfs -o mode=755 tmpfs /run
echo '127.0.0.1 mqtt.example.com' >> /etc/hosts
ip link set lo up
export PATH={fakebin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root FAKE_SYSTEMD_STATE=/run/fake-systemd
rc=0
bash {runner} || rc=$?
# stop what the steps started
systemctl stop latchkey-device mosquitto >/dev/null 2>&1 || true
for p in $(cat {tmp_path}/bg.pids 2>/dev/null); do pkill -P $p || true; kill $p 2>/dev/null || true; done
for u in mosquitto latchkey-device; do
    echo "== journal of $u"; tail -n 40 /run/fake-systemd/$u.service.log 2>/dev/null || true
done
exit $rc
"""
    r = subprocess.run(["unshare", "--mount", "--net", "--fork", "sh", "-c", setup],
                       capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    bg = "".join(p.read_text(errors="replace") for p in tmp_path.glob("bg*.out"))
    assert r.returncode == 0, f"README's steps failed:\n{out[-6000:]}\n-- backend:\n{bg[-2000:]}"
    # the broker ran as mosquitto, bound 443, and the backend got both events
    assert "latchkey: event=start level=info msg=\"serving registry" in out
    events = "latchkey/my-project/us-central1/my-registry/device-42/events"
    assert f'{events} {{"temperature": 21.5}}' in bg, bg[-2000:]
    assert f'{events} {{"temperature": 21.6}}' in bg, bg[-2000:]
    assert "latchkey/my-project/us-central1/my-registry/device-42/online" in bg
