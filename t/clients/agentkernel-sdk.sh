#!/bin/sh
# The agentkernel Node.js SDK (npm package "agentkernel") from the npm
# registry into the cache beside the test cluster's kube-apiserver (once);
# prints the directory whose node_modules holds it.
set -eu
VERSION=0.18.1
DIR=${SBX_CACHE:-$HOME/.cache/sandbox-gateway}/agentkernel-sdk-$VERSION
if [ ! -f "$DIR/node_modules/agentkernel/package.json" ]; then
    command -v npm >/dev/null || { echo "agentkernel-sdk: no npm" >&2; exit 1; }
    mkdir -p "$DIR"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error \
        "agentkernel@$VERSION" >&2
fi
echo "$DIR"
