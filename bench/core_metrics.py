#!/usr/bin/python3
"""Flash, stack and heap of the freestanding core on a Cortex-M0+.

Run by bench/core_metrics.sh after `make -f tests/cortexm/Makefile core
firmware`; reads, under the build directory (default build-cortexm):

  core/*.o, core/*.ci  the core built -mcpu=cortex-m0plus -mthumb -Os
                       -ffunction-sections -fdata-sections, with
                       -fcallgraph-info=su (call graph + per-function stack)
  firmware.elf/.map    tests/cortexm/firmware.c: a main that makes one token
                       through lk_jwt_iotcore with a trivial signer, linked
                       with -nostdlib --gc-sections (libgcc only)

Prints exactly three `name: value` lines on stdout, details on stderr:

  core_flash_bytes_cortex_m0plus  bytes of the input sections of the linked
      firmware that came from core objects: code, read-only data and
      initialised data (which also occupies flash). Not counted: the
      startup code, the firmware's main and signer, libgcc's helpers (listed
      on stderr), alignment padding.
  core_stack_bytes_token  the deepest call path from lk_jwt_iotcore,
      lk_jwt_init, lk_jwt_add_claim_string, lk_jwt_add_claim_int and
      lk_jwt_finalize, summing each function's static frame as GCC reports
      it; libgcc helpers on the path (64-bit division for the integer claims,
      32-bit division) are measured from their disassembly in the firmware.
      The secure element's callbacks (ops->sign_digest, ops->sha256) are
      indirect calls into the backend: counted as 0 bytes, because the
      backend's stack belongs to the backend.
  core_heap_bytes  0, once proven: no core object references an allocator
      and the firmware links without any libc.

Exits non-zero (printing nothing on stdout) if anything cannot be
established: a function with dynamic stack, recursion, a call out of the
core to anything but libgcc, an allocator reference.
"""
import argparse
import os
import re
import subprocess
import sys

CORE = ["error", "util", "b64url", "sha256", "se", "jwt"]
ROOTS = ["lk_jwt_iotcore", "lk_jwt_init", "lk_jwt_add_claim_string",
         "lk_jwt_add_claim_int", "lk_jwt_finalize"]
ALLOCATORS = {"malloc", "calloc", "realloc", "free", "reallocarray",
              "aligned_alloc", "memalign", "posix_memalign", "valloc",
              "pvalloc", "sbrk", "_sbrk", "_sbrk_r", "_malloc_r", "_calloc_r",
              "_realloc_r", "_free_r", "strdup", "strndup", "alloca",
              "__builtin_alloca"}
INDIRECT = "__indirect_call"
FLASH_TARGET = 8192
STACK_TARGET = 1024


class Failure(Exception):
    pass


def log(msg=""):
    print(msg, file=sys.stderr)


def run(cmd):
    try:
        return subprocess.run(cmd, check=True, capture_output=True,
                              text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise Failure("%s failed: %s" % (" ".join(cmd), e))


# --------------------------------------------------------------------------
# Heap: what the core objects leave undefined.

def defined_symbols(objs, nm):
    out = set()
    for line in run([nm, "--defined-only"] + objs).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtDdBbRrW":
            out.add(parts[2])
    return out


def undefined_symbols(objs, nm):
    out = {}
    for obj in objs:
        for line in run([nm, "-u", obj]).splitlines():
            parts = line.split()
            if parts and parts[-1] != obj + ":":
                out.setdefault(parts[-1], []).append(os.path.basename(obj))
    return out


def heap_check(objs, nm, libgcc):
    core_defs = defined_symbols(objs, nm)
    libgcc_defs = defined_symbols([libgcc], nm)
    undef = undefined_symbols(objs, nm)
    external = {s: o for s, o in undef.items() if s not in core_defs}
    alloc = sorted(s for s in external if s in ALLOCATORS)
    if alloc:
        raise Failure("core objects reference an allocator: " + ", ".join(
            "%s (%s)" % (s, ",".join(external[s])) for s in alloc))
    foreign = sorted(s for s in external if s not in libgcc_defs)
    if foreign:
        raise Failure("core objects reference symbols outside the core and "
                      "libgcc (libc?): " + ", ".join(
                          "%s (%s)" % (s, ",".join(external[s])) for s in foreign))
    log("heap: the core objects reference, outside themselves, only libgcc: %s"
        % (", ".join(sorted(external)) or "nothing"))
    return sorted(external)


# --------------------------------------------------------------------------
# Flash: the linker map.

MAP_ONE = re.compile(r"^ (\.\S+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")
MAP_NAME = re.compile(r"^ (\.\S+)$")
MAP_REST = re.compile(r"^\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S.*)$")


def map_input_sections(path):
    """(output section, input section, address, size, file) of every input
    section the link kept."""
    rows = []
    with open(path) as f:
        lines = f.read().splitlines()
    try:
        start = lines.index("Linker script and memory map")
    except ValueError:
        raise Failure("%s: no memory map" % path)
    out_sec = None
    pending = None
    for line in lines[start + 1:]:
        if line.startswith("OUTPUT(") or line.startswith("Cross Reference Table"):
            break
        if line and not line[0].isspace():
            out_sec = line.split()[0]
            pending = None
            continue
        m = MAP_ONE.match(line)
        if m:
            rows.append((out_sec, m.group(1), int(m.group(2), 16),
                         int(m.group(3), 16), m.group(4).strip()))
            pending = None
            continue
        m = MAP_NAME.match(line)
        if m:
            pending = m.group(1)
            continue
        m = MAP_REST.match(line)
        if m and pending:
            rows.append((out_sec, pending, int(m.group(1), 16),
                         int(m.group(2), 16), m.group(3).strip()))
        pending = None
    return rows


def kind_of(sec):
    for prefix, kind in ((".text", "code"), (".rodata", "rodata"),
                         (".data", "data"), (".bss", "bss"), ("COMMON", "bss")):
        if sec == prefix or sec.startswith(prefix + "."):
            return kind
    return "other"


# The allocated output sections of tests/cortexm/microbit.ld (the others,
# .ARM.attributes, .comment and debug sections, never reach the device).
ALLOC_OUT = {".text", ".ARM.extab", ".ARM.exidx", ".data", ".bss"}


def flash_bytes(map_path, objs):
    core_files = {os.path.normpath(o) for o in objs}
    totals = {"code": 0, "rodata": 0, "data": 0, "bss": 0, "other": 0}
    per_obj = {}
    libgcc = {}
    for out_sec, sec, addr, size, src in map_input_sections(map_path):
        if size == 0 or out_sec not in ALLOC_OUT:
            continue
        if os.path.normpath(src) in core_files:
            k = kind_of(sec)
            totals[k] += size
            if k != "bss":
                name = os.path.basename(src)
                per_obj[name] = per_obj.get(name, 0) + size
        elif "libgcc.a" in src:
            key = src.rsplit("(", 1)[-1].rstrip(")")
            libgcc[key] = libgcc.get(key, 0) + size
    if totals["other"]:
        raise Failure("core input sections of an unexpected kind in %s" % map_path)
    flash = totals["code"] + totals["rodata"] + totals["data"]
    log("flash: core code %d + rodata %d + data %d = %d bytes (%s)" % (
        totals["code"], totals["rodata"], totals["data"], flash,
        ", ".join("%s %d" % kv for kv in sorted(per_obj.items()))))
    log("flash: core static RAM (.data + .bss): %d bytes"
        % (totals["data"] + totals["bss"]))
    if libgcc:
        log("flash: not counted, libgcc helpers the core pulls in: %d bytes (%s)"
            % (sum(libgcc.values()),
               ", ".join("%s %d" % kv for kv in sorted(libgcc.items()))))
    return flash


# --------------------------------------------------------------------------
# Stack: GCC's call graph (.ci) plus libgcc from the disassembly.

CI_NODE = re.compile(r'^node: \{ title: "([^"]+)" label: "([^"]*)"')
CI_EDGE = re.compile(r'^edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"'
                     r'(?: label: "([^"]*)")?')
CI_SIZE = re.compile(r"\\n(\d+) bytes \(([a-z,]+)\)$")


def read_callgraph(ci_files):
    frames = {}   # title -> (bytes, qualifier)
    edges = {}    # title -> list of (callee title, call site)
    for path in ci_files:
        with open(path) as f:
            for line in f:
                m = CI_NODE.match(line)
                if m:
                    s = CI_SIZE.search(m.group(2))
                    if s:
                        if m.group(1) in frames:
                            raise Failure("two definitions of %s" % m.group(1))
                        frames[m.group(1)] = (int(s.group(1)), s.group(2))
                    continue
                m = CI_EDGE.match(line)
                if m:
                    edges.setdefault(m.group(1), []).append(
                        (m.group(2), m.group(3) or "?"))
    return frames, edges


INSN = re.compile(r"^\s*([0-9a-f]+):\s+(\S+)\s*(.*)$")
LABEL = re.compile(r"^([0-9a-f]+) <([^>]+)>:$")
TARGET = re.compile(r"^([0-9a-f]+) <([^>+]+)(\+0x[0-9a-f]+)?>")


def disasm_functions(elf, objdump, nm):
    """Blocks of the disassembly, by start address: (label, instructions),
    and a name -> start address table that includes aliases."""
    blocks = {}
    order = []
    cur = None
    for line in run([objdump, "-d", "--no-show-raw-insn", elf]).splitlines():
        m = LABEL.match(line)
        if m:
            cur = int(m.group(1), 16)
            blocks[cur] = (m.group(2), [])
            order.append(cur)
            continue
        m = INSN.match(line)
        if m and cur is not None:
            blocks[cur][1].append((int(m.group(1), 16), m.group(2), m.group(3)))
    addr_of = {}
    for line in run([nm, elf]).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TtWw":
            addr_of[parts[2]] = int(parts[0], 16)
    order.sort()
    return blocks, order, addr_of


def block_containing(order, addr):
    best = None
    for start in order:
        if start <= addr:
            best = start
        else:
            break
    return best


def regcount(reglist):
    n = 0
    for part in reglist.strip("{} ").split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            n += int(b.strip()[1:]) - int(a.strip()[1:]) + 1
        elif part:
            n += 1
    return n


COND_BRANCH = re.compile(r"b(eq|ne|cs|cc|hs|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al)?$")


def sp_alloc(base, args):
    """Bytes an instruction puts on the stack: a push, or `sub sp, #N`."""
    if base == "push":
        return 4 * regcount(args)
    if base == "sub" and re.match(r"sp, (sp, )?#\d+", args):
        return int(args.rsplit("#", 1)[1].split()[0])
    return 0


def body(order, start):
    """The address range of the function that starts at start."""
    idx = order.index(start)
    return start, order[idx + 1] if idx + 1 < len(order) else float("inf")


def branch_target(who, op, args):
    t = TARGET.match(args)
    if not t:
        raise Failure("%s: cannot read branch %s %s" % (who, op, args))
    return int(t.group(1), 16)


def disasm_stack(name, blocks, order, addr_of, memo, active):
    """Upper bound of the stack a Thumb-1 function of libgcc uses: every
    push and `sub sp, #N` of its body added up (as if all ran on one path),
    plus its deepest callee (bl, or a branch out of its body: a tail call).
    Raises on anything not statically bounded. Ignores the divide-by-zero
    exits of __aeabi_uldivmod (reached only for a zero divisor; the core
    divides by constants)."""
    if name not in addr_of:
        raise Failure("%s is called but not in the firmware" % name)
    start = block_containing(order, addr_of[name])
    if start in memo:
        return memo[start]
    if start in active:
        raise Failure("recursion through %s" % name)
    active.add(start)
    label, insns = blocks[start]
    start, end = body(order, start)
    own = 0
    callees = set()
    for _addr, op, args in insns:
        base = op.split(".")[0]
        if sp_alloc(base, args):
            own += sp_alloc(base, args)
        elif re.match(r"(mov|add|sub)s?$", base) and re.match(r"sp, ", args):
            if not re.match(r"sp, (sp, )?#\d+", args):
                raise Failure("%s changes sp by a register: %s %s" % (label, op, args))
        elif base in ("blx",) or (base == "bx" and args.strip() != "lr"):
            raise Failure("%s makes an indirect call: %s %s" % (label, op, args))
        elif base == "bl" or COND_BRANCH.match(base):
            taddr = branch_target(label, op, args)
            if base == "bl" or not start <= taddr < end:
                callees.add(blocks[block_containing(order, taddr)][0])
    deepest = 0
    for c in callees:
        deepest = max(deepest, disasm_stack(c, blocks, order, addr_of, memo, active))
    active.discard(start)
    memo[start] = own + deepest
    log("stack: %-22s %3d bytes (disassembly: %d own%s)" % (
        name, own + deepest, own,
        (" + " + ", ".join(sorted(callees))) if callees else ""))
    return own + deepest


def cross_check(frames, edges, blocks, order, addr_of):
    """Hold GCC's call graph against the linked code: for every core function
    in the firmware, the frame its prologue allocates must be the size GCC
    reported, and every call or tail call in its body must be an edge of the
    graph (an indirect call, `blx`, an edge to __indirect_call)."""
    short = {}
    for title in frames:
        short.setdefault(title.split(":")[-1], []).append(title)
    checked = 0
    for name, titles in sorted(short.items()):
        if len(titles) != 1 or name not in addr_of:
            continue  # a static name defined twice, or dropped by --gc-sections
        title = titles[0]
        start = block_containing(order, addr_of[name])
        label, insns = blocks[start]
        if label != name:
            continue  # an alias; checked under its own label
        start, end = body(order, start)
        callees = {c.split(":")[-1] for c, _ in edges.get(title, [])}
        own = 0
        large = False  # a frame too big for an immediate: `add sp, rN`
        for _addr, op, args in insns:
            base = op.split(".")[0]
            if sp_alloc(base, args):
                own += sp_alloc(base, args)
            elif base in ("add", "sub") and re.match(r"sp, (sp, )?r\d+$", args):
                large = True
            elif base == "blx":
                if INDIRECT not in callees:
                    raise Failure("%s: indirect call %s %s missing from the call graph"
                                  % (name, op, args))
            elif base == "bl" or COND_BRANCH.match(base):
                taddr = branch_target(name, op, args)
                if base != "bl" and start <= taddr < end:
                    continue
                target = blocks[block_containing(order, taddr)][0]
                aliases = {n for n, a in addr_of.items()
                           if block_containing(order, a) == block_containing(order, taddr)}
                if not (aliases | {target}) & callees:
                    raise Failure("%s calls %s, which GCC's call graph does not list"
                                  % (name, target))
        if own != frames[title][0] and not (large and own < frames[title][0]):
            raise Failure("%s: the prologue allocates %d bytes, GCC reported %d"
                          % (name, own, frames[title][0]))
        checked += 1
    log("stack: cross-checked %d core functions of the firmware against their "
        "disassembly (frame sizes and calls agree)" % checked)


def stack_bytes(ci_files, elf, objdump, nm):
    frames, edges = read_callgraph(ci_files)
    blocks, order, addr_of = disasm_functions(elf, objdump, nm)
    cross_check(frames, edges, blocks, order, addr_of)
    memo_asm = {}
    indirect_sites = []
    external = {}

    def frame(title):
        if title in frames:
            size, qual = frames[title]
            if qual != "static":
                raise Failure("%s has %s stack (%d bytes)" % (title, qual, size))
            return size
        if title == INDIRECT:
            return 0
        # Not compiled in the core: must be a libgcc helper in the firmware.
        if title not in external:
            external[title] = disasm_stack(title, blocks, order, addr_of,
                                           memo_asm, set())
        return external[title]

    memo = {}

    def worst(title, path):
        if title in path:
            raise Failure("recursion: " + " -> ".join(path + [title]))
        if title in memo:
            return memo[title]
        own = frame(title)
        best, best_path = 0, []
        if title in frames:
            for callee, site in edges.get(title, []):
                if callee == INDIRECT:
                    indirect_sites.append((title, site))
                    continue
                d, p = worst(callee, path + [title])
                if d > best:
                    best, best_path = d, p
        memo[title] = (own + best, [(title, own)] + best_path)
        return memo[title]

    result = 0
    for root in ROOTS:
        if root not in frames:
            raise Failure("%s not found in the call graph" % root)
        d, p = worst(root, [])
        log("stack: from %-24s %4d bytes: %s" % (
            root, d, " -> ".join("%s(%d)" % (t.split(":")[-1], s) for t, s in p)))
        result = max(result, d)
    for caller, site in sorted(set(indirect_sites)):
        log("stack: indirect call into the secure-element backend, counted as "
            "0 bytes: %s at %s" % (caller.split(":")[-1], site))
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build-cortexm")
    ap.add_argument("--cross", default="arm-none-eabi-")
    args = ap.parse_args()
    nm, objdump = args.cross + "nm", args.cross + "objdump"
    b = args.build
    objs = [os.path.join(b, "core", c + ".o") for c in CORE]
    cis = [os.path.join(b, "core", c + ".ci") for c in CORE]
    elf = os.path.join(b, "firmware.elf")
    mapf = os.path.join(b, "firmware.map")
    for p in objs + cis + [elf, mapf]:
        if not os.path.exists(p):
            raise Failure("missing %s (run make -f tests/cortexm/Makefile core firmware)" % p)
    libgcc = run([args.cross + "gcc", "-mcpu=cortex-m0plus", "-mthumb",
                  "-print-libgcc-file-name"]).strip()

    heap_check(objs, nm, libgcc)
    flash = flash_bytes(mapf, objs)
    stack = stack_bytes(cis, elf, objdump, nm)

    if flash > FLASH_TARGET:
        log("WARNING: core flash %d bytes is above the %d-byte target" % (flash, FLASH_TARGET))
    if stack > STACK_TARGET:
        log("WARNING: token stack %d bytes is above the %d-byte target" % (stack, STACK_TARGET))
    print("core_flash_bytes_cortex_m0plus: %d" % flash)
    print("core_stack_bytes_token: %d" % stack)
    print("core_heap_bytes: 0")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        log("core_metrics: FAIL: %s" % e)
        sys.exit(1)
