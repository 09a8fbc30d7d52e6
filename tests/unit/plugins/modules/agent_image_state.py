"""The agent image the agent_image_verify and agent_healthcheck tests run against: the state directory
of the stand-in docker (fakes/agent_docker.py) with the stand-in tools (fakes/agent_tools.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ansible_collections.raibid.dgx_spark.plugins.module_utils.agent_image import EXPECTED_ENV, REQUIRED_LABELS
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes import agent_docker, agent_tools, stand_in

IMAGE = "127.0.0.1:5000/raibid-ci-agent:1.4.0"
HEALTH_OK = agent_tools.HEALTH_OK


def image_config(**labels: str) -> Dict[str, Any]:
    """``docker image inspect``'s object for an agent image that passes every metadata check."""
    return {
        "Id": "sha256:" + "a" * 64,
        "Architecture": "arm64",
        "Os": "linux",
        "Size": 1200 * 1024 * 1024,
        "Config": {
            "User": "agent",
            "Env": ["PATH=/usr/local/cargo/bin:/usr/bin:/bin", *(f"{k}={v}" for k, v in EXPECTED_ENV.items())],
            "Entrypoint": ["/usr/bin/tini", "--"],
            "WorkingDir": "/workspace",
            "Labels": {**{n: "x" for n in REQUIRED_LABELS}, "raibid.agent.arch": "arm64", **labels},
        },
    }


def make_state(tmp_path: Path) -> Tuple[Path, Path]:
    """``(state, docker)``: a state directory with the stand-in tools, one image (IMAGE) and one running
    container (agent-1), and the stand-in docker."""
    state = tmp_path / "state"
    for sub in ("tmp", "workspace", "cargo-home"):
        (state / sub).mkdir(parents=True)
    stand_in.install_agent_tools(state / "bin")
    (state / "flags.json").write_text(json.dumps(agent_docker.real_flags()))
    (state / "images.json").write_text(json.dumps({IMAGE: image_config()}))
    (state / "containers.json").write_text(json.dumps({"agent-1": dict(EXPECTED_ENV)}))
    return state, stand_in.install(tmp_path / "docker", "agent_docker", dir=str(state))


def calls(state: Path) -> List[List[str]]:
    """The argvs the stand-in docker got, oldest first."""
    return [json.loads(line) for line in (state / "calls").read_text().splitlines()]


def set_health(state: Path, output: str, rc: int) -> None:
    """What ``raibid-agent health --json`` in the image prints next, and its exit status."""
    agent_tools.set_health(str(state / "bin"), output, rc)
