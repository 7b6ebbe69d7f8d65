#!/usr/bin/env bash
# The suite holds together only through what each test sets up itself:
#   scripts/test-isolation.sh files                    every test file alone, one vitest run each
#   scripts/test-isolation.sh shuffle [SEED [FILE...]] the whole suite (or the files named) with files
#                                                      and tests in a random order; the seed is
#                                                      printed, give it again to replay that order
#   scripts/test-isolation.sh                          both
# Builds first: the process tests run the built dist/.
set -euo pipefail
cd "$(dirname "$0")/.."

files() {
  local failed=()
  local list
  list=$(find src test -name '*.test.ts' -not -path 'test/fixtures/*' | sort)
  for file in $list; do
    echo "== $file alone"
    npx vitest run "$file" --reporter=dot || failed+=("$file")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'failed alone: %s\n' "${failed[@]}" >&2
    return 1
  fi
}

shuffle() {
  local seed="${1:-$RANDOM$RANDOM}"
  if [ $# -gt 0 ]; then shift; fi
  echo "== ${*:-the whole suite} shuffled, files and tests: --sequence.seed $seed"
  echo "   (replay: $0 shuffle $seed${*:+ $*})"
  npx vitest run --sequence.shuffle.files --sequence.shuffle.tests --sequence.seed "$seed" "$@"
}

usage() {
  echo "usage: $0 [files | shuffle [SEED [FILE...]]]" >&2
  exit 2
}

mode="${1:-both}"
if [ $# -gt 0 ]; then shift; fi
case "$mode" in
  files | both) [ $# -eq 0 ] || usage ;;
  shuffle) case "${1:-0}" in *[!0-9]* | '') echo "not a seed: $1 (a whole number)" >&2; usage ;; esac ;;
  *) usage ;;
esac
npm run build >/dev/null
case "$mode" in
  files) files ;;
  shuffle) shuffle "$@" ;;
  both) files && shuffle ;;
esac
