#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine. Uses the running engine when there is one;
# otherwise installs Debian's docker.io and starts dockerd. Says what it did, and why it failed.
set -euo pipefail
log() { echo "[ensure-docker] $*"; }

if docker info >/dev/null 2>&1; then
  log "using the running engine: $(docker version --format '{{.Server.Version}}' 2>/dev/null) ($(docker info --format '{{.Driver}}'))"
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "no engine installed: installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || { log "FAILED: apt-get update"; exit 1; }
  apt-get install -y -qq docker.io >/dev/null || { log "FAILED: apt-get install docker.io"; exit 1; }
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  log "starting docker.service with systemd"
  systemctl start docker || true
fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd in the background (log: /var/log/raibid-dockerd.log)"
  nohup dockerd >/var/log/raibid-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine up: $(docker version --format '{{.Server.Version}}')"
    exit 0
  fi
  sleep 1
done
log "FAILED: dockerd did not answer within 60 s; last lines of its log:"
tail -n 20 /var/log/raibid-dockerd.log 2>/dev/null || true
exit 1
