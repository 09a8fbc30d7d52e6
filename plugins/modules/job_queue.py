#!/usr/bin/python
# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: job_queue
short_description: Enqueue a CI job on the Redis stream in the agent's format and read the group's lag
version_added: 0.1.0
description:
  - Talks to the Redis job queue that the raibid-ci agents consume and that KEDA's C(redis-streams)
    trigger watches.
  - With O(create_group=true) it creates the consumer group exactly as the agent does
    (C(XGROUP CREATE <stream> <group> 0 MKSTREAM)), so entries added before the group existed are
    delivered as well.
  - With O(job) it adds one entry whose single field C(job) holds the JSON the agent parses
    (C(id), C(repo), C(branch), C(commit), C(status=pending), C(started_at) in RFC 3339, and
    C(finished_at), C(duration), C(agent_id), C(exit_code) as null).
  - Always returns the stream length and the group's counters from C(XINFO GROUPS) (Redis 7 or later),
    including C(lag), the number KEDA's lag mode scales on.
author:
  - raibid.dgx_spark contributors (@raibid-labs)
requirements:
  - redis (Python library) on the host that runs the module
options:
  host:
    description: Redis host name or IP address (without the port).
    type: str
    required: true
  port:
    description: Redis port.
    type: int
    default: 6379
  password:
    description: Redis password (AUTH); omit for none.
    type: str
  db:
    description: Redis database index.
    type: int
    default: 0
  stream:
    description: The job stream (the agent's C(QUEUE_STREAM)).
    type: str
    required: true
  group:
    description: The consumer group (the agent's C(CONSUMER_GROUP)).
    type: str
    required: true
  create_group:
    description: Create the group (at C(0), with C(MKSTREAM)) when it does not exist.
    type: bool
    default: true
  job:
    description:
      - A job to enqueue. Omit to only read the queue state.
    type: dict
    suboptions:
      repo:
        description: Repository as C(owner/name).
        type: str
        required: true
      branch:
        description: Branch to build.
        type: str
        default: main
      commit:
        description: Commit sha to check out, or empty for the branch head.
        type: str
        default: ""
      id:
        description: Job id; a new UUID when omitted.
        type: str
      started_at:
        description: RFC 3339 timestamp; now (UTC) when omitted.
        type: str
  connect_timeout:
    description: Seconds to wait for the connection and for each command.
    type: float
    default: 5
extends_documentation_fragment:
  - raibid.dgx_spark.attributes
  - raibid.dgx_spark.attributes.actiongroup_dgx_spark
attributes:
  check_mode:
    support: full
    details:
      - Reads the queue; reports whether the group would be created and the job enqueued without doing either.
  diff_mode:
    support: none
notes:
  - Enqueueing is not idempotent by nature; each run with O(job) adds one entry.
"""

EXAMPLES = r"""
- name: Enqueue a smoke job and read the lag KEDA sees
  raibid.dgx_spark.job_queue:
    host: 127.0.0.1
    port: 6379
    password: "{{ agent_jobs_redis_password }}"
    stream: "raibid:jobs"
    group: raibid-workers
    job:
      repo: raibid/smoke
      branch: main
  register: queue
  no_log: true

- name: Read the queue state only
  raibid.dgx_spark.job_queue:
    host: 127.0.0.1
    stream: "raibid:jobs"
    group: raibid-workers
    create_group: false
  check_mode: true
"""

RETURN = r"""
group_created:
  description: Whether the consumer group was (in check mode, would be) created.
  returned: always
  type: bool
job:
  description: The job as enqueued (or as it would be enqueued in check mode).
  returned: when O(job) is set
  type: dict
  sample:
    id: 5f0c2b1e-8a37-4d55-9b8e-0c1d2e3f4a5b
    repo: raibid/smoke
    branch: main
    commit: ""
    status: pending
    started_at: "2026-11-29T05:00:00Z"
    finished_at: null
    duration: null
    agent_id: null
    exit_code: null
entry_id:
  description: Stream entry id of the enqueued job; null in check mode.
  returned: when O(job) is set
  type: str
stream_length:
  description: C(XLEN) of the stream.
  returned: always
  type: int
lag:
  description:
    - Entries not yet delivered to the group (C(XINFO GROUPS) C(lag)); what KEDA's lag mode scales on.
    - When the group does not exist this is the stream length, as KEDA falls back to C(XLEN).
  returned: always
  type: int
group:
  description: The group's C(XINFO GROUPS) counters, or null when it does not exist.
  returned: always
  type: dict
  contains:
    name: {description: Group name., type: str, returned: success}
    consumers: {description: Consumers in the group., type: int, returned: success}
    pending: {description: Entries delivered and not acknowledged., type: int, returned: success}
    last_delivered_id: {description: Last delivered entry id., type: str, returned: success}
    entries_read: {description: Entries read by the group (null when unknown)., type: int, returned: success}
    lag: {description: Entries not yet delivered (null when Redis cannot tell)., type: int, returned: success}
"""

import traceback
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.raibid.dgx_spark.plugins.module_utils.job_queue import (
    QueueError,
    build_job,
    check_name,
    encode_entry,
    ensure_group,
    parse_address,
    queue_state,
)

try:
    import redis

    HAS_REDIS = True
    REDIS_IMPORT_ERROR = None
except ImportError:
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()


ARGUMENT_SPEC: dict[str, Any] = {
    "host": {"type": "str", "required": True},
    "port": {"type": "int", "default": 6379},
    "password": {"type": "str", "no_log": True},
    "db": {"type": "int", "default": 0},
    "stream": {"type": "str", "required": True},
    "group": {"type": "str", "required": True},
    "create_group": {"type": "bool", "default": True},
    "job": {
        "type": "dict",
        "options": {
            "repo": {"type": "str", "required": True},
            "branch": {"type": "str", "default": "main"},
            "commit": {"type": "str", "default": ""},
            "id": {"type": "str"},
            "started_at": {"type": "str"},
        },
    },
    "connect_timeout": {"type": "float", "default": 5},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"), exception=REDIS_IMPORT_ERROR)

    try:
        address = parse_address(params["host"], params["port"])
        stream = check_name("stream", params["stream"])
        group = check_name("group", params["group"])
        job = None
        if params["job"] is not None:
            spec = params["job"]
            job = build_job(spec["repo"], spec["branch"], spec["commit"], spec["id"], spec["started_at"])
    except QueueError as exc:
        module.fail_json(msg=str(exc), option=exc.option)

    client = redis.Redis(
        host=address.host,
        port=address.port,
        password=params["password"] or None,
        db=params["db"],
        socket_connect_timeout=params["connect_timeout"],
        socket_timeout=params["connect_timeout"],
        decode_responses=True,
    )
    result: dict[str, Any] = {"changed": False}
    try:
        client.ping()
        create = params["create_group"] and not module.check_mode
        result["group_created"] = ensure_group(client, stream, group, create=create) and params["create_group"]
        if job is not None:
            result["job"] = job
            result["entry_id"] = None if module.check_mode else client.xadd(stream, encode_entry(job))
        result["changed"] = result["group_created"] or job is not None
        result.update(queue_state(client, stream, group))
    except redis.AuthenticationError as exc:
        module.fail_json(msg=f"password: Redis at {address} refused the credentials: {exc}", option="password")
    except redis.ConnectionError as exc:
        module.fail_json(msg=f"host/port: cannot reach Redis at {address}: {exc}", option="host")
    except redis.TimeoutError as exc:
        module.fail_json(
            msg=f"host/port: Redis at {address} did not answer within {params['connect_timeout']}s: {exc}",
            option="host",
        )
    except redis.ResponseError as exc:
        module.fail_json(msg=f"stream: Redis at {address} rejected a command on {stream!r}: {exc}", option="stream")
    except QueueError as exc:
        module.fail_json(msg=f"{exc} (Redis at {address})", option=exc.option)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
