#!/bin/sh
# Known-answer tests of the freestanding core on an emulated Cortex-M0.
#
# Run from the repository root (`make test-cortexm`, which `make test` calls):
#   1. cross-compiles the core for the SAM D21's Cortex-M0+
#      (-mcpu=cortex-m0plus -mthumb -Os, freestanding, -Werror), once with
#      -ffunction-sections -fdata-sections for linking and once with exactly
#      -mcpu=cortex-m0plus -mthumb -Os;
#   2. links tests/cortexm/kat.c with those objects, newlib-nano and
#      semihosting, and the -nostdlib measurement firmware;
#   3. runs the KAT under QEMU's Cortex-M0 `microbit` machine and fails
#      unless it exits 0 and reports no failure.
# Everything goes to build-cortexm/ (override with O=...).
set -eu

O="${O:-build-cortexm}"
TIMEOUT="${LK_CORTEXM_TIMEOUT:-120}"

fail() {
    echo "test-cortexm: FAIL: $*" >&2
    exit 1
}

if [ ! -f core/jwt.c ] || [ ! -f tests/cortexm/kat.c ]; then
    fail "run me from the repository root (sh tests/cortexm/run.sh)"
fi

for tool in arm-none-eabi-gcc arm-none-eabi-size qemu-system-arm timeout make; do
    command -v "$tool" >/dev/null 2>&1 ||
        fail "$tool not found: install gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm (make deps)"
done
# The newlib specs files come with libnewlib-arm-none-eabi, not with the compiler.
case "$(arm-none-eabi-gcc -print-file-name=rdimon.specs)" in
    /*) ;;
    *) fail "newlib for arm-none-eabi (rdimon.specs) not found: install libnewlib-arm-none-eabi" ;;
esac

echo "test-cortexm: building into $O/"
make -s -f tests/cortexm/Makefile O="$O" all ||
    fail "cross-build failed (see the compiler output above)"

LOG="$O/kat.log"
echo "test-cortexm: running $O/kat.elf on qemu-system-arm -M microbit (timeout ${TIMEOUT}s)"
set +e
timeout -k 5 "$TIMEOUT" qemu-system-arm -M microbit -nographic \
    -semihosting-config enable=on,target=native \
    -kernel "$O/kat.elf" </dev/null >"$LOG" 2>&1
rc=$?
set -e
cat "$LOG"

case "$rc" in
    0) ;;
    124|137) fail "QEMU did not finish within ${TIMEOUT}s (a hang or a fault loop on the target)" ;;
    99) fail "the test program took a hard fault (exit status 99)" ;;
    *) fail "the known-answer tests exited with status $rc" ;;
esac
grep -q '^FAIL' "$LOG" && fail "a check printed FAIL although the exit status was 0"
grep -q '^cortexm-kat: [1-9][0-9]* passed, 0 failed$' "$LOG" ||
    fail "no success summary in the output: the program did not run to the end"
echo "test-cortexm: PASS ($(sed -n 's/^cortexm-kat: //p' "$LOG"))"
