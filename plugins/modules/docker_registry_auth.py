#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_registry_auth
short_description: Merge one registry's credentials into a Docker CLI client config file
version_added: 0.1.0
description:
  - Sets C(auths[registry]) of a Docker CLI client config file (C(~/.docker/config.json)) to the
    C(auth) value of O(username) and O(password), as C(docker login) writes it without a credential
    helper, so that the user owning the file can C(docker push), C(docker buildx build --push) and
    C(--cache-to type=registry) to O(registry).
  - Keeps every other key of the file and every other C(auths) entry as they are (operators and
    C(docker login) put their own there). An entry that already holds these credentials is not rewritten.
  - Creates a missing file (mode C(0600)) and missing parent directories (mode C(0700)); an existing file
    keeps its owner and group unless O(owner) or O(group) say otherwise, and gets mode C(0600).
  - Refuses, changing nothing, a file that is not a JSON object, and a file in which C(credHelpers[registry])
    or C(credsStore) makes Docker read the credentials of O(registry) from a credential helper instead of
    C(auths) - an entry written there would not be used. The message names the key; remove it, or log in
    through that helper.
  - Replaces the file atomically (a temporary file in the same directory, flushed to disk, then renamed);
    a symlink is followed, as C(docker login) does.
  - Never returns or logs the password or the C(auth) value; the diff and the messages show registries and
    usernames only.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  path:
    description:
      - The client config file to edit, e.g. C(/root/.docker/config.json), or C(config.json) in the
        directory that C(DOCKER_CONFIG) names for that user.
    type: path
    required: true
  registry:
    description:
      - The registry as image references spell it, C(host:port) - C(127.0.0.1:5000), C(registry.lan:5000),
        an IPv6 address in brackets C([fd00::2]:5000). Docker looks the credentials up by this exact key.
      - No scheme (C(https://)) and no path; anything else fails before anything changes.
    type: str
    required: true
  username:
    description:
      - The user to log in as. Required when O(state=present); must not contain a colon (Docker's
        C(auth) value is the base64 of C(user:password)).
    type: str
  password:
    description:
      - The password of O(username). Required when O(state=present); keep it in Ansible Vault.
    type: str
  state:
    description:
      - V(present) sets the entry of O(registry); V(absent) removes it (and only it) when it is there.
      - V(absent) does not check for credential helpers, and never creates the file.
    type: str
    choices: [present, absent]
    default: present
  owner:
    description:
      - User (name or uid) that owns the file and any directory the module creates. Omitted, an existing
        file keeps its owner and a new one belongs to the user the module runs as.
      - Set it when O(path) lies in another user's home, since Docker cannot read a C(0600) file it does not own.
    type: str
  group:
    description: Group (name or gid) of the file and of any directory the module creates; like O(owner).
    type: str
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
attributes:
  check_mode:
    support: full
    details:
      - Says whether the file, the entry, the mode or the owner would change, and refuses what a real run
        refuses; writes nothing.
  diff_mode:
    support: full
    details:
      - Shows the registries of C(auths) with their usernames, before and after; never a password or an
        C(auth) value. A changed password with the same username shows as C(credentials) V(replaced).
notes:
  - Docker picks a registry's credentials in C(GetCredentialsStore) (docker/cli,
    C(cli/config/configfile/file.go)) - C(credHelpers[registry]) when that key exists (an empty string there
    means C(auths)), else C(credsStore) when it is not empty, else C(auths).
  - The C(DOCKER_AUTH_CONFIG) environment variable, where a user sets it, overrides the file.
  - The file holds the password in base64, readable by its owner (and root); this is what C(docker login)
    writes without a credential helper.
"""

EXAMPLES = r"""
- name: Let root push to the node's writable registry
  raibid.dgx_spark.docker_registry_auth:
    path: /root/.docker/config.json
    registry: "127.0.0.1:5000"
    username: ci
    password: "{{ vault_registry_password }}"

- name: Let the CI user push too (the file and a new ~/.docker belong to it)
  raibid.dgx_spark.docker_registry_auth:
    path: /home/ci/.docker/config.json
    registry: "[fd00::2]:5000"
    username: ci
    password: "{{ vault_registry_password }}"
    owner: ci
    group: ci

- name: Forget the credentials again
  raibid.dgx_spark.docker_registry_auth:
    path: /root/.docker/config.json
    registry: "127.0.0.1:5000"
    state: absent
"""

RETURN = r"""
path:
  description: The file edited (O(path) as given).
  returned: always
  type: str
  sample: /root/.docker/config.json
registry:
  description: The C(auths) key the module set or removed.
  returned: always
  type: str
  sample: "127.0.0.1:5000"
username:
  description:
    - With O(state=present), O(username). With O(state=absent), the user the removed entry held (null when
      there was none, or it held no readable user).
  returned: always
  type: str
  sample: ci
created:
  description: True when the file did not exist and was (in check mode, would be) created.
  returned: always
  type: bool
msg:
  description: What was (or in check mode would be) done, in one line; registries and usernames only.
  returned: always
  type: str
  sample: "/root/.docker/config.json: added the credentials for 127.0.0.1:5000 (user ci)"
"""

import grp
import os
import pwd
from typing import Any, Dict, List, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.docker_client_config import (
    DockerClientConfigError,
    attribute_fixes,
    fix_attributes,
    make_dirs,
    missing_dirs,
    plan,
    render,
    render_view,
    summary,
    target_path,
    write_config,
)


def resolve_id(module: AnsibleModule, option: str, value: Optional[str]) -> Optional[int]:
    """The uid (owner) or gid (group) that ``value`` names, a name or a number; None when not given."""
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return pwd.getpwnam(value).pw_uid if option == "owner" else grp.getgrnam(value).gr_gid
    except KeyError:
        kind = "user" if option == "owner" else "group"
        module.fail_json(msg=f"{option}: no {kind} named {value!r} on this host. Nothing was changed.")
    return None


def read_text(module: AnsibleModule, path: str) -> Optional[str]:
    """The file's text; None when it does not exist."""
    if not os.path.lexists(path) or (os.path.islink(path) and not os.path.exists(path)):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        module.fail_json(msg=f"path: cannot read {path} ({exc}). Nothing was changed.")
    return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "registry": {"type": "str", "required": True},
            "username": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
        },
        required_if=[("state", "present", ("username", "password"))],
        supports_check_mode=True,
    )
    params = module.params
    path: str = params["path"]
    registry: str = params["registry"]
    uid = resolve_id(module, "owner", params["owner"])
    gid = resolve_id(module, "group", params["group"])
    base: Dict[str, Any] = {"changed": False, "path": path, "registry": registry, "created": False}

    target = target_path(path)
    try:
        result = plan(
            path,
            read_text(module, target),
            registry,
            params["state"],
            username=params["username"],
            password=params["password"],
        )
    except DockerClientConfigError as exc:
        module.fail_json(msg=str(exc), username=params["username"], **base)

    fixes: List[str] = []
    if params["state"] == "present" and result.exists:
        fixes = attribute_fixes(target, uid, gid, params["owner"], params["group"])
    directory = os.path.dirname(target) or "."
    new_dirs = missing_dirs(directory) if result.write else []

    out: Dict[str, Any] = {
        **base,
        "changed": result.write or bool(fixes),
        "username": result.username,
        "created": result.created,
        "msg": summary(result, module.check_mode, fixes),
    }
    if module._diff:
        out["diff"] = {
            "before_header": f"{path} (auths)",
            "after_header": f"{path} (auths)",
            "before": render_view(result.before) if result.exists else "",
            "after": render_view(result.after) if (result.exists or result.write) else "",
        }
    if module.check_mode or not out["changed"]:
        module.exit_json(**out)

    try:
        if result.config is not None:
            make_dirs(directory, uid, gid)
            write_config(target, render(result.config), uid, gid)
        else:
            fix_attributes(target, uid, gid)
    except OSError as exc:
        made = [name for name in new_dirs if os.path.isdir(name)]
        out.update(
            changed=bool(made),
            created=False,
            msg=f"path: cannot write {target} ({exc})"
            + (f"; created {', '.join(made)}" if made else "")
            + ". The file, if there was one, is unchanged.",
        )
        module.fail_json(**out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
