#!/bin/sh
# Install the Debian 12 packages latchkey needs to build, test and run its
# demo. Installs only what is missing; asks nothing when run as root.
set -eu

PKGS="build-essential cmake pkg-config openssl libssl-dev
libsqlite3-dev sqlite3 libjansson-dev libcmocka-dev libp11-kit-dev
softhsm2 mosquitto mosquitto-dev libmosquitto-dev mosquitto-clients
python3 python3-jwt python3-paho-mqtt python3-cryptography python3-pytest
gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
clang libclang-rt-14-dev libjwt-dev nftables iproute2"

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
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
