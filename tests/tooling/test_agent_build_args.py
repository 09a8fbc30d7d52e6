"""The agent image's build arguments: the end-to-end build (tests/testbed/images/e2e_images.py), the
agent_image scenario and the lab share one BuildKit cache, so they must build with the same arguments or
each compiles the cargo tools again (at opt-level 3 most of a cold CI run's build time)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "testbed" / "images"))
import e2e_images  # tests/testbed/images/e2e_images.py

sys.path.pop(0)

DOCKERFILE = (ROOT / "image" / "Dockerfile").read_text(encoding="utf-8")
ROLE_VARS = yaml.safe_load((ROOT / "roles" / "agent_image" / "vars" / "main.yml").read_text(encoding="utf-8"))
ROLE_DEFAULTS = yaml.safe_load((ROOT / "roles" / "agent_image" / "defaults" / "main.yml").read_text(encoding="utf-8"))
SCENARIO_VARS = yaml.safe_load((ROOT / "molecule" / "agent_image" / "molecule.yml").read_text(encoding="utf-8"))[
    "provisioner"
]["inventory"]["group_vars"]["all"]
LAB_VARS = yaml.safe_load((ROOT / "inventory" / "local" / "group_vars" / "dgx_spark.yml").read_text(encoding="utf-8"))


def role_build_arg_names() -> set[str]:
    """The build-arg names the role passes (vars/main.yml agent_image_build_args and the tools' names)."""
    fixed = set(re.findall(r"'([A-Z][A-Z0-9_]*)':", ROLE_VARS["agent_image_build_args"]))
    return fixed | set(ROLE_VARS["agent_image_tool_build_args"].values())


def dockerfile_args() -> dict[str, list[str]]:
    """ARG name -> its defaults, one per stage that declares it."""
    found: dict[str, list[str]] = {}
    for name, default in re.findall(r"^ARG ([A-Z][A-Z0-9_]*)(?:=(\S*))?$", DOCKERFILE, re.M):
        found.setdefault(name, []).append(default)
    return found


def test_the_end_to_end_build_passes_what_the_role_passes():
    assert "CARGO_TOOLS_OPT_LEVEL" in role_build_arg_names()
    assert set(e2e_images.agent_build_args()) == role_build_arg_names()
    assert role_build_arg_names() <= set(dockerfile_args())


def test_the_tools_opt_level_is_the_same_wherever_the_cache_is_shared():
    level = e2e_images.agent_build_args()["CARGO_TOOLS_OPT_LEVEL"]
    assert level == str(SCENARIO_VARS["agent_image_cargo_tools_opt_level"])
    assert level == str(LAB_VARS["agent_image_cargo_tools_opt_level"])


def test_the_role_and_the_dockerfile_default_to_cargos_release_opt_level():
    assert ROLE_DEFAULTS["agent_image_cargo_tools_opt_level"] == "3"
    # Declared in the tools stage (the compile) and the runtime stage (the label), both defaulting to 3.
    assert dockerfile_args()["CARGO_TOOLS_OPT_LEVEL"] == ["3", "3"]
    assert "CARGO_PROFILE_RELEASE_OPT_LEVEL=${CARGO_TOOLS_OPT_LEVEL}" in DOCKERFILE
    assert 'raibid.agent.tools-opt-level="${CARGO_TOOLS_OPT_LEVEL}"' in DOCKERFILE
