#!/usr/bin/python3
"""The man pages agree with the programs (ctest man/pages; docs/cli.md, "Man pages").

    check_pages.py SOURCE_DIR BUILD_DIR

1. Every command is on a page: each command of `latchkey --help` (and each
   one main.c dispatches) has latchkey-COMMAND.1, each of `latchkey-device
   --help` a section of latchkey-device.1; there is no page for a command that
   is gone. Every config key latchkeyd knows (config.c) is in its --help.
2. Each --help block of a page is the current --help of the command it is
   titled with, byte for byte once the troff escapes are undone (this parser
   is not man/man.awk's: it reads what man reads).
3. Each page renders without a warning, as lintian checks it, and has a
   whatis entry (lexgrog, as lintian's manpage-has-bad-whatis-entry).
"""
import concurrent.futures
import os
import re
import subprocess
import sys

SRC, BUILD = sys.argv[1], sys.argv[2]
BIN = os.path.join(BUILD, "bin")
MAN = os.path.join(BUILD, "man")
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def help_text(prog, *words):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}
    if "ASAN_OPTIONS" in os.environ:
        env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"]
    r = subprocess.run([os.path.join(BIN, prog), *words, "--help"], stdin=subprocess.DEVNULL,
                       capture_output=True, env=env, timeout=30)
    if r.returncode != 0:
        fail("%s %s --help exits %d" % (prog, " ".join(words), r.returncode))
    return r.stdout.decode()


def unescape(line):
    if line.startswith("\\&"):
        line = line[2:]
    return re.sub(r"\\(e|-)", lambda m: "\\" if m.group(1) == "e" else "-", line)


def blocks(page):
    """(title, text) for each .nf/.fi block: title the .SS text, or SYNOPSIS."""
    out, title, cur = [], None, None
    with open(os.path.join(MAN, page), encoding="utf-8") as f:
        for line in f.read().split("\n"):
            if cur is not None:
                if line == ".fi":
                    out.append((title, "".join(cur)))
                    cur = None
                else:
                    cur.append(unescape(line) + "\n")
            elif line.startswith(".SH "):
                title = line[4:].strip('"')
            elif line.startswith(".SS "):
                title = unescape(line[4:].strip('"'))
            elif line == ".nf" and title is not None and (title == "SYNOPSIS" or title.startswith("latchkey")):
                cur = []
    return out


def dispatched(main_c):
    """The command words a main.c compares argv[1] or argv[i] with."""
    with open(os.path.join(SRC, main_c)) as f:
        words = re.findall(r'strcmp\(argv\[(?:1|i)\], "([a-z][a-z0-9-]*)"\)', f.read())
    return [w for w in words if w != "help"]


# 1. Every command has its page.
top = help_text("latchkey")
commands = []
for line in top.split("\n"):
    m = re.match(r"  (?:\[--db FILE\] )?([a-z][a-z0-9-]*)( |\||$)", line)
    if m and m.group(1) not in commands:
        commands.append(m.group(1))
if len(commands) < 5:
    fail("latchkey --help lists only %s" % commands)
for c in dispatched("tools/latchkey/main.c"):
    if c not in commands:
        fail("latchkey dispatches '%s' but its usage text (latchkey --help) does not list it" % c)
pages = sorted(p for p in os.listdir(MAN) if p.endswith((".1", ".8")))
for c in commands:
    if "latchkey-%s.1" % c not in pages:
        fail("latchkey %s has no page latchkey-%s.1" % (c, c))
    elif not os.path.exists(os.path.join(SRC, "man", "latchkey-%s.txt" % c)):
        print("NOTE: no man/latchkey-%s.txt: its page has a generic NAME line and no DESCRIPTION" % c)
for p in pages:
    m = re.match(r"latchkey-(.*)\.1$", p)
    if m and m.group(1) != "device" and m.group(1) not in commands:
        fail("%s: latchkey --help has no command %s" % (p, m.group(1)))
for want in ("latchkey.1", "latchkey-device.1", "latchkeyd.8"):
    if want not in pages:
        fail("no page " + want)

dev_titles = [t for t, _ in blocks("latchkey-device.1")]
dev_help = help_text("latchkey-device")
for c in set(re.findall(r"latchkey-device \[?([a-z][a-z0-9-]*)", dev_help)) | set(dispatched("tools/latchkey-device/main.c")):
    if not any(t.split(",")[0] == "latchkey-device " + c for t in dev_titles):
        fail("latchkey-device %s has no section in latchkey-device.1" % c)

daemon_help = help_text("latchkeyd")
with open(os.path.join(SRC, "service/daemon/config.c")) as f:
    config_c = f.read()
keys = set(re.findall(r'\{"([a-z_0-9]+)", ', config_c)) | set(re.findall(r'strcmp\(key, "([a-z_0-9]+)"\)', config_c))
for k in sorted(keys):
    if not re.search(r"\b%s\b" % k, daemon_help):
        fail("latchkeyd knows the setting %s (config.c) but latchkeyd --help does not list it" % k)

# 2. Each help on a page is the program's current one.
def commands_of(page, title):
    if title == "SYNOPSIS":
        m = re.match(r"latchkey-(.*)\.1$", page)
        if page == "latchkey-device.1":
            return [("latchkey-device",)]
        if m:
            return [("latchkey", m.group(1))]
        return [(page.rsplit(".", 1)[0],)]
    first, *more = title.split(", ")
    words = first.split(" ")
    return [tuple(words)] + [tuple(words[:-1] + [w]) for w in more]


jobs = [(p, title, cmd, text) for p in pages for title, text in blocks(p) for cmd in commands_of(p, title)]
for p in pages:
    if not blocks(p):
        fail("%s: no --help text in it" % p)
# The programs and man run a few at a time: the test stays within seconds.
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    now = list(pool.map(lambda j: help_text(j[2][0], *j[2][1:]), jobs))
for (p, title, cmd, text), current in zip(jobs, now):
    if current != text:
        fail("%s: the text under %s is not '%s --help' (rebuild: cmake --build build --target man)"
             % (p, title, " ".join(cmd)))
checked = len(jobs)

# 3. The pages render without a warning; each has a whatis entry.
env = dict(os.environ, LC_ALL="C.UTF-8", MANROFFSEQ="", MANWIDTH="80")


def render(p):
    path = os.path.join(MAN, p)
    r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path],
                       capture_output=True, env=env, timeout=30)
    w = subprocess.run(["lexgrog", path], capture_output=True, env=env, timeout=30)
    return p, r, w


with concurrent.futures.ThreadPoolExecutor(4) as pool:
    rendered = list(pool.map(render, pages))
for p, r, w in rendered:
    if r.returncode != 0 or r.stderr:
        fail("%s: man --warnings says: %s" % (p, r.stderr.decode().strip() or "exit %d" % r.returncode))
    name = p.rsplit(".", 1)[0]
    if w.returncode != 0 or ('"%s - ' % name) not in w.stdout.decode():
        fail("%s: no whatis entry (lexgrog: %s)" % (p, w.stdout.decode().strip()))

print("%d pages, %d commands, %d --help texts checked" % (len(pages), len(commands), checked))
sys.exit(1 if failures else 0)
