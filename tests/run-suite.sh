#!/usr/bin/env bash
# The whole test suite (`make test`): every part runs even when an earlier one fails, then a
# table of parts with their time and result; exits non-zero if any part failed.
# SUITE_PARTS="lint unit" limits the run to some parts.
set -uo pipefail
cd "$(dirname "$0")/.."
parts=${SUITE_PARTS:-"lint unit agent sanity release-check integration images molecule"}
declare -a rows=()
failed=0
for part in $parts; do
  echo "================ ${part} ================"
  t0=$SECONDS
  if make --no-print-directory "$part"; then
    rows+=("$(printf '  %-12s %6ds  ok' "$part" $((SECONDS - t0)))")
  else
    rows+=("$(printf '  %-12s %6ds  FAILED' "$part" $((SECONDS - t0)))")
    failed=$((failed + 1))
  fi
done
echo
echo "Test suite parts:"
printf '%s\n' "${rows[@]}"
total=$(wc -w <<<"$parts")
echo "suite: $((total - failed)) passed, ${failed} failed"
exit $((failed > 0))
