"""agent_image refuses bad input before anything changes (before any build), naming the variable.

Runs the real role with ansible-playbook on this machine in check mode; every case must fail in the
validation phase (argument specs or a "Validate ..." task).
"""

from __future__ import annotations

import pytest
from conftest import role_refusals

CASES = [
    pytest.param(
        {"agent_image_cache_type": "s3"},
        ["agent_image_cache_type", "s3", "registry, local, inline, none"],
        id="unknown-cache-type",
    ),
    pytest.param(
        {"agent_image_version": "1.0 beta"},
        ["agent_image_version and agent_image_moving_tag must be different Docker tags", '"1.0 beta"'],
        id="invalid-version-tag",
    ),
    pytest.param(
        {"agent_image_moving_tag": "0.1.0"},
        ["agent_image_version and agent_image_moving_tag must be different Docker tags"],
        id="moving-tag-equals-version",
    ),
    pytest.param(
        {"agent_image_name": "Raibid CI"},
        ["agent_image_name must be a lower-case repository path", '"Raibid CI"'],
        id="invalid-image-name",
    ),
    pytest.param(
        {"agent_image_agent_source": "/nonexistent/agent-src"},
        ["agent_image_agent_source must be empty", "/nonexistent/agent-src"],
        id="missing-agent-source",
    ),
    pytest.param(
        {"agent_image_size_budget_mb": "large"},
        ["agent_image_size_budget_mb", "int"],
        id="size-budget-not-a-number",
    ),
    pytest.param(
        {"agent_image_size_budget_mb": 0},
        ["agent_image_size_budget_mb must be a positive number of MB", "got 0"],
        id="size-budget-zero",
    ),
    pytest.param(
        {"dgx_spark_extra_ca_certificates": ["/nonexistent/lab-proxy-ca.crt"]},
        ["dgx_spark_extra_ca_certificates must be a list", "/nonexistent/lab-proxy-ca.crt"],
        id="unreadable-ca-file",
    ),
    pytest.param(
        {"dgx_spark_extra_ca_certificates": "/etc/ssl/certs/ca-certificates.crt"},
        ["dgx_spark_extra_ca_certificates", "list"],
        id="ca-not-a-list",
    ),
    pytest.param(
        {"agent_image_cargo_tools": {"cargo-nextest": "0.9.100", "cargo-audit": "0.22.1"}},
        ["agent_image_cargo_tools must map exactly cargo-audit, cargo-deny, cargo-nextest"],
        id="cargo-tool-missing",
    ),
    pytest.param(
        {"agent_image_cargo_tools": {"cargo-nextest": "latest", "cargo-audit": "0.22.1", "cargo-deny": "0.18.3"}},
        ["agent_image_cargo_tools must map exactly", "latest"],
        id="cargo-tool-version-not-semver",
    ),
    pytest.param(
        {"agent_image_cargo_tools_opt_level": "fast"},
        ["agent_image_cargo_tools_opt_level", "fast", "0, 1, 2, 3, s, z"],
        id="unknown-tools-opt-level",
    ),
    pytest.param(
        {"agent_image_health_docker": "sometimes"},
        ["agent_image_health_docker", "sometimes"],
        id="unknown-health-docker-level",
    ),
    pytest.param(
        {"agent_image_base_image_archive": "/nonexistent/rust-base.tar"},
        ["agent_image_base_image_archive empty or a readable image archive", "/nonexistent/rust-base.tar"],
        id="missing-base-archive",
    ),
    pytest.param(
        {"agent_image_cache_type": "local", "agent_image_cache_dir": "var/cache/agent"},
        ["with an absolute agent_image_cache_dir for local", '"var/cache/agent"'],
        id="relative-local-cache-dir",
    ),
    pytest.param(
        {"buildkit_cache_export": "inline", "agent_image_cache_type": "local"},
        ["agent_image_cache_type local needs a builder that can export cache", "classic image store"],
        id="local-cache-on-classic-store",
    ),
    pytest.param(
        {"agent_image_name": "Raibid CI", "agent_image_cargo_tools": {"cargo-nextest": "0.9.100"}},
        ["agent_image_name must be a lower-case repository path", "agent_image_cargo_tools must map exactly"],
        id="two-bad-settings-named-in-one-failure",
    ),
]


refusals = role_refusals("agent_image", CASES)


@pytest.mark.parametrize(("role_vars", "expected"), CASES)
def test_agent_image_refuses_bad_input(refusals, request, role_vars, expected):
    refusals[request.node.callspec.id].assert_refused(expected)
