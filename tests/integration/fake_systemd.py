#!/usr/bin/python3
"""systemctl and journalctl for tests/integration/test_readme.py, where systemd is not PID 1.

Test-only: README's steps say `systemctl restart mosquitto` and `journalctl -u latchkey-device`, and the
test runs them as written with this program first on PATH (as `systemctl` and `journalctl`). It does what
systemd would do with the unit files and drop-ins README installs, for the settings they use:

  - the unit from /etc/systemd/system, else /lib/systemd/system; drop-ins from /etc/systemd/system/U.d/*.conf
    in order; continuation lines; an empty assignment resets a list (ExecStartPre=);
  - ExecStartPre, then ExecStart; an Exec line prefixed '+' runs with full privileges, '-' may fail;
    `%%` is `%`;
  - User=, Group=, AmbientCapabilities= (setpriv), LimitNOFILE=;
  - Environment=, EnvironmentFile= (a leading '-': may be missing) and $VAR / ${VAR} in Exec lines
    ($VAR split at white space, ${VAR} one word); StateDirectory=; ConditionPathExists= (unmet: the
    unit is skipped, as systemd does, and start succeeds);
  - Type=notify: NOTIFY_SOCKET, and start returns once the service says READY=1.

The service's standard output and error are its journal (FAKE_SYSTEMD_STATE/UNIT.log).

  systemctl daemon-reload | start U | stop U | restart U | try-restart U | enable [--now] U | status U
            | is-active U | is-enabled U
  journalctl -u U [--no-pager]
"""
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("FAKE_SYSTEMD_STATE", "/run/fake-systemd"))
UNIT_DIRS = [Path("/etc/systemd/system"), Path("/lib/systemd/system"), Path("/usr/lib/systemd/system")]


def unit_name(u):
    return u if "." in u else u + ".service"


def parse_into(path, conf):
    lines = path.read_text().splitlines()
    joined, cur = [], ""
    for line in lines:
        if not cur and line.lstrip().startswith(("#", ";")):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        joined.append(cur + line)
        cur = ""
    section = None
    for line in joined:
        line = line.strip()
        if not line:
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        if section != "Service" or "=" not in line:
            continue
        k, v = line.split("=", 1)
        k, v = k.strip(), v.strip()
        if k in ("ExecStartPre", "ExecStart", "AmbientCapabilities", "Environment", "EnvironmentFile",
                 "ConditionPathExists"):
            if v == "":
                conf[k] = []
            else:
                conf.setdefault(k, []).append(v)
        else:
            conf[k] = v


def load(unit):
    unit = unit_name(unit)
    conf = {}
    for d in UNIT_DIRS:
        if (d / unit).exists():
            parse_into(d / unit, conf)
            break
    else:
        sys.exit(f"Unit {unit} not found.")
    dropins = Path("/etc/systemd/system") / (unit + ".d")
    if dropins.is_dir():
        for f in sorted(dropins.glob("*.conf")):
            parse_into(f, conf)
    return unit, conf


def expand(words, env):
    """systemd's $VAR (split at white space) and ${VAR} (one word) in an Exec line's words."""
    out = []
    for w in words:
        if w.startswith("$") and not w.startswith("${") and w[1:].replace("_", "").isalnum():
            out += env.get(w[1:], "").split()
            continue
        while "${" in w:
            i = w.index("${")
            j = w.index("}", i)
            w = w[:i] + env.get(w[i + 2:j], "") + w[j + 1:]
        out.append(w)
    return out


def environment(conf):
    env = dict(os.environ)
    for e in conf.get("Environment", []):
        for kv in shlex.split(e):
            k, _, v = kv.partition("=")
            env[k] = v
    for f in conf.get("EnvironmentFile", []):
        optional = f.startswith("-")
        try:
            text = Path(f.lstrip("-")).read_text()
        except OSError:
            if optional:
                continue
            raise
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            k, _, v = line.partition("=")
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            env[k.strip()] = v
    return env


def command(line, conf, env=None):
    """(argv, privileged, may_fail) of an Exec line, with User=/caps applied unless '+'."""
    privileged = may_fail = False
    while line and line[0] in "+-@!:":
        privileged |= line[0] == "+"
        may_fail |= line[0] == "-"
        line = line[1:]
    argv = expand([a.replace("%%", "%") for a in shlex.split(line)], env or {})
    if not privileged and conf.get("User"):
        pre = ["setpriv", f"--reuid={conf['User']}", f"--regid={conf.get('Group', conf['User'])}",
               "--init-groups"]
        caps = [c.lower().replace("cap_", "") for v in conf.get("AmbientCapabilities", [])
                for c in v.split()]
        if caps:
            spec = ",".join("+" + c for c in caps)
            pre += [f"--inh-caps={spec}", f"--ambient-caps={spec}"]
        argv = pre + ["--"] + argv
    return argv, privileged, may_fail


def limits(conf):
    def apply():
        if conf.get("LimitNOFILE"):
            n = int(conf["LimitNOFILE"])
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            except (ValueError, OSError):
                # a sandbox without CAP_SYS_RESOURCE cannot raise the hard limit, as systemd
                # would: the most it allows
                hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return apply


def pid_of(unit):
    try:
        pid = int((STATE / (unit + ".pid")).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start(unit_arg):
    unit, conf = load(unit_arg)
    if pid_of(unit):
        return 0
    STATE.mkdir(parents=True, exist_ok=True)
    for path in conf.get("ConditionPathExists", []):
        met = os.path.exists(path.lstrip("!")) != path.startswith("!")
        if not met:
            print(f"{unit}: condition ConditionPathExists={path} unmet: skipped", file=sys.stderr)
            return 0
    env = environment(conf)
    if conf.get("StateDirectory"):
        d = Path("/var/lib") / conf["StateDirectory"]
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if conf.get("User"):
            shutil.chown(d, conf["User"], conf.get("Group", conf["User"]))
    for line in conf.get("ExecStartPre", []):
        argv, _, may_fail = command(line, conf, env)
        rc = subprocess.call(argv, env=env)
        if rc and not may_fail:
            print(f"{unit}: ExecStartPre {argv} failed ({rc})", file=sys.stderr)
            return 1
    argv, _, _ = command(conf["ExecStart"][-1], conf, env)
    log = open(STATE / (unit + ".log"), "ab")
    notify = None
    if conf.get("Type") == "notify":
        path = STATE / (unit + ".notify")
        path.unlink(missing_ok=True)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(path))
        os.chmod(path, 0o777)
        env["NOTIFY_SOCKET"] = str(path)
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                         start_new_session=True, preexec_fn=limits(conf))
    (STATE / (unit + ".pid")).write_text(str(p.pid))
    deadline = time.time() + 20
    if notify:
        notify.settimeout(0.2)
        while time.time() < deadline:
            if p.poll() is not None:
                break
            try:
                if b"READY=1" in notify.recv(4096):
                    return 0
            except socket.timeout:
                pass
    else:
        time.sleep(0.5)
        if p.poll() is None:
            return 0
    print(f"Job for {unit} failed (exit {p.poll()}); its journal:", file=sys.stderr)
    sys.stderr.write((STATE / (unit + ".log")).read_text(errors="replace")[-3000:])
    return 1


def stop(unit_arg):
    unit = unit_name(unit_arg)
    pid = pid_of(unit)
    if not pid:
        return 0
    os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if not pid_of(unit):
            break
        time.sleep(0.05)
    else:
        os.killpg(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    return 0


def systemctl(args):
    args = [a for a in args if a not in ("--no-pager", "-q", "--quiet")]
    if not args:
        sys.exit("systemctl: a command is needed")
    cmd, rest = args[0], args[1:]
    if cmd == "daemon-reload":
        return 0
    if cmd == "enable":
        if "--now" in rest:
            return max([start(u) for u in rest if u != "--now"] or [0])
        return 0
    if cmd == "start":
        return max(start(u) for u in rest)
    if cmd == "stop":
        return max(stop(u) for u in rest)
    if cmd == "restart":
        return max((stop(u), start(u))[1] for u in rest)
    if cmd == "try-restart":
        return max(((stop(u), start(u))[1] if pid_of(unit_name(u)) else 0) for u in rest)
    if cmd == "is-enabled":
        print("enabled")
        return 0
    if cmd in ("status", "is-active"):
        active = all(pid_of(unit_name(u)) for u in rest)
        print("active" if active else "inactive")
        return 0 if active else 3
    sys.exit(f"systemctl: {cmd} is not supported by this test stand-in")


def journalctl(args):
    unit = unit_name(args[args.index("-u") + 1])
    try:
        sys.stdout.write((STATE / (unit + ".log")).read_text(errors="replace"))
    except FileNotFoundError:
        print("-- No entries --")
    return 0


if __name__ == "__main__":
    prog = os.path.basename(sys.argv[0])
    sys.exit(journalctl(sys.argv[1:]) if prog == "journalctl" else systemctl(sys.argv[1:]))
