#!/bin/sh
# Installs the Debian 12 packages the gateway needs to build, run and test.
# Only missing packages are installed; nothing else on the system changes.
set -eu

PKGS="build-essential perl openssl curl redis-server nginx nginx-dev
      libpcre2-dev zlib1g-dev libssl-dev libhiredis-dev libjansson-dev
      libcurl4-openssl-dev libyaml-dev libc-ares-dev musl-tools
      libmicrohttpd-dev"

# t/70-metrics.t and t/73-syncd-metrics.t: promtool and a real Prometheus
PKGS="$PKGS prometheus"

# make fuzz and t/fuzz/smoke.t: clang and its libFuzzer runtime
PKGS="$PKGS clang libclang-rt-14-dev"

# t/60-deploy.t: YAML::XS for the rendered manifests; redis-sentinel (for
# t/21-sentinel.t too) and iproute2 for deploy/redis's pods
# (t/k8s/redis-pods.sh); and a kubectl
# with kustomize.  Any kubectl will do (some machines carry a newer one,
# from a package that conflicts with Debian's); else Debian's
# kubernetes-client, 1.20 with kustomize v2, which deploy/ is written for
# as well.
PKGS="$PKGS libyaml-libyaml-perl redis-sentinel iproute2"
command -v kubectl >/dev/null 2>&1 || PKGS="$PKGS kubernetes-client"

# t/14, t/15 and t/16: the real npm clients (MCP SDK, agentkernel SDK) need
# node and npm; a machine carrying its own node (e.g. from nodesource,
# which conflicts with Debian's npm) keeps it
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

# make deb (t/61-deb.t); make image and podman to run it (t/62-image.t)
PKGS="$PKGS debhelper dpkg-dev mmdebstrap buildah podman runc"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done

[ -z "$missing" ] && exit 0

echo "installing:$missing"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
