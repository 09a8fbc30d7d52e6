#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_daemon_config
short_description: Merge settings into Docker's daemon.json, validated by dockerd before it is replaced
version_added: 0.1.0
description:
  - Deep-merges O(settings) into the existing C(daemon.json). Keys this module is not given are
    kept as they are (DGX OS, C(nvidia-ctk) and other packages put their own keys there); nested
    objects merge key by key; lists and scalars are replaced; a C(null) value removes a key.
  - Refuses, naming the key and the flag, any requested key that the effective systemd
    C(ExecStart) of the Docker unit (drop-ins included, read with C(systemctl show)) already passes
    to dockerd as a flag, because dockerd will not start with an option set both ways.
  - Writes the candidate to a temporary file and runs C(dockerd --validate --config-file <candidate>)
    together with the unit's own flags before replacing anything. If validation fails, the old file
    stays untouched and the module fails with dockerd's message.
  - Backs up the previous file and replaces it atomically, only when the merged content differs
    from what is there (formatting differences alone do not count).
  - Does not restart Docker; notify a handler on change.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  path:
    description: The daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description:
      - The keys to merge in, as daemon.json spells them (C(registry-mirrors), C(log-opts), ...).
      - A C(null) value removes that key.
    type: dict
    required: true
  backup:
    description: Keep a timestamped copy of the previous file next to it when it is replaced.
    type: bool
    default: true
  validate:
    description:
      - Run C(dockerd --validate) on the candidate (with the unit's flags) before replacing the file.
      - When dockerd is not installed yet, validation is skipped in check mode and fails otherwise.
    type: bool
    default: true
  dockerd_path:
    description: Path to dockerd. Looked up on C(PATH) and in C(/usr/sbin), C(/usr/bin) when omitted.
    type: path
  service:
    description: The systemd unit (without C(.service)) whose effective ExecStart is checked.
    type: str
    default: docker
  exec_start:
    description:
      - The dockerd command line to check against, instead of reading it from systemd
        (for hosts without systemd, and for tests). An empty list means no flags.
    type: list
    elements: str
  mode:
    description: Permissions of a newly created file; an existing file keeps its own.
    type: raw
    default: "0644"
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
attributes:
  check_mode:
    support: full
    details:
      - Computes the merge, checks flag collisions and runs dockerd --validate; writes nothing.
  diff_mode:
    support: full
    details:
      - Shows the old and new JSON.
notes:
  - C(dockerd --validate) (Docker 23+) checks JSON, key names, types and values, but not typos
    inside C(features).
"""

EXAMPLES = r"""
- name: Configure registry mirror, log rotation and the containerd image store
  raibid.dgx_spark.docker_daemon_config:
    settings:
      registry-mirrors: ["http://127.0.0.1:5001"]
      log-driver: json-file
      log-opts: {max-size: "50m", max-file: "3"}
      features: {containerd-snapshotter: true}
      live-restore: true
  notify: Restart docker

- name: Remove a key we set earlier
  raibid.dgx_spark.docker_daemon_config:
    settings:
      insecure-registries: null
"""

RETURN = r"""
config:
  description: The daemon configuration after the merge (what the file holds, or would hold in check mode).
  returned: success
  type: dict
  sample: {"default-runtime": "nvidia", "live-restore": true}
previous:
  description: The configuration found before the merge (empty when the file did not exist).
  returned: always
  type: dict
changed_keys:
  description: Top-level keys whose value the merge changed, added or removed.
  returned: success
  type: list
  elements: str
  sample: [live-restore, registry-mirrors]
backup_file:
  description: The copy of the previous file, when one was made.
  returned: changed and a previous file existed and backup is true
  type: str
exec_start:
  description: The dockerd argv the checks used (from systemd, or O(exec_start)).
  returned: always
  type: list
  elements: str
validation:
  description: What C(dockerd --validate) said. C(skipped) explains why it did not run.
  returned: always
  type: dict
  sample:
    cmd: ["/usr/sbin/dockerd", "--validate", "--config-file", "/tmp/daemon-x.json", "-H", "fd://"]
    rc: 0
    output: configuration OK
    skipped: ""
"""

import os
import tempfile
from typing import Any, Dict, List

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.docker_daemon import (
    DaemonConfigError,
    config_file_flag,
    conflict_message,
    deep_merge,
    flag_conflicts,
    load_config,
    no_validate_flag,
    parse_exec_start,
    redact,
    render,
    validation_argv,
)


def fail(module: AnsibleModule, **result: Any) -> None:
    module.fail_json(**redact(result))


def done(module: AnsibleModule, **result: Any) -> None:
    module.exit_json(**redact(result))


def read_exec_start(module: AnsibleModule) -> List[str]:
    if module.params["exec_start"] is not None:
        return list(module.params["exec_start"])
    systemctl = module.get_bin_path("systemctl")
    if systemctl is None:
        return []
    rc, out, _err = module.run_command([systemctl, "show", module.params["service"], "-p", "ExecStart"])
    return parse_exec_start(out) if rc == 0 else []


def find_dockerd(module: AnsibleModule) -> str | None:
    if module.params["dockerd_path"]:
        return module.params["dockerd_path"]
    return module.get_bin_path("dockerd", opt_dirs=["/usr/sbin", "/usr/bin"])


def validate(module: AnsibleModule, text: str, argv: List[str]) -> Dict[str, Any]:
    result: Dict[str, Any] = {"cmd": [], "rc": None, "output": "", "skipped": ""}
    if not module.params["validate"]:
        result["skipped"] = "validate is false"
        return result
    dockerd = find_dockerd(module)
    if dockerd is None or not os.access(dockerd, os.X_OK):
        if module.check_mode:
            result["skipped"] = "dockerd is not installed yet (check mode)"
            return result
        fail(
            module,
            msg=f"validate: dockerd not found (dockerd_path={module.params['dockerd_path']!r}); "
            f"cannot validate {module.params['path']}, so nothing was changed",
            validation=result,
        )
    fd, candidate = tempfile.mkstemp(prefix="daemon-", suffix=".json", dir=module.tmpdir)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    cmd, dropped = validation_argv(dockerd, candidate, argv)
    rc, out, err = module.run_command(cmd, environ_update={"LC_ALL": "C"})
    result.update(cmd=cmd, rc=rc, output=(out + err).strip(), dropped_flags=dropped)
    if rc != 0 and no_validate_flag(result["output"]):
        # Docker < 23 (Debian 12's docker.io 20.10) has no --validate; JSON and flag checks still ran.
        result.update(rc=None, skipped=f"{dockerd} has no --validate (Docker older than 23)")
        module.warn(f"{module.params['path']} was not validated by dockerd: {result['skipped']}")
    return result


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "settings": {"type": "dict", "required": True},
            "backup": {"type": "bool", "default": True},
            "validate": {"type": "bool", "default": True},
            "dockerd_path": {"type": "path"},
            "service": {"type": "str", "default": "docker"},
            "exec_start": {"type": "list", "elements": "str"},
            "mode": {"type": "raw", "default": "0644"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    settings = module.params["settings"]

    exists = os.path.exists(path)
    text = None
    if exists:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    try:
        previous = load_config(text)
    except DaemonConfigError as exc:
        fail(module, msg=f"path: the existing {path} {exc}; fix or remove it first. Nothing was changed.")

    argv = read_exec_start(module)
    result: Dict[str, Any] = {"changed": False, "previous": previous, "exec_start": argv, "validation": {}}

    unit_config = config_file_flag(argv)
    if unit_config and os.path.normpath(unit_config) != os.path.normpath(path):
        fail(
            module,
            msg=f"path: {module.params['service']}.service starts dockerd with --config-file {unit_config}, "
            f"not {path}; set path to the file dockerd reads. Nothing was changed.",
            **result,
        )

    requested = [key for key, value in settings.items() if value is not None]
    conflicts = flag_conflicts(requested, argv)
    if conflicts:
        result["conflicts"] = [{"key": key, "flag": flag} for key, flag in conflicts]
        fail(module, msg=conflict_message(module.params["service"], conflicts, argv), **result)

    merged = deep_merge(previous, settings)
    changed_keys = sorted(
        key for key in set(previous) | set(merged) if previous.get(key, object()) != merged.get(key, object())
    )
    new_text = render(merged)
    changed = merged != previous or (not exists and bool(merged))
    result.update(config=merged, changed_keys=changed_keys, changed=changed)
    if module._diff:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": render(previous) if exists else "",
            "after": new_text if (changed or exists) else "",
        }

    if not changed:
        result["validation"] = {"cmd": [], "rc": None, "output": "", "skipped": "no change"}
        done(module, msg=f"{path} already holds the requested settings", **result)

    result["validation"] = validate(module, new_text, argv)
    if result["validation"]["rc"] not in (None, 0):
        result["changed"] = False
        fail(
            module,
            msg=f"dockerd --validate rejected the merged {path} (keys {', '.join(changed_keys)}): "
            f"{result['validation']['output']}. The file was left untouched and Docker was not restarted.",
            **result,
        )

    if module.check_mode:
        done(module, msg=f"{path} would change (keys {', '.join(changed_keys)})", **result)

    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)
    if exists and module.params["backup"]:
        result["backup_file"] = module.backup_local(path)
    fd, staged = tempfile.mkstemp(prefix=".daemon-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(new_text)
    if exists:
        stat = os.stat(path)
        os.chmod(staged, stat.st_mode & 0o7777)
        os.chown(staged, stat.st_uid, stat.st_gid)
    module.atomic_move(staged, path, unsafe_writes=False)
    if not exists:
        file_args = module.load_file_common_arguments({"path": path, "mode": module.params["mode"]})
        module.set_fs_attributes_if_different(file_args, False)
    done(module, msg=f"{path} updated (keys {', '.join(changed_keys)})", **result)


if __name__ == "__main__":
    main()
