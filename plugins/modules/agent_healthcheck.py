#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent_healthcheck
short_description: Run the CI agent's own health check in a fresh or a running container
version_added: 0.1.0
description:
  - Runs C(raibid-agent health --json) in a fresh container of O(image) (C(docker run --rm), the image's
    ENTRYPOINT kept, never pulled) or in the running O(container) (C(docker exec)), and returns the parsed
    result.
  - >-
    The JSON decides, not the exit code. When the output is not the expected JSON, the text form
    (C(✓ name: msg), C(! name: msg), C(✗ name: msg) lines) is read so the checks still show, RV(parse_error)
    says what was wrong, RV(raw) holds the output, and the status counts as C(fail).
  - Fails according to O(fail_on), listing the failing (and warning) checks in the message.
  - Read-only; never reports a change and runs in check mode too.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  image:
    description: Image to start a fresh container of (it must be in the node's image store).
    type: str
  container:
    description: Name or ID of a running container to run the health check in.
    type: str
  env:
    description:
      - Environment variables for the health check (C(docker run --env NAME) / C(docker exec --env NAME)).
      - The values reach docker through its environment, never its command line, and are not part of the
        results; Ansible still echoes the module arguments at C(-vvv) (C(invocation)), so set C(no_log) on
        the task when a value is secret.
    type: dict
    default: {}
  network:
    description:
      - Network of the fresh container (O(image) only); C(none) when omitted.
    type: str
  fail_on:
    description:
      - C(fail) fails the task when the status is C(fail); C(warn) when it is C(warn) or C(fail); C(never)
        only returns the result.
    type: str
    choices: [fail, warn, never]
    default: fail
  timeout:
    description:
      - Seconds the health check may take, docker included. A fresh container still running then is removed;
        the status is C(fail).
    type: int
    default: 30
  docker_host:
    description: Docker daemon to talk to (C(DOCKER_HOST)).
    type: str
  docker_cli:
    description: Path to the docker CLI; looked up on C(PATH) when omitted.
    type: path
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
  - raibid.dgx_spark.attributes.info_module
notes:
  - The timeout relies on the node's coreutils C(timeout). A C(docker exec) that times out is stopped on the
    client side only; the process in the container may run on.
seealso:
  - module: raibid.dgx_spark.agent_image_verify
"""

EXAMPLES = r"""
- name: Health of the agent image, offline, as a job would start it
  raibid.dgx_spark.agent_healthcheck:
    image: 127.0.0.1:5000/raibid-ci-agent:1.4.0
  register: health

- name: Health of a running agent, failing on warnings too
  raibid.dgx_spark.agent_healthcheck:
    container: raibid-agent-1
    env:
      RAIBID_HEALTH_VERBOSE: "1"
    fail_on: warn

- name: Report only
  raibid.dgx_spark.agent_healthcheck:
    image: 127.0.0.1:5000/raibid-ci-agent:1.4.0
    fail_on: never
  register: health

- name: Show the failing checks
  ansible.builtin.debug:
    msg: "{{ health.status }}: {{ health.failing | join(', ') }}"
"""

RETURN = r"""
status:
  description: C(ok), C(warn) or C(fail) - the worst of the reported status, every check, and a parse problem (C(fail)).
  returned: always
  type: str
  sample: ok
reported_status:
  description: The status the agent itself reported (C(fail) when none could be read).
  returned: always
  type: str
checks:
  description: The agent's checks, each with C(name), C(status), C(value), C(message).
  returned: always
  type: list
  elements: dict
  sample:
    - {name: cargo-nextest, status: ok, value: cargo-nextest 0.9.100, message: pinned version}
failing:
  description: Names of the checks with status C(fail).
  returned: always
  type: list
  elements: str
warning_checks:
  description: Names of the checks with status C(warn).
  returned: always
  type: list
  elements: str
duration_ms:
  description: How long the health check took as the agent measured it (null when it did not say).
  returned: always
  type: int
elapsed_s:
  description: Wall-clock seconds of the whole run, docker included.
  returned: always
  type: float
exit_code:
  description: Exit code of the docker command (the agent's, unless docker itself failed).
  returned: always
  type: int
source:
  description: Where the checks come from - C(json), C(text) (the JSON was unreadable) or C(none).
  returned: always
  type: str
parse_error:
  description: What was wrong with the output (empty when the JSON was as expected and agreed with the exit code).
  returned: always
  type: str
raw:
  description: The output (stdout, then stderr), when RV(parse_error) is not empty.
  returned: when the output could not be parsed as expected
  type: str
mode:
  description: C(image) (fresh container) or C(container) (docker exec).
  returned: always
  type: str
command:
  description: The docker argv (environment names only, never values).
  returned: always
  type: list
  elements: str
"""

import time
import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.agent_image import (
    HEALTH_COMMAND,
    at_or_above,
    exec_argv,
    first_line,
    health_message,
    is_env_name,
    parse_health,
    run_argv,
    timed_out,
    with_timeout,
)

ARGUMENT_SPEC = {
    "image": {"type": "str"},
    "container": {"type": "str"},
    "env": {"type": "dict", "default": {}},
    "network": {"type": "str"},
    "fail_on": {"type": "str", "choices": ["fail", "warn", "never"], "default": "fail"},
    "timeout": {"type": "int", "default": 30},
    "docker_host": {"type": "str"},
    "docker_cli": {"type": "path"},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[["image", "container"], ["container", "network"]],
        required_one_of=[["image", "container"]],
        supports_check_mode=True,
    )
    params = module.params
    if params["timeout"] <= 0:
        module.fail_json(msg=f"timeout: {params['timeout']} must be a positive number of seconds")
    bad = [str(k) for k in params["env"] if not is_env_name(str(k))]
    if bad:
        module.fail_json(msg=f"env: {', '.join(repr(b) for b in bad)} is not an environment variable name")
    docker = params["docker_cli"] or module.get_bin_path("docker")
    if not docker:
        module.fail_json(msg="docker_cli: no docker CLI found on PATH; install docker or set docker_cli")
    timeout_bin = module.get_bin_path("timeout")
    if not timeout_bin:
        module.warn("no timeout command on the node: the health check is not limited to the timeout option")

    environ = {str(k): "" if v is None else str(v) for k, v in params["env"].items()}
    if params["docker_host"]:
        environ["DOCKER_HOST"] = params["docker_host"]
    names = sorted(str(k) for k in params["env"])
    name = ""
    if params["image"]:
        mode, target = "image", params["image"]
        name = f"raibid-health-{uuid.uuid4().hex[:12]}"
        argv = run_argv(docker, target, HEALTH_COMMAND, network=params["network"] or "none", name=name, env_names=names)
    else:
        mode, target = "container", params["container"]
        argv = exec_argv(docker, target, HEALTH_COMMAND, env_names=names)

    started = time.monotonic()
    rc, out, err = module.run_command(
        with_timeout(argv, timeout_bin, params["timeout"]), environ_update=environ, expand_user_and_vars=False
    )
    stopped = timed_out(rc, timeout_bin)
    if stopped and name:
        # Killing the client leaves the container running.
        module.run_command([docker, "rm", "--force", name], environ_update=environ)
    elapsed = round(time.monotonic() - started, 2)

    report = parse_health(out, rc)
    if stopped:
        report.parse_error = f"timed out after {params['timeout']} s" + (
            f" ({report.parse_error})" if report.parse_error else ""
        )
    elif report.source == "none" and rc not in (0, 1) and err.strip():
        # docker's own error (no such image or container) says more than empty output.
        report.parse_error = f"docker {'run' if mode == 'image' else 'exec'} failed (rc={rc}): {first_line(err)}"
    data = report.as_dict()
    result = {
        "changed": False,
        "mode": mode,
        "command": argv,
        "status": data["status"],
        "reported_status": data["reported_status"],
        "checks": data["checks"],
        "failing": data["failing"],
        # Not "warnings": Ansible takes that key of a result for its own warnings.
        "warning_checks": data["warning_checks"],
        "duration_ms": data["duration_ms"],
        "elapsed_s": elapsed,
        "exit_code": rc,
        "source": data["source"],
        "parse_error": data["parse_error"],
    }
    if report.parse_error:
        result["raw"] = (out + ("\n" + err if err else ""))[-4000:]
    summary = f"{mode} {target}: health {result['status']}"
    detail = health_message(report)
    msg = summary + (f": {detail}" if detail else f" ({len(result['checks'])} checks)")
    if at_or_above(result["status"], params["fail_on"]):
        module.fail_json(msg=msg, **result)
    module.exit_json(msg=msg, **result)


if __name__ == "__main__":
    main()
