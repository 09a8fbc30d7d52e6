"""Stand-in ``kubectl`` for ``kubectl get node NAME -o json`` (the node_health module's Kubernetes check).

Simulated: ``get`` of one Node (``node``, ``nodes`` or ``no``) by name with ``-o``/``--output`` ``json``,
answered from ``state["nodes"]`` (name -> the Node object); any global option of the real tool is accepted.
An unknown flag, a flag missing its value, a bad ``--request-timeout`` or a missing ``--kubeconfig`` file
is refused as kubectl refuses it (rc 1, its message on stderr); other commands, resources and output
formats are refused as not simulated. State: ``log``, ``nodes``, ``stderr`` and ``rc`` (answer with these
instead, e.g. an unreachable API server).
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, Dict, List, Mapping, Sequence

from .cli import UsageError, parse, record

# `kubectl options` of kubectl v1.32.4 (the global options; every command takes them). True: takes a value.
GLOBAL_FLAGS: Dict[str, bool] = {
    **dict.fromkeys(
        "--as --as-group --as-uid --cache-dir --certificate-authority --client-certificate --client-key --cluster "
        "--context --kubeconfig --log-flush-frequency -n --namespace --password --profile --profile-output "
        "--request-timeout -s --server --tls-server-name --token --user --username -v --v --vmodule".split(),
        True,
    ),
    **dict.fromkeys(
        "--disable-compression --insecure-skip-tls-verify --match-server-version --warnings-as-errors".split(), False
    ),
}
# `kubectl get --help`, "Options:", of kubectl v1.32.4.
GET_FLAGS: Dict[str, bool] = {
    **dict.fromkeys(
        "--chunk-size --field-selector -f --filename -k --kustomize -L --label-columns -o --output --raw -l "
        "--selector --sort-by --subresource --template".split(),
        True,
    ),
    **dict.fromkeys(
        "-A --all-namespaces --allow-missing-template-keys --ignore-not-found --no-headers --output-watch-events "
        "-R --recursive --server-print --show-kind --show-labels --show-managed-fields -w --watch "
        "--watch-only".split(),
        False,
    ),
}
NODE_RESOURCES = ("node", "nodes", "no")
# --request-timeout: 0, a bare number of seconds or a Go duration.
_TIMEOUT = re.compile(r"^(\d+|(\d+(\.\d+)?(ns|us|ms|s|m|h))+)$")


class KubectlError(Exception):
    """What the real kubectl prints (on stderr, rc 1) for an argv it refuses."""


def check_argv(argv: Sequence[str]) -> Dict[str, Any]:
    """``{"name", "opts"}`` of a ``kubectl get node NAME -o json`` argv (without the program); KubectlError
    where kubectl refuses it, UsageError where this stand-in does not simulate it."""
    try:
        opts, positional = parse(argv, {**GLOBAL_FLAGS, **GET_FLAGS})
    except UsageError as exc:
        raise KubectlError(f"error: {exc}\nSee 'kubectl get --help' for usage.") from None
    if positional[:1] != ["get"]:
        raise UsageError(f"only `get` is simulated; got {positional[:1]}")
    for timeout in opts.get("--request-timeout", []):
        if not _TIMEOUT.match(timeout):
            raise KubectlError(
                "error: Invalid timeout value. Timeout must be a single integer in seconds, or an integer followed "
                "by a corresponding time unit (e.g. 1s | 2m | 3h)"
            )
    for kubeconfig in opts.get("--kubeconfig", []):
        if not os.path.exists(kubeconfig):
            raise KubectlError(f"error: stat {kubeconfig}: no such file or directory")
    if len(positional) != 3 or positional[1] not in NODE_RESOURCES:
        raise UsageError(f"only `get node NAME` is simulated; got {positional}")
    output = [*opts.get("-o", []), *opts.get("--output", [])]
    if output != ["json"]:
        raise UsageError(f"only -o json is simulated; got {output}")
    return {"name": positional[2], "opts": opts}


def main(argv: Sequence[str], state: Mapping[str, Any]) -> int:
    record(state, argv)
    try:
        request = check_argv(argv)
    except KubectlError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except UsageError as exc:
        sys.stderr.write(f"kubectl (stand-in): {exc}\n")
        return 2
    if state.get("rc"):
        sys.stderr.write(state.get("stderr", ""))
        return int(state["rc"])
    nodes: Dict[str, Any] = state.get("nodes", {})
    name = request["name"]
    if name not in nodes:
        sys.stderr.write(f'Error from server (NotFound): nodes "{name}" not found\n')
        return 1
    sys.stdout.write(json.dumps(nodes[name], indent=4) + "\n")
    return 0


def node(name: str, ready: str = "True", unschedulable: bool = False, reason: str = "KubeletReady") -> Dict[str, Any]:
    """A Node object as ``kubectl get node NAME -o json`` prints it (the fields the check reads, and a few more)."""
    spec: Dict[str, Any] = {"podCIDR": "10.42.0.0/24"}
    if unschedulable:
        spec["unschedulable"] = True
        spec["taints"] = [{"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable"}]
    conditions: List[Dict[str, str]] = [
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"},
        {"type": "Ready", "status": ready, "reason": reason, "message": "kubelet is posting ready status"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v1.32.4+k3s1"}},
    }
