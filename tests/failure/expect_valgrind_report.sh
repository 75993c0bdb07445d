#!/bin/sh
# expect_valgrind_report.sh VALGRIND PROGRAM ARGS... — passes only when
# memcheck reports a branch on secret (undefined) data in PROGRAM: proves
# that the constant-time check (ct_check) would catch a variable-time
# comparison. Any other outcome (no report, valgrind missing or crashing)
# fails.
vg=$1
shift
out=$("$vg" --error-exitcode=99 --track-origins=yes "$@" 2>&1)
rc=$?
if [ "$rc" -eq 99 ] && printf '%s\n' "$out" | grep -q "depends on uninitialised value"; then
    echo "valgrind reported the variable-time comparison, as it must"
    exit 0
fi
printf '%s\n' "$out"
echo "expected valgrind to report a branch on secret data (exit 99), got exit $rc" >&2
exit 1
