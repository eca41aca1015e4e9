#!/usr/bin/env bash
# Builds the pinned Kubernetes binaries (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# etcd, kwok) from Go modules into a cache keyed by version, and prints the folder that holds them on the
# last line of stdout. Rebuilds only what is missing. KUBEVISA_K8S_BIN points at existing binaries instead.
#
# Usage: scripts/k8s-binaries.sh            # build if needed, print the folder
#        scripts/k8s-binaries.sh --check    # exit 1 (and say why) if a binary is missing, build nothing
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.0
KWOK_VERSION=v0.8.0
MIN_GO_MINOR=26
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module_dir="$here/test/k8s"
log() { printf '[k8s-binaries] %s\n' "$*" >&2; }

if [[ -n "${KUBEVISA_K8S_BIN:-}" ]]; then
  for b in "${BINARIES[@]}"; do
    [[ -x "$KUBEVISA_K8S_BIN/$b" ]] || { log "KUBEVISA_K8S_BIN=$KUBEVISA_K8S_BIN has no executable '$b'. Point it at a folder holding ${BINARIES[*]}, or unset it to build them."; exit 1; }
  done
  echo "$KUBEVISA_K8S_BIN"; exit 0
fi

cache_root=${KUBEVISA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubevisa}
# The key includes the go.mod's hash so a change of any pinned module version rebuilds.
mod_hash=$(sha256sum "$module_dir/go.mod" | cut -c1-8)
out="$cache_root/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-$mod_hash"

missing=()
for b in "${BINARIES[@]}"; do [[ -x "$out/$b" ]] || missing+=("$b"); done
if [[ ${#missing[@]} -eq 0 ]]; then echo "$out"; exit 0; fi
if [[ "${1:-}" == "--check" ]]; then log "missing in $out: ${missing[*]}"; exit 1; fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do [[ -x "$candidate/go" ]] && PATH="$candidate:$PATH"; done
fi
if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed. Install Go 1.$MIN_GO_MINOR or newer (https://go.dev/dl/, or your distribution's golang package) and run this again, or set KUBEVISA_K8S_BIN to a folder with prebuilt binaries."
  exit 1
fi
go_version=$(go env GOVERSION)            # e.g. go1.26.8
go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
if [[ ! "$go_minor" =~ ^[0-9]+$ ]] || (( go_minor < MIN_GO_MINOR )); then
  log "Go $go_version is too old: Kubernetes $K8S_VERSION needs Go 1.$MIN_GO_MINOR or newer. Install a newer Go and run this again."
  exit 1
fi

mkdir -p "$out"
# One build at a time per cache: a second caller (another test run, another checkout) waits for the first
# instead of compiling the same binaries beside it, then finds them built.
exec 9>"$out.lock"
if ! flock -n 9; then
  log "another build of these binaries is running; waiting for it (up to 30 minutes)"
  flock -w 1800 9 || { log "gave up waiting for the other build after 30 minutes; is it stuck? Remove $out.lock if no build runs."; exit 1; }
  missing=()
  for b in "${BINARIES[@]}"; do [[ -x "$out/$b" ]] || missing+=("$b"); done
  if [[ ${#missing[@]} -eq 0 ]]; then echo "$out"; exit 0; fi
fi
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$K8S_VERSION") -X k8s.io/component-base/version.gitTreeState=clean"
declare -A pkg=(
  [kube-apiserver]=k8s.io/kubernetes/cmd/kube-apiserver
  [kube-controller-manager]=k8s.io/kubernetes/cmd/kube-controller-manager
  [kube-scheduler]=k8s.io/kubernetes/cmd/kube-scheduler
  [kubectl]=k8s.io/kubernetes/cmd/kubectl
  [etcd]=go.etcd.io/etcd/server/v3
  [kwok]=sigs.k8s.io/kwok/cmd/kwok
)
log "building ${missing[*]} (Kubernetes $K8S_VERSION) into $out"
log "a cold build takes about 8 minutes on 2 cores and ~3 GB of memory; later runs reuse the cache"
start=$(date +%s)
cd "$module_dir"
i=0
for b in "${missing[@]}"; do
  i=$((i + 1))
  t0=$(date +%s)
  log "[$i/${#missing[@]}] $b ..."
  CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/$b.partial" "${pkg[$b]}"
  mv "$out/$b.partial" "$out/$b"   # a binary appears under its name only when whole
  log "[$i/${#missing[@]}] $b built in $(( $(date +%s) - t0 )) s"
done
log "done in $(( $(date +%s) - start )) s"
echo "$out"
