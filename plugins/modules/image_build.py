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
  - With O(push=true) the registry counts too. The build is skipped only when the local image carries the
    current inputs hash B(and) every tag in the registry does (read with C(docker buildx imagetools inspect),
    which reaches plain-HTTP loopback registries such as C(127.0.0.1:5000) and does not depend on the engine's
    image store). So a push that failed is retried on the next run. When the local image is current but the
    registry lacks a tag, the module runs C(docker push) of the missing tags without rebuilding, or builds
    again with C(--push) when the local image is not the whole result (several platforms, O(provenance=true),
    O(load=false), or tags naming different local images).
  - Build secrets (O(secrets)) are passed with C(--secret); their values never appear in the results.
    Build-arg values are shown as C(***) in RV(command) and in failure messages (unless O(redact_build_args=false)).
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
    description:
      - Image references to tag the result with; the first one is checked for idempotence.
      - C({inputs_hash}) in a tag is replaced by the first 16 hex digits of RV(inputs_hash), which gives a
        content-addressed tag (e.g. C(registry/agent:inputs-{inputs_hash})).
    type: list
    elements: str
    required: true
  build_args:
    description:
      - C(--build-arg) values. BuildKit can keep them in the image history and cache metadata; pass
        credentials as O(secrets) instead.
      - The values are replaced by C(***) in RV(command) and in failure messages; the names stay visible.
    type: dict
    default: {}
  unhashed_build_args:
    description:
      - C(--build-arg) values that do not count in the inputs hash, for values that change on every run without
        changing what is built, such as a creation time for the C(org.opencontainers.image.created) label. They
        reach the build only when it runs for another reason.
      - Shown as C(***) like O(build_args). A name in both options is refused.
    type: dict
    default: {}
    version_added: 0.2.0
  redact_build_args:
    description:
      - Show build-arg values as C(***) in RV(command), in failure messages and in the failed build's
        RV(log_tail). Turn it off when no build arg is sensitive (versions, image references), so that a failed
        step's output keeps the values it names.
    type: bool
    default: true
    version_added: 0.2.0
  secrets:
    description:
      - Build secrets, passed as C(--secret id=ID,src=PATH) or C(--secret id=ID,env=NAME), for
        C(RUN --mount=type=secret,id=ID) in the Dockerfile.
      - Only the id, the kind and the path or variable name go into the inputs hash, not the content; see
        O(secrets[].rebuild_on_change).
      - The content of every secret is masked in everything the module returns.
    type: list
    elements: dict
    default: []
    suboptions:
      id:
        description: Secret id (letters, digits, C(.), C(_), C(-)).
        type: str
        required: true
      src:
        description: File on the managed node holding the secret. Exactly one of O(secrets[].src),
          O(secrets[].env) and O(secrets[].value) is required.
        type: path
      env:
        description: Name of an environment variable of the module on the node (set it with the task's
          C(environment) keyword).
        type: str
      value:
        description: The secret itself; written to a C(0600) file in a private temporary directory that is
          removed when the module ends.
        type: str
      rebuild_on_change:
        description:
          - Let the content of this secret count in the inputs hash, so that a change rebuilds the image.
          - Meant for material that is not secret but must not end up in a layer, such as a CA bundle. A sha256
            of the content goes into a hash that ends up in an image label; whoever knows all other inputs
            could test guesses of a short secret against it, so leave this off for passwords and tokens
            (change another input, or use O(rebuild=always), to rebuild after rotating one).
        type: bool
        default: false
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
      - Load the result into the engine's image store (needed for the local idempotence check; with
        O(load=false) and O(push=true) only the registry is checked).
      - The C(docker) driver always does; C(--load) is then not passed.
    type: bool
    default: true
  push:
    description:
      - Push the tags to their registry. The registry is then part of the idempotence check (see the
        description); a tag that is missing there, or carries another inputs hash, is pushed again.
    type: bool
    default: false
  push_if_verified:
    description:
      - An inputs hash (RV(inputs_hash)) whose image the caller has verified; an empty string when it has verified
        none. With O(push=true), this call then pushes only an image that carries this hash and that it does not
        build itself; otherwise it acts as with O(push=false) and returns RV(push_deferred=true), so that the caller
        verifies the new image before a second call (O(push=true) without this option) pushes it.
      - Lets a run that changes nothing check the registry, and push what it lacks, in the build's own call.
    type: str
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
  - The idempotence check reads the local image store, and with O(push=true) the registry. With
    O(load=false) and O(push=false) every run builds (and is fast when the cache is warm).
  - The registry is read through the buildx builder (O(builder)); a plain-HTTP registry that is not on a
    loopback address must be declared in that builder's C(buildkitd.toml) (C([registry."host:port"] http = true)).
  - Secrets given by O(secrets[].src) or O(secrets[].env) are read by the module to mask them in its output.
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

- name: Build with a token and a company CA bundle, neither of which ends up in a layer
  raibid.dgx_spark.image_build:
    path: /opt/raibid/image
    tags: [127.0.0.1:5000/raibid-ci-agent:1.4.0]
    secrets:
      - id: ca
        src: /etc/ssl/certs/company-ca.pem
        rebuild_on_change: true  # a new CA bundle must rebuild; it is not secret
      - id: cargo_token
        env: CARGO_REGISTRY_TOKEN
      - id: npm_token
        value: "{{ vault_npm_token }}"
    push: true
  environment:
    CARGO_REGISTRY_TOKEN: "{{ vault_cargo_token }}"
  register: build

# Push only a verified image, in one call when nothing changed: the build call pushes what the registry lacks
# when the inputs are the ones verified before; a new image is verified first, then pushed by a second call.
- name: Build, and push when the inputs are the verified ones
  raibid.dgx_spark.image_build:
    path: /opt/raibid/image
    tags: [127.0.0.1:5000/raibid-ci-agent:1.4.0]
    push: true
    push_if_verified: "{{ recorded_verified_inputs_hash | default('') }}"
  register: build

- name: Verify a new image (your checks here), then push it
  raibid.dgx_spark.image_build:
    path: /opt/raibid/image
    tags: [127.0.0.1:5000/raibid-ci-agent:1.4.0]
    push: true
  when: build.push_deferred

- name: Show what happened (built, pushed without rebuilding, or none)
  ansible.builtin.debug:
    msg: "{{ build.action }}: {{ build.reason }}"

- name: Show how much came from cache
  ansible.builtin.debug:
    msg: "{{ build.cached_steps }}/{{ build.layer_steps }} steps cached in {{ build.duration_s }} s"
"""

RETURN = r"""
built:
  description: Whether a build ran (false when an image with the same inputs hash exists).
  returned: always
  type: bool
action:
  description:
    - What the module did, C(built) (C(docker buildx build)), C(pushed) (C(docker push) of the existing local
      image, no build) or C(none). In check mode, what it would do.
  returned: always
  type: str
  sample: pushed
reason:
  description: Why the module chose RV(action).
  returned: always
  type: str
  sample: the registry lacks 127.0.0.1:5000/raibid-ci-agent:1.4.0; pushing the local image
pushed_tags:
  description: Tags pushed by this run (all tags after a build with O(push=true)); in check mode, those it would push.
  returned: always
  type: list
  elements: str
registry_checked:
  description: Whether the registry was read for the idempotence check (only with O(push=true), O(rebuild=auto)
    and a current local image, or O(load=false)).
  returned: always
  type: bool
push_deferred:
  description: Whether the push was left to a later call (O(push_if_verified)); RV(pushed_tags) is then empty.
  returned: always
  type: bool
  sample: false
registry_tags:
  description: What the registry held for each tag when it was checked; empty when RV(registry_checked) is false.
  returned: always
  type: list
  elements: dict
  contains:
    tag:
      description: The image reference.
      type: str
    present:
      description: Whether the registry answered with a manifest for it.
      type: bool
    current:
      description: Whether it carries the current inputs hash (every platform, for a multi-platform image).
      type: bool
    inputs_hash:
      description: The C(org.raibid.inputs-hash) label found there (empty when absent or differing between platforms).
      type: str
    digest:
      description: Manifest (or index) digest in the registry.
      type: str
    error:
      description: Why the registry could not be read (empty for a tag that is simply absent).
      type: str
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
  description: Manifest digest buildx reported (the pushed digest with O(push=true)), or the one C(docker push)
    reported when RV(action=pushed); empty when skipped.
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
  description: The buildx argv that ran (or would run), with build-arg values shown as C(***).
  sample: [docker, buildx, build, --build-arg, TOKEN=***, --secret, "id=ca,src=/etc/ssl/certs/company-ca.pem"]
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
    LocalImage,
    RegistryTag,
    build_argv,
    expand_tags,
    hashed_settings,
    imagetools_argv,
    inputs_hash,
    parse_builder_driver,
    parse_imagetools,
    parse_metadata,
    parse_plain_progress,
    parse_push_digest,
    parse_secrets,
    plan_build,
    push_deferred,
    redact_argv,
    registry_check_needed,
    scrub,
    secret_contents,
    secret_flags,
    sensitive_strings,
    tail,
    validate_cache_specs,
    validate_secrets,
    write_value_secrets,
)

SECRET_SPEC = {
    "id": {"type": "str", "required": True},
    "src": {"type": "path"},
    "env": {"type": "str"},
    "value": {"type": "str", "no_log": True},
    "rebuild_on_change": {"type": "bool", "default": False},
}

ARGUMENT_SPEC = {
    "path": {"type": "path", "required": True},
    "dockerfile": {"type": "str", "default": "Dockerfile"},
    "tags": {"type": "list", "elements": "str", "required": True},
    "build_args": {"type": "dict", "default": {}},
    "unhashed_build_args": {"type": "dict", "default": {}},
    "redact_build_args": {"type": "bool", "default": True},
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
    "push_if_verified": {"type": "str"},
    "secrets": {
        "type": "list",
        "elements": "dict",
        # The list holds ids and paths; the one secret value (secrets[].value) has no_log itself.
        "no_log": False,
        "default": [],
        "options": SECRET_SPEC,
        "mutually_exclusive": [["src", "env", "value"]],
        "required_one_of": [["src", "env", "value"]],
    },
    "docker_cli": {"type": "path"},
}


def local_image(module: AnsibleModule, docker: str, ref: str) -> LocalImage:
    """Image ID and inputs-hash label of a local image (empty when absent)."""
    fmt = '{{.Id}} {{index .Config.Labels "' + INPUTS_LABEL + '"}}'
    rc, out, _err = module.run_command([docker, "image", "inspect", "--format", fmt, ref])
    if rc != 0 or not out.strip():
        return LocalImage(ref)
    image_id, _sep, label = out.strip().partition(" ")
    return LocalImage(ref, image_id, "" if label == "<no value>" else label)


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
    errors += validate_secrets(params["secrets"], os.environ)
    both = sorted(set(params["build_args"]) & set(params["unhashed_build_args"]))
    if both:
        errors.append(f"unhashed_build_args: {', '.join(both)} also in build_args; give each build arg once")
    if errors:
        module.fail_json(msg="; ".join(errors))
    if not params["load"] and not params["push"]:
        module.fail_json(msg="load and push are both false: the build result would go nowhere")
    docker = params["docker_cli"] or module.get_bin_path("docker")
    if not docker:
        module.fail_json(msg="docker_cli: no docker CLI found on PATH; install docker (with buildx) or set docker_cli")

    contents = secret_contents(params["secrets"], os.environ)
    # Secret contents never leave the module: Ansible masks no_log values in everything it returns,
    # and scrub() covers the text the module builds itself. Build-arg values are hidden in the command
    # and in failures only (a version number in a step name is no secret).
    hidden = sensitive_strings(contents.values())
    for value in hidden:
        module.no_log_values.add(value)
    all_build_args = {**params["build_args"], **params["unhashed_build_args"]}
    arg_values = [str(v) for v in all_build_args.values() if v is not None] if params["redact_build_args"] else []
    secrets = parse_secrets(params["secrets"])
    material = [(s.id, contents.get(s.id, b"")) for s in secrets if s.rebuild_on_change]
    digest = inputs_hash(context, dockerfile, hashed_settings(params), material)
    # From here on the build sees every build arg, and tags with {inputs_hash} name this content.
    params = dict(params, build_args=all_build_args, tags=expand_tags(params["tags"], digest))

    def fail(msg: str, **extra) -> None:
        module.fail_json(msg=scrub(msg, hidden + arg_values), **extra)

    result = {
        "changed": False,
        "built": False,
        "action": "none",
        "reason": "",
        "pushed_tags": [],
        "registry_checked": False,
        "registry_tags": [],
        "push_deferred": False,
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
            fail(f"builder: docker buildx inspect failed: {(err or out).strip()}", rc=rc)
        result["builder_driver"] = parse_builder_driver(out)
        # Inside the 0700 temporary directory, removed with it whatever happens next.
        value_files = write_value_secrets(params["secrets"], tmp)
        # A push left to a later call (push_if_verified) makes this one a build without --push.
        deferred = push_deferred(params, digest)
        if deferred:
            params = dict(params, push=False)
        local = [local_image(module, docker, tag) for tag in params["tags"]]
        result["image_id"] = local[0].image_id
        registry = None
        if registry_check_needed(params, local, digest):
            registry = []
            for tag in params["tags"]:
                rc, out, err = module.run_command(imagetools_argv(docker, tag, params["builder"]))
                registry.append(parse_imagetools(tag, rc, out, err))
            result["registry_checked"] = True
            result["registry_tags"] = [registry_entry(r, digest, hidden) for r in registry]
        plan = plan_build(params, digest, local, registry)
        if push_deferred(params, digest, plan):
            deferred, params = True, dict(params, push=False)
            plan = plan_build(params, digest, local, None)
        result.update(action=plan.action, reason=plan.reason, push_deferred=deferred)
        argv = build_argv(
            docker,
            params,
            dockerfile,
            digest,
            metadata_file,
            driver=result["builder_driver"],
            secret_args=secret_flags(secrets, value_files),
        )
        result["command"] = redact_argv(argv) if params["redact_build_args"] else list(argv)
        first = params["tags"][0]
        if plan.action == "none":
            result["msg"] = f"{first} is up to date (inputs {digest[:19]}): {plan.reason}"
            module.exit_json(**result)
        if module.check_mode:
            verb = "push" if plan.action == "pushed" else "build"
            result.update(changed=True, msg=f"would {verb} {first} (inputs {digest[:19]}): {plan.reason}")
            if plan.action == "pushed":
                result["pushed_tags"] = plan.push_tags
            module.exit_json(**result)

        started = time.monotonic()
        if plan.action == "pushed":
            lines, pushed, error = push_tags(module, docker, plan.push_tags, hidden)
            result.update(
                log_tail=lines, pushed_tags=pushed, changed=bool(pushed), digest=parse_push_digest("\n".join(lines))
            )
            result["duration_s"] = round(time.monotonic() - started, 2)
            if error:
                result["action"] = "pushed" if pushed else "none"
                fail(error, **result)
            result["msg"] = f"pushed {', '.join(plan.push_tags)} without rebuilding: {plan.reason}"
            module.exit_json(**result)

        rc, out, err = module.run_command(argv, environ_update={"DOCKER_BUILDKIT": "1", "BUILDX_NO_DEFAULT_LOAD": "0"})
        duration = round(time.monotonic() - started, 2)
        progress = scrub(err + "\n" + out, hidden)
        log = parse_plain_progress(progress)
        result.update(log.summary())
        result.update(duration_s=duration, log_tail=tail(progress), built=rc == 0, changed=rc == 0)
        if rc != 0:
            result["action"] = "none"
            failed_tail = scrub("\n".join(result["log_tail"]), arg_values)
            result.update(log_tail=failed_tail.splitlines(), errors=[scrub(e, arg_values) for e in result["errors"]])
            fail(f"docker buildx build failed (rc={rc}) for {first}", rc=rc, **result)
        if params["push"]:
            result["pushed_tags"] = list(params["tags"])
        metadata = ""
        if os.path.exists(metadata_file):
            with open(metadata_file, encoding="utf-8") as fh:
                metadata = fh.read()
        meta = parse_metadata(metadata)
        result["digest"] = meta["digest"]
        if params["load"]:
            result["image_id"] = local_image(module, docker, first).image_id
        result["image_id"] = result["image_id"] or meta["config_digest"]
        result["msg"] = (
            f"built {first} in {duration} s; {result['cached_steps']}/{result['layer_steps']} "
            f"layer steps from cache ({plan.reason})"
        )
    module.exit_json(**result)


def registry_entry(state: RegistryTag, digest: str, hidden: list[str]) -> dict:
    return {
        "tag": state.tag,
        "present": state.present,
        "current": state.current(digest),
        "inputs_hash": state.inputs_hash,
        "digest": state.digest,
        "error": scrub(state.error, hidden),
    }


def push_tags(
    module: AnsibleModule, docker: str, tags: list[str], hidden: list[str]
) -> tuple[list[str], list[str], str]:
    """``docker push`` each tag: (output lines, tags pushed, error). The engine treats 127.0.0.0/8
    registries as insecure by default, so a plain-HTTP loopback registry needs no extra setting."""
    lines: list[str] = []
    pushed: list[str] = []
    for tag in tags:
        rc, out, err = module.run_command([docker, "push", tag])
        lines += tail(scrub(out + "\n" + err, hidden), 10)
        if rc != 0:
            return lines, pushed, f"docker push {tag} failed (rc={rc}): {scrub((err or out).strip()[-300:], hidden)}"
        pushed.append(tag)
    return lines, pushed, ""


if __name__ == "__main__":
    main()
