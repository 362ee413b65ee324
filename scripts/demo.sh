#!/bin/bash
# Runs the gateway locally: a private redis-server, one demo sandbox runtime
# on loopback, and nginx with the module on 127.0.0.1:${SBX_DEMO_PORT:-8080}.
# Creates a demo user and key with sandbox-admin and a sandbox through the
# API, writes the route sandbox-syncd would write, prints keys and curl
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

admin=$(openssl rand -base64 36 | tr -d '/+=' | head -c 48)
umask 077; printf '%s\n' "$admin" > "$DIR/admin.key"; umask 022

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

# users and keys through the admin API, as an operator would
ADMIN_CLI="$ROOT/build/sandbox-admin --url http://127.0.0.1:$PORT --key-file $DIR/admin.key"
$ADMIN_CLI user-create demo demo@example.com >/dev/null
key=$($ADMIN_CLI key-create demo demo 2>/dev/null)

# the sandbox through the management API, as the Gemini CLI extension would
curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/api/sandboxes" \
     -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
     -d '{"name":"demo"}'

# what sandbox-syncd does once Kubernetes reports the pod ready: here the
# pod is the local demo runtime
now=$(date +%s)
rcli HSET sbx:route:demo:demo addr "127.0.0.1:$RUNTIME_PORT" ready 1 \
    suspended 0 namespace user-demo rv 1 updated_at_ms "${now}000" \
    fqdn demo.user-demo.svc.cluster.local reason DependenciesReady
rcli SADD sbx:routes demo:demo
rcli PUBLISH sbx:events "route demo demo"

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
  curl -s http://127.0.0.1:$PORT/api/sandboxes/demo -H 'Authorization: Bearer $key'
  curl -s http://127.0.0.1:$PORT/proxy/nope/x -H 'Authorization: Bearer $key'
  SANDBOX_ADMIN_KEY_FILE=$DIR/admin.key $ROOT/build/sandbox-admin \\
       --url http://127.0.0.1:$PORT users

Ctrl-C stops everything.
MSG

wait -n "${pids[@]}"
