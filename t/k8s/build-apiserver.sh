#!/bin/sh
# Builds a real kube-apiserver (v1.20.2, the source Debian 12 ships in its
# "kubernetes" source package, vendored dependencies included) for the sync
# daemon's tests, offline, and caches the binary outside the repository:
#
#   ${SBX_CACHE:-$HOME/.cache/sandbox-gateway}/kube-apiserver-v1.20.2
#
# Nothing prebuilt is downloaded: the source comes from Debian's archive,
# the toolchain (golang-go 1.19), etcd and one replacement library from
# Debian's packages.  About two minutes on two cores.  Prints the binary's
# path.  Idempotent: a cached binary that answers --version is reused.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${SBX_CACHE:-$HOME/.cache/sandbox-gateway}
VERSION=v1.20.2
BIN=$CACHE/kube-apiserver-$VERSION
WORK=$CACHE/k8s-build

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
    echo "$BIN"
    exit 0
fi

# toolchain and the etcd the tests run; reflect2 1.0.2 replaces the
# vendored 1.0.1, which is broken on Go >= 1.18
PKGS="golang-go etcd-server etcd-client golang-github-modern-go-reflect2-dev
      rsync openssl curl"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends $missing >/dev/null
fi

tarball=$(ls "$CACHE"/k8s-src/kubernetes_*.orig.tar.gz 2>/dev/null | head -1)
if [ -z "$tarball" ]; then
    "$ROOT/scripts/apt-source.sh" kubernetes "$CACHE/k8s-src" >/dev/null 2>&1 || true
    tarball=$(ls "$CACHE"/k8s-src/kubernetes_*.orig.tar.gz | head -1)
fi

# GOPATH mode, as Kubernetes 1.20's own build does
rm -rf "$WORK"
SRC=$WORK/gopath/src/k8s.io/kubernetes
mkdir -p "$SRC"
tar -xzf "$tarball" -C "$SRC" --strip-components=1

rm -rf "$SRC/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 \
      "$SRC/vendor/github.com/modern-go/reflect2"

export GOPATH="$WORK/gopath" GO111MODULE=off GOFLAGS= CGO_ENABLED=0
export GOCACHE="$CACHE/go-build" KUBE_VERBOSE=0

cd "$SRC"

# a generated file the tarball lacks
make gen_openapi >/dev/null

ld="-s -w"
# in GOPATH mode the version packages are the vendored ones
for pkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version \
           k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=20"
    ld="$ld -X $pkg.gitTreeState=clean"
done

go build -tags 'selinux notest providerless' -ldflags "$ld" \
    -o "$BIN.tmp" ./cmd/kube-apiserver
mv "$BIN.tmp" "$BIN"

# the source and GOPATH are not needed any more; the build cache stays
rm -rf "$WORK"

echo "$BIN"
