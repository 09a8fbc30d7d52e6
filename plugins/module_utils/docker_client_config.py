# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""One registry's credentials in a Docker CLI client config file (``~/.docker/config.json``).

``plan`` reads nothing from disk: it takes the file's text and returns what the file must become;
``write_config`` replaces the file atomically. Nothing here ever returns a password or an ``auth``
value: what a person sees (``auths_view``, the messages) carries registries and usernames only.

How the Docker CLI (and buildx, which loads the same file) picks the credentials of a registry,
docker/cli cli/config/configfile/file.go:

    func (configFile *ConfigFile) GetCredentialsStore(registryHostname string) credentials.Store {
        store := credentials.NewFileStore(configFile)          // the "auths" object
        if helper := getConfiguredCredentialStore(configFile, registryHostname); helper != "" {
            store = newNativeStore(configFile, helper)        // docker-credential-<helper>
        }
        ...
    func getConfiguredCredentialStore(c *ConfigFile, registryHostname string) string {
        if c.CredentialHelpers != nil && registryHostname != "" {
            if helper, exists := c.CredentialHelpers[registryHostname]; exists {
                return helper
            }
        }
        return c.CredentialsStore
    }

So ``credHelpers[registry]``, when the key exists, decides alone (an empty string there means "auths");
otherwise a non-empty ``credsStore`` sends every registry to that helper. Either way ``auths`` is not read
for the registry, and an entry written there would silently do nothing (``helper_in_the_way``).
Go's encoding/json matches object keys to struct fields case-insensitively (last key wins), so
``CredsStore`` counts as ``credsStore`` too.

cli/config/config.go (LoadDefaultConfigFile) also auto-detects a credsStore (pass, secretservice) only
while the file ``ContainsAuth()`` nothing - no credsStore, no credHelpers, no auths entry - so once our
entry is there, no detected helper takes over. The ``DOCKER_AUTH_CONFIG`` environment variable (checked
in GetCredentialsStore after the above) still overrides the file, for whoever sets it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

FILE_MODE = 0o600
DIR_MODE = 0o700
STATES = ("present", "absent")

# As distribution's reference grammar spells a domain: dot-separated components of letters, digits and
# inner hyphens (an IPv4 address matches too), or an IPv6 address in brackets; then ":port".
_COMPONENT = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REGISTRY = re.compile(rf"^(?P<host>{_COMPONENT}(?:\.{_COMPONENT})*|\[(?P<ipv6>[^\]/]*)\]):(?P<port>[0-9]+)$")
REGISTRY_FORM = "host:port as image references spell it (127.0.0.1:5000, registry.lan:5000, [fd00::2]:5000)"


class DockerClientConfigError(Exception):
    """A request or a file the module refuses; the message starts with the option it concerns."""


def _registry_why(registry: str) -> Optional[str]:
    """What is wrong with a non-empty ``registry`` string, or None."""
    match = _REGISTRY.match(registry)
    if match is None:
        if "://" in registry:
            return "has a scheme (no http:// or https://)"
        if "/" in registry:
            return "has a path (no /v2/ or repository)"
        if registry.count(":") > 1 and not registry.startswith("["):
            return "looks like an IPv6 address without brackets"
        return "is not of that form"
    ipv6 = match.group("ipv6")
    port = match.group("port")
    why = None
    if ipv6 is not None:
        try:
            # Image references take no zone (%eth0), which ipaddress would accept.
            ipaddress.IPv6Address(ipv6 if "%" not in ipv6 else "")
        except ValueError:
            why = f"holds {ipv6!r}, which is not an IPv6 address (without a zone)"
    if port.startswith("0") or not 1 <= int(port) <= 65535:
        why = f"has port {port}, not 1-65535"
    return why


def registry_problem(registry: Any) -> Optional[str]:
    """Why ``registry`` is not a ``host:port`` of an image reference (naming the option), or None."""
    why = _registry_why(registry) if isinstance(registry, str) and registry else "is empty or not a string"
    return f"registry: expected {REGISTRY_FORM}; {registry!r} {why}" if why else None


def credentials_problem(username: Optional[str], password: Optional[str]) -> Optional[str]:
    """Why ``username``/``password`` cannot go into an ``auth`` value, or None. Never quotes the password."""
    if not username:
        return "username: must not be empty when state is present"
    if ":" in username:
        # auth is base64("user:password") and Docker splits it at the first colon.
        return f"username: {username!r} contains a colon, which Docker's auth format (user:password) cannot hold"
    if any(ord(char) < 32 or ord(char) == 127 for char in username):
        return f"username: {username!r} contains a control character"
    if not password:
        return "password: must not be empty when state is present"
    return None


def encode_auth(username: str, password: str) -> str:
    """The ``auth`` value Docker writes for these credentials (cli/config/configfile/file.go encodeAuth)."""
    return base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def entry_username(entry: Any) -> Optional[str]:
    """The username an ``auths`` entry holds (from its ``auth`` value, else its ``username``), or None."""
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        user, sep, _secret = decoded.partition(":")
        return user if sep and user else None
    user = entry.get("username")
    return user if isinstance(user, str) and user else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def load_config(text: Optional[str], path: str) -> Dict[str, Any]:
    """The file's object; ``{}`` for a missing or empty file (Docker reads an empty file as no settings)."""
    if text is None or not text.strip():
        return {}
    try:
        config = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise DockerClientConfigError(
            f"path: {path} is not valid JSON ({exc}); fix or remove it first. Nothing was changed."
        ) from exc
    if not isinstance(config, dict):
        raise DockerClientConfigError(
            f"path: {path} holds a JSON {type(config).__name__}, not an object; fix or remove it first. "
            "Nothing was changed."
        )
    for key, value in config.items():
        lower = key.lower()
        if lower == "auths" and not isinstance(value, (dict, type(None))):
            raise DockerClientConfigError(
                f"path: {key} in {path} is not an object; fix or remove it first. Nothing was changed."
            )
        if lower == "credhelpers" and not (
            value is None or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))
        ):
            raise DockerClientConfigError(
                f"path: {key} in {path} is not an object of helper names; fix or remove it first. Nothing was changed."
            )
        if lower == "credsstore" and not isinstance(value, (str, type(None))):
            raise DockerClientConfigError(
                f"path: {key} in {path} is not a string; fix or remove it first. Nothing was changed."
            )
    return config


def _fields(config: Dict[str, Any], name: str) -> List[Tuple[str, Any]]:
    """(key, value) of every top-level key Go's encoding/json decodes into field ``name``, in file order."""
    return [(key, value) for key, value in config.items() if key.lower() == name.lower()]


def helper_in_the_way(config: Dict[str, Any], registry: str) -> Optional[Tuple[str, str]]:
    """``(key, helper)`` when Docker reads ``registry``'s credentials from a helper, not from ``auths``.

    ``key`` is spelled as a person finds it in the file: ``credHelpers["host:port"]`` or ``credsStore``.
    """
    helpers: Dict[str, Tuple[str, str]] = {}
    for key, value in _fields(config, "credHelpers"):
        # Decoding several keys into one map merges them.
        for name, helper in (value or {}).items():
            helpers[name] = (key, helper)
    if registry in helpers:
        key, helper = helpers[registry]
        return (f"{key}[{json.dumps(registry)}]", helper) if helper else None
    stores = [(key, value) for key, value in _fields(config, "credsStore") if value is not None]
    if stores and stores[-1][1]:
        return stores[-1][0], stores[-1][1]
    return None


def helper_message(path: str, registry: str, key: str, helper: str) -> str:
    """Why the module refuses to write, and what to do instead."""
    if key.lower().startswith("credhelpers"):
        why = (
            f"{path} sets {key} to {helper!r}, so Docker reads the credentials for {registry} from "
            f"docker-credential-{helper} and ignores auths[{json.dumps(registry)}]"
        )
        fix = f"remove that {key.split('[', 1)[0]} entry"
    else:
        why = (
            f"{path} sets {key} to {helper!r}, so Docker reads the credentials of every registry without a "
            f"credHelpers entry, {registry} included, from docker-credential-{helper} and ignores auths"
        )
        fix = (
            f"remove {key} (or set credHelpers[{json.dumps(registry)}] to an empty string, so that {registry} "
            "is read from auths)"
        )
    return (
        f"path: {why}. An entry written there would not be used: {fix}, or log in through that helper "
        f"(docker login {registry}) instead of this module. Nothing was changed."
    )


def auths_view(config: Dict[str, Any]) -> Dict[str, Dict[str, Optional[str]]]:
    """Registry -> ``{"username": ...}`` of the file's ``auths``: what a diff may show, never a secret."""
    view: Dict[str, Dict[str, Optional[str]]] = {}
    for _key, auths in _fields(config, "auths"):
        for registry, entry in (auths or {}).items():
            view[registry] = {"username": entry_username(entry)}
    return view


@dataclass
class Plan:
    """What the file must become; ``config`` is None when it stays as it is."""

    path: str
    registry: str
    state: str
    exists: bool
    before: Dict[str, Dict[str, Optional[str]]]
    after: Dict[str, Dict[str, Optional[str]]]
    config: Optional[Dict[str, Any]] = None
    username: Optional[str] = None
    previous_username: Optional[str] = None
    had_entry: bool = False
    replaced: bool = False

    @property
    def write(self) -> bool:
        return self.config is not None

    @property
    def created(self) -> bool:
        return self.write and not self.exists


def plan(
    path: str,
    text: Optional[str],
    registry: str,
    state: str = "present",
    *,
    username: Optional[str] = None,
    password: Optional[str] = None,
) -> Plan:
    """What ``path`` (holding ``text``, None when missing) must hold for ``registry``'s credentials.

    Raises DockerClientConfigError, naming the option, for a request or a file it refuses.
    """
    if state not in STATES:
        raise DockerClientConfigError(f"state: expected one of {', '.join(STATES)}, got {state!r}")
    problem = registry_problem(registry)
    if problem:
        raise DockerClientConfigError(problem)
    if state == "present":
        problem = credentials_problem(username, password)
        if problem:
            raise DockerClientConfigError(problem)
    config = load_config(text, path)
    before = auths_view(config)
    # Every key Go decodes into "auths" (auths, Auths, ...) holding this registry; the last one wins there.
    holders = [key for key, value in _fields(config, "auths") if isinstance(value, dict) and registry in value]
    had_entry = bool(holders)
    entry = config[holders[-1]][registry] if holders else None
    result = Plan(
        path=path,
        registry=registry,
        state=state,
        exists=text is not None,
        before=before,
        after=before,
        username=username if state == "present" else entry_username(entry),
        previous_username=entry_username(entry) if had_entry else None,
        had_entry=had_entry,
    )

    if state == "absent":
        if not had_entry:
            return result
        result.config = _without(config, registry, holders)
        result.after = auths_view(result.config)
        return result

    in_the_way = helper_in_the_way(config, registry)
    if in_the_way is not None:
        raise DockerClientConfigError(helper_message(path, registry, *in_the_way))
    # credentials_problem made sure that both are non-empty strings.
    wanted = {"auth": encode_auth(username or "", password or "")}
    if holders == ["auths"] and entry == wanted:
        return result
    new = _without(config, registry, [key for key in holders if key != "auths"])
    auths = new.get("auths")
    new["auths"] = {**(auths if isinstance(auths, dict) else {}), registry: wanted}
    result.config = new
    result.replaced = had_entry
    after = auths_view(new)
    if had_entry and result.previous_username == username:
        # Same user, other password (or token): show that something changed, never what.
        after[registry] = {"username": username, "credentials": "replaced"}
    result.after = after
    return result


def _without(config: Dict[str, Any], registry: str, keys: List[str]) -> Dict[str, Any]:
    """A copy of ``config`` whose ``keys`` objects no longer hold ``registry``; the rest as it was."""
    new = dict(config)
    for key in keys:
        new[key] = {name: value for name, value in config[key].items() if name != registry}
    return new


def summary(result: Plan, check_mode: bool, attributes: Optional[List[str]] = None) -> str:
    """One line for a person; registries and usernames only."""

    def did(verb: str, past: str) -> str:
        return f"would {verb}" if check_mode else past

    fixes = f"; {did('set', 'set')} {' and '.join(attributes)}" if attributes else ""
    user = f"user {result.username}"
    if result.state == "absent":
        if result.write:
            what = f"{did('remove', 'removed')} the credentials for {result.registry}"
        elif result.exists:
            what = f"holds no credentials for {result.registry}"
        else:
            what = f"does not exist; no credentials for {result.registry} to remove"
    elif not result.write:
        what = f"already holds the credentials for {result.registry} ({user})"
    elif result.created:
        what = f"{did('create it', 'created')} with the credentials for {result.registry} ({user})"
    elif result.replaced:
        if result.previous_username and result.previous_username != result.username:
            user = f"user {result.previous_username} -> {result.username}"
        what = f"{did('replace', 'replaced')} the credentials for {result.registry} ({user})"
    else:
        what = f"{did('add', 'added')} the credentials for {result.registry} ({user})"
    return f"{result.path}: {what}{fixes}"


def render(config: Dict[str, Any]) -> str:
    """The file's text, formatted as the Docker CLI writes it (tab indent)."""
    return json.dumps(config, indent="\t", ensure_ascii=False) + "\n"


def render_view(view: Dict[str, Dict[str, Optional[str]]]) -> str:
    """A diff side: the ``auths`` registries and their usernames."""
    return json.dumps({"auths": view}, indent=2, sort_keys=True) + "\n"


def target_path(path: str) -> str:
    """The file a write replaces: the target of a symlink (as docker/cli's Save does), else ``path``."""
    return os.path.realpath(path) if os.path.islink(path) else path


def missing_dirs(directory: str) -> List[str]:
    """``directory`` and its missing parents that do not exist yet, outermost first."""
    missing: List[str] = []
    current = os.path.abspath(directory)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return list(reversed(missing))


def _chown(path: str, uid: Optional[int], gid: Optional[int], fd: Optional[int] = None) -> None:
    """Set the owner and group that are not None and differ (so an unprivileged run never calls chown)."""
    st = os.fstat(fd) if fd is not None else os.stat(path)
    want_uid = st.st_uid if uid is None else uid
    want_gid = st.st_gid if gid is None else gid
    if (want_uid, want_gid) == (st.st_uid, st.st_gid):
        return
    if fd is not None:
        os.fchown(fd, want_uid, want_gid)
    else:
        os.chown(path, want_uid, want_gid)


def make_dirs(directory: str, uid: Optional[int] = None, gid: Optional[int] = None) -> List[str]:
    """Create ``directory`` and missing parents with mode 0700 (and the owner given); the ones created."""
    created = missing_dirs(directory)
    for path in created:
        os.mkdir(path, DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode passes through the umask
        _chown(path, uid, gid)
    return created


def write_config(path: str, text: str, uid: Optional[int] = None, gid: Optional[int] = None) -> None:
    """Replace ``path`` with ``text`` atomically: a 0600 temp file in the same directory, fsync, rename.

    An existing file keeps its owner and group unless ``uid``/``gid`` say otherwise.
    """
    directory = os.path.dirname(path) or "."
    if os.path.exists(path):
        st = os.stat(path)
        uid = st.st_uid if uid is None else uid
        gid = st.st_gid if gid is None else gid
    # mkstemp creates the file with mode 0600 from its first byte: the credentials are never readable by others.
    fd, staged = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), FILE_MODE)
            _chown(staged, uid, gid, fd=fh.fileno())
            os.fsync(fh.fileno())
        os.replace(staged, path)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def attribute_fixes(
    path: str, uid: Optional[int], gid: Optional[int], owner: Optional[str] = None, group: Optional[str] = None
) -> List[str]:
    """What differs on an existing ``path`` from mode 0600 and the owner/group asked for, e.g. ``["mode 0600"]``."""
    st = os.stat(path)
    fixes: List[str] = []
    if st.st_mode & 0o7777 != FILE_MODE:
        fixes.append(f"mode {FILE_MODE:04o}")
    if uid is not None and st.st_uid != uid:
        fixes.append(f"owner {owner if owner is not None else uid}")
    if gid is not None and st.st_gid != gid:
        fixes.append(f"group {group if group is not None else gid}")
    return fixes


def fix_attributes(path: str, uid: Optional[int], gid: Optional[int]) -> None:
    """Give an existing ``path`` mode 0600 and the owner/group asked for."""
    _chown(path, uid, gid)
    os.chmod(path, FILE_MODE)
