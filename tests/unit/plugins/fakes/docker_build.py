"""Stand-in docker CLI for the image_build module: buildx build, buildx inspect, buildx imagetools
inspect, image inspect and push, with a tiny engine and registry.

It refuses flags the real commands do not have (rc 125 and ``unknown flag``, as docker does); the flag
table is ``flags.json`` in the state directory (see ``DOCUMENTED_FLAGS``). State directory ``dir``:
local.json (tag -> inputs label), registry.json (tag -> label), calls (one line per call), format (the
``--format`` imagetools inspect must get), platforms.json, and the switches push_fails (pushes fail; a
build with --push still loads, like buildx's exporters) and build_fails. Env DRIVER: the builder's driver.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from typing import Any, Callable, Dict, List, Mapping, Sequence

from . import docker_cli_flags
from .cli import Exit, UsageError, parse, run

# Flags of the real commands, as a fallback where the host's docker has no buildx plugin: buildx
# docs/reference/buildx_build.md and buildx_imagetools_inspect.md (v0.2x), `docker push --help` and
# `docker image inspect --help` of Docker 28. True: the flag takes a value.
DOCUMENTED_FLAGS: Dict[str, Dict[str, bool]] = {
    "buildx build": {
        **dict.fromkeys(
            "--add-host --allow --annotation --attest --build-arg --build-context --builder --cache-from "
            "--cache-to --call --cgroup-parent -f --file --iidfile --label --metadata-file --network "
            "--no-cache-filter -o --output --platform --progress --provenance --root --sbom --secret "
            "--server-config --shm-size --ssh -t --tag --target --ulimit".split(),
            True,
        ),
        **dict.fromkeys("--check -D --debug --detach --load --no-cache --pull --push -q --quiet".split(), False),
    },
    "buildx imagetools inspect": {"--builder": True, "--format": True, "--raw": False, "-D": False, "--debug": False},
    "buildx inspect": {"--bootstrap": False, "--builder": True, "--timeout": True, "-D": False, "--debug": False},
    "image inspect": {"-f": True, "--format": True, "--platform": True},
    "push": {
        "-a": False,
        "--all-tags": False,
        "--disable-content-trust": False,
        "-q": False,
        "--quiet": False,
        "--platform": True,
    },
}


@functools.cache
def real_flags() -> Dict[str, Dict[str, bool]]:
    """Command -> flag -> takes a value, from the host's docker where it can say (asked once)."""
    return {command: docker_cli_flags.real_flags(command, DOCUMENTED_FLAGS) for command in DOCUMENTED_FLAGS}


def _load(state: str, name: str) -> Any:
    path = os.path.join(state, name)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def _save(state: str, name: str, data: Any) -> None:
    with open(os.path.join(state, name), "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def _image_id(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def main(argv: Sequence[str], config: Mapping[str, Any]) -> int:
    """Run one docker command against the state directory ``config["dir"]``."""
    return run(lambda: _docker(config["dir"], list(argv)))


def _docker(state: str, args: List[str]) -> int:
    with open(os.path.join(state, "calls"), "a", encoding="utf-8") as fh:
        fh.write(" ".join(args) + "\n")
    flags = _load(state, "flags.json")
    cmd = next((c for c in sorted(flags, key=len, reverse=True) if args[: len(c.split())] == c.split()), None)
    if cmd is None:
        raise Exit(2, "fake docker: unexpected command " + " ".join(args))
    try:
        opts, positional = parse(args[len(cmd.split()) :], flags[cmd])
    except UsageError as exc:
        raise Exit(125, f"{exc}\nSee 'docker {cmd} --help'.") from None
    _COMMANDS[cmd](_Call(state, opts, positional))
    return 0


class _Call:
    """One docker command: its flags and arguments, and the engine and registry it acts on."""

    def __init__(self, state: str, opts: Dict[str, List[str]], positional: List[str]) -> None:
        self.state, self.opts, self.positional = state, opts, positional
        self.local: Dict[str, str] = _load(state, "local.json")
        self.registry: Dict[str, str] = _load(state, "registry.json")
        self.push_fails = os.path.exists(os.path.join(state, "push_fails"))


def _builder_inspect(call: _Call) -> None:
    print("Name:   default")
    print("Driver: " + os.environ.get("DRIVER", "docker-container"))


def _image_inspect(call: _Call) -> None:
    tag = call.positional[0]
    if tag not in call.local:
        raise Exit(1, "Error response from daemon: No such image: " + tag)
    print(_image_id(call.local[tag]) + " " + call.local[tag])


def _imagetools_inspect(call: _Call) -> None:
    with open(os.path.join(call.state, "format"), encoding="utf-8") as fh:
        assert call.opts["--format"] == [fh.read()], call.opts
    tag = call.positional[0]
    if tag not in call.registry:
        raise Exit(1, "ERROR: " + tag + ": not found")
    platforms = _load(call.state, "platforms.json") or []
    config_blob = {
        "architecture": "arm64",
        "os": "linux",
        "config": {"Labels": {"org.raibid.inputs-hash": call.registry[tag]}},
    }
    image = {p: config_blob for p in platforms} if len(platforms) > 1 else config_blob
    print(json.dumps({"manifest": {"digest": "sha256:" + "b" * 64}, "image": image}))


def _push(call: _Call) -> None:
    tag = call.positional[0]
    if tag not in call.local:
        raise Exit(1, "An image does not exist locally with the tag: " + tag)
    if call.push_fails:
        raise Exit(1, "dial tcp 127.0.0.1:5000: connect: connection refused")
    call.registry[tag] = call.local[tag]
    _save(call.state, "registry.json", call.registry)
    print("The push refers to repository [" + tag.rsplit(":", 1)[0] + "]")
    print(tag.rsplit(":", 1)[1] + ": digest: sha256:" + "c" * 64 + " size: 528")


def _build(call: _Call) -> None:
    opts = call.opts
    assert len(call.positional) == 1, call.positional
    secrets = []
    for spec in opts.get("--secret", []):
        fields = dict(f.split("=", 1) for f in spec.split(","))
        assert set(fields) in ({"id", "src"}, {"id", "env"}), spec
        if "src" in fields:
            mode = os.stat(fields["src"]).st_mode & 0o777
            with open(fields["src"], encoding="utf-8") as fh:
                secrets.append({"id": fields["id"], "mode": oct(mode), "content": fh.read()})
        else:
            secrets.append({"id": fields["id"], "content": os.environ[fields["env"]]})
    _save(call.state, "secrets.json", secrets)
    label = next(x.split("=", 1)[1] for x in opts["--label"] if x.startswith("org.raibid.inputs-hash="))
    sys.stderr.write("#1 [1/2] FROM x\n#1 CACHED\n\n#2 [2/2] RUN true\n#2 CACHED\n")
    for secret in secrets:
        sys.stderr.write("#2 0.1 leaked " + secret["content"] + "\n")
    if os.path.exists(os.path.join(call.state, "build_fails")):
        raise Exit(1, "#2 ERROR: process did not complete successfully")
    if "--load" in opts or os.environ.get("DRIVER") == "docker":
        for tag in opts["--tag"]:
            call.local[tag] = label
        _save(call.state, "local.json", call.local)
    with open(opts["--metadata-file"][0], "w", encoding="utf-8") as fh:
        json.dump({"containerimage.digest": "sha256:manifest", "containerimage.config.digest": _image_id(label)}, fh)
    if "--push" in opts:
        if call.push_fails:
            raise Exit(1, "ERROR: failed to push: connection refused")
        for tag in opts["--tag"]:
            call.registry[tag] = label
        _save(call.state, "registry.json", call.registry)


_COMMANDS: Dict[str, Callable[[_Call], None]] = {
    "buildx build": _build,
    "buildx inspect": _builder_inspect,
    "buildx imagetools inspect": _imagetools_inspect,
    "image inspect": _image_inspect,
    "push": _push,
}
