#!/usr/bin/env bash
# The suite holds together only through what each test sets up itself:
#   scripts/test-isolation.sh files          every test file alone, one vitest run each
#   scripts/test-isolation.sh shuffle [SEED] the whole suite with files and tests in a random order
#                                            (the seed is printed; give it to replay an order)
#   scripts/test-isolation.sh                both
# Run after `npm ci` (process tests use the built dist/).
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
  echo "== the whole suite shuffled, files and tests: --sequence.seed $seed"
  npx vitest run --sequence.shuffle.files --sequence.shuffle.tests --sequence.seed "$seed"
}

case "${1:-both}" in
  files) files ;;
  shuffle) shuffle "${2:-}" ;;
  both) files && shuffle ;;
  *) echo "usage: $0 [files | shuffle [SEED]]" >&2; exit 2 ;;
esac
