#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: agent_image_verify
short_description: Verify the CI agent image on the node before jobs use it
version_added: 0.1.0
description:
  - Checks an image already in the node's image store against what CI jobs rely on, and returns every
    check as structured data. All checks run; the module fails when any fails, and its message names
    each failing check with the reason (a tool whose version differs names the tool, the expected and
    the found version).
  - From one C(docker image inspect) - C(architecture) (the image's against the node's), C(size) (against
    O(size_budget_mb)), C(label:<name>) for each of O(required_labels) and O(expected_labels) (the
    C(raibid.agent.arch) label must also agree with the image's architecture).
  - From one C(docker run --rm --network none IMAGE /bin/sh -c SCRIPT) - C(uid), C(env:<NAME>) for each of
    O(expected_env), C(tool:<name>) for each tool, C(writable:<path>) for each of O(writable_dirs), and
    C(health) (C(raibid-agent health --json), parsed; its exit code alone is never trusted). The image's
    ENTRYPOINT (tini) stays PID 1 and the image's user runs the checks. The script is POSIX C(sh) (dash,
    busybox) and runs each probe separately, so a missing tool fails only its own check.
  - With O(cargo_checks), one more such run creates a scratch crate without dependencies and runs
    C(cargo-build-release) (C(cargo build --release)), C(cargo-test) (C(cargo test)) and C(cargo-nextest-run)
    (C(cargo nextest run)), offline.
  - Never pulls the image (C(--pull never)) and never changes anything; it runs in check mode too.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  image:
    description: Image reference, ID or digest reference of an image in the node's image store.
    type: str
    required: true
  architecture:
    description:
      - Architecture the image must have, in Docker's naming (C(amd64), C(arm64)).
      - Defaults to the node's (C(x86_64) is C(amd64), C(aarch64) is C(arm64)).
    type: str
  size_budget_mb:
    description: Largest acceptable image size, in MiB (as C(docker image inspect) reports C(Size)).
    type: int
    default: 1536
  required_labels:
    description: Labels that must be present and not empty.
    type: list
    elements: str
    default:
      - org.opencontainers.image.title
      - org.opencontainers.image.description
      - org.opencontainers.image.version
      - org.opencontainers.image.revision
      - org.opencontainers.image.created
      - org.opencontainers.image.source
      - org.opencontainers.image.licenses
      - raibid.agent.type
      - raibid.agent.arch
  expected_labels:
    description: Labels whose values must match exactly (each is checked as C(label:<name>) too).
    type: dict
    default: {}
  expected_uid:
    description: Numeric user ID the image's processes must run as.
    type: int
    default: 1000
  expected_env:
    description: Environment variables the image's processes must see, with their exact values.
    type: dict
    default:
      RUST_BACKTRACE: "1"
      CARGO_HOME: /home/agent/.cargo
      CARGO_TARGET_DIR: /workspace/target
      CARGO_INCREMENTAL: "1"
  tools:
    description:
      - Tools to check besides those always checked (C(git), C(git-lfs), C(ssh), C(docker), C(docker-buildx),
        C(rustc), C(cargo), C(rustfmt), C(clippy)); naming one of those here sets its expected version.
      - A tool without O(tools[].version) must report the version that the image's own manifest
        C(/usr/local/share/raibid-agent/tools) pins for it, or, when that does not list it, just run.
    type: list
    elements: dict
    default:
      - name: cargo-nextest
      - name: cargo-audit
      - name: cargo-deny
    suboptions:
      name:
        description: Tool name; the check is C(tool:<name>).
        type: str
        required: true
      version:
        description: Version the tool must report (as a whole token of its version output, C(v) prefix allowed).
        type: str
      command:
        description:
          - Shell command printing the version. Default is C(cargo X --version) for C(cargo-X), the known
            command for the always-checked tools, else C(NAME --version).
        type: str
  writable_dirs:
    description: Directories the image's user must be able to create files in.
    type: list
    elements: str
    default: [/workspace, /home/agent/.cargo]
  cargo_checks:
    description: Build, test and nextest-run a scratch crate inside the image (offline, no dependencies).
    type: bool
    default: true
  timeout:
    description:
      - Seconds all container runs together may take; a run still going then is killed and removed, and
        the checks it had not reported fail.
    type: int
    default: 600
  docker_host:
    description: Docker daemon to talk to (C(DOCKER_HOST)), e.g. C(unix:///run/docker.sock).
    type: str
  docker_cli:
    description: Path to the docker CLI; looked up on C(PATH) when omitted.
    type: path
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
  - raibid.dgx_spark.attributes.info_module
notes:
  - The checks run with C(--network none), so anything that needs the network inside the image is out of scope.
  - The timeout relies on the node's coreutils C(timeout); where there is none the runs are not limited
    (the module warns).
seealso:
  - module: raibid.dgx_spark.agent_healthcheck
"""

EXAMPLES = r"""
- name: Verify the freshly built agent image
  raibid.dgx_spark.agent_image_verify:
    image: 127.0.0.1:5000/raibid-ci-agent:1.4.0
    tools:
      - {name: cargo-nextest, version: 0.9.100}
      - {name: cargo-audit, version: 0.21.2}
      - {name: cargo-deny, version: 0.18.3}
    expected_labels:
      raibid.agent.type: rust
  register: verify

- name: Quick metadata and tool checks only (no cargo builds)
  raibid.dgx_spark.agent_image_verify:
    image: "{{ agent_image_ref }}"
    cargo_checks: false
    size_budget_mb: 2048

- name: Show the checks that failed (with ignore_errors on the task above)
  ansible.builtin.debug:
    msg: "{{ verify.checks | selectattr('status', 'equalto', 'fail') | list }}"
"""

RETURN = r"""
checks:
  description: Every check, in a stable order (architecture, size, labels, uid, env, tools, writable, health, cargo).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The check's stable name, such as C(tool:cargo-audit) or C(writable:/workspace).
      type: str
    status:
      description: C(ok), C(warn) (does not fail the module) or C(fail).
      type: str
    value:
      description: What was found (a version line, a label value, a size).
      type: str
    message:
      description: Why the check failed or warns; empty or informative otherwise.
      type: str
  sample:
    - {name: tool:cargo-nextest, status: ok, value: cargo-nextest 0.9.100 (3c9f1ac 2025-06-20), message: ""}
    - {name: tool:cargo-audit, status: fail, value: "", message: "cargo-audit: `cargo audit --version` failed (rc=101)"}
passed:
  description: Number of checks with status C(ok).
  returned: always
  type: int
failed:
  description: Number of checks with status C(fail).
  returned: always
  type: int
failed_checks:
  description: Names of the failed checks.
  returned: always
  type: list
  elements: str
warning_checks:
  description: Names of the checks with status C(warn).
  returned: always
  type: list
  elements: str
image_id:
  description: ID of the image that was checked.
  returned: always
  type: str
  sample: sha256:4f3c...
size_mb:
  description: Image size in MiB.
  returned: always
  type: float
architecture:
  description: The image's architecture (Docker naming).
  returned: always
  type: str
  sample: arm64
expected_architecture:
  description: The architecture it was checked against.
  returned: always
  type: str
duration_s:
  description: Wall-clock seconds of the whole verification.
  returned: always
  type: float
health:
  description:
    - The parsed output of C(raibid-agent health --json) - C(status) (worst of the reported status, each check
      and any parse problem), C(reported_status), C(duration_ms), C(checks), C(failing), C(warning_checks), C(source)
      (C(json), C(text) when only the text form could be read, C(none)), C(exit_code) and C(parse_error).
  returned: always
  type: dict
tools_manifest:
  description: The pinned tools the image's C(/usr/local/share/raibid-agent/tools) lists (empty when absent).
  returned: always
  type: dict
  sample: {cargo-nextest: 0.9.100, cargo-audit: 0.21.2}
"""

import platform
import time
import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.agent_image import (
    DEFAULT_TOOLS,
    EXPECTED_ENV,
    EXPECTED_UID,
    REQUIRED_LABELS,
    SIZE_BUDGET_MB,
    WRITABLE_DIRS,
    Check,
    HealthReport,
    cargo_probes,
    check_metadata,
    docker_arch,
    failure_message,
    missing_reason,
    parse_check_lines,
    parse_health,
    parse_inspect,
    parse_tools_manifest,
    probe_checks,
    quick_probes,
    render_script,
    run_argv,
    success_message,
    summarize,
    timed_out,
    tool_specs,
    validate_options,
    with_timeout,
)

ARGUMENT_SPEC = {
    "image": {"type": "str", "required": True},
    "architecture": {"type": "str"},
    "size_budget_mb": {"type": "int", "default": SIZE_BUDGET_MB},
    "required_labels": {"type": "list", "elements": "str", "default": list(REQUIRED_LABELS)},
    "expected_labels": {"type": "dict", "default": {}},
    "expected_uid": {"type": "int", "default": EXPECTED_UID},
    "expected_env": {"type": "dict", "default": dict(EXPECTED_ENV)},
    "tools": {
        "type": "list",
        "elements": "dict",
        "default": [dict(t) for t in DEFAULT_TOOLS],
        "options": {
            "name": {"type": "str", "required": True},
            "version": {"type": "str"},
            "command": {"type": "str"},
        },
    },
    "writable_dirs": {"type": "list", "elements": "str", "default": list(WRITABLE_DIRS)},
    "cargo_checks": {"type": "bool", "default": True},
    "timeout": {"type": "int", "default": 600},
    "docker_host": {"type": "str"},
    "docker_cli": {"type": "path"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    errors = validate_options(params)
    if errors:
        module.fail_json(msg="; ".join(errors))
    docker = params["docker_cli"] or module.get_bin_path("docker")
    if not docker:
        module.fail_json(msg="docker_cli: no docker CLI found on PATH; install docker or set docker_cli")
    environ = {"DOCKER_HOST": params["docker_host"]} if params["docker_host"] else {}
    timeout_bin = module.get_bin_path("timeout")
    if not timeout_bin:
        module.warn("no timeout command on the node: the container runs are not limited to the timeout option")
    image = params["image"]
    expected_arch = docker_arch(params["architecture"] or platform.machine())
    started = time.monotonic()
    deadline = started + params["timeout"]

    def run(argv: list, limit: bool = False) -> tuple:
        if limit:
            argv = with_timeout(argv, timeout_bin, deadline - time.monotonic())
        # The script holds $VARS for the container's shell; Ansible must not expand them here.
        return module.run_command(argv, environ_update=environ, expand_user_and_vars=False)

    rc, out, err = run([docker, "image", "inspect", image])
    if rc != 0:
        detail = (err or out).strip().splitlines()
        module.fail_json(
            msg=f"image: {image} is not in the node's image store (docker image inspect rc={rc}: "
            f"{detail[-1] if detail else 'no output'}); build or pull it first",
            rc=rc,
        )
    try:
        info = parse_inspect(out)
    except ValueError as exc:
        module.fail_json(msg=f"image: unreadable docker image inspect output for {image}: {exc}")

    checks: list[Check] = check_metadata(
        info, expected_arch, params["size_budget_mb"], params["required_labels"], params["expected_labels"]
    )

    def container_run(probes: list, cargo: bool) -> tuple[dict, str]:
        name = f"raibid-verify-{uuid.uuid4().hex[:12]}"
        argv = run_argv(docker, image, ["/bin/sh", "-c", render_script(probes, cargo=cargo)], name=name)
        rc, out, err = run(argv, limit=True)
        stopped = timed_out(rc, timeout_bin)
        if stopped:
            # Killing the client leaves the container running.
            run([docker, "rm", "--force", name])
        results, done = parse_check_lines(out)
        return results, missing_reason(rc, err, done, stopped, params["timeout"])

    probes = quick_probes(
        params["expected_uid"], params["expected_env"], tool_specs(params["tools"]), params["writable_dirs"]
    )
    results, missing = container_run(probes, cargo=False)
    manifest_result = results.get("manifest:tools")
    manifest = parse_tools_manifest(manifest_result.output) if manifest_result and manifest_result.rc == 0 else {}
    checks += probe_checks(probes, results, missing, manifest)
    health_result = results.get("health")
    health = parse_health(health_result.output, health_result.rc) if health_result else HealthReport()

    if params["cargo_checks"]:
        probes = cargo_probes()
        if time.monotonic() >= deadline:
            results, missing = {}, f"not run: the timeout of {params['timeout']} s was spent by the quick checks"
        else:
            results, missing = container_run(probes, cargo=True)
        checks += probe_checks(probes, results, missing)

    duration = round(time.monotonic() - started, 2)
    result = {
        "changed": False,
        **summarize(checks),
        "image_id": info.image_id,
        "size_mb": info.size_mb,
        "architecture": info.architecture,
        "expected_architecture": expected_arch,
        "duration_s": duration,
        "health": health.as_dict(),
        "tools_manifest": manifest,
    }
    if result["failed"]:
        module.fail_json(msg=failure_message(image, checks), **result)
    module.exit_json(msg=success_message(image, checks, duration), **result)


if __name__ == "__main__":
    main()
