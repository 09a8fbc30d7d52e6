#!/usr/bin/env bash
# Start the Kubernetes test bed on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager
# v1.20.2 (built by build.sh), with an openssl-generated PKI, static bearer tokens and a kubeconfig.
# Only loopback listeners are opened. PIDs go to $STATE/pids (one "name pid" a line, in start
# order); stop.sh stops them by PID in reverse order.
#
# Usage: tests/testbed/k8s/start.sh STATE_DIR
# Ports (env): K8S_TESTBED_ETCD_PORT (2379), K8S_TESTBED_ETCD_PEER_PORT (2380),
#              K8S_TESTBED_APISERVER_PORT (6443), K8S_TESTBED_CM_PORT (10257)
# Writes $STATE/env (KUBECONFIG=..., K8S_TESTBED_*=...) and prints the same lines on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
STATE=${1:?usage: start.sh STATE_DIR}
ETCD_PORT=${K8S_TESTBED_ETCD_PORT:-2379}
ETCD_PEER_PORT=${K8S_TESTBED_ETCD_PEER_PORT:-2380}
API_PORT=${K8S_TESTBED_APISERVER_PORT:-6443}
CM_PORT=${K8S_TESTBED_CM_PORT:-10257}
log() { echo "[k8s-testbed start] $*" >&2; }

BIN=$("$here/build.sh")
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
if [ -s "$STATE/pids" ]; then
  log "$STATE/pids exists: the test bed in $STATE is running or was not stopped (run stop.sh $STATE)"
  exit 1
fi
umask 077
PKI=$STATE/pki
mkdir -p "$PKI" "$STATE/logs" "$STATE/etcd"
t0=$(date +%s%N)

# --- PKI: a CA, the apiserver's serving certificate, a service-account key pair -----------------
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=raibid-testbed-ca" \
  -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
cat >"$PKI/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
EOF
openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
  -keyout "$PKI/apiserver.key" -out "$PKI/apiserver.csr" 2>/dev/null
openssl x509 -req -in "$PKI/apiserver.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
  -days 30 -extfile "$PKI/apiserver.ext" -out "$PKI/apiserver.crt" 2>/dev/null
openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

# --- static tokens and kubeconfigs ---------------------------------------------------------------
admin_token=$(openssl rand -hex 24)
cm_token=$(openssl rand -hex 24)
printf '%s,admin,admin-uid,system:masters\n%s,system:kube-controller-manager,cm-uid,system:masters\n' \
  "$admin_token" "$cm_token" >"$PKI/tokens.csv"
ca_data=$(base64 -w0 <"$PKI/ca.crt")
kubeconfig() { # name token file
  cat >"$3" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: raibid-testbed
    cluster:
      server: https://127.0.0.1:${API_PORT}
      certificate-authority-data: ${ca_data}
users:
  - name: $1
    user:
      token: $2
contexts:
  - name: raibid-testbed
    context: {cluster: raibid-testbed, user: $1}
current-context: raibid-testbed
EOF
}
kubeconfig admin "$admin_token" "$STATE/admin.kubeconfig"
kubeconfig system:kube-controller-manager "$cm_token" "$STATE/controller-manager.kubeconfig"

: >"$STATE/pids"
record() { echo "$1 $2" >>"$STATE/pids"; }
alive_or_die() { # name pid
  if ! kill -0 "$2" 2>/dev/null; then
    log "$1 exited during start; last lines of $STATE/logs/$1.log:"
    tail -n 20 "$STATE/logs/$1.log" >&2
    "$here/stop.sh" "$STATE" >&2 || true
    exit 1
  fi
}
wait_for() { # name pid seconds command...
  local name=$1 pid=$2 limit=$3 i
  shift 3
  for ((i = 0; i < limit * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    alive_or_die "$name" "$pid"
    sleep 0.2
  done
  log "$name not ready after ${limit}s; last lines of $STATE/logs/$name.log:"
  tail -n 20 "$STATE/logs/$name.log" >&2
  "$here/stop.sh" "$STATE" >&2 || true
  exit 1
}

# --- etcd ----------------------------------------------------------------------------------------
"$BIN/etcd" --name raibid-testbed --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
  --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
  --initial-cluster "raibid-testbed=http://127.0.0.1:${ETCD_PEER_PORT}" \
  --unsafe-no-fsync --log-level warn >"$STATE/logs/etcd.log" 2>&1 &
etcd_pid=$!
record etcd "$etcd_pid"
wait_for etcd "$etcd_pid" 30 curl -fsS "http://127.0.0.1:${ETCD_PORT}/health"

# --- kube-apiserver ------------------------------------------------------------------------------
"$BIN/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" --insecure-port 0 \
  --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
  --client-ca-file "$PKI/ca.crt" --token-auth-file "$PKI/tokens.csv" --authorization-mode RBAC \
  --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-cluster-ip-range 10.0.0.0/24 --endpoint-reconciler-type none \
  --enable-priority-and-fairness=false --cert-dir "$PKI" \
  >"$STATE/logs/kube-apiserver.log" 2>&1 &
api_pid=$!
record kube-apiserver "$api_pid"
wait_for kube-apiserver "$api_pid" 60 curl -fsS --cacert "$PKI/ca.crt" \
  -H "Authorization: Bearer ${admin_token}" "https://127.0.0.1:${API_PORT}/readyz"

# --- kube-controller-manager (namespace deletion, garbage collection, default ServiceAccounts) ----
"$BIN/kube-controller-manager" \
  --kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$CM_PORT" --port 0 --leader-elect=false \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=false --cert-dir "$PKI/cm" \
  --controllers '*,-nodeipam,-nodelifecycle,-service,-route,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-ttl,-ttl-after-finished,-bootstrapsigner,-tokencleaner,-csrsigning,-csrapproving,-csrcleaner,-cloud-node-lifecycle' \
  >"$STATE/logs/kube-controller-manager.log" 2>&1 &
cm_pid=$!
record kube-controller-manager "$cm_pid"
wait_for kube-controller-manager "$cm_pid" 30 curl -fsSk "https://127.0.0.1:${CM_PORT}/healthz"

elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
{
  echo "KUBECONFIG=$STATE/admin.kubeconfig"
  echo "K8S_TESTBED_SERVER=https://127.0.0.1:${API_PORT}"
  echo "K8S_TESTBED_TOKEN_FILE=$PKI/tokens.csv"
  echo "K8S_TESTBED_CA=$PKI/ca.crt"
  echo "K8S_TESTBED_START_MS=$elapsed_ms"
} >"$STATE/env"
log "control plane ready in ${elapsed_ms} ms (apiserver https://127.0.0.1:${API_PORT})"
cat "$STATE/env"
