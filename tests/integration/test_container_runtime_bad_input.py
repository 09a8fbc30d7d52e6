"""container_runtime refuses bad input before anything changes, naming the variable and expected form.

Runs the real role with ansible-playbook on this machine in check mode; every case must fail in the
validation phase (argument specs or a "Validate ..." task), before the node is even inspected.
"""

from __future__ import annotations

import pytest
from conftest import role_refusals

CASES = [
    pytest.param(
        {"container_runtime_live_restore": "sometimes"},
        ["container_runtime_live_restore", "bool"],
        id="wrong-type-bool",
    ),
    pytest.param(
        {"container_runtime_docker_users": {"agent": True}},
        ["container_runtime_docker_users", "list"],
        id="wrong-type-users-not-a-list",
    ),
    pytest.param(
        {"container_runtime_mode": "podman"},
        ["container_runtime_mode", "podman", "auto, adopt, distribution, docker_ce"],
        id="unknown-mode",
    ),
    pytest.param(
        {"container_runtime_registry_mirrors": ["127.0.0.1:5001"]},
        ["container_runtime_registry_mirrors", "with its scheme", "127.0.0.1:5001"],
        id="mirror-url-without-scheme",
    ),
    pytest.param(
        {"container_runtime_insecure_registries": ["http://10.0.4.2:5000"]},
        ["container_runtime_insecure_registries", "without a scheme", "http://10.0.4.2:5000"],
        id="insecure-registry-with-scheme",
    ),
    pytest.param(
        {"container_runtime_log_opts": {"max-size": "10m", "max-sise": "10m"}},
        ["container_runtime_log_opts", "max-sise", "not accepted by log driver json-file"],
        id="unknown-log-driver-option",
    ),
    pytest.param(
        {"container_runtime_log_opts": {"max-size": "banana"}},
        ["container_runtime_log_opts", "max-size must be a positive size", "banana"],
        id="invalid-log-rotation-size",
    ),
    pytest.param(
        {"container_runtime_log_driver": "fluentd"},
        ["container_runtime_log_driver", "fluentd", "json-file"],
        id="unknown-log-driver",
    ),
    pytest.param(
        {"container_runtime_builder_gc_keep_storage": "-5GB"},
        ["container_runtime_builder_gc_keep_storage", "size of 0 or more", "-5GB"],
        id="negative-gc-size",
    ),
    pytest.param(
        {"container_runtime_default_address_pools": [{"base": "10.300.0.0/16", "size": 24}]},
        ["container_runtime_default_address_pools", "IPv4 CIDR", "10.300.0.0/16"],
        id="invalid-cidr-in-address-pool",
    ),
    pytest.param(
        {"container_runtime_default_address_pools": [{"base": "10.200.0.0/16", "size": 8}]},
        ["container_runtime_default_address_pools", "from the base's prefix to 32", "10.200.0.0/16"],
        id="address-pool-size-shorter-than-base",
    ),
    pytest.param(
        {"container_runtime_docker_users": ["agent", "Bad User"]},
        ["container_runtime_docker_users", "login name", "Bad User"],
        id="invalid-user-name",
    ),
    pytest.param(
        {"container_runtime_daemon_extra": {"log-driver": "local", "max-concurrent-downloads": 6}},
        ["container_runtime_daemon_extra sets", "log-driver", "use container_runtime_log_driver instead"],
        id="extra-sets-owned-key",
    ),
    pytest.param(
        {"container_runtime_mode": "docker_ce"},
        ["container_runtime_mode=docker_ce needs container_runtime_docker_ce_repo_url"],
        id="docker-ce-without-repo",
    ),
    pytest.param(
        {"container_runtime_data_root": "var/lib/docker"},
        ["container_runtime_data_root must be an absolute path", "var/lib/docker"],
        id="relative-data-root",
    ),
    pytest.param(
        {"container_runtime_service_environment": {"BAD-NAME": "1"}},
        ["container_runtime_service_environment", "BAD-NAME"],
        id="invalid-environment-name",
    ),
    pytest.param(
        {"container_runtime_http_proxy": "proxy.lab:3128"},
        ["container_runtime_http_proxy", "http(s) URLs", "proxy.lab:3128"],
        id="proxy-without-scheme",
    ),
    pytest.param(
        {"container_runtime_nvidia_mode": "turbo"},
        ["container_runtime_nvidia_mode", "turbo", "auto, legacy, cdi, csv"],
        id="unknown-nvidia-mode",
    ),
    pytest.param(
        {"container_runtime_docker_ce_version": "latest"},
        ["container_runtime_docker_ce_version", "latest", "apt version string"],
        id="docker-ce-version-not-a-version",
    ),
    pytest.param(
        {"container_runtime_allow_image_store_switch": "maybe"},
        ["container_runtime_allow_image_store_switch", "bool"],
        id="image-store-switch-not-a-bool",
    ),
    pytest.param(
        {"container_runtime_allow_disruptive_restart": "later"},
        ["container_runtime_allow_disruptive_restart", "bool"],
        id="disruptive-restart-not-a-bool",
    ),
    pytest.param(
        {"dgx_spark_allow_disruptive_restarts": "sometimes"},
        ["dgx_spark_allow_disruptive_restarts", "bool"],
        id="collection-disruptive-restarts-not-a-bool",
    ),
    pytest.param(
        {"container_runtime_owned_keys_path": "etc/docker/owned.json"},
        ["container_runtime_owned_keys_path must be an absolute path", "etc/docker/owned.json"],
        id="relative-owned-keys-path",
    ),
    pytest.param(
        {"container_runtime_log_driver": "local", "container_runtime_log_opts": {"labels": "a"}},
        ["container_runtime_log_opts", "labels", "not accepted by log driver local"],
        id="log-opts-for-another-driver",
    ),
    pytest.param(
        {"container_runtime_data_root": "var/lib/docker", "container_runtime_docker_users": ["Bad User"]},
        [
            "container_runtime_data_root must be an absolute path",
            "container_runtime_docker_users",
            "login name",
            "Bad User",
        ],
        id="two-bad-settings-named-in-one-failure",
    ),
]


refusals = role_refusals("container_runtime", CASES)


@pytest.mark.parametrize(("role_vars", "expected"), CASES)
def test_container_runtime_refuses_bad_input(refusals, request, role_vars, expected):
    refusals[request.node.callspec.id].assert_refused(expected)


def _installed(package: str) -> bool:
    """Whether dpkg on this machine has the package installed."""
    try:
        status = open("/var/lib/dpkg/status", encoding="utf-8").read()
    except FileNotFoundError:
        return False
    return any(
        stanza.startswith(f"Package: {package}\n") and "Status: install ok installed" in stanza
        for stanza in status.split("\n\n")
    )


@pytest.mark.skipif(
    not _installed("docker.io"), reason="needs docker.io installed on this machine (the test bed's engine)"
)
def test_docker_ce_mode_refuses_to_replace_an_installed_engine(run_role):
    """docker_ce over Debian's docker.io must stop in the Check phase, saying what it found and would do."""
    result = run_role(
        "container_runtime",
        {
            "container_runtime_mode": "docker_ce",
            "container_runtime_docker_ce_repo_url": "https://apt.example.test/linux/debian",
        },
    )
    assert result.rc != 0, result.output
    assert result.changed == 0, result.output
    assert result.failed_task().startswith("Check the install mode would not replace"), result.output
    assert "this node has docker.io" in result.output
    assert "would replace docker.io with docker-ce" in result.output
    assert "never does silently" in result.output
