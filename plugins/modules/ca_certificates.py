#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ca_certificates
short_description: Keep a directory of extra CA certificates for the system store, in one call
version_added: 0.1.0
description:
  - Makes O(directory) hold exactly the O(certificates) among its C(*.crt) files, as C(update-ca-certificates)
    reads them, in one call - a run with nothing to do is one remote module call.
  - Creates O(directory) (C(root:root), C(0755)) when it is missing and fixes its mode and owner when they differ.
  - Writes each certificate whose content, owner (C(root:root)) or mode (C(0644)) differs, atomically (staged
    in O(directory) under a name that does not end in C(.crt), then renamed over the old file).
  - Removes the C(*.crt) files (and links) of O(directory) that O(certificates) does not name. Files with
    other names, and subdirectories, are left alone.
  - Reports whether the system store lags the directory (RV(store_stale)), so that a run killed after it
    wrote a certificate (or removed one of several) but before C(update-ca-certificates) ran still updates the
    store next time.
  - Never runs C(update-ca-certificates) itself; run it when RV(update_needed) is true.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  directory:
    description:
      - The directory of the extra CA certificates, under one that C(update-ca-certificates) reads
        (C(/usr/local/share/ca-certificates/raibid)). Missing parents are created too.
    type: path
    required: true
  certificates:
    description:
      - File name to PEM text of each certificate the directory must hold. An empty dict removes every
        C(*.crt) file of O(directory).
      - Names are plain file names ending in C(.crt), without a slash and not starting with a dot; each
        value holds a PEM certificate (C(-----BEGIN CERTIFICATE-----)). Anything else fails before anything
        changes.
    type: dict
    required: true
  bundle:
    description:
      - The system CA bundle that C(update-ca-certificates) writes (C(/etc/ssl/certs/ca-certificates.crt));
        only its modification time is read, for RV(store_stale).
    type: path
    required: true
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
attributes:
  check_mode:
    support: full
    details:
      - Reports what it would write and remove and whether the store would then be stale; changes nothing.
  diff_mode:
    support: full
    details:
      - Lists the directory (mode, owner) and each C(*.crt) file by name, with the sha256 prefix of its content,
        its mode and owner, before and after; never the PEM text.
notes:
  - C(update-ca-certificates) rewrites the bundle on every run, so a bundle older than a certificate, or than
    the last change of the directory's entries, means the store was not updated since.
"""

EXAMPLES = r"""
- name: Install the extra CA certificates
  raibid.dgx_spark.ca_certificates:
    directory: /usr/local/share/ca-certificates/raibid
    certificates:
      lab-proxy.crt: "{{ lookup('ansible.builtin.file', 'files/lab-proxy.pem') }}"
    bundle: /etc/ssl/certs/ca-certificates.crt
  register: ca

- name: Update the system CA store
  ansible.builtin.command: update-ca-certificates
  when: ca.update_needed
  changed_when: true
"""

RETURN = r"""
written:
  description: The certificates written (in check mode, those that would be), sorted.
  returned: always
  type: list
  elements: str
  sample: [0123456789abcdef.crt]
removed:
  description: The unlisted C(*.crt) files removed (in check mode, those that would be), sorted.
  returned: always
  type: list
  elements: str
  sample: [fedcba9876543210.crt]
store_stale:
  description:
    - True when O(certificates) is not empty and the system store lags the directory as it is after the run -
      O(bundle) is missing; or a certificate is (or would be) written or removed; or O(bundle) is older than a
      listed certificate or than the last change of the directory's entries (a run killed before
      C(update-ca-certificates)).
  returned: always
  type: bool
update_needed:
  description:
    - True when a certificate is (or would be) written or removed, or RV(store_stale) - run
      C(update-ca-certificates).
    - Creating O(directory) or fixing its mode or owner changes nothing the system store reads, so that alone
      does not count.
  returned: always
  type: bool
msg:
  description: What was (or would be) done, for a person.
  returned: always
  type: str
  sample: write 0123456789abcdef.crt; remove fedcba9876543210.crt
"""

from typing import Any, Dict

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.ca_certificates import (
    ROOT,
    CaCertificatesError,
    apply,
    plan,
    summary,
)

# The owner of the directory and the certificates (tests run as an ordinary user and replace it).
OWNER = ROOT


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "directory": {"type": "path", "required": True},
            "certificates": {"type": "dict", "required": True},
            "bundle": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    certificates: Dict[str, Any] = params["certificates"] or {}
    try:
        result = plan(params["directory"], certificates, params["bundle"], owner=OWNER)
    except CaCertificatesError as exc:
        module.fail_json(msg=f"{exc}. Nothing was changed.")
    except OSError as exc:
        module.fail_json(msg=f"directory: cannot read {params['directory']} ({exc}). Nothing was changed.")

    if result.changed and not module.check_mode:
        try:
            apply(result, certificates, owner=OWNER)
        except OSError as exc:
            module.fail_json(
                msg=f"directory: could not finish in {result.directory} ({summary(result, False)}): {exc}. "
                "Run again once it is fixed; that run also updates the system store.",
                changed=True,
                written=result.write,
                removed=result.remove,
            )

    out: Dict[str, Any] = {
        "changed": result.changed,
        "written": result.write,
        "removed": result.remove,
        "store_stale": result.store_stale,
        "update_needed": result.update_needed,
        "msg": summary(result, module.check_mode),
    }
    if module._diff:
        out["diff"] = {
            "before_header": result.directory,
            "after_header": result.directory,
            "before": "\n".join(result.before) + "\n",
            "after": "\n".join(result.after) + "\n",
        }
    module.exit_json(**out)


if __name__ == "__main__":
    main()
