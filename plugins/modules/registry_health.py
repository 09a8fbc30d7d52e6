#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: registry_health
short_description: Wait until each registry instance answers GET /v2/ with 200, in one read-only call
version_added: 0.1.0
description:
  - Probes C(GET <url>/v2/) of every one of O(registries) in one remote module call (the probes of a round run
    concurrently), where an M(ansible.builtin.uri) loop with C(until), C(retries) and C(delay) costs several remote
    round trips per registry.
  - A registry is healthy when it answers 200. Any other answer is not - 401 (no credentials, or credentials the
    registry refused), 404, a refused connection, a timeout, a TLS error - and RV(registries[].message) says which.
  - Every registry is probed once; the required ones (O(registries[].required)) that did not answer 200 are probed
    again, at most O(retries) more rounds, O(delay) seconds apart, so a registry that is still starting is waited
    for. A registry that is not required is probed once (an offline lab's pull-through proxy, whose upstream is
    unreachable, must not make every run wait).
  - With O(registries[].username) and O(registries[].password) the probe sends HTTP Basic authentication
    (C(Authorization) header). The password never appears in the result or in a message.
  - The task does not fail because a registry is unhealthy; RV(healthy), RV(unhealthy_required) and RV(unhealthy)
    let the play decide and word the message (an M(ansible.builtin.assert), see the examples). It fails only on
    invalid arguments, all checked before any probe; one message lists every bad field, each named
    C(registries[i].<field>) with the form expected.
  - Read-only; runs the same in check mode and never reports a change.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  registries:
    description: The registry instances to probe (the writable registry and each pull-through proxy). An empty list
      probes nothing (RV(healthy) is true).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the instance, reported in RV(registries[].name) and RV(unhealthy); unique.
        type: str
        required: true
      url:
        description:
          - The registry's root, C(http://) or C(https://) with host and port only (no path, query or credentials),
            e.g. C(https://127.0.0.1:5000); an IPv6 address in brackets, e.g. C(http://[::1]:5001).
        type: str
        required: true
      ca_path:
        description:
          - CA certificate (PEM) that verifies an C(https://) registry's certificate; the system CAs when omitted.
            Only with an C(https://) O(registries[].url); the file must exist.
        type: path
      username:
        description: User for HTTP Basic authentication (htpasswd); with O(registries[].password) or not at all.
        type: str
      password:
        description: Password of O(registries[].username); with O(registries[].username) or not at all. Never shown.
        type: str
      required:
        description:
          - Whether the registry must answer 200 - it is retried until it does or O(retries) runs out, and it counts
            in RV(unhealthy_required) and RV(healthy).
          - When false it is probed once, and only RV(unhealthy) lists it when it does not answer 200.
        type: bool
        default: true
  retries:
    description: How many more rounds the required registries that did not answer 200 get after the first (0 - one
      round only).
    type: int
    default: 10
  delay:
    description: Seconds between two rounds.
    type: float
    default: 1
  timeout:
    description: Seconds each probe may take in all (connect, TLS, request, answer); more than 0.
    type: float
    default: 2
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
  - raibid.dgx_spark.attributes.info_module
notes:
  - Cost - one remote module call however many registries. A healthy set takes about one probe's time; a required
    registry that never answers makes the call last up to (O(retries) + 1) x O(timeout) + O(retries) x O(delay)
    seconds.
  - The HTTP and TLS code is that of M(raibid.dgx_spark.node_health)'s registry checks (which accept 401 too, since
    they only ask whether the registry serves its API).
seealso:
  - module: ansible.builtin.uri
  - module: raibid.dgx_spark.node_health
"""

EXAMPLES = r"""
- name: Wait until each registry instance answers 200 on /v2/
  raibid.dgx_spark.registry_health:
    registries:
      - name: local
        url: https://127.0.0.1:5000
        ca_path: /etc/raibid-registry/tls/ca.crt
        username: ci
        password: "{{ registry_password }}"
      - name: docker.io
        url: https://127.0.0.1:5001
        ca_path: /etc/raibid-registry/tls/ca.crt
        username: ci
        password: "{{ registry_password }}"
        required: false
    retries: 15
    delay: 2
  register: registry_health

- name: Stop when a required registry does not answer
  ansible.builtin.assert:
    that: registry_health.healthy
    fail_msg: >-
      Not answering 200 on /v2/:
      {{ registry_health.registries | rejectattr('healthy') | map(attribute='message') | join('; ') }}
"""

RETURN = r"""
registries:
  description: One entry per registry of O(registries), in input order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The registry's name, as given.
      type: str
    url:
      description: The registry's root, as given.
      type: str
    status:
      description: The HTTP status of the last C(GET /v2/); null when the last probe got no answer.
      type: int
    healthy:
      description: Whether the last probe answered 200.
      type: bool
    required:
      description: O(registries[].required), as applied.
      type: bool
    attempts:
      description: How many times the registry was probed (1 for a healthy or not required one).
      type: int
    message:
      description: Why the registry is not healthy, from its last probe; empty when it is healthy.
      type: str
  sample:
    - name: local
      url: https://127.0.0.1:5000
      status: 200
      healthy: true
      required: true
      attempts: 2
      message: ""
    - name: docker.io
      url: https://127.0.0.1:5001
      status: null
      healthy: false
      required: false
      attempts: 1
      message: "GET https://127.0.0.1:5001/v2/: [Errno 111] Connection refused"
unhealthy:
  description: Names of the registries that are not healthy, required or not, in input order.
  returned: always
  type: list
  elements: str
  sample: [docker.io]
unhealthy_required:
  description: Names of the required registries that are not healthy, in input order.
  returned: always
  type: list
  elements: str
  sample: []
healthy:
  description: True when every required registry answered 200 (RV(unhealthy_required) is empty).
  returned: always
  type: bool
  sample: true
elapsed_ms:
  description: Milliseconds of the whole call, every round and delay included.
  returned: always
  type: int
  sample: 2012
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.registry_health import (
    RegistryHealthError,
    registry_health,
    validate,
)

ARGUMENT_SPEC = {
    "registries": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            # Its form (scheme, host, port only), checked by validate(), which names registries[i].url.
            "url": {"type": "str", "required": True},
            "ca_path": {"type": "path"},
            # Both or neither: checked by validate(), which names registries[i].username / .password.
            "username": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "required": {"type": "bool", "default": True},
        },
    },
    "retries": {"type": "int", "default": 10},
    "delay": {"type": "float", "default": 1},
    "timeout": {"type": "float", "default": 2},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        plan = validate(module.params)
    except RegistryHealthError as exc:
        module.fail_json(msg=f"{exc}. Nothing was probed.", problems=exc.problems)
    # Read-only: the same probes in check mode.
    module.exit_json(changed=False, **registry_health(plan))


if __name__ == "__main__":
    main()
