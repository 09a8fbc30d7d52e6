# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Pure logic of the image_build module: input hashing, buildx argv, plain-progress parsing.

A build is identified by the hash of everything that goes into it (context files, Dockerfile,
build args, labels, target, platforms). The module stores that hash as an image label and skips
the build when an image with the same label already exists, so the build is idempotent by content.
With push, the registry is asked too (``docker buildx imagetools inspect``): a push that failed after
a good build is retried on the next run, by ``docker push`` of the local image where that is the whole
result, else by building again with ``--push``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

INPUTS_LABEL = "org.raibid.inputs-hash"
REDACTED = "***"
# Shortest secret or build-arg value scrubbed from free text; shorter ones ("1", "on") would mangle the log.
MIN_SCRUB_LEN = 4
# buildx parses --secret as CSV: an id or path with these characters would need quoting; refuse them instead.
_SECRET_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_SECRET_KINDS = ("src", "env", "value")
_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
# Dockerfile instructions that make a layer: the ones whose caching matters.
LAYER_INSTRUCTIONS = ("RUN", "COPY", "ADD")

_LINE = re.compile(r"^#(\d+) (.*)$")
_STEP = re.compile(r"^\[(?:(?P<stage>[^\]]*?) )?(?P<index>\d+)/(?P<total>\d+)\] (?P<instruction>[A-Z]+)\b(?P<rest>.*)$")
# A step resolved from an imported cache whose layer BuildKit pulls lazily (for the export) shows the
# blob transfer instead of CACHED: "#11 sha256:69eb... 104B / 104B 0.0s done", "#11 extracting sha256:...".
# An executed step never shows blobs in its own vertex.
_CACHE_BLOB = re.compile(r"^(extracting )?sha256:[0-9a-f]{64}\b")
_DONE = re.compile(r"^DONE (\d+(?:\.\d+)?)s$")


@dataclass
class Step:
    """One BuildKit vertex as the plain progress output reports it."""

    id: int
    name: str
    instruction: str = ""
    cached: bool = False
    done: bool = False
    error: str = ""
    seconds: Optional[float] = None

    @property
    def is_layer(self) -> bool:
        return self.instruction in LAYER_INSTRUCTIONS


@dataclass
class BuildLog:
    steps: List[Step] = field(default_factory=list)
    cache_imported: List[str] = field(default_factory=list)
    cache_exported: bool = False

    def summary(self) -> Dict[str, Any]:
        layers = [s for s in self.steps if s.is_layer]
        return {
            "steps": [asdict(s) for s in self.steps if s.instruction],
            "layer_steps": len(layers),
            "cached_steps": sum(1 for s in layers if s.cached),
            "cache_imported": self.cache_imported,
            "cache_exported": self.cache_exported,
            "errors": [f"{s.name}: {s.error}" for s in self.steps if s.error],
        }


def parse_plain_progress(text: str) -> BuildLog:
    """Parse ``docker buildx build --progress plain`` output (BuildKit's plain progress)."""
    steps: Dict[int, Step] = {}
    log = BuildLog()
    for raw in text.splitlines():
        match = _LINE.match(raw.rstrip())
        if not match:
            continue
        vid, body = int(match.group(1)), match.group(2)
        step = steps.get(vid)
        if step is None:
            step = Step(id=vid, name=body)
            parsed = _STEP.match(body)
            if parsed:
                step.instruction = parsed.group("instruction")
            steps[vid] = step
            if body.startswith("importing cache manifest from "):
                log.cache_imported.append(body.split(" from ", 1)[1].strip())
            if body.startswith("exporting cache to ") or body.startswith("exporting cache"):
                log.cache_exported = True
            continue
        if body == "CACHED":
            step.cached = True
            step.done = True
        elif _CACHE_BLOB.match(body):
            step.cached = True
        elif body.startswith("ERROR"):
            step.error = body.partition(":")[2].strip() or body
        else:
            done = _DONE.match(body)
            if done:
                step.done = True
                step.seconds = float(done.group(1))
    log.steps = [steps[k] for k in sorted(steps)]
    return log


def read_dockerignore(context: str) -> List[str]:
    path = os.path.join(context, ".dockerignore")
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]


def is_ignored(relpath: str, patterns: Sequence[str]) -> bool:
    """Approximation of .dockerignore matching (fnmatch per path and its parents; ``!`` negates)."""
    ignored = False
    parts = relpath.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(c.split("/")[-1], pat[3:]) for c in candidates) or any(
                fnmatch.fnmatchcase(c, pat[3:]) for c in candidates
            )
        else:
            hit = any(fnmatch.fnmatchcase(c, pat) for c in candidates)
        if hit:
            ignored = not negate
    return ignored


def context_files(context: str) -> List[str]:
    """Relative paths of the files that go into the build context, sorted."""
    patterns = read_dockerignore(context)
    found = []
    for root, dirs, files in os.walk(context):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(root, name), context).replace(os.sep, "/")
            if not is_ignored(rel, patterns):
                found.append(rel)
    return sorted(found)


def inputs_hash(
    context: str,
    dockerfile: str,
    settings: Mapping[str, Any],
    secret_material: Sequence[Tuple[str, bytes]] = (),
) -> str:
    """sha256 over the context files (path, executable bit, content), the Dockerfile and settings.

    ``secret_material`` holds (id, content) of the secrets whose content should trigger a rebuild
    (``rebuild_on_change``); only a sha256 of each content goes in, and only when there is any, so
    the hash of a build without such secrets stays what it was.
    """
    digest = hashlib.sha256()
    for rel in context_files(context):
        full = os.path.join(context, rel)
        digest.update(rel.encode() + b"\0")
        digest.update(b"x" if os.access(full, os.X_OK) else b"-")
        if os.path.islink(full):
            digest.update(b"link:" + os.readlink(full).encode())
        else:
            with open(full, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        digest.update(b"\0")
    with open(dockerfile, "rb") as fh:
        digest.update(b"dockerfile\0" + fh.read())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for secret_id, content in sorted(secret_material):
        digest.update(b"secret\0" + secret_id.encode() + b"\0" + hashlib.sha256(content).digest())
    return "sha256:" + digest.hexdigest()


def expand_tags(tags: Sequence[str], digest: str) -> List[str]:
    """Replace ``{inputs_hash}`` in each tag by the first 16 hex digits of the inputs hash."""
    short = digest.split(":", 1)[-1][:16]
    return [tag.replace("{inputs_hash}", short) for tag in tags]


def hashed_settings(params: Mapping[str, Any]) -> Dict[str, Any]:
    """The parameters that change what gets built (not where the cache or the result goes)."""
    settings: Dict[str, Any] = {
        "build_args": dict(sorted((params.get("build_args") or {}).items())),
        "labels": dict(sorted((params.get("labels") or {}).items())),
        "target": params.get("target") or "",
        "platform": sorted(params.get("platform") or []),
        "provenance": bool(params.get("provenance")),
    }
    secrets = parse_secrets(params.get("secrets") or [])
    if secrets:
        # Where each secret comes from, never its content: the hash ends up in an image label that anyone
        # who can pull the image reads, and a plain hash of a short token can be brute-forced. Content
        # counts only where the caller opts in (rebuild_on_change, see inputs_hash). Added only when
        # there are secrets, so existing images keep their hash.
        settings["secrets"] = [
            {"id": s.id, "kind": s.kind, "source": s.source, "rebuild_on_change": s.rebuild_on_change} for s in secrets
        ]
    return settings


@dataclass
class Secret:
    """A build secret as the module option gives it; ``source`` is the path or variable name, never a value."""

    id: str
    kind: str
    source: str = ""
    rebuild_on_change: bool = False


def parse_secrets(specs: Iterable[Mapping[str, Any]]) -> List[Secret]:
    """Secrets sorted by id; kind is whichever of src, env, value is set (validate_secrets checks there is one)."""
    secrets = []
    for spec in specs:
        kind = next((k for k in _SECRET_KINDS if spec.get(k) is not None), "")
        source = "" if kind in ("value", "") else str(spec[kind])
        secrets.append(Secret(str(spec.get("id") or ""), kind, source, bool(spec.get("rebuild_on_change"))))
    return sorted(secrets, key=lambda s: s.id)


def validate_secrets(specs: Sequence[Mapping[str, Any]], environ: Mapping[str, str]) -> List[str]:
    """Errors naming the secret, the rule and the offending id/path/variable (never a secret value)."""
    errors = []
    seen = set()
    for index, spec in enumerate(specs):
        name = f"secrets[{index}]"
        sid = str(spec.get("id") or "")
        if not _SECRET_ID.match(sid):
            errors.append(f"{name}.id: {sid!r} must be letters, digits, '.', '_' or '-'")
        elif sid in seen:
            errors.append(f"{name}.id: {sid!r} is given twice")
        seen.add(sid)
        kinds = [k for k in _SECRET_KINDS if spec.get(k) is not None]
        if len(kinds) != 1:
            errors.append(f"{name} ({sid}): set exactly one of src, env, value (found {', '.join(kinds) or 'none'})")
            continue
        if kinds[0] == "src":
            src = str(spec["src"])
            if "," in src or '"' in src:
                errors.append(f"{name}.src ({sid}): {src!r} contains ',' or '\"', which --secret cannot carry")
            elif not os.path.isfile(src):
                errors.append(f"{name}.src ({sid}): {src} is not a file on the node")
        elif kinds[0] == "env":
            env = str(spec["env"])
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", env):
                errors.append(f"{name}.env ({sid}): {env!r} is not an environment variable name")
            elif env not in environ:
                errors.append(f"{name}.env ({sid}): {env} is not set in the module's environment on the node")
    return errors


def secret_flags(secrets: Sequence[Secret], value_files: Mapping[str, str]) -> List[str]:
    """``--secret`` arguments; ``value`` secrets point at the 0600 files in ``value_files`` (id -> path)."""
    argv = []
    for secret in secrets:
        if secret.kind == "env":
            argv += ["--secret", f"id={secret.id},env={secret.source}"]
        elif secret.kind == "src":
            argv += ["--secret", f"id={secret.id},src={secret.source}"]
        else:
            argv += ["--secret", f"id={secret.id},src={value_files[secret.id]}"]
    return argv


def write_value_secrets(specs: Iterable[Mapping[str, Any]], directory: str) -> Dict[str, str]:
    """Write each ``value`` secret to a file only the owner can read (created 0600, never wider); id -> path."""
    paths = {}
    for index, spec in enumerate(sorted(specs, key=lambda s: str(s.get("id")))):
        if spec.get("value") is None:
            continue
        path = os.path.join(directory, f"secret-{index}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(str(spec["value"]))
        paths[str(spec["id"])] = path
    return paths


def secret_contents(specs: Iterable[Mapping[str, Any]], environ: Mapping[str, str]) -> Dict[str, bytes]:
    """id -> content of every secret (file bytes, variable value or value), for scrubbing and opt-in hashing."""
    contents = {}
    for spec in specs:
        sid = str(spec.get("id"))
        if spec.get("value") is not None:
            contents[sid] = str(spec["value"]).encode()
        elif spec.get("env") is not None:
            contents[sid] = environ.get(str(spec["env"]), "").encode()
        elif spec.get("src") is not None and os.path.isfile(str(spec["src"])):
            with open(str(spec["src"]), "rb") as fh:
                contents[sid] = fh.read()
    return contents


def sensitive_strings(contents: Iterable[bytes]) -> List[str]:
    """Strings to scrub from output: each content and, for multi-line files, each of its lines."""
    found = set()
    for raw in contents:
        text = raw.decode("utf-8", "replace")
        for candidate in [text, *text.splitlines()]:
            if len(candidate.strip()) >= MIN_SCRUB_LEN:
                found.add(candidate.strip())
    return sorted(found, key=len, reverse=True)


def scrub(text: str, values: Iterable[str]) -> str:
    """``text`` with every value (longest first, at least MIN_SCRUB_LEN long) replaced by REDACTED."""
    for value in sorted({v for v in values if v and len(v) >= MIN_SCRUB_LEN}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def redact_argv(argv: Sequence[str]) -> List[str]:
    """argv with the values of ``--build-arg NAME=VALUE`` replaced by REDACTED; names stay visible."""
    redacted = []
    after_flag = False
    for arg in argv:
        shown = arg
        if after_flag and "=" in arg:
            shown = arg.split("=", 1)[0] + "=" + REDACTED
        elif arg.startswith("--build-arg=") and arg.count("=") > 1:
            shown = "--build-arg=" + arg[len("--build-arg=") :].split("=", 1)[0] + "=" + REDACTED
        after_flag = arg == "--build-arg"
        redacted.append(shown)
    return redacted


def parse_builder_driver(inspect_output: str) -> str:
    """The driver (docker, docker-container, remote, ...) from ``docker buildx inspect`` output."""
    match = re.search(r"(?m)^Driver:\s+(\S+)", inspect_output or "")
    return match.group(1) if match else ""


def build_argv(
    docker: str,
    params: Mapping[str, Any],
    dockerfile: str,
    digest: str,
    metadata_file: str,
    *,
    driver: str = "",
    secret_args: Sequence[str] = (),
) -> List[str]:
    """``docker buildx build`` argv for the module parameters.

    The ``docker`` driver always stores the result in the engine; passing ``--load`` as well adds a
    second image exporter that fails with "already exists" on the containerd image store.
    """
    argv = [docker, "buildx", "build", "--progress", "plain", "--file", dockerfile]
    argv += ["--metadata-file", metadata_file]
    if params.get("builder"):
        argv += ["--builder", params["builder"]]
    for tag in params.get("tags") or []:
        argv += ["--tag", tag]
    for key, value in sorted((params.get("build_args") or {}).items()):
        argv += ["--build-arg", f"{key}={value}"]
    labels = dict(params.get("labels") or {})
    labels[INPUTS_LABEL] = digest
    for key, value in sorted(labels.items()):
        argv += ["--label", f"{key}={value}"]
    argv += list(secret_args)
    if params.get("target"):
        argv += ["--target", params["target"]]
    if params.get("platform"):
        argv += ["--platform", ",".join(params["platform"])]
    for spec in params.get("cache_from") or []:
        argv += ["--cache-from", spec]
    for spec in params.get("cache_to") or []:
        argv += ["--cache-to", spec]
    if params.get("pull"):
        argv.append("--pull")
    if params.get("network"):
        argv += ["--network", params["network"]]
    argv.append(f"--provenance={'true' if params.get('provenance') else 'false'}")
    outputs = []
    if params.get("load") and driver != "docker":
        outputs.append("--load")
    if params.get("push"):
        outputs.append("--push")
    argv += outputs
    argv.append(params["path"])
    return argv


def parse_metadata(text: str) -> Dict[str, str]:
    """The digests buildx writes to --metadata-file (empty strings where absent)."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        data = {}
    return {
        "digest": str(data.get("containerimage.digest", "")),
        "config_digest": str(data.get("containerimage.config.digest", "")),
        "image_name": str(data.get("image.name", "")),
    }


def validate_cache_specs(specs: Iterable[str], option: str) -> List[str]:
    """Errors for cache specs that are not ``type=...`` key=value lists."""
    errors = []
    for spec in specs:
        pairs = [p for p in spec.split(",") if p]
        keys = [p.split("=", 1)[0] for p in pairs]
        if not pairs or any("=" not in p for p in pairs) or "type" not in keys:
            errors.append(
                f"{option}: {spec!r} is not a buildx cache spec such as type=registry,ref=host:port/cache:tag"
            )
    return errors


def tail(text: str, lines: int = 40) -> List[str]:
    return text.splitlines()[-lines:]


# A Go template whose output is one JSON document: the manifest (or index) descriptor and the image
# config(s). `.Image` is one config for a single-platform result, a platform -> config map otherwise.
IMAGETOOLS_FORMAT = '{"manifest": {{json .Manifest}}, "image": {{json .Image}}}'


def imagetools_argv(docker: str, ref: str, builder: Optional[str] = None) -> List[str]:
    """``docker buildx imagetools inspect`` argv for one pushed tag.

    It resolves through BuildKit's resolver (plain HTTP for loopback registries such as 127.0.0.1:5000,
    and whatever the builder's buildkitd.toml allows, hence ``--builder``), and reads the registry
    directly whatever image store the engine uses.
    """
    argv = [docker, "buildx", "imagetools", "inspect"]
    if builder:
        argv += ["--builder", builder]
    return [*argv, "--format", IMAGETOOLS_FORMAT, ref]


@dataclass
class RegistryTag:
    """What the registry holds for one tag."""

    tag: str
    present: bool = False
    inputs_hash: str = ""
    digest: str = ""
    error: str = ""

    def current(self, digest: str) -> bool:
        return self.present and self.inputs_hash == digest


def _label(config: Any) -> str:
    if not isinstance(config, dict):
        return ""
    labels = (config.get("config") or {}).get("Labels") or {}
    return str(labels.get(INPUTS_LABEL, ""))


def parse_imagetools(tag: str, rc: int, out: str, err: str) -> RegistryTag:
    """The registry state of ``tag`` from the result of ``imagetools_argv``.

    A multi-platform result counts as carrying the inputs hash only when every platform's config does.
    A tag that is absent and a registry that cannot be read both leave ``present`` false (so the module
    pushes, and a registry that is down makes that push fail loudly); ``error`` tells them apart.
    """
    state = RegistryTag(tag=tag)
    if rc != 0:
        message = (err or out).strip().splitlines()
        text = message[-1] if message else f"rc={rc}"
        if not re.search(r"not found|manifest unknown|name unknown", text, re.IGNORECASE):
            state.error = text
        return state
    try:
        data = json.loads(out)
    except ValueError:
        state.error = f"unreadable imagetools output: {out.strip()[:200]}"
        return state
    state.present = True
    state.digest = str((data.get("manifest") or {}).get("digest", ""))
    image = data.get("image")
    if isinstance(image, dict) and image and not any(k in image for k in ("config", "rootfs", "architecture")):
        labels = {_label(config) for config in image.values()}
        state.inputs_hash = labels.pop() if len(labels) == 1 else ""
    else:
        state.inputs_hash = _label(image)
    return state


def parse_push_digest(text: str) -> str:
    """The manifest digest ``docker push`` reports (``<tag>: digest: sha256:... size: N``)."""
    found = _PUSH_DIGEST.findall(text or "")
    return found[-1] if found else ""


@dataclass
class LocalImage:
    """``docker image inspect`` of one tag: image ID and inputs-hash label; empty when absent."""

    tag: str
    image_id: str = ""
    inputs_hash: str = ""


@dataclass
class Plan:
    """What the module does: ``built`` (buildx build), ``pushed`` (docker push of ``push_tags``) or ``none``."""

    action: str
    reason: str
    push_tags: List[str] = field(default_factory=list)


def registry_check_needed(params: Mapping[str, Any], local: Sequence[LocalImage], digest: str) -> bool:
    """Only a push whose local side is settled needs the registry's word (rebuild=always builds anyway)."""
    if params.get("rebuild") == "always" or not params.get("push"):
        return False
    if not params.get("load"):
        return True
    return bool(local) and local[0].inputs_hash == digest


def push_only_possible(params: Mapping[str, Any], local: Sequence[LocalImage], digest: str) -> bool:
    """Whether ``docker push`` of the local image re-creates what ``buildx build --push`` would push.

    Not for several platforms (the engine holds one) nor with provenance (the engine's copy has no
    attestation manifest), and only when every tag names the same current local image.
    """
    if not params.get("load") or len(params.get("platform") or []) > 1 or params.get("provenance"):
        return False
    return (
        bool(local)
        and all(i.image_id and i.image_id == local[0].image_id for i in local)
        and (local[0].inputs_hash == digest)
    )


def push_deferred(params: Mapping[str, Any], digest: str, plan: Optional[Plan] = None) -> bool:
    """Whether this call leaves the push to a later one (``push_if_verified``).

    With ``push_if_verified`` (an inputs hash the caller verified; empty: none), a call with ``push`` pushes only
    what carries that hash and what it does not build itself: other inputs, or a plan that builds, mean a new
    image, which the caller verifies before a second call pushes it. Without the option nothing is deferred.
    """
    verified = params.get("push_if_verified")
    if not params.get("push") or verified is None:
        return False
    if verified != digest:
        return True
    return plan is not None and plan.action == "built"


def plan_build(
    params: Mapping[str, Any],
    digest: str,
    local: Sequence[LocalImage],
    registry: Optional[Sequence[RegistryTag]] = None,
) -> Plan:
    """Decide between building, pushing the existing image, and doing nothing.

    ``local`` has one entry per tag (first tag first); ``registry`` one per tag when it was checked.
    """
    first = params["tags"][0]
    if params.get("rebuild") == "always":
        return Plan("built", "rebuild=always")
    local_current = bool(local) and local[0].inputs_hash == digest
    if not params.get("push") or (params.get("load") and not local_current):
        if params.get("load") and local_current:
            return Plan("none", f"{first} carries the current inputs hash")
        return Plan("built", f"{first} does not carry the current inputs hash")
    if registry is None:
        stale, where = list(params["tags"]), "the registry was not checked"
    else:
        stale = [r.tag for r in registry if not r.current(digest)]
        where = "the registry lacks " + ", ".join(stale)
    if not stale:
        return Plan("none", "the local image and the registry carry the current inputs hash")
    if registry is not None and push_only_possible(params, local, digest):
        return Plan("pushed", f"{where}; pushing the local image", push_tags=stale)
    if params.get("load"):
        where += "; the local image is not the whole result, building with --push"
    return Plan("built", where)
