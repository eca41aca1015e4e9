#!/usr/bin/env bash
# Builds Ory Hydra (the second, independent OIDC provider the login tests run against) from Go modules
# into a cache keyed by version, and prints the binary's path on the last line of stdout. Builds only when
# the binary is missing. KUBEVISA_HYDRA_BIN points at an existing binary instead.
#
# Hydra keeps its state in SQL; the tests run it with DSN=memory (SQLite in memory), which needs the
# `sqlite` build tag and cgo (mattn/go-sqlite3), so this build needs a C compiler besides Go.
#
# Usage: scripts/hydra-binary.sh            # build if needed, print the binary's path
#        scripts/hydra-binary.sh --check    # exit 1 (and say why) if the binary is missing, build nothing
set -euo pipefail

HYDRA_VERSION=v2.3.0
# Hydra's own go.mod replaces pop with Ory's fork; a dependency's replace directives are ignored, so the
# build module repeats this one (the version is the one Hydra $HYDRA_VERSION pins).
POP_FORK=github.com/ory/pop/v6@v6.2.1-0.20241121111754-e5dfc0f3344b
MIN_GO_MINOR=24

log() { printf '[hydra-binary] %s\n' "$*" >&2; }

if [[ -n "${KUBEVISA_HYDRA_BIN:-}" ]]; then
  [[ -x "$KUBEVISA_HYDRA_BIN" ]] || { log "KUBEVISA_HYDRA_BIN=$KUBEVISA_HYDRA_BIN is not an executable file. Point it at a Hydra $HYDRA_VERSION binary built with -tags sqlite, or unset it to build one."; exit 1; }
  echo "$KUBEVISA_HYDRA_BIN"; exit 0
fi

cache_root=${KUBEVISA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubevisa}
out="$cache_root/hydra-$HYDRA_VERSION"
bin="$out/hydra"
if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
if [[ "${1:-}" == "--check" ]]; then log "missing: $bin"; exit 1; fi

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin /usr/lib/go/bin; do [[ -x "$candidate/go" ]] && PATH="$candidate:$PATH"; done
fi
if ! command -v go >/dev/null 2>&1; then
  log "Go is not installed. Install Go 1.$MIN_GO_MINOR or newer (https://go.dev/dl/, or your distribution's golang package) and run this again, or set KUBEVISA_HYDRA_BIN to a prebuilt Hydra $HYDRA_VERSION."
  exit 1
fi
go_version=$(go env GOVERSION)
go_minor=$(sed -E 's/^go1\.([0-9]+).*/\1/' <<<"$go_version")
if [[ ! "$go_minor" =~ ^[0-9]+$ ]] || (( go_minor < MIN_GO_MINOR )); then
  log "Go $go_version is too old: this build needs Go 1.$MIN_GO_MINOR or newer (go get -tool). Install a newer Go and run this again."
  exit 1
fi
if ! command -v "${CC:-gcc}" >/dev/null 2>&1; then
  log "no C compiler (${CC:-gcc}): Hydra's SQLite driver needs cgo. Install gcc (Debian: apt-get install gcc) and run this again."
  exit 1
fi

mkdir -p "$out"
# One build at a time per cache: a second caller (another test run, another checkout) waits for the first
# instead of compiling Hydra beside it, then finds it built.
exec 9>"$out.lock"
if ! flock -n 9; then
  log "another build of Hydra is running; waiting for it (up to 40 minutes)"
  flock -w 2400 9 || { log "gave up waiting for the other build after 40 minutes; is it stuck? Remove $out.lock if no build runs."; exit 1; }
  if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
fi
work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
log "building Ory Hydra $HYDRA_VERSION into $out"
log "a cold build takes several minutes on 2 cores (18 min measured while other builds shared them); later runs reuse the cache"
start=$(date +%s)
cd "$work"
export GOFLAGS=-mod=mod
go mod init kubevisa.local/hydra-build >/dev/null 2>&1
go mod edit -replace "github.com/gobuffalo/pop/v6=$POP_FORK"
log "[1/2] resolving modules ..."
t0=$(date +%s)
# go get names every module it adds (hundreds of lines): keep them for a failure only.
if ! go get -tool "github.com/ory/hydra/v2@$HYDRA_VERSION" 2>"$work/get.log"; then
  cat "$work/get.log" >&2; log "could not resolve Hydra's modules (is the Go module proxy reachable?)"; exit 1
fi
log "[1/2] modules resolved in $(( $(date +%s) - t0 )) s"
log "[2/2] compiling (cgo, -tags sqlite) ..."
t0=$(date +%s)
ldflags="-s -w -X github.com/ory/hydra/v2/driver/config.Version=$HYDRA_VERSION"
CGO_ENABLED=1 go build -trimpath -tags sqlite,sqlite_omit_load_extension -ldflags "$ldflags" \
  -o "$bin.partial" github.com/ory/hydra/v2
mv "$bin.partial" "$bin"   # the binary appears under its name only when whole
log "[2/2] compiled in $(( $(date +%s) - t0 )) s"
log "done in $(( $(date +%s) - start )) s"
echo "$bin"
