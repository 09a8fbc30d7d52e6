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
    *,
    ca_path: str = "",
    username: str = "",
    auth: bool = False,
) -> Dict[str, Any]:
    """The endpoint map every client of the node's registries reads.

    Upstream -> the ``host:port`` (and URL) of its pull-through proxy, plus the writable registry's.
    The host is what a client on the node dials: the bind address (IPv6 in brackets), or 127.0.0.1 for
    a wildcard bind. ``tls`` defaults to "the bind address is not loopback" (a wildcard bind listens
    on the network too, so registry_cache serves TLS there). ``ca_path`` is the CA bundle clients
    verify the registries with (empty: the system store), ``username`` the writable registry's user
    clients log in as. ``auth`` says that the registries have htpasswd users: the writable registry
    then requires them, and so does a proxy with upstream credentials (what it serves is private); a
    proxy of a public upstream answers anonymously, since Docker cannot send credentials to a
    ``registry-mirrors`` entry (moby#30880).
    """
    host = client_host(bind_address)
    bind = (bind_address or "").strip("[]")
    secure = (not is_loopback(bind)) if tls is None else bool(tls)
    scheme = "https" if secure else "http"
    entries = sorted((mirrors or {}).items())
    mirror_hosts = {name: f"{host}:{int(spec['port'])}" for name, spec in entries}
    local = f"{host}:{int(local_port)}"
    return {
        "bind": bind,
        "loopback": is_loopback(bind),
        "host": host,
        "tls": secure,
        "scheme": scheme,
        "insecure_http": not secure,
        "ca_path": (ca_path or "") if secure else "",
        "auth": bool(auth),
        "username": (username or "") if auth else "",
        "local": local,
        "local_url": f"{scheme}://{local}",
        "mirrors": mirror_hosts,
        "mirror_urls": {name: f"{scheme}://{endpoint}" for name, endpoint in mirror_hosts.items()},
        "mirror_auth": {name: bool(auth) and bool(spec.get("username")) for name, spec in entries},
    }


def registry_instances(
    mirrors: Optional[Mapping[str, Mapping[str, Any]]], local_port: int = 5000, auth: bool = False
) -> List[Dict[str, Any]]:
    """One entry per registry process: the writable one first, then one proxy per upstream.

    ``auth`` (htpasswd users are configured): each entry's ``auth`` says whether that instance requires
    them, by the rule of :func:`registry_endpoints`.
    """
    instances: List[Dict[str, Any]] = [
        {"name": WRITABLE_INSTANCE, "kind": "writable", "port": int(local_port), "upstream": None, "auth": bool(auth)}
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
                "auth": bool(auth) and bool(spec.get("username")),
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


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
TLS_MODES = ("none", "selfsigned", "provided")


def bind_address_problem(address: Any, variable: str = "dgx_spark_registry_bind_address") -> Optional[str]:
    """Why ``address`` is not an address (IPv4, IPv6 with or without brackets, a host name), or None."""
    text = address if isinstance(address, str) else ""
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        parsed = ipaddress.ip_address(bare)
    except ValueError:
        parsed = None
    if parsed is not None and (parsed.version == 6 or bare == text):
        return None
    if parsed is None and bare == text and _HOST_NAME.match(text) and not text.replace(".", "").isdigit():
        return None
    return (
        f"{variable} must be an IPv4 address, an IPv6 address (brackets optional) or a host name, with no scheme "
        f"or port, e.g. 127.0.0.1, 0.0.0.0, 10.0.4.2, fd00::2 or spark01.lab; got {address!r}"
    )


def settings_problems(
    bind_address: Any,
    tls_mode: Any,
    auth_users: Any,
    mirrors: Any,
    prefix: str = "dgx_spark_registry",
) -> List[str]:
    """The rules that span the registry settings, one message per broken rule; never shows passwords.

    Off loopback (a wildcard bind included: it listens on the network) the registries need TLS and
    htpasswd users. With users, a proxy whose upstream has credentials requires them as well, so the
    docker.io proxy must not have upstream credentials then: dockerd's ``registry-mirrors`` (and a DinD
    daemon's ``--registry-mirror``) cannot send credentials to a mirror (moby#30880) and would fall
    back to Docker Hub without saying so.
    """
    problems: List[str] = []
    bind_problem = bind_address_problem(bind_address, f"{prefix}_bind_address")
    if bind_problem:
        problems.append(bind_problem)
    if tls_mode not in TLS_MODES:
        problems.append(f"{prefix}_tls_mode must be one of {', '.join(TLS_MODES)}; got {tls_mode!r}")
    users = auth_users if isinstance(auth_users, list) else []
    if not bind_problem and not is_loopback(str(bind_address)) and (tls_mode == "none" or not users):
        problems.append(
            f"{prefix}_bind_address: a non-loopback address ({bind_address}) needs {prefix}_auth_users (htpasswd) "
            f"and {prefix}_tls_mode (selfsigned or provided); found {len(users)} user(s) and tls mode {tls_mode}. "
            "Set both, or bind to 127.0.0.1"
        )
    docker_hub = (mirrors or {}).get("docker.io") if isinstance(mirrors, Mapping) else None
    if users and isinstance(docker_hub, Mapping) and docker_hub.get("username"):
        problems.append(
            f"{prefix}_mirrors[docker.io] has upstream credentials, so with {prefix}_auth_users set its proxy requires "
            "the registries' users (what it serves is private to those credentials), and Docker's registry-mirrors "
            "cannot send credentials to a mirror (moby#30880): pulls would bypass the cache. Drop the docker.io "
            f"username and password, or leave {prefix}_auth_users empty (loopback only)"
        )
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
