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
  local out
  out=$(mktemp -d)
  # ISOLATION_JOBS files at a time (default 2, the suite's own parallelism on these machines), each
  # still alone in a vitest run of its own: it shares nothing with the other but the PostgreSQL and
  # Redis servers, as any two test files of a normal run do. Each file's output is shown when it
  # fails; a pass is one line.
  find src test -name '*.test.ts' -not -path 'test/fixtures/*' | sort |
    xargs -P "${ISOLATION_JOBS:-2}" -I{} sh -c '
      log="$2/$(printf %s "$1" | tr / _).log"
      if npx vitest run "$1" --reporter=dot >"$log" 2>&1; then
        echo "== $1 alone: passed"
      else
        echo "$1" >>"$2/failed"
        echo "== $1 alone: FAILED"
        cat "$log"
      fi' _ {} "$out"
  if [ -s "$out/failed" ]; then
    printf 'failed alone: %s\n' $(cat "$out/failed") >&2
    rm -rf "$out"
    return 1
  fi
  rm -rf "$out"
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
