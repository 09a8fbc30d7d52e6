# Copyright: raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""The CI job queue contract, as the raibid-ci agent reads it (pure logic, unit-tested).

The agent (image/agent, raibid-agent) creates its consumer group with
``XGROUP CREATE <stream> <group> 0 MKSTREAM`` (BUSYGROUP ignored), so entries added before the group
existed are delivered too (the original agent used ``$`` and skipped them), and reads entries whose one field
``job`` holds the JSON of ``Job``: ``id``, ``repo`` (owner/name), ``branch``, ``commit`` (sha or
empty), ``status``, ``started_at`` (RFC 3339, required) and the nullable ``finished_at``,
``duration``, ``agent_id``, ``exit_code``. A message that does not parse is ACKed and dropped, so
the producer side must get it exactly right.

KEDA's redis-streams scaler in lag mode scales on the group's ``lag`` from ``XINFO GROUPS``
(Redis >= 7): entries added to the stream and not yet delivered to the group.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

JOB_FIELD = "job"
JOB_STATUSES = ("pending", "running", "success", "failed", "cancelled")
NULLABLE_FIELDS = ("finished_at", "duration", "agent_id", "exit_code")
REPO_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
COMMIT_PATTERN = re.compile(r"^([0-9a-f]{7,64})?$")
RFC3339_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
HOSTNAME_PATTERN = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class QueueError(ValueError):
    """Bad input, with the option it concerns."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(host: str, port: int) -> RedisAddress:
    """Check a Redis host and port, naming the option that is wrong."""
    host = (host or "").strip()
    if not host:
        raise QueueError("host", "must name the Redis server (a hostname or an IP address); got an empty string")
    if not HOSTNAME_PATTERN.match(host) and not _is_ip(host):
        raise QueueError("host", f"{host!r} is not a hostname or an IP address (give host and port separately)")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise QueueError("port", f"must be an integer from 1 to 65535; got {port!r}")
    return RedisAddress(host, port)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_name(option: str, value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise QueueError(option, f"must not be empty; got {value!r}")
    return value


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_job(
    repo: str,
    branch: str = "main",
    commit: str = "",
    job_id: str | None = None,
    started_at: str | None = None,
) -> dict[str, Any]:
    """A Job in the agent's format, status "pending", every nullable field present as null."""
    if not isinstance(repo, str) or not REPO_PATTERN.match(repo):
        raise QueueError("job.repo", f"must be owner/name as on Gitea; got {repo!r}")
    check_name("job.branch", branch)
    if not isinstance(commit, str) or not COMMIT_PATTERN.match(commit):
        raise QueueError("job.commit", f"must be a hex commit sha or empty; got {commit!r}")
    if job_id is None or job_id == "":
        job_id = str(uuid.uuid4())
    check_name("job.id", job_id)
    if started_at is None or started_at == "":
        started_at = rfc3339_now()
    if not RFC3339_PATTERN.match(started_at):
        raise QueueError(
            "job.started_at", f"must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z; got {started_at!r}"
        )
    job: dict[str, Any] = {
        "id": job_id,
        "repo": repo,
        "branch": branch,
        "commit": commit,
        "status": "pending",
        "started_at": started_at,
    }
    for field in NULLABLE_FIELDS:
        job[field] = None
    return job


def encode_entry(job: dict[str, Any]) -> dict[str, str]:
    """The stream entry fields: one field `job` holding the JSON."""
    return {JOB_FIELD: json.dumps(job, separators=(",", ":"), sort_keys=True)}


def decode_entry(fields: dict[Any, Any]) -> dict[str, Any]:
    """Parse an entry as the agent does; raises ValueError where the agent would drop it."""
    raw = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
    if JOB_FIELD not in raw:
        raise ValueError(f"entry has no {JOB_FIELD!r} field (fields: {sorted(raw)})")
    value = raw[JOB_FIELD]
    job = json.loads(value.decode() if isinstance(value, bytes) else value)
    missing = [f for f in ("id", "repo", "branch", "commit", "status", "started_at") if f not in job]
    if missing:
        raise ValueError(f"job lacks required fields {missing}")
    if job["status"] not in JOB_STATUSES:
        raise ValueError(f"job status {job['status']!r} is not one of {JOB_STATUSES}")
    return job


@dataclass(frozen=True)
class GroupInfo:
    name: str
    consumers: int
    pending: int
    last_delivered_id: str
    entries_read: int | None
    lag: int | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "consumers": self.consumers,
            "pending": self.pending,
            "last_delivered_id": self.last_delivered_id,
            "entries_read": self.entries_read,
            "lag": self.lag,
        }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_groups(raw: list[Any]) -> list[GroupInfo]:
    """XINFO GROUPS as redis-py returns it (a list of dicts) or as flat key/value lists."""
    groups = []
    for item in raw or []:
        pairs = dict(zip(item[::2], item[1::2])) if isinstance(item, (list, tuple)) else item
        data = {_text(k): v for k, v in pairs.items()}
        if "lag" not in data:
            raise QueueError("server", "XINFO GROUPS reports no 'lag' field: KEDA's lag mode needs Redis 7.0 or later")
        lag = data.get("lag")
        entries_read = data.get("entries-read")
        groups.append(
            GroupInfo(
                name=_text(data["name"]),
                consumers=int(data.get("consumers") or 0),
                pending=int(data.get("pending") or 0),
                last_delivered_id=_text(data.get("last-delivered-id", "")),
                entries_read=None if entries_read is None else int(entries_read),
                lag=None if lag is None else int(lag),
            )
        )
    return groups


def find_group(groups: list[GroupInfo], name: str) -> GroupInfo | None:
    return next((g for g in groups if g.name == name), None)


class RedisLike(Protocol):
    def xgroup_create(self, name: str, groupname: str, id: str = ..., mkstream: bool = ...) -> Any: ...
    def xadd(self, name: str, fields: dict[str, str]) -> Any: ...
    def xinfo_groups(self, name: str) -> list[Any]: ...
    def exists(self, *names: str) -> int: ...
    def xlen(self, name: str) -> int: ...


def ensure_group(client: RedisLike, stream: str, group: str, create: bool) -> bool:
    """Create the group as the agent does (`0`, MKSTREAM). True when it was (or would be) created."""
    if client.exists(stream):
        if find_group(parse_groups(client.xinfo_groups(stream)), group) is not None:
            return False
    if create:
        try:
            client.xgroup_create(stream, group, id="0", mkstream=True)
        except Exception as exc:  # redis.ResponseError; the agent ignores BUSYGROUP too
            if "BUSYGROUP" not in str(exc):
                raise
            return False
    return True


def queue_state(client: RedisLike, stream: str, group: str) -> dict[str, Any]:
    """Stream length and the group's counters; lag is what KEDA's lag mode scales on."""
    if not client.exists(stream):
        return {"stream_exists": False, "stream_length": 0, "group": None, "lag": 0}
    info = find_group(parse_groups(client.xinfo_groups(stream)), group)
    return {
        "stream_exists": True,
        "stream_length": int(client.xlen(stream)),
        "group": info.as_dict() if info else None,
        # KEDA: a missing stream counts 0; a missing group falls back to XLEN.
        "lag": (info.lag if info else int(client.xlen(stream))),
    }
