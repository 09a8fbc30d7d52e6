#!/usr/bin/env bash
# Stop the Kubernetes test bed started by start.sh: by PID (from STATE_DIR/pids), in reverse start
# order, SIGTERM then SIGKILL after a grace period. Never by process name. Keeps the logs; removes
# the etcd data and the pids file so the state directory can be started again.
#
# With a node (K8S_TESTBED_NODE=1 start.sh): the kubelet goes first; before its containerd stops,
# every pod sandbox and container in its k8s.io namespace is killed and deleted; after the
# processes, node.sh's node_cleanup_host unmounts what is mounted under STATE_DIR, removes the
# /kubepods cgroups, the bridge, the iptables rules start added (and per-pod masquerade chains),
# the machine-wide paths that did not exist before, and restores the sysctls the kubelet set.
# The host's and Docker's containerd (and /run/containerd/s) are never touched. Idempotent; safe
# after a failed start.
# Usage: tests/testbed/k8s/stop.sh STATE_DIR
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
STATE=${1:?usage: stop.sh STATE_DIR}
[ -s "$STATE/pids" ] || [ -d "$STATE/node" ] || exit 0
log() { echo "[k8s-testbed stop] $*" >&2; }
# shellcheck source=tests/testbed/k8s/node.sh
. "$here/node.sh"
t0=$(date +%s%N)

if [ -s "$STATE/pids" ]; then
  tac "$STATE/pids" | while read -r name pid; do
    # Only signal a PID that still runs the binary we started (guards against PID reuse).
    if ! [ -r "/proc/$pid/cmdline" ] || ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"; then
      continue
    fi
    # The kubelet is stopped by now: end the pods while their containerd still answers.
    [ "$name" = containerd ] && node_stop_pods
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ($pid) ignored SIGTERM for 5s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name ($pid) at +$((($(date +%s%N) - t0) / 1000000)) ms"
  done
fi
node_cleanup_host
rm -f "$STATE/pids"
rm -rf "$STATE/etcd"
log "stopped in $((($(date +%s%N) - t0) / 1000000)) ms"
