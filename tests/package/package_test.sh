#!/usr/bin/env bash
# The Debian package, built and installed for real: scripts/package builds it, its
# contents and metadata are checked, `dpkg -i` installs it, systemd-analyze verifies the
# unit, audsync migrates and serves as the user audsync with the packaged config and an
# EnvironmentFile like the packaged one filled in, and `dpkg --purge` leaves nothing.
# Needs root (dpkg, the system user). Slow on a fresh build directory: it builds audsync.
# Usage: package_test.sh SOURCE_DIR BUILD_DIR
#   BUILD_DIR is scripts/package's build directory (AUDSYNC_PACKAGE_BUILD); an existing
#   one is reused and only rebuilt where the sources changed.
set -euo pipefail
src=$(cd "$1" && pwd)
build=$2

fail() { echo "FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root: it installs and purges the package"
for tool in dpkg-deb dpkg-shlibdeps file systemd-analyze setpriv curl; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/deps installs it)"
done
# Never take over, and then purge, a real installation or someone else's user.
if dpkg-query -W -f='${Status}' audsync 2>/dev/null | grep -q 'installed'; then
    fail "the package audsync is already installed here; remove it before this test"
fi
if getent passwd audsync >/dev/null || getent group audsync >/dev/null; then
    fail "a user or group audsync already exists here; this test would delete it"
fi
[ ! -e /var/lib/audsync ] || fail "/var/lib/audsync exists; this test would delete it"

dir=$(mktemp -d /tmp/audsync-package-XXXXXX)
chmod 755 "$dir"  # the user audsync reads the serve config in it
serve_pid=
cleanup() {
    if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    # Whatever happened above: nothing stays installed.
    if dpkg-query -W -f='${Status}' audsync 2>/dev/null | grep -q 'installed\|config-files'; then
        dpkg --purge audsync >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

# --- build ------------------------------------------------------------------------------
start=$(date +%s)
deb=$(AUDSYNC_PACKAGE_BUILD=$build AUDSYNC_PACKAGE_DEPS=0 "$src/scripts/package" | tail -1)
echo "built $deb in $(($(date +%s) - start)) s"
[ -f "$deb" ] || fail "scripts/package printed no .deb: $deb"
version=$(sed -n 's/^project(audsync VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ "$(basename "$deb")" = "audsync_${version}_$(dpkg --print-architecture).deb" ] ||
    fail "unexpected file name $(basename "$deb") for version $version"

# --- metadata and contents, before installing ---------------------------------------------
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = audsync ] || fail "Package: $(field Package)"
[ "$(field Version)" = "$version" ] || fail "Version: $(field Version)"
[ -n "$(field Maintainer)" ] || fail "no Maintainer"
[ -n "$(field Section)" ] || fail "no Section"
[ -n "$(field Description)" ] || fail "no Description"
depends=$(field Depends)
dep_names=$(echo "$depends" | tr ',' '\n' | sed 's/^ *//; s/ .*//')
for lib in adduser libc6 libcurl4 libsqlite3-0 libssl3 libstdc++6; do
    echo "$dep_names" | grep -qxF "$lib" || fail "Depends lacks $lib: $depends"
done
dpkg-deb -e "$deb" "$dir/control"
[ "$(sort "$dir/control/conffiles")" = "$(printf '/etc/audsync/audsync.json\n/etc/default/audsync')" ] ||
    fail "conffiles: $(cat "$dir/control/conffiles")"
for s in postinst prerm postrm; do
    [ -x "$dir/control/$s" ] || fail "no executable $s in the control archive"
done

dpkg-deb -c "$deb" > "$dir/contents"
mode_of() {  # the permissions column of one path in the package
    awk -v p="./$1" '$6 == p { print $1 }' "$dir/contents"
}
[ "$(mode_of usr/bin/audsync)" = -rwxr-xr-x ] || fail "/usr/bin/audsync: $(mode_of usr/bin/audsync)"
[ "$(mode_of lib/systemd/system/audsync.service)" = -rw-r--r-- ] || fail "no unit in the package"
[ "$(mode_of etc/audsync/audsync.json)" = -rw-r----- ] ||
    fail "/etc/audsync/audsync.json in the package: '$(mode_of etc/audsync/audsync.json)', not 0640"
[ "$(mode_of etc/default/audsync)" = -rw-r----- ] ||
    fail "/etc/default/audsync in the package: '$(mode_of etc/default/audsync)', not 0640"
for doc in README.md docs/operations.md docs/security.md; do
    [ -n "$(mode_of "usr/share/doc/audsync/$doc")" ] || fail "no /usr/share/doc/audsync/$doc"
done
# The platform emulators and the benchmark are test tools: never packaged.
if grep -E 'emulator|audsync-bench' "$dir/contents" | grep -v '/usr/share/doc/'; then
    fail "test tools in the package (above)"
fi
[ "$(awk '$6 ~ /^\.\/usr\/bin\/./ { print $6 }' "$dir/contents")" = ./usr/bin/audsync ] ||
    fail "/usr/bin holds more than audsync: $(grep ' ./usr/bin/' "$dir/contents")"
if awk '{ print $2 }' "$dir/contents" | grep -v '^root/root$'; then
    fail "files in the package not owned by root"
fi

# --- install --------------------------------------------------------------------------
dpkg -i "$deb" > "$dir/dpkg-i.out" 2>&1 || { cat "$dir/dpkg-i.out"; fail "dpkg -i"; }
[ "$(/usr/bin/audsync version)" = "audsync $version" ] ||
    fail "audsync version printed '$(/usr/bin/audsync version)'"

getent passwd audsync > "$dir/passwd" || fail "postinst created no user audsync"
IFS=: read -r _ _ uid gid _ home shell < "$dir/passwd"
[ "$uid" -lt 1000 ] || fail "audsync is not a system user (uid $uid)"
[ "$(getent group audsync | cut -d: -f3)" = "$gid" ] || fail "audsync's group is not audsync"
[ "$home" = /var/lib/audsync ] || fail "audsync's home is $home"
case "$shell" in */nologin | */false) ;; *) fail "audsync's shell is $shell" ;; esac
[ "$(stat -c '%a %U:%G' /etc/audsync/audsync.json)" = "640 root:audsync" ] ||
    fail "/etc/audsync/audsync.json is $(stat -c '%a %U:%G' /etc/audsync/audsync.json)"
[ "$(stat -c '%a %U' /etc/default/audsync)" = "640 root" ] ||
    fail "/etc/default/audsync is $(stat -c '%a %U:%G' /etc/default/audsync)"
[ "$(stat -c '%a %U:%G' /var/lib/audsync)" = "750 audsync:audsync" ] ||
    fail "/var/lib/audsync is $(stat -c '%a %U:%G' /var/lib/audsync)"
[ ! -e /usr/bin/audsync-ld-emulator ] || fail "the LaunchDarkly emulator was installed"

# --- the unit -------------------------------------------------------------------------
# Offline: no running systemd is needed, but ExecStart's binary must exist (installed).
unit=/lib/systemd/system/audsync.service
systemd-analyze verify "$unit" > "$dir/verify" 2>&1 || { cat "$dir/verify"; fail "systemd-analyze verify"; }
if grep -i 'audsync' "$dir/verify"; then fail "systemd-analyze verify warns about the unit (above)"; fi
# shellcheck disable=SC2016 # a literal $MAINPID
for line in User=audsync Group=audsync StateDirectory=audsync \
    EnvironmentFile=-/etc/default/audsync \
    'ExecStart=/usr/bin/audsync serve --config /etc/audsync/audsync.json' \
    'ExecReload=/bin/kill -HUP $MAINPID' NoNewPrivileges=yes ProtectSystem=strict \
    ProtectHome=true PrivateTmp=true; do
    grep -qxF "$line" "$unit" || fail "the unit lacks $line"
done
# systemd's own exposure level (0.0 safest, 10.0 unprotected; --threshold counts tenths):
# the hardening must keep it at 2.0 or below (it is 1.4).
systemd-analyze security --offline=true --threshold=20 "$unit" > "$dir/security" 2>&1 ||
    { tail -3 "$dir/security"; fail "systemd-analyze security: exposure above 2.0"; }
echo "unit: $(grep -o 'Overall exposure level.*' "$dir/security")"

# --- the config and its EnvironmentFile -------------------------------------------------
# Every ${VARIABLE} of the packaged config is offered (commented) by the EnvironmentFile.
# shellcheck disable=SC2016 # a literal ${NAME}
vars=$(grep -o '\${[A-Z0-9_]*}' /etc/audsync/audsync.json | tr -d '${}' | sort -u)
[ -n "$vars" ] || fail "the packaged config takes no secret from the environment"
for v in $vars; do
    grep -q "^#$v=" /etc/default/audsync || fail "/etc/default/audsync does not offer $v"
done
if grep -v '^#' /etc/default/audsync | grep -q .; then
    fail "/etc/default/audsync sets something by default: $(grep -v '^#' /etc/default/audsync)"
fi
# The operator's edit: each placeholder uncommented with a value.
cp /etc/default/audsync "$dir/env"
for v in $vars; do
    sed -i "s|^#$v=.*|$v=package-test-${v,,}-0123456789|" "$dir/env"
done
admin_token=package-test-audsync_admin_token-0123456789
grep -qx "AUDSYNC_ADMIN_TOKEN=$admin_token" "$dir/env" || fail "no admin token in the test env"
# As systemd runs the service: its user, no new privileges, umask 0077, and only the
# EnvironmentFile's variables (plus a PATH).
mapfile -t env_vars < <(grep -v '^#' "$dir/env" | grep .)
# exec_as_audsync replaces the shell that runs it (so `exec_as_audsync ... &` leaves the
# server's own pid in $!); as_audsync runs it in a subshell.
exec_as_audsync() {
    umask 0077
    exec setpriv --reuid=audsync --regid=audsync --init-groups --no-new-privs \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${env_vars[@]}" "$@"
}
as_audsync() { (exec_as_audsync "$@"); }

as_audsync /usr/bin/audsync migrate --config /etc/audsync/audsync.json \
    > "$dir/migrate.out" 2> "$dir/migrate.err" ||
    { cat "$dir/migrate.out" "$dir/migrate.err"; fail "migrate as audsync"; }
grep -q 'applied migration' "$dir/migrate.out" || fail "migrate applied nothing: $(cat "$dir/migrate.out")"
if grep -q 'readable by other users' "$dir/migrate.err"; then
    fail "the packaged config (root:audsync 0640) draws a permission warning for its service user"
fi
db=/var/lib/audsync/audsync.db
[ -f "$db" ] || fail "migrate created no $db"
[ "$(stat -c '%a %U:%G' "$db")" = "600 audsync:audsync" ] || fail "$db is $(stat -c '%a %U:%G' "$db")"

# The same config given to another group is warned about (here: root's).
sed 's|/var/lib/audsync/audsync.db|'"$dir"'/root.db|' /etc/audsync/audsync.json > "$dir/root.json"
chown root:audsync "$dir/root.json"
chmod 0640 "$dir/root.json"
/usr/bin/audsync migrate --config "$dir/root.json" > /dev/null 2> "$dir/root.err"
grep -q "config file $dir/root.json is readable by other users (mode 0640)" "$dir/root.err" ||
    fail "a config readable by a group not the process's own drew no warning: $(cat "$dir/root.err")"

# --- serve with the packaged config ---------------------------------------------------
# Only the port (any free one) and the platform addresses (nothing leaves the machine)
# differ from the installed config; the secrets come from the environment as above.
sed -e 's|"127.0.0.1:8080"|"127.0.0.1:0"|' \
    -e 's|"platform": "launchdarkly",|"platform": "launchdarkly", "api_base": "http://127.0.0.1:9", "clientsdk_base": "http://127.0.0.1:9",|' \
    /etc/audsync/audsync.json > "$dir/serve.json"
grep -q '"api_base"' "$dir/serve.json" || fail "could not point the serve config's target at loopback"
chown root:audsync "$dir/serve.json"
chmod 0640 "$dir/serve.json"
exec_as_audsync /usr/bin/audsync serve --config "$dir/serve.json" > "$dir/serve.out" 2> "$dir/serve.err" &
serve_pid=$!
deadline=$(($(date +%s) + 30))
until grep -q 'listening on' "$dir/serve.out"; do
    kill -0 "$serve_pid" 2>/dev/null || { cat "$dir/serve.err"; fail "serve exited at start"; }
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$dir/serve.err"; fail "serve did not start in 30 s"; }
    sleep 0.1
done
addr=$(grep -o '127.0.0.1:[0-9]*' "$dir/serve.out" | head -1)
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/healthz")" = 200 ] || fail "/healthz"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/readyz")" = 200 ] || fail "/readyz"
dests=$(curl -s -H "Authorization: Bearer $admin_token" "http://$addr/v1/destinations")
echo "$dests" | grep -q '"engage"' || fail "the admin API with the env's token answered $dests"
if echo "$dests" | grep -q 'package-test-'; then fail "a secret in the admin API's answer: $dests"; fi
if grep -qi 'warn\|readable by other users' "$dir/serve.err"; then
    cat "$dir/serve.err"
    fail "serve warns about the packaged config (above)"
fi
# ExecReload's signal: the config is reloaded in place.
kill -HUP "$serve_pid"
deadline=$(($(date +%s) + 10))
until grep -q 'SIGHUP: config reloaded' "$dir/serve.err"; do
    [ "$(date +%s)" -lt "$deadline" ] || { cat "$dir/serve.err"; fail "no reload after SIGHUP"; }
    sleep 0.1
done
# KillSignal: a clean exit well within TimeoutStopSec=30.
kill -TERM "$serve_pid"
stop_start=$(date +%s)
while kill -0 "$serve_pid" 2>/dev/null; do
    [ "$(($(date +%s) - stop_start))" -lt 30 ] || fail "serve still runs 30 s after SIGTERM"
    sleep 0.1
done
echo "serve stopped $(($(date +%s) - stop_start)) s after SIGTERM"
status=0
wait "$serve_pid" || status=$?
serve_pid=
[ "$status" = 0 ] || { cat "$dir/serve.err"; fail "serve exited $status after SIGTERM"; }
# The database, its inbox, their WAL files and the lock: the service user's alone.
ls /var/lib/audsync/audsync.db-inbox > /dev/null || fail "serve created no inbox"
for f in /var/lib/audsync/*; do
    [ "$(stat -c '%a %U' "$f")" = "600 audsync" ] || fail "$f is $(stat -c '%a %U:%G' "$f")"
done

# --- purge ----------------------------------------------------------------------------
dpkg --purge audsync > "$dir/purge.out" 2>&1 || { cat "$dir/purge.out"; fail "dpkg --purge"; }
[ ! -e /usr/bin/audsync ] || fail "/usr/bin/audsync remains after purge"
[ ! -e /lib/systemd/system/audsync.service ] || fail "the unit remains after purge"
[ ! -e /etc/audsync/audsync.json ] || fail "the config remains after purge"
[ ! -e /etc/default/audsync ] || fail "the EnvironmentFile remains after purge"
[ ! -e /var/lib/audsync ] || fail "/var/lib/audsync remains after purge"
! getent passwd audsync >/dev/null || fail "the user audsync remains after purge"
! getent group audsync >/dev/null || fail "the group audsync remains after purge"
echo "package test passed in $(($(date +%s) - start)) s"
