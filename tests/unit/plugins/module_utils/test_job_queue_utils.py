"""Unit tests for the job queue contract (plugins/module_utils/job_queue.py)."""

from __future__ import annotations

import json
import re

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import job_queue as jq


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


class FakeStreams:
    """Just enough of a Redis client for the pure functions (the module is tested on real Redis)."""

    def __init__(self):
        self.streams: dict[str, list] = {}
        self.groups: dict[str, dict[str, int]] = {}

    def exists(self, *names):
        return sum(1 for n in names if n in self.streams)

    def xlen(self, name):
        return len(self.streams.get(name, []))

    def xgroup_create(self, name, groupname, id="$", mkstream=False):
        self.created_at = [*getattr(self, "created_at", []), (name, groupname, id, mkstream)]
        if name not in self.streams:
            if not mkstream:
                raise RuntimeError("ERR The XGROUP subcommand requires the key to exist")
            self.streams[name] = []
        if groupname in self.groups.setdefault(name, {}):
            raise RuntimeError("BUSYGROUP Consumer Group name already exists")
        self.groups[name][groupname] = len(self.streams[name]) if id == "$" else 0

    def xadd(self, name, fields):
        self.streams.setdefault(name, []).append(fields)
        return f"{len(self.streams[name])}-0"

    def xinfo_groups(self, name):
        return [
            {
                "name": g,
                "consumers": 0,
                "pending": 0,
                "last-delivered-id": "0-0",
                "entries-read": at,
                "lag": len(self.streams[name]) - at,
            }
            for g, at in self.groups.get(name, {}).items()
        ]


def test_group_first_then_enqueue_gives_lag_one():
    client = FakeStreams()
    assert jq.ensure_group(client, "s", "g", create=True) is True
    assert jq.ensure_group(client, "s", "g", create=True) is False
    client.xadd("s", jq.encode_entry(jq.build_job("o/r")))
    state = jq.queue_state(client, "s", "g")
    assert state["lag"] == 1 and state["stream_length"] == 1 and state["group"]["name"] == "g"


def test_group_is_created_at_zero_so_earlier_entries_count():
    client = FakeStreams()
    client.xadd("s", jq.encode_entry(jq.build_job("o/r")))
    jq.ensure_group(client, "s", "g", create=True)
    assert client.created_at == [("s", "g", "0", True)]
    assert jq.queue_state(client, "s", "g")["lag"] == 1


def test_ensure_group_without_create_only_reports():
    client = FakeStreams()
    assert jq.ensure_group(client, "s", "g", create=False) is True
    assert client.streams == {}


def test_ensure_group_reraises_other_errors():
    class Broken(FakeStreams):
        def xgroup_create(self, *args, **kwargs):
            raise RuntimeError("WRONGTYPE Operation against a key holding the wrong kind of value")

    with pytest.raises(RuntimeError, match="WRONGTYPE"):
        jq.ensure_group(Broken(), "s", "g", create=True)


def test_queue_state_missing_stream_and_missing_group():
    client = FakeStreams()
    assert jq.queue_state(client, "s", "g") == {"stream_exists": False, "stream_length": 0, "group": None, "lag": 0}
    client.xadd("s", {"job": "{}"})
    state = jq.queue_state(client, "s", "other")
    # KEDA falls back to XLEN when the group is missing.
    assert state["group"] is None and state["lag"] == 1
