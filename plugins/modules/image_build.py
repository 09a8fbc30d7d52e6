#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_build
short_description: Build an image with docker buildx, exporting and importing BuildKit cache
version_added: 0.1.0
description:
  - Runs C(docker buildx build --progress plain) with registry (or any buildx) cache export and import,
    which M(community.docker.docker_image_build) cannot do (no C(--cache-to)).
  - Idempotent by content. The hash of the build context (files, honouring C(.dockerignore) patterns
    approximately), the Dockerfile, build args, labels, target and platforms is stored as the image label
    C(org.raibid.inputs-hash); when the first tag already names an image with that label the build is
    skipped and nothing changes.
  - Parses BuildKit's plain progress output into structured steps, so callers can assert which Dockerfile
    steps came from cache.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
options:
  path:
    description: Build context directory on the managed node.
    type: path
    required: true
  dockerfile:
    description: Dockerfile, relative to O(path) or absolute.
    type: str
    default: Dockerfile
  tags:
    description: Image references to tag the result with; the first one is checked for idempotence.
    type: list
    elements: str
    required: true
  build_args:
    description: C(--build-arg) values.
    type: dict
    default: {}
  labels:
    description: Image labels (the module adds C(org.raibid.inputs-hash)).
    type: dict
    default: {}
  target:
    description: Multi-stage target.
    type: str
  platform:
    description: Target platforms (e.g. C(linux/arm64)).
    type: list
    elements: str
    default: []
  builder:
    description: buildx builder to use; default is the current builder.
    type: str
  cache_from:
    description:
      - buildx C(--cache-from) specs, e.g. C(type=registry,ref=127.0.0.1:5000/cache/agent:main).
    type: list
    elements: str
    default: []
  cache_to:
    description:
      - buildx C(--cache-to) specs, e.g. C(type=registry,ref=127.0.0.1:5000/cache/agent:main,mode=max).
        Add C(ignore-error=true) to keep the build green when the cache registry is down.
      - Needs a builder that can export cache (the C(docker) driver only on the containerd image store).
    type: list
    elements: str
    default: []
  load:
    description:
      - Load the result into the engine's image store (needed for the idempotence check).
      - The C(docker) driver always does; C(--load) is then not passed.
    type: bool
    default: true
  push:
    description: Push the tags to their registry.
    type: bool
    default: false
  pull:
    description: Always try to pull newer base images.
    type: bool
    default: false
  network:
    description: Network mode for RUN steps (C(default), C(host), C(none)).
    type: str
  provenance:
    description: Attach a provenance attestation (makes the pushed result an image index).
    type: bool
    default: false
  rebuild:
    description: C(auto) builds only when no image carries the current inputs hash; C(always) builds anyway.
    type: str
    choices: [auto, always]
    default: auto
  docker_cli:
    description: Path to the docker CLI (with the buildx plugin); looked up on C(PATH) when omitted.
    type: path
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
attributes:
  check_mode:
    support: full
    details:
      - Computes the inputs hash and reports whether a build would happen, without building.
  diff_mode:
    support: none
notes:
  - The idempotence check reads the local image store; with O(load=false) every run builds (and is fast
    when the cache is warm).
"""

EXAMPLES = r"""
- name: Build the agent image with the node's registry as BuildKit cache
  raibid.dgx_spark.image_build:
    path: /opt/raibid/image
    tags: [127.0.0.1:5000/raibid-ci-agent:1.4.0]
    build_args:
      RUST_VERSION: "1.85"
    cache_from:
      - type=registry,ref=127.0.0.1:5000/cache/agent:main
    cache_to:
      - type=registry,ref=127.0.0.1:5000/cache/agent:main,mode=max,ignore-error=true
    push: true
  register: build

- name: Show how much came from cache
  ansible.builtin.debug:
    msg: "{{ build.cached_steps }}/{{ build.layer_steps }} steps cached in {{ build.duration_s }} s"
"""

RETURN = r"""
built:
  description: Whether a build ran (false when an image with the same inputs hash exists).
  returned: always
  type: bool
inputs_hash:
  description: Hash of the build inputs, stored as label C(org.raibid.inputs-hash).
  returned: always
  type: str
  sample: sha256:0f1e...
image_id:
  description: Local image ID (config digest) of the result, or of the existing image when skipped.
  returned: always
  type: str
digest:
  description: Manifest digest buildx reported (the pushed digest with O(push=true)); empty when skipped.
  returned: always
  type: str
steps:
  description: Dockerfile steps of the build, each with id, name, instruction, cached, done, error, seconds.
  returned: always
  type: list
  elements: dict
layer_steps:
  description: Number of RUN/COPY/ADD steps.
  returned: always
  type: int
cached_steps:
  description: How many of those were reported CACHED.
  returned: always
  type: int
cache_imported:
  description: Cache refs BuildKit imported a cache manifest from.
  returned: always
  type: list
  elements: str
cache_exported:
  description: Whether the output shows a cache export.
  returned: always
  type: bool
duration_s:
  description: Wall-clock seconds of the build command (0 when skipped).
  returned: always
  type: float
builder_driver:
  description: Driver of the buildx builder used (C(docker) stores results in the engine without C(--load)).
  returned: always
  type: str
  sample: docker
command:
  description: The buildx argv that ran (or would run).
  returned: always
  type: list
  elements: str
log_tail:
  description: The last lines of the build's progress output.
  returned: always
  type: list
  elements: str
"""

import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.raibid.dgx_spark.plugins.module_utils.image_build import (
    INPUTS_LABEL,
    BuildLog,
    build_argv,
    hashed_settings,
    inputs_hash,
    parse_builder_driver,
    parse_metadata,
    parse_plain_progress,
    tail,
    validate_cache_specs,
)

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "dockerfile": {"type": "str", "default": "Dockerfile"},
    "tags": {"type": "list", "elements": "str", "required": True},
    "build_args": {"type": "dict", "default": {}},
    "labels": {"type": "dict", "default": {}},
    "target": {"type": "str"},
    "platform": {"type": "list", "elements": "str", "default": []},
    "builder": {"type": "str"},
    "cache_from": {"type": "list", "elements": "str", "default": []},
    "cache_to": {"type": "list", "elements": "str", "default": []},
    "load": {"type": "bool", "default": True},
    "push": {"type": "bool", "default": False},
    "pull": {"type": "bool", "default": False},
    "network": {"type": "str"},
    "provenance": {"type": "bool", "default": False},
    "rebuild": {"type": "str", "choices": ["auto", "always"], "default": "auto"},
    "docker_cli": {"type": "path"},
}


def existing_image(module: AnsibleModule, docker: str, ref: str) -> tuple[str, str]:
    """(image id, inputs-hash label) of a local image, or ("", "") when absent."""
    fmt = '{{.Id}} {{index .Config.Labels "' + INPUTS_LABEL + '"}}'
    rc, out, _err = module.run_command([docker, "image", "inspect", "--format", fmt, ref])
    if rc != 0 or not out.strip():
        return "", ""
    image_id, _sep, label = out.strip().partition(" ")
    return image_id, "" if label == "<no value>" else label


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if not params["tags"]:
        module.fail_json(msg="tags: give at least one image reference to tag the build with")
    context = params["path"]
    if not os.path.isdir(context):
        module.fail_json(msg=f"path: {context} is not a directory on the node")
    dockerfile = params["dockerfile"]
    if not os.path.isabs(dockerfile):
        dockerfile = os.path.join(context, dockerfile)
    if not os.path.isfile(dockerfile):
        module.fail_json(msg=f"dockerfile: {dockerfile} does not exist")
    errors = validate_cache_specs(params["cache_from"], "cache_from") + validate_cache_specs(
        params["cache_to"], "cache_to"
    )
    if errors:
        module.fail_json(msg="; ".join(errors))
    if not params["load"] and not params["push"]:
        module.fail_json(msg="load and push are both false: the build result would go nowhere")
    docker = params["docker_cli"] or module.get_bin_path("docker")
    if not docker:
        module.fail_json(msg="docker_cli: no docker CLI found on PATH; install docker (with buildx) or set docker_cli")

    digest = inputs_hash(context, dockerfile, hashed_settings(params))
    result = {
        "changed": False,
        "built": False,
        "inputs_hash": digest,
        "image_id": "",
        "digest": "",
        "duration_s": 0.0,
        "log_tail": [],
        **BuildLog().summary(),
    }
    with tempfile.TemporaryDirectory(prefix="image_build-") as tmp:
        metadata_file = os.path.join(tmp, "metadata.json")
        inspect = [docker, "buildx", "inspect"] + ([params["builder"]] if params["builder"] else [])
        rc, out, err = module.run_command(inspect)
        if rc != 0:
            module.fail_json(msg=f"builder: docker buildx inspect failed: {(err or out).strip()}", rc=rc)
        result["builder_driver"] = parse_builder_driver(out)
        argv = build_argv(docker, params, dockerfile, digest, metadata_file, driver=result["builder_driver"])
        result["command"] = argv
        image_id, label = existing_image(module, docker, params["tags"][0])
        if params["rebuild"] == "auto" and params["load"] and label == digest:
            result["image_id"] = image_id
            result["msg"] = f"{params['tags'][0]} is up to date (inputs {digest[:19]})"
            module.exit_json(**result)
        if module.check_mode:
            result.update(changed=True, msg=f"would build {params['tags'][0]} (inputs {digest[:19]})")
            module.exit_json(**result)

        started = time.monotonic()
        rc, out, err = module.run_command(argv, environ_update={"DOCKER_BUILDKIT": "1", "BUILDX_NO_DEFAULT_LOAD": "0"})
        duration = round(time.monotonic() - started, 2)
        progress = err + "\n" + out
        log = parse_plain_progress(progress)
        result.update(log.summary())
        result.update(duration_s=duration, log_tail=tail(progress), built=rc == 0, changed=rc == 0)
        if rc != 0:
            module.fail_json(msg=f"docker buildx build failed (rc={rc}) for {params['tags'][0]}", rc=rc, **result)
        metadata = ""
        if os.path.exists(metadata_file):
            with open(metadata_file, encoding="utf-8") as fh:
                metadata = fh.read()
        meta = parse_metadata(metadata)
        result["digest"] = meta["digest"]
        if params["load"]:
            result["image_id"] = existing_image(module, docker, params["tags"][0])[0]
        result["image_id"] = result["image_id"] or meta["config_digest"]
        result["msg"] = (
            f"built {params['tags'][0]} in {duration} s; {result['cached_steps']}/{result['layer_steps']} "
            "layer steps from cache"
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
