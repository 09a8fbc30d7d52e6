#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_facts
short_description: Detect DGX Spark hardware, DGX OS, architecture, memory, disk and GPU
version_added: 0.1.0
description:
  - Reads C(/etc/dgx-release), C(/etc/os-release), the DMI product name, C(/proc/meminfo),
    the dpkg status database and, when present, C(nvidia-smi), and returns one structured
    fact C(dgx_spark_node) that the other roles of the collection act on.
  - GPU detection queries only index, name, UUID and driver version; it never relies on memory
    fields, which the GB10 of a DGX Spark reports as unsupported (unified memory).
  - Read-only; never reports a change.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  disk_path:
    description:
      - Path whose filesystem's free space is measured (normally the Docker data root).
      - When it does not exist yet, the closest existing parent directory is measured.
    type: path
    default: /var/lib/docker
  extra_disk_paths:
    description:
      - More paths to measure the same way, such as containerd's root (C(/var/lib/containerd)), where the
        containerd image store keeps image data instead of the Docker data root.
    type: list
    elements: path
    default: []
  nvidia_smi_path:
    description:
      - Path to C(nvidia-smi). When omitted it is looked up on C(PATH); absent means no GPU.
    type: path
  pending_dir:
    description:
      - Directory of the reloads and restarts that roles decided but whose handlers have not run yet
        (C(dgx_spark_pending_dir)), one subdirectory per role. When given, the records found there are
        returned in RV(ansible_facts.dgx_spark_node.pending), so that each role reads them without a call of its own.
    type: path
    version_added: 0.1.0
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
  - raibid.dgx_spark.attributes.info_module
  - raibid.dgx_spark.attributes.facts
notes:
  - In containers the DMI product name is usually unreadable; detection then rests on
    C(/etc/dgx-release).
"""

EXAMPLES = r"""
- name: Detect the node
  raibid.dgx_spark.node_facts:
    disk_path: /var/lib/docker
  register: node

- name: Show whether this is a DGX Spark
  ansible.builtin.debug:
    msg: "{{ node.ansible_facts.dgx_spark_node.is_dgx_spark }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts published for later tasks.
  returned: always
  type: dict
  contains:
    dgx_spark_node:
      description: Everything detected about the node.
      type: dict
      contains:
        architecture:
          description: Normalised CPU architecture (C(aarch64) or C(x86_64); others as reported).
          type: str
          sample: aarch64
        is_dgx_spark:
          description: True when the DMI product name or /etc/dgx-release names a DGX Spark.
          type: bool
        is_dgx_os:
          description: True when C(/etc/dgx-release) exists.
          type: bool
        dgx_release:
          description: Keys of C(/etc/dgx-release) (empty when absent).
          type: dict
          sample: {DGX_NAME: "DGX Spark", DGX_SWBUILD_VERSION: "7.3.1"}
        product_name:
          description: DMI product name, empty when unreadable.
          type: str
        os:
          description:
            - C(family) (dgx_os, ubuntu, debian, ...), C(version), C(base_id), C(base_version), C(pretty_name).
          type: dict
          sample:
            family: debian
            version: "13"
            base_id: debian
            base_version: "13"
            pretty_name: "Debian GNU/Linux 13 (trixie)"
        memory_mb:
          description: Total memory in MiB.
          type: int
        disk:
          description: C(path), C(measured_at), C(free_gb), C(total_gb) at O(disk_path).
          type: dict
        disks:
          description:
            - The same for O(disk_path) and each of O(extra_disk_paths), in that order.
          type: list
          elements: dict
          version_added: 0.1.0
        gpu:
          description: C(present), C(count), C(devices) (index, name, uuid, driver_version) and C(probe) status.
          type: dict
        packages:
          description: Installed versions of the container-runtime and NVIDIA packages the roles care about.
          type: dict
          sample: {docker-ce: "5:29.0.1-1~ubuntu.24.04~noble", nvidia-container-toolkit: "1.19.0-1"}
        installed:
          description:
            - The version of every installed package (dpkg status C(install ok installed)), by name.
            - The collection's apt pattern reads it to skip C(apt-cache policy) when everything a role needs is there.
          type: dict
          sample: {docker.io: "26.1.5+dfsg1-9+b9", python3-requests: "2.32.3+dfsg-5"}
        pending_dir:
          description: O(pending_dir), as given.
          type: str
          returned: when O(pending_dir) is given
        pending:
          description:
            - The records under O(pending_dir) by role directory, each list sorted; roles with none are left out.
            - A record names a reload or restart that a run decided and was killed before making.
          type: dict
          returned: when O(pending_dir) is given
          sample: {container_runtime: [docker.service.reload]}
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.node_facts import collect


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "disk_path": {"type": "path", "default": "/var/lib/docker"},
            "extra_disk_paths": {"type": "list", "elements": "path", "default": []},
            "nvidia_smi_path": {"type": "path"},
            "pending_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    nvidia_smi = module.params["nvidia_smi_path"] or module.get_bin_path("nvidia-smi")
    if module.params["nvidia_smi_path"] and not os.access(nvidia_smi, os.X_OK):
        module.fail_json(msg=f"nvidia_smi_path: {nvidia_smi} is not an executable file")

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    facts = collect(
        root="/",
        machine=os.uname().machine,
        disk_path=module.params["disk_path"],
        run=run,
        nvidia_smi=nvidia_smi,
        extra_disk_paths=module.params["extra_disk_paths"],
        pending_dir=module.params["pending_dir"],
    )
    module.exit_json(changed=False, ansible_facts={"dgx_spark_node": facts})


if __name__ == "__main__":
    main()
