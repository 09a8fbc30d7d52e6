#!/usr/bin/env python3
"""The cgroup flags of a systemd test-node container, chosen by the host's cgroup version.

The one place that decides them: molecule/_shared/tasks/start-node.yml (Molecule nodes, the lab in a box)
runs this script once per play and reads its JSON; tests/testbed/images/e2e_images.py imports it.

- cgroup v1 (``/sys/fs/cgroup`` is a tmpfs of v1 hierarchies, hybrid included): the host's cgroup
  namespace and ``/sys/fs/cgroup`` bind-mounted read-write (what our build VMs run, verified).
- cgroup v2 (``/sys/fs/cgroup`` is a ``cgroup2`` mount, ``stat -fc %T`` = ``cgroup2fs``): a private
  cgroup namespace, no bind mount. Docker mounts the container's own cgroup2 read-only unless
  ``--privileged`` (which fails on our VMs), so the command first remounts it read-write (the node has
  CAP_SYS_ADMIN and no seccomp/AppArmor profile), then execs the payload. Not run here (no v2 host).

Usage: node_cgroup.py [--version 1|2]   prints {"cgroup_version", "cgroupns_mode", "volumes", "command"}.
``RAIBID_NODE_CGROUP_VERSION=1|2`` overrides the detection (e.g. when DOCKER_HOST is another machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

CGROUP_ROOT = "/sys/fs/cgroup"
SYSTEMD = ("/lib/systemd/systemd",)
HOST_BIND_MOUNT = f"{CGROUP_ROOT}:{CGROUP_ROOT}:rw"
ENV_OVERRIDE = "RAIBID_NODE_CGROUP_VERSION"

_REMOUNT = (
    f"mount -o remount,rw {CGROUP_ROOT} || "
    f"{{ echo 'node: cannot remount {CGROUP_ROOT} read-write (cgroup v2, private cgroupns)' >&2; exit 1; }}"
)
# Without systemd nothing moves PID 1 out of the namespace's root cgroup, and cgroup v2 refuses to enable
# controllers for children of a cgroup that has processes (EBUSY): docker:dind's entrypoint does the same.
_NEST = (
    f"mkdir -p {CGROUP_ROOT}/init && echo $$ > {CGROUP_ROOT}/init/cgroup.procs && "
    f"c=$(sed -e 's/ / +/g' -e 's/^/+/' {CGROUP_ROOT}/cgroup.controllers) && "
    f'{{ [ "$c" = + ] || echo "$c" > {CGROUP_ROOT}/cgroup.subtree_control; }}'
)


@dataclass(frozen=True)
class NodeCgroupFlags:
    """What a node container needs for systemd (or a nested dockerd) to own its cgroups."""

    cgroup_version: int
    cgroupns_mode: str  # docker run --cgroupns / docker_container cgroupns_mode
    volumes: tuple[str, ...]  # bind mounts to add
    command: tuple[str, ...]  # the container's command (argv), the payload wrapped where needed

    def docker_run_flags(self) -> list[str]:
        """``--cgroupns`` and ``-v`` arguments for ``docker run`` (the command is separate)."""
        return ["--cgroupns", self.cgroupns_mode, *(arg for vol in self.volumes for arg in ("-v", vol))]


def node_cgroup_flags(version: int, payload: Sequence[str] = SYSTEMD, systemd: bool = True) -> NodeCgroupFlags:
    """The flags for a host on cgroup ``version`` (1 or 2); ``payload`` is the command the node runs.

    ``systemd`` says whether the payload is systemd (it moves itself into ``init.scope``); otherwise, on
    v2, the wrapper moves PID 1 into ``/init`` and enables the controllers for a nested engine.
    """
    if version == 1:
        return NodeCgroupFlags(1, "host", (HOST_BIND_MOUNT,), tuple(payload))
    if version == 2:
        script = _REMOUNT + "\n" + ("" if systemd else _NEST + "\n") + 'exec "$@"'
        return NodeCgroupFlags(2, "private", (), ("/bin/sh", "-c", script, "sh", *payload))
    raise ValueError(f"cgroup version: 1 or 2, not {version!r}")


def cgroup_version_from_fstype(fstype: str) -> int:
    """2 for a cgroup2 filesystem (``stat -fc %T`` says ``cgroup2fs``, /proc/mounts ``cgroup2``), else 1."""
    return 2 if fstype in ("cgroup2", "cgroup2fs") else 1


def cgroup_version_from_mounts(mounts: str, root: str = CGROUP_ROOT) -> int:
    """The cgroup version from /proc/self/mounts text: the type of the last mount at ``root`` (it hides earlier ones).

    No mount at ``root`` at all counts as v1 (the flags that bind-mount the host's tree).
    """
    fstype = ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == root:
            fstype = fields[2]
    return cgroup_version_from_fstype(fstype)


def detect_cgroup_version(
    mounts_file: Path = Path("/proc/self/mounts"), env: Optional[Mapping[str, str]] = None
) -> int:
    """This host's cgroup version: ``RAIBID_NODE_CGROUP_VERSION`` if set, else from ``mounts_file``."""
    forced = (os.environ if env is None else env).get(ENV_OVERRIDE, "").strip()
    if forced:
        if forced not in ("1", "2"):
            raise ValueError(f"{ENV_OVERRIDE}: 1 or 2, not {forced!r}")
        return int(forced)
    return cgroup_version_from_mounts(mounts_file.read_text(encoding="utf-8"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", type=int, choices=(1, 2), help="use this cgroup version instead of detecting it")
    args = parser.parse_args(argv)
    try:
        version = args.version or detect_cgroup_version()
    except (OSError, ValueError) as exc:
        print(f"node-cgroup: {exc}", file=sys.stderr)
        return 1
    flags = node_cgroup_flags(version)
    print(json.dumps(asdict(flags)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
