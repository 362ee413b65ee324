#!/bin/sh
# Starts the gateway in its pod: conf/nginx.conf (ConfigMap gateway-nginx)
# with its sandbox_redis pointed at $SANDBOX_REDIS, logs to the
# container's stdout and stderr.  A host name in $SANDBOX_REDIS is
# resolved here, once: nginx workers never resolve names, and a Service's
# cluster IP does not change.
set -eu

src=${GATEWAY_CONF_SRC:-/etc/sandbox-gateway/conf/nginx.conf}
conf=${GATEWAY_CONF:-/run/sandbox-gateway/nginx.conf}
redis=${SANDBOX_REDIS:?SANDBOX_REDIS is not set}

host=${redis%:*}
port=${redis##*:}
[ "$host" = "$redis" ] && port=6379
case $redis in
unix:* | \[*)
    addr=$redis ;;
*)
    case $host in
    *[!0-9.]*)
        # shellcheck disable=SC2046
        set -- $(getent ahostsv4 "$host" || true)
        [ $# -gt 0 ] \
            || { echo "gateway-start: cannot resolve $host" >&2; exit 1; }
        addr=$1:$port ;;
    *)
        addr=$host:$port ;;
    esac ;;
esac

mkdir -p "$(dirname "$conf")"
# readiness starts over with every start (gateway-ready.pl)
rm -f "${GATEWAY_READY_MARK:-/run/sandbox-gateway/was-ready}"
sed "s|^\([[:space:]]*sandbox_redis[[:space:]]\{1,\}\)[^;]*;|\1$addr;|" \
    "$src" > "$conf"
grep -q "sandbox_redis[[:space:]]*$addr;" "$conf" \
    || { echo "gateway-start: no sandbox_redis line in $src" >&2; exit 1; }

# the access log of conf/nginx.conf, on the container's stdout
logs=${GATEWAY_LOG_DIR:-/var/log/nginx}
if [ -d "$logs" ] && [ -w "$logs" ]; then
    ln -sf /dev/stdout "$logs/sandbox-access.log"
fi

echo "gateway-start: Redis at $addr"
exec "${GATEWAY_NGINX:-nginx}" -c "$conf" -e stderr -g 'daemon off;'
