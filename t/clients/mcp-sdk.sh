#!/bin/sh
# The MCP TypeScript SDK, the version Gemini CLI uses, from the npm
# registry into the cache beside the test cluster's kube-apiserver (once);
# prints the directory whose node_modules holds it.
set -eu
VERSION=1.23.0
DIR=${SBX_CACHE:-$HOME/.cache/sandbox-gateway}/mcp-sdk-$VERSION
if [ ! -f "$DIR/node_modules/@modelcontextprotocol/sdk/package.json" ]; then
    command -v npm >/dev/null || { echo "mcp-sdk: no npm" >&2; exit 1; }
    mkdir -p "$DIR"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error \
        "@modelcontextprotocol/sdk@$VERSION" >&2
fi
echo "$DIR"
