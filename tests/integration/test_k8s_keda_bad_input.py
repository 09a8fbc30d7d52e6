"""keda refuses bad input before anything is fetched or applied, naming the variable and the rule."""

from __future__ import annotations

import pytest
from conftest import role_refusals

CASES = [
    pytest.param(
        {"keda_version": "2.20.1"},
        ["keda_version must be a version X.Y.Z of 2.20.2 or later", '"2.20.1"', "#7855"],
        id="version-before-2.20.2",
    ),
    pytest.param({"keda_version": "v2.20.2"}, ["keda_version", '"v2.20.2"'], id="version-with-v"),
    pytest.param({"keda_install_method": "kustomize"}, ["keda_install_method", "manifest, helm"], id="unknown-method"),
    pytest.param({"keda_manifest_sources": []}, ["keda_manifest_sources must list at least one"], id="no-manifest"),
    pytest.param(
        {"keda_resources": {"limits": {"cpu": "1"}}},
        ["keda_resources.limits.memory is mandatory"],
        id="missing-memory-limit",
    ),
    pytest.param(
        {"keda_resources": {"limits": {"memory": "1 GiB"}}},
        ["keda_resources.limits.memory", "1 GiB"],
        id="malformed-memory-limit",
    ),
]


refusals = role_refusals("keda", CASES)


@pytest.mark.parametrize(("role_vars", "expected"), CASES)
def test_keda_refuses_bad_input(refusals, request, role_vars, expected):
    result = refusals[request.node.callspec.id]
    result.assert_refused(expected)
    assert "Fetch release manifests from URLs" not in result.output
