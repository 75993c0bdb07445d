#!/usr/bin/python3
"""Read memcheck's reports (vg.PID.log, one per process) from `make test-valgrind` and fail on what is ours.

A leak record ("definitely lost", "indirectly lost") or an error (invalid read or write, use of
uninitialised memory in a jump, a bad free, overlapping copies) counts as latchkey's when a frame of its
stack is in latchkey's code: the plugin, latchkeyd, the tools or the libraries (an object or source file
of ours). Mosquitto's, OpenSSL's and SQLite's own exit-time allocations are reported only as a total.
Exit 1 when anything of ours is found, with its stacks, or when no process left a report; 0 otherwise, with the
counts. A process killed before it exited left none (listed: the kill -9 tests do it on purpose; a stop that timed
out under valgrind fails its suite instead, tests/integration/broker.py and api_common.py).

    /usr/bin/python3 tests/valgrind/check.py DIR
"""
import re
import sys
from pathlib import Path

OUR_FILES = None  # filled from the source tree: names of latchkey's own .c files


def our_frame(line):
    m = re.search(r"\(([\w./-]+\.c):\d+\)", line)
    if m and Path(m.group(1)).name in OUR_FILES:
        return True
    return bool(re.search(r"latchkey_plugin\.so|liblatchkey|/latchkeyd\b|/bin/latchkey", line))


def records(text):
    """memcheck's blocks: runs of '==PID== ' lines separated by an empty '==PID== ' line."""
    block = []
    for line in text.splitlines():
        body = re.sub(r"^==\d+== ?", "", line)
        if not body.strip():
            if block:
                yield block
            block = []
        else:
            block.append(body)
    if block:
        yield block


def main():
    global OUR_FILES
    d = Path(sys.argv[1])
    src = Path(__file__).resolve().parents[2]
    OUR_FILES = {p.name for top in ("service", "core", "se", "device", "protocol", "tools")
                 for p in (src / top).rglob("*.c")}
    ours, theirs, procs, errors, cut = [], 0, 0, 0, []
    for log in sorted(d.glob("vg.*.log")):
        text = log.read_text(errors="replace")
        cmd = re.search(r"Command: (.*)", text)
        procs += 1
        # A process killed before its exit wrote no leak report: the suites' kill -9 tests do it on
        # purpose; a stop that timed out fails its suite (broker.py, api_common.py). Listed, not failed.
        if "ERROR SUMMARY:" not in text:
            cut.append(f"{log.name} ({cmd.group(1)[:120] if cmd else '?'})")
        for b in records(text):
            head = b[0]
            kind = None
            if re.search(r"(definitely|indirectly) lost in loss record", head):
                kind = "leak"
            elif re.match(r"(Invalid (read|write|free)|Conditional jump|Use of uninitialised|"
                          r"Syscall param|Mismatched free|Source and destination overlap|"
                          r"Argument '.*' of function)", head):
                kind = "error"
            if kind is None:
                continue
            if kind == "error":
                errors += 1
            if any(our_frame(x) for x in b[1:]):
                ours.append((log.name, cmd.group(1) if cmd else "?", kind, b))
            else:
                theirs += 1
    for name, cmd, kind, b in ours:
        print(f"--- {kind} in {name} ({cmd[:120]})")
        print("\n".join("    " + x for x in b[:30]))
    for c in cut:
        print(f"--- no report (killed before it exited): {c}")
    print(f"test-valgrind: {procs - len(cut)} processes checked, {len(cut)} without a report; {len(ours)} leak or error records in latchkey's code, "
          f"{theirs} elsewhere (Mosquitto, OpenSSL, SQLite, libc: not ours); {errors} memory errors in all")
    return 1 if ours or procs == len(cut) else 0


if __name__ == "__main__":
    sys.exit(main())
