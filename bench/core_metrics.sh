#!/bin/sh
# Flash, stack and heap of the freestanding core on the SAM D21's Cortex-M0+.
#
#     sh bench/core_metrics.sh [FILE]     # from the repository root
#
# Cross-builds the core (-mcpu=cortex-m0plus -mthumb -Os -ffunction-sections
# -fdata-sections, with -fcallgraph-info=su) and a minimal firmware that makes
# one token through lk_jwt_iotcore (tests/cortexm/Makefile, into
# build-cortexm/), then prints, and appends to FILE if given:
#
#   core_flash_bytes_cortex_m0plus: N  code+rodata(+data) the firmware keeps
#                                      from core objects (--gc-sections);
#                                      startup, main, signer, libgcc excluded
#   core_stack_bytes_token: N          deepest static call path of token
#                                      creation through the core (and libgcc
#                                      helpers); the secure element's sign
#                                      and hash callbacks are indirect calls
#                                      into the backend and count as 0
#   core_heap_bytes: 0                 printed only when proven: no allocator
#                                      referenced, and the firmware links
#                                      with -nostdlib
#
# Fails (non-zero, nothing on stdout) on dynamic stack, recursion, or a
# reference outside the core and libgcc. Details go to stderr; the parsing
# is bench/core_metrics.py, run with Debian's /usr/bin/python3.
set -eu

O="${O:-build-cortexm}"
PYTHON="${PYTHON:-/usr/bin/python3}"

fail() {
    echo "core_metrics: FAIL: $*" >&2
    exit 1
}

if [ ! -f core/jwt.c ] || [ ! -f bench/core_metrics.py ]; then
    fail "run me from the repository root (sh bench/core_metrics.sh)"
fi
[ -x "$PYTHON" ] || fail "$PYTHON not found"
for tool in arm-none-eabi-gcc arm-none-eabi-nm arm-none-eabi-objdump make; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "$tool not found: install gcc-arm-none-eabi (make deps)"
done

# Build output goes to stderr: stdout carries only the three metrics.
make -s -f tests/cortexm/Makefile O="$O" core firmware >&2 ||
    fail "cross-build of the core or the measurement firmware failed"

OUT="$O/core_metrics.txt"
"$PYTHON" bench/core_metrics.py --build "$O" >"$OUT" ||
    fail "could not establish the core's metrics (see above)"
[ "$(wc -l <"$OUT")" -eq 3 ] || fail "unexpected output in $OUT"

cat "$OUT"
if [ $# -ge 1 ] && [ -n "$1" ]; then
    cat "$OUT" >>"$1"
fi
