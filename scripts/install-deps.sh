#!/bin/sh
# Install the Debian 12 packages latchkey needs. Installs only what is
# missing; asks nothing when run as root.
#
#   sh scripts/install-deps.sh run    build, install and `make demo`
#   sh scripts/install-deps.sh deb    building the Debian packages (`make deb`)
#   sh scripts/install-deps.sh test-deb  and installing them in a fresh Debian root (`make test-deb`)
#   sh scripts/install-deps.sh test   the above, and what `make test` and `make bench` add
#                                     (unit-test and fuzz toolchains, the Cortex-M0 emulator,
#                                     the independent Python clients, nftables, valgrind,
#                                     wrk, and Node.js for Google's own client library)
set -eu

RUN="build-essential cmake pkg-config openssl libssl-dev
libsqlite3-dev sqlite3 libjansson-dev libp11-kit-dev libevent-dev libcurl4-openssl-dev
softhsm2 mosquitto mosquitto-dev libmosquitto-dev mosquitto-clients
python3 python3-jwt python3-cryptography curl"
TEST="libcmocka-dev python3-paho-mqtt python3-pytest
gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
clang libclang-rt-14-dev libjwt-dev nftables iproute2 valgrind wrk python3-requests
chromium man-db"
# man-db: ctest man/pages renders the man pages as lintian does (man --warnings,
# lexgrog); building them needs only sh and awk.
# chromium: tests/integration/test_console_ui.py drives the web console in it,
# headless, through puppeteer-core (installed by the test with npm ci).
# tests/integration/test_api_npm.py runs Google's @google-cloud/iot under
# Node.js (>= 18; it installs the library itself with npm ci): Debian's
# nodejs and npm, unless a node and npm are already on PATH (NodeSource's,
# nvm's), which would conflict with them.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    TEST="$TEST nodejs npm"
fi

# The packages are built with Debian's own tools and checked by lintian
# (`make deb`; README installs them); `make test-deb` boots them in a Debian
# root of their own.
DEB="debhelper dpkg-dev lintian man-db"
TEST_DEB="mmdebstrap systemd-container"

case "${1:-test}" in
    run) PKGS=$RUN ;;
    deb) PKGS="$RUN $DEB" ;;
    test-deb) PKGS="$RUN $DEB $TEST_DEB" ;;
    test) PKGS="$RUN $DEB $TEST" ;;
    *) echo "usage: install-deps.sh run|deb|test-deb|test" >&2; exit 2 ;;
esac

missing=""
for p in $PKGS; do
    # dpkg-query prints "install ok installed" only for a complete install.
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "latchkey: installing missing Debian packages:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "latchkey: need root (or sudo) to install:$missing" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "latchkey: installed:$missing"
