#!/bin/sh
# Run the libFuzzer targets: each for SECONDS (`make fuzz`, FUZZ_SECONDS,
# default 60; `make test-fuzz`, a short run inside `make test`), or each for
# a number of executions with a report (`make fuzz-campaign`, FUZZ_RUNS,
# default 10 million).
#
#   sh tests/fuzz/run.sh [--report FILE] BUILD SECONDS [TARGET...]
#   sh tests/fuzz/run.sh --runs N [--report FILE] BUILD [TARGET...]
#
# Each target works in BUILD/fuzz-work/TARGET/: corpus/ starts as a copy of
# tests/fuzz/corpus/<name>/ (the repository is never written) and keeps what
# earlier runs found; crashes/ receives crash-*, leak-*, timeout-* and oom-*
# inputs. With --report, one line per target is appended to FILE (a
# Markdown table: executions, seconds, exec/s, CPU seconds and executions
# per CPU second — the figure that holds on a loaded machine —, new units,
# findings, date, commit). Exits non-zero if any target finds anything (the
# other targets still run).
set -eu
RUNS="" REPORT=""
while [ $# -gt 0 ]; do
    case $1 in
        --runs) RUNS=${2:?--runs N}; shift 2 ;;
        --report) REPORT=${2:?--report FILE}; shift 2 ;;
        *) break ;;
    esac
done
BUILD=${1:?usage: run.sh BUILD SECONDS [TARGET...] | run.sh --runs N --report FILE BUILD [TARGET...]}
shift
if [ -z "$RUNS" ]; then
    SECS=${1:?usage: run.sh BUILD SECONDS [TARGET...]}
    shift
fi
ALL="fuzz_verify fuzz_cred fuzz_sa_token fuzz_b64url fuzz_iotcore fuzz_attach fuzz_rest_path fuzz_api_body
     fuzz_gateway_error fuzz_manifest fuzz_manifest_jws fuzz_import fuzz_registry_certs"
TARGETS=${*:-$ALL}
SRC=$(cd "$(dirname "$0")" && pwd)
# LeakSanitizer stays on: a leak on a rejected token is a bug. A 16 MB
# quarantine (not 256) still holds every input's frees, and halves the CPU
# time of the targets that run OpenSSL (docs/fuzzing.md).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1:quarantine_size_mb=16}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [ -n "$REPORT" ]; then
    commit=$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$SRC" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        commit="$commit+changes"
    fi
    if [ ! -s "$REPORT" ]; then
        echo "| target | executions | seconds | exec/s | CPU s | exec/CPU s | new units | findings | date (UTC) | commit |" \
            > "$REPORT"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---|" >> "$REPORT"
    fi
fi
stat_of() { # NAME LOG: a libFuzzer final statistic
    sed -n "s/^stat::$1:[[:space:]]*//p" "$2" | tail -1
}
# cpu_mark: cpu_sec = user + system seconds of this shell's children so far
# (`times`' second line, "1m2.5s 0m0.3s"); `times` must run in this shell,
# not in a $(...) subshell, which has children of its own.
cpu_file=$(mktemp)
trap 'rm -f "$cpu_file"' EXIT
cpu_mark() {
    times > "$cpu_file"
    cpu_sec=$(awk 'NR == 2 { t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
                             printf "%.2f", t }' "$cpu_file")
}
failed=""
for t in $TARGETS; do
    bin="$BUILD/fuzz/$t"
    name=${t#fuzz_}
    work="$BUILD/fuzz-work/$t"
    mkdir -p "$work/corpus" "$work/crashes"
    cp "$SRC/corpus/$name"/* "$work/corpus/"
    extra=""
    # -max_len a little past each parser's own cap, so the cap is fuzzed too,
    # except fuzz_manifest (below its 64 KiB line cap: see docs/fuzzing.md).
    case $t in
        fuzz_verify) extra="-dict=$SRC/verify.dict -max_len=6000" ;;
        fuzz_cred)   extra="-max_len=17000" ;;   # past LK_CRED_PEM_MAX
        fuzz_sa_token) extra="-dict=$SRC/verify.dict -max_len=4200" ;;   # past LK_VERIFY_MAX_LEN
        fuzz_b64url) extra="-max_len=4096" ;;
        fuzz_iotcore) extra="-max_len=1024" ;;   # past LK_DEVICE_PATH_MAX
        fuzz_attach) extra="-max_len=1400" ;;    # past the harness's 1024 + ATTACH_SLACK
        fuzz_rest_path) extra="-max_len=2048" ;;
        fuzz_api_body) extra="-max_len=8192" ;;
        fuzz_gateway_error) extra="-max_len=8300" ;;   # past LK_GATEWAY_ERROR_MAX
        fuzz_manifest) extra="-max_len=8192" ;;
        fuzz_manifest_jws) extra="-max_len=17000" ;;   # past LK_MANIFEST_JWS_MAX
        fuzz_import) extra="-max_len=8192" ;;
        fuzz_registry_certs) extra="-max_len=17000" ;;
    esac
    if [ -n "$RUNS" ]; then
        limit="-runs=$RUNS"
        echo "== $t: $RUNS runs, corpus $work/corpus, crashes to $work/crashes/"
    else
        limit="-max_total_time=$SECS"
        echo "== $t: $SECS s, corpus $work/corpus, crashes to $work/crashes/"
    fi
    start=$(date +%s)
    cpu_mark
    cpu0=$cpu_sec
    # shellcheck disable=SC2086
    if "$bin" $limit -timeout=10 -rss_limit_mb=4096 \
            -print_final_stats=1 -artifact_prefix="$work/crashes/" $extra \
            "$work/corpus" > "$work/log.txt" 2>&1; then
        found=0
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$work/log.txt" |
            sed "s/^/$t /"
        grep -E '^#[0-9]+[[:space:]]+DONE' "$work/log.txt" | tail -1 | sed "s/^/$t /"
    else
        found=1
        echo "$t: FAILED, log $work/log.txt; inputs:"
        ls -l "$work/crashes/"
        tail -60 "$work/log.txt"
        failed="$failed $t"
    fi
    if [ -n "$REPORT" ]; then
        secs=$(( $(date +%s) - start ))
        execs=$(stat_of number_of_executed_units "$work/log.txt")
        execs=${execs:-0}
        rate=$(stat_of average_exec_per_sec "$work/log.txt")
        [ "${rate:-0}" -gt 0 ] || rate=$(( execs / (secs > 0 ? secs : 1) ))
        cpu_mark
        cpu=$(awk -v a="$cpu0" -v b="$cpu_sec" 'BEGIN { printf "%.1f", b - a }')
        cpu_rate=$(awk -v n="$execs" -v c="$cpu" 'BEGIN { printf "%d", (c > 0 ? n / c : 0) }')
        echo "| $t | $execs | $secs | $rate | $cpu | $cpu_rate | $(stat_of new_units_added "$work/log.txt") |" \
             "$found | $(date -u +%Y-%m-%d) | $commit |" >> "$REPORT"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failures in:$failed" >&2
    exit 1
fi
echo "fuzz: no crash in $TARGETS"
