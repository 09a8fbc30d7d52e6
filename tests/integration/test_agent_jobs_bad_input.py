"""agent_jobs refuses bad input before anything is rendered or applied, naming the variable.

Runs the real role with ansible-playbook on this machine in check mode, with no cluster at all:
a case that slipped past validation would reach the cluster tasks and fail differently (no
kubeconfig), so each case also proves the refusal happened in the validation phase.
"""

from __future__ import annotations

import pytest
from conftest import role_refusals

SECRETS = {"agent_jobs_gitea_token": "tok-from-vault", "agent_jobs_redis_password": "pw-from-vault"}
NO_MEMORY_LIMIT = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2"}}

CASES = [
    pytest.param(
        {"agent_jobs_docker_access": "podman"},
        ["agent_jobs_docker_access", "podman", "dind, socket, none"],
        id="unknown-docker-access-mode",
    ),
    pytest.param(
        {"agent_jobs_docker_access": "socket"},
        ['agent_jobs_docker_access is "socket" but agent_jobs_allow_docker_socket is false', "root on the node"],
        id="socket-without-opt-in",
    ),
    pytest.param(
        {"agent_jobs_resources": NO_MEMORY_LIMIT},
        ["agent_jobs_resources.limits.memory is mandatory", "unified memory"],
        id="missing-agent-memory-limit",
    ),
    pytest.param(
        {"agent_jobs_resources": {"limits": {"memory": "8 GB"}}},
        ["agent_jobs_resources.limits.memory", "Kubernetes quantities", "8 GB"],
        id="malformed-agent-memory-limit",
    ),
    pytest.param(
        {"agent_jobs_resources": {"limits": {"memory": "8gb"}}},
        ["agent_jobs_resources.limits.memory", "8gb"],
        id="lower-case-unit-memory-limit",
    ),
    pytest.param(
        {"agent_jobs_dind_resources": NO_MEMORY_LIMIT},
        ["agent_jobs_dind_resources.limits.memory is mandatory"],
        id="missing-dind-memory-limit",
    ),
    pytest.param(
        {"agent_jobs_min_replicas": 3, "agent_jobs_max_replicas": 2},
        ["agent_jobs_max_replicas (2)", "not below agent_jobs_min_replicas (3)"],
        id="max-below-min-replicas",
    ),
    pytest.param(
        {"agent_jobs_max_replicas": 0},
        ["agent_jobs_max_replicas (0) must be at least 1"],
        id="zero-max-replicas",
    ),
    pytest.param(
        {"agent_jobs_queue_stream": ""},
        ['agent_jobs_queue_stream ("")', "must not be empty"],
        id="empty-stream-name",
    ),
    pytest.param(
        {"agent_jobs_consumer_group": "  "},
        ['agent_jobs_consumer_group ("  ")', "must not be empty"],
        id="blank-consumer-group",
    ),
    pytest.param(
        {"agent_jobs_redis_password": ""},
        ["agent_jobs_redis_password is empty", "Ansible Vault"],
        id="missing-vault-redis-password",
    ),
    pytest.param(
        {"agent_jobs_gitea_token": ""},
        ["agent_jobs_gitea_token is empty", "Ansible Vault"],
        id="missing-vault-gitea-token",
    ),
    pytest.param(
        {"agent_jobs_image_digest": "sha256:abc"},
        ["agent_jobs_image_digest must be empty or sha256:<64 hex>", "sha256:abc"],
        id="malformed-digest",
    ),
    pytest.param(
        {"agent_jobs_scaling_strategy": "default"},
        ["agent_jobs_scaling_strategy", "accurate, eager"],
        id="default-scaling-strategy-refused",
    ),
    pytest.param(
        {"agent_jobs_lag_count": 0},
        ["agent_jobs_lag_count (0)", "1 or more"],
        id="zero-lag-count",
    ),
    pytest.param(
        {"agent_jobs_namespace": "Raibid_CI"},
        ['agent_jobs_namespace ("Raibid_CI")', "DNS labels"],
        id="namespace-not-a-dns-label",
    ),
    # Job and ScaledJob limits.
    pytest.param(
        {"agent_jobs_backoff_limit": -1},
        ["agent_jobs_backoff_limit must be 0 or more (got -1)"],
        id="negative-backoff-limit",
    ),
    pytest.param(
        {"agent_jobs_ttl_seconds_after_finished": -5},
        ["agent_jobs_ttl_seconds_after_finished must be 0 or more (got -5)"],
        id="negative-ttl",
    ),
    pytest.param(
        {"agent_jobs_successful_jobs_history_limit": -1},
        ["agent_jobs_successful_jobs_history_limit must be 0 or more (got -1)"],
        id="negative-successful-history",
    ),
    pytest.param(
        {"agent_jobs_failed_jobs_history_limit": -2},
        ["agent_jobs_failed_jobs_history_limit must be 0 or more (got -2)"],
        id="negative-failed-history",
    ),
    pytest.param(
        {"agent_jobs_active_deadline_seconds": 0},
        ["agent_jobs_active_deadline_seconds must be 1 or more (got 0)"],
        id="zero-active-deadline",
    ),
    pytest.param(
        {"agent_jobs_active_deadline_seconds": -60},
        ["agent_jobs_active_deadline_seconds must be 1 or more (got -60)"],
        id="negative-active-deadline",
    ),
    # The Redis host is a host, not a URL.
    *[
        pytest.param(
            {"agent_jobs_redis_host": host},
            ["agent_jobs_redis_host must be a host name or IP address only", "agent_jobs_redis_port", host],
            id=f"redis-host-{name}",
        )
        for name, host in [
            ("url", "redis://redis.raibid-ci.svc:6379"),
            ("with-port", "redis.raibid-ci.svc:6379"),
            ("with-scheme", "tcp://redis"),
            ("with-space", "redis host"),
        ]
    ],
    pytest.param(
        {"agent_jobs_gitea_host": "https://gitea.lab:3000"},
        ["agent_jobs_gitea_host must be host or host:port", "without a scheme", "https://gitea.lab:3000"],
        id="gitea-host-with-scheme",
    ),
    pytest.param(
        {"agent_jobs_gitea_host": "gitea.lab:99999"},
        ["agent_jobs_gitea_host must be host or host:port (port 1-65535", "gitea.lab:99999"],
        id="gitea-port-out-of-range",
    ),
    # Paths and image references.
    pytest.param(
        {"agent_jobs_cargo_home": "home/agent/.cargo"},
        ["agent_jobs_cargo_home must be an absolute path", '"home/agent/.cargo"'],
        id="relative-cargo-home",
    ),
    pytest.param(
        {
            "agent_jobs_docker_access": "socket",
            "agent_jobs_allow_docker_socket": True,
            "agent_jobs_docker_socket_path": "docker.sock",
        },
        ["agent_jobs_docker_socket_path must be an absolute path", '"docker.sock"'],
        id="relative-docker-socket-path",
    ),
    pytest.param(
        {"agent_jobs_dind_image": "https://docker.io/library/docker:28-dind"},
        ["agent_jobs_dind_image must be an image reference", "https://docker.io/library/docker:28-dind"],
        id="dind-image-with-scheme",
    ),
    pytest.param(
        {"agent_jobs_dind_image": "docker:28 dind"},
        ["agent_jobs_dind_image must be an image reference", "docker:28 dind"],
        id="dind-image-with-space",
    ),
    pytest.param(
        {"agent_jobs_image_repository": "127.0.0.1:5000/raibid-ci-agent:latest"},
        ["agent_jobs_image_repository must be an image repository without tag or digest", "agent_jobs_image_tag"],
        id="image-repository-with-tag",
    ),
    pytest.param(
        {"agent_jobs_image_repository": "http://127.0.0.1:5000/Raibid"},
        ["agent_jobs_image_repository must be an image repository", "http://127.0.0.1:5000/Raibid"],
        id="image-repository-with-scheme",
    ),
    pytest.param(
        {"agent_jobs_agent_command": ["/usr/local/bin/raibid-agent", " "]},
        ["agent_jobs_agent_command must be a list of non-empty words"],
        id="agent-command-empty-word",
    ),
    # agent_jobs_extra_env.
    pytest.param(
        {"agent_jobs_extra_env": {"1BAD": "x", "WITH-DASH": "y"}},
        ["agent_jobs_extra_env: names must match", "1BAD", "WITH-DASH"],
        id="extra-env-bad-names",
    ),
    pytest.param(
        {"agent_jobs_extra_env": {"REDIS_HOST": "elsewhere"}},
        ["agent_jobs_extra_env", '["REDIS_HOST"] are set by the role itself', "role variables"],
        id="extra-env-role-owned-name",
    ),
    pytest.param(
        {"agent_jobs_extra_env": {"AGENT_MODE": "loop", "HEALTH_DOCKER": "off", "PIPELINE": "build"}},
        ["agent_jobs_extra_env", '["AGENT_MODE", "HEALTH_DOCKER"] are set by the role itself'],
        id="extra-env-agent-mode-and-health-are-the-role-s",
    ),
    pytest.param(
        {"agent_jobs_extra_env": {"GOOD": "ok", "NESTED": {"a": 1}, "LIST": [1]}},
        ["agent_jobs_extra_env", "values must be strings, numbers or booleans", "NESTED", "LIST"],
        id="extra-env-non-scalar-values",
    ),
    pytest.param(
        {"agent_jobs_docker_wait_seconds": 0},
        ["agent_jobs_docker_wait_seconds (0) must be 1 or more"],
        id="docker-wait-zero",
    ),
    # DinD certificate renewal.
    pytest.param(
        {"agent_jobs_dind_cert_renew_days": 0},
        ["agent_jobs_dind_cert_renew_days (0) must be at least 1 and below agent_jobs_dind_cert_days (365"],
        id="zero-renew-days",
    ),
    pytest.param(
        {"agent_jobs_dind_cert_days": 30, "agent_jobs_dind_cert_renew_days": 30},
        ["agent_jobs_dind_cert_renew_days (30) must be at least 1 and below agent_jobs_dind_cert_days (30"],
        id="renew-days-not-below-cert-days",
    ),
    # The registries as Pods reach them.
    *[
        pytest.param(
            {"dgx_spark_registry_bind_address": "0.0.0.0", "agent_jobs_registry_address": address},
            [
                "agent_jobs_registry_address must be the host name or IP address",
                "never loopback or a wildcard",
                address,
            ],
            id=f"registry-address-{name}",
        )
        for name, address in [
            ("loopback", "127.0.0.1"),
            ("wildcard", "0.0.0.0"),
            ("ipv6-loopback", "[::1]"),
            ("url", "https://10.0.4.2"),
            ("with-port", "10.0.4.2:5000"),
        ]
    ],
    pytest.param(
        {"agent_jobs_registry_address": "10.0.4.2"},
        [
            'agent_jobs_registry_address is "10.0.4.2" but the registries bind to 127.0.0.1',
            "dgx_spark_registry_bind_address",
            "leave agent_jobs_registry_address empty",
        ],
        id="registry-address-while-registries-on-loopback",
    ),
    pytest.param(
        {
            "agent_jobs_registry_address": "10.0.4.2",
            "dgx_spark_registry_bind_address": "10.0.4.2",
            "agent_jobs_registry_username": "ci",
        },
        ["agent_jobs_registry_username and agent_jobs_registry_password go together", "password empty"],
        id="registry-user-without-password",
    ),
    pytest.param(
        {"dgx_spark_registry_bind_address": "10.0.4.2", "agent_jobs_registry_ca": "/etc/raibid-registry/tls/ca.crt"},
        ["agent_jobs_registry_ca is empty or PEM text"],
        id="registry-ca-a-path-not-pem",
    ),
]


refusals = role_refusals("agent_jobs", CASES, SECRETS)


def test_no_case_shows_a_secret(refusals):
    """The whole run's output (every case, warnings included) never holds a secret it was given."""
    for secret in SECRETS.values():
        assert secret not in refusals.output


@pytest.mark.parametrize(("role_vars", "expected"), CASES)
def test_agent_jobs_refuses_bad_input(refusals, request, role_vars, expected):
    result = refusals[request.node.callspec.id]
    result.assert_refused(expected)
    # Nothing past validation ran: no rendering, no certificates, no cluster call.
    for later in ("Render the agent_jobs objects", "DinD CA and leaf keys", "Read the Kubernetes server version"):
        assert later not in result.output
    for secret in SECRETS.values():
        assert secret not in result.output


def test_socket_with_opt_in_warns_that_it_is_root_on_the_node(run_role, tmp_path):
    result = run_role(
        "agent_jobs",
        {
            **SECRETS,
            "agent_jobs_docker_access": "socket",
            "agent_jobs_allow_docker_socket": True,
            "agent_jobs_docker_gid": 999,
            "agent_jobs_kubernetes_version": "1.31",
            "agent_jobs_render_only": True,
            "agent_jobs_render_dir": str(tmp_path / "out"),
        },
    )
    assert result.rc == 0, result.output
    assert "WARNING: agent_jobs_docker_access=socket" in result.output
    assert "root on the node" in result.output


def test_socket_gid_lookup_names_the_missing_group(run_role, tmp_path):
    result = run_role(
        "agent_jobs",
        {
            **SECRETS,
            "agent_jobs_docker_access": "socket",
            "agent_jobs_allow_docker_socket": True,
            "agent_jobs_docker_group": "no-such-group-raibid",
            "agent_jobs_kubernetes_version": "1.31",
            "agent_jobs_render_only": True,
            "agent_jobs_render_dir": str(tmp_path / "out"),
        },
    )
    assert result.rc != 0
    assert result.failed_task() == "Check the docker group was found"
    assert 'no group "no-such-group-raibid" (agent_jobs_docker_group)' in result.output
    assert "Set agent_jobs_docker_gid" in result.output


def test_native_sidecar_refused_below_1_29_before_anything_is_applied(run_role):
    """Known only once the server version is (here given, else read from the cluster): refused by
    the validation step right after detection, before certificates, rendering or any apply."""
    result = run_role(
        "agent_jobs", {**SECRETS, "agent_jobs_dind_sidecar": "native", "agent_jobs_kubernetes_version": "1.20"}
    )
    result.assert_refused(
        ['agent_jobs_dind_sidecar is "native" but the Kubernetes server is 1.20', "1.29 or later", "auto (or legacy)"]
    )
    assert result.failed_task() == "Validate agent_jobs_dind_sidecar against the server version"
    for later in ("Render the agent_jobs objects", "DinD CA and leaf keys", "Apply the namespace"):
        assert later not in result.output


def test_registry_password_never_shown(run_role):
    result = run_role(
        "agent_jobs",
        {
            **SECRETS,
            "dgx_spark_registry_bind_address": "10.0.4.2",
            "agent_jobs_registry_username": "ci:admin",
            "agent_jobs_registry_password": "reg-secret-pw",
        },
    )
    result.assert_refused(["agent_jobs_registry_username and agent_jobs_registry_password go together", "no colon"])
    assert "reg-secret-pw" not in result.output
