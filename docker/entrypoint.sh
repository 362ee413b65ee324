#!/bin/sh
# Points the shipped configuration at $SANDBOX_REDIS, then runs nginx in
# the foreground (SIGQUIT stops it gracefully, SIGHUP reloads).
set -eu
if [ -n "${SANDBOX_REDIS:-}" ]; then
    sed -i "s|^\(\s*sandbox_redis\s\+\)[^;]*;|\1$SANDBOX_REDIS;|" /etc/nginx/nginx.conf
fi
exec nginx -g 'daemon off;'
