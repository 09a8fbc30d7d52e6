#!/usr/bin/env bash
# Start the Kubernetes test bed on 127.0.0.1: etcd, kube-apiserver and kube-controller-manager
# v1.20.2 (built by build.sh), with an openssl-generated PKI, static bearer tokens and a kubeconfig.
# Only loopback listeners are opened. PIDs go to $STATE/pids (one "name pid" a line, in start
# order); stop.sh stops them by PID in reverse order.
#
# With K8S_TESTBED_NODE=1 it also runs one node, so that real Pods run (node.sh, sourced below):
# kube-scheduler, a separate containerd (the host's binary, everything under $STATE), a CNI bridge
# (raibidtb0, 10.244.77.0/24) and a kubelet registered as K8S_TESTBED_NODE_NAME on 10.244.77.1;
# it returns when the node is Ready. One node test bed per machine at a time (the bridge, the
# /kubepods cgroups and kubelet's hard-coded paths are machine-wide); see docs/testbed.md.
#
# Usage: tests/testbed/k8s/start.sh STATE_DIR
# Ports (env): K8S_TESTBED_ETCD_PORT (2379), K8S_TESTBED_ETCD_PEER_PORT (2380),
#              K8S_TESTBED_APISERVER_PORT (6443), K8S_TESTBED_CM_PORT (10257)
#   node mode: K8S_TESTBED_SCHEDULER_PORT (10259), K8S_TESTBED_KUBELET_PORT (10250),
#              K8S_TESTBED_KUBELET_HEALTHZ_PORT (10248)
# Node (env): K8S_TESTBED_NODE_NAME (raibid-testbed-node), K8S_TESTBED_NODE_LABELS (a,b=c list),
#             K8S_TESTBED_NODE_READY_TIMEOUT (seconds, 90)
# Writes $STATE/env (KUBECONFIG=..., K8S_TESTBED_*=...) and prints the same lines on stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
STATE=${1:?usage: start.sh STATE_DIR}
ETCD_PORT=${K8S_TESTBED_ETCD_PORT:-2379}
ETCD_PEER_PORT=${K8S_TESTBED_ETCD_PEER_PORT:-2380}
API_PORT=${K8S_TESTBED_APISERVER_PORT:-6443}
CM_PORT=${K8S_TESTBED_CM_PORT:-10257}
NODE=${K8S_TESTBED_NODE:-0}
[ "$NODE" = 1 ] || NODE=0
log() { echo "[k8s-testbed start] $*" >&2; }

BIN=$(K8S_TESTBED_NODE=$NODE "$here/build.sh")
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
if [ -s "$STATE/pids" ]; then
  log "$STATE/pids exists: the test bed in $STATE is running or was not stopped (run stop.sh $STATE)"
  exit 1
fi
if [ "$NODE" = 1 ]; then
  # shellcheck source=tests/testbed/k8s/node.sh
  . "$here/node.sh"
  node_preflight
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
# The apiserver's client certificate towards kubelets (logs, exec): a system:masters member, so the
# kubelet's webhook authorization allows it.
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
  >"$PKI/kubelet-client.ext"
openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
  -keyout "$PKI/kubelet-client.key" -out "$PKI/kubelet-client.csr" 2>/dev/null
openssl x509 -req -in "$PKI/kubelet-client.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
  -days 30 -extfile "$PKI/kubelet-client.ext" -out "$PKI/kubelet-client.crt" 2>/dev/null
openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

# --- static tokens and kubeconfigs ---------------------------------------------------------------
admin_token=$(openssl rand -hex 24)
cm_token=$(openssl rand -hex 24)
scheduler_token=$(openssl rand -hex 24)
kubelet_token=$(openssl rand -hex 24)
NODE_NAME=${K8S_TESTBED_NODE_NAME:-raibid-testbed-node}
# A test bed: every component is a system:masters member (no Node authorizer, no bootstrap).
{
  printf '%s,admin,admin-uid,system:masters\n' "$admin_token"
  printf '%s,system:kube-controller-manager,cm-uid,system:masters\n' "$cm_token"
  printf '%s,system:kube-scheduler,scheduler-uid,system:masters\n' "$scheduler_token"
  printf '%s,system:node:%s,kubelet-uid,system:masters\n' "$kubelet_token" "$NODE_NAME"
} >"$PKI/tokens.csv"
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
kubeconfig system:kube-scheduler "$scheduler_token" "$STATE/scheduler.kubeconfig"
kubeconfig "system:node:$NODE_NAME" "$kubelet_token" "$STATE/kubelet.kubeconfig"

: >"$STATE/pids"
# Any failure from here on (a wait that timed out, a command that failed) stops what was started.
on_exit() {
  local rc=$?
  [ "$rc" = 0 ] || "$here/stop.sh" "$STATE" >&2 || true
}
trap on_exit EXIT
record() { echo "$1 $2" >>"$STATE/pids"; }
alive_or_die() { # name pid
  if ! kill -0 "$2" 2>/dev/null; then
    log "$1 exited during start; last lines of $STATE/logs/$1.log:"
    tail -n 20 "$STATE/logs/$1.log" >&2
    "$here/stop.sh" "$STATE" >&2 || true
    exit 1
  fi
}
wait_for() { # name pid seconds command...: retry the command until it succeeds, at most `seconds`
  local name=$1 pid=$2 limit=$3 what="" arg end
  shift 3
  # Named by its URL, never by the whole command line: that carries the admin token.
  for arg in "$@"; do
    case $arg in http://* | https://*) what=$arg ;; esac
  done
  [ -n "$what" ] || what="'$*'"
  log "waiting for $name to answer $what (up to ${limit} s)"
  end=$((SECONDS + limit))
  while ((SECONDS < end)); do
    # Each try is bounded too: a listener that accepts and never answers must not hang the start.
    if timeout 5 "$@" >/dev/null 2>&1; then return 0; fi
    alive_or_die "$name" "$pid"
    sleep 0.2
  done
  log "$name did not answer $what within ${limit} s; its log ($STATE/logs/$name.log) ends:"
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
  --enable-priority-and-fairness=false --cert-dir "$PKI" --allow-privileged=true \
  --kubelet-client-certificate "$PKI/kubelet-client.crt" --kubelet-client-key "$PKI/kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,Hostname \
  >"$STATE/logs/kube-apiserver.log" 2>&1 &
api_pid=$!
record kube-apiserver "$api_pid"
wait_for kube-apiserver "$api_pid" 60 curl -fsS --cacert "$PKI/ca.crt" \
  -H "Authorization: Bearer ${admin_token}" "https://127.0.0.1:${API_PORT}/readyz"

# --- kube-controller-manager (namespace deletion, garbage collection, default ServiceAccounts) ----
controllers='*,-nodeipam,-nodelifecycle,-service,-route,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-ttl,-ttl-after-finished,-bootstrapsigner,-tokencleaner,-csrsigning,-csrapproving,-csrcleaner,-cloud-node-lifecycle'
# With a node: the node lifecycle controller removes the not-ready taint the kubelet registers with,
# and the PersistentVolume binder binds claims to the volumes a test creates (no provisioner here).
if [ "$NODE" = 1 ]; then
  controllers=${controllers/,-nodelifecycle/}
  controllers=${controllers/,-persistentvolume-binder/}
fi
"$BIN/kube-controller-manager" \
  --kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$STATE/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$CM_PORT" --port 0 --leader-elect=false \
  --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
  --use-service-account-credentials=false --cert-dir "$PKI/cm" \
  --controllers "$controllers" \
  >"$STATE/logs/kube-controller-manager.log" 2>&1 &
cm_pid=$!
record kube-controller-manager "$cm_pid"
wait_for kube-controller-manager "$cm_pid" 30 curl -fsSk "https://127.0.0.1:${CM_PORT}/healthz"

cp_ms=$((($(date +%s%N) - t0) / 1000000))
log "control plane ready in ${cp_ms} ms (apiserver https://127.0.0.1:${API_PORT})"

node_env=()
if [ "$NODE" = 1 ]; then
  start_node # sets node_env
fi

elapsed_ms=$((($(date +%s%N) - t0) / 1000000))
{
  echo "KUBECONFIG=$STATE/admin.kubeconfig"
  echo "K8S_TESTBED_SERVER=https://127.0.0.1:${API_PORT}"
  echo "K8S_TESTBED_TOKEN_FILE=$PKI/tokens.csv"
  echo "K8S_TESTBED_CA=$PKI/ca.crt"
  echo "K8S_TESTBED_START_MS=$elapsed_ms"
  echo "K8S_TESTBED_CONTROL_PLANE_MS=$cp_ms"
  for line in "${node_env[@]}"; do echo "$line"; done
} >"$STATE/env"
[ "$NODE" = 1 ] && log "node ${NODE_NAME} Ready; test bed up in ${elapsed_ms} ms"
cat "$STATE/env"
