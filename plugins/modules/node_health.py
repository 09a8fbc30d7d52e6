#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_health
short_description: Read-only health probe of a DGX Spark CI build node
version_added: 0.1.0
description:
  - One call returns every check of the node, each with a C(status) (C(ok), C(warn) or C(fail)), a C(value) and a
    C(message) that names the option or threshold involved when the status is not C(ok).
  - C(engine) - the Docker engine answers on its unix socket (Engine API C(GET /info) and C(GET /version)); its
    version, storage driver, image store (C(containerd) when C(DriverStatus) names C(io.containerd.snapshotter)),
    live-restore and runtimes. Fails when the engine does not answer, and when nvidia-smi lists a GPU but the
    engine has no C(nvidia) runtime; warns when live-restore is off and O(expect_live_restore) is true.
  - C(registry:<name>) - for each of O(registries), C(GET <url>/v2/) answers 200 or 401.
  - C(builder) - with O(buildkit_builder), C(docker buildx inspect NAME) answers and reports a driver (never
    C(--bootstrap), so the probe starts nothing); the value echoes O(cache_export).
  - C(disk:<path>) - free space (GiB and percent) for each of O(disk_paths), measured at the closest existing
    parent when the path does not exist.
  - C(memory) - C(MemAvailable) of C(/proc/meminfo).
  - C(gpu) - nvidia-smi's index, name, UUID and driver version; never its memory fields, which the GB10 reports
    as N/A (unified memory).
  - C(cert:<name>) - days until each of O(certificates) expires, from C(openssl x509 -enddate).
  - C(agent_image) - with O(agent_image), the image is in the engine's store (C(GET /images/<ref>/json)).
  - C(kubernetes_node) - with O(kubernetes_node), the Node is Ready and schedulable (C(kubectl get node -o json));
    a cordoned node warns, since a rollout cordons on purpose.
  - The task never fails because a check failed; RV(healthy) and RV(failed_checks) let the play decide. It fails
    only on invalid arguments, all checked before any probe.
  - Read-only; never reports a change.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  docker_host:
    description: The Docker engine's socket, as a C(unix://) URL (TCP engines are not probed).
    type: str
    default: unix:///var/run/docker.sock
  docker_cli:
    description:
      - Path to the docker CLI (with the buildx plugin), used for the C(builder) check only; looked up on C(PATH)
        when omitted.
    type: path
  timeout:
    description:
      - Seconds each network probe may take in all (connect, request, answer) - the engine, each registry, the
        Kubernetes API (C(kubectl --request-timeout), whole seconds).
    type: float
    default: 2
  command_timeout:
    description:
      - Seconds each command (C(nvidia-smi), C(docker buildx inspect), C(kubectl), C(openssl)) may run before it
        is stopped and its check fails. Needs coreutils C(timeout) on the node.
    type: int
    default: 10
  expect_live_restore:
    description:
      - Warn when the engine's live-restore is off (restarting dockerd would then stop running CI jobs). The
        collection turns it on (C(container_runtime_live_restore)).
    type: bool
    default: true
  expect_gpu:
    description: Fail the C(gpu) check when no GPU is found (no nvidia-smi, or it lists none).
    type: bool
    default: false
  nvidia_smi_path:
    description: Path to C(nvidia-smi). When omitted it is looked up on C(PATH); absent means no GPU.
    type: path
  registries:
    description: Registry instances whose C(/v2/) must answer (the writable registry and each pull-through proxy).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the check (C(registry:<name>)); unique.
        type: str
        required: true
      url:
        description:
          - The registry's root, C(http://) or C(https://) with host and port only, e.g. C(https://127.0.0.1:5000).
        type: str
        required: true
      ca_path:
        description: CA certificate (PEM) to verify an C(https://) registry with; the system CAs when omitted.
        type: path
  buildkit_builder:
    description: Name of the buildx builder to inspect (C(builder) check); no check when omitted.
    type: str
  cache_export:
    description:
      - The cache-export mode the node is configured for (C(registry), C(inline), ...); only echoed in the
        C(builder) value.
    type: str
  disk_paths:
    description: Paths whose filesystem's free space is checked (C(disk:<path>)); absolute and unique.
    type: list
    elements: path
    default: [/var/lib/docker, /var/lib/containerd]
  disk_warn_free_percent:
    description: Warn when the free space of a disk path is below this percentage.
    type: float
    default: 15
  disk_fail_free_percent:
    description: Fail when the free space of a disk path is below this percentage; at most O(disk_warn_free_percent).
    type: float
    default: 5
  memory_warn_available_mb:
    description: Warn when C(MemAvailable) is below this many MiB.
    type: int
    default: 4096
  memory_fail_available_mb:
    description: Fail when C(MemAvailable) is below this many MiB; at most O(memory_warn_available_mb).
    type: int
    default: 1024
  certificates:
    description:
      - PEM certificates whose expiry is checked (C(cert:<name>)), e.g. the registry's TLS certificate, the DinD CA.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the check (C(cert:<name>)); unique.
        type: str
        required: true
      path:
        description: Path of the PEM certificate (the first certificate of the file is read).
        type: path
        required: true
  cert_warn_days:
    description: Warn when a certificate expires in fewer days than this.
    type: int
    default: 30
  cert_fail_days:
    description: Fail when a certificate expires in fewer days than this (or has expired); at most O(cert_warn_days).
    type: int
    default: 7
  openssl_path:
    description: Path to C(openssl), used for the certificate checks; looked up on C(PATH) when omitted.
    type: path
  agent_image:
    description: Reference of the CI agent image that must be in the engine's image store; no check when omitted.
    type: str
  kubernetes_node:
    description: Name of this node's Kubernetes Node object; no check when omitted.
    type: str
  kubeconfig:
    description: Kubeconfig for C(kubectl); kubectl's own default when omitted.
    type: path
  kubectl_path:
    description: Path to C(kubectl); looked up on C(PATH) when omitted.
    type: path
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
  - raibid.dgx_spark.attributes.info_module
notes:
  - >-
    Cost: the checks run concurrently in a thread pool, so a call takes about as long as its slowest probe (a
    command such as C(kubectl), C(nvidia-smi) or C(openssl), or a probe waiting out O(timeout) or
    O(command_timeout)). Measured on a 2-core x86 build machine under load against its Docker 20.10 engine:
    the default checks (engine, two disks, memory, gpu without nvidia-smi) take a median 19 ms (the engine's
    C(/info) and C(/version) 18 ms); with the agent image and one certificate, 52 ms (openssl's start is most of
    it). Starting the module and carrying it over the connection cost far more (about 0.7 s over the Docker
    connection).
  - The certificate checks use the C(openssl) CLI rather than the C(cryptography) library, which the node may lack.
seealso:
  - module: raibid.dgx_spark.node_facts
  - module: raibid.dgx_spark.agent_healthcheck
"""

EXAMPLES = r"""
- name: Health of the node
  raibid.dgx_spark.node_health:
    registries:
      - {name: local, url: "https://127.0.0.1:5000", ca_path: /etc/raibid/registry/ca.pem}
      - {name: docker.io, url: "https://127.0.0.1:5001", ca_path: /etc/raibid/registry/ca.pem}
    buildkit_builder: raibid
    cache_export: registry
    certificates:
      - {name: registry-tls, path: /etc/raibid/registry/tls.crt}
    agent_image: 127.0.0.1:5000/raibid-ci-agent:1.4.0
    kubernetes_node: "{{ inventory_hostname }}"
    kubeconfig: /etc/rancher/k3s/k3s.yaml
    expect_gpu: true
  register: health

- name: Stop here when a check failed
  ansible.builtin.assert:
    that: health.healthy
    fail_msg: "{{ inventory_hostname }}: {{ health.failed_checks | join(', ') }}"
"""

RETURN = r"""
msg:
  description: One line for a person - healthy or which checks failed, the counts and the time.
  returned: always
  type: str
  sample: "unhealthy: registry:docker.io failed (8 ok, 1 warn, 1 fail in 412 ms); warnings: kubernetes_node"
checks:
  description:
    - Every check, in a stable order (engine, registries, builder, disks, memory, gpu, certificates, agent image,
      Kubernetes node).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description:
        - The check (C(engine), C(registry:<name>), C(builder), C(disk:<path>), C(memory), C(gpu), C(cert:<name>),
          C(agent_image), C(kubernetes_node)).
      type: str
    status:
      description: C(ok), C(warn) or C(fail).
      type: str
    value:
      description: What the probe found (a dict, or null when nothing could be read).
      type: raw
    message:
      description: Why the status is not C(ok) (empty when it is, except for notes such as "no GPU").
      type: str
    elapsed_ms:
      description: Milliseconds the probe took.
      type: int
  sample:
    - name: engine
      status: warn
      value:
        version: 29.0.1
        api_version: "1.52"
        storage_driver: overlayfs
        image_store: containerd
        live_restore: false
        runtimes: [nvidia, runc]
        default_runtime: runc
        docker_root_dir: /var/lib/docker
      message: "live-restore is off (expect_live_restore is true): restarting dockerd stops running jobs"
      elapsed_ms: 9
    - name: disk:/var/lib/docker
      status: ok
      value: {path: /var/lib/docker, measured_at: /var/lib/docker, free_gb: 3210.4, total_gb: 3666.0, free_percent: 88}
      message: ""
      elapsed_ms: 0
summary:
  description: How many checks have each status.
  returned: always
  type: dict
  sample: {ok: 8, warn: 1, fail: 1}
failed_checks:
  description: Names of the checks with status C(fail).
  returned: always
  type: list
  elements: str
warning_checks:
  description: Names of the checks with status C(warn).
  returned: always
  type: list
  elements: str
healthy:
  description: True when no check failed.
  returned: always
  type: bool
elapsed_ms:
  description: Milliseconds of the whole probe (the checks run concurrently).
  returned: always
  type: int
"""

import os
from typing import Dict, List, Optional, Tuple

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.agent_image import timed_out, with_timeout
from ansible_collections.raibid.dgx_spark.plugins.module_utils.node_health import (
    DEFAULT_DOCKER_HOST,
    NodeIO,
    Settings,
    node_health,
    problems,
)

ARGUMENT_SPEC = {
    "docker_host": {"type": "str", "default": DEFAULT_DOCKER_HOST},
    "docker_cli": {"type": "path"},
    "timeout": {"type": "float", "default": 2},
    "command_timeout": {"type": "int", "default": 10},
    "expect_live_restore": {"type": "bool", "default": True},
    "expect_gpu": {"type": "bool", "default": False},
    "nvidia_smi_path": {"type": "path"},
    "registries": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "name": {"type": "str", "required": True},
            "url": {"type": "str", "required": True},
            "ca_path": {"type": "path"},
        },
    },
    "buildkit_builder": {"type": "str"},
    "cache_export": {"type": "str"},
    "disk_paths": {"type": "list", "elements": "path", "default": ["/var/lib/docker", "/var/lib/containerd"]},
    "disk_warn_free_percent": {"type": "float", "default": 15},
    "disk_fail_free_percent": {"type": "float", "default": 5},
    "memory_warn_available_mb": {"type": "int", "default": 4096},
    "memory_fail_available_mb": {"type": "int", "default": 1024},
    "certificates": {
        "type": "list",
        "elements": "dict",
        "default": [],
        "options": {
            "name": {"type": "str", "required": True},
            "path": {"type": "path", "required": True},
        },
    },
    "cert_warn_days": {"type": "int", "default": 30},
    "cert_fail_days": {"type": "int", "default": 7},
    "openssl_path": {"type": "path"},
    "agent_image": {"type": "str"},
    "kubernetes_node": {"type": "str"},
    "kubeconfig": {"type": "path"},
    "kubectl_path": {"type": "path"},
}


def read_meminfo() -> str:
    with open("/proc/meminfo", encoding="utf-8") as fh:
        return fh.read()


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    found = problems(params)

    def program(option: str, name: str, needed: bool) -> Optional[str]:
        """The program's path: the option's (which must be executable) or PATH's; None when absent."""
        given = params[option]
        if given:
            if not (os.path.isfile(given) and os.access(given, os.X_OK)):
                found.append(f"{option}: {given} is not an executable file")
            return given
        return module.get_bin_path(name) if needed else None

    programs = {
        "docker_cli": program("docker_cli", "docker", bool(params["buildkit_builder"])),
        "nvidia_smi": program("nvidia_smi_path", "nvidia-smi", True),
        "openssl": program("openssl_path", "openssl", bool(params["certificates"])),
        "kubectl": program("kubectl_path", "kubectl", bool(params["kubernetes_node"])),
    }
    if found:
        module.fail_json(msg="; ".join(found), problems=found)

    timeout_bin = module.get_bin_path("timeout")
    seconds = params["command_timeout"]

    def run(argv: List[str], env: Dict[str, str]) -> Tuple[int, str, str]:
        rc, out, err = module.run_command(
            with_timeout(argv, timeout_bin, seconds),
            environ_update={"LC_ALL": "C", **env},
            expand_user_and_vars=False,
        )
        if timed_out(rc, timeout_bin):
            return rc, out, f"stopped after command_timeout ({seconds} s)"
        return rc, out, err

    settings = Settings.from_params(params, **programs)
    result = node_health(settings, NodeIO(run=run, read_meminfo=read_meminfo))
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
