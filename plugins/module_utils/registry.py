# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""The node's registry endpoints, derived from the collection-wide registry settings.

One computation serves every client of the registry cache: the registry_cache role (its
instances and the fact it publishes), BuildKit's ``[registry."X"] mirrors`` and k3s'
``registries.yaml``. Pure functions; no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, List, Mapping, Optional

WRITABLE_INSTANCE = "local"
# Characters systemd accepts in an instance name without escaping.
_UNSAFE_INSTANCE_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    address = (address or "").strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def client_host(bind_address: str) -> str:
    """The address clients on the node use to reach a registry bound to ``bind_address``."""
    address = (bind_address or "").strip("[]")
    if address in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]"
    except ValueError:
        pass
    return address


def instance_name(upstream: str) -> str:
    """systemd instance (and file) name of the proxy for ``upstream`` (e.g. ``docker.io``)."""
    return _UNSAFE_INSTANCE_CHARS.sub("-", upstream)


def registry_endpoints(
    mirrors: Optional[Mapping[str, Mapping[str, Any]]],
    bind_address: str = "127.0.0.1",
    local_port: int = 5000,
    tls: Optional[bool] = None,
) -> Dict[str, Any]:
    """Map upstream -> local mirror endpoint, plus the writable registry's endpoint.

    ``tls`` defaults to "not loopback" (the registry_cache role requires TLS off loopback).
    """
    host = client_host(bind_address)
    secure = (not is_loopback(host.strip("[]"))) if tls is None else bool(tls)
    scheme = "https" if secure else "http"
    mirror_hosts = {name: f"{host}:{int(spec['port'])}" for name, spec in sorted((mirrors or {}).items())}
    local = f"{host}:{int(local_port)}"
    return {
        "scheme": scheme,
        "insecure_http": not secure,
        "local": local,
        "local_url": f"{scheme}://{local}",
        "mirrors": mirror_hosts,
        "mirror_urls": {name: f"{scheme}://{endpoint}" for name, endpoint in mirror_hosts.items()},
    }


def registry_instances(
    mirrors: Optional[Mapping[str, Mapping[str, Any]]], local_port: int = 5000
) -> List[Dict[str, Any]]:
    """One entry per registry process: the writable one first, then one proxy per upstream."""
    instances: List[Dict[str, Any]] = [
        {"name": WRITABLE_INSTANCE, "kind": "writable", "port": int(local_port), "upstream": None}
    ]
    for upstream, spec in sorted((mirrors or {}).items()):
        instances.append(
            {
                "name": instance_name(upstream),
                "kind": "proxy",
                "port": int(spec["port"]),
                "upstream": upstream,
                "remote": str(spec["remote"]).rstrip("/"),
                "username": spec.get("username") or "",
                "password": spec.get("password") or "",
                "ttl": spec.get("ttl") or "",
            }
        )
    return instances


_UPSTREAM_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?$")
_REMOTE_URL = re.compile(r"^https?://[^/\s]+/?$")
_DURATION = re.compile(r"^([0-9]+(ns|us|ms|s|m|h))+$")
MIRROR_KEYS = ("port", "remote", "username", "password", "ttl")


def mirror_problems(mirrors: Any, variable: str = "registry_cache_mirrors") -> List[str]:
    """What is wrong with each entry of the mirror map, one message per fault; never shows passwords."""
    if not isinstance(mirrors, Mapping):
        return [f"{variable} must be a mapping of upstream name to {{port, remote}}; got {type(mirrors).__name__}"]
    problems = []
    for name, spec in mirrors.items():
        where = f"{variable}[{name}]"
        if not isinstance(name, str) or not _UPSTREAM_NAME.match(name):
            problems.append(f"{where}: the key must be a registry host name such as docker.io or ghcr.io")
        if not isinstance(spec, Mapping):
            problems.append(f"{where} must be a mapping with port and remote; got {spec!r}")
            continue
        port = spec.get("port")
        if port is None or isinstance(port, bool) or not str(port).isdigit():
            problems.append(f"{where}.port must be an integer; got {port!r}")
        remote = spec.get("remote")
        if remote is None:
            problems.append(f"{where}.remote is missing: give the http(s) URL of the upstream's root")
        elif not isinstance(remote, str) or not _REMOTE_URL.match(remote):
            problems.append(
                f"{where}.remote must be the http(s) URL of the upstream's root, e.g. https://registry-1.docker.io; "
                f"got {remote!r}"
            )
        has_user, has_password = bool(spec.get("username")), bool(spec.get("password"))
        if has_user != has_password:
            problems.append(
                f"{where}: username and password go together; username {'set' if has_user else 'unset'}, "
                f"password {'set' if has_password else 'unset'}"
            )
        ttl = spec.get("ttl")
        if ttl not in (None, "") and not _DURATION.match(str(ttl)):
            problems.append(f"{where}.ttl must be a duration such as 168h; got {ttl!r}")
        unknown = sorted(map(str, set(spec) - set(MIRROR_KEYS)))
        if unknown:
            problems.append(f"{where}: unknown keys {', '.join(unknown)} (known: {', '.join(MIRROR_KEYS)})")
    return problems


def auth_user_problems(users: Any, variable: str = "registry_cache_auth_users") -> List[str]:
    """What is wrong with the htpasswd user list; never shows passwords."""
    if not isinstance(users, list):
        return [f"{variable} must be a list of {{name, password}}"]
    problems = []
    for index, user in enumerate(users):
        if not isinstance(user, Mapping):
            problems.append(f"{variable}[{index}] must be a mapping with name and password")
            continue
        name = user.get("name")
        if not isinstance(name, str) or not name or ":" in name or any(c.isspace() for c in name):
            problems.append(f"{variable}[{index}].name must be a non-empty name with no colon or space; got {name!r}")
        if not user.get("password"):
            problems.append(f"{variable}[{index}] ({name}) needs a non-empty password (keep it in Ansible Vault)")
    return problems
