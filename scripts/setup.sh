#!/usr/bin/env bash
# Sets up everything kubevisa's tests and demo need on a fresh machine, idempotently, and prints what it
# does: Node.js 24 (from the npm registry if the system's is older), npm dependencies, the pinned
# Kubernetes binaries (built from Go modules on first use: ~8 minutes on 2 cores), and system tools from
# Debian's packages when missing. Source it (`. scripts/setup.sh`) to get PATH and KUBEVISA_K8S_BIN set.
set -euo pipefail
kv_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kv_log() { printf '[setup] %s\n' "$*" >&2; }

kv_apt_install() {
  # Installs Debian packages only when a command is missing; needs root (CI and these machines are root).
  local missing=()
  while [[ $# -gt 0 ]]; do command -v "$1" >/dev/null 2>&1 || missing+=("$2"); shift 2; done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    kv_log "please install: ${missing[*]}"; return 1
  fi
  kv_log "installing ${missing[*]} from Debian's packages"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

kv_apt_install openssl openssl
node_bin=$("$kv_root/scripts/ensure-node.sh")
export PATH="$node_bin:$PATH"
kv_log "node $(node --version)"

lock_hash=$(sha256sum "$kv_root/package-lock.json" | cut -c1-16)
if [[ ! -f "$kv_root/node_modules/.kubevisa-lock-$lock_hash" ]]; then
  kv_log "installing npm dependencies (npm ci, ~20 s)"
  (cd "$kv_root" && npm ci --prefer-offline --no-audit --no-fund --loglevel=error >&2)
  touch "$kv_root/node_modules/.kubevisa-lock-$lock_hash"
fi

KUBEVISA_K8S_BIN=$("$kv_root/scripts/k8s-binaries.sh" | tail -n 1)
export KUBEVISA_K8S_BIN
kv_log "Kubernetes binaries: $KUBEVISA_K8S_BIN"

# Further parts, one file per capability (PostgreSQL, Chromium, Helm, Hydra, the console's build...), each
# idempotent and sourced in name order so it can export what the tests need.
for kv_part in "$kv_root"/scripts/setup.d/*.sh; do
  [[ -e "$kv_part" ]] || continue
  # shellcheck source=/dev/null
  . "$kv_part"
done
