"""Unit tests for the job queue contract (plugins/module_utils/job_queue.py).

The Redis side runs against the stand-in server of fakes/redis_server.py through the real redis-py
client: each test scripts the server's replies and asserts the commands our code sent and what it
made of the replies (the real server runs in tests/integration/test_smoke_redis.py).
"""

from __future__ import annotations

import json
import re

import pytest
import redis

from ansible_collections.raibid.dgx_spark.plugins.module_utils import job_queue as jq
from ansible_collections.raibid.dgx_spark.tests.unit.plugins.fakes.redis_server import (
    Error,
    FakeRedis,
    Status,
    group_entry,
)


def test_build_job_has_every_field_the_agent_requires():
    job = jq.build_job("raibid/smoke", "main", "", job_id="j1", started_at="2026-11-29T05:00:00Z")
    assert job == {
        "id": "j1",
        "repo": "raibid/smoke",
        "branch": "main",
        "commit": "",
        "status": "pending",
        "started_at": "2026-11-29T05:00:00Z",
        "finished_at": None,
        "duration": None,
        "agent_id": None,
        "exit_code": None,
    }


def test_build_job_defaults_id_and_rfc3339_now():
    job = jq.build_job("owner/repo")
    assert re.fullmatch(r"[0-9a-f-]{36}", job["id"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", job["started_at"])
    assert jq.build_job("owner/repo")["id"] != job["id"]


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"repo": "no-slash"}, "job.repo"),
        ({"repo": "https://gitea/owner/repo"}, "job.repo"),
        ({"repo": "o/r", "branch": " "}, "job.branch"),
        ({"repo": "o/r", "commit": "not-a-sha"}, "job.commit"),
        ({"repo": "o/r", "started_at": "yesterday"}, "job.started_at"),
        ({"repo": "o/r", "started_at": "2026-11-29 05:00:00"}, "job.started_at"),
    ],
)
def test_build_job_names_the_bad_field(kwargs, option):
    with pytest.raises(jq.QueueError) as exc:
        jq.build_job(**kwargs)
    assert exc.value.option == option
    assert str(exc.value).startswith(option + ":")


def test_entry_round_trips_as_the_agent_parses_it():
    job = jq.build_job("o/r", commit="0123abcd", job_id="x", started_at="2026-01-31T12:00:00+01:00")
    fields = jq.encode_entry(job)
    assert list(fields) == ["job"]
    assert json.loads(fields["job"]) == job
    assert jq.decode_entry({b"job": fields["job"].encode()}) == job


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"data": "{}"}, "no 'job' field"),
        ({"job": json.dumps({"id": "1", "repo": "o/r"})}, "lacks required fields"),
        ({"job": json.dumps({**jq.build_job("o/r"), "status": "Pending"})}, "not one of"),
    ],
)
def test_decode_rejects_what_the_agent_would_drop(fields, reason):
    with pytest.raises(ValueError, match=reason):
        jq.decode_entry(fields)


@pytest.mark.parametrize(
    ("host", "port", "option"),
    [
        ("", 6379, "host"),
        ("   ", 6379, "host"),
        ("redis:6379", 6379, "host"),
        ("redis://localhost", 6379, "host"),
        ("localhost", 0, "port"),
        ("localhost", 70000, "port"),
        ("localhost", True, "port"),
    ],
)
def test_parse_address_names_the_option(host, port, option):
    with pytest.raises(jq.QueueError) as exc:
        jq.parse_address(host, port)
    assert exc.value.option == option


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "redis.raibid-ci.svc.cluster.local", "::1"])
def test_parse_address_accepts_hosts(host):
    assert str(jq.parse_address(host, 6379)) == f"{host}:6379"


def test_check_name_refuses_empty():
    with pytest.raises(jq.QueueError, match=r"^stream: must not be empty"):
        jq.check_name("stream", "")


def test_parse_groups_dicts_and_flat_lists():
    dict_form = [{"name": "g", "consumers": 2, "pending": 1, "last-delivered-id": "1-0", "entries-read": 3, "lag": 4}]
    flat_form = [
        [b"name", b"g", b"consumers", 2, b"pending", 1, b"last-delivered-id", b"1-0", b"entries-read", 3, b"lag", 4]
    ]
    for raw in (dict_form, flat_form):
        (group,) = jq.parse_groups(raw)
        assert group.as_dict() == {
            "name": "g",
            "consumers": 2,
            "pending": 1,
            "last_delivered_id": "1-0",
            "entries_read": 3,
            "lag": 4,
        }


def test_parse_groups_keeps_unknown_lag_as_none():
    (group,) = jq.parse_groups(
        [{"name": "g", "consumers": 0, "pending": 0, "last-delivered-id": "0-0", "entries-read": None, "lag": None}]
    )
    assert group.lag is None and group.entries_read is None


def test_parse_groups_refuses_redis_6_output():
    with pytest.raises(jq.QueueError, match=r"Redis 7\.0 or later"):
        jq.parse_groups([{"name": "g", "consumers": 0, "pending": 0, "last-delivered-id": "0-0"}])


@pytest.fixture
def server():
    with FakeRedis() as fake:
        yield fake


def client_of(server, protocol=None):
    """A redis-py client built as the job_queue module builds it (protocol: redis-py's default)."""
    extra = {} if protocol is None else {"protocol": protocol}
    return redis.Redis(host=server.host, port=server.port, socket_timeout=5, decode_responses=True, **extra)


def test_a_missing_stream_gets_the_group_as_the_agent_creates_it(server):
    server.reply("EXISTS", 0)
    server.reply("XGROUP CREATE", Status("OK"))
    assert jq.ensure_group(client_of(server), "raibid:jobs", "raibid-workers", create=True) is True
    # No XINFO GROUPS on a missing key (Redis answers "ERR no such key"); id 0, so that entries
    # added before the group existed are delivered too.
    assert server.sent() == [
        ["EXISTS", "raibid:jobs"],
        ["XGROUP", "CREATE", "raibid:jobs", "raibid-workers", "0", "MKSTREAM"],
    ]


def test_an_existing_group_is_left_alone(server):
    server.reply("EXISTS", 1)
    server.reply(
        "XINFO GROUPS",
        [
            group_entry("other", consumers=1),
            group_entry("g", consumers=2, pending=1, last_delivered_id="5-0", entries_read=5),
        ],
    )
    assert jq.ensure_group(client_of(server), "s", "g", create=True) is False
    assert server.sent() == [["EXISTS", "s"], ["XINFO", "GROUPS", "s"]]


def test_another_group_on_the_stream_does_not_count_as_ours(server):
    server.reply("EXISTS", 1)
    server.reply("XINFO GROUPS", [group_entry("other", consumers=1)])
    server.reply("XGROUP CREATE", Status("OK"))
    assert jq.ensure_group(client_of(server), "s", "g", create=True) is True
    assert server.sent()[-1] == ["XGROUP", "CREATE", "s", "g", "0", "MKSTREAM"]


def test_without_create_the_missing_group_is_only_reported(server):
    server.reply("EXISTS", 0)
    assert jq.ensure_group(client_of(server), "s", "g", create=False) is True
    assert server.sent() == [["EXISTS", "s"]]


def test_a_group_created_meanwhile_is_no_change(server):
    """BUSYGROUP (another producer or the agent won the race) is what the agent ignores too."""
    server.reply("EXISTS", 0)
    server.reply("XGROUP CREATE", Error("BUSYGROUP Consumer Group name already exists"))
    assert jq.ensure_group(client_of(server), "s", "g", create=True) is False


def test_other_errors_of_xgroup_create_reach_the_caller(server):
    server.reply("EXISTS", 1)
    server.reply("XINFO GROUPS", [])
    server.reply("XGROUP CREATE", Error("WRONGTYPE Operation against a key holding the wrong kind of value"))
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        jq.ensure_group(client_of(server), "s", "g", create=True)


def test_queue_state_of_a_missing_stream_asks_nothing_else(server):
    server.reply("EXISTS", 0)
    assert jq.queue_state(client_of(server), "s", "g") == {
        "stream_exists": False,
        "stream_length": 0,
        "group": None,
        "lag": 0,
    }
    assert server.sent() == [["EXISTS", "s"]]


@pytest.mark.parametrize("protocol", [None, 2, 3])
def test_lag_is_the_groups_lag_not_the_stream_length(server, protocol):
    """KEDA's lag mode scales on XINFO GROUPS' lag: entries delivered to the group (but maybe not yet
    acknowledged) no longer count, however long the stream is. Either RESP version reads the same."""
    server.reply("EXISTS", 1)
    server.reply(
        "XINFO GROUPS",
        [
            group_entry("other", lag=7),
            group_entry("g", consumers=2, pending=3, last_delivered_id="5-0", entries_read=5, lag=2),
        ],
    )
    server.answer("XLEN", 7)
    state = jq.queue_state(client_of(server, protocol), "s", "g")
    assert state == {
        "stream_exists": True,
        "stream_length": 7,
        "group": {
            "name": "g",
            "consumers": 2,
            "pending": 3,
            "last_delivered_id": "5-0",
            "entries_read": 5,
            "lag": 2,
        },
        "lag": 2,
    }


def test_lag_without_the_group_is_the_stream_length_as_keda_counts_it(server):
    server.reply("EXISTS", 1)
    server.reply("XINFO GROUPS", [group_entry("other")])
    server.answer("XLEN", 4)
    state = jq.queue_state(client_of(server), "s", "g")
    assert state["group"] is None and state["lag"] == 4 and state["stream_length"] == 4


def test_lag_redis_cannot_tell_stays_unknown(server):
    """Redis answers a nil lag where it cannot compute it (entries deleted from the middle of the stream,
    per the XINFO GROUPS reference): reported as None, never guessed from XLEN."""
    server.reply("EXISTS", 1)
    server.reply("XINFO GROUPS", [group_entry("g", last_delivered_id="3-0", entries_read=None, lag=None)])
    server.answer("XLEN", 9)
    state = jq.queue_state(client_of(server), "s", "g")
    assert state["lag"] is None and state["group"]["entries_read"] is None


def test_xinfo_groups_of_redis_6_is_refused_naming_the_server(server):
    server.reply("EXISTS", 1)
    server.reply("XINFO GROUPS", [["name", "g", "consumers", 0, "pending", 0, "last-delivered-id", "0-0"]])
    with pytest.raises(jq.QueueError, match=r"Redis 7\.0 or later") as exc:
        jq.queue_state(client_of(server, 2), "s", "g")
    assert exc.value.option == "server"


def test_a_job_is_added_as_one_field_the_agent_parses(server):
    job = jq.build_job("raibid/smoke", commit="0123abcd", job_id="j1", started_at="2026-11-29T05:00:00Z")
    server.reply("XADD", "1764392400000-0")
    assert client_of(server).xadd("raibid:jobs", jq.encode_entry(job)) == "1764392400000-0"
    ((command, stream, entry_id, field, value),) = server.sent()
    assert (command, stream, entry_id, field) == ("XADD", "raibid:jobs", "*", "job")
    assert jq.decode_entry({field: value}) == job


@pytest.mark.parametrize(
    "command",
    [
        ["XGROUP", "CREATE", "s", "g", "0", "MKSTREAMS"],
        ["XGROUP", "CREATE", "s", "g", "latest"],
        ["XGROUP", "CREATE", "s", "g"],
        ["XADD", "s", "*", "job"],
        ["XADD", "s", "job", "{}"],
        ["XINFO", "GROUPS", "s", "g"],
        ["XLEN"],
        ["XPENDING", "s", "g"],
    ],
)
def test_the_stand_in_refuses_what_redis_refuses(command):
    fake = FakeRedis()
    with pytest.raises(AssertionError, match="refused commands"), fake:
        with pytest.raises(redis.ResponseError):
            client_of(fake).execute_command(*command)
    assert len(fake.violations) == 1
