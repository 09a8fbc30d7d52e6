"""playbooks/smoke.yml and the job_queue module on a real redis-server (Debian's, Redis 7):
the group is created as the agent creates it, the job lands in the agent's format, and the group's
lag -- what KEDA's lag mode scales on -- shows exactly one pending job. A bad address fails naming
the option.
"""

from __future__ import annotations

import re

import pytest
import redis
from conftest import ROOT, run_playbook
from k8s_testbed import free_port

from ansible_collections.raibid.dgx_spark.plugins.module_utils.job_queue import decode_entry

SMOKE = ROOT / "playbooks" / "smoke.yml"


def smoke_vars(server, **extra) -> dict:
    return {
        "smoke_hosts": "localhost",
        "smoke_redis_host": server.host,
        "smoke_redis_port": server.port,
        "smoke_redis_password": server.password,
        **extra,
    }


@pytest.fixture
def client(redis_server):
    """A client of the session's redis-server, its database emptied first: no test sees what another
    left, whichever ran before."""
    c = redis.Redis(
        host=redis_server.host, port=redis_server.port, password=redis_server.password, decode_responses=True
    )
    c.flushdb()
    yield c
    c.close()


def test_redis_is_7_or_later(redis_server):
    assert int(redis_server.version.split(".")[0]) >= 7, "XINFO GROUPS lag (KEDA lag mode) needs Redis 7"


def test_smoke_enqueues_one_job_and_the_lag_shows_it(redis_server, client):
    stream, group = "smoke:jobs:one", "smoke-workers"
    run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_stream=stream, smoke_group=group), False)
    assert run.rc == 0, run.output
    assert redis_server.password not in run.output
    assert f"KEDA's trigger sees 1 pending job(s) on {stream}" in run.output

    (info,) = client.xinfo_groups(stream)
    assert info["name"] == group and info["lag"] == 1 and info["pending"] == 0
    ((entry_id, fields),) = client.xrange(stream)
    job = decode_entry(fields)
    assert job["status"] == "pending" and job["repo"] == "raibid/smoke" and job["commit"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", job["started_at"])
    assert all(job[k] is None for k in ("finished_at", "duration", "agent_id", "exit_code"))
    assert f"entry {entry_id}" in run.output

    # A consumer in the group (as the agent reads) takes it: the lag KEDA sees drops to 0.
    delivered = client.xreadgroup(group, "agent-1", {stream: ">"}, count=1)
    assert decode_entry(delivered[0][1][0][1])["id"] == job["id"]
    assert client.xinfo_groups(stream)[0]["lag"] == 0


def test_second_smoke_run_counts_one_more(redis_server, client):
    stream = "smoke:jobs:two"
    for expected in (1, 2):
        run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_stream=stream), False)
        assert run.rc == 0, run.output
        assert f"KEDA's trigger sees {expected} pending job(s)" in run.output
    assert client.xlen(stream) == 2


def test_check_mode_changes_nothing(redis_server, client):
    stream = "smoke:jobs:check"
    run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_stream=stream), True)
    assert run.rc == 0, run.output
    assert client.exists(stream) == 0


def test_entries_before_the_group_are_delivered(redis_server, client):
    """The group is created at `0`, as the agent creates it: an entry enqueued earlier still counts."""
    stream, group = "smoke:jobs:early", "late-group"
    client.xadd(stream, {"job": "{}"})
    run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_stream=stream, smoke_group=group), False)
    assert run.rc == 0, run.output
    assert "KEDA's trigger sees 2 pending job(s)" in run.output
    assert client.xlen(stream) == 2


def test_unreachable_redis_fails_naming_the_option(redis_server):
    port = free_port()
    run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_redis_port=port), False)
    assert run.rc != 0
    assert run.failed_task() == "Create the consumer group as the agent does and read the queue"
    assert f"host/port: cannot reach Redis at 127.0.0.1:{port}" in run.output


def test_malformed_redis_host_fails_naming_the_option(redis_server):
    run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_redis_host=f"127.0.0.1:{redis_server.port}"), False)
    assert run.rc != 0
    assert "host: '127.0.0.1:" in run.output and "give host and port separately" in run.output


def test_wrong_password_fails_naming_the_option(redis_server):
    run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_redis_password="not-the-password"), False)
    assert run.rc != 0
    assert "password: Redis at" in run.output
    assert "not-the-password" not in run.output


def test_in_cluster_redis_name_is_refused_with_the_way_out(redis_server):
    """The agents' Redis name resolves only inside the cluster; the control host needs another address."""
    run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_redis_host="redis.raibid-ci.svc.cluster.local"), False)
    assert run.rc != 0
    assert run.failed_task() == "Validate smoke_redis_host is reachable from outside the cluster"
    assert 'smoke_redis_host is "redis.raibid-ci.svc.cluster.local", an in-cluster Service name' in run.output
    assert "kubectl port-forward" in run.output


def test_bad_wait_bounds_are_refused(redis_server):
    run = run_playbook(SMOKE, smoke_vars(redis_server, smoke_poll_seconds=10, smoke_lag_timeout=5), False)
    assert run.rc != 0
    assert run.failed_task() == "Validate smoke inputs"
    assert "smoke_lag_timeout (5) at least smoke_poll_seconds" in run.output
