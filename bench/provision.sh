#!/bin/sh
# The factory's figure (issue 17; docs/benchmarks.md, "Provisioning"):
#
#     sh bench/provision.sh BUILD OUTFILE      # from the repository root
#
# prints `name: value` lines and appends them to OUTFILE:
#   provision_devices_per_s   `latchkey provision` of a batch of
#                             LK_BENCH_PROVISION_DEVICES (1,000) devices, all
#                             keys in one SoftHSM2 token, a file CA, a P-256
#                             manufacturer key; the whole command timed
#                             (keys, certificates, manifest, signature)
#   p11_keygen_per_s          the baseline, same run, same kind of fresh token:
#                             bench_p11gen making as many P-256 keys through
#                             the same PKCS#11 backend, one handle (the
#                             token's share of the work, without
#                             certificates or manifest)
#   provision_vs_keygen       median of the per-pair ratios (1.0 = the CA and
#                             the manifest cost nothing beside the token)
# Pairs alternate provision/baseline: LK_BENCH_PROVISION_ROUNDS of them
# (default 1: on SoftHSM2 a pair of 1,000 takes several minutes). The tokens live in /dev/shm when there is one:
# SoftHSM2's file store rewrites its object files on every change, and on a
# disk the figure would be the disk's. SoftHSM2 also reads every object of a
# token on each operation, so the cost per key grows with the token's size:
# both figures are for a token that goes from 0 to N keys.
set -eu
BUILD=${1:?usage: sh bench/provision.sh BUILD OUTFILE}
OUT=${2:?usage: sh bench/provision.sh BUILD OUTFILE}
N=${LK_BENCH_PROVISION_DEVICES:-1000}
ROUNDS=${LK_BENCH_PROVISION_ROUNDS:-1}
MODULE=${LK_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SOFTHSM_UTIL=${LK_SOFTHSM_UTIL:-softhsm2-util}
GEN="$BUILD/bench/bench_p11gen"

. bench/common.sh
bench_need "$TOOL" "$GEN" "$MODULE"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then TMPDIR=/dev/shm; export TMPDIR; fi
bench_tmp provision

"$TOOL" ca init --ca "$TMP/ca" >/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/signer.pem" 2>/dev/null
export LATCHKEY_PKCS11_PIN=1234

# new_token NAME: a fresh SoftHSM2 token NAME with its own configuration.
new_token() {
    rm -rf "$TMP/$1"
    mkdir -p "$TMP/$1/tokens"
    printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' \
        "$TMP/$1/tokens" > "$TMP/$1/softhsm2.conf"
    SOFTHSM2_CONF="$TMP/$1/softhsm2.conf" "$SOFTHSM_UTIL" --init-token --free --label "$1" \
        --so-pin 5678 --pin 1234 >/dev/null
}
now() { date +%s.%N; }

ours=""; base=""; ratios=""
i=0
while [ $i -lt "$ROUNDS" ]; do
    new_token factory
    rm -f "$TMP/m.jsonl" "$TMP/m.jsonl.jws"
    t0=$(now)
    SOFTHSM2_CONF="$TMP/factory/softhsm2.conf" $PIN "$TOOL" provision --ca "$TMP/ca" \
        --token "pkcs11:token=factory;object=%s?module-path=$MODULE" --batch "bench-$i" \
        --prefix dev- --count "$N" --signer "$TMP/signer.pem" --manufacturer bench \
        --out "$TMP/m.jsonl" >/dev/null
    t1=$(now)
    o=$(awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", n / (b - a)}')
    [ "$(wc -l < "$TMP/m.jsonl")" -eq $((N + 1)) ] || { echo "provision.sh: the manifest is short" >&2; exit 1; }
    new_token base
    b=$(SOFTHSM2_CONF="$TMP/base/softhsm2.conf" $PIN "$GEN" \
        "pkcs11:token=base?module-path=$MODULE&pin-value=1234" "$N")
    ours="$ours $o"; base="$base $b"
    ratios="$ratios $(awk -v o="$o" -v b="$b" 'BEGIN {printf "%.4f", o / b}')"
    i=$((i + 1))
done
echo "provision pairs (provision/keygen):$ratios"
emit provision_devices_per_s "$(echo $ours | tr ' ' '\n' | median)"
emit p11_keygen_per_s "$(echo $base | tr ' ' '\n' | median)"
emit provision_vs_keygen "$(echo $ratios | tr ' ' '\n' | median | awk '{printf "%.3f", $1}')"
