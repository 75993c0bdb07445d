#!/bin/sh
# tests/package/inside.sh STEP — one step of the package test, run as root
# inside the Debian root that tests/package/run.sh made (booted with systemd,
# or a chroot when LK_NO_SYSTEMD=1). Exits non-zero with the reason.
set -eu

REG="--registry reg1 --project proj-one --region us-central1"
DB=/var/lib/latchkey/registry.db
export LATCHKEY_DB=$DB
systemd=1
[ -z "${LK_NO_SYSTEMD:-}" ] || systemd=0

say() { printf '  %s\n' "$*"; }
die() { printf '  FAIL: %s\n' "$*"; exit 1; }
check() { # DESCRIPTION COMMAND...
    d=$1; shift
    if "$@" >/tmp/check.out 2>&1; then say "ok: $d"; else cat /tmp/check.out; die "$d"; fi
}
mode_of() { stat -c '%a %U:%G' "$1"; }
active() { systemctl is-active --quiet "$1"; }
wait_active() {
    i=0
    until active "$1"; do
        i=$((i + 1)); [ $i -lt 50 ] || { systemctl status "$1" --no-pager | tail -20; return 1; }
        sleep 0.2
    done
}
main_pid() { systemctl show -p MainPID --value "$1"; }
ids() { sqlite3 "file:$1?mode=ro" "SELECT registry || '/' || device_id FROM devices ORDER BY 1"; }
device_run() { # OUT: the device connects, sends one event, stays 5 s
    echo '{"n": 1}' | latchkey-device --host localhost --port 8883 --ca /etc/latchkey/ca.crt \
        --project proj-one --region us-central1 --registry reg1 --device dev1 \
        --key dev1 --store /root/keys.store --duration 5 >"$1" 2>&1
}

case "$1" in
install)
    if [ $systemd = 1 ]; then
        wait_active mosquitto || die "Debian's mosquitto is not running before the install"
        before=$(main_pid mosquitto)
    fi
    check "the packages install (apt)" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y /debs/*.deb'
    check "group latchkey" getent group latchkey
    check "user latchkey (latchkeyd) in group latchkey" sh -c 'id -nG latchkey | grep -qw latchkey'
    check "user mosquitto joined group latchkey" sh -c 'id -nG mosquitto | grep -qw latchkey'
    check "user latchkey-device" getent passwd latchkey-device
    [ "$(mode_of /var/lib/latchkey)" = "2770 root:latchkey" ] || die "/var/lib/latchkey is $(mode_of /var/lib/latchkey)"
    [ "$(mode_of /etc/latchkey)" = "750 root:latchkey" ] || die "/etc/latchkey is $(mode_of /etc/latchkey)"
    say "ok: /var/lib/latchkey 2770 and /etc/latchkey 0750, root:latchkey"
    [ ! -e /etc/mosquitto/conf.d/latchkey.conf ] || die "the broker's drop-in was enabled by installing"
    say "ok: the plugin's drop-in stays disabled until latchkey setup"
    check "man pages" test -f /usr/share/man/man1/latchkey.1.gz -a -f /usr/share/man/man8/latchkeyd.8.gz \
        -a -f /usr/share/man/man1/latchkey-device.1.gz
    if [ $systemd = 1 ]; then
        wait_active mosquitto || die "mosquitto stopped"
        [ "$(main_pid mosquitto)" = "$before" ] || die "installing restarted the running broker"
        say "ok: the running broker was left alone (same process)"
        check "latchkeyd enabled" sh -c '[ "$(systemctl is-enabled latchkeyd)" = enabled ]'
        if active latchkeyd; then die "latchkeyd runs without a configuration"; fi
        say "ok: latchkeyd waits for /etc/latchkey/latchkeyd.conf (ConditionPathExists)"
    fi
    ;;
setup)
    check "latchkey setup" latchkey setup --host localhost --test-ca $REG --spool --metrics
    cat /tmp/check.out | sed 's/^/    /'
    [ "$(mode_of $DB)" = "660 root:latchkey" ] || die "$DB is $(mode_of $DB)"
    [ "$(mode_of /etc/latchkey/server.key)" = "640 root:latchkey" ] || die "server.key is $(mode_of /etc/latchkey/server.key)"
    say "ok: registry 0660 and server.key 0640, group latchkey"
    latchkey setup --host localhost $REG --spool --metrics >/tmp/setup2.out 2>&1 || { cat /tmp/setup2.out; die "setup again"; }
    if grep -E '^ *(created|installed|replaced) ' /tmp/setup2.out; then die "setup again changed something"; fi
    say "ok: setup again changes nothing (kept)"
    if [ $systemd = 1 ]; then
        systemctl daemon-reload
        check "restart mosquitto with the plugin" systemctl restart mosquitto
        wait_active mosquitto || die "mosquitto did not start with the plugin"
        check "start latchkeyd" systemctl start latchkeyd
        wait_active latchkeyd || die "latchkeyd did not start"
        sleep 1
        active latchkeyd || { journalctl -u latchkeyd --no-pager | tail; die "latchkeyd stopped"; }
        [ "$(ps -o user= -p "$(main_pid mosquitto)")" = mosquitto ] || die "mosquitto is not running as mosquitto"
        [ "$(ps -o user= -p "$(main_pid latchkeyd)")" = latchkey ] || die "latchkeyd is not running as latchkey"
        say "ok: mosquitto runs as mosquitto, latchkeyd as latchkey"
        for u in mosquitto latchkeyd; do
            for p in ProtectSystem=strict NoNewPrivileges=yes PrivateTmp=yes ProtectHome=yes; do
                systemctl show -p "${p%%=*}" "$u" | grep -qx "$p" || die "$u: $p is not in force"
            done
        done
        say "ok: both run sandboxed (ProtectSystem=strict, NoNewPrivileges, PrivateTmp, ProtectHome)"
        check "the plugin serves the registry" sh -c \
            'grep -q "serving registry" /var/log/mosquitto/mosquitto.log || journalctl -u mosquitto --no-pager | grep -q "serving registry"'
        check "latchkeyd logs to the journal" sh -c 'journalctl -u latchkeyd --no-pager | grep -q latchkeyd'
    fi
    ;;
device)
    latchkey key generate --key dev1 --store /root/keys.store >/root/dev1.pem
    check "a device registered" latchkey devices create dev1 $REG --public-key path=/root/dev1.pem,type=es256
    check "a config" latchkey devices configs update dev1 $REG --config-data '{"v": 1}'
    device_run /root/dev1.out || true
    grep -q 'config: {"v": 1}' /root/dev1.out || { cat /root/dev1.out; die "the device got no config"; }
    say "ok: the device connected over TLS and got its config"
    check "the broker logged the device's connection" grep -q 'devices/dev1' /var/log/mosquitto/mosquitto.log
    if [ $systemd = 1 ]; then
        # The agent as the packaged service, under its own user and sandbox.
        install -d -o latchkey-device -g latchkey-device -m 700 /var/lib/latchkey-device
        install -o latchkey-device -g latchkey-device -m 600 /root/keys.store /var/lib/latchkey-device/keys.store
        install -m 644 /etc/latchkey/ca.crt /var/lib/latchkey-device/ca.crt
        printf 'LATCHKEY_DEVICE_OPTIONS="%s"\n' "--host localhost --ca /var/lib/latchkey-device/ca.crt \
--project proj-one --region us-central1 --registry reg1 --device dev1 --key dev1 \
--store /var/lib/latchkey-device/keys.store" >/etc/default/latchkey-device
        check "systemctl start latchkey-device" systemctl start latchkey-device
        wait_active latchkey-device || die "the agent's service did not start"
        [ "$(ps -o user= -p "$(main_pid latchkey-device)")" = latchkey-device ] || die "the agent does not run as latchkey-device"
        latchkey devices configs update dev1 $REG --config-data '{"v": 2}' >/dev/null
        i=0
        until journalctl -u latchkey-device --no-pager | grep -q 'config: {"v": 2}'; do
            i=$((i + 1)); [ $i -lt 50 ] || { journalctl -u latchkey-device --no-pager | tail; die "the agent's service got no config"; }
            sleep 0.2
        done
        say "ok: the agent runs as the service latchkey-device (its user, its sandbox) and gets configs"
        systemctl stop latchkey-device
        latchkey devices configs update dev1 $REG --config-data '{"v": 1}' >/dev/null
    fi
    ;;
reload)
    fp() { openssl s_client -connect localhost:"$1" -servername localhost </dev/null 2>/dev/null |
           openssl x509 -noout -fingerprint -sha256; }
    old=$(fp 8883)
    cd /etc/latchkey
    openssl req -new -key server.key -subj /CN=localhost -out /tmp/s.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >/tmp/s.ext
    openssl x509 -req -in /tmp/s.csr -CA ca.crt -CAkey test-ca.key -CAcreateserial -days 30 \
        -extfile /tmp/s.ext -out server.crt.new 2>/dev/null
    chmod 644 server.crt.new && mv server.crt.new server.crt
    check "systemctl reload latchkeyd" systemctl reload latchkeyd
    sleep 1
    check "latchkeyd re-read its certificate" sh -c 'journalctl -u latchkeyd --no-pager | grep -q "certificate reloaded"'
    check "systemctl reload mosquitto" systemctl reload mosquitto
    sleep 2
    new=$(fp 8883)
    [ -n "$new" ] && [ "$new" != "$old" ] || die "mosquitto still serves the old certificate after reload"
    say "ok: mosquitto serves the new certificate after reload"
    ;;
upgrade)
    ids $DB >/root/devices.before
    latchkey devices configs list dev1 $REG >/root/configs.before 2>&1 || true
    if [ $systemd = 1 ]; then m0=$(main_pid mosquitto); d0=$(main_pid latchkeyd); fi
    check "the next release installs over this one (apt)" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y /debs/next/*.deb'
    sed 's/^/    /' /tmp/check.out | grep -i 'latchkey:' || true
    [ "$(sqlite3 "file:$DB?mode=ro" "SELECT value FROM meta WHERE key = 'schema_version'")" = 10 ] ||
        die "the registry was not migrated to schema 10"
    check "latchkey migrate --check: current" latchkey migrate --db $DB --check
    check "a backup was taken before the migration" sh -c 'ls -d /var/backups/latchkey/pre-upgrade-*'
    ids $DB >/root/devices.after
    cmp /root/devices.before /root/devices.after || die "devices changed in the upgrade"
    latchkey devices configs list dev1 $REG >/root/configs.after 2>&1 || true
    cmp /root/configs.before /root/configs.after || die "configs changed in the upgrade"
    say "ok: schema 10, every device ($(wc -l </root/devices.after)) and config kept"
    if [ $systemd = 1 ]; then
        wait_active mosquitto || die "mosquitto is not running after the upgrade"
        wait_active latchkeyd || die "latchkeyd is not running after the upgrade"
        [ "$(main_pid mosquitto)" != "$m0" ] || die "mosquitto still runs the old plugin"
        [ "$(main_pid latchkeyd)" != "$d0" ] || die "latchkeyd still runs the old program"
        say "ok: both services restarted on the new release"
        device_run /root/dev1.again || true
        grep -q 'config: {"v": 1}' /root/dev1.again || { cat /root/dev1.again; die "the device does not connect after the upgrade"; }
        say "ok: the device connects after the upgrade"
    fi
    ;;
backup)
    # A writer changes the registry all along the backup.
    (i=0; while [ $i -lt 150 ]; do i=$((i + 1))
        latchkey devices create "load-$i" $REG >/dev/null 2>&1
        latchkey devices configs update dev1 $REG --config-data "{\"i\": $i}" >/dev/null 2>&1
     done; touch /root/writer.done) &
    writer=$!
    sleep 1
    check "latchkey backup while the registry is written" \
        latchkey backup --db $DB --spool /var/lib/latchkey/spool.db /root/backup
    wait $writer
    [ -f /root/writer.done ] || die "the writer did not finish"
    n=$(ids /root/backup/registry.db | grep -c 'load-' || true)
    [ "$n" -gt 0 ] && [ "$n" -lt 150 ] || say "note: the backup caught $n of the 150 devices being added"
    check "the backup is consistent" sh -c "sqlite3 'file:/root/backup/registry.db?mode=ro' 'PRAGMA integrity_check' | grep -qx ok"
    ids /root/backup/registry.db >/root/expected-devices
    say "ok: backup of $(wc -l </root/expected-devices) devices taken under load"
    ;;
restore)
    check "the packages install on the other machine (apt)" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y /debs/*.deb'
    check "latchkey restore" latchkey restore --db $DB --spool /var/lib/latchkey/spool.db /root/backup
    ids $DB >/root/restored-devices
    cmp /root/expected-devices /root/restored-devices || die "the restored registry differs from the backup"
    check "the tool reads the restored registry" sh -c "latchkey devices list $REG | grep -q dev1"
    [ "$(mode_of $DB)" = "660 root:latchkey" ] || die "restored $DB is $(mode_of $DB)"
    say "ok: restored on another machine: $(wc -l </root/restored-devices) devices, 0660 root:latchkey"
    ;;
remove)
    check "remove the plugin and latchkeyd" dpkg -r latchkey-mosquitto-plugin latchkeyd
    [ ! -e /etc/mosquitto/conf.d/latchkey.conf ] && [ -e /etc/mosquitto/conf.d/latchkey.conf.removed ] ||
        die "the drop-in of a removed plugin is still enabled"
    wait_active mosquitto || die "the broker does not run after the plugin's removal"
    [ -f $DB ] || die "removing deleted the registry"
    say "ok: removed: the broker runs without the plugin, the registry is kept"
    ;;
purge)
    check "purge everything" dpkg -P latchkey-mosquitto-plugin latchkeyd latchkey-common latchkey-device latchkey
    [ ! -e /var/lib/latchkey ] && [ ! -e /etc/latchkey ] || die "purging left /var/lib/latchkey or /etc/latchkey"
    [ ! -e /etc/mosquitto/conf.d/latchkey.conf.removed ] || die "purging left the broker's drop-in"
    wait_active mosquitto || die "the broker does not run after the purge"
    say "ok: purged: the registry and /etc/latchkey are gone, Debian's broker runs"
    ;;
journal)
    journalctl --no-pager -n 120 || true
    tail -30 /var/log/mosquitto/mosquitto.log 2>/dev/null || true
    ;;
*)
    die "unknown step $1"
    ;;
esac
