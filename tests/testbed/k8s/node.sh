# shellcheck shell=bash disable=SC2153,SC2154,SC2034
# (STATE, BIN, PKI, API_PORT, NODE_NAME, admin_token, here, record, wait_for come from start.sh;
# node_env is read there.)
# The node part of the Kubernetes test bed, sourced by start.sh (K8S_TESTBED_NODE=1) and stop.sh.
# Facts and traps: shared/reference/kubelet-testbed.md; summary in docs/testbed.md.
#
# Parts: kube-scheduler; a separate containerd (the host's /usr/bin/containerd 1.6 with its own
# root, state, socket, runc root and netns mounts, all under $STATE/containerd -- the host's and
# Docker's containerd are never touched); a CNI bridge (raibidtb0, 10.244.77.0/24, gateway
# 10.244.77.1, made here before the kubelet because kubelet 1.20 refuses a loopback node IP);
# the pause and busybox images (docker-archive tars from build.sh) imported into containerd's
# k8s.io namespace; a kubelet on 10.244.77.1.
#
# What start records in $STATE/node, so that stop can undo exactly that (also after a failed
# start): vars (names and paths), paths (which machine-wide paths existed before), sysctl.saved,
# iptables (the rules added), bridge (present when the bridge was made here), started (a marker).
# Machine-wide, so one node test bed at a time: /run/raibid-k8s-testbed-node.owner names it.

NODE_BRIDGE=${K8S_TESTBED_BRIDGE:-raibidtb0}
NODE_IP=10.244.77.1
NODE_POD_CIDR=10.244.77.0/24
NODE_CNI_NAME=raibid-testbed
NODE_RULE_TAG=raibid-k8s-testbed
NODE_OWNER=/run/raibid-k8s-testbed-node.owner
PAUSE_IMAGE=raibid-testbed.local/pause:1
BUSYBOX_IMAGE=raibid-testbed.local/busybox:1
# Set by kubelet 1.20 at start unless protectKernelDefaults (which would instead refuse to start
# on this host's values): saved before, restored once the node is Ready and again by stop.
NODE_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Machine-wide paths the kubelet, libcni or containerd may create (some hard-coded); stop removes
# those that did not exist before, and only the test bed's entries in those that did.
NODE_HOST_PATHS=(/var/lib/kubelet /var/lib/kubelet/device-plugins /var/log/pods /var/log/containers
  /var/lib/cni /usr/libexec/kubernetes /run/netns /etc/cni /opt/cni)

node_log() { echo "[k8s-testbed node] $*" >&2; }

cgroup_mounts() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }

# Before the control plane starts: refuse early if this machine cannot take a node test bed now.
node_preflight() {
  local tool m
  for tool in ip iptables ctr containerd containerd-shim-runc-v2 runc; do
    command -v "$tool" >/dev/null || {
      node_log "$tool is missing (containerd 1.6 and runc come from Debian's containerd/runc packages)"
      return 1
    }
  done
  if ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    node_log "the bridge $NODE_BRIDGE exists: another node test bed runs or was not stopped" \
      "(state dir: $(cat "$NODE_OWNER" 2>/dev/null || echo unknown); run stop.sh on it)"
    return 1
  fi
  for m in $(cgroup_mounts); do
    if [ -d "$m/kubepods" ]; then
      node_log "$m/kubepods exists: a kubelet runs on this machine, or a node test bed was not stopped" \
        "(state dir: $(cat "$NODE_OWNER" 2>/dev/null || echo unknown))"
      return 1
    fi
  done
}

node_write_vars() {
  mkdir -p "$STATE/node"
  cat >"$STATE/node/vars" <<EOF
NODE_BRIDGE=$NODE_BRIDGE
NODE_IP=$NODE_IP
NODE_POD_CIDR=$NODE_POD_CIDR
CTRD_DIR=$CTRD_DIR
CTRD_SOCK=$CTRD_SOCK
EOF
}

# ------------------------------------------------------------------------------------------------
start_node() {
  local cache sched_port kubelet_port healthz_port labels p m i ready_timeout t_node t_img
  cache=$(dirname "$BIN")
  sched_port=${K8S_TESTBED_SCHEDULER_PORT:-10259}
  kubelet_port=${K8S_TESTBED_KUBELET_PORT:-10250}
  healthz_port=${K8S_TESTBED_KUBELET_HEALTHZ_PORT:-10248}
  ready_timeout=${K8S_TESTBED_NODE_READY_TIMEOUT:-90}
  labels=${K8S_TESTBED_NODE_LABELS:-}
  CTRD_DIR=$STATE/containerd
  CTRD_SOCK=$CTRD_DIR/containerd.sock
  t_node=$(date +%s%N)

  # --- what exists before, so that stop removes only what the test bed made ------------------
  node_write_vars
  : >"$STATE/node/paths"
  for p in "${NODE_HOST_PATHS[@]}"; do
    if [ -e "$p" ]; then echo "present $p"; else echo "absent $p"; fi >>"$STATE/node/paths"
  done
  : >"$STATE/node/sysctl.saved"
  for p in "${NODE_SYSCTLS[@]}"; do
    echo "$p=$(sysctl -n "$p")" >>"$STATE/node/sysctl.saved"
  done
  : >"$STATE/node/iptables"
  touch "$STATE/node/started"
  echo "$STATE" >"$NODE_OWNER"

  # --- kube-scheduler --------------------------------------------------------------------------
  "$BIN/kube-scheduler" \
    --kubeconfig "$STATE/scheduler.kubeconfig" \
    --authentication-kubeconfig "$STATE/scheduler.kubeconfig" \
    --authorization-kubeconfig "$STATE/scheduler.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sched_port" --port 0 --leader-elect=false \
    --cert-dir "$PKI/scheduler" \
    >"$STATE/logs/kube-scheduler.log" 2>&1 &
  local sched_pid=$!
  record kube-scheduler "$sched_pid"
  wait_for kube-scheduler "$sched_pid" 30 curl -fsSk "https://127.0.0.1:${sched_port}/healthz"

  # --- the CNI bridge with its gateway address, before the kubelet (its node IP) ---------------
  ip link add "$NODE_BRIDGE" type bridge
  touch "$STATE/node/bridge"
  ip addr add "$NODE_IP/${NODE_POD_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # Docker sets the FORWARD policy to DROP: let the pods' traffic through (to other pods on the
  # bridge with br_netfilter, and out, masqueraded by the bridge plugin), replies back in, and to
  # the host itself (INPUT, should its policy be DROP). Each rule is recorded for stop.
  node_iptables -I FORWARD 1 -i "$NODE_BRIDGE" -m comment --comment "$NODE_RULE_TAG" -j ACCEPT
  node_iptables -I FORWARD 1 -o "$NODE_BRIDGE" -m conntrack --ctstate RELATED,ESTABLISHED \
    -m comment --comment "$NODE_RULE_TAG" -j ACCEPT
  node_iptables -I INPUT 1 -i "$NODE_BRIDGE" -m comment --comment "$NODE_RULE_TAG" -j ACCEPT

  mkdir -p "$STATE/cni/net.d" "$STATE/cni/networks"
  cat >"$STATE/cni/net.d/10-$NODE_CNI_NAME.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$NODE_CNI_NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$NODE_BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE/cni/networks",
        "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF

  # --- containerd: a separate instance, everything under $CTRD_DIR ------------------------------
  mkdir -p "$CTRD_DIR/root" "$CTRD_DIR/state" "$CTRD_DIR/runc" "$CTRD_DIR/opt"
  cat >"$CTRD_DIR/config.toml" <<EOF
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$CTRD_SOCK"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CTRD_DIR/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    # runc cannot write -998 to oom_score_adj here (no CAP_SYS_RESOURCE in the bounding set).
    restrict_oom_score_adj = true
    # Pod network namespaces under the state dir, not the shared /run/netns.
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          Root = "$CTRD_DIR/runc"
          SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$cache/cni/bin"
      conf_dir = "$STATE/cni/net.d"
      max_conf_num = 1
EOF
  # umask 022 for containerd and the kubelet (start.sh runs with 077 for its PKI): layer
  # directories containerd creates implicitly, and kubelet's volume directories, would be 0700 and
  # every image path unreadable to a non-root container user ("stat /usr/bin/tini: permission denied").
  (umask 022 && exec containerd --config "$CTRD_DIR/config.toml" --log-level info) >"$STATE/logs/containerd.log" 2>&1 &
  local ctrd_pid=$!
  record containerd "$ctrd_pid"
  CTR=("$(command -v ctr)" --address "$CTRD_SOCK" -n k8s.io)
  wait_for containerd "$ctrd_pid" 30 "${CTR[@]}" version

  t_img=$(date +%s%N)
  for p in pause busybox; do
    if ! timeout 120 "${CTR[@]}" images import "$cache/images/$p.tar" >>"$STATE/logs/containerd-import.log" 2>&1; then
      node_log "importing $cache/images/$p.tar into containerd failed or ran past 120 s; see $STATE/logs/containerd-import.log"
      tail -n 5 "$STATE/logs/containerd-import.log" >&2
      "$here/stop.sh" "$STATE" >&2 || true
      exit 1
    fi
  done
  IMPORT_MS=$((($(date +%s%N) - t_img) / 1000000))

  # --- kubelet -------------------------------------------------------------------------------
  local kdir=$STATE/kubelet
  mkdir -p "$kdir/root" "$kdir/pki" "$kdir/volume-plugins"
  cat >"$kdir/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true, cacheTTL: 10s}
  x509: {clientCAFile: $PKI/ca.crt}
authorization:
  mode: Webhook
  webhook: {cacheAuthorizedTTL: 10s, cacheUnauthorizedTTL: 5s}
cgroupDriver: cgroupfs
failSwapOn: false
nodeStatusUpdateFrequency: 2s
# Saved and restored by the test bed instead (protecting would refuse this host's values).
protectKernelDefaults: false
# No KUBE-* chains in the host's iptables (kube-proxy is not run either).
makeIPTablesUtilChains: false
enableControllerAttachDetach: false
# Never garbage-collect the imported images (no registry to pull them back from).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
serializeImagePulls: false
EOF
  local kubelet_args=(
    --config "$kdir/config.yaml" --kubeconfig "$STATE/kubelet.kubeconfig"
    --root-dir "$kdir/root" --cert-dir "$kdir/pki" --volume-plugin-dir "$kdir/volume-plugins"
    --container-runtime remote --container-runtime-endpoint "unix://$CTRD_SOCK"
    --node-ip "$NODE_IP" --hostname-override "$NODE_NAME" --v 1
  )
  [ -n "$labels" ] && kubelet_args+=(--node-labels "$labels")
  (umask 022 && exec "$BIN/kubelet" "${kubelet_args[@]}") >"$STATE/logs/kubelet.log" 2>&1 &
  local kubelet_pid=$!
  record kubelet "$kubelet_pid"
  wait_for kubelet "$kubelet_pid" 30 curl -fsS "http://127.0.0.1:${healthz_port}/healthz"

  # --- node Ready, and schedulable: the node lifecycle controller removed the not-ready taint ----
  local node_url="https://127.0.0.1:${API_PORT}/api/v1/nodes/${NODE_NAME}" last=""
  local ready_deadline=$((SECONDS + ready_timeout))
  while ((SECONDS < ready_deadline)); do
    last=$(curl -fsS --max-time 5 --cacert "$PKI/ca.crt" -H "Authorization: Bearer ${admin_token}" "$node_url" 2>/dev/null |
      /usr/bin/python3 -c 'import json, sys
n = json.load(sys.stdin)
c = {x["type"]: x for x in n.get("status", {}).get("conditions", [])}
r = c.get("Ready", {})
taints = [t["key"] for t in n.get("spec", {}).get("taints", []) if t.get("effect") == "NoSchedule"]
if r.get("status") == "True" and taints:
    print("True-but-tainted", ",".join(taints))
else:
    print(r.get("status", "none"), r.get("reason", ""), r.get("message", ""))' 2>/dev/null || echo "not registered")
    [[ $last == "True "* ]] && break
    alive_or_die kubelet "$kubelet_pid"
    alive_or_die containerd "$ctrd_pid"
    sleep 0.2
  done
  if [[ $last != "True "* ]]; then
    node_log "node $NODE_NAME not Ready and schedulable after ${ready_timeout}s (Ready condition: $last);" \
      "kubelet log $STATE/logs/kubelet.log, containerd log $STATE/logs/containerd.log; last kubelet lines:"
    tail -n 20 "$STATE/logs/kubelet.log" >&2
    "$here/stop.sh" "$STATE" >&2 || true
    exit 1
  fi
  node_restore_sysctls
  NODE_READY_MS=$((($(date +%s%N) - t_node) / 1000000))

  node_env=(
    "K8S_TESTBED_NODE_NAME=$NODE_NAME"
    "K8S_TESTBED_NODE_IP=$NODE_IP"
    "K8S_TESTBED_POD_CIDR=$NODE_POD_CIDR"
    "K8S_TESTBED_CONTAINERD_ADDRESS=$CTRD_SOCK"
    "K8S_TESTBED_CTR=\"${CTR[*]}\""
    "K8S_TESTBED_PAUSE_IMAGE=$PAUSE_IMAGE"
    "K8S_TESTBED_BUSYBOX_IMAGE=$BUSYBOX_IMAGE"
    "K8S_TESTBED_IMAGES_DIR=$cache/images"
    "K8S_TESTBED_NODE_START_MS=$NODE_READY_MS"
    "K8S_TESTBED_IMAGE_IMPORT_MS=$IMPORT_MS"
  )
}

node_iptables() { # the rule spec as for -I CHAIN 1 ...; recorded (as a -D spec) for stop
  local chain=$2
  shift 3
  iptables -w -I "$chain" 1 "$@"
  printf '%s\n' "$chain $*" >>"$STATE/node/iptables"
}

node_restore_sysctls() {
  local kv
  [ -f "$STATE/node/sysctl.saved" ] || return 0
  while IFS= read -r kv; do
    [ -n "$kv" ] || continue
    [ "$(sysctl -n "${kv%%=*}")" = "${kv#*=}" ] || sysctl -q -w "$kv" >/dev/null || node_log "could not restore $kv"
  done <"$STATE/node/sysctl.saved"
}

# ------------------------------------------------------------------------------------------------
# Called by stop.sh while the test bed's containerd still runs (the kubelet is stopped): kill and
# delete every task and container of the k8s.io namespace (pod sandboxes and containers).
node_stop_pods() {
  [ -f "$STATE/node/vars" ] || return 0
  # shellcheck disable=SC1091
  . "$STATE/node/vars"
  [ -S "$CTRD_SOCK" ] || return 0
  local ctr=(ctr --address "$CTRD_SOCK" -n k8s.io) id n=0
  timeout 10 "${ctr[@]}" version >/dev/null 2>&1 || return 0
  for id in $(timeout 10 "${ctr[@]}" tasks ls -q 2>/dev/null); do
    timeout 10 "${ctr[@]}" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
    n=$((n + 1))
  done
  for id in $(timeout 10 "${ctr[@]}" tasks ls -q 2>/dev/null); do
    timeout 15 "${ctr[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
  done
  for id in $(timeout 10 "${ctr[@]}" containers ls -q 2>/dev/null); do
    timeout 15 "${ctr[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
  node_log "killed and deleted $n containerd task(s) in k8s.io"
}

# Called by stop.sh after every process is stopped: undo what start_node did to the machine.
node_cleanup_host() {
  [ -d "$STATE/node" ] || return 0
  # shellcheck disable=SC1091
  [ -f "$STATE/node/vars" ] && . "$STATE/node/vars"
  local pid cmd m mp i state p line

  # 1. Left-over shims of this containerd (matched by its socket path) and pod processes (by the
  #    /kubepods cgroups, which only this test bed's kubelet created: start refuses otherwise).
  if [ -n "${CTRD_SOCK:-}" ]; then
    for p in /proc/[0-9]*; do
      pid=${p#/proc/}
      cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
      case $cmd in
        *containerd-shim*"-address $CTRD_SOCK "*) kill -KILL "$pid" 2>/dev/null && node_log "killed left-over shim $pid" ;;
      esac
    done
  fi
  for m in $(cgroup_mounts); do
    [ -d "$m/kubepods" ] || continue
    while read -r pid; do
      kill -KILL "$pid" 2>/dev/null && node_log "killed left-over pod process $pid"
    done < <(find "$m/kubepods" -name cgroup.procs -exec cat {} + 2>/dev/null)
  done

  # 2. Mounts under the state dir (pod volumes, container rootfs, sandbox shm, netns), deepest first.
  state=$(cd "$STATE" && pwd)
  for i in 1 2 3; do
    mp=$(awk -v s="$state/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r)
    [ -n "$mp" ] || break
    for m in $mp; do
      m=$(printf '%b' "${m//\\/\\0}") # mountinfo escapes spaces as \040
      umount "$m" 2>/dev/null || { [ "$i" = 3 ] && umount -l "$m" 2>/dev/null; } || true
    done
    sleep 0.2
  done

  # 3. The /kubepods cgroups, leaves first (a cgroup empties a moment after its last process).
  for m in $(cgroup_mounts); do
    [ -d "$m/kubepods" ] || continue
    for i in $(seq 1 25); do
      find "$m/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
      [ -d "$m/kubepods" ] || break
      sleep 0.2
    done
    [ -d "$m/kubepods" ] && node_log "could not remove $m/kubepods"
  done

  # 4. iptables: the rules start added, and the bridge plugin's per-pod masquerade chains that a
  #    CNI DEL did not remove (pods killed without the kubelet).
  if [ -f "$STATE/node/iptables" ]; then
    while read -r line; do
      [ -n "$line" ] || continue
      # shellcheck disable=SC2086 # the recorded spec is space-separated words, no quoting
      while iptables -w -D $line 2>/dev/null; do :; done
    done <"$STATE/node/iptables"
  fi
  local chains n
  chains=$(iptables -w -t nat -S POSTROUTING 2>/dev/null | grep -F "name: \\\"$NODE_CNI_NAME\\\"" |
    sed -nE 's/.* -j (CNI-[0-9a-f]+).*/\1/p' | sort -u)
  for n in $(iptables -w -t nat -L POSTROUTING -n --line-numbers 2>/dev/null |
    grep -F "name: \"$NODE_CNI_NAME\"" | awk '{print $1}' | sort -rn); do
    iptables -w -t nat -D POSTROUTING "$n" || true
  done
  for line in $chains; do
    iptables -w -t nat -F "$line" 2>/dev/null
    iptables -w -t nat -X "$line" 2>/dev/null || node_log "could not delete nat chain $line"
  done

  # 5. The bridge (its veths went with the pods' network namespaces).
  if [ -f "$STATE/node/bridge" ]; then
    ip link del "${NODE_BRIDGE:-raibidtb0}" 2>/dev/null || true
    ip link show "${NODE_BRIDGE:-raibidtb0}" >/dev/null 2>&1 && node_log "could not delete bridge $NODE_BRIDGE"
    rm -f "$STATE/node/bridge"
  fi

  # 6. Sysctls the kubelet changed.
  node_restore_sysctls

  # 7. Machine-wide paths: those that did not exist before go; in the others only our entries.
  if [ -f "$STATE/node/paths" ]; then
    local was
    while read -r was p; do
      if [ "$was" = absent ] && [ -e "$p" ]; then
        rm -rf --one-file-system "$p"
      fi
    done < <(sort -k2 -r "$STATE/node/paths")
    for p in /var/log/pods /var/log/containers; do
      [ -d "$p" ] && find "$p" -mindepth 1 -maxdepth 1 -newer "$STATE/node/started" -exec rm -rf --one-file-system {} +
    done
    for p in /var/lib/cni/results /var/lib/cni/cache/results; do
      [ -d "$p" ] && find "$p" -name "$NODE_CNI_NAME-*" -delete
    done
  fi

  # 8. The test bed's own runtime state (logs stay), unless something is still mounted there.
  if awk -v s="$state/" 'index($5, s) == 1 {found = 1} END {exit !found}' /proc/self/mountinfo; then
    node_log "still mounted under $state (kept):"
    awk -v s="$state/" 'index($5, s) == 1 {print "  " $5}' /proc/self/mountinfo >&2
  else
    rm -rf --one-file-system "$STATE/containerd" "$STATE/kubelet" "$STATE/cni"
  fi
  [ "$(cat "$NODE_OWNER" 2>/dev/null)" = "$state" ] && rm -f "$NODE_OWNER"
  rm -rf "$STATE/node"
  node_log "node cleaned up (bridge, iptables rules, mounts, cgroups, sysctls, host paths)"
}
