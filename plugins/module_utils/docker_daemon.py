# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Docker daemon configuration: pure functions over daemon.json text and the systemd ExecStart.

Nothing here touches the host. The module ``docker_daemon_config`` reads the files and runs the
commands; these functions decide what the new daemon.json is, whether a key collides with a flag
the unit already passes to dockerd, and how to call ``dockerd --validate``.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from typing import Any, Dict, List, Optional, Tuple

# daemon.json keys whose dockerd flag is not spelled like the key (plural keys, singular flags).
KEY_TO_FLAGS: Dict[str, Tuple[str, ...]] = {
    "hosts": ("host",),
    "data-root": ("data-root", "graph"),
    "insecure-registries": ("insecure-registry",),
    "registry-mirrors": ("registry-mirror",),
    "log-opts": ("log-opt",),
    "storage-opts": ("storage-opt",),
    "default-address-pools": ("default-address-pool",),
    "labels": ("label",),
    "dns-opts": ("dns-opt",),
    "exec-opts": ("exec-opt",),
    "runtimes": ("add-runtime",),
    "default-ulimits": ("default-ulimit",),
    "authorization-plugins": ("authorization-plugin",),
    "features": ("feature",),
    "node-generic-resources": ("node-generic-resource",),
    "cluster-store-opts": ("cluster-store-opt",),
}

# dockerd's one-letter flags and the long flag each stands for.
SHORT_FLAGS: Dict[str, str] = {
    "H": "host",
    "s": "storage-driver",
    "g": "graph",
    "D": "debug",
    "G": "group",
    "l": "log-level",
    "p": "pidfile",
    "b": "bridge",
}

# Short flags that take no value (booleans); every other short flag takes the next token.
SHORT_BOOL_FLAGS = frozenset({"D"})
# Long boolean flags: they never consume the following token.
LONG_BOOL_FLAGS = frozenset(
    {
        "debug",
        "live-restore",
        "tls",
        "tlsverify",
        "experimental",
        "icc",
        "ip-forward",
        "ip-masq",
        "iptables",
        "ip6tables",
        "ipv6",
        "userland-proxy",
        "selinux-enabled",
        "no-new-privileges",
        "init",
        "raw-logs",
        "validate",
        "rootless",
        "version",
        "help",
    }
)


class DaemonConfigError(ValueError):
    """Input that cannot be turned into a daemon.json (bad JSON, not an object, ...)."""


def load_config(text: Optional[str]) -> Dict[str, Any]:
    """Parse daemon.json text; a missing or blank file is an empty configuration."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise DaemonConfigError(f"is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DaemonConfigError(f"must hold a JSON object, found a JSON {type(data).__name__}")
    return data


def render(config: Dict[str, Any]) -> str:
    """The daemon.json text we write: two-space indent, keys in insertion order, final newline."""
    return json.dumps(config, indent=2) + "\n"


def deep_merge(base: Dict[str, Any], overlay: Dict[str, Any]) -> Dict[str, Any]:
    """Merge ``overlay`` into a copy of ``base``.

    Nested objects merge key by key, so keys we do not own survive (``features.cdi`` next to our
    ``features.containerd-snapshotter``). Lists and scalars are replaced whole. A ``None`` value in
    the overlay removes that key.
    """
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        elif isinstance(value, dict):
            merged[key] = deep_merge({}, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_exec_start(show_output: str) -> List[str]:
    """The dockerd argv from ``systemctl show <unit> -p ExecStart`` (drop-ins already applied).

    systemd prints ``ExecStart={ path=/usr/bin/dockerd ; argv[]=/usr/bin/dockerd -H fd:// ; ... }``,
    one brace group per command. The last command that runs dockerd wins; without one, the last.
    """
    argvs: List[List[str]] = []
    for match in re.finditer(r"argv\[\]=(.*?)\s;\s", show_output):
        try:
            argvs.append(shlex.split(match.group(1)))
        except ValueError:
            argvs.append(match.group(1).split())
    if not argvs:
        return []
    with_dockerd = [argv for argv in argvs if argv and argv[0].rsplit("/", 1)[-1] == "dockerd"]
    return (with_dockerd or argvs)[-1]


def parse_flags(argv: List[str]) -> List[Tuple[str, str]]:
    """``(long flag name, token as written)`` for each flag in a dockerd argv (argv[0] skipped).

    ``-H fd://``, ``-Hfd://``, ``--host=fd://``, ``--host fd://`` all give ``("host", ...)``.
    """
    flags: List[Tuple[str, str]] = []
    tokens = argv[1:]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.startswith("--") and len(token) > 2:
            name, has_value, _value = token[2:].partition("=")
            written = token
            if not has_value and name not in LONG_BOOL_FLAGS and index < len(tokens):
                if not tokens[index].startswith("-"):
                    written = f"{token} {tokens[index]}"
                    index += 1
            flags.append((name, written))
        elif token.startswith("-") and len(token) > 1 and not token.startswith("--"):
            letter = token[1]
            name = SHORT_FLAGS.get(letter, letter)
            written = token
            if letter not in SHORT_BOOL_FLAGS and len(token) == 2 and index < len(tokens):
                written = f"{token} {tokens[index]}"
                index += 1
            flags.append((name, written))
    return flags


def flags_for_key(key: str) -> Tuple[str, ...]:
    return KEY_TO_FLAGS.get(key, (key,))


def flag_conflicts(keys, argv: List[str]) -> List[Tuple[str, str]]:
    """``(daemon.json key, flag as written in ExecStart)`` for each key the unit already sets."""
    flags = parse_flags(argv)
    conflicts = []
    for key in keys:
        for name, written in flags:
            if name in flags_for_key(key):
                conflicts.append((key, written))
    return conflicts


def config_file_flag(argv: List[str]) -> Optional[str]:
    """The ``--config-file`` the unit passes to dockerd, if any."""
    tokens = argv[1:]
    for index, token in enumerate(tokens):
        if token.startswith("--config-file="):
            return token.split("=", 1)[1]
        if token == "--config-file" and index + 1 < len(tokens):
            return tokens[index + 1]
    return None


def validation_argv(dockerd: str, candidate: str, unit_argv: List[str]) -> Tuple[List[str], List[str]]:
    """``(argv for dockerd --validate, tokens dropped)``.

    The unit's own flags go along so that dockerd reports a key that is also a flag; its
    ``--config-file`` is replaced by the candidate, and unexpanded ``$VARIABLES`` (from an
    EnvironmentFile) are dropped because they cannot be resolved here.
    """
    kept: List[str] = []
    dropped: List[str] = []
    tokens = unit_argv[1:]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == "--config-file":
            index += 1
            continue
        if token.startswith("--config-file=") or token in ("--validate",):
            continue
        if "$" in token:
            dropped.append(token)
            continue
        kept.append(token)
    return [dockerd, "--validate", "--config-file", candidate, *kept], dropped


_URL_CREDENTIALS = re.compile(r"(://)[^/@\s\"']+@")


def redact(value: Any) -> Any:
    """``value`` with the credentials of any ``scheme://user:password@host`` URL masked.

    daemon.json ``proxies`` may carry them; results, diffs and messages must not.
    """
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(r"\1***@", value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def no_validate_flag(output: str) -> bool:
    """True when dockerd is too old (before 23.0) to know ``--validate``."""
    return "unknown flag: --validate" in output


def conflict_message(service: str, conflicts: List[Tuple[str, str]], argv: List[str]) -> str:
    items = "; ".join(f"key {key!r} is also set by the flag {flag!r}" for key, flag in conflicts)
    return (
        f"daemon.json: {items} in the effective ExecStart of {service}.service "
        f"({' '.join(argv)}). dockerd refuses to start when an option is set both as a flag and in "
        "daemon.json, so nothing was changed. Drop the key from the requested settings, or remove "
        "the flag from the unit's drop-in."
    )
