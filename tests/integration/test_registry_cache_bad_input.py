"""registry_cache refuses bad input before anything changes, naming the variable and expected form.

Runs the real role with ansible-playbook on this machine in check mode; every case must fail in the
validation phase (argument specs or a "Validate ..." task), before any package or file is touched.
"""

from __future__ import annotations

import pytest
from conftest import role_refusals

DOCKER_HUB = {"port": 5001, "remote": "https://registry-1.docker.io"}

CASES = [
    pytest.param(
        {"dgx_spark_registry_mirrors": {"docker.io": {"port": 5001, "remote": "registry-1.docker.io"}}},
        ["registry_cache_mirrors[docker.io].remote", "dgx_spark_registry_mirrors", "got 'registry-1.docker.io'"],
        id="mirror-remote-without-scheme",
    ),
    pytest.param(
        {"dgx_spark_registry_mirrors": {"docker.io": {"port": 5001}}},
        ["registry_cache_mirrors[docker.io].remote is missing"],
        id="mirror-without-remote",
    ),
    pytest.param(
        {"dgx_spark_registry_mirrors": {"docker.io": {**DOCKER_HUB, "username": "bot"}}},
        ["registry_cache_mirrors[docker.io]: username and password go together", "password unset"],
        id="mirror-username-without-password",
    ),
    pytest.param(
        {"dgx_spark_registry_mirrors": {"docker.io": {**DOCKER_HUB, "ttl": "one week"}}},
        ["registry_cache_mirrors[docker.io].ttl must be a duration", "got 'one week'"],
        id="mirror-ttl-not-a-duration",
    ),
    pytest.param(
        {"dgx_spark_registry_bind_address": "10.0.4.2"},
        [
            "dgx_spark_registry_bind_address: a non-loopback address (10.0.4.2) needs dgx_spark_registry_auth_users",
            "dgx_spark_registry_tls_mode",
            "bind to 127.0.0.1",
        ],
        id="lan-bind-without-auth-or-tls",
    ),
    pytest.param(
        {
            "dgx_spark_registry_bind_address": "0.0.0.0",
            "dgx_spark_registry_auth_users": [{"name": "ci", "password": "x"}],
        },
        ["non-loopback address (0.0.0.0)", "found 1 user(s) and tls mode none"],
        id="lan-bind-with-auth-but-no-tls",
    ),
    pytest.param(
        {"dgx_spark_registry_bind_address": "http://10.0.4.2:5000"},
        ["dgx_spark_registry_bind_address must be an IPv4 address", "no scheme", "got 'http://10.0.4.2:5000'"],
        id="bind-address-with-scheme-and-port",
    ),
    pytest.param(
        {
            "dgx_spark_registry_bind_address": "10.0.4.2",
            "dgx_spark_registry_tls_mode": "selfsigned",
            "dgx_spark_registry_auth_users": [{"name": "ci", "password": "x"}],
            "dgx_spark_registry_mirrors": {"docker.io": {**DOCKER_HUB, "username": "u", "password": "p"}},
        },
        ["dgx_spark_registry_mirrors[docker.io] has upstream credentials", "moby#30880"],
        id="private-docker-hub-proxy-with-users",
    ),
    pytest.param(
        {"registry_cache_bind_address": "10.0.4.3", "registry_cache_tls_mode": "selfsigned"},
        [
            "registry_cache_bind_address (10.0.4.3) differs from dgx_spark_registry_bind_address (127.0.0.1)",
            "registry_cache_tls_mode (selfsigned) differs from dgx_spark_registry_tls_mode (none)",
            "set those instead",
        ],
        id="role-registry-settings-differ-from-collection-wide",
    ),
    pytest.param(
        {"registry_cache_tls_renew_days": 900},
        ["registry_cache_tls_renew_days must be between 1 and 824", "got 900"],
        id="renew-threshold-beyond-the-certificate-lifetime",
    ),
    pytest.param(
        {"registry_cache_tls_renew_days": "soon"},
        ["registry_cache_tls_renew_days", "int"],
        id="renew-threshold-not-a-number",
    ),
    pytest.param(
        {"registry_cache_gc_keep_tags": -1, "registry_cache_gc_protected_tags": ["latest", "-bad tag"]},
        ["registry_cache_gc_keep_tags (-1)", "must be 0 or more", 'got ["-bad tag"]'],
        id="gc-retention-negative-and-bad-protected-tag",
    ),
    pytest.param(
        {"registry_cache_gc_untagged_min_age_hours": "a day"},
        ["registry_cache_gc_untagged_min_age_hours", "int"],
        id="gc-untagged-min-age-not-a-number",
    ),
    pytest.param(
        {"dgx_spark_registry_local_port": 70000},
        ["registry_cache_local_port", "between 1 and 65535", "local 70000"],
        id="port-out-of-range",
    ),
    pytest.param(
        {"dgx_spark_registry_mirrors": {"docker.io": {"port": 5000, "remote": "https://registry-1.docker.io"}}},
        ["all different", "local 5000", "docker.io 5000"],
        id="port-duplicated-between-instances",
    ),
    pytest.param(
        {"registry_cache_k3s_upstreams": ["docker.io", "quay.io"]},
        ["registry_cache_k3s_upstreams names upstreams", "quay.io", "configured: docker.io, ghcr.io"],
        id="unknown-upstream-referenced",
    ),
    pytest.param(
        {"registry_cache_mirrors": "docker.io"},
        ["registry_cache_mirrors", "dict"],
        id="mirrors-wrong-type",
    ),
    pytest.param(
        {"registry_cache_tls_mode": "acme"},
        ["registry_cache_tls_mode", "acme", "none, selfsigned, provided"],
        id="unknown-tls-mode",
    ),
    pytest.param(
        {"dgx_spark_registry_tls_mode": "provided"},
        ["registry_cache_tls_mode is provided", "registry_cache_tls_cert_path"],
        id="provided-tls-without-files",
    ),
    pytest.param(
        {"dgx_spark_registry_auth_users": [{"name": "ci:admin", "password": "x"}]},
        ["registry_cache_auth_users[0].name", "no colon", "got 'ci:admin'"],
        id="htpasswd-user-with-colon",
    ),
    pytest.param(
        {"registry_cache_allow_disruptive_restart": "sometimes"},
        ["registry_cache_allow_disruptive_restart", "sometimes", "not a valid boolean"],
        id="allow-disruptive-restart-not-a-bool",
    ),
    pytest.param(
        {"dgx_spark_allow_disruptive_restarts": "maybe"},
        ["dgx_spark_allow_disruptive_restarts", "maybe", "not a valid boolean"],
        id="collection-allow-disruptive-restarts-not-a-bool",
    ),
    pytest.param(
        {"registry_cache_allow_disruptive_restart": ["local"]},
        ["registry_cache_allow_disruptive_restart", "bool"],
        id="allow-disruptive-restart-list-of-instances",
    ),
    pytest.param(
        {"registry_cache_data_dir": "var/lib/registry"},
        ["registry_cache_data_dir", "absolute paths"],
        id="relative-data-dir",
    ),
]


refusals = role_refusals("registry_cache", CASES)


@pytest.mark.parametrize(("role_vars", "expected"), CASES)
def test_registry_cache_refuses_bad_input(refusals, request, role_vars, expected):
    refusals[request.node.callspec.id].assert_refused(expected)


def test_registry_cache_keeps_secrets_out_of_validation_output(run_role):
    secret = "hunter2-do-not-print"
    result = run_role(
        "registry_cache",
        {
            "dgx_spark_registry_mirrors": {
                "docker.io": {"port": 5001, "remote": "nope", "username": "u", "password": secret}
            }
        },
    )
    assert result.rc != 0
    assert secret not in result.output


def test_registry_cache_names_every_broken_setting_in_one_failure(run_role):
    """A bad mirror and a bad user: the one validation failure names both, and neither password."""
    secrets = ["mirror-pw-do-not-print", "user-pw-do-not-print"]
    result = run_role(
        "registry_cache",
        {
            "dgx_spark_registry_mirrors": {
                "docker.io": {"port": 5001, "remote": "nope", "username": "u", "password": secrets[0]}
            },
            "dgx_spark_registry_auth_users": [{"name": "ci:admin", "password": secrets[1]}],
        },
    )
    result.assert_refused(["registry_cache_mirrors[docker.io].remote", "registry_cache_auth_users[0].name", "no colon"])
    assert not any(secret in result.output for secret in secrets)
