#!/bin/bash
# Runs the gateway locally: a private redis-server, one demo sandbox runtime
# on loopback, and nginx with the module on 127.0.0.1:${SBX_DEMO_PORT:-8080}.
# Seeds a demo user, an API key and a route, prints an admin key and curl
# examples, and stays in the foreground until Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${SBX_DEMO_PORT:-8080}
DIR=${SBX_DEMO_DIR:-$(mktemp -d /tmp/sandbox-gateway-demo.XXXXXX)}
REDIS_PORT=${SBX_DEMO_REDIS_PORT:-6399}
RUNTIME_PORT=${SBX_DEMO_RUNTIME_PORT:-18080}

mkdir -p "$DIR/sandbox" "$DIR/logs"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

rcli() { redis-cli -p "$REDIS_PORT" "$@" >/dev/null; }
new_key() { echo "sk_live_$(openssl rand -base64 24 | tr '+/' '-_')"; }
sha256() { printf %s "$1" | sha256sum | cut -d' ' -f1; }

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --logfile "$DIR/logs/redis.log" &
pids+=($!)
"$ROOT/t/runtime/sandbox-runtime.pl" --listen "127.0.0.1:$RUNTIME_PORT" \
    --id demo --workdir "$DIR/sandbox" &
pids+=($!)

for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

now=$(date +%s)
uid=$(cat /proc/sys/kernel/random/uuid)
kid=$(cat /proc/sys/kernel/random/uuid)
key=$(new_key)
hash=$(sha256 "$key")
admin=$(openssl rand -base64 36 | tr -d '/+=' | head -c 48)
umask 077; printf '%s\n' "$admin" > "$DIR/admin.key"; umask 022

rcli HSET sbx:user:demo id "$uid" username demo created_at "$now" \
    updated_at "$now" active 1
rcli SET "sbx:userid:$uid" demo
rcli ZADD sbx:users "${now}000" demo
rcli HSET "sbx:key:$hash" id "$kid" user demo prefix "${key:0:12}" \
    name demo created_at "$now" expires_at 0 active 1
rcli SET "sbx:keyid:$kid" "$hash"
rcli SADD sbx:user:demo:keys "$kid"
rcli HSET sbx:sandbox:demo:demo name demo user demo namespace user-demo \
    created_at "$now" state active
rcli ZADD sbx:user:demo:sandboxes "${now}000" demo
rcli HSET sbx:route:demo:demo addr "127.0.0.1:$RUNTIME_PORT" ready 1 \
    suspended 0 namespace user-demo rv 1 updated_at_ms "${now}000"
rcli SADD sbx:routes demo:demo

sed -e "s|/usr/lib/nginx/modules/ngx_http_sandbox_module.so|$ROOT/build/ngx_http_sandbox_module.so|" \
    -e "s|127.0.0.1:6379|127.0.0.1:$REDIS_PORT|" \
    -e "s|/etc/nginx/sandbox-admin.key|$DIR/admin.key|" \
    -e "s|/var/log/nginx/sandbox-access.log|$DIR/logs/access.log|" \
    -e "s|listen 80;|listen 127.0.0.1:$PORT;|" \
    -e "s|worker_processes auto;|worker_processes 2;\npid $DIR/nginx.pid;\nerror_log $DIR/logs/error.log info;|" \
    "$ROOT/conf/nginx.conf" > "$DIR/nginx.conf"

/usr/sbin/nginx -p "$DIR/" -c "$DIR/nginx.conf" -e "$DIR/logs/error.log" \
    -g 'daemon off;' &
pids+=($!)

for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
if ! curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then
    echo "the gateway did not start (is port $PORT free? set SBX_DEMO_PORT):" >&2
    tail -n 5 "$DIR/logs/error.log" >&2
    exit 1
fi

cat <<MSG

Sandbox gateway running on http://127.0.0.1:$PORT   (files in $DIR)

  admin key:  $admin
  user key:   $key   (user "demo", sandbox "demo")

Try:
  curl -s http://127.0.0.1:$PORT/proxy/demo/v1/shell/exec \\
       -H 'Authorization: Bearer $key' \\
       -H 'Content-Type: application/json' -d '{"command":"uname -a"}'
  curl -s http://127.0.0.1:$PORT/demo/demo/v1/shell/exec \\
       -H 'Authorization: Bearer $key' \\
       -H 'Content-Type: application/json' -d '{"command":"ls -la"}'
  curl -s http://127.0.0.1:$PORT/proxy/demo/v1/events?count=3 \\
       -H 'Authorization: Bearer $key'
  curl -s http://127.0.0.1:$PORT/proxy/nope/x -H 'Authorization: Bearer $key'

Ctrl-C stops everything.
MSG

wait -n "${pids[@]}"
