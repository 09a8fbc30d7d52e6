"""preflight refuses bad input before anything changes, naming the variable and expected form.

Runs the real role with ansible-playbook on this machine (Debian 12, x86_64) in check mode.
"""

from __future__ import annotations

import pytest
from conftest import role_refusals

CASES = [
    # The collection-wide registry settings stop the run in preflight, before container_runtime writes
    # daemon.json from the endpoint map they give.
    pytest.param(
        {"dgx_spark_registry_bind_address": "0.0.0.0"},
        [
            "dgx_spark_registry_bind_address: a non-loopback address (0.0.0.0) needs dgx_spark_registry_auth_users",
            "found 0 user(s) and tls mode none",
        ],
        "validate",
        id="registry-wildcard-bind-without-tls-or-users",
    ),
    pytest.param(
        {"dgx_spark_registry_bind_address": "fd00::2]:5000"},
        ["dgx_spark_registry_bind_address must be an IPv4 address", "got 'fd00::2]:5000'"],
        "validate",
        id="registry-bind-address-with-port",
    ),
    pytest.param(
        {"dgx_spark_registry_server": "cache01"},
        ["dgx_spark_registry_server (cache01) must be the inventory name of the host", "no such host"],
        "validate",
        id="registry-server-not-in-inventory",
    ),
    pytest.param(
        {"dgx_spark_registry_tls_mode": "acme"},
        ["dgx_spark_registry_tls_mode must be one of: none, selfsigned, provided, got: acme"],
        "validate",
        id="registry-unknown-tls-mode",
    ),
    pytest.param(
        {"preflight_min_memory_mb": "lots"},
        ["preflight_min_memory_mb", "int"],
        "validate",
        id="wrong-type",
    ),
    pytest.param(
        {"preflight_supported_architectures": ["aarch64", "sparc64"]},
        ["preflight_supported_architectures", "sparc64", "aarch64, x86_64"],
        "validate",
        id="unknown-architecture-choice",
    ),
    pytest.param(
        {"preflight_supported_os": ["windows"]},
        ["preflight_supported_os", "windows", "dgx_os"],
        "validate",
        id="unknown-os-choice",
    ),
    pytest.param(
        {"preflight_min_free_disk_gb": -1},
        ["preflight_min_free_disk_gb", "-1", "0 or more"],
        "validate",
        id="negative-minimum",
    ),
    pytest.param(
        {"preflight_min_os_versions": {"debian": "twelve"}},
        ["preflight_min_os_versions", "twelve", "dotted version"],
        "validate",
        id="malformed-min-version",
    ),
    pytest.param(
        {"preflight_docker_data_root": "var/lib/docker"},
        ["preflight_docker_data_root", "absolute path"],
        "validate",
        id="relative-data-root",
    ),
    pytest.param(
        {"preflight_containerd_root": "var/lib/containerd"},
        ["preflight_containerd_root", "absolute paths", "var/lib/containerd"],
        "validate",
        id="relative-containerd-root",
    ),
    pytest.param(
        {"preflight_supported_os": ["dgx_os", "ubuntu"]},
        ["Unsupported OS: found debian 12", "dgx_os >= 7.0, ubuntu >= 22.04"],
        "check",
        id="unsupported-os-lists-supported",
    ),
    pytest.param(
        {"preflight_min_os_versions": {"debian": "99"}},
        ["Unsupported OS: found debian 12", "debian >= 99"],
        "check",
        id="os-too-old",
    ),
    pytest.param(
        {"preflight_min_free_disk_gb": 10_000_000},
        ["Too little free disk", "preflight_min_free_disk_gb requires 10000000 GiB"],
        "check",
        id="too-little-disk",
    ),
    pytest.param(
        {"preflight_min_memory_mb": 10_000_000},
        ["Too little memory", "preflight_min_memory_mb requires 10000000 MiB"],
        "check",
        id="too-little-memory",
    ),
    pytest.param(
        {"preflight_require_dgx_spark": True},
        ["preflight_require_dgx_spark is true but this node is not a DGX Spark"],
        "check",
        id="not-a-spark",
    ),
    pytest.param(
        {"preflight_require_gpu": True},
        ["preflight_require_gpu is true but no GPU was found"],
        "check",
        id="no-gpu",
    ),
    pytest.param(
        {"preflight_supported_architectures": ["aarch64"]},
        ["Unsupported architecture: found x86_64", "preflight_supported_architectures allows aarch64"],
        "check",
        id="x86-refused-when-only-aarch64",
    ),
    pytest.param(
        {"preflight_min_free_disk_gb": -1, "preflight_containerd_root": "var/lib/containerd"},
        [
            "preflight_min_free_disk_gb (-1)",
            "0 or more",
            "preflight_containerd_root must be absolute paths",
            "var/lib/containerd",
        ],
        "validate",
        id="two-bad-settings-named-in-one-failure",
    ),
]


# This machine passes preflight with the minimums at 0: the batch's one accepted case, beside the refused
# ones, shows that each case's result is its own (run_role_batch splits one run's output by host).
ACCEPTED = pytest.param({"preflight_min_free_disk_gb": 0, "preflight_min_memory_mb": 0}, [], "", id="this-machine")
refusals = role_refusals("preflight", [*CASES, ACCEPTED])


@pytest.mark.parametrize(("role_vars", "expected", "phase"), CASES)
def test_preflight_refuses_bad_input(refusals, request, role_vars, expected, phase):
    refusals[request.node.callspec.id].assert_refused(expected, "validation" if phase == "validate" else "Check ")


def test_preflight_accepts_this_machine(refusals):
    result = refusals["this-machine"]
    assert result.rc == 0, result.output
    assert result.failed == 0
    assert result.changed == 0
    assert "TASK [raibid.dgx_spark.preflight : Check the node against the support matrix" in result.output
    assert "Debian GNU/Linux 12" in result.output  # the check's message: what it found on this machine
    # Nothing of the refused cases' runs is in this one's result, nor of this one in theirs.
    assert "Too little memory" not in result.output
    assert "fatal:" not in result.output
    assert "[this-machine]" not in refusals["too-little-memory"].output
    assert "[too-little-memory]" in refusals["too-little-memory"].output
