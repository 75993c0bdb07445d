#!/bin/sh
# What the installed libraries promise, they contain (ctest install/libraries,
# run by `make test`; docs/architecture.md, "What `make install` installs").
#
#   sh tests/install/run.sh BUILD_DIR SOURCE_DIR
#
# Installs the build into a temporary prefix and, for each library
# (liblatchkey-core, -se, -device, -verify, -registry, -spool):
#  1. its headers are those its install component installs, and every public
#     header belongs to exactly one library;
#  2. `nm -D` of the installed .so lists exactly the functions those headers
#     declare (gcc -aux-info reads the declarations): nothing missing, nothing
#     internal exported;
#  3. tests/install/use_LAYER.c, compiled with nothing but
#     `pkg-config --cflags --libs latchkey-LAYER` from the installed tree,
#     refers to every one of those functions, links and runs;
#  4. the .so needs no library of another layer's kind (the device client
#     no SQLite, jansson or service library) and no path into the build tree.
# Then a device image (the components core, se and device) builds and runs
# the device program alone, and latchkey.pc (everything) links.
#
# Environment: CC (default cc), LK_INSTALL_TEST_CFLAGS (the build's sanitizer
# flags, which a program linking instrumented libraries needs too),
# LK_SOFTHSM_MODULE and LK_SOFTHSM_UTIL (a token for the PKCS#11 backend).
set -eu
BUILD=$(cd "${1:?usage: run.sh BUILD_DIR SOURCE_DIR}" && pwd)
SRC=$(cd "${2:?usage: run.sh BUILD_DIR SOURCE_DIR}" && pwd)
CC=${CC:-cc}
EXTRA=${LK_INSTALL_TEST_CFLAGS:-}
SOFTHSM_MODULE=${LK_SOFTHSM_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
SOFTHSM_UTIL=${LK_SOFTHSM_UTIL:-softhsm2-util}
LAYERS="core se device verify registry spool"
# Nothing from the source tree may reach the compiler but through pkg-config.
unset CPATH C_INCLUDE_PATH LIBRARY_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR || true

work=$(mktemp -d "${TMPDIR:-/tmp}/lk-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=0
fail() {
    echo "install: FAIL: $*" >&2
    failed=1
}

# The .pc files are relocatable: PKG_CONFIG_PATH at an installed tree is all
# a program needs.
use_prefix() {
    pc=$(find "$1" -name latchkey-core.pc | head -n 1)
    [ -n "$pc" ] || { echo "install: no latchkey-core.pc under $1" >&2; exit 1; }
    PKG_CONFIG_PATH=$(dirname "$pc")
    export PKG_CONFIG_PATH
    libdir=$(pkg-config --variable=libdir latchkey-core)
}

prefix=$work/prefix
cmake --install "$BUILD" --prefix "$prefix" >/dev/null
use_prefix "$prefix"
echo "install: $prefix (libraries in $libdir)"

# 1. Headers per library, from each component installed alone.
: > "$work/all-headers"
for layer in $LAYERS; do
    cmake --install "$BUILD" --prefix "$work/only-$layer" --component "$layer" >/dev/null
    (cd "$work/only-$layer" && find . -path '*/latchkey/*.h' -exec basename {} \; | sort) > "$work/headers-$layer"
    [ -s "$work/headers-$layer" ] || fail "the $layer component installs no header"
    cat "$work/headers-$layer" >> "$work/all-headers"
done
sort "$work/all-headers" | uniq -d > "$work/dup"
[ ! -s "$work/dup" ] || fail "headers installed by two libraries: $(tr '\n' ' ' < "$work/dup")"
(cd "$SRC/include/latchkey" && printf '%s\n' *.h | sort) > "$work/src-headers"
sort -u "$work/all-headers" > "$work/all-sorted"
if ! cmp -s "$work/src-headers" "$work/all-sorted"; then
    fail "public headers and installed ones differ: $(diff "$work/src-headers" "$work/all-sorted" | grep '^[<>]' | tr '\n' ' ')"
fi

# The functions declared in the given headers (basenames), from gcc's
# -aux-info: one line per declaration, "/* FILE:LINE:... */ extern TYPE NAME (ARGS);".
declared() {
    layer=$1
    shift
    for h in "$@"; do echo "#include <latchkey/$h>"; done > "$work/decl-$layer.c"
    # shellcheck disable=SC2046
    gcc -std=c11 $(pkg-config --cflags "latchkey-$layer") -aux-info "$work/aux-$layer" \
        -c "$work/decl-$layer.c" -o "$work/decl-$layer.o"
    for h in "$@"; do
        grep -F "/latchkey/$h:" "$work/aux-$layer" | grep -v '\*/ static ' |
            sed -E 's|^/\* [^*]*\*/ [^(]*[ *]([A-Za-z_][A-Za-z0-9_]*) \(.*|\1|'
    done | sort -u
}

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" \
    -out "$work/ca.crt" -subj /CN=latchkey-install-test -days 1 >/dev/null 2>&1
mkdir -p "$work/tokens" "$work/store" "$work/db"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$work/tokens" > "$work/softhsm2.conf"
SOFTHSM2_CONF=$work/softhsm2.conf "$SOFTHSM_UTIL" --init-token --free --label lk-install \
    --so-pin 5678 --pin 1234 >/dev/null

run_program() {
    layer=$1
    case $layer in
        core | verify) set -- ;;
        se) set -- "$work/store" "$SOFTHSM_MODULE" lk-install 1234 ;;
        device) set -- "$work/ca.crt" "$port" ;;
        registry) set -- "$work/db" ;;
        spool) set -- "$work/spool.db" ;;
    esac
    SOFTHSM2_CONF=$work/softhsm2.conf LD_LIBRARY_PATH=$libdir "$work/use_$layer" "$@"
}

# What a library must not need, beyond its own layer.
forbidden() {
    case $1 in
        core) echo 'libcrypto|libssl|libmosquitto|libsqlite3|libjansson|liblatchkey' ;;
        se) echo 'libssl|libmosquitto|libsqlite3|libjansson|liblatchkey-(device|verify|registry)' ;;
        device) echo 'libsqlite3|libjansson|liblatchkey-(se|verify|registry)' ;;
        verify) echo 'libssl|libmosquitto|libsqlite3|liblatchkey-(se|device|registry)' ;;
        registry) echo 'libssl|libmosquitto|liblatchkey-(se|device)' ;;
        spool) echo 'libssl|libcrypto|libmosquitto|libjansson|liblatchkey-(se|device|verify|registry)' ;;
    esac
}

for layer in $LAYERS; do
    so=$libdir/liblatchkey-$layer.so
    [ -f "$so" ] || { fail "$so is not installed"; continue; }
    # shellcheck disable=SC2046
    declared "$layer" $(cat "$work/headers-$layer") > "$work/declared-$layer"
    [ -s "$work/declared-$layer" ] || fail "no function found in the headers of $layer"

    # 2. Exactly the declared functions are exported.
    nm -D --defined-only "$so" | awk '{print $NF}' | sed 's/@.*//' | sort -u > "$work/exported-$layer"
    missing=$(comm -23 "$work/declared-$layer" "$work/exported-$layer" | tr '\n' ' ')
    extra=$(comm -13 "$work/declared-$layer" "$work/exported-$layer" | tr '\n' ' ')
    [ -z "$missing" ] || fail "liblatchkey-$layer.so lacks declared functions: $missing"
    [ -z "$extra" ] || fail "liblatchkey-$layer.so exports what no header declares: $extra"

    # 3. The user's program, from the installed tree only.
    # shellcheck disable=SC2046,SC2086
    if ! "$CC" -std=c11 -Wall -Wextra -Werror $EXTRA $(pkg-config --cflags "latchkey-$layer") \
            -c "$SRC/tests/install/use_$layer.c" -o "$work/use_$layer.o"; then
        fail "use_$layer.c does not compile against the installed headers"
        continue
    fi
    nm -u "$work/use_$layer.o" | awk '{print $NF}' | sort -u > "$work/used-$layer"
    unused=$(comm -23 "$work/declared-$layer" "$work/used-$layer" | tr '\n' ' ')
    [ -z "$unused" ] || fail "tests/install/use_$layer.c does not call: $unused"
    # shellcheck disable=SC2046,SC2086
    if ! "$CC" $EXTRA "$work/use_$layer.o" $(pkg-config --libs "latchkey-$layer") -o "$work/use_$layer"; then
        fail "use_$layer does not link with pkg-config --libs latchkey-$layer"
        continue
    fi
    run_program "$layer" || fail "use_$layer failed"

    # 4. What it needs, and where it looks.
    needed=$(readelf -d "$so" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    bad=$(echo "$needed" | tr ' ' '\n' | grep -E "$(forbidden "$layer")" | tr '\n' ' ' || true)
    [ -z "$bad" ] || fail "liblatchkey-$layer.so needs $bad"
    if readelf -d "$so" | grep -E 'R(UN)?PATH' | grep -qF "$BUILD"; then
        fail "liblatchkey-$layer.so looks for libraries in the build tree"
    fi
    echo "install: liblatchkey-$layer: $(wc -l < "$work/declared-$layer") functions exported and called; needs $needed"
done

# A device image: core, se and device, nothing of the service side; the
# command docs/architecture.md gives for an agent.
dev=$work/device-only
for c in core se device; do
    cmake --install "$BUILD" --prefix "$dev" --component "$c" >/dev/null
done
use_prefix "$dev"
flags=$(pkg-config --cflags --libs --static latchkey-device latchkey-se)
if echo "$flags" | grep -Eq 'sqlite|jansson|latchkey-(verify|registry)'; then
    fail "pkg-config latchkey-device latchkey-se brings in the service side: $flags"
fi
# shellcheck disable=SC2046,SC2086
if "$CC" -std=c11 -Wall -Wextra -Werror $EXTRA "$SRC/tests/install/use_device.c" \
        $(pkg-config --cflags --libs latchkey-device latchkey-se) -o "$work/use_device"; then
    run_program device >/dev/null || fail "use_device failed with a device image install"
else
    fail "use_device does not build with a device image install (core, se, device)"
fi
echo "install: a device image (core, se, device) builds and runs the device program"

# Everything through latchkey.pc.
use_prefix "$prefix"
# shellcheck disable=SC2046,SC2086
if "$CC" $EXTRA "$work/use_registry.o" $(pkg-config --libs latchkey) -o "$work/use_all"; then
    mkdir -p "$work/db-all"
    LD_LIBRARY_PATH=$libdir "$work/use_all" "$work/db-all" >/dev/null || fail "the program linked with latchkey.pc failed"
else
    fail "a program does not link with pkg-config --libs latchkey"
fi

if [ "$failed" -ne 0 ]; then
    exit 1
fi
echo "install: every library contains exactly what its headers promise"
