#!/usr/bin/env bash
# Builds the pinned Helm (helm.sh/helm/v4, pinned in test/helm/go.mod) from Go modules into a cache keyed by
# version, as scripts/k8s-binaries.sh does for Kubernetes, and prints the binary's path on the last line of stdout.
# KUBEVISA_HELM points at an existing helm binary instead.
#
# Usage: scripts/helm-binary.sh            # build if needed, print the path
#        scripts/helm-binary.sh --check    # exit 1 (and say why) if it is not built, build nothing
set -euo pipefail

HELM_VERSION=v4.3.2
MIN_GO_MINOR=26

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module_dir="$here/test/helm"
log() { printf '[helm-binary] %s\n' "$*" >&2; }

if [[ -n "${KUBEVISA_HELM:-}" ]]; then
  [[ -x "$KUBEVISA_HELM" ]] || { log "KUBEVISA_HELM=$KUBEVISA_HELM is not an executable. Point it at a helm $HELM_VERSION binary, or unset it to build one."; exit 1; }
  echo "$KUBEVISA_HELM"; exit 0
fi

cache_root=${KUBEVISA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubevisa}
mod_hash=$(sha256sum "$module_dir/go.mod" | cut -c1-8)
out="$cache_root/helm-$HELM_VERSION-$mod_hash"
if [[ -x "$out/helm" ]]; then echo "$out/helm"; exit 0; fi
if [[ "${1:-}" == "--check" ]]; then log "missing: $out/helm"; exit 1; fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do [[ -x "$candidate/go" ]] && PATH="$candidate:$PATH"; done
fi
if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed. Install Go 1.$MIN_GO_MINOR or newer (https://go.dev/dl/) and run this again, or set KUBEVISA_HELM to a helm binary."
  exit 1
fi
go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$(go env GOVERSION)")
if [[ ! "$go_minor" =~ ^[0-9]+$ ]] || (( go_minor < MIN_GO_MINOR )); then
  log "Go $(go env GOVERSION) is too old: Helm $HELM_VERSION needs Go 1.$MIN_GO_MINOR or newer."
  exit 1
fi

mkdir -p "$out"
# One build at a time per cache: a second caller (another test run, another checkout) waits for the first
# instead of compiling Helm beside it, then finds it built.
exec 9>"$out.lock"
if ! flock -n 9; then
  log "another build of Helm is running; waiting for it (up to 40 minutes)"
  flock -w 2400 9 || { log "gave up waiting for the other build after 40 minutes; is it stuck? Remove $out.lock if no build runs."; exit 1; }
  if [[ -x "$out/helm" ]]; then echo "$out/helm"; exit 0; fi
fi
log "building helm $HELM_VERSION into $out (2 minutes on 2 cores when quiet, about 28 minutes measured beside other builds; later runs reuse the cache)"
start=$(date +%s)
cd "$module_dir"
# The version Helm reports (helm version) is set the way Helm's own Makefile sets it.
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
  -o "$out/helm.partial" helm.sh/helm/v4/cmd/helm
mv "$out/helm.partial" "$out/helm"   # the binary appears under its name only when whole
log "done in $(( $(date +%s) - start )) s"
echo "$out/helm"
