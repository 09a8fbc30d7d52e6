#!/usr/bin/env bash
# Stop the Kubernetes test bed started by start.sh: by PID (from STATE_DIR/pids), in reverse start
# order, SIGTERM then SIGKILL after a grace period. Never by process name. Keeps the logs; removes
# the etcd data and the pids file so the state directory can be started again.
# Usage: tests/testbed/k8s/stop.sh STATE_DIR
set -uo pipefail
STATE=${1:?usage: stop.sh STATE_DIR}
[ -s "$STATE/pids" ] || exit 0
log() { echo "[k8s-testbed stop] $*" >&2; }

tac "$STATE/pids" | while read -r name pid; do
  # Only signal a PID that still runs the binary we started (guards against PID reuse).
  if ! [ -r "/proc/$pid/cmdline" ] || ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"; then
    continue
  fi
  kill -TERM "$pid" 2>/dev/null || continue
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name ($pid) ignored SIGTERM for 5s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  log "stopped $name ($pid)"
done
rm -f "$STATE/pids"
rm -rf "$STATE/etcd"
