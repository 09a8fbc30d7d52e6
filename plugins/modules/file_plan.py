#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: file_plan
short_description: Tell which of many managed files and directories differ, in one read-only call
version_added: 0.1.0
description:
  - For each of O(files), says whether the path differs from what the controller would write and why, in one remote
    module call, so that a role runs its C(template), C(copy) or C(file) tasks (two remote round trips each) only for
    the paths in RV(differ) - a run with nothing to do then costs this one call.
  - The controller renders each template itself (the C(ansible.builtin.template) lookup piped to the C(hash) filter
    with C(sha1), see the examples) and sends only the sha1 of the result; file contents (some configurations hold
    passwords) never cross the connection.
  - Each path is read with C(lstat), never followed - a symlink is reported as differing (C(symlink)) and the real
    task decides. A missing path, a symlink or the wrong kind of entry stops the checks of that path there.
  - Owner, group and mode are compared only when given; user and group names are resolved on the node (a name
    that is all digits and names no account is taken as the id, as the file module does).
  - Every entry is validated before anything is read; one failure message lists every bad field, each named
    C(files[i].<field>).
  - O(files[].owner), O(files[].group), O(files[].mode) and O(files[].checksum) are refused with
    O(files[].state=absent) and O(files[].state=any).
  - Read-only; never reports a change.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  files:
    description:
      - The managed paths, each at most once (C(/etc/a/) and C(/etc//a) are the same path). An empty list checks
        nothing.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description:
          - The absolute path of the file or directory, reported in RV(differ) and RV(files[].path) exactly as given.
        type: str
        required: true
      state:
        description:
          - What the path must be - a regular file, a directory, or nothing (C(absent) - it differs, C(present),
            when anything is there, a symlink included).
          - C(any) only asks whether something is there (RV(files[].exists)); it never differs. For what a role
            looks for without managing it (another product's config directory or binary).
        type: str
        choices: [file, directory, absent, any]
        default: file
      checksum:
        description:
          - The sha1 of the content the controller would write (40 lowercase hex digits) - the
            C(ansible.builtin.template) or C(ansible.builtin.file) lookup piped to the C(hash) filter with C(sha1),
            see the examples.
          - Without it a file's content is not compared, only that it is a regular file and its owner, group and
            mode. Refused with O(files[].state=directory), O(files[].state=absent) and O(files[].state=any).
        type: str
      owner:
        description: The user name that must own the path; not compared when omitted.
        type: str
      group:
        description: The group name that must own the path; not compared when omitted.
        type: str
      mode:
        description:
          - The permission bits the path must have, as an octal string (C("0644") or C("644")). Not compared when
            omitted.
          - A number is taken as the bits themselves, as the M(ansible.builtin.file) and M(ansible.builtin.template)
            modules take it - an unquoted C(0644) reaches the module as 420, which is C(0644). Symbolic modes
            (C(u=rw,g=r)) are refused.
        type: raw
      unlisted:
        description:
          - Only with O(files[].state=directory) - a glob of names (C(*.yml)); the directory's entries that match it
            and are not among O(files) are returned in RV(unlisted) (what a role removes, e.g. the configs of
            instances no longer configured). Not recursive.
        type: str
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
  - raibid.dgx_spark.attributes.info_module
notes:
  - Only content, kind, owner, group and mode are compared; SELinux contexts, ACLs and file attributes are not.
  - The sha1 must be of the bytes the real task writes - render with the same template options (C(trim_blocks),
    C(newline_sequence)) in the lookup as in the C(template) task.
seealso:
  - module: ansible.builtin.template
  - module: ansible.builtin.copy
  - module: ansible.builtin.file
  - module: ansible.builtin.stat
"""

EXAMPLES = r"""
- name: Which configuration files differ from what this run would write (one remote call)
  raibid.dgx_spark.file_plan:
    files:
      - {path: /etc/raibid, state: directory, owner: root, group: root, mode: "0755"}
      - path: /etc/raibid/agent.toml
        checksum: "{{ lookup('ansible.builtin.template', 'agent.toml.j2') | hash('sha1') }}"
        owner: root
        group: root
        mode: "0640"
      - path: /etc/raibid/registries.yaml
        checksum: "{{ lookup('ansible.builtin.template', 'registries.yaml.j2') | hash('sha1') }}"
        owner: root
        group: root
        mode: "0640"
  register: plan

- name: Configuration directory
  ansible.builtin.file:
    path: /etc/raibid
    state: directory
    owner: root
    group: root
    mode: "0755"
  when: "'/etc/raibid' in plan.differ"

- name: Write only the configuration files that differ
  ansible.builtin.template:
    src: "{{ item | basename }}.j2"
    dest: "{{ item }}"
    owner: root
    group: root
    mode: "0640"
  loop:
    - /etc/raibid/agent.toml
    - /etc/raibid/registries.yaml
  when: item in plan.differ
"""

RETURN = r"""
differ:
  description: The paths that differ (as given in O(files)), in input order.
  returned: always
  type: list
  elements: str
  sample: [/etc/raibid/agent.toml]
files:
  description: One entry per path of O(files), in input order.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path, as given.
      type: str
    exists:
      description: Whether C(lstat) found the path (false when it is missing or could not be read).
      type: bool
    differs:
      description: Whether the path differs (RV(files[].reasons) is not empty).
      type: bool
    reasons:
      description:
        - >-
          Why it differs, in this order - C(missing) (or C(present) for O(files[].state=absent)); C(symlink);
          C(not a regular file) or C(not a directory);
          C(content) or C(unreadable: <error>); C(owner <actual> -> <wanted>) or C(owner <wanted> unknown); the
          same for C(group); C(mode <actual> -> <wanted>) (4-digit octal). Empty when it does not differ.
      type: list
      elements: str
    unlisted:
      description: For an entry with O(files[].unlisted), the matching entries of the directory no entry lists.
      type: list
      elements: str
      returned: when O(files[].unlisted) is set
  sample:
    - path: /etc/raibid
      exists: true
      differs: false
      reasons: []
    - path: /etc/raibid/agent.toml
      exists: true
      differs: true
      reasons: [content, mode 0644 -> 0640]
    - path: /etc/raibid/registries.yaml
      exists: false
      differs: true
      reasons: [missing]
unlisted:
  description:
    - Every path of RV(files[].unlisted), in input order (sorted within a directory); empty when no entry asks or
      a directory is missing.
  returned: always
  type: list
  elements: str
  sample: [/etc/raibid-registry/quay.yml]
checked:
  description: How many paths were checked (the length of O(files)).
  returned: always
  type: int
  sample: 3
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.file_plan import FilePlanError, file_plan, validate

ARGUMENT_SPEC = {
    "files": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "path": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["file", "directory", "absent", "any"], "default": "file"},
            # Its form, and that it goes with state=file only, checked by validate() (it names files[i].checksum).
            "checksum": {"type": "str"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            # A quoted octal string, or the number YAML makes of an unquoted one (validate() takes both).
            "mode": {"type": "raw"},
            "unlisted": {"type": "str"},
        },
    },
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        wanted = validate(module.params["files"])
    except FilePlanError as exc:
        module.fail_json(msg=f"{exc}. Nothing was read.", problems=exc.problems)
    module.exit_json(changed=False, **file_plan(wanted))


if __name__ == "__main__":
    main()
