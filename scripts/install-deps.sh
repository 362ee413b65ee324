#!/bin/sh
# Installs the Debian 12 packages the gateway needs to build, run and test.
# Only missing packages are installed; nothing else on the system changes.
set -eu

PKGS="build-essential perl openssl curl redis-server redis-sentinel nginx nginx-dev
      libpcre2-dev zlib1g-dev libssl-dev libhiredis-dev libjansson-dev
      libcurl4-openssl-dev libyaml-dev"

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
