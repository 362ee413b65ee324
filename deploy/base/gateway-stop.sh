#!/bin/sh
# preStop of a gateway pod: keep serving while the load balancer and
# kube-proxy stop sending new connections here, then `nginx -s quit`
# (finish the requests in flight, close idle keepalive connections) and
# wait until nginx has exited, so the stop signal that follows finds
# nothing to cut short.
set -u

# the image's configuration: enough for nginx to find its pid file
conf=${GATEWAY_CONF:-/etc/nginx/nginx.conf}
pidfile=${GATEWAY_PID_FILE:-/run/nginx.pid}

sleep "${GATEWAY_DRAIN_SECONDS:-10}"
pid=$(cat "$pidfile" 2>/dev/null) || exit 0
"${GATEWAY_NGINX:-nginx}" ${GATEWAY_PREFIX:+-p "$GATEWAY_PREFIX"} \
    -c "$conf" -s quit || kill -QUIT "$pid"
while kill -0 "$pid" 2>/dev/null; do
    sleep 1
done
