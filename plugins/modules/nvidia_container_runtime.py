#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_container_runtime
short_description: Register the NVIDIA runtime with Docker and set the toolkit's mode, read back
version_added: 0.1.0
description:
  - With O(runtime=true), reads C(daemon.json) first and runs
    C(nvidia-ctk runtime configure --runtime=docker) only when C(runtimes.nvidia) is missing (or,
    with O(set_as_default=true), when C(default-runtime) is not C(nvidia)). Other daemon.json keys
    are left as they are.
  - With O(mode), reads C(mode) of the C([nvidia-container-runtime]) table in the toolkit's
    C(config.toml), sets it with C(nvidia-ctk config --in-place --set) only when it differs, then
    reads it back and fails if it still differs.
  - Never removes an existing C(default-runtime) (DGX OS ships C(nvidia) as the default).
  - Docker must be restarted after the runtime was registered (RV(daemon_json_changed)); a mode
    change applies to the next container without a restart.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  runtime:
    description: Make sure Docker's daemon.json registers the C(nvidia) runtime.
    type: bool
    default: false
  set_as_default:
    description: Also make C(nvidia) Docker's default runtime (only with O(runtime=true)).
    type: bool
    default: false
  mode:
    description: The runtime mode to set and verify. Omit to leave the mode alone.
    type: str
    choices: [auto, legacy, cdi, csv]
  daemon_json:
    description: Docker's daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  config_toml:
    description: The NVIDIA Container Runtime configuration file.
    type: path
    default: /etc/nvidia-container-runtime/config.toml
  nvidia_ctk_path:
    description: Path to C(nvidia-ctk); looked up on C(PATH) when omitted.
    type: path
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
attributes:
  check_mode:
    support: full
    details:
      - Reads and decides; runs no nvidia-ctk command that writes.
  diff_mode:
    support: none
    details:
      - The changes are reported in RV(actions) instead.
requirements:
  - nvidia-container-toolkit (C(nvidia-ctk)) on the target
"""

EXAMPLES = r"""
- name: Register the nvidia runtime with Docker (not as default)
  raibid.dgx_spark.nvidia_container_runtime:
    runtime: true
  notify: Restart docker

- name: Pin the toolkit to legacy mode and verify it
  raibid.dgx_spark.nvidia_container_runtime:
    mode: legacy
"""

RETURN = r"""
actions:
  description: What was (or in check mode would be) done, in words.
  returned: always
  type: list
  elements: str
  sample: ["nvidia-ctk runtime configure: daemon.json has no runtimes.nvidia.path"]
daemon_json_changed:
  description: True when daemon.json was (or would be) changed, so Docker needs a restart.
  returned: always
  type: bool
runtime_configured:
  description: Whether daemon.json registers the nvidia runtime afterwards (before, in check mode).
  returned: always
  type: bool
default_runtime:
  description: daemon.json C(default-runtime) afterwards (empty when unset).
  returned: always
  type: str
mode:
  description: The mode read back from config.toml (C(auto) when unset).
  returned: when O(mode) is given
  type: str
previous_mode:
  description: The mode before any change (C(auto) when unset).
  returned: when O(mode) is given
  type: str
"""

import os
from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.docker_daemon import DaemonConfigError, load_config
from ansible_collections.raibid.dgx_spark.plugins.module_utils.nvidia_toolkit import (
    MODES,
    configure_runtime_argv,
    effective_mode,
    runtime_configured,
    runtime_needs_configure,
    set_mode_argv,
)


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def load_daemon(module: AnsibleModule, path: str) -> Dict[str, Any]:
    try:
        return load_config(read(path))
    except DaemonConfigError as exc:
        module.fail_json(msg=f"daemon_json: {path} {exc}; nothing was changed")
    return {}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "runtime": {"type": "bool", "default": False},
            "set_as_default": {"type": "bool", "default": False},
            "mode": {"type": "str", "choices": list(MODES)},
            "daemon_json": {"type": "path", "default": "/etc/docker/daemon.json"},
            "config_toml": {"type": "path", "default": "/etc/nvidia-container-runtime/config.toml"},
            "nvidia_ctk_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    ctk = params["nvidia_ctk_path"] or module.get_bin_path("nvidia-ctk", opt_dirs=["/usr/bin", "/usr/local/bin"])
    if ctk is None or not os.access(ctk, os.X_OK):
        module.fail_json(
            msg=f"nvidia_ctk_path: nvidia-ctk not found or not executable ({ctk or 'not on PATH'}); "
            "install nvidia-container-toolkit first"
        )

    actions: List[str] = []
    result: Dict[str, Any] = {"changed": False, "daemon_json_changed": False, "actions": actions}

    def run(argv: List[str]) -> None:
        rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C"})
        if rc != 0:
            module.fail_json(msg=f"{' '.join(argv)} failed (rc {rc}): {(err or out).strip()}", **result)

    daemon = load_daemon(module, params["daemon_json"])
    if params["runtime"]:
        reasons = runtime_needs_configure(daemon, params["set_as_default"])
        if reasons:
            actions.append(f"nvidia-ctk runtime configure: {'; '.join(reasons)}")
            result.update(changed=True, daemon_json_changed=True)
            if not module.check_mode:
                run(configure_runtime_argv(ctk, params["daemon_json"], params["set_as_default"]))
                daemon = load_daemon(module, params["daemon_json"])
                left = runtime_needs_configure(daemon, params["set_as_default"])
                if left:
                    module.fail_json(
                        msg=f"after nvidia-ctk runtime configure, {params['daemon_json']} still fails: "
                        + "; ".join(left),
                        **result,
                    )
    result["runtime_configured"] = runtime_configured(daemon)
    result["default_runtime"] = str(daemon.get("default-runtime", ""))

    if params["mode"]:
        previous = effective_mode(read(params["config_toml"]))
        result.update(previous_mode=previous, mode=previous)
        if previous != params["mode"]:
            actions.append(f"nvidia-ctk config: mode {previous} -> {params['mode']}")
            result.update(changed=True, mode=params["mode"])
            if not module.check_mode:
                run(set_mode_argv(ctk, params["config_toml"], params["mode"]))
                after = effective_mode(read(params["config_toml"]))
                result["mode"] = after
                if after != params["mode"]:
                    module.fail_json(
                        msg=f"mode: set {params['mode']} with nvidia-ctk, "
                        f"but {params['config_toml']} reads back {after}",
                        **result,
                    )

    module.exit_json(msg="; ".join(actions) or "nvidia runtime and mode already as requested", **result)


if __name__ == "__main__":
    main()
