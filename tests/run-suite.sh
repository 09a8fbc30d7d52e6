#!/usr/bin/env bash
# The whole test suite (`make test`): every part runs even when an earlier one fails, then a
# table of parts with their time and result; exits non-zero if any part failed.
# SUITE_PARTS="lint unit" limits the run to some parts.
# Each part's output goes to the terminal and to .cache/suite/<part>.log; under the table, a failed
# part gets the lines that say why (pytest's FAILED/ERROR lines, Molecule's "why:", make errors),
# since CI keeps only the end of the output.
set -uo pipefail
cd "$(dirname "$0")/.."
parts=${SUITE_PARTS:-"lint unit agent sanity release-check integration images molecule"}
logs=.cache/suite
mkdir -p "$logs"
declare -a rows=() why=()
failed=0
for part in $parts; do
  echo "================ ${part} ================"
  t0=$SECONDS
  make --no-print-directory "$part" 2>&1 | tee "$logs/$part.log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" = 0 ]; then
    rows+=("$(printf '  %-12s %6ds  ok' "$part" $((SECONDS - t0)))")
  else
    rows+=("$(printf '  %-12s %6ds  FAILED' "$part" $((SECONDS - t0)))")
    failed=$((failed + 1))
    while IFS= read -r line; do
      why+=("  ${part}: ${line:0:400}")
    done < <(grep -E '^(FAILED|ERROR) |^    why: |^  [a-z_]+ +FAIL |\*\*\* |^[a-z]+: (error|failed)' "$logs/$part.log" | tail -n 12)
  fi
done
echo
echo "Test suite parts:"
printf '%s\n' "${rows[@]}"
if [ "${#why[@]}" -gt 0 ]; then
  echo "Why (from .cache/suite/<part>.log):"
  printf '%s\n' "${why[@]}"
fi
total=$(wc -w <<<"$parts")
echo "suite: $((total - failed)) passed, ${failed} failed"
exit $((failed > 0))
