#!/bin/sh
# The gateway's container: nginx in the foreground (SIGQUIT stops it
# gracefully, SIGHUP reloads), running as the image's non-root user.
#
#   SANDBOX_REDIS   replaces the sandbox_redis address of the configuration:
#                   an IP address, unix:/path, or a host name resolved here,
#                   once (nginx workers never resolve names; a Kubernetes
#                   Service's cluster IP does not change); port 6379 unless
#                   given
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

# $SANDBOX_REDIS as an address: a host name resolved (IPv4), once
redis_addr() {
    host=${1%:*}
    port=${1##*:}
    [ "$host" = "$1" ] && port=6379
    case $1 in
    unix:* | \[*)
        echo "$1" ;;
    *)
        case $host in
        *[!0-9.]*)
            # shellcheck disable=SC2046
            set -- $(getent ahostsv4 "$host" || true)
            [ $# -gt 0 ] || return 1
            echo "$1:$port" ;;
        *)
            echo "$host:$port" ;;
        esac ;;
    esac
}

conf=${SANDBOX_NGINX_CONF:-/etc/nginx/nginx.conf}
if [ -n "${SANDBOX_REDIS:-}" ]; then
    addr=$(redis_addr "$SANDBOX_REDIS") || {
        echo "entrypoint: cannot resolve ${SANDBOX_REDIS%:*}" >&2
        exit 1
    }
    SANDBOX_REDIS=$addr
    echo "entrypoint: Redis at $SANDBOX_REDIS" >&2
fi
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
