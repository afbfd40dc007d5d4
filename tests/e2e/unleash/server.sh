#!/usr/bin/env bash
# A real Unleash (npm unleash-server, pinned by package-lock.json) on a throwaway
# PostgreSQL cluster, for the end-to-end test; ctest runs it as the fixture around it.
#
#   server.sh start STATE_DIR   initdb + postgres + unleash on free loopback ports; writes
#                               STATE_DIR/unleash.json {url, admin_token, client_token,
#                               segment_values_limit, started_in_ms} for the test and
#                               STATE_DIR/unleash.state for stop
#   server.sh stop STATE_DIR    stops both and removes their folder; safe to run again
#
# PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user the
# Debian package creates. Each server's output goes to a log file in its folder (printed
# when start fails), never to ctest's pipes, which would keep the setup test open. A run
# killed before its cleanup leaves STATE_DIR/unleash.state: the next start stops what it
# names first (or run `server.sh stop STATE_DIR`).
set -Eeuo pipefail

here=$(cd "$(dirname "$0")" && pwd)
action=${1:-}
state_dir=${2:-}
if [ -z "$action" ] || [ -z "$state_dir" ]; then
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 2
fi
mkdir -p "$state_dir"
state_dir=$(cd "$state_dir" && pwd)
state="$state_dir/unleash.state"
info="$state_dir/unleash.json"
pg_bin=${AUDSYNC_PG_BIN:-/usr/lib/postgresql/15/bin}
start_deadline_s=${AUDSYNC_UNLEASH_START_SECONDS:-180}

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

now_ms() { date +%s%3N; }

# Stops what the state file names. Each step tolerates what is already gone.
stop() {
    [ -f "$state" ] || { rm -f "$info"; return 0; }
    local dir="" unleash_pid="" pg_data=""
    # shellcheck disable=SC1090
    source "$state"
    if [ -n "$unleash_pid" ] && kill -0 "$unleash_pid" 2>/dev/null; then
        kill -TERM "$unleash_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do  # up to 10 s, then SIGKILL
            kill -0 "$unleash_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$unleash_pid" 2>/dev/null || true
    fi
    if [ -n "$pg_data" ] && [ -f "$pg_data/postmaster.pid" ]; then
        as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w -t 30 stop >/dev/null 2>&1 || {
            local pid
            pid=$(head -1 "$pg_data/postmaster.pid" 2>/dev/null || true)
            [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
        }
    fi
    case "$dir" in
        /tmp/audsync-unleash.*) rm -rf "$dir" ;;
    esac
    rm -f "$state" "$info"
}

start() {
    # A run that was killed before its cleanup leaves its state: stop that first.
    stop
    command -v node >/dev/null || { echo "node is not installed (scripts/test installs it)" >&2; exit 1; }
    [ -x "$pg_bin/initdb" ] || { echo "no PostgreSQL in $pg_bin (scripts/deps installs postgresql)" >&2; exit 1; }
    local server_js="$here/node_modules/unleash-server/dist/server.js"
    [ -f "$server_js" ] || {
        echo "unleash-server is not installed: run npm ci in $here (scripts/test does)" >&2
        exit 1
    }
    local started
    started=$(now_ms)
    local dir
    dir=$(mktemp -d /tmp/audsync-unleash.XXXXXX)
    chmod 755 "$dir"
    echo "dir=$dir" >"$state"
    trap 'on_failure' ERR

    # PostgreSQL: a cluster of its own, TCP on a free loopback port, trust auth (loopback
    # only), no fsync (a test database).
    local pg_data="$dir/pg" pg_run="$dir/pg-run"
    mkdir "$pg_data" "$pg_run"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pg_data" "$pg_run"
    echo "pg_data=$pg_data" >>"$state"
    as_postgres "$pg_bin/initdb" -D "$pg_data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
        >"$pg_run/initdb.log" 2>&1 || { cat "$pg_run/initdb.log" >&2; false; }
    local pg_port
    pg_port=$(free_port)
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_run/postgres.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_run -c fsync=off -c full_page_writes=off" \
        start >/dev/null
    as_postgres "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres unleash

    # Unleash: the admin token audsync uses and a backend token for the SDK, both random
    # and created at start-up (INIT_*_API_TOKENS apply while the token table is empty).
    # A segment values limit of 5 instead of 1,000, so that the test can make Unleash
    # itself refuse a list that audsync's max_list_items lets through.
    local values_limit=5
    local secret admin_token client_token u_port
    secret=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
    admin_token="*:*.$secret"
    client_token="default:development.$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
    u_port=$(free_port)
    (
        cd "$here"
        exec env DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/unleash" \
            DATABASE_SSL=false HTTP_HOST=127.0.0.1 HTTP_PORT="$u_port" \
            UNLEASH_SEGMENT_VALUES_LIMIT="$values_limit" \
            INIT_ADMIN_API_TOKENS="$admin_token" INIT_BACKEND_API_TOKENS="$client_token" \
            CHECK_VERSION=false SEND_TELEMETRY=false LOG_LEVEL=warn \
            node "$server_js" </dev/null >"$dir/unleash.log" 2>&1
    ) &
    local unleash_pid=$!
    echo "unleash_pid=$unleash_pid" >>"$state"

    local url="http://127.0.0.1:$u_port"
    local deadline=$(($(date +%s) + start_deadline_s))
    until curl -sf -o /dev/null -H "Authorization: $admin_token" "$url/api/admin/ui-config"; do
        if ! kill -0 "$unleash_pid" 2>/dev/null; then
            echo "unleash exited during start-up" >&2
            false
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "unleash did not answer within ${start_deadline_s} s" >&2
            false
        fi
        sleep 0.2  # poll interval
    done
    trap - ERR
    local took=$(($(now_ms) - started))
    printf '{"url":"%s","admin_token":"%s","client_token":"%s","segment_values_limit":%d,"started_in_ms":%d}\n' \
        "$url" "$admin_token" "$client_token" "$values_limit" "$took" >"$info.tmp"
    mv "$info.tmp" "$info"
    echo "unleash $(node -p "require('$here/node_modules/unleash-server/package.json').version") on PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}'): $url, ready in $took ms"
}

on_failure() {
    trap - ERR
    echo "--- unleash start-up failed; logs:" >&2
    local dir=""
    # shellcheck disable=SC1090
    source "$state" 2>/dev/null || true
    for log in "$dir/unleash.log" "$dir/pg-run/postgres.log"; do
        [ -f "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }
    done
    stop
    exit 1
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop STATE_DIR" >&2
        exit 2
        ;;
esac
