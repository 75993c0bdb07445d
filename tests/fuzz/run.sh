#!/bin/sh
# Run every libFuzzer target for SECONDS each: `make fuzz` (FUZZ_SECONDS,
# default 60) and `make test-fuzz` (a short run inside `make test`).
#
#   sh tests/fuzz/run.sh BUILD SECONDS [TARGET...]
#
# Each target works in BUILD/fuzz-work/TARGET/: corpus/ starts as a copy of
# tests/fuzz/corpus/<name>/ (the repository is never written) and keeps what
# earlier runs found; crashes/ receives crash-*, leak-*, timeout-* and oom-*
# inputs. Exits non-zero if any target finds anything.
set -eu
BUILD=${1:?usage: run.sh BUILD SECONDS [TARGET...]}
SECS=${2:?usage: run.sh BUILD SECONDS [TARGET...]}
shift 2
TARGETS=${*:-"fuzz_verify fuzz_cred fuzz_b64url fuzz_iotcore fuzz_api_body fuzz_gateway_error fuzz_manifest"}
SRC=$(cd "$(dirname "$0")" && pwd)
# LeakSanitizer stays on: a leak on a rejected token is a bug.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=""
for t in $TARGETS; do
    bin="$BUILD/fuzz/$t"
    name=${t#fuzz_}
    work="$BUILD/fuzz-work/$t"
    mkdir -p "$work/corpus" "$work/crashes"
    cp "$SRC/corpus/$name"/* "$work/corpus/"
    extra=""
    case $t in
        fuzz_verify) extra="-dict=$SRC/verify.dict -max_len=6000" ;;
        fuzz_cred)   extra="-max_len=17000" ;;   # past LK_CRED_PEM_MAX
        fuzz_b64url) extra="-max_len=4096" ;;
        fuzz_iotcore) extra="-max_len=1024" ;;   # past LK_DEVICE_PATH_MAX
        fuzz_api_body) extra="-max_len=8192" ;;
        fuzz_gateway_error) extra="-max_len=8300" ;;   # past LK_GATEWAY_ERROR_MAX
        fuzz_manifest) extra="-max_len=70000" ;;   # past LK_MANIFEST_LINE_MAX
    esac
    echo "== $t: $SECS s, corpus $work/corpus, crashes to $work/crashes/"
    # shellcheck disable=SC2086
    if "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=4096 \
            -print_final_stats=1 -artifact_prefix="$work/crashes/" $extra \
            "$work/corpus" > "$work/log.txt" 2>&1; then
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$work/log.txt" |
            sed "s/^/$t /"
        grep -E '^#[0-9]+[[:space:]]+DONE' "$work/log.txt" | tail -1 | sed "s/^/$t /"
    else
        echo "$t: FAILED, log $work/log.txt; inputs:"
        ls -l "$work/crashes/"
        tail -60 "$work/log.txt"
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failures in:$failed" >&2
    exit 1
fi
echo "fuzz: no crash in $TARGETS"
