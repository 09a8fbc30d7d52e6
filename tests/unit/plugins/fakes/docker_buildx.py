"""Stand-in docker CLI for ``docker buildx inspect [NAME]`` (the node_health module's builder check).

Flags are the host's ``docker buildx inspect --help`` where the buildx plugin is installed, else the table
of docker_build.DOCUMENTED_FLAGS; an unknown flag is refused as docker refuses it (rc 125, ``unknown
flag``). Builders come from ``state["builders"]`` (name -> {driver, nodes: [{name, status, error}]}); an
unknown one is refused as buildx refuses it. Other commands are refused as not simulated. The call log
(``state["log"]``) records the argv; ``state["env_log"]`` the DOCKER_HOST each call got.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Dict, Mapping, Sequence

from . import docker_build, docker_cli_flags
from .cli import Exit, UsageError, parse, record, run

COMMAND = "buildx inspect"


@functools.cache
def real_flags() -> Dict[str, bool]:
    return docker_cli_flags.real_flags(COMMAND, docker_build.DOCUMENTED_FLAGS)


def main(argv: Sequence[str], state: Mapping[str, Any]) -> int:
    record(state, argv)
    if state.get("env_log"):
        with open(state["env_log"], "a", encoding="utf-8") as fh:
            fh.write(os.environ.get("DOCKER_HOST", "") + "\n")
    return run(lambda: _inspect(list(argv), state))


def _inspect(args: Sequence[str], state: Mapping[str, Any]) -> int:
    if list(args[:2]) != COMMAND.split():
        raise Exit(2, f"docker (stand-in): only `docker {COMMAND}` is simulated; got {' '.join(args)}")
    flags = state.get("flags") or real_flags()
    try:
        opts, positional = parse(args[2:], flags)
    except UsageError as exc:
        raise Exit(125, f"{exc}\nSee 'docker {COMMAND} --help'.") from None
    if "--bootstrap" in opts:
        raise Exit(2, "docker (stand-in): --bootstrap starts the builder; not simulated")
    if len(positional) > 1:
        raise Exit(1, f'ERROR: "docker buildx inspect" requires at most 1 argument.\nUsage:  docker {COMMAND} [NAME]')
    name = positional[0] if positional else "default"
    builder = state.get("builders", {}).get(name)
    if builder is None:
        raise Exit(1, f'ERROR: no builder "{name}" found')
    print(f"Name:          {name}")
    print(f"Driver:        {builder['driver']}")
    print("Last Activity: 2026-06-01 10:00:00 +0000 UTC")
    print("")
    print("Nodes:")
    for node in builder.get("nodes", []):
        print(f"Name:                  {node['name']}")
        print("Endpoint:              unix:///var/run/docker.sock")
        if node.get("error"):
            print(f"Error:                 {node['error']}")
            continue
        print(f"Status:                {node['status']}")
        if node["status"] == "running":
            print("BuildKit daemon flags: --allow-insecure-entitlement=network.host")
            print("BuildKit version:      v0.22.0")
            print("Platforms:             linux/arm64")
    return 0
