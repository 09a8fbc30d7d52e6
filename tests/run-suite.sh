#!/usr/bin/env bash
# The whole test suite (`make test`): every part runs even when an earlier one fails, then a
# table of parts with their time and result; exits non-zero if any part failed.
# SUITE_PARTS="lint unit" limits the run to some parts.
# Each row has the part's test counts (passed/failed/skipped; a skip not on tests/allowed-skips.yml
# already failed its part), and the table ends with the CI time budget: each part's time against its
# share, the total against the bar (tests/suite_report.py).
# Each part's output goes to the terminal and to .cache/suite/<part>.log; under the table, a failed
# part gets the lines that say why (pytest's FAILED/ERROR lines, Molecule's "why:", make errors),
# since CI keeps only the end of the output.
#
# A deadline bounds the whole run, so that a part that hangs is stopped and the table still printed:
# SUITE_DEADLINE_EPOCH (seconds since the epoch; .ci/run sets it from CI's own limit) or
# SUITE_TIME_LIMIT (seconds from now). A part gets the time left minus SUITE_KILL_GRACE (180 s): then
# SIGINT, which pytest and the Molecule runner answer by cleaning up (test bed stopped, nodes
# destroyed), and SIGKILL after the grace. Parts that no longer fit are reported as not run.
set -uo pipefail
cd "$(dirname "$0")/.."
parts=${SUITE_PARTS:-"lint unit agent sanity release-check integration images molecule"}
logs=.cache/suite
mkdir -p "$logs"
grace=${SUITE_KILL_GRACE:-180}
deadline=${SUITE_DEADLINE_EPOCH:-}
if [ -z "$deadline" ] && [ -n "${SUITE_TIME_LIMIT:-}" ]; then
  deadline=$(($(date +%s) + SUITE_TIME_LIMIT))
fi
declare -a rows=() why=() times=()
failed=0
for part in $parts; do
  echo "================ ${part} ================"
  t0=$SECONDS
  limit=()
  if [ -n "$deadline" ]; then
    left=$((deadline - $(date +%s) - grace))
    if [ "$left" -lt 60 ]; then
      rows+=("$(printf '  %-14s %6s   NOT RUN (the suite deadline leaves %ss)' "$part" - $((left + grace)))")
      failed=$((failed + 1))
      continue
    fi
    limit=(timeout -s INT -k "$grace" "$left")
  fi
  "${limit[@]}" make --no-print-directory "$part" 2>&1 | tee "$logs/$part.log"
  rc=${PIPESTATUS[0]}
  took=$((SECONDS - t0))
  times+=("$part=$took")
  tally=$(.venv/bin/python tests/suite_report.py counts "$logs/$part.log" 2>/dev/null)
  if [ "$rc" = 0 ]; then
    rows+=("$(printf '  %-14s %6ds  %-8s %s' "$part" "$took" ok "$tally")")
  elif [ "${#limit[@]}" -gt 0 ] && { [ "$rc" = 124 ] || [ "$rc" = 137 ]; }; then
    rows+=("$(printf '  %-14s %6ds  TIMEOUT (stopped at the suite deadline)' "$part" "$took")")
    failed=$((failed + 1))
    why+=("  ${part}: still running at the suite deadline; its log ends with: $(tail -n 1 "$logs/$part.log" | cut -c1-300)")
  else
    rows+=("$(printf '  %-14s %6ds  %-8s %s' "$part" "$took" FAILED "$tally")")
    failed=$((failed + 1))
    while IFS= read -r line; do
      why+=("  ${part}: ${line:0:400}")
    done < <(grep -E '^(FAILED|ERROR)[: ]|^UNEXPECTED SKIP: |^    why: |^  [a-z_]+ +FAIL |\*\*\* |^[a-z]+: (error|failed)' "$logs/$part.log" | tail -n 12)
  fi
done
echo
echo "Test suite parts:"
printf '%s\n' "${rows[@]}"
if [ "${#why[@]}" -gt 0 ]; then
  echo "Why (from .cache/suite/<part>.log):"
  printf '%s\n' "${why[@]}"
fi
.venv/bin/python tests/suite_report.py budget "${times[@]}" || true
total=$(wc -w <<<"$parts")
echo "suite: $((total - failed)) passed, ${failed} failed"
exit $((failed > 0))
