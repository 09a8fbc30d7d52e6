"""Random test order is on demand: pytest-randomly is installed (requirements-dev.txt) but off by
default (pyproject.toml addopts `-p no:randomly`), and `pytest -p randomly` turns it on
(docs/testbed.md, "Test order")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
THIS = str(Path(__file__).relative_to(ROOT))


def collect(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", *args, THIS],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_off_by_default():
    assert "randomly-seed" not in collect()


def test_on_with_p_randomly():
    assert "Using --randomly-seed=" in collect("-p", "randomly")
