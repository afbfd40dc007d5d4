#!/usr/bin/env bash
# Runs scripts/run for real with prebuilt binaries (AUDSYNC_BIN_DIR: no install, no
# build) and the demo in a temporary folder (AUDSYNC_DEMO_DIR: nothing written into
# the source tree):
#   a. the demo starts: config mode 0600, no warning about it being readable, the
#      printed sample event is accepted and the emulator ends up holding the member;
#   b. a second run on the same demo folder re-pushes the member to the fresh emulator
#      without the event being sent again (and puts a readable config back to 0600);
#   c. a busy AUDSYNC_PORT makes the script exit non-zero naming AUDSYNC_PORT;
#   d. a relative AUDSYNC_CONFIG, run from another folder, is served, and its relative
#      database path is taken beside the config file;
#   e. the demo's audsync serve stopped by its own pid (SIGTERM, then SIGKILL on another
#      run) ends the script and its emulator: the next run finds both ports free;
#   f. scripts/run itself killed by SIGKILL (no trap runs) still stops the server, which
#      commits, and the emulator: both ports end free and no process of the run remains.
# Usage: run_script_test.sh BIN_DIR SOURCE_DIR
#   BIN_DIR holds audsync and audsync-ld-emulator.
set -euo pipefail
bin=$1
src=$2
run="$src/scripts/run"
dir=$(mktemp -d /tmp/audsync-run-XXXXXX)
groups=()   # process groups of the scripts/run instances (each started with setsid)
pids=()     # other processes started here
cleanup() {
    for g in "${groups[@]}"; do kill -TERM -- "-$g" 2>/dev/null || true; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

fail() {
    echo "FAILED: $*"
    exit 1
}
# Shows a run's output (demo values only: the demo's keys are not secrets).
show() {
    echo "---- output of scripts/run ($1) ----"
    cat "$1" || true
    echo "----"
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# Polls "$@" every 0.1 s until it succeeds or $deadline_s seconds pass.
poll() {
    local deadline_s=$1
    shift
    local end=$((SECONDS + deadline_s))
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}
http_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true
}
healthz_ok() { [ "$(http_code "http://127.0.0.1:$1/healthz")" = 200 ]; }
emulator_has_member() {
    curl -s --max-time 2 "http://127.0.0.1:$1/_emulator/segments" 2>/dev/null |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
ok = any(s.get("cohortId") == "aud_demo" and "u123" in s.get("included", [])
         for s in d.get("segments", []))
sys.exit(0 if ok else 1)' 2>/dev/null
}
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
mode_of() { stat -c '%a' "$1"; }
# True while process $1 runs (a zombie, exited but not yet reaped, does not count).
alive() {
    local s
    s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ "$s" != Z* ]]
}
# True while any process of group $1 runs.
group_alive() {
    ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'
}
exited() { ! alive "$1"; }
group_gone() { ! group_alive "$1"; }
# Polls (30 s at most) until audsync answers GET /healthz on port $1, or every process of
# the run (group $2) has ended; true when it answers.
wait_healthy() {
    poll 30 eval "healthz_ok $1 || group_gone $2" || true
    healthz_ok "$1"
}

# Starts scripts/run in its own process group (as a terminal would), in folder $1, with
# output to $2 and the environment "${@:3}". Sets $last_pid.
start_run() {
    local cwd=$1 out=$2
    shift 2
    (cd "$cwd" && exec env AUDSYNC_BIN_DIR="$bin" "$@" setsid bash "$run") > "$out" 2>&1 &
    last_pid=$!
    groups+=("$last_pid")
}
# Stops a scripts/run started by start_run as Ctrl-C would: the signal to its whole group.
stop_run() {
    local g=$1
    kill -TERM -- "-$g" 2>/dev/null || true
    poll 15 group_gone "$g" || fail "scripts/run (group $g) did not stop on SIGTERM"
    wait "$g" 2>/dev/null || true
}
no_readable_warning() {
    if grep -qi 'readable by other users' "$1"; then
        show "$1"
        fail "$2: audsync warned that a file of the demo is readable by other users"
    fi
}

demo="$dir/demo"
caller="$dir/caller"
mkdir -p "$caller"

# ---- a. the demo starts and syncs the printed sample event ----
port=$(free_port)
eport=$(free_port)
[ "$port" != "$eport" ] || eport=$(free_port)
out1="$dir/run1.out"
start_run "$caller" "$out1" AUDSYNC_DEMO_DIR="$demo" AUDSYNC_PORT="$port" AUDSYNC_EMULATOR_PORT="$eport"
run1=$last_pid
if ! wait_healthy "$port" "$run1"; then
    show "$out1"
    fail "a: the demo did not answer GET /healthz on 127.0.0.1:$port"
fi
[ -f "$demo/config.json" ] || fail "a: no demo config at \$AUDSYNC_DEMO_DIR/config.json"
[ ! -e "$src/.audsync-demo/config.json" ] || [ "$src/.audsync-demo/config.json" -ot "$out1" ] ||
    fail "a: scripts/run wrote into the source tree's .audsync-demo despite AUDSYNC_DEMO_DIR"
mode=$(mode_of "$demo/config.json")
[ "$mode" = 600 ] || fail "a: the demo config is mode $mode, not 600"
no_readable_warning "$out1" "a"

# The sample event exactly as the script printed it.
sample=$(sed -n "/^  curl -s -u demo-write-key:/,/}]}'\$/p" "$out1")
if [ -z "$sample" ]; then
    show "$out1"
    fail "a: scripts/run printed no sample curl command"
fi
answer=$(bash -c "$sample" 2>&1 || true)
echo "$answer" | grep -q '"stored":1' || fail "a: the printed sample event was not stored: $answer"
if ! poll 20 emulator_has_member "$eport"; then
    echo "emulator segments: $(curl -s --max-time 2 "http://127.0.0.1:$eport/_emulator/segments")"
    show "$out1"
    fail "a: the emulator did not get u123 in segment aud_demo within 20 s of the event"
fi
[ -f "$demo/audsync.db" ] || fail "a: no database beside the demo config in \$AUDSYNC_DEMO_DIR"
echo "a. demo starts, config 0600, sample event synced to the emulator: ok"

# ---- b. a second run on the same demo folder re-pushes to the fresh emulator ----
stop_run "$run1"
port_free "$port" || fail "b: audsync still listens on $port after the first run was stopped"
port_free "$eport" || fail "b: the emulator still listens on $eport after the first run was stopped"
# A config left readable (by hand, a copy, ...) is made 0600 again by the next run.
chmod 644 "$demo/config.json"
port=$(free_port)
eport=$(free_port)
[ "$port" != "$eport" ] || eport=$(free_port)
out2="$dir/run2.out"
start_run "$caller" "$out2" AUDSYNC_DEMO_DIR="$demo" AUDSYNC_PORT="$port" AUDSYNC_EMULATOR_PORT="$eport"
run2=$last_pid
if ! wait_healthy "$port" "$run2"; then
    show "$out2"
    fail "b: the second demo run did not answer GET /healthz on 127.0.0.1:$port"
fi
mode=$(mode_of "$demo/config.json")
[ "$mode" = 600 ] || fail "b: after the second run the demo config is mode $mode, not 600"
no_readable_warning "$out2" "b"
if ! poll 20 emulator_has_member "$eport"; then
    echo "emulator segments: $(curl -s --max-time 2 "http://127.0.0.1:$eport/_emulator/segments")"
    show "$out2"
    fail "b: the fresh emulator did not get u123 back within 20 s (no re-push at start)"
fi
stop_run "$run2"
echo "b. second run re-pushes the stored member to the fresh emulator: ok"

# ---- c. a busy AUDSYNC_PORT is refused, naming the variable ----
python3 -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
time.sleep(110)' > "$dir/busy.port" &
pids+=($!)
poll 10 test -s "$dir/busy.port" || fail "c: the python3 listener did not start"
busy=$(cat "$dir/busy.port")
eport=$(free_port)
[ "$eport" != "$busy" ] || eport=$(free_port)
out3="$dir/run3.out"
start_run "$caller" "$out3" AUDSYNC_DEMO_DIR="$demo" AUDSYNC_PORT="$busy" AUDSYNC_EMULATOR_PORT="$eport"
run3=$last_pid
if ! poll 15 exited "$run3"; then
    show "$out3"
    fail "c: scripts/run kept running with AUDSYNC_PORT=$busy in use (expected it to exit)"
fi
rc=0
wait "$run3" || rc=$?
if [ "$rc" = 0 ]; then
    show "$out3"
    fail "c: scripts/run exited 0 with AUDSYNC_PORT=$busy in use"
fi
if ! grep -q 'AUDSYNC_PORT' "$out3"; then
    show "$out3"
    fail "c: scripts/run's error for a busy port does not name AUDSYNC_PORT"
fi
echo "c. busy AUDSYNC_PORT: exit $rc naming AUDSYNC_PORT: ok"

# ---- d. a relative AUDSYNC_CONFIG from another folder ----
mkdir -p "$caller/relative"
port=$(free_port)
(umask 077 && cat > "$caller/relative/path.json") <<JSON
{"listen":"127.0.0.1:$port","database":"rel.db","admin_token":"run-test-admin-token",
 "destinations":[{"id":"ld","service_token":"t","client_side_id":"c",
   "api_base":"http://127.0.0.1:9","clientsdk_base":"http://127.0.0.1:9","write_keys":["wk-run"]}]}
JSON
out4="$dir/run4.out"
start_run "$caller" "$out4" AUDSYNC_CONFIG=relative/path.json
run4=$last_pid
if ! wait_healthy "$port" "$run4"; then
    show "$out4"
    fail "d: with AUDSYNC_CONFIG=relative/path.json run from $caller, GET /healthz did not answer 200"
fi
[ -f "$caller/relative/rel.db" ] ||
    fail "d: the relative database path was not created beside the config ($caller/relative/rel.db missing)"
[ ! -e "$caller/rel.db" ] || fail "d: the relative database path was created in the current folder"
echo "d. relative AUDSYNC_CONFIG served, database beside the config: ok"

# ---- e. the server stopped by its pid takes the script and the emulator with it ----
for sig in TERM KILL; do
    port=$(free_port)
    eport=$(free_port)
    [ "$port" != "$eport" ] || eport=$(free_port)
    out5="$dir/run5-$sig.out"
    start_run "$caller" "$out5" AUDSYNC_DEMO_DIR="$demo" AUDSYNC_PORT="$port" AUDSYNC_EMULATOR_PORT="$eport"
    run5=$last_pid
    if ! wait_healthy "$port" "$run5"; then
        show "$out5"
        fail "e: the demo did not answer GET /healthz on 127.0.0.1:$port"
    fi
    serve_pid=$(ps -eo pid=,pgid=,args= | awk -v g="$run5" '$2 == g && $0 ~ /audsync serve/ { print $1 }')
    [ -n "$serve_pid" ] || fail "e: no audsync serve in the run's process group"
    kill "-$sig" "$serve_pid"
    if ! poll 15 group_gone "$run5"; then
        ps -eo pid=,pgid=,args= | awk -v g="$run5" '$2 == g' || true
        fail "e: after SIG$sig to audsync serve (pid $serve_pid), processes of the run remain"
    fi
    wait "$run5" 2>/dev/null || true
    port_free "$eport" || fail "e: the emulator still listens on $eport after SIG$sig to audsync serve"
done
echo "e. audsync serve stopped by its pid (TERM, KILL) ends the script and the emulator: ok"

# ---- f. scripts/run killed by SIGKILL stops what it started all the same ----
port=$(free_port)
eport=$(free_port)
[ "$port" != "$eport" ] || eport=$(free_port)
out6="$dir/run6.out"
start_run "$caller" "$out6" AUDSYNC_DEMO_DIR="$demo" AUDSYNC_PORT="$port" AUDSYNC_EMULATOR_PORT="$eport"
run6=$last_pid
if ! wait_healthy "$port" "$run6"; then
    show "$out6"
    fail "f: the demo did not answer GET /healthz on 127.0.0.1:$port"
fi
kill -KILL "$run6"
if ! poll 30 group_gone "$run6"; then
    ps -eo pid=,pgid=,args= | awk -v g="$run6" '$2 == g' || true
    fail "f: after SIGKILL to scripts/run (pid $run6), processes of the run remain"
fi
wait "$run6" 2>/dev/null || true
port_free "$port" || fail "f: audsync still listens on $port after SIGKILL to scripts/run"
port_free "$eport" || fail "f: the emulator still listens on $eport after SIGKILL to scripts/run"
if ! grep -q 'received SIGTERM, shutting down' "$out6"; then
    show "$out6"
    fail "f: audsync serve was not stopped by SIGTERM (an orderly stop) after SIGKILL to scripts/run"
fi
echo "f. scripts/run killed by SIGKILL stops the server and the emulator: ok"

echo "6 passed, 0 failed"
