#!/usr/bin/env bash
# Runs docs/nginx/audsync.conf for real: nginx terminates TLS (self-signed certificate)
# in front of `audsync serve`; Segment-style requests go through it.
# Usage: nginx_test.sh AUDSYNC_BINARY SOURCE_DIR
set -euo pipefail
audsync=$1
src=$2
dir=$(mktemp -d /tmp/audsync-tls-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

cat > "$dir/config.json" <<JSON
{"listen":"127.0.0.1:0","database":"$dir/a.db","admin_token":"tls-admin-token-0123",
 "destinations":[{"id":"ld","service_token":"t","client_side_id":"c",
   "api_base":"http://127.0.0.1:9","clientsdk_base":"http://127.0.0.1:9","write_keys":["wk-tls"]}]}
JSON
"$audsync" serve --config "$dir/config.json" > "$dir/serve.out" 2> "$dir/serve.err" &
pids+=($!)
for _ in $(seq 1 200); do grep -q "listening on" "$dir/serve.out" && break; sleep 0.05; done
upstream=$(grep -o '127.0.0.1:[0-9]*' "$dir/serve.out" | head -1)
[ -n "$upstream" ] || { echo "audsync did not start"; cat "$dir/serve.err"; exit 1; }

# A free port for nginx.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -e "s|@LISTEN@|127.0.0.1:$port|" -e "s|@CERT@|$dir/cert.pem|" -e "s|@KEY@|$dir/key.pem|" \
    -e "s|@UPSTREAM@|$upstream|" "$src/docs/nginx/audsync.conf" > "$dir/audsync.conf"
# nginx's workers may run as another user: they buffer large bodies in these.
mkdir -p "$dir"/{body,proxy,fastcgi,uwsgi,scgi}
chmod 755 "$dir"
chmod 777 "$dir"/{body,proxy,fastcgi,uwsgi,scgi}
cat > "$dir/nginx.conf" <<CONF
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events {}
http {
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $dir/audsync.conf;
}
CONF
nginx -t -c "$dir/nginx.conf" -p "$dir" 2>&1 | tail -1
nginx -c "$dir/nginx.conf" -p "$dir" &
pids+=($!)
for _ in $(seq 1 200); do curl -s --cacert "$dir/cert.pem" "https://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done

fail() { echo "FAILED: $*"; exit 1; }
health=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/cert.pem" "https://127.0.0.1:$port/healthz")
[ "$health" = 200 ] || fail "healthz over TLS answered $health"
body='{"batch":[{"type":"identify","messageId":"tls-1","userId":"u1","traits":{"k":true},"context":{"personas":{"computation_class":"audience","computation_id":"aud_tls","computation_key":"k"}}}]}'
answer=$(curl -s --cacert "$dir/cert.pem" -u wk-tls: -H 'Content-Type: application/json' \
    -d "$body" "https://127.0.0.1:$port/v1/batch")
echo "$answer" | grep -q '"stored":1' || fail "ingest over TLS answered $answer"
denied=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/cert.pem" -u wrong: -d "$body" \
    "https://127.0.0.1:$port/v1/batch")
[ "$denied" = 401 ] || fail "a wrong write key over TLS answered $denied"
big=$(head -c 4500000 /dev/zero | tr '\0' ' ')
size=$(printf '[%s]' "$big" | curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/cert.pem" \
    -u wk-tls: -H 'Content-Type: application/json' --data-binary @- \
    "https://127.0.0.1:$port/v1/destinations/ld/events")
[ "$size" = 413 ] || fail "an oversize body over TLS answered $size"
plain=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz" || true)
[ "$plain" = 400 ] || fail "plain HTTP on the TLS port answered $plain"
# Negative and absurd Content-Length values are refused (by nginx here; audsync refuses
# them too: tests/http_test.cpp).
for cl in -5 99999999999999999999; do
    status=$(printf 'POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$cl" |
        timeout 10 openssl s_client -quiet -connect "127.0.0.1:$port" 2>/dev/null | head -1 | tr -d '\r')
    case "$status" in
        "HTTP/1.1 400"*|"HTTP/1.1 413"*) ;;
        *) fail "Content-Length $cl through nginx answered '$status'" ;;
    esac
done
# Only the ingest routes and the health check are public: the admin API is not forwarded,
# whatever the caller holds.
admin=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/cert.pem" \
    -H 'Authorization: Bearer tls-admin-token-0123' "https://127.0.0.1:$port/v1/segments")
[ "$admin" = 404 ] || fail "the admin API through nginx answered $admin"
metrics=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$dir/cert.pem" \
    -H 'Authorization: Bearer tls-admin-token-0123' "https://127.0.0.1:$port/metrics")
[ "$metrics" = 404 ] || fail "/metrics through nginx answered $metrics"
curl -s --cacert "$dir/cert.pem" "https://127.0.0.1:$port/healthz" | grep -q ok || fail "audsync stopped answering"
echo "1 passed, 0 failed"
