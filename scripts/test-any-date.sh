#!/usr/bin/env bash
# The whole suite on other dates: libfaketime (Debian's faketime package) moves the clock of the
# test runner, and of every Tessera a test starts, 400 days forward and then one day back, while
# PostgreSQL and Redis keep the machine's time. A test that passes only near the day it was written
# (a fake clock meeting a real one, a fixed date in a fixture) fails here.
#   scripts/test-any-date.sh                      both offsets
#   scripts/test-any-date.sh +3y -90d             others, in faketime's -f syntax
#   scripts/test-any-date.sh +400d -- ARGS...     ARGS go to vitest (a seed for a shuffled order, files)
# Run after `npm ci` (the suite runs on the built dist/ for its process tests).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v faketime >/dev/null 2>&1; then
  echo "faketime is not installed (Debian: apt-get install faketime)" >&2
  exit 2
fi
offsets=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  offsets+=("$1")
  shift
done
if [ $# -gt 0 ]; then shift; fi
[ ${#offsets[@]} -gt 0 ] || offsets=(+400d -1d)

for offset in "${offsets[@]}"; do
  echo "== the test suite with the clock moved $offset: $(faketime -f "$offset" date -u +%FT%TZ)${*:+ (vitest $*)}"
  faketime -m -f "$offset" npx vitest run "$@"
done
