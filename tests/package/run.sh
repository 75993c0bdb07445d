#!/bin/sh
# tests/package/run.sh DEB_DIR — latchkey's Debian packages on a fresh Debian 12
# (`make test-deb`, minutes long; not part of `make test`).
#
# A Debian 12 root made here from Debian's packages (mmdebstrap; cached in
# DEB_DIR/cache), booted with systemd as PID 1 (systemd-nspawn -b, its own
# network namespace). In it, as a person would:
#   1. install the packages while Debian's Mosquitto runs: the broker is left
#      alone, latchkeyd waits for its configuration;
#   2. latchkey setup (test CA), restart the broker, start latchkeyd: both run
#      under their own users with their sandboxing; a device connects, sends
#      and gets its config, also as the packaged agent service;
#      systemctl reload re-reads certificates;
#   3. upgrade to a rebuilt package whose registry schema is one newer
#      (LK_TEST_SCHEMA_BUMP): migrated, every device and config intact, the
#      services running the new code, the device connects again;
#   4. a backup while a writer keeps changing the registry, restored in a
#      second fresh root ("another machine"), where every device is;
#   5. remove (the broker keeps running, without the plugin; data kept), then
#      purge (data gone).
# Where systemd cannot run as PID 1 in a container here, the parts that need
# it print SKIPPED and the rest runs in a chroot.
set -eu

DEBS=$(cd "${1:?usage: run.sh DEB_DIR}" && pwd)
top=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=$DEBS/cache
WORK=$(mktemp -d /tmp/latchkey-pkgtest.XXXXXX)
NSPAWN_PID=""
LEADER=""
failures=0
skipped=""

say() { printf 'package test: %s\n' "$*"; }
fail() { say "FAIL: $*"; failures=$((failures + 1)); }
die() { say "FAIL: $*"; exit 1; }

cleanup() {
    if [ -n "$NSPAWN_PID" ]; then
        kill "$NSPAWN_PID" 2>/dev/null || true
        sleep 2
        kill -9 "$NSPAWN_PID" 2>/dev/null || true
        wait "$NSPAWN_PID" 2>/dev/null || true
    fi
    for r in "$WORK"/root*; do
        [ -d "$r" ] || continue
        for m in proc sys dev/pts dev; do umount -l "$r/$m" 2>/dev/null || true; done
    done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

main_debs() { # DIR: the packages a broker host installs, not dbgsym or -dev
    for p in latchkey latchkey-common latchkeyd latchkey-mosquitto-plugin latchkey-device; do
        ls "$1"/${p}_*.deb
    done
}

# ---- the root file system, from Debian's packages ----
deps=$(for d in $(main_debs "$DEBS"); do dpkg-deb -f "$d" Depends; done | tr ',' '\n' |
       sed 's/[(|].*//; s/^ *//; s/ *$//' | grep -v '^latchkey\|^$' | sort -u | tr '\n' ',')
include="systemd,systemd-sysv,dbus,procps,openssl,ca-certificates,sqlite3,mosquitto-clients,${deps%,}"
key=$(printf '%s' "$include" | sha256sum | cut -c1-16)
base=$CACHE/bookworm-$key.tar
if [ ! -f "$base" ]; then
    mkdir -p "$CACHE"
    say "making a Debian 12 root with mmdebstrap (cached in $base)"
    mmdebstrap --quiet --variant=minbase --include="$include" bookworm "$base.tmp.tar" \
        http://deb.debian.org/debian >"$WORK/mmdebstrap.log" 2>&1 ||
        { tail -20 "$WORK/mmdebstrap.log"; die "mmdebstrap failed"; }
    mv "$base.tmp.tar" "$base"
fi
new_root() { # NAME -> a fresh root in $WORK/NAME
    mkdir "$WORK/$1"
    tar -xf "$base" -C "$WORK/$1"
    echo "latchkey-test" > "$WORK/$1/etc/hostname"
    printf '127.0.0.1\tlocalhost latchkey-test\n::1\tlocalhost ip6-localhost\n' > "$WORK/$1/etc/hosts"
    mkdir -p "$WORK/$1/debs"
}

# ---- the next release: one more schema migration ----
# (LK_PKGTEST_NEXT=DIR: packages built so before, to re-run the test quickly)
if [ -n "${LK_PKGTEST_NEXT:-}" ]; then
    ln -s "$(cd "$LK_PKGTEST_NEXT" && pwd)" "$WORK/next"
else
    say "building the next release (schema + 1) in $WORK/next"
    LK_TEST_SCHEMA_BUMP=1 LK_DEB_VERSION="$(dpkg-deb -f "$(ls "$DEBS"/latchkey_*.deb)" Version)+next1" \
        sh "$top/scripts/build-deb.sh" "$WORK/next" >"$WORK/next.log" 2>&1 ||
        { tail -20 "$WORK/next.log"; die "building the next release failed"; }
fi

new_root rootA
cp $(main_debs "$DEBS") "$WORK/rootA/debs/"
mkdir -p "$WORK/rootA/debs/next"
cp $(main_debs "$WORK/next") "$WORK/rootA/debs/next/"
cp "$top/tests/package/inside.sh" "$WORK/rootA/inside.sh"

# ---- boot it ----
boot() {
    systemd-nspawn --quiet --register=no --keep-unit --private-network -D "$WORK/rootA" \
        -b --console=pipe >"$WORK/boot.log" 2>&1 &
    NSPAWN_PID=$!
    i=0
    while [ $i -lt 100 ]; do
        LEADER=$(pgrep -P "$NSPAWN_PID" | head -1 || true)
        [ -n "$LEADER" ] && break
        sleep 0.2; i=$((i + 1))
    done
    [ -n "$LEADER" ] || return 1
    # systemd's bus appears some time after PID 1 starts: ask until it answers.
    i=0
    while [ $i -lt 180 ]; do
        st=$(nsenter -t "$LEADER" -m -u -i -n -p -r -w /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
             systemctl is-system-running 2>&1 || true)
        echo "$st" >"$WORK/state"
        case "$st" in running|degraded) return 0 ;; esac
        kill -0 "$NSPAWN_PID" 2>/dev/null || return 1
        sleep 0.5; i=$((i + 1))
    done
    return 1
}
inside() { # run inside.sh STEP in the booted root
    timeout 300 nsenter -t "$LEADER" -m -u -i -n -p -r -w \
        /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 sh /inside.sh "$@"
}
in_chroot() { # ROOT STEP...: the same steps without systemd
    r=$1; shift
    mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"
    rc=0
    chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        LK_NO_SYSTEMD=1 sh /inside.sh "$@" || rc=$?
    umount -l "$r/dev" "$r/proc" 2>/dev/null || true
    return $rc
}

if boot; then
    say "systemd runs as PID 1 in the container (pid $LEADER on this host)"
    for step in install setup device reload upgrade backup; do
        say "== $step"
        inside "$step" || fail "step $step"
        [ $failures -eq 0 ] || break
    done
else
    cat "$WORK/state" 2>/dev/null | head -3
    skipped="systemd as PID 1 (systemd-nspawn -b did not boot here): the services under systemd, their sandboxing, reload, the device's connection, the upgrade with running services"
    say "SKIPPED: $skipped"
    if [ -n "$NSPAWN_PID" ]; then kill "$NSPAWN_PID" 2>/dev/null || true; wait "$NSPAWN_PID" 2>/dev/null || true; NSPAWN_PID=""; fi
    for step in install setup upgrade backup; do
        say "== $step (chroot)"
        in_chroot "$WORK/rootA" "$step" || fail "step $step (chroot)"
        [ $failures -eq 0 ] || break
    done
fi

# ---- another machine: restore the backup there ----
if [ $failures -eq 0 ]; then
    say "== restore on another machine"
    new_root rootB
    cp $(main_debs "$WORK/next") "$WORK/rootB/debs/"
    cp "$top/tests/package/inside.sh" "$WORK/rootB/inside.sh"
    cp -a "$WORK/rootA/root/backup" "$WORK/rootB/root/backup"
    cp "$WORK/rootA/root/expected-devices" "$WORK/rootB/root/expected-devices"
    in_chroot "$WORK/rootB" restore || fail "restore on another machine"
fi

if [ $failures -eq 0 ] && [ -n "$LEADER" ]; then
    for step in remove purge; do
        say "== $step"
        inside "$step" || fail "step $step"
    done
fi

if [ $failures -ne 0 ]; then
    say "$failures step(s) failed; the container's journal:"
    [ -n "$LEADER" ] && inside journal 2>/dev/null | tail -60 || true
    exit 1
fi
[ -z "$skipped" ] || say "passed, with SKIPPED: $skipped"
say "all steps passed"
