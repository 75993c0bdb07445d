"""npm packages for the tests' Node.js clients, installed with `npm ci` at test time.

No tests here. npm_install(src, dest, what) copies src's package.json and package-lock.json
(exact versions, committed) into dest (in the build tree, never the source tree) and runs
`npm ci` there, once per lock file: a stamp holding the lock's SHA-256 says the install is
complete. The install is tried twice; the test is skipped only when the npm registry cannot be
reached, and says so. Needs node and npm (scripts/install-deps.sh test installs Debian's when
missing). Used by test_api_npm.py (tests/npm) and test_console_ui.py (tests/console).
"""
import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def _npm_reachable(env):
    """Whether the npm registry answers (npm ping), and what npm said."""
    try:
        cp = subprocess.run(["npm", "ping", "--fetch-retries=1", "--fetch-timeout=20000"],
                            capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        return False, "npm ping timed out after 60 s"
    said = [ln for ln in (cp.stdout + cp.stderr).splitlines()
            if re.search(r"PING|error code|failed, reason|ERR!", ln)]
    return cp.returncode == 0, " / ".join(said[:3]) or (cp.stdout + cp.stderr)[-300:]


def _npm_ci(dest, env):
    """npm ci in dest: (ok, what npm said)."""
    try:
        cp = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=dest,
                            capture_output=True, text=True, timeout=600, env=env)
    except subprocess.TimeoutExpired:
        return False, "timed out after 600 s\n"
    return cp.returncode == 0, f"(exit {cp.returncode})\n{cp.stdout}{cp.stderr}"


def npm_install(src: Path, dest: Path, what: str) -> Path:
    """src's locked packages installed in dest (what: their name, for messages); dest."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: run `sh scripts/install-deps.sh test` "
                        "(Debian's nodejs and npm)")
    lock = (src / "package-lock.json").read_bytes()
    want = hashlib.sha256(lock + (src / "package.json").read_bytes()).hexdigest()
    stamp = dest / ".lk-npm-ci-stamp"
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false",
               npm_config_audit="false", npm_config_cache=str(dest.parent / "npm-cache"))
    if not (stamp.is_file() and stamp.read_text().strip() == want):
        dest.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(src / name, dest / name)
        ok, out = _npm_ci(dest, env)
        if not ok:
            # Offline is the one reason to skip; anything else is retried once
            # (a registry hiccup), then fails the test with npm's words.
            up, said = _npm_reachable(env)
            if not up:
                pytest.skip(f"the npm registry is unreachable, so {what} cannot be "
                            f"installed (npm ping: {said.strip()})")
            time.sleep(5)
            ok, again = _npm_ci(dest, env)
            if not ok:
                pytest.fail(f"npm ci failed twice with the registry reachable:\n--- first: {out[-2000:]}\n"
                            f"--- second: {again[-2000:]}")
        stamp.write_text(want + "\n")
    return dest
