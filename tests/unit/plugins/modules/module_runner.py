"""Running a module's main() in this process, for the module tests (the fixture is in conftest.py)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any, Dict, Tuple

import pytest
from ansible.module_utils.testing import patch_module_args


def run_main(
    module: ModuleType, args: Dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> Tuple[int, Dict[str, Any]]:
    """``(exit code, result)`` of ``module.main()`` with ``args`` as its module arguments."""
    capsys.readouterr()
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        module.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def shown(result: Dict[str, Any]) -> str:
    """The result as JSON without Ansible's echo of the arguments (``invocation``, shown at -vvv and
    masked there by no_log): what the module itself reports."""
    return json.dumps({key: value for key, value in result.items() if key != "invocation"})
