#!/bin/sh
# Starts one sentinel of the StatefulSet "redis-sentinel": it monitors the
# master the other sentinels know, else the Redis that says it is master,
# else redis-0.  Its configuration lives on an emptyDir (sentinels rewrite
# it as they learn the other sentinels and replicas).
set -eu

svc=${REDIS_HEADLESS:-redis-headless}
sentinel=${REDIS_SENTINEL:-redis-sentinel}
name=${REDIS_MASTER_NAME:-sandbox}
peers=${REDIS_PEERS:-2}
data=${REDIS_DATA:-/data}

ip_of() { set -- $(getent ahostsv4 "$1" 2>/dev/null || true); echo "${1:-}"; }

master=$(redis-cli -h "$sentinel" -p 26379 --raw \
             SENTINEL get-master-addr-by-name "$name" 2>/dev/null | head -n 1 \
         || true)
i=0
while [ -z "$master" ] && [ $i -lt "$peers" ]; do
    if redis-cli -h "redis-$i.$svc" -p 6379 INFO replication 2>/dev/null \
           | grep -q '^role:master'; then
        master=$(ip_of "redis-$i.$svc")
    fi
    i=$((i + 1))
done
[ -n "$master" ] || master=$(ip_of "redis-0.$svc")
[ -n "$master" ] || { echo "sentinel-start: no Redis found yet" >&2; exit 1; }

cat > "$data/sentinel.conf" <<CONF
port 26379
dir $data
sentinel monitor $name $master 6379 2
sentinel down-after-milliseconds $name 5000
sentinel failover-timeout $name 30000
sentinel parallel-syncs $name 1
CONF
[ -z "${REDIS_BIND:-}" ] \
    || printf "bind %s\nbind-source-addr %s\n" "$REDIS_BIND" "$REDIS_BIND" \
        >> "$data/sentinel.conf"
echo "sentinel-start: monitoring $master"
exec redis-sentinel "$data/sentinel.conf"
