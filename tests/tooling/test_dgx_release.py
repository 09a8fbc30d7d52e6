"""/etc/dgx-release of the simulated DGX OS nodes has one home, molecule/_shared/vars/dgx-release.yml;
the unit test of node_facts keeps the same text inline (ansible-test units runs on the shipped tree,
without molecule/), and this checks that the copy agrees and that no other file writes its own."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import support  # tests/support.py

UNIT_TEST = support.ROOT / "tests" / "unit" / "plugins" / "module_utils" / "test_node_facts_utils.py"


def module_constant(path: Path, name: str) -> str:
    """The string assigned to `name` at the top level of `path` (read, not imported)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} assigns no {name}")


def test_the_unit_tests_copy_is_the_shared_file():
    assert module_constant(UNIT_TEST, "DGX_RELEASE") == support.dgx_release()


def test_it_names_a_dgx_os_release_on_a_spark():
    fields = dict(line.split("=", 1) for line in support.dgx_release().splitlines())
    assert fields["DGX_NAME"] == '"DGX Spark"'
    assert fields["DGX_SWBUILD_VERSION"] == '"7.3.1"'


def test_no_other_playbook_writes_its_own():
    owners = sorted(
        str(path.relative_to(support.ROOT))
        for top in ("molecule", "tests/testbed")
        for path in (support.ROOT / top).rglob("*.yml")
        if "DGX_NAME=" in path.read_text(encoding="utf-8") and path != support.DGX_RELEASE_VARS
    )
    assert owners == [], f"write /etc/dgx-release from raibid_node_dgx_release ({support.DGX_RELEASE_VARS})"
