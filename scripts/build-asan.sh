#!/bin/sh
# Builds nginx 1.22.1 (Debian's upstream tarball) and the module with
# AddressSanitizer and NGX_DEBUG_PALLOC (every pool allocation a separate
# malloc, so overflows inside nginx pools are caught too), into
# build/asan/nginx/objs/{nginx,ngx_http_sandbox_module.so}.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SBX_CACHE:-$HOME/.cache/sandbox-gateway}
OUT=$ROOT/build/asan
NGX=$OUT/nginx

configure() {
    (cd "$NGX" && ./configure --prefix="$OUT/prefix" --with-debug \
        --with-compat --with-threads --with-http_ssl_module \
        --with-http_realip_module --with-http_auth_request_module \
        --with-http_stub_status_module \
        --with-cc-opt='-O1 -g -fno-omit-frame-pointer -fsanitize=address -DNGX_DEBUG_PALLOC=1' \
        --with-ld-opt='-fsanitize=address' \
        --add-dynamic-module="$ROOT" >/dev/null)
}

# configure again when the module's source list changed
if [ -f "$NGX/objs/Makefile" ] && [ "$ROOT/config" -nt "$NGX/objs/Makefile" ]; then
    configure
fi

if [ ! -f "$NGX/objs/Makefile" ]; then
    tarball=$(ls "$CACHE"/nginx-src/nginx_1.22.1.orig.tar.* 2>/dev/null | head -1)
    if [ -z "$tarball" ]; then
        "$ROOT/scripts/apt-source.sh" nginx "$CACHE/nginx-src" >/dev/null
        tarball=$(ls "$CACHE"/nginx-src/nginx_1.22.1.orig.tar.* | head -1)
    fi

    rm -rf "$NGX"
    mkdir -p "$OUT"
    tar -xzf "$tarball" -C "$OUT"
    mv "$OUT/nginx-1.22.1" "$NGX"
    configure
fi

make -C "$NGX" -j2 -f objs/Makefile binary modules >/dev/null
echo "$NGX/objs/nginx"
