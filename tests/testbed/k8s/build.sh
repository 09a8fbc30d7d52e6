#!/usr/bin/env bash
# Build the Kubernetes test bed from the Debian archive alone (see docs/testbed.md and
# shared/reference/kubernetes-testbed.md, kubelet-testbed.md):
# - control plane: kube-apiserver and kube-controller-manager v1.20.2 from bookworm's `kubernetes`
#   source package with Debian's Go 1.19, plus etcd 3.4 unpacked from bookworm's binary packages
#   (unpacked, never installed: no postinst, no etcd service on the build machine);
# - node (for K8S_TESTBED_NODE=1 start.sh): kubelet and kube-scheduler from the same source tree,
#   the CNI plugins unpacked from bookworm's containernetworking-plugins (cni/bin), and two images
#   written as docker-archive tars without any registry (images/): pause.tar (pause.c, gcc -static)
#   and busybox.tar (bookworm's busybox-static).
#
# Cached by version in $K8S_TESTBED_CACHE (default /var/cache/raibid-k8s-testbed/v1.20.2): the
# binaries in bin/, the Go build cache in gocache/, cni/bin/, images/ survive between runs, so each
# part is built once per machine, and only the missing parts are built (a cache with the control
# plane only gets the node parts added without rebuilding the API server). Safe to run
# concurrently (flock). Prints the build time; records package versions in versions.txt.
#
# The Go toolchain, reflect2 and etcd come from bookworm's binary packages, which carry one version
# at a time: they are not pinned like the kubernetes source, but recorded and checked. Each built part
# writes what it was made from to CACHE/<part>.inputs (control-plane, node: the kubernetes source and
# commit, each package=version as unpacked, `go version`, and for etcd `etcd --version`); a part whose
# record differs from what this run would use (the pin, else apt's candidate) is rebuilt, and a warm
# run logs the versions it has. K8S_GO_DEB_VERSION / K8S_ETCD_DEB_VERSION pin golang-1.19-* / etcd-*.
#
# Usage: tests/testbed/k8s/build.sh            build what is missing, print the bin directory
#        K8S_TESTBED_NODE=0 build.sh           the control plane only (what start.sh needs by default)
#        K8S_TESTBED_REBUILD=1 build.sh        rebuild everything wanted (warm Go cache)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.20.2}
K8S_DEB_VERSION=${K8S_DEB_VERSION:-1.20.5+really1.20.2-1.1+deb12u1}
K8S_GIT_COMMIT=${K8S_GIT_COMMIT:-faecb196815e248d3ecfb03c680a4507229c2a56}
CACHE=${K8S_TESTBED_CACHE:-/var/cache/raibid-k8s-testbed/v${K8S_VERSION}}
BIN=$CACHE/bin
CNI_BIN=$CACHE/cni/bin
IMAGES=$CACHE/images
WANT_NODE=${K8S_TESTBED_NODE:-1}
[ "$WANT_NODE" = 0 ] || WANT_NODE=1
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "[k8s-testbed build] $*" >&2; }

SOURCE_KEY="$K8S_DEB_VERSION commit $K8S_GIT_COMMIT"
NODE_DEBS=(golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev)
CP_DEBS=("${NODE_DEBS[@]}" etcd-server etcd-client)
pinned() { # package -> its pinned version, or nothing
  case $1 in
    golang-1.19-*) echo "${K8S_GO_DEB_VERSION:-}" ;;
    etcd-*) echo "${K8S_ETCD_DEB_VERSION:-}" ;;
  esac
}
# WANT[package]: the version this run would unpack: the pin, else apt's candidate (read once, no
# network; unset when the apt lists do not know the package, and then the part is not checked).
declare -A WANT=()
while read -r pkg ver; do
  WANT[$pkg]=$ver
done < <(LC_ALL=C apt-cache policy "${CP_DEBS[@]}" 2>/dev/null |
  awk '/^[^ ]/ {p = $1; sub(/:$/, "", p)} $1 == "Candidate:" && $2 != "(none)" {print p, $2}')
for pkg in "${CP_DEBS[@]}"; do
  pin=$(pinned "$pkg")
  [ -z "$pin" ] || WANT[$pkg]=$pin
done
deb_spec() { # package -> what apt-get download gets: pkg=version when pinned
  local pin
  pin=$(pinned "$1")
  echo "$1${pin:+=$pin}"
}
recorded() { # part key -> the value in CACHE/<part>.inputs
  [ -f "$CACHE/$1.inputs" ] && awk -v k="$2" 'index($0, k "=") == 1 {print substr($0, length(k) + 2)}' "$CACHE/$1.inputs"
}
# Why a part's binaries must be rebuilt ("" when its inputs are what this run would use).
stale_reason() { # part package...
  local part=$1 pkg have
  shift
  [ -s "$CACHE/$part.inputs" ] || {
    echo "no record of what it was built from ($CACHE/$part.inputs)"
    return
  }
  have=$(recorded "$part" kubernetes-source)
  [ "$have" = "$SOURCE_KEY" ] || {
    echo "kubernetes source ${have:-?} -> $SOURCE_KEY"
    return
  }
  for pkg in "$@"; do
    have=$(recorded "$part" "$pkg")
    [ -z "${WANT[$pkg]:-}" ] || [ "$have" = "${WANT[$pkg]}" ] || {
      echo "$pkg ${have:-?} -> ${WANT[$pkg]}"
      return
    }
  done
}
built_from() { # part package... -> one line: the versions it was built from, and what was not checked
  local part=$1 pkg line unchecked=()
  shift
  line=$(grep -v '^#' "$CACHE/$part.inputs" | paste -sd' ')
  for pkg in "$@"; do [ -n "${WANT[$pkg]:-}" ] || unchecked+=("$pkg"); done
  echo "$line; $(sed -n 's/^# //p' "$CACHE/$part.inputs" | paste -sd';')${unchecked[*]:+; not checked (no apt candidate): ${unchecked[*]}}"
}

all_x() { # dir file...
  local dir=$1 f
  shift
  for f in "$@"; do [ -x "$dir/$f" ] || return 1; done
}
have_cp() {
  all_x "$BIN" kube-apiserver kube-controller-manager etcd etcdctl &&
    [ -z "$(stale_reason control-plane "${CP_DEBS[@]}")" ]
}
have_node_bins() { all_x "$BIN" kubelet kube-scheduler && [ -z "$(stale_reason node "${NODE_DEBS[@]}")" ]; }
have_cni() { all_x "$CNI_BIN" bridge host-local loopback portmap; }
have_images() { [ -s "$IMAGES/pause.tar" ] && [ -s "$IMAGES/busybox.tar" ]; }
have_all() {
  have_cp || return 1
  [ "$WANT_NODE" = 0 ] && return 0
  have_node_bins && have_cni && have_images
}

say_cached() {
  log "cached control plane, built from $(built_from control-plane "${CP_DEBS[@]}")"
  [ "$WANT_NODE" = 0 ] || log "cached kubelet + scheduler, built from $(built_from node "${NODE_DEBS[@]}")"
}

if [ -z "${K8S_TESTBED_REBUILD:-}" ] && have_all; then
  say_cached
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.build.lock"
flock 9
# Another run may have finished the build while we waited for the lock.
if [ -z "${K8S_TESTBED_REBUILD:-}" ] && have_all; then
  say_cached
  echo "$BIN"
  exit 0
fi

# What this run builds.
build_cp=false build_node_bins=false build_cni=false build_images=false
if [ -n "${K8S_TESTBED_REBUILD:-}" ]; then
  build_cp=true
  [ "$WANT_NODE" = 1 ] && build_node_bins=true build_cni=true build_images=true
else
  if ! have_cp; then
    build_cp=true
    why=$(stale_reason control-plane "${CP_DEBS[@]}")
    log "building the control plane: ${why:-binaries missing}"
  fi
  if [ "$WANT_NODE" = 1 ]; then
    if ! have_node_bins; then
      build_node_bins=true
      why=$(stale_reason node "${NODE_DEBS[@]}")
      log "building kubelet + scheduler: ${why:-binaries missing}"
    fi
    have_cni || build_cni=true
    have_images || build_images=true
  fi
fi

t0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
missing=()
# hack/lib/golang.sh calls rsync; start.sh makes the PKI with openssl and polls with curl.
for tool in rsync openssl curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if $build_images; then
  command -v gcc >/dev/null || missing+=(gcc)
  # gcc -static needs libc.a (libc6-dev).
  dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q 'install ok installed' || missing+=(libc6-dev)
fi
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

# apt-get download into the current directory, refreshing the lists once if a package is unknown.
download() {
  if ! apt-get download -q "$@" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get download -q "$@" >/dev/null
  fi
}

# versions.txt: one "key=value" a line; each part rewrites its own keys.
set_version() { # key value
  local f=$CACHE/versions.txt
  touch "$f"
  { grep -v "^$1=" "$f" || true; } >"$f.tmp"
  echo "$1=$2" >>"$f.tmp"
  sort -o "$f" "$f.tmp"
  rm -f "$f.tmp"
}
deb_version() { dpkg-deb -f "$1" Version; }
# CACHE/<part>.inputs: what the part's binaries were made from (the .debs as unpacked), the cache key.
write_inputs() { # part "# note"... package...
  local part=$1 f=$CACHE/$1.inputs arg
  shift
  {
    echo "kubernetes-source=$SOURCE_KEY"
    for arg in "$@"; do
      case $arg in
        "# "*) echo "$arg" ;;
        *) echo "$arg=$(deb_version "$WORK"/debs/"$arg"_*.deb)" ;;
      esac
    done
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

WORK=$CACHE/work
PREFIX=$CACHE/prefix
gocache_warm=false
[ -n "$(ls -A "$CACHE/gocache" 2>/dev/null)" ] && gocache_warm=true
rm -rf "$WORK" "$PREFIX"
mkdir -p "$WORK/debs" "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial" "$PREFIX" "$BIN" "$CACHE/gocache"
make_s=0
what=()
$build_cp && what+=(cmd/kube-apiserver cmd/kube-controller-manager)
$build_node_bins && what+=(cmd/kubelet cmd/kube-scheduler)

if [ ${#what[@]} -gt 0 ]; then
  debs=()
  if $build_cp; then
    for pkg in "${CP_DEBS[@]}"; do debs+=("$(deb_spec "$pkg")"); done
  else
    for pkg in "${NODE_DEBS[@]}"; do debs+=("$(deb_spec "$pkg")"); done
  fi
  log "downloading ${debs[*]}"
  (cd "$WORK/debs" && download "${debs[@]}")
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

  log "building ${what[*]} (make WHAT=...; control plane about 4-5 min cold on 2 cores, kubelet + scheduler about 7 min more)"
  tb=$(date +%s)
  GOROOT_DIR=$PREFIX/usr/lib/go-1.19
  mkdir -p "$WORK/home"
  # 1.20 builds in GOPATH mode with its code generators: `make`, not `go build`. CGO_ENABLED=0 gives
  # static binaries, the kubelet included.
  env -u GOPATH -u GOFLAGS \
    HOME="$WORK/home" GOROOT="$GOROOT_DIR" PATH="$GOROOT_DIR/bin:$PATH" \
    GOPROXY=off CGO_ENABLED=0 GOTOOLCHAIN=local \
    KUBE_GIT_VERSION="v${K8S_VERSION}" KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT="$K8S_GIT_COMMIT" \
    GOLDFLAGS="-s -w" \
    make -C "$SRC" WHAT="${what[*]}" >"$CACHE/build.log" 2>&1 || {
    log "make failed; last lines of $CACHE/build.log:"
    tail -n 30 "$CACHE/build.log" >&2
    exit 1
  }
  make_s=$(($(date +%s) - tb))
  log "make took ${make_s}s"

  arch=$("$GOROOT_DIR/bin/go" env GOARCH 2>/dev/null || dpkg --print-architecture)
  for w in "${what[@]}"; do
    install -m 0755 "$SRC/_output/local/bin/linux/$arch/${w#cmd/}" "$BIN/${w#cmd/}"
  done
  go_version=$(GOROOT="$GOROOT_DIR" "$GOROOT_DIR/bin/go" version 2>&1) || go_version="go version failed: $go_version"
  set_version go "$(deb_version "$WORK"/debs/golang-1.19-go_*.deb)"
  set_version go-version "$go_version"
  set_version reflect2 "$(deb_version "$WORK"/debs/golang-github-modern-go-reflect2-dev_*.deb)"
  set_version kubernetes-source "$K8S_DEB_VERSION (v${K8S_VERSION}, commit ${K8S_GIT_COMMIT})"
  if $build_cp; then
    install -m 0755 "$PREFIX/usr/bin/etcd" "$BIN/etcd"
    install -m 0755 "$PREFIX/usr/bin/etcdctl" "$BIN/etcdctl"
    # etcd 3.4 exits at once on arm64 unless ETCD_UNSUPPORTED_ARCH names it (amd64 ignores it).
    etcd_version=$(ETCD_UNSUPPORTED_ARCH=$arch "$BIN/etcd" --version 2>&1 | paste -sd';') ||
      etcd_version="etcd --version failed: $etcd_version"
    set_version etcd-server "$(deb_version "$WORK"/debs/etcd-server_*.deb)"
    set_version etcd-client "$(deb_version "$WORK"/debs/etcd-client_*.deb)"
    set_version etcd-version "$etcd_version"
    "$BIN/kube-apiserver" --version >&2
    write_inputs control-plane "# $go_version" "# $etcd_version" "${CP_DEBS[@]}"
  fi
  if $build_node_bins; then
    "$BIN/kubelet" --version >&2
    write_inputs node "# $go_version" "${NODE_DEBS[@]}"
  fi
  # Keep only the binaries and the Go build cache (the tree is 3 GB during the build).
  rm -rf "$WORK" "$PREFIX"
  mkdir -p "$WORK/debs" "$PREFIX"
fi

if $build_cni; then
  log "unpacking containernetworking-plugins"
  (cd "$WORK/debs" && download containernetworking-plugins)
  dpkg-deb -x "$WORK"/debs/containernetworking-plugins_*.deb "$WORK/cni"
  rm -rf "$CNI_BIN.new"
  mkdir -p "$CNI_BIN.new"
  # Debian ships the plugins in /usr/lib/cni.
  cp -a "$WORK"/cni/usr/lib/cni/. "$CNI_BIN.new/"
  rm -rf "$CNI_BIN"
  mv "$CNI_BIN.new" "$CNI_BIN"
  set_version containernetworking-plugins "$(deb_version "$WORK"/debs/containernetworking-plugins_*.deb)"
fi

if $build_images; then
  log "building the pause and busybox images"
  mkdir -p "$IMAGES" "$WORK/pause/rootfs" "$WORK/busybox/rootfs/bin" "$WORK/busybox/rootfs/tmp" "$WORK/busybox/rootfs/etc"
  gcc -static -Os -s -o "$WORK/pause/rootfs/pause" "$here/pause.c"
  /usr/bin/python3 "$here/mkimage.py" --tag "raibid-testbed.local/pause:1" --entrypoint '["/pause"]' \
    --out "$IMAGES/pause.tar" "$WORK/pause/rootfs" >&2
  (cd "$WORK/debs" && download busybox-static)
  dpkg-deb -x "$WORK"/debs/busybox-static_*.deb "$WORK/busybox/pkg"
  root=$WORK/busybox/rootfs
  install -m 0755 "$WORK/busybox/pkg/bin/busybox" "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  /usr/bin/python3 "$here/mkimage.py" --tag "raibid-testbed.local/busybox:1" --cmd '["sh"]' \
    --out "$IMAGES/busybox.tar" "$root" >&2
  set_version busybox-static "$(deb_version "$WORK"/debs/busybox-static_*.deb)"
  set_version gcc-pause "$(gcc -dumpfullversion), libc6-dev $(dpkg-query -W -f='${Version}' libc6-dev)"
  printf 'pause=raibid-testbed.local/pause:1\nbusybox=raibid-testbed.local/busybox:1\n' >"$IMAGES/names.txt"
fi

rm -rf "$WORK" "$PREFIX"
total_s=$(($(date +%s) - t0))
# Read by benchmarks/bench.py (section k8s). The keys of the control-plane build stay as they were;
# a node-only run (control plane already cached) keeps the previous control-plane figures.
times=$CACHE/build-times.json
if $build_cp || [ ! -s "$times" ]; then
  printf '{"built_at": %s, "total_s": %s, "make_s": %s, "gocache_warm_at_start": %s, "what": "%s"}\n' \
    "$(date +%s)" "$total_s" "$make_s" "$gocache_warm" "${what[*]}" >"$times"
fi
if $build_node_bins || $build_cni || $build_images; then
  printf '{"built_at": %s, "total_s": %s, "make_s": %s, "gocache_warm_at_start": %s, "what": "%s"}\n' \
    "$(date +%s)" "$total_s" "$make_s" "$gocache_warm" "${what[*]}" >"$CACHE/build-times-node.json"
fi
log "built in ${total_s}s; binaries in $BIN"
echo "$BIN"
