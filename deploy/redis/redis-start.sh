#!/bin/sh
# Starts one Redis of the StatefulSet "redis" (AOF on its volume).  Its
# role comes from the sentinels when they know the master; else from a
# peer that already is master; else redis-0 is the master and the others
# replicate it.  Only the master is ready, so the Service "redis" always
# leads to it (clients without Sentinel support keep one address).
set -eu

me=${HOSTNAME:?}
set_name=${me%-*}
peers=${REDIS_PEERS:-2}
svc=${REDIS_HEADLESS:-redis-headless}
sentinel=${REDIS_SENTINEL:-redis-sentinel}
name=${REDIS_MASTER_NAME:-sandbox}
data=${REDIS_DATA:-/data}

ip_of() { set -- $(getent ahostsv4 "$1" 2>/dev/null || true); echo "${1:-}"; }

master=$(redis-cli -h "$sentinel" -p 26379 --raw \
             SENTINEL get-master-addr-by-name "$name" 2>/dev/null | head -n 1 \
         || true)
if [ -z "$master" ]; then
    i=0
    while [ $i -lt "$peers" ]; do
        peer=$set_name-$i
        if [ "$peer" != "$me" ] && redis-cli -h "$peer.$svc" -p 6379 \
               INFO replication 2>/dev/null | grep -q '^role:master'; then
            master=$(ip_of "$peer.$svc")
            break
        fi
        i=$((i + 1))
    done
fi
if [ -z "$master" ] && [ "$me" != "$set_name-0" ]; then
    master=$(ip_of "$set_name-0.$svc")
fi

conf=${TMPDIR:-/tmp}/redis.conf
cat > "$conf" <<CONF
port 6379
dir $data
protected-mode no
appendonly yes
appendfsync everysec
CONF
# all addresses, as a pod wants; one address for all traffic where pods
# share a host (t/k8s/redis-pods.sh)
[ -z "${REDIS_BIND:-}" ] \
    || printf "bind %s\nbind-source-addr %s\n" "$REDIS_BIND" "$REDIS_BIND" \
        >> "$conf"
if [ -n "$master" ] && [ "$master" != "${POD_IP:-}" ]; then
    echo "replicaof $master 6379" >> "$conf"
    echo "redis-start: $me replicates $master"
else
    echo "redis-start: $me is the master"
fi
exec redis-server "$conf"
