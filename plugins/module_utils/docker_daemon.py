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
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Tuple

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


def flag_conflicts(keys: Iterable[str], argv: List[str]) -> List[Tuple[str, str]]:
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
        return {redact(key): redact(item) for key, item in value.items()}
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


# ---------------------------------------------------------------------------------------------
# Owned keys, collection defaults, reload/restart classification and the applied-settings check.
#
# A key path is the tuple of object keys down to a leaf: ("log-opts", "max-size"). Lists and
# scalars are leaves (dockerd replaces lists whole); an empty object is a leaf too.

KeyPath = Tuple[str, ...]

STATE_VERSION = 1

# Top-level daemon.json keys that dockerd applies on SIGHUP (`systemctl reload docker`); any other
# key, unknown ones included, takes effect only after a restart. Source: the dockerd reference,
# "Configuration reload behavior" (docs.docker.com/reference/cli/dockerd), cross-checked on
# dockerd 26.1 (../shared/ENVIRONMENT.md, "dockerd 26.1 reload"). The reference also lists
# `features`, but features.containerd-snapshotter is stored and not applied until a restart, so
# `features` stays a restart key. builder.gc and log-opts were verified to need a restart as well.
RELOAD_KEYS = frozenset(
    {
        "debug",
        "labels",
        "live-restore",
        "max-concurrent-downloads",
        "max-concurrent-uploads",
        "max-download-attempts",
        "default-runtime",
        "runtimes",
        "authorization-plugins",
        "allow-nondistributable-artifacts",
        "insecure-registries",
        "registry-mirrors",
        "shutdown-timeout",
    }
)


class OwnedStateError(ValueError):
    """A state file that cannot be read as the list of keys this module wrote."""


def dotted(path: KeyPath) -> str:
    """``("log-opts", "max-size")`` -> ``"log-opts.max-size"`` (for people; keys may hold dots)."""
    return ".".join(path)


def leaves(config: Dict[str, Any], prefix: KeyPath = ()) -> Dict[KeyPath, Any]:
    """Every leaf of ``config`` by key path, in document order. ``None`` values are leaves too."""
    found: Dict[KeyPath, Any] = {}
    for key, value in config.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            found.update(leaves(value, path))
        else:
            found[path] = value
    return found


# Sentinels of lookup(): the key is absent; a parent on the way is a scalar or list, not an object.
_MISSING = object()
_BLOCKED = object()


def lookup(config: Dict[str, Any], path: KeyPath) -> Any:
    """The value at ``path``; ``_MISSING`` when absent, ``_BLOCKED`` when a parent is not an object."""
    node: Any = config
    for depth, key in enumerate(path):
        if not isinstance(node, dict):
            return _BLOCKED if depth else _MISSING
        if key not in node:
            return _MISSING
        node = node[key]
    return node


def has_path(config: Dict[str, Any], path: KeyPath) -> bool:
    found = lookup(config, path)
    return found is not _MISSING and found is not _BLOCKED


def set_path(config: Dict[str, Any], path: KeyPath, value: Any) -> None:
    """Set ``path`` in place, creating the parent objects it needs."""
    node = config
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = copy.deepcopy(value)


def remove_path(config: Dict[str, Any], path: KeyPath) -> None:
    """Remove ``path`` in place, then every parent object that this removal left empty."""
    parents = [config]
    for key in path[:-1]:
        parents.append(parents[-1][key])
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):
        if parents[depth]:
            break
        parents[depth - 1].pop(path[depth - 1], None)


def overlaps(path: KeyPath, other: KeyPath) -> bool:
    """True when one path is the other or lies inside it."""
    shortest = min(len(path), len(other))
    return path[:shortest] == other[:shortest]


def load_owned(text: Optional[str]) -> Dict[KeyPath, Any]:
    """Parse the state file: ``{"version": 1, "owned": [{"key": [...], "value": ...}, ...]}``."""
    if text is None or not text.strip():
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise OwnedStateError(f"is not valid JSON ({exc})") from exc
    entries = data.get("owned") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise OwnedStateError('must hold a JSON object with an "owned" list')
    owned: Dict[KeyPath, Any] = {}
    for entry in entries:
        key = entry.get("key") if isinstance(entry, dict) else None
        if not isinstance(key, list) or not key or not all(isinstance(part, str) for part in key):
            raise OwnedStateError('has an "owned" entry without a "key" list of strings')
        owned[tuple(key)] = entry.get("value")
    return owned


def render_owned(owned: Dict[KeyPath, Any], config_path: str) -> str:
    """The state file text; it holds values as written, so the caller writes it with mode 0600."""
    entries = [{"key": list(path), "value": owned[path]} for path in sorted(owned)]
    document = {"version": STATE_VERSION, "config": config_path, "owned": entries}
    return json.dumps(document, indent=2) + "\n"


@dataclass
class Plan:
    """What one run does to daemon.json and to the record of the keys the module owns."""

    config: Dict[str, Any]
    owned: Dict[KeyPath, Any]
    filled: List[KeyPath] = field(default_factory=list)
    removed: List[KeyPath] = field(default_factory=list)
    kept: List[KeyPath] = field(default_factory=list)


def plan_config(
    previous: Dict[str, Any],
    settings: Dict[str, Any],
    defaults: Dict[str, Any],
    owned: Dict[KeyPath, Any],
    flag_keys: Iterable[str] = (),
) -> Plan:
    """The new daemon.json and the new owned-key record.

    * ``settings`` are forced: merged as :func:`deep_merge` does (``None`` removes).
    * ``defaults`` fill only leaves absent from the file; a leaf this module filled earlier and
      that still holds the recorded value follows a changed default. Top-level keys in
      ``flag_keys`` (set as dockerd flags by the unit) count as present.
    * A leaf recorded in ``owned`` that neither ``settings`` nor ``defaults`` mention any more is
      removed when it still holds the recorded value, and kept (reported in ``kept``) otherwise.
    * A key is owned only once this module wrote it: a foreign key that already holds the
      requested value stays foreign, and so is never removed.
    """
    config = deep_merge(previous, settings)
    new_owned: Dict[KeyPath, Any] = {}
    plan = Plan(config=config, owned=new_owned)
    setting_leaves = leaves(settings)
    default_leaves = {path: value for path, value in leaves(defaults).items() if value is not None}
    blocked = set(flag_keys)

    for path, value in setting_leaves.items():
        if value is None:
            continue
        # Owned when this run writes it or an earlier one did; never for a foreign equal value.
        if path in owned or lookup(previous, path) != lookup(config, path):
            new_owned[path] = copy.deepcopy(value)

    for path, value in default_leaves.items():
        if path[0] in blocked or any(overlaps(path, forced) for forced in setting_leaves):
            continue
        current = lookup(config, path)
        if current is _MISSING:
            set_path(config, path, value)
            plan.filled.append(path)
            new_owned[path] = copy.deepcopy(value)
        elif path in owned and current == owned[path]:
            if current != value:
                set_path(config, path, value)
                plan.filled.append(path)
            new_owned[path] = copy.deepcopy(value)
        # Otherwise the leaf is someone else's (or a foreign scalar blocks it): leave it.

    requested = list(setting_leaves) + list(default_leaves)
    for path, recorded in owned.items():
        if any(overlaps(path, other) for other in requested):
            continue
        if not has_path(config, path):
            continue
        current = lookup(config, path)
        if current == recorded:
            remove_path(config, path)
            plan.removed.append(path)
        else:
            plan.kept.append(path)
    return plan


def changed_leaves(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """Sorted dotted paths of the leaves added, changed or removed between two configurations."""
    old, new = leaves(before), leaves(after)
    paths = {path for path in set(old) | set(new) if old.get(path, _MISSING) != new.get(path, _MISSING)}
    return sorted(dotted(path) for path in paths)


# Reload keys whose removal a reload applies: dockerd falls back to the default when they are absent.
# For the others a reload applies a key only when it is set (dockerd's daemon/reload.go checks
# conf.IsValueSet for debug, labels, live-restore, shutdown-timeout and the registry keys):
# removing one from daemon.json and reloading leaves the engine on the old value (seen: debug stayed
# on after its key was removed and dockerd reloaded, molecule/fleet). Their removal needs a restart.
RESET_ON_RELOAD = frozenset({"max-concurrent-downloads", "max-concurrent-uploads", "max-download-attempts"})


def removed_leaves(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """Sorted dotted paths of the leaves ``before`` has and ``after`` does not."""
    old, new = leaves(before), leaves(after)
    return sorted(dotted(path) for path in old if path not in new)


def classify(changed: Iterable[str], removed: Iterable[str] = ()) -> Tuple[List[str], List[str]]:
    """``(reload keys, restart keys)``: split dotted leaf paths by :data:`RELOAD_KEYS`. A key of
    ``removed`` (also in ``changed``) needs a restart unless a reload resets it (:data:`RESET_ON_RELOAD`)."""
    gone = set(removed)
    reload_keys: List[str] = []
    restart_keys: List[str] = []
    for key in changed:
        top = key.split(".", 1)[0]
        reloads = top in RELOAD_KEYS and (key not in gone or top in RESET_ON_RELOAD)
        (reload_keys if reloads else restart_keys).append(key)
    return sorted(reload_keys), sorted(restart_keys)


def mismatches(
    config: Dict[str, Any], settings: Dict[str, Any], defaults: Dict[str, Any], flag_keys: Iterable[str] = ()
) -> List[str]:
    """Dotted paths (never values) where ``config`` does not hold what was asked.

    A ``settings`` leaf must hold the requested value (``None``: be absent); a ``defaults`` leaf
    must be present with any value, unless ``settings`` covers it or the unit sets its top-level
    key as a flag. Compares the real values, so call it with unmasked data.
    """
    wrong = []
    setting_leaves = leaves(settings)
    for path, value in setting_leaves.items():
        if value is None:
            if has_path(config, path):
                wrong.append(path)
        elif lookup(config, path) != value:
            wrong.append(path)
    blocked = set(flag_keys)
    for path, value in leaves(defaults).items():
        if value is None or path[0] in blocked or any(overlaps(path, forced) for forced in setting_leaves):
            continue
        if not has_path(config, path):
            wrong.append(path)
    return sorted(dotted(path) for path in wrong)


def kept_warning(path: str, kept: List[KeyPath]) -> str:
    names = ", ".join(dotted(key) for key in kept)
    return (
        f"{path}: kept {names}: this module wrote them earlier and they are no longer requested, but "
        "their values were changed since by someone else; they are no longer tracked as owned."
    )


# ---------------------------------------------------------------------------------------------
# Pending reloads and restarts. A change to daemon.json is applied only by the reload or restart
# that follows it, usually in a handler at the end of the play; a run killed in between leaves
# daemon.json as wanted and dockerd on its old configuration, and the next run, finding nothing to
# change, would never apply it. So the module records the action before it replaces the file, one
# record per action named ``<unit>.<action>``, and the caller removes the records once the action
# has happened.

PENDING_ACTIONS: Tuple[str, ...] = ("reload", "restart")


def unit_name(service: str) -> str:
    """The systemd unit of ``service``: ``docker`` -> ``docker.service``; a full unit name stays."""
    return service if service.endswith(".service") else f"{service}.service"


def pending_records(service: str, reload_keys: Iterable[str], restart_keys: Iterable[str]) -> Dict[str, str]:
    """Record name -> record text for the actions that changed keys leave to do, in :data:`PENDING_ACTIONS` order.

    ``<unit>.reload`` when a changed key is one dockerd re-reads on SIGHUP, ``<unit>.restart`` when
    one takes effect only at start. The text is for people (which keys); it names keys, never values.
    """
    unit = unit_name(service)
    wanted = {
        "reload": (sorted(reload_keys), "keys dockerd re-reads on SIGHUP"),
        "restart": (sorted(restart_keys), "keys dockerd reads only at start"),
    }
    records: Dict[str, str] = {}
    for action in PENDING_ACTIONS:
        keys, what = wanted[action]
        if keys:
            records[f"{unit}.{action}"] = redact(f"{action} {unit}: daemon.json {what} changed: {', '.join(keys)}\n")
    return records
