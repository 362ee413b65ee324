#!/bin/sh
# Builds the gateway's OCI image without pulling anything from a registry:
# a Debian bookworm root filesystem made by mmdebstrap from Debian's
# packages (nginx and the libraries the module and the daemon link), with
# the gateway's user and writable paths made in it, then assembled by
# buildah with build/'s module, sandbox-syncd and sandbox-admin, the
# image's nginx.conf (conf/nginx.conf listening on 8080) and
# docker/entrypoint.sh; and build/sandbox-agent as
# /usr/lib/sandbox-gateway/sandbox-agent, which a plain image's Sandbox
# copies from this image in an init container (sandbox-syncd
# --agent-image).  Run from `make image` (after `make`), as root.
#
#   IMAGE        the image's name (localhost/sandbox-gateway:latest)
#   DEB_MIRRORS  the apt lines mmdebstrap uses, one a line (deb.debian.org)
#   OCI_ARCHIVE  also write the image to this oci-archive file
#
# The root filesystem is cached in ~/.cache/sandbox-gateway, keyed by this
# script (package list, hooks and mirrors): about 30 to 90 s the first
# time, nothing after.  Delete rootfs-*.tar there to take newer packages.
set -eu
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/sandbox-gateway:latest}
DEB_MIRRORS=${DEB_MIRRORS:-"deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main"}
PKGS="nginx libhiredis0.14 libjansson4 libcurl4 libyaml-0-2 libc-ares2 libmicrohttpd12 ca-certificates"
# the user the gateway runs as (numeric, for runAsNonRoot)
UID_GW=10001

for f in build/ngx_http_sandbox_module.so build/sandbox-syncd \
         build/sandbox-admin build/sandbox-agent; do
    [ -f "$f" ] || { echo "build-image: no $f (run make first)" >&2; exit 2; }
done

# the tools, from Debian's packages (runc: see README, "Container image")
missing=""
for p in mmdebstrap buildah; do
    command -v "$p" >/dev/null || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "build-image: installing$missing"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $missing
fi

cache=${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-gateway
mkdir -p "$cache"
key=$( { cat "$0"; echo "$DEB_MIRRORS"; } | sha256sum | cut -c1-16)
rootfs=$cache/rootfs-$key.tar

if [ ! -f "$rootfs" ]; then
    echo "build-image: root filesystem (mmdebstrap) -> $rootfs"
    # essential: no apt in the image; docs, man pages and locales left out
    echo "$DEB_MIRRORS" | mmdebstrap --variant=essential --format=tar --quiet \
        --include="$(echo $PKGS | tr ' ' ,)" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --customize-hook="echo sandbox:x:$UID_GW:$UID_GW:sandbox gateway:/nonexistent:/usr/sbin/nologin >> \"\$1/etc/passwd\"" \
        --customize-hook="echo sandbox:x:$UID_GW: >> \"\$1/etc/group\"" \
        --customize-hook="chown -R $UID_GW:$UID_GW \"\$1/var/lib/nginx\" \"\$1/var/log/nginx\"" \
        --customize-hook="chgrp $UID_GW \"\$1/run\" && chmod 1775 \"\$1/run\"" \
        --customize-hook="ln -sf /dev/stdout \"\$1/var/log/nginx/sandbox-access.log\"" \
        --customize-hook="ln -sf /dev/stderr \"\$1/var/log/nginx/error.log\"" \
        --customize-hook="rm -f \"\$1/etc/nginx/sites-enabled/default\"" \
        --customize-hook="rm -rf \"\$1/var/cache/apt\" \"\$1/var/lib/apt/lists\"" \
        bookworm "$rootfs.tmp" -
    mv "$rootfs.tmp" "$rootfs"
fi

tmp=$(mktemp -d)
ctr=""
cleanup() {
    [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT

# the container listens on 8080: a non-root user cannot bind port 80
sed 's/^\(\s*listen\s\+\)80;/\18080;/' conf/nginx.conf > "$tmp/nginx.conf"
grep -q 'listen 8080;' "$tmp/nginx.conf"

echo "build-image: assembling $IMAGE (buildah)"
ctr=$(buildah from scratch)
buildah add "$ctr" "$rootfs" /
buildah copy --chmod 0644 "$ctr" build/ngx_http_sandbox_module.so \
    /usr/lib/nginx/modules/
buildah copy --chmod 0755 "$ctr" build/sandbox-syncd build/sandbox-admin \
    docker/entrypoint.sh /usr/local/bin/
buildah copy --chmod 0755 "$ctr" build/sandbox-agent \
    /usr/lib/sandbox-gateway/sandbox-agent
buildah copy --chmod 0644 "$ctr" "$tmp/nginx.conf" /etc/nginx/nginx.conf
buildah copy --chmod 0644 "$ctr" conf/sandbox-template.json \
    /etc/sandbox-syncd/sandbox-template.json
buildah config \
    --user "$UID_GW:$UID_GW" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --entrypoint '["/usr/local/bin/entrypoint.sh"]' --cmd '' \
    --port 8080 --stop-signal SIGQUIT --workingdir / \
    --label org.opencontainers.image.title=sandbox-gateway \
    --label org.opencontainers.image.description="nginx with ngx_http_sandbox_module, sandbox-syncd and sandbox-admin" \
    "$ctr"
old=$(buildah images --quiet --no-trunc "$IMAGE" 2>/dev/null || true)
buildah commit --quiet --format oci --rm "$ctr" "$IMAGE" >/dev/null
ctr=""
# the image this name had before, unless something still uses it
[ -n "$old" ] && buildah rmi "$old" >/dev/null 2>&1 || true
if [ -n "${OCI_ARCHIVE:-}" ]; then
    rm -f "$OCI_ARCHIVE"
    buildah push --quiet "$IMAGE" "oci-archive:$OCI_ARCHIVE:$IMAGE"
fi
echo "build-image: $IMAGE"
