# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Pure logic of the image_build module: input hashing, buildx argv, plain-progress parsing.

A build is identified by the hash of everything that goes into it (context files, Dockerfile,
build args, labels, target, platforms). The module stores that hash as an image label and skips
the build when an image with the same label already exists, so the build is idempotent by content.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

INPUTS_LABEL = "org.raibid.inputs-hash"
# Dockerfile instructions that make a layer: the ones whose caching matters.
LAYER_INSTRUCTIONS = ("RUN", "COPY", "ADD")

_LINE = re.compile(r"^#(\d+) (.*)$")
_STEP = re.compile(r"^\[(?:(?P<stage>[^\]]*?) )?(?P<index>\d+)/(?P<total>\d+)\] (?P<instruction>[A-Z]+)\b(?P<rest>.*)$")
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


def inputs_hash(context: str, dockerfile: str, settings: Mapping[str, Any]) -> str:
    """sha256 over the context files (path, executable bit, content), the Dockerfile and settings."""
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
    return "sha256:" + digest.hexdigest()


def hashed_settings(params: Mapping[str, Any]) -> Dict[str, Any]:
    """The parameters that change what gets built (not where the cache or the result goes)."""
    return {
        "build_args": dict(sorted((params.get("build_args") or {}).items())),
        "labels": dict(sorted((params.get("labels") or {}).items())),
        "target": params.get("target") or "",
        "platform": sorted(params.get("platform") or []),
        "provenance": bool(params.get("provenance")),
    }


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
