#!/bin/sh
# Prints the example site /etc/nginx/sites-available/sandbox-gateway: the
# http{} content of conf/nginx.conf (so the two never drift apart), with its
# access al moved into the server, as Debian's nginx.conf already logs
# every other site to access.al.
set -eu
conf=${1:-conf/nginx.conf}
cat <<'HEAD'
# The sandbox gateway (ngx_http_sandbox_module), from the project's
# conf/nginx.conf.  It reads the admin API key from
# /etc/nginx/sandbox-admin.key (made when the module package is installed)
# and needs Redis at the sandbox_redis address.  Enable it with
#   ln -s ../sites-available/sandbox-gateway /etc/nginx/sites-enabled/
#   rm /etc/nginx/sites-enabled/default   # it listens on port 80 too
#   nginx -t && systemctl reload nginx

HEAD
sed -n '/^http {/,/^}/p' "$conf" | sed -e '1d' -e '$d' -e 's/^    //' |
awk '
    /^access_log / { al = "    " $0; next }
    { print }
    /^    listen / && al != "" { print al; al = "" }
'
