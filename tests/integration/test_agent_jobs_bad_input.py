"""agent_jobs refuses bad input before anything is rendered or applied, naming the variable.

Runs the real role with ansible-playbook on this machine in check mode, with no cluster at all:
a case that slipped past validation would reach the cluster tasks and fail differently (no
kubeconfig), so each case also proves the refusal happened in the validation phase.
"""

from __future__ import annotations

import pytest

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
]


@pytest.mark.parametrize(("role_vars", "expected"), CASES)
def test_agent_jobs_refuses_bad_input(run_role, role_vars, expected):
    result = run_role("agent_jobs", {**SECRETS, **role_vars})
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
