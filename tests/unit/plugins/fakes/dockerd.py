"""Stand-in ``dockerd`` for ``dockerd --validate --config-file <candidate> <the unit's flags>``.

It refuses flags dockerd does not have (rc 1 and ``unknown flag``, as dockerd's own flag parser does),
reads the candidate as JSON, refuses it when it contains ``state["reject"]`` (a stand-in for a value
dockerd would refuse) and otherwise prints ``configuration OK``. Starting a daemon (no ``--validate``)
is not simulated. State: ``log``, ``reject``, ``flags`` (flag -> takes a value; default: ``real_flags()``).

``old_main`` is Docker 20.10's dockerd (Debian 12's docker.io), which has no ``--validate``: its exact
answer, taken from dockerd 20.10.24.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Mapping, Sequence

from .cli import UsageError, parse, record

# The flags of every dockerd with --validate that the collection supports: Debian trixie's dockerd 26 (the
# test bed) to docker-ce 29 (DGX OS). Read from docker/cli, docs/reference/dockerd.md ("Options:" of the usage
# block) at every release tag v26.0.0 ... v29.7.2; a flag only some of them list is left out (--feature and
# --log-format from v27.3.0, --bip6 and --ip-forward-no-drop from v28.0.0, --allow-direct-routing from v28.2.0,
# --firewall-backend and --bridge-accept-fwmark from v29.0.0, --api-cors-header and --oom-score-adjust up to
# v27). True: the flag takes a value.
DOCUMENTED_FLAGS: Dict[str, bool] = {
    **dict.fromkeys(
        "--add-runtime --authorization-plugin --bip -b --bridge --cdi-spec-dir --cgroup-parent --config-file "
        "--containerd --containerd-namespace --containerd-plugins-namespace --cpu-rt-period --cpu-rt-runtime "
        "--data-root --default-address-pool --default-cgroupns-mode --default-gateway --default-gateway-v6 "
        "--default-ipc-mode --default-network-opt --default-runtime --default-shm-size --default-ulimit --dns "
        "--dns-opt --dns-search --exec-opt --exec-root --fixed-cidr --fixed-cidr-v6 -G --group -H --host "
        "--host-gateway-ip --http-proxy --https-proxy --init-path --insecure-registry --ip --label --log-driver "
        "-l --log-level --log-opt --max-concurrent-downloads --max-concurrent-uploads --max-download-attempts "
        "--metrics-addr --mtu --network-control-plane-mtu --no-proxy --node-generic-resource -p --pidfile "
        "--registry-mirror --seccomp-profile --shutdown-timeout -s --storage-driver --storage-opt "
        "--swarm-default-advertise-addr --tlscacert --tlscert --tlskey --userland-proxy-path --userns-remap".split(),
        True,
    ),
    **dict.fromkeys(
        "--cri-containerd -D --debug --experimental --help --icc --init --ip-forward --ip-masq --ip6tables "
        "--iptables --ipv6 --live-restore --no-new-privileges --raw-logs --rootless --selinux-enabled --tls "
        "--tlsverify --userland-proxy --validate -v --version".split(),
        False,
    ),
}
# dockerd 20.10.24 (Debian 12's docker.io), `dockerd --validate --config-file x`: rc 1, on stderr.
OLD_DOCKERD_ANSWER = "Status: unknown flag: --validate\nSee 'dockerd --help'., Code: 125\n"

_HELP_FLAG = re.compile(r"^\s+(?:(-\w), )?(--[\w.-]+)(?: (\S+))?\s{2,}")


@functools.cache
def real_flags() -> Dict[str, bool]:
    """DOCUMENTED_FLAGS, less any the host's dockerd lacks when that dockerd knows ``--validate``
    (an older one, like 20.10, is outside the supported range and is not asked)."""
    dockerd = shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")
    if not dockerd:
        return dict(DOCUMENTED_FLAGS)
    proc = subprocess.run([dockerd, "--help"], capture_output=True, text=True, check=False, timeout=30)
    host = set()
    for line in proc.stdout.splitlines():
        match = _HELP_FLAG.match(line + "  ")
        if match:
            host.update(f for f in match.group(1, 2) if f)
    if "--validate" not in host:
        return dict(DOCUMENTED_FLAGS)
    return {flag: value for flag, value in DOCUMENTED_FLAGS.items() if flag in host}


def check_argv(argv: Sequence[str], flags: Mapping[str, bool]) -> Dict[str, List[str]]:
    """Flag -> values of a dockerd argv (without the program); UsageError for what dockerd refuses."""
    opts, positional = parse(argv, flags)
    if positional:
        raise UsageError(f'"dockerd" accepts no arguments; got {positional}')
    return opts


def main(argv: Sequence[str], state: Mapping[str, Any]) -> int:
    """``dockerd --validate``: rc 0 and ``configuration OK``, or rc 1 and dockerd's kind of message."""
    record(state, argv)
    try:
        opts = check_argv(argv, state.get("flags") or real_flags())
        if "--validate" not in opts:
            raise UsageError("only --validate is simulated")
    except UsageError as exc:
        sys.stderr.write(f"Status: {exc}\nSee 'dockerd --help'., Code: 125\n")
        return 1
    path = opts.get("--config-file", ["/etc/docker/daemon.json"])[-1]
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        json.loads(text)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"unable to configure the Docker daemon with file {path}: {exc}\n")
        return 1
    if state.get("reject") and state["reject"] in text:
        sys.stderr.write(f"unable to configure the Docker daemon with file {path}: {state['reject']} value\n")
        return 1
    sys.stdout.write("configuration OK\n")
    return 0


def old_main(argv: Sequence[str], state: Mapping[str, Any]) -> int:
    """Docker 20.10's dockerd asked to ``--validate``."""
    record(state, argv)
    sys.stderr.write(OLD_DOCKERD_ANSWER)
    return 1
