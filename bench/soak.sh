#!/bin/sh
# The short soak for `make bench` (docs/benchmarks.md, "Soak"): the whole service in use for
# LK_BENCH_SOAK_SECONDS (60) with LK_BENCH_SOAK_DEVICES (100) devices publishing one numbered event
# a second each; its figures (soak_lost_messages among them) appended to OUTFILE.
#     sh bench/soak.sh BUILD OUTFILE
# `make soak` runs the hour (tests/integration/soak.py --seconds 3600).
set -eu
BUILD=${1:?usage: sh bench/soak.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/soak.sh BUILD OUTFILE}
/usr/bin/python3 tests/integration/soak.py --build "$BUILD" --seconds "${LK_BENCH_SOAK_SECONDS:-60}" \
    --devices "${LK_BENCH_SOAK_DEVICES:-100}" --rate 1 --out "$OUT" ||
    echo "soak.sh: the soak lost messages, left descriptors or devices behind (figures above)" >&2
