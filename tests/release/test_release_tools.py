"""Tests of the release tooling itself: the drift check catches each kind of drift, the README
generator renders specs faithfully and its --check notices staleness, and the tarball filter
refuses development files. Synthetic roles in tmp_path; nothing in the checkout changes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import check  # tests/release/check.py
import role_docs  # tests/release/role_docs.py

SPECS = {
    "argument_specs": {
        "main": {
            "short_description": "Demo role.",
            "description": ["Uses C(docker) and I(care).", "See U(https://example.invalid/doc)."],
            "options": {
                "demo_port": {"type": "int", "default": 5000, "description": "Port | with a pipe."},
                "demo_mode": {"type": "str", "choices": ["a", "b"], "default": "a", "description": "Mode."},
                "demo_list": {"type": "list", "elements": "str", "default": ["x", "y"], "description": "List."},
                "demo_token": {"type": "str", "required": True, "no_log": True, "description": "Secret."},
                "demo_opt": {"type": "str", "description": "Optional, no default."},
            },
        }
    }
}
DEFAULTS = {"demo_port": 5000, "demo_mode": "a", "demo_list": ["x", "y"]}


def make_role(tmp_path: Path, specs=None, defaults=None, name: str = "demo") -> Path:
    role = tmp_path / "roles" / name
    (role / "meta").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(SPECS if specs is None else specs))
    (role / "meta" / "main.yml").write_text(yaml.safe_dump({"galaxy_info": {}, "dependencies": []}))
    (role / "defaults" / "main.yml").write_text(yaml.safe_dump(DEFAULTS if defaults is None else defaults))
    return role


def test_agreeing_role_has_no_drift(tmp_path):
    assert role_docs.drift(make_role(tmp_path)) == []


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        ({**DEFAULTS, "demo_extra": 1}, "sets demo_extra, which meta/argument_specs.yml does not document"),
        (
            {k: v for k, v in DEFAULTS.items() if k != "demo_port"},
            "demo_port has a default in the specs but is missing",
        ),
        ({**DEFAULTS, "demo_port": 5001}, "demo_port defaults differ: specs 5000, defaults/main.yml 5001"),
        ({**DEFAULTS, "demo_port": "5000"}, 'demo_port defaults differ: specs 5000, defaults/main.yml "5000"'),
        ({**DEFAULTS, "demo_list": ["y", "x"]}, "demo_list defaults differ"),
        ({**DEFAULTS, "demo_opt": ""}, "demo_opt is in defaults/main.yml ('') but has no default in the specs"),
        ({**DEFAULTS, "demo_token": "x"}, "demo_token is required, so it must have no default"),
    ],
)
def test_each_kind_of_drift_is_named(tmp_path, defaults, expected):
    problems = role_docs.drift(make_role(tmp_path, defaults=defaults))
    assert any(expected in p for p in problems), problems


def test_option_without_role_prefix_is_refused(tmp_path):
    specs = yaml.safe_load(yaml.safe_dump(SPECS))
    specs["argument_specs"]["main"]["options"]["port"] = {"type": "int", "description": "No prefix."}
    problems = role_docs.drift(make_role(tmp_path, specs=specs))
    assert problems == ["demo: option port does not carry the role prefix demo_"]


def test_role_without_specs_is_refused(tmp_path):
    role = make_role(tmp_path)
    (role / "meta" / "argument_specs.yml").unlink()
    assert "meta/argument_specs.yml is missing" in role_docs.drift(role)[0]


def test_readme_renders_every_option_with_type_default_and_markup(tmp_path):
    text = role_docs.render(make_role(tmp_path))
    assert text.startswith(role_docs.MARKER)
    assert "# raibid.dgx_spark.demo" in text
    assert "Uses `docker` and *care*." in text
    assert "<https://example.invalid/doc>" in text
    assert "| `demo_port` | int |  | `5000` | Port \\| with a pipe. |" in text
    assert "| `demo_list` | list of str |  | `[x, y]` |" in text
    assert "Choices: `a`, `b`." in text
    assert "| `demo_token` | str | yes |  | Secret.<br>Secret: never logged. |" in text
    assert "| `demo_opt` | str |  |  | Optional, no default. |" in text


def test_check_mode_notices_missing_and_stale_readme_and_write_mode_fixes_it(tmp_path):
    role = make_role(tmp_path)
    argv = ["--roles-dir", str(role.parent), "demo"]
    assert role_docs.main(["--check", *argv]) == 1
    assert role_docs.main(argv) == 0
    assert role_docs.main(["--check", *argv]) == 0
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    specs["argument_specs"]["main"]["options"]["demo_port"]["description"] = "Changed."
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(specs))
    assert role_docs.main(["--check", *argv]) == 1


@pytest.mark.parametrize(
    ("path", "forbidden"),
    [
        ("molecule/preflight/molecule.yml", True),
        ("tests/unit/plugins/test_x.py", True),
        ("tests/integration", True),
        ("tests/release/check.py", True),
        ("roles/x/__pycache__/a.cpython-311.pyc", True),
        ("plugins/modules/.pytest_cache/v", True),
        ("benchmarks/bench.py", True),
        ("tests/sanity/ignore-2.19.txt", False),
        ("tests/sanity", False),
        ("roles/preflight/tasks/main.yml", False),
        ("plugins/modules/node_facts.py", False),
        ("docs/testbed.md", False),
    ],
)
def test_tarball_filter(path, forbidden):
    assert bool(check.FORBIDDEN_IN_TARBALL.search(path)) is forbidden
