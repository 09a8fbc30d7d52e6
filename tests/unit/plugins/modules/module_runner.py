"""Running a module's main() in this process, for the module tests (the fixture is in conftest.py)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, Dict, Tuple

import pytest
from ansible.module_utils.common import warnings as module_warnings
from ansible.module_utils.testing import patch_module_args


def run_main(
    module: ModuleType, args: Dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> Tuple[int, Dict[str, Any]]:
    """``(exit code, result)`` of ``module.main()`` with ``args`` as its module arguments.

    A module runs in a process of its own: the warnings and deprecations an earlier module run of this
    pytest process collected (ansible keeps them in module-level registries) are cleared first."""
    module_warnings._global_warnings.clear()
    module_warnings._global_deprecations.clear()
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def shown(result: Dict[str, Any]) -> str:
    """The result as JSON without Ansible's echo of the arguments (``invocation``, shown at -vvv and
    masked there by no_log): what the module itself reports."""
    return json.dumps({key: value for key, value in result.items() if key != "invocation"})
