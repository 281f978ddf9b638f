#!/usr/bin/env bash
# Installs the JavaScript peers from their lock files (npm ci): Bun (the binary ships in the npm
# package @oven/bun-linux-x64) and Node's ws. Needs node and npm; fetches nothing but the npm registry.
# Usage: bash loadtest/peers/install.sh [bun] [node-ws]   (default: both)
set -euo pipefail
PEERS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -eq 0 ]; then set -- bun node-ws; fi
for p in "$@"; do
    case $p in
        bun | node-ws) ;;
        *) echo "install.sh: unknown peer '$p' (known: bun node-ws)" >&2; exit 2 ;;
    esac
    echo "installing peer $p (npm ci)" >&2
    (cd "$PEERS/$p" && npm ci --no-audit --no-fund --loglevel=error)
done
if [[ " $* " == *" bun "* ]]; then
    "$PEERS/bun/node_modules/@oven/bun-linux-x64/bin/bun" --version >/dev/null
fi
