"""buildkit refuses bad input before anything changes, naming the variable and expected form.

Runs the real role with ansible-playbook on this machine in check mode; every case must fail in the
validation phase (argument specs or a "Validate ..." task).
"""

from __future__ import annotations

import pytest
from conftest import role_refusals

BUILDKITD = {"buildkit_builder": "buildkitd"}

CASES = [
    pytest.param(
        {"buildkit_allow_disruptive_restart": "if-idle"},
        ["buildkit_allow_disruptive_restart", "bool"],
        id="disruptive-restart-not-a-bool",
    ),
    pytest.param(
        {"buildkit_users": ["ci", "Bad User"]},
        ["buildkit_users", "login name", "Bad User"],
        id="builder-user-not-a-login-name",
    ),
    pytest.param(
        {"buildkit_builder": "kaniko"},
        ["buildkit_builder", "kaniko", "docker, buildkitd"],
        id="unknown-builder-mode",
    ),
    pytest.param(
        {"dgx_spark_buildkit_builder": "kaniko"},
        ["dgx_spark_buildkit_builder", "kaniko", "docker, buildkitd"],
        id="unknown-collection-builder-mode",
    ),
    pytest.param(
        {"buildkit_max_parallelism": 0},
        ["buildkit_max_parallelism must be 1 or more", "got 0"],
        id="max-parallelism-below-1",
    ),
    pytest.param(
        {"buildkit_gc_max_used_space_mb": -1},
        ["buildkit_gc_max_used_space_mb (-1)", "must be 0 or more"],
        id="negative-gc-size",
    ),
    pytest.param(
        {"buildkit_gc_reserved_space_mb": "lots"},
        ["buildkit_gc_reserved_space_mb", "int"],
        id="gc-size-wrong-type",
    ),
    pytest.param(
        {"buildkit_gc_keep_duration": "2 days"},
        ["buildkit_gc_keep_duration must be a duration", '"2 days"'],
        id="gc-keep-duration-not-a-duration",
    ),
    pytest.param(
        {"buildkit_mirror_upstreams": ["docker.io", "quay.io"]},
        ["buildkit_mirror_upstreams names upstreams", "quay.io", "configured: docker.io, ghcr.io"],
        id="unknown-upstream-referenced",
    ),
    pytest.param(
        {**BUILDKITD},
        ["buildkit_builder is buildkitd, so buildkit_release_src must name", 'got src ""'],
        id="buildkitd-without-release",
    ),
    pytest.param(
        {**BUILDKITD, "buildkit_release_src": "https://example.invalid/buildkit-v0.32.2.linux-arm64.tar.gz"},
        ["buildkit_release_checksum as sha256:<64 hex>", 'checksum ""'],
        id="buildkitd-url-without-checksum",
    ),
    pytest.param(
        {**BUILDKITD, "buildkit_release_src": "ftp://example.invalid/buildkit.tar.gz"},
        ["by http(s) URL or by a path on the controller", "ftp://"],
        id="buildkitd-unsupported-url-scheme",
    ),
    pytest.param(
        {"buildkit_socket_path": "run/buildkit/buildkitd.sock"},
        ["buildkit_socket_path must be", "absolute paths"],
        id="relative-socket-path",
    ),
    pytest.param(
        {"buildkit_max_parallelism": 0, "buildkit_users": ["ci", "Bad User"]},
        ["buildkit_max_parallelism must be 1 or more", "buildkit_users", "login name", "Bad User"],
        id="two-bad-settings-named-in-one-failure",
    ),
]


refusals = role_refusals("buildkit", CASES)


@pytest.mark.parametrize(("role_vars", "expected"), CASES)
def test_buildkit_refuses_bad_input(refusals, request, role_vars, expected):
    refusals[request.node.callspec.id].assert_refused(expected)
