#!/usr/bin/env bash
# Prepare a checkout for development, tests and the lab: host packages, .venv with the pinned
# tools (requirements-dev.txt), this checkout linked as the raibid.dgx_spark collection, and a
# running Docker engine. Safe to re-run; does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
log() { echo "[setup] $*"; }

need_pkgs=()
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v rsync >/dev/null || need_pkgs+=(rsync)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# Test scaffolding: a static busybox the tests copy into amd64 nodes to make an image from nothing
# (no registry can be pulled from), so no test has to run apt inside a node for the role under test.
[ -x /bin/busybox ] || need_pkgs+=(busybox-static)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
# Headless Chromium for tests/browser.py (the health report's render check): the headless shell is
# Debian's chromium source package without the GUI, much smaller; a full chromium does as well.
# Without its recommends (udev, upower, mesa, a printer tool: 100+ packages), fonts named instead.
browser_pkgs=()
[ -x /usr/bin/chromium-headless-shell ] || [ -x /usr/bin/chromium ] || browser_pkgs+=(chromium-headless-shell fonts-liberation)
if [ $((${#need_pkgs[@]} + ${#browser_pkgs[@]})) -gt 0 ]; then
  log "installing host packages: ${need_pkgs[*]} ${browser_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  [ ${#need_pkgs[@]} -eq 0 ] || apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  [ ${#browser_pkgs[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${browser_pkgs[@]}" >/dev/null
fi

stamp=.venv/.requirements-dev.sha256
want=$(sha256sum requirements-dev.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing the pinned tools into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt
  echo "$want" > "$stamp"
fi

link=.cache/collections/ansible_collections/raibid/dgx_spark
mkdir -p "$(dirname "$link")"
if [ "$(readlink "$link" 2>/dev/null)" != "$root" ]; then
  ln -sfn "$root" "$link"
  log "linked this checkout as $link"
fi

tests/testbed/ensure-docker.sh
