#!/usr/bin/env bash
# Runs every kubevisa test (unit, store, and end-to-end against a real control plane), after setting up
# what they need. Pass node --test options or files to narrow it: scripts/test.sh test/control-plane.test.ts
# A skipped test fails the run: a test that cannot run here (no Kubernetes binaries, no prlimit, an engine that
# cannot reopen) proves nothing, and CI must say so. KUBEVISA_ALLOW_SKIPS=1 lets a deliberate local run through.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$here/scripts/setup.sh"
cd "$here"
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
if [[ $# -gt 0 ]]; then targets=("$@"); else targets=('src/**/*.test.ts' 'test/**/*.test.ts'); fi
started=$(date +%s)
status=0
# Readable progress for people on stdout; the TAP stream is kept for the closing summary.
# --disable-proto=throw, as every kubevisa process runs: node --test passes it on to each test file's process, so
# the servers the tests start in-process (and their worker threads) run with it too.
node --disable-warning=ExperimentalWarning --disable-proto=throw --test --test-concurrency=2 --test-timeout=300000 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  "${targets[@]}" || status=$?
echo
echo "test summary ($(( $(date +%s) - started )) s):"
grep -E '^# (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ' "$tap" || true
skipped=$(sed -nE 's/^# (skipped|todo) ([0-9]+)$/\2/p' "$tap" | awk '{ n += $1 } END { print n + 0 }')
if [[ $skipped -gt 0 ]]; then
  echo
  echo "Skipped or todo tests ($skipped):"
  grep -E '^ *(not )?ok .*# (SKIP|TODO)' "$tap" | sed -E 's/^ +//' || true
  if [[ ${KUBEVISA_ALLOW_SKIPS:-} == 1 ]]; then
    echo 'KUBEVISA_ALLOW_SKIPS=1: accepted for this run.'
  else
    echo 'A skipped test proves nothing: make it runnable here (see each reason above), or set KUBEVISA_ALLOW_SKIPS=1'
    echo 'for a deliberate local run. CI never sets it.'
    [[ $status -eq 0 ]] && status=1
  fi
fi
exit $status
