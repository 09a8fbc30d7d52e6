"""Fixtures of the module tests; ``run_module`` is the one way they run a module."""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable, Dict, Tuple

import pytest
from ansible.module_utils import _internal as ansible_internal

from ansible_collections.raibid.dgx_spark.tests.unit.plugins.modules.module_runner import run_main

ModuleRunner = Callable[[ModuleType, Dict[str, Any]], Tuple[int, Dict[str, Any]]]


@pytest.fixture
def run_module(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> ModuleRunner:
    """``run_module(module, args)``: ``(exit code, result)`` of ``module.main()`` on ``args``
    (``_ansible_check_mode`` and the like included).

    Runs as a module does on a host even after another test imported controller code: importing a
    controller plugin (a filter) in the same pytest process sets ansible's is_controller, and module
    warnings would then go to the controller's Display instead of the result.
    """
    monkeypatch.setattr(ansible_internal, "is_controller", False)

    def run(module: ModuleType, args: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        return run_main(module, args, capsys)

    return run
