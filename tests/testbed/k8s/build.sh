#!/usr/bin/env bash
# Build the Kubernetes test bed's control plane from the Debian archive alone (see
# docs/testbed.md and shared/reference/kubernetes-testbed.md): kube-apiserver and
# kube-controller-manager v1.20.2 from bookworm's `kubernetes` source package with Debian's Go 1.19,
# plus etcd 3.4 unpacked from bookworm's binary packages (unpacked, never installed: no postinst,
# no etcd service on the build machine).
#
# Cached by version in $K8S_TESTBED_CACHE (default /var/cache/raibid-k8s-testbed/v1.20.2): the
# binaries in bin/ and the Go build cache in gocache/ survive between runs, so the build happens
# once per machine. Safe to run concurrently (flock). Prints the build time.
#
# Usage: tests/testbed/k8s/build.sh            build if missing, print the bin directory
#        K8S_TESTBED_REBUILD=1 build.sh        rebuild the control plane (warm Go cache)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.20.2}
K8S_DEB_VERSION=${K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
K8S_GIT_COMMIT=${K8S_GIT_COMMIT:-faecb196815e248d3ecfb03c680a4507229c2a56}
CACHE=${K8S_TESTBED_CACHE:-/var/cache/raibid-k8s-testbed/v${K8S_VERSION}}
BIN=$CACHE/bin
log() { echo "[k8s-testbed build] $*" >&2; }

have_all() {
  local b
  for b in kube-apiserver kube-controller-manager etcd etcdctl; do
    [ -x "$BIN/$b" ] || return 1
  done
}

if [ -z "${K8S_TESTBED_REBUILD:-}" ] && have_all; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
# Another run may have finished the build while we waited for the lock.
if [ -z "${K8S_TESTBED_REBUILD:-}" ] && have_all; then
  echo "$BIN"
  exit 0
fi

t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
missing=()
# hack/lib/golang.sh calls rsync; start.sh makes the PKI with openssl and polls with curl.
for tool in rsync openssl curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The Debian archive this machine's apt uses, read from its sources (never hard-coded).
debian_mirror() {
  if [ -n "${RAIBID_DEBIAN_MIRROR:-}" ]; then
    echo "$RAIBID_DEBIAN_MIRROR"
    return
  fi
  local f uri
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(sed -nE 's/^[[:space:]]*URIs:[[:space:]]*(\S+).*/\1/p; s/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?(\S+)[[:space:]].*/\2/p' "$f" |
      grep -E '/debian/?$' | head -n1 || true)
    if [ -n "$uri" ]; then
      echo "$uri"
      return
    fi
  done
  log "no Debian archive URI in /etc/apt sources; set RAIBID_DEBIAN_MIRROR"
  exit 1
}

WORK=$CACHE/work
PREFIX=$CACHE/prefix
gocache_warm=false
[ -n "$(ls -A "$CACHE/gocache" 2>/dev/null)" ] && gocache_warm=true
rm -rf "$WORK" "$PREFIX"
mkdir -p "$WORK/debs" "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$PREFIX" "$BIN" "$CACHE/gocache"

log "downloading Go 1.19, reflect2 and etcd packages"
(
  cd "$WORK/debs"
  if ! apt-get download -q golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev \
    etcd-server etcd-client >/dev/null 2>&1; then
    apt-get update -qq
    apt-get download -q golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev \
      etcd-server etcd-client >/dev/null
  fi
)
for deb in "$WORK"/debs/*.deb; do
  dpkg-deb -x "$deb" "$PREFIX"
done

log "downloading the kubernetes ${K8S_DEB_VERSION} source package"
# A private deb-src list: the machine's apt sources are left untouched.
echo "deb-src $(debian_mirror) bookworm main" >"$WORK/apt/sources.list"
apt_private=(-o "Dir::Etc::sourcelist=$WORK/apt/sources.list" -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache" -o "APT::Get::List-Cleanup=0")
apt-get "${apt_private[@]}" update -qq
(
  cd "$WORK"
  apt-get "${apt_private[@]}" source --download-only -qq "kubernetes=${K8S_DEB_VERSION}" >/dev/null
  tar -xf kubernetes_*.orig.tar.*
)
SRC=$(find "$WORK" -maxdepth 1 -type d -name "kubernetes-${K8S_VERSION}*" | head -n1)
[ -d "$SRC" ] || {
  log "source tree kubernetes-${K8S_VERSION} not found in $WORK"
  exit 1
}

# reflect2 1.0.1 (vendored) segfaults under Go >= 1.18 on the first custom-resource create
# (json-iterator map encoding); Debian's reflect2 1.0.2 fixes it.
log "swapping vendored reflect2 for Debian's 1.0.2"
rm -f "$SRC"/vendor/github.com/modern-go/reflect2/*.go "$SRC"/vendor/github.com/modern-go/reflect2/*.s
cp "$PREFIX"/usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$SRC"/vendor/github.com/modern-go/reflect2/
cp "$PREFIX"/usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$SRC"/vendor/github.com/modern-go/reflect2/ 2>/dev/null || true

# Keep the Go build cache outside the tree so a rebuild is warm.
mkdir -p "$SRC/_output/local/go"
ln -sfn "$CACHE/gocache" "$SRC/_output/local/go/cache"

log "building kube-apiserver and kube-controller-manager (make WHAT=...; about 4-5 min cold on 2 cores)"
tb=$(date +%s)
GOROOT_DIR=$PREFIX/usr/lib/go-1.19
mkdir -p "$WORK/home"
# 1.20 builds in GOPATH mode with its code generators: `make`, not `go build`.
env -u GOPATH -u GOFLAGS \
  HOME="$WORK/home" GOROOT="$GOROOT_DIR" PATH="$GOROOT_DIR/bin:$PATH" \
  GOPROXY=off CGO_ENABLED=0 GOTOOLCHAIN=local \
  KUBE_GIT_VERSION="v${K8S_VERSION}" KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT="$K8S_GIT_COMMIT" \
  GOLDFLAGS="-s -w" \
  make -C "$SRC" WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >"$CACHE/build.log" 2>&1 || {
  log "make failed; last lines of $CACHE/build.log:"
  tail -n 30 "$CACHE/build.log" >&2
  exit 1
}
make_s=$(($(date +%s) - tb))
log "make took ${make_s}s"

arch=$("$GOROOT_DIR/bin/go" env GOARCH 2>/dev/null || dpkg --print-architecture)
install -m 0755 "$SRC/_output/local/bin/linux/$arch/kube-apiserver" "$BIN/kube-apiserver"
install -m 0755 "$SRC/_output/local/bin/linux/$arch/kube-controller-manager" "$BIN/kube-controller-manager"
install -m 0755 "$PREFIX/usr/bin/etcd" "$BIN/etcd"
install -m 0755 "$PREFIX/usr/bin/etcdctl" "$BIN/etcdctl"
"$BIN/kube-apiserver" --version >&2

# Keep only the binaries and the Go build cache (the tree is 3 GB during the build).
rm -rf "$WORK" "$PREFIX"
total_s=$(($(date +%s) - t0))
# Read by benchmarks/bench.py (section k8s).
printf '{"built_at": %s, "total_s": %s, "make_s": %s, "gocache_warm_at_start": %s}\n' \
  "$(date +%s)" "$total_s" "$make_s" "$gocache_warm" >"$CACHE/build-times.json"
log "built in ${total_s}s; binaries in $BIN"
echo "$BIN"
