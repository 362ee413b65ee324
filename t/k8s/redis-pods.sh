#!/bin/sh
# The pods of deploy/redis on one machine, as their start scripts run
# them: in a private network and mount namespace (unshare: root), with
# the pods' and Services' names in a private /etc/hosts, each pod on its
# own loopback address with its own data and temporary directories.  No
# kubelet: this script plays it, and the Service "redis-sentinel" is the
# first sentinel.
#
#   t/k8s/redis-pods.sh DIR   runs the scenario below, prints what it saw
#                             as "key value" lines, stops everything
#
# Scenario: redis-0 and redis-1 start (no sentinel yet), three sentinels
# start, a key is written to the master, the master is killed, the
# sentinels promote the replica, the old master starts again and joins it
# as a replica; the key is read back.
set -eu

DIR=${1:?usage: redis-pods.sh DIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

if [ "${REDIS_PODS_INSIDE:-}" != 1 ]; then
    mkdir -p "$DIR"
    REDIS_PODS_INSIDE=1 exec unshare --mount --net "$0" "$DIR"
fi

mount --make-rprivate /
ip link set lo up
# getaddrinfo (AI_ADDRCONFIG) wants an address that is not a loopback one
ip addr add 10.255.0.1/32 dev lo

cat > "$DIR/hosts" <<HOSTS
127.0.0.1 localhost
127.0.0.10 redis-0.redis-headless
127.0.0.11 redis-1.redis-headless
127.0.0.20 redis-sentinel redis-sentinel-0.redis-sentinel-headless
127.0.0.21 redis-sentinel-1.redis-sentinel-headless
127.0.0.22 redis-sentinel-2.redis-sentinel-headless
HOSTS
mount --bind "$DIR/hosts" /etc/hosts

pids=""
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# pod NAME IP SCRIPT: the pod's own directories, then its script
pod() {
    mkdir -p "$DIR/$1/data" "$DIR/$1/tmp"
    HOSTNAME=$1 POD_IP=$2 REDIS_BIND=$2 REDIS_DATA=$DIR/$1/data \
        TMPDIR=$DIR/$1/tmp sh "$3" >> "$DIR/$1.log" 2>&1 &
    eval "pid_$(echo "$1" | tr - _)=$!"
    pids="$pids $!"
}

cli() { h=$1; p=$2; shift 2; redis-cli -h "$h" -p "$p" --raw "$@" 2>/dev/null; }
role() { cli "$1" 6379 INFO replication | sed -n 's/^role:\([a-z]*\).*/\1/p'; }
in_sync() { cli "$1" 6379 INFO replication | grep -q '^master_link_status:up'; }
is_role() { [ "$(role "$1")" = "$2" ]; }
# what the Service redis-sentinel (sentinel 0) says
master() { cli 127.0.0.20 26379 SENTINEL get-master-addr-by-name sandbox \
               | head -n 1; }
others() { cli 127.0.0.20 26379 SENTINEL master sandbox \
               | sed -n '/^num-other-sentinels$/{n;p;}'; }
is_master() { [ "$(master)" = "$1" ]; }
all_sentinels() { [ "$(others)" = 2 ]; }
until_true() {  # until_true SECONDS COMMAND...: 0 once it succeeds
    end=$(($(date +%s) + $1)); shift
    until "$@"; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.1
    done
}

pod redis-0 127.0.0.10 "$ROOT/deploy/redis/redis-start.sh"
until_true 10 is_role 127.0.0.10 master || true
pod redis-1 127.0.0.11 "$ROOT/deploy/redis/redis-start.sh"
until_true 10 in_sync 127.0.0.11 || true
echo "start.redis-0 $(role 127.0.0.10)"
echo "start.redis-1 $(role 127.0.0.11)"

for i in 0 1 2; do
    pod "redis-sentinel-$i" "127.0.0.2$i" "$ROOT/deploy/redis/sentinel-start.sh"
done
until_true 20 all_sentinels || true
echo "sentinel.master $(master)"
echo "sentinel.others $(others)"

cli 127.0.0.10 6379 SET route-before-failover kept > /dev/null
echo "wait.acked $(cli 127.0.0.10 6379 WAIT 1 2000)"
echo "aof.redis-0 $(cli 127.0.0.10 6379 CONFIG GET appendonly | tail -n 1)"

# the master dies; the sentinels promote redis-1
kill -9 "$pid_redis_0"
t0=$(date +%s)
until_true 30 is_role 127.0.0.11 master || true
echo "failover.redis-1 $(role 127.0.0.11)"
echo "failover.seconds $(($(date +%s) - t0))"
until_true 10 is_master 127.0.0.11 || true
echo "failover.sentinel $(master)"

# the old master comes back: the sentinels say who leads, it follows
pod redis-0 127.0.0.10 "$ROOT/deploy/redis/redis-start.sh"
until_true 20 in_sync 127.0.0.10 || true
echo "rejoin.redis-0 $(role 127.0.0.10)"
echo "rejoin.key $(cli 127.0.0.10 6379 GET route-before-failover)"
echo "rejoin.master-key $(cli 127.0.0.11 6379 GET route-before-failover)"
