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
  - Fills O(defaults) in only where the file lacks them, leaf by leaf, so a value another tool put
    there (DGX OS's C(log-opts.max-file), say) wins over the collection's default.
  - Remembers in O(state_path) every leaf it wrote (from O(settings), or a default it filled in).
    A remembered leaf that neither O(settings) nor O(defaults) name any more is removed again, but
    only while it still holds the value the module wrote; a leaf someone changed since is kept, with
    a warning. Leaves the module never wrote are never removed.
  - Refuses, naming the key and the flag, any requested key that the effective systemd
    C(ExecStart) of the Docker unit (drop-ins included, read with C(systemctl show)) already passes
    to dockerd as a flag, because dockerd will not start with an option set both ways. A default
    whose top-level key the unit sets as a flag counts as present and is not filled in.
  - Writes the candidate to a temporary file and runs C(dockerd --validate --config-file <candidate>)
    together with the unit's own flags before replacing anything. If validation fails, the old file
    stays untouched and the module fails with dockerd's message.
  - Backs up the previous file and replaces it atomically, only when the merged content differs
    from what is there (formatting differences alone do not count).
  - Says which changed keys dockerd applies on C(systemctl reload docker) (SIGHUP) and which need a
    restart (RV(reload_keys), RV(restart_keys)), and whether the file holds what was asked
    (RV(settings_applied)), comparing real values but returning only key names.
  - Does not reload or restart Docker; act on RV(reload_required) and RV(restart_required). With
    O(pending_dir), it records that reload or restart on the node before it replaces the file, so that a
    run killed before it reloaded or restarted dockerd still does so on the next run (RV(pending_records)).
  - Credentials in C(scheme://user:password@host) URLs are masked in every returned value, the
    diff and the messages; the files keep the real values.
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
        They win over what the file holds.
      - A C(null) value removes that key.
      - When a setting carries credentials, set C(no_log) on the task, since Ansible reports the
        module's arguments unmasked.
    type: dict
    default: {}
  defaults:
    description:
      - Keys to fill in only where the file lacks them, compared leaf by leaf (an object merges
        key by key; a list or scalar is one leaf). A leaf the module filled in earlier follows a
        changed default; a leaf another tool wrote is left alone.
      - O(settings) win over O(defaults) for the same key. C(null) values are ignored.
    type: dict
    default: {}
  state_path:
    description:
      - JSON file where the module records the leaves it wrote and their values, so that it can
        remove them once they are no longer requested.
      - Defaults to O(path) with C(.raibid-owned.json) appended, so that it sits next to the file
        it describes (C(/etc/docker/daemon.json.raibid-owned.json)); dockerd does not read it.
      - Written with mode C(0600) (values may carry credentials), never in check mode, and only
        once C(daemon.json) is validated and in place.
    type: path
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
    description:
      - Permissions of a newly created file; an existing file keeps its own.
      - A file whose content carries credentials (C(scheme://user:password@host) URLs, e.g. in C(proxies)) is
        always written readable by its owner only (C(0600), or the existing mode without group and other bits).
    type: raw
    default: "0644"
  pending_dir:
    description:
      - Directory where the module records, before it replaces O(path), the reload and the restart of the
        O(service) unit that the change needs - one file per action, named C(<unit>.reload) and
        C(<unit>.restart) (C(docker.service.restart)), holding the changed key names (never values).
        Missing directories are created readable by root only (C(0700)); the records get mode C(0600).
      - A run killed after the file was replaced but before dockerd was reloaded or restarted leaves its
        record behind; the next run finds daemon.json already as wanted, and only the record tells it that
        the reload or restart is still due. The caller acts on the records it finds and removes them once
        dockerd was reloaded or restarted (the role C(raibid.dgx_spark.container_runtime) does, in its
        handlers). A kill between the record and the replacement costs at worst one extra reload or restart.
      - Omitted, nothing is recorded. Never written in check mode, nor when the file does not change.
    type: path
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
attributes:
  check_mode:
    support: full
    details:
      - Computes the merge, the defaults, the removals of owned keys and the reload/restart split,
        checks flag collisions and runs dockerd --validate; writes neither file, nor any pending record
        (RV(pending_records) names those a real run would write).
  diff_mode:
    support: full
    details:
      - Shows the old and new JSON (removals of owned keys included), credentials masked.
notes:
  - C(dockerd --validate) (Docker 23+) checks JSON, key names, types and values, but not typos
    inside C(features).
  - The reload/restart split follows the dockerd reference ("Configuration reload behavior"),
    checked on dockerd 26.1. C(features) is listed there but C(features.containerd-snapshotter) only
    takes effect on a restart, so every C(features) key counts as a restart key; unknown keys too.
    A reload applies most reloadable keys only when they are set, so a removed one (C(debug),
    C(registry-mirrors), ...) needs a restart; only C(max-concurrent-downloads),
    C(max-concurrent-uploads) and C(max-download-attempts) go back to their defaults on a reload.
"""

EXAMPLES = r"""
- name: Configure registry mirror, log rotation and the containerd image store
  raibid.dgx_spark.docker_daemon_config:
    settings:
      registry-mirrors: ["http://127.0.0.1:5001"]
      log-driver: json-file
      features: {containerd-snapshotter: true}
      live-restore: true
    # DGX OS's own log-opts.max-file stays; max-size is added when absent.
    defaults:
      log-opts: {max-size: "50m", max-file: "3"}
  register: docker_daemon

- name: Reload dockerd when every changed key takes effect on reload
  ansible.builtin.systemd_service:
    name: docker
    state: reloaded
  when: docker_daemon.reload_required and not docker_daemon.restart_required

- name: Restart dockerd when a changed key needs it
  ansible.builtin.systemd_service:
    name: docker
    state: restarted
  when: docker_daemon.restart_required

- name: Fail without printing values when daemon.json does not hold what was asked
  ansible.builtin.assert:
    that: docker_daemon.settings_applied
    fail_msg: "daemon.json differs at {{ docker_daemon.mismatches | join(', ') }}"

- name: Remove a key we set earlier (or simply stop requesting it; owned keys are removed)
  raibid.dgx_spark.docker_daemon_config:
    settings:
      insecure-registries: null
"""

RETURN = r"""
config:
  description:
    - The daemon configuration after the merge (what the file holds, or would hold in check mode).
    - URL credentials are masked.
  returned: success
  type: dict
  sample: {"default-runtime": "nvidia", "live-restore": true}
previous:
  description: The configuration found before the merge (empty when the file did not exist); URL credentials masked.
  returned: always
  type: dict
changed_keys:
  description: Dotted leaf paths that were (or in check mode would be) added, changed or removed, sorted.
  returned: success
  type: list
  elements: str
  sample: [live-restore, log-opts.max-size, registry-mirrors]
reload_keys:
  description: The part of RV(changed_keys) that dockerd applies on C(systemctl reload docker) (SIGHUP).
  returned: success
  type: list
  elements: str
  sample: [live-restore, registry-mirrors]
restart_keys:
  description: The part of RV(changed_keys) that takes effect only after a restart of dockerd (unknown keys included).
  returned: success
  type: list
  elements: str
  sample: [log-opts.max-size]
reload_required:
  description:
    - True when RV(reload_keys) is not empty. A restart applies these keys too.
  returned: success
  type: bool
restart_required:
  description: True when RV(restart_keys) is not empty.
  returned: success
  type: bool
settings_applied:
  description:
    - True when every O(settings) leaf holds the requested value (a C(null) one is absent) and every
      O(defaults) leaf is present with some value, in the file after the run (in check mode, in the
      predicted file). Compared on the real values; a default that the unit sets as a flag counts as
      present.
  returned: success
  type: bool
mismatches:
  description: Dotted paths of the requested leaves that RV(settings_applied) found wrong or missing; never values.
  returned: success
  type: list
  elements: str
  sample: [log-opts.max-size]
filled_keys:
  description:
    - Dotted paths of the O(defaults) leaves written in this run (absent before, or an owned
      default whose value changed).
  returned: success
  type: list
  elements: str
removed_keys:
  description: Dotted paths of leaves this module had written, no longer requested, and removed in this run.
  returned: success
  type: list
  elements: str
kept_keys:
  description:
    - Dotted paths of leaves this module had written and that are no longer requested, but were kept
      because someone changed their value since. They are no longer tracked; a warning names them.
  returned: success
  type: list
  elements: str
owned_keys:
  description: Dotted paths of every leaf the module owns after the run (recorded in O(state_path)).
  returned: success
  type: list
  elements: str
state_path:
  description: The file that records the owned leaves.
  returned: always
  type: str
  sample: /etc/docker/daemon.json.raibid-owned.json
state_changed:
  description: True when the record of owned leaves was (or in check mode would be) rewritten.
  returned: success
  type: bool
backup_file:
  description: The copy of the previous file, when one was made.
  returned: changed and a previous file existed and backup is true
  type: str
exec_start:
  description: The dockerd argv the checks used (from systemd, or O(exec_start)).
  returned: always
  type: list
  elements: str
pending_records:
  description:
    - The records of a pending reload or restart written to O(pending_dir) before the file was replaced
      (in check mode, the ones a real run would write), as paths; empty when the file did not change.
  returned: success, when O(pending_dir) is set
  type: list
  elements: str
  sample: [/run/raibid/pending/container_runtime/docker.service.restart]
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
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.docker_daemon import (
    DaemonConfigError,
    OwnedStateError,
    changed_leaves,
    classify,
    config_file_flag,
    conflict_message,
    dotted,
    flag_conflicts,
    kept_warning,
    load_config,
    load_owned,
    mismatches,
    no_validate_flag,
    parse_exec_start,
    pending_records,
    plan_config,
    redact,
    removed_leaves,
    render,
    render_owned,
    validation_argv,
)

STATE_SUFFIX = ".raibid-owned.json"


def fail(module: AnsibleModule, **result: Any) -> None:
    module.fail_json(**redact(result))


def done(module: AnsibleModule, **result: Any) -> None:
    module.exit_json(**redact(result))


def read_text(module: AnsibleModule, path: str, option: str) -> Optional[str]:
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        fail(module, msg=f"{option}: cannot read {path} ({exc}). Nothing was changed.")
    return None


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


def write_config(module: AnsibleModule, path: str, text: str, exists: bool) -> Optional[str]:
    """Replace daemon.json atomically, keeping an existing file's owner and mode; the backup's path."""
    backup_file = None
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)
    if exists and module.params["backup"]:
        backup_file = module.backup_local(path)
    fd, staged = tempfile.mkstemp(prefix=".daemon-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    # A file that carries credentials (proxy URLs) is readable by its owner only.
    private = redact(text) != text
    if exists:
        stat = os.stat(path)
        os.chmod(staged, stat.st_mode & 0o7777)
        os.chown(staged, stat.st_uid, stat.st_gid)
    module.atomic_move(staged, path, unsafe_writes=False)
    if exists and private:
        # atomic_move gives the new file the old one's mode.
        os.chmod(path, stat.st_mode & 0o700)
    if not exists:
        mode = "0600" if private else module.params["mode"]
        file_args = module.load_file_common_arguments({"path": path, "mode": mode})
        module.set_fs_attributes_if_different(file_args, False)
    return backup_file


def write_private(path: str, text: str, prefix: str) -> None:
    """Replace ``path`` with ``text``, mode 0600 from its first byte, flushed to disk.

    os.replace rather than atomic_move: atomic_move gives a new file the umask's mode, which would
    leave the recorded values (credentials included) world-readable for a moment. The staged file's
    name starts with a dot, so a reader listing records never takes it for one.
    """
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o755)
    fd, staged = tempfile.mkstemp(prefix=prefix, dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(staged, 0o600)
        os.replace(staged, path)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
    os.chmod(path, 0o600)


def write_state(state_path: str, text: str) -> None:
    """Write the owned-key record (it holds values as written, credentials included)."""
    write_private(state_path, text, ".raibid-owned-")


def make_root_only_dir(directory: str) -> None:
    """Create ``directory`` and any missing parent with mode 0700 (only root enters them)."""
    missing = []
    current = os.path.abspath(directory)
    while not os.path.isdir(current):
        missing.append(current)
        current = os.path.dirname(current)
    for path in reversed(missing):
        os.mkdir(path, 0o700)
        # mkdir's mode passes through the umask; the records' directory must not depend on it.
        os.chmod(path, 0o700)


def write_pending(directory: str, records: Dict[str, str]) -> None:
    """Write each pending-action record (name -> text) into ``directory``."""
    make_root_only_dir(directory)
    for name, text in records.items():
        write_private(os.path.join(directory, name), text, ".pending-")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "settings": {"type": "dict", "default": {}},
            "defaults": {"type": "dict", "default": {}},
            "state_path": {"type": "path"},
            "backup": {"type": "bool", "default": True},
            "validate": {"type": "bool", "default": True},
            "dockerd_path": {"type": "path"},
            "service": {"type": "str", "default": "docker"},
            "exec_start": {"type": "list", "elements": "str"},
            "mode": {"type": "raw", "default": "0644"},
            "pending_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    path: str = module.params["path"]
    settings: Dict[str, Any] = module.params["settings"] or {}
    defaults: Dict[str, Any] = module.params["defaults"] or {}
    state_path: str = module.params["state_path"] or path + STATE_SUFFIX

    if os.path.normpath(state_path) == os.path.normpath(path):
        fail(module, msg=f"state_path: {state_path} is the daemon configuration itself; choose another file.")

    text = read_text(module, path, "path")
    exists = text is not None
    try:
        previous = load_config(text)
    except DaemonConfigError as exc:
        fail(module, msg=f"path: the existing {path} {exc}; fix or remove it first. Nothing was changed.")

    try:
        owned = load_owned(read_text(module, state_path, "state_path"))
    except OwnedStateError as exc:
        fail(
            module,
            msg=f"state_path: the record of owned keys {state_path} {exc}; fix it, or remove it to forget "
            "which keys this module wrote (they are then kept as foreign). Nothing was changed.",
        )

    argv = read_exec_start(module)
    result: Dict[str, Any] = {
        "changed": False,
        "previous": previous,
        "exec_start": argv,
        "validation": {},
        "state_path": state_path,
    }

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
        fail(module, msg="settings: " + conflict_message(module.params["service"], conflicts, argv), **result)
    # A default the unit already sets as a flag is present, just not in the file.
    flag_keys = sorted({key for key, _flag in flag_conflicts(defaults, argv)})

    plan = plan_config(previous, settings, defaults, owned, flag_keys)
    merged = plan.config
    changed_keys = changed_leaves(previous, merged)
    reload_keys, restart_keys = classify(changed_keys, removed_leaves(previous, merged))
    config_changed = merged != previous or (not exists and bool(merged))
    state_changed = plan.owned != owned
    result.update(
        config=merged,
        changed=config_changed or state_changed,
        changed_keys=changed_keys,
        reload_keys=reload_keys,
        restart_keys=restart_keys,
        reload_required=bool(reload_keys),
        restart_required=bool(restart_keys),
        filled_keys=[dotted(key) for key in plan.filled],
        removed_keys=[dotted(key) for key in plan.removed],
        kept_keys=[dotted(key) for key in plan.kept],
        owned_keys=sorted(dotted(key) for key in plan.owned),
        state_changed=state_changed,
    )
    if plan.kept:
        # Key names only: a value could carry credentials, and warnings are not masked by done().
        module.warn(redact(kept_warning(path, plan.kept)))
    new_text = render(merged)
    if module._diff:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": render(previous) if exists else "",
            "after": new_text if (config_changed or exists) else "",
        }
    keys_text = ", ".join(changed_keys)
    pending_dir: Optional[str] = module.params["pending_dir"]
    pending = pending_records(module.params["service"], reload_keys, restart_keys) if config_changed else {}
    if pending_dir is not None:
        result["pending_records"] = [os.path.join(pending_dir, name) for name in pending]
    # "; reload and restart recorded as pending in /run/raibid/pending/container_runtime"
    pending_text = (
        f"; {' and '.join(name.rsplit('.', 1)[1] for name in pending)} recorded as pending in {pending_dir}"
        if pending_dir is not None and pending
        else ""
    )

    if not config_changed:
        result["validation"] = {"cmd": [], "rc": None, "output": "", "skipped": "no change"}
    else:
        result["validation"] = validate(module, new_text, argv)
        if result["validation"]["rc"] not in (None, 0):
            result["changed"] = False
            fail(
                module,
                msg=f"dockerd --validate rejected the merged {path} (keys {keys_text}): "
                f"{result['validation']['output']}. The file was left untouched and Docker was not restarted.",
                **result,
            )

    if module.check_mode:
        wrong = mismatches(merged, settings, defaults, flag_keys)
        result.update(settings_applied=not wrong, mismatches=wrong)
        if config_changed:
            done(module, msg=f"{path} would change (keys {keys_text})", **result)
        done(module, msg=f"{path} already holds the requested settings", **result)

    if config_changed:
        # Before the file: a kill between the two leaves a record whose action is merely redundant.
        if pending_dir is not None and pending:
            try:
                write_pending(pending_dir, pending)
            except OSError as exc:
                result["changed"] = False
                fail(
                    module,
                    msg=f"pending_dir: cannot record the pending {' and '.join(pending)} in {pending_dir} ({exc}); "
                    f"{path} was left untouched.",
                    **result,
                )
        backup_file = write_config(module, path, new_text, exists)
        if backup_file:
            result["backup_file"] = backup_file
    # Judge what the file holds now, not what was meant to be written.
    try:
        written = load_config(read_text(module, path, "path"))
    except DaemonConfigError:
        written = {}
    wrong = mismatches(written, settings, defaults, flag_keys)
    result.update(settings_applied=not wrong, mismatches=wrong)
    if state_changed:
        write_state(state_path, render_owned(plan.owned, path))
    if config_changed:
        done(module, msg=f"{path} updated (keys {keys_text}){pending_text}", **result)
    if state_changed:
        done(module, msg=f"{path} already holds the requested settings; recorded the keys it owns", **result)
    done(module, msg=f"{path} already holds the requested settings", **result)


if __name__ == "__main__":
    main()
