#!/usr/bin/env bash
# The whole test suite (`make test`): every part runs even when an earlier one fails, then a
# table of parts with their time and result; exits non-zero if any part failed.
# SUITE_PARTS="lint unit" limits the run to some parts.
# Each row has the part's test counts (passed/failed/skipped; a skip not on tests/allowed-skips.yml
# already failed its part), and the table ends with the CI time budget: each part's time against its
# share, the total against the bar (tests/suite_report.py).
# Each part's output goes to .cache/suite/<part>.log and to the terminal; under the table, a failed
# part gets the lines that say why (pytest's FAILED/ERROR lines, Molecule's "why:", make errors),
# since CI keeps only the end of the output.
#
# Parts run beside `integration` in chains (SUITE_BESIDE; chains separated by "|", the parts of a chain
# one after another), by default tests/suite_report.py's BESIDE_CHAINS, "lint unit agent sanity
# release-check | images": the short CPU-bound parts, in the time the integration tests wait on
# containers, Pods and the Kubernetes test bed, and the node images (on a cold machine the arm64 one
# takes about one core under qemu for 8-10 min).
# SUITE_BESIDE="lint unit agent sanity release-check | images molecule" also runs Molecule beside them:
# the one node test bed per machine is then taken in turn (tests/integration/k8s_testbed.py, node_testbed_turn; the Molecule runner, told by
# MOLECULE_BESIDE_INTEGRATION=1, runs agent_jobs last). Their output is printed when integration ends.
# SUITE_BESIDE="" runs every part in turn.
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
suite_t0=$SECONDS
# `make test` ran setup already; parts running side by side must not run it again at the same time.
if [ -n "${MAKELEVEL:-}" ]; then
  make_opts=(-o setup)
else
  make --no-print-directory setup || exit 1
  make_opts=(-o setup)
fi
beside=${SUITE_BESIDE-$(.venv/bin/python tests/suite_report.py beside)}

for part in $parts; do rm -f "$logs/$part.row" "$logs/$part.time" "$logs/$part.why"; done

# run_part PART [quiet]: run one part, leaving its table row in $logs/PART.row, its time in
# $logs/PART.time and its why-lines in $logs/PART.why (files, so that a part run in the background
# reports the same way).
run_part() {
  local part=$1 quiet=${2:-} t0=$SECONDS limit=() rc took tally left
  rm -f "$logs/$part.row" "$logs/$part.time" "$logs/$part.why"
  if [ -n "$deadline" ]; then
    left=$((deadline - $(date +%s) - grace))
    if [ "$left" -lt 60 ]; then
      printf '  %-14s %6s   NOT RUN (the suite deadline leaves %ss)\n' "$part" - $((left + grace)) >"$logs/$part.row"
      echo "  ${part}: not run" >"$logs/$part.why"
      return
    fi
    limit=(timeout -s INT -k "$grace" "$left")
  fi
  if [ -n "$quiet" ]; then
    "${limit[@]}" make --no-print-directory "${make_opts[@]}" "$part" >"$logs/$part.log" 2>&1
    rc=$?
  else
    "${limit[@]}" make --no-print-directory "${make_opts[@]}" "$part" 2>&1 | tee "$logs/$part.log"
    rc=${PIPESTATUS[0]}
  fi
  took=$((SECONDS - t0))
  echo "$part=$took" >"$logs/$part.time"
  tally=$(.venv/bin/python tests/suite_report.py counts "$logs/$part.log" 2>/dev/null)
  if [ "$rc" = 0 ]; then
    printf '  %-14s %6ds  %-8s %s\n' "$part" "$took" ok "$tally" >"$logs/$part.row"
  elif [ "${#limit[@]}" -gt 0 ] && { [ "$rc" = 124 ] || [ "$rc" = 137 ]; }; then
    printf '  %-14s %6ds  TIMEOUT (stopped at the suite deadline)\n' "$part" "$took" >"$logs/$part.row"
    echo "  ${part}: still running at the suite deadline; its log ends with: $(tail -n 1 "$logs/$part.log" | cut -c1-300)" >"$logs/$part.why"
  else
    printf '  %-14s %6ds  %-8s %s\n' "$part" "$took" FAILED "$tally" >"$logs/$part.row"
    grep -E '^(FAILED|ERROR)[: ]|^UNEXPECTED SKIP: |^    why: |^  [a-z_]+ +FAIL |\*\*\* |^[a-z]+: (error|failed)' "$logs/$part.log" \
      | tail -n 12 | cut -c1-400 | sed "s/^/  ${part}: /" >"$logs/$part.why"
    [ -s "$logs/$part.why" ] || echo "  ${part}: failed (see $logs/$part.log)" >"$logs/$part.why"
  fi
}

# The parts to run beside integration: those of SUITE_BESIDE that are in this run, when integration is,
# as chains (one string of parts each, in SUITE_BESIDE's order).
declare -a side=() main=() chains=()
IFS='|' read -r -a beside_chains <<<"$beside"
if [[ " $parts " == *" integration "* ]]; then
  for chain in "${beside_chains[@]}"; do
    kept=""
    for part in $chain; do
      if [[ " $parts " == *" $part "* ]]; then kept+=" $part"; side+=("$part"); fi
    done
    [ -n "$kept" ] && chains+=("$kept")
  done
fi
for part in $parts; do
  [[ " ${side[*]} " == *" $part "* ]] || main+=("$part")
done
for part in "${main[@]}"; do
  if [ "$part" = integration ] && [ "${#side[@]}" -gt 0 ]; then
    echo "================ integration (beside it:$(printf ' [%s ]' "${chains[@]}"); their output follows it) ================"
    side_pids=()
    for chain in "${chains[@]}"; do
      (export MOLECULE_BESIDE_INTEGRATION=1; for p in $chain; do run_part "$p" quiet; done) &
      side_pids+=($!)
    done
    run_part integration
    wait "${side_pids[@]}"
    for p in "${side[@]}"; do
      echo "================ ${p} (ran beside integration) ================"
      cat "$logs/$p.log" 2>/dev/null
    done
    continue
  fi
  echo "================ ${part} ================"
  run_part "$part"
done

echo
echo "Test suite parts:"
declare -a times=()
failed=0 count=0
for part in $parts; do
  count=$((count + 1))
  if [ ! -f "$logs/$part.row" ]; then # its background chain was killed before it ran
    printf '  %-14s %6s   NOT RUN (stopped before it started)\n' "$part" - >"$logs/$part.row"
  fi
  row=$(cat "$logs/$part.row")
  [[ " ${side[*]} " == *" $part "* ]] && row+="   (beside integration)"
  echo "$row"
  if ! grep -qE "^  $part +[0-9]+s  ok " "$logs/$part.row"; then failed=$((failed + 1)); fi
  [ -f "$logs/$part.time" ] && times+=("$(cat "$logs/$part.time")")
done
if [ "$failed" -gt 0 ]; then
  echo "Why (from .cache/suite/<part>.log):"
  for part in $parts; do [ -f "$logs/$part.why" ] && cat "$logs/$part.why"; done
fi
.venv/bin/python tests/suite_report.py budget "${times[@]}" "suite=$((SECONDS - suite_t0))" || true
echo "suite: $((count - failed)) passed, ${failed} failed"
exit $((failed > 0))
