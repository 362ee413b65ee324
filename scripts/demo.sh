#!/bin/bash
# Runs the whole system on one machine, on loopback:
#
#   a real kube-apiserver with etcd (built from Debian's source the first
#   time, about two minutes: t/k8s/build-apiserver.sh) and the Sandbox CRD;
#   a private redis-server; nginx with the module on
#   127.0.0.1:${SBX_DEMO_PORT:-8080}; sandbox-syncd (routes and the
#   operations queue); and scripts/local-controller.pl, which plays the
#   agent-sandbox controller: each Sandbox becomes a process on its own
#   loopback address (127.0.0.2, .3, ...; SBX_DEMO_FIRST_IP=N starts at
#   127.0.0.N) and gets its status.  A plain image's Sandbox (sandbox-syncd
#   wraps its pod template with sandbox-agent, --agent-image) runs the real
#   build/sandbox-agent; the AIO image's, the AIO runtime double.
#
# It creates a demo user and key with sandbox-admin and a sandbox through
# the API (image SBX_DEMO_IMAGE, alpine:3.20: served by sandbox-agent),
# waits until a command runs in it, prints keys and curl examples, and
# stays in the foreground until Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PORT=${SBX_DEMO_PORT:-8080}
DIR=${SBX_DEMO_DIR:-$(mktemp -d /tmp/sandbox-gateway-demo.XXXXXX)}
REDIS_PORT=${SBX_DEMO_REDIS_PORT:-6399}
GW=http://127.0.0.1:$PORT
IMAGE=${SBX_DEMO_IMAGE:-alpine:3.20}
# the image whose sandbox-agent the init container copies (make image's);
# nothing is pulled here: the controller runs build/sandbox-agent
AGENT_IMAGE=localhost/sandbox-gateway:latest

mkdir -p "$DIR/sandboxes" "$DIR/logs"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    "$ROOT/t/k8s/cluster.sh" stop "$DIR/k8s" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
    echo "demo: $1" >&2
    [ -n "${2:-}" ] && tail -n 20 "$2" >&2
    exit 1
}

# up to $1 tenths of a second for the command after it to succeed
retry() {
    local n=$1
    shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

# the Kubernetes API
echo "demo: starting kube-apiserver (the first run builds it, about 2 min)"
"$ROOT/t/k8s/cluster.sh" start "$DIR/k8s" > "$DIR/k8s.env" 2> "$DIR/logs/k8s.log" \
    || fail "kube-apiserver did not start" "$DIR/logs/k8s.log"
K8S_API=$(sed -n 's/^K8S_API=//p' "$DIR/k8s.env")
K8S_CA_FILE=$(sed -n 's/^K8S_CA_FILE=//p' "$DIR/k8s.env")
sed -n 's/^K8S_TOKEN=//p' "$DIR/k8s.env" > "$DIR/k8s/token"
kcurl() {
    curl -fsS --cacert "$K8S_CA_FILE" \
         -H "Authorization: Bearer $(cat "$DIR/k8s/token")" "$@"
}
kcurl -o /dev/null -H 'Content-Type: application/json' \
      --data-binary @"$ROOT/t/k8s/sandbox-crd-v1beta1.json" \
      "$K8S_API/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
retry 100 kcurl "$K8S_API/apis/agents.x-k8s.io/v1beta1/sandboxes" \
    || fail "the Sandbox CRD is not served"

# Redis and the gateway
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --logfile "$DIR/logs/redis.log" &
pids+=($!)
retry 50 redis-cli -p "$REDIS_PORT" ping || fail "redis did not start" "$DIR/logs/redis.log"

admin=$(openssl rand -base64 36 | tr -d '/+=' | head -c 48)
(umask 077; printf '%s\n' "$admin" > "$DIR/admin.key")

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
retry 50 curl -fsS -o /dev/null "$GW/health" \
    || fail "the gateway did not start (is port $PORT free? set SBX_DEMO_PORT)" \
            "$DIR/logs/error.log"

# the daemon and the stand-in controller
K8S_API=$K8S_API K8S_TOKEN_FILE=$DIR/k8s/token K8S_CA_FILE=$K8S_CA_FILE \
SANDBOX_REDIS=127.0.0.1:$REDIS_PORT \
    "$ROOT/build/sandbox-syncd" --template "$ROOT/conf/sandbox-template.json" \
    --agent-image "$AGENT_IMAGE" \
    > "$DIR/logs/syncd.log" 2>&1 &
pids+=($!)
"$ROOT/scripts/local-controller.pl" --api "$K8S_API" \
    --token-file "$DIR/k8s/token" --ca-file "$K8S_CA_FILE" \
    --workdir "$DIR/sandboxes" --first-ip "${SBX_DEMO_FIRST_IP:-2}" \
    > "$DIR/logs/controller.log" 2>&1 &
pids+=($!)

# users and keys through the admin API, as an operator would
ADMIN_CLI="$ROOT/build/sandbox-admin --url $GW --key-file $DIR/admin.key"
$ADMIN_CLI user-create demo demo@example.com >/dev/null
key=$($ADMIN_CLI key-create demo demo 2>/dev/null)
printf '%s\n' "$key" > "$DIR/user.key"

# the sandbox through the management API, as the Gemini CLI extension
# would: queued, created in Kubernetes by sandbox-syncd, started by the
# controller, routed once Ready
curl -fsS -o /dev/null -X POST "$GW/api/sandboxes" \
     -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
     -d "{\"name\":\"demo\",\"image\":\"$IMAGE\"}"
exec_ok() {
    curl -fsS -o /dev/null "$GW/proxy/demo/v1/shell/exec" \
         -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
         -d '{"command":"true"}'
}
retry 300 exec_ok || fail "the demo sandbox did not become ready" "$DIR/logs/syncd.log"

auth="-H 'Authorization: Bearer $key'"
cat <<MSG

Sandbox gateway running on $GW   (files and logs in $DIR)
Kubernetes API: $K8S_API (token in $DIR/k8s/token, CA $K8S_CA_FILE)

  admin key:  $admin
  user key:   $key   (user "demo", sandbox "demo" in namespace user-demo)

Run commands in the sandbox (image $IMAGE; a process on 127.0.0.2):
  curl -s $GW/proxy/demo/v1/shell/exec $auth \\
       -H 'Content-Type: application/json' -d '{"command":"uname -a"}'
  curl -s $GW/demo/demo/v1/shell/exec $auth \\
       -H 'Content-Type: application/json' -d '{"argv":["ls","-la"]}'
  curl -sN $GW/demo/demo/v1/shell/exec $auth -H 'Accept: text/event-stream' \\
       -H 'Content-Type: application/json' -d '{"command":"for i in 1 2 3; do echo \$i; sleep 1; done"}'

Its life cycle, through the API (each goes through Kubernetes):
  curl -s -X POST $GW/api/sandboxes $auth -H 'Content-Type: application/json' -d '{"name":"second","image":"python:3.12-alpine"}'
  curl -s $GW/api/sandboxes $auth
  curl -s -X POST $GW/api/sandboxes/demo/pause $auth
  curl -s -X POST $GW/api/sandboxes/demo/resume $auth
  curl -s -X DELETE $GW/api/sandboxes/demo $auth
  curl -s $GW/health

Wake on request: pause it, wait until it is paused, then just exec; the
gateway resumes it and holds the request until the sandbox answers:
  curl -s -X POST $GW/api/sandboxes/demo/pause $auth
  curl -s $GW/api/sandboxes/demo $auth        # until "state":"paused"
  time curl -s $GW/proxy/demo/v1/shell/exec $auth \\
       -H 'Content-Type: application/json' -d '{"command":"echo awake"}'
  grep waking $DIR/logs/error.log             # the resume it queued
  curl -s $GW/metrics | grep -E 'woken|wake_held'

Administration:
  $ROOT/build/sandbox-admin --url $GW --key-file $DIR/admin.key users

Ctrl-C stops everything.
MSG

wait -n "${pids[@]}"
