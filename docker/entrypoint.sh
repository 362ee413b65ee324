#!/bin/sh
# The gateway's container: nginx in the foreground (SIGQUIT stops it
# gracefully, SIGHUP reloads), running as the image's non-root user.
#
#   SANDBOX_REDIS   replaces the sandbox_redis address of the configuration
#                   (an IP literal or unix:/path: workers never resolve names)
#   SANDBOX_LISTEN  replaces its listen address (default 8080)
#
# The configuration (/etc/nginx/nginx.conf, or SANDBOX_NGINX_CONF) may be
# read-only, a mounted ConfigMap say: when either variable is set, the
# changed copy is written under /tmp and used instead, beside links to the
# rest of /etc/nginx so that relative includes still resolve.
#
# `entrypoint.sh sandbox-syncd ...` and `entrypoint.sh sandbox-admin ...`
# run those instead: one image for the gateway and the daemon.
set -eu

case "${1:-}" in
    sandbox-syncd|sandbox-admin) exec "$@" ;;
esac

conf=${SANDBOX_NGINX_CONF:-/etc/nginx/nginx.conf}
if [ -n "${SANDBOX_REDIS:-}${SANDBOX_LISTEN:-}" ]; then
    run=$(mktemp -d /tmp/sandbox-gateway.XXXXXX)
    for f in "$(dirname "$conf")"/*; do
        [ "$f" = "$conf" ] || ln -s "$f" "$run/"
    done
    sed -e "${SANDBOX_REDIS:+s|^\(\s*sandbox_redis\s\+\)[^;]*;|\1$SANDBOX_REDIS;|}" \
        -e "${SANDBOX_LISTEN:+s|^\(\s*listen\s\+\)[^;]*;|\1$SANDBOX_LISTEN;|}" \
        "$conf" > "$run/nginx.conf"
    conf=$run/nginx.conf
fi
exec nginx -c "$conf" -g 'daemon off;' "$@"
