#!/bin/sh
# A real Kubernetes API on loopback for the sync daemon's tests: etcd and
# kube-apiserver (built by t/k8s/build-apiserver.sh), TLS with a private
# CA, static bearer tokens, RBAC.  No controllers run: tests play them.
#
#   t/k8s/cluster.sh start DIR    prints K8S_API, K8S_TOKEN, K8S_CA_FILE and
#                                 K8S_KUBECONFIG (a client certificate)
#   t/k8s/cluster.sh restart DIR [TOKEN]
#                                 a new apiserver on the same etcd (old
#                                 watch versions then get 410), with TOKEN
#                                 replacing the admin token if given
#   t/k8s/cluster.sh compact DIR  etcd compaction at its current revision
#   t/k8s/cluster.sh stop DIR
#
# Ports: $ETCD_PORT, $ETCD_PEER_PORT, $APISERVER_PORT (free ones if unset).
# For benchmarks only (tests run neither): ETCD_TMPFS=1 keeps etcd's data
# in a fresh directory under /dev/shm (removed by stop), so that its
# fsyncs do not wait for this machine's disk; AUDIT_POLICY=FILE has the
# apiserver write the audit log DIR/audit.log under that policy.
set -eu

cmd=${1:?usage: cluster.sh start|stop DIR}
DIR=${2:?usage: cluster.sh start|stop DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

free_port() {
    perl -MIO::Socket::IP -e \
        'print IO::Socket::IP->new(LocalAddr=>"127.0.0.1",LocalPort=>0,Listen=>1)->sockport'
}

# TERM, then KILL after 10 s: the apiserver drains for a while
stop() {
    for p in apiserver etcd; do
        [ -f "$DIR/$p.pid" ] || continue
        pid=$(cat "$DIR/$p.pid")
        kill "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$DIR/$p.pid"
    done
    if [ -f "$DIR/etcd.tmpfs" ]; then
        rm -rf "$(cat "$DIR/etcd.tmpfs")"
        rm -f "$DIR/etcd.tmpfs"
    fi
}

start_apiserver() {
    (cd "$DIR" && exec $(cat apiserver.args)) > "$DIR/apiserver.log" 2>&1 &
    echo $! > "$DIR/apiserver.pid"
}

wait_ready() {
    i=0
    until curl -fsS --cacert "$DIR/pki/ca.crt" \
              -H "Authorization: Bearer $(cut -d, -f1 "$DIR/tokens.csv")" \
              "https://127.0.0.1:$(cat "$DIR/apiserver.port")/readyz" \
              >/dev/null 2>&1
    do
        i=$((i + 1))
        if [ $i -gt 150 ] || ! kill -0 "$(cat "$DIR/apiserver.pid")" 2>/dev/null
        then
            echo "kube-apiserver did not become ready:" >&2
            tail -n 20 "$DIR/apiserver.log" >&2
            return 1
        fi
        sleep 0.2
    done
}

case $cmd in
stop)
    stop
    exit 0 ;;
restart)
    pid=$(cat "$DIR/apiserver.pid")
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    if [ -n "${3:-}" ]; then
        printf '%s,admin,admin,"system:masters"\n' "$3" > "$DIR/tokens.csv"
    fi
    start_apiserver
    wait_ready
    exit $? ;;
compact)
    rev=$(ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$(cat "$DIR/etcd.port")" \
              endpoint status --write-out=json | sed 's/.*"revision":\([0-9]*\).*/\1/')
    ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$(cat "$DIR/etcd.port")" \
        compact "$rev" >/dev/null
    echo "$rev"
    exit 0 ;;
esac

BIN=$("$ROOT/t/k8s/build-apiserver.sh")
mkdir -p "$DIR/pki"
ETCD_PORT=${ETCD_PORT:-$(free_port)}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-$(free_port)}
APISERVER_PORT=${APISERVER_PORT:-$(free_port)}

# a CA, a serving certificate for 127.0.0.1, service-account keys, tokens
cd "$DIR/pki"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca \
    -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
    -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days 2 -extfile san.ext -out server.crt 2>/dev/null
# a client certificate in the system:masters group, for kubeconfig tests
openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=admin-cert" \
    -keyout admin.key -out admin.csr 2>/dev/null
openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -days 2 -out admin.crt 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
TOKEN=admin-$(openssl rand -hex 16)
printf '%s,admin,admin,"system:masters"\n' "$TOKEN" > "$DIR/tokens.csv"
cd "$DIR"

DATA_DIR=$DIR/etcd
if [ "${ETCD_TMPFS:-}" = 1 ]; then
    DATA_DIR=$(mktemp -d /dev/shm/sbx-etcd.XXXXXX)
    echo "$DATA_DIR" > "$DIR/etcd.tmpfs"
fi
etcd --data-dir "$DATA_DIR" --name test \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "test=http://127.0.0.1:$ETCD_PEER_PORT" \
    > "$DIR/etcd.log" 2>&1 &
echo $! > "$DIR/etcd.pid"

echo "$ETCD_PORT" > "$DIR/etcd.port"
echo "$APISERVER_PORT" > "$DIR/apiserver.port"
cat > "$DIR/apiserver.args" <<ARGS
$BIN --etcd-servers http://127.0.0.1:$ETCD_PORT
 --bind-address 127.0.0.1 --advertise-address 127.0.0.1
 --secure-port $APISERVER_PORT --insecure-port 0
 --tls-cert-file pki/server.crt --tls-private-key-file pki/server.key
 --client-ca-file pki/ca.crt --token-auth-file tokens.csv
 --authorization-mode RBAC
 --service-account-key-file pki/sa.pub
 --service-account-signing-key-file pki/sa.key
 --service-account-issuer https://kubernetes.default.svc
 --api-audiences https://kubernetes.default.svc
 --service-cluster-ip-range 10.96.0.0/24
 --watch-cache=${WATCH_CACHE:-true}
ARGS
if [ -n "${AUDIT_POLICY:-}" ]; then
    echo " --audit-policy-file $AUDIT_POLICY --audit-log-path $DIR/audit.log" \
        >> "$DIR/apiserver.args"
fi
start_apiserver
if ! wait_ready; then
    stop
    exit 1
fi

b64() { base64 -w0 < "$1"; }
cat > "$DIR/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
current-context: test
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $(b64 pki/ca.crt)
contexts:
- name: test
  context:
    cluster: test
    user: admin-cert
users:
- name: admin-cert
  user:
    client-certificate-data: $(b64 pki/admin.crt)
    client-key-data: $(b64 pki/admin.key)
KUBECONFIG

echo "K8S_API=https://127.0.0.1:$APISERVER_PORT"
echo "K8S_KUBECONFIG=$DIR/kubeconfig"
echo "K8S_TOKEN=$TOKEN"
echo "K8S_CA_FILE=$DIR/pki/ca.crt"
