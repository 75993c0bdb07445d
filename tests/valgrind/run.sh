#!/bin/sh
# make test-valgrind: integration suites with the broker (and its plugin) and latchkeyd running under
# valgrind's memcheck; then every process's report is read and the run fails on a leak or a memory
# error whose stack passes through latchkey's code (docs/robustness.md, "Sanitizers and leaks").
#
#     sh tests/valgrind/run.sh BUILD [SUITE...]
#
# SUITE: a file name in tests/integration (default: the list below). About 20 times slower than a
# plain run: not in `make test`, which runs every suite under ASan and UBSan instead.
set -eu
BUILD=$(cd "${1:?usage: run.sh BUILD [SUITE...]}" && pwd)
shift
SUITES=${*:-"test_plugin_auth.py test_token_cache_file.py test_plugin_topics.py test_api_devices.py
test_api_commands.py test_delivery.py test_http_bridge.py test_soak.py"}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
command -v valgrind >/dev/null || { echo "test-valgrind: valgrind is missing (sh scripts/install-deps.sh test)" >&2; exit 1; }
export LK_BIN_DIR="$BUILD/bin" LK_LIB_DIR="$BUILD/lib" LK_TEST_LIB_DIR="$BUILD/tests" \
    LK_SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so LK_SOFTHSM_UTIL=/usr/bin/softhsm2-util \
    LK_SOURCE_DIR="$SRC"
# The reader must see a leak of ours when there is one: a report made up here, first.
probe=$(mktemp -d "${TMPDIR:-/tmp}/lk-valgrind-probe.XXXXXX")
cat > "$probe/vg.1.log" <<'LOG'
==1== Command: /usr/sbin/mosquitto -c x.conf
==1==
==1== 64 bytes in 1 blocks are definitely lost in loss record 1 of 1
==1==    at 0x483877F: malloc (vg_replace_malloc.c:307)
==1==    by 0x4A1B2C3: tokens__load (tokens.c:42)
==1==    by 0x10F00D: plugin__handle (in /usr/sbin/mosquitto)
==1==
==1== ERROR SUMMARY: 1 errors from 1 contexts (suppressed: 0 from 0)
LOG
if /usr/bin/python3 "$SRC/tests/valgrind/check.py" "$probe" >/dev/null; then
    echo "test-valgrind: check.py did not see a made-up leak in latchkey's code" >&2
    exit 1
fi
rm -rf "$probe"
LK_VALGRIND_DIR=$(mktemp -d "${TMPDIR:-/tmp}/lk-valgrind.XXXXXX")
export LK_VALGRIND_DIR
failed=""
for s in $SUITES; do
    echo "== $s under valgrind (reports in $LK_VALGRIND_DIR)"
    if ! /usr/bin/python3 -m pytest -q -p no:cacheprovider "$SRC/tests/integration/$s"; then
        failed="$failed $s"
    fi
done
rc=0
/usr/bin/python3 "$SRC/tests/valgrind/check.py" "$LK_VALGRIND_DIR" || rc=1
if [ -n "$failed" ]; then
    echo "test-valgrind: suites failed under valgrind:$failed" >&2
    rc=1
fi
[ $rc -ne 0 ] || rm -rf "$LK_VALGRIND_DIR"
exit $rc
