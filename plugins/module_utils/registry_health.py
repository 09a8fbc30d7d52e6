# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Whether each registry instance answers ``GET /v2/`` with 200, waiting for the required ones.

Read-only. ``validate`` checks every argument before any probe and names each bad field
(``registries[i].<field>``); ``registry_health`` probes every registry once (concurrently), then again,
at most ``retries`` more rounds ``delay`` seconds apart, the required ones that did not answer 200 - as an
``ansible.builtin.uri`` loop with ``until``/``retries``/``delay`` did, in one remote call. The HTTP and TLS
code is node_health's ``probe_registry``; the probe, the clock and the sleep are parameters, so tests run
the same rounds against stand-ins and a fake clock. A password never appears in a result or a message.
"""

from __future__ import annotations

import base64
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ansible_collections.raibid.dgx_spark.plugins.module_utils.node_health import (
    probe_registry,
    registry_url_problem,
)

HEALTHY_STATUS = 200
KEYS = ("name", "url", "ca_path", "username", "password", "required")
URL_FORM = "http:// or https:// with host and port only, e.g. https://127.0.0.1:5000 or http://[::1]:5001"
MASK = "********"

# (status or None, error) of GET <url>/v2/ for url, ca_path, timeout and the request's headers.
Probe = Callable[[str, Optional[str], float, Mapping[str, str]], Tuple[Optional[int], str]]

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class RegistryHealthError(Exception):
    """Arguments the module refuses; ``problems`` holds one line per bad field, each naming it."""

    def __init__(self, problems: List[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def basic_authorization(username: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic authentication (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


@dataclass(frozen=True)
class Registry:
    """One validated registry instance (the password is left out of its repr)."""

    name: str
    url: str
    ca_path: Optional[str] = None
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    required: bool = True

    @property
    def endpoint(self) -> str:
        return self.url.rstrip("/") + "/v2/"

    def headers(self) -> Dict[str, str]:
        if self.username is None or self.password is None:
            return {}
        return {"Authorization": basic_authorization(self.username, self.password)}

    def scrub(self, text: str) -> str:
        """``text`` with the password and its Basic token masked (belt and braces: no probe error holds them)."""
        if self.password:
            for secret in (self.headers()["Authorization"][len("Basic ") :], self.password):
                text = text.replace(secret, MASK)
        return text


@dataclass(frozen=True)
class Plan:
    registries: List[Registry]
    retries: int = 10
    delay: float = 1.0
    timeout: float = 2.0


def _shown_url(url: Any) -> str:
    """The URL for a message, any ``user:password@`` replaced (an invalid URL may carry credentials)."""
    return _USERINFO.sub(r"\1***@", url) if isinstance(url, str) else repr(url)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _shown_number(value: Any) -> str:
    """A number as a person writes it (0, not 0.0); anything else as its repr."""
    return f"{value:g}" if _is_number(value) else repr(value)


def _entry_problems(where: str, entry: Mapping[str, Any]) -> List[str]:
    """Every bad field of one registry entry except its name's uniqueness; never shows the password."""
    found: List[str] = []
    unknown = sorted(str(key) for key in entry if key not in KEYS)
    if unknown:
        found.append(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")

    url = entry.get("url")
    fault = registry_url_problem(url)
    if fault:
        found.append(f"{where}.url: {_shown_url(url)!r} {fault} (expected {URL_FORM})")

    ca_path = entry.get("ca_path")
    if ca_path is not None:
        if not (isinstance(ca_path, str) and ca_path):
            found.append(
                f"{where}.ca_path: {ca_path!r} is not a path (expected the PEM CA certificate of the registry)"
            )
        elif not fault and not url.startswith("https://"):
            found.append(f"{where}.ca_path: set but url {url!r} is not https:// (expected ca_path only with https://)")
        elif not os.path.isfile(ca_path):
            found.append(
                f"{where}.ca_path: {ca_path} is not a file (expected the PEM CA certificate that verifies the "
                "registry's TLS certificate)"
            )

    username, password = entry.get("username"), entry.get("password")
    if username is not None and not (isinstance(username, str) and username and not _CONTROL.search(username)):
        found.append(f"{where}.username: {username!r} is not a user name (expected a non-empty name)")
    elif isinstance(username, str) and ":" in username:
        found.append(f"{where}.username: {username!r} holds ':' (expected a name without ':', as Basic auth needs)")
    if password is not None and not (isinstance(password, str) and password):
        found.append(f"{where}.password: is empty or not a string (expected the user's password)")
    both = "expected both username and password, or neither for a registry without authentication"
    if username is not None and password is None:
        found.append(f"{where}.password: missing while username is set ({both})")
    if password is not None and username is None:
        found.append(f"{where}.username: missing while password is set ({both})")

    required = entry.get("required")
    if required is not None and not isinstance(required, bool):
        found.append(f"{where}.required: {required!r} is not a boolean (expected true or false)")
    return found


def validate(params: Mapping[str, Any]) -> Plan:
    """The module arguments as a ``Plan``, or ``RegistryHealthError`` listing every bad field."""
    problems: List[str] = []
    registries = params.get("registries")
    if not isinstance(registries, (list, tuple)):
        raise RegistryHealthError([f"registries: expected a list of dicts, got {type(registries).__name__}"])

    seen: Dict[str, int] = {}
    for index, entry in enumerate(registries):
        where = f"registries[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a dict with name and url (and ca_path, username, password, required)")
            continue
        name = entry.get("name")
        if not (isinstance(name, str) and name.strip()):
            problems.append(
                f"{where}.name: {name!r} is not a name (expected a non-empty name, e.g. local or docker.io)"
            )
        elif name in seen:
            problems.append(f"{where}.name: {name!r} is also registries[{seen[name]}].name (expected each name once)")
        else:
            seen[name] = index
        problems += _entry_problems(where, entry)

    retries = params.get("retries", 10)
    if not (isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0):
        problems.append(f"retries: {_shown_number(retries)} is not a whole number >= 0 (expected e.g. 10)")
    delay = params.get("delay", 1.0)
    if not (_is_number(delay) and delay >= 0):
        problems.append(f"delay: {_shown_number(delay)} is not a number of seconds >= 0 (expected e.g. 1)")
    timeout = params.get("timeout", 2.0)
    if not (_is_number(timeout) and timeout > 0):
        problems.append(f"timeout: {_shown_number(timeout)} is not a number of seconds > 0 (expected e.g. 2)")
    if problems:
        raise RegistryHealthError(problems)

    return Plan(
        registries=[
            Registry(
                name=entry["name"],
                url=entry["url"],
                ca_path=entry.get("ca_path"),
                username=entry.get("username"),
                password=entry.get("password"),
                required=entry.get("required") is not False,
            )
            for entry in registries
        ],
        retries=retries,
        delay=float(delay),
        timeout=float(timeout),
    )


def message(registry: Registry, status: Optional[int], error: str = "") -> str:
    """Why ``registry`` is not healthy after its last answer (empty when it answered 200)."""
    if status == HEALTHY_STATUS:
        return ""
    if status is None:
        return registry.scrub(f"GET {registry.endpoint}: {error or 'no answer'}")
    text = f"GET {registry.endpoint} answered {status} (expected 200)"
    if status == 401 and registry.username is None:
        text += ": the registry requires authentication (set username and password)"
    elif status == 401:
        text += f": the registry refused the credentials of user {registry.username!r}"
    return text


def _attempt(probe: Probe, registry: Registry, timeout: float) -> Tuple[Optional[int], str]:
    try:
        return probe(registry.url, registry.ca_path, timeout, registry.headers())
    except Exception as exc:  # a probe's own fault is that registry's answer, never the whole call's
        return None, f"probe error: {type(exc).__name__}: {exc}"


def registry_health(
    plan: Plan,
    probe: Probe = probe_registry,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    workers: int = 8,
) -> Dict[str, Any]:
    """Probe every registry, then the required ones without a 200 again, at most ``plan.retries`` more
    rounds ``plan.delay`` seconds apart; the result the module returns (less ``changed``)."""
    started = clock()
    registries = plan.registries
    answers: List[Tuple[Optional[int], str]] = [(None, "not probed")] * len(registries)
    attempts = [0] * len(registries)
    pending = list(range(len(registries)))
    if pending:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(registries)))) as pool:
            for round_number in range(plan.retries + 1):
                if round_number:
                    sleep(plan.delay)
                found = list(pool.map(lambda i: _attempt(probe, registries[i], plan.timeout), pending))
                for index, answer in zip(pending, found):
                    answers[index] = answer
                    attempts[index] += 1
                # A registry that is not required gets one try: an offline lab's proxy must not make every run wait.
                pending = [i for i in pending if registries[i].required and answers[i][0] != HEALTHY_STATUS]
                if not pending:
                    break

    results = []
    for registry, (status, error), tries in zip(registries, answers, attempts):
        healthy = status == HEALTHY_STATUS
        results.append(
            {
                "name": registry.name,
                "url": registry.url,
                "status": status,
                "healthy": healthy,
                "required": registry.required,
                "attempts": tries,
                "message": message(registry, status, error),
            }
        )
    unhealthy = [r["name"] for r in results if not r["healthy"]]
    unhealthy_required = [r["name"] for r in results if r["required"] and not r["healthy"]]
    return {
        "registries": results,
        "unhealthy": unhealthy,
        "unhealthy_required": unhealthy_required,
        "healthy": not unhealthy_required,
        "elapsed_ms": round((clock() - started) * 1000),
    }
