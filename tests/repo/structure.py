#!/usr/bin/env python3
"""The shape of the tree, checked (docs/architecture.md, "Keeping the shape"):

- no import circle: within each program or library of the product, the graph "object file A uses a
  symbol that object file B defines" has no cycle (read with nm from the build, so it sees what the
  linker sees, not what the headers promise);
- no source file of the product is longer than 1,000 lines;
- no library code prints or exits: the objects of the libraries and of the
  broker plugin call none of printf, puts, fwrite, perror, exit, abort and
  their kin (tools print and exit; the plugin logs through the broker).

usage: structure.py SOURCE_DIR BUILD_DIR
"""
import os
import subprocess
import sys

MAX_LINES = 1000
PRODUCT = ("core", "se", "protocol", "device", "service", "tools", "include")
# What only a tool may call (with the _chk forms of glibc's fortified headers).
PRINT_EXIT = {"printf", "fprintf", "vprintf", "vfprintf", "dprintf", "puts", "fputs", "putchar",
              "fputc", "putc", "fwrite", "perror", "exit", "_exit", "_Exit", "abort", "err", "errx",
              "warn", "warnx", "__printf_chk", "__fprintf_chk", "__vprintf_chk", "__vfprintf_chk",
              "__dprintf_chk"}


def is_library(target_dir):
    """The libraries' object targets (lk_*_obj) and the broker plugin."""
    d = os.path.basename(target_dir)
    return (d.startswith("lk_") and d.endswith("_obj.dir")) or d == "latchkey_plugin.dir"


def symbols(obj):
    out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBRCGSV":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            used.add(parts[1])
    return defined, used


def cycles(objs):
    """Strongly connected components of more than one file (Tarjan, iterative)."""
    table = {o: symbols(o) for o in objs}
    owner = {s: o for o, (d, _) in table.items() for s in d}
    edges = {o: sorted({owner[s] for s in u if s in owner and owner[s] != o})
             for o, (_, u) in table.items()}
    index, low, on, stack, found, n = {}, {}, set(), [], [], 0
    for root in objs:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = n
                n += 1
                stack.append(v)
                on.add(v)
            if i < len(edges[v]):
                work.append((v, i + 1))
                w = edges[v][i]
                if w not in index:
                    work.append((w, 0))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append((comp, edges))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return found


def name(obj):
    return os.path.basename(obj).removesuffix(".o").removesuffix(".c")


def live(obj):
    """An object whose source still exists (its depfile names the source first)."""
    try:
        with open(obj + ".d") as f:
            words = f.read(4096).replace("\\\n", " ").split()
    except OSError:
        return True
    return len(words) < 2 or os.path.exists(words[1])


def main():
    src, build = sys.argv[1], sys.argv[2]
    problems = []
    # The targets of this configuration (an incremental build keeps the
    # directories of targets and sources that no longer exist).
    with open(os.path.join(build, "CMakeFiles", "TargetDirectories.txt")) as f:
        targets = [line.strip() for line in f if line.strip().endswith(".dir")]
    for tdir in targets:
        d = os.path.basename(tdir)
        rel = os.path.relpath(tdir, build)
        if rel.startswith(("tests", "bench")) or "test" in d or "bench" in d or "fuzz" in d:
            continue
        try:
            with open(os.path.join(tdir, "build.make")) as f:
                rules = f.read()   # the objects this target compiles now
        except OSError:
            rules = None
        objs = []
        for p, _, files in os.walk(tdir):
            for f in files:
                o = os.path.join(p, f)
                if f.endswith(".c.o") and live(o) and (rules is None
                                                      or os.path.relpath(o, build) in rules):
                    objs.append(o)
        if is_library(tdir):
            for o in objs:
                bad = sorted(symbols(o)[1] & PRINT_EXIT)
                if bad:
                    problems.append(f"{name(o)} (in {d[:-4]}) prints or exits: {', '.join(bad)}")
        for comp, edges in cycles(sorted(objs)):
            names = sorted(name(o) for o in comp)
            arrows = [f"{name(a)} -> {name(b)}" for a in comp for b in edges[a] if b in comp]
            problems.append(f"import circle in {d[:-4]}: {', '.join(names)} ({'; '.join(arrows)})")
    for top in PRODUCT:
        for p, _, files in os.walk(os.path.join(src, top)):
            for f in files:
                if f.endswith((".c", ".h")):
                    path = os.path.join(p, f)
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        lines = sum(1 for _ in fh)
                    if lines > MAX_LINES:
                        problems.append(f"{os.path.relpath(path, src)}: {lines} lines (at most {MAX_LINES})")
    for line in problems:
        print(line)
    if problems:
        sys.exit(1)
    print("structure: no import circle, no product file over", MAX_LINES, "lines, no library "
          "code that prints or exits")


if __name__ == "__main__":
    main()
