# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Which managed files and directories differ from what the controller would write, in one pass.

The controller renders each template itself and sends only the sha1 of the result, so no file
content (some configurations hold passwords) ever crosses the connection. Everything here reads;
nothing writes. ``validate`` checks every entry before anything is read; ``file_plan`` then lstats
each path and lists the reasons it differs.
"""

from __future__ import annotations

import errno
import fnmatch
import grp
import hashlib
import os
import pwd
import re
import stat
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

FILE = "file"
DIRECTORY = "directory"
ABSENT = "absent"
ANY = "any"
STATES = (FILE, DIRECTORY, ABSENT, ANY)
KEYS = ("path", "state", "checksum", "owner", "group", "mode", "unlisted")
CHUNK = 1024 * 1024

_SHA1 = re.compile(r"[0-9a-f]{40}")
_MODE = re.compile(r"[0-7]{3,4}")


class FilePlanError(Exception):
    """Entries the module refuses; ``problems`` holds one line per bad field, each naming it
    (``files[i].field``), in input order."""

    def __init__(self, problems: List[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Wanted:
    """One validated entry: what the controller would make of ``path``."""

    path: str
    state: str = FILE
    checksum: Optional[str] = None
    owner: Optional[str] = None
    group: Optional[str] = None
    mode: Optional[int] = None
    unlisted: Optional[str] = None


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def validate(files: Sequence[Any]) -> List[Wanted]:
    """The entries as ``Wanted``, or ``FilePlanError`` listing every bad field of every entry.

    ``path`` must be absolute; ``state`` is ``file`` (default), ``directory``, ``absent`` or ``any`` (only
    whether something is there: it never differs); ``checksum`` is a sha1 (40 lowercase hex digits) of a
    file's content (without it only the kind and attributes of the file are compared), refused for a
    directory; ``absent`` and ``any`` take no other key; ``unlisted`` (a glob of names, only with ``directory``)
    asks which entries of the directory match it and are not listed; ``owner`` and ``group``
    are non-empty names; ``mode`` is an octal string (``"0644"`` or ``"644"``) or, as YAML reads an unquoted
    ``0644``, the number of the bits (420), as the file module takes it. Two entries may not name
    the same path (compared after normalisation: ``/etc/a/`` and ``/etc//a`` are ``/etc/a``).
    """
    problems: List[str] = []
    wanted: List[Wanted] = []
    seen: Dict[str, int] = {}
    if not isinstance(files, (list, tuple)):
        raise FilePlanError([f"files: expected a list of dicts, got {type(files).__name__}"])
    for index, entry in enumerate(files):
        name = f"files[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{name}: expected a dict with path (and checksum, owner, group, mode, state, unlisted)")
            continue
        unknown = sorted(str(key) for key in entry if key not in KEYS)
        if unknown:
            problems.append(f"{name}: unknown key(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")

        path = entry.get("path")
        path_ok = _is_text(path) and path.startswith("/") and "\x00" not in path
        if not path_ok:
            problems.append(
                f"{name}.path: {path!r} is not an absolute path (expected one starting with /, e.g. /etc/raibid/x.conf)"
            )
        else:
            key = os.path.normpath(path)
            if key in seen:
                problems.append(f"{name}.path: {path} is already files[{seen[key]}].path (each path once)")
            else:
                seen[key] = index

        state = entry.get("state")
        if state is None:
            state = FILE
        if state not in STATES:
            problems.append(f"{name}.state: {state!r} is not one of {', '.join(STATES)}")

        checksum = entry.get("checksum")
        if state in (DIRECTORY, ABSENT, ANY):
            if checksum is not None:
                problems.append(f"{name}.checksum: not used with state={state} (leave it out)")
        elif checksum is not None and not (_is_text(checksum) and _SHA1.fullmatch(checksum)):
            problems.append(f"{name}.checksum: {checksum!r} is not a sha1 (expected 40 lowercase hex digits)")
        if state in (ABSENT, ANY):
            extra = [field for field in ("owner", "group", "mode") if entry.get(field) is not None]
            if extra:
                problems.append(f"{name}: {', '.join(extra)} not used with state={state} (leave them out)")

        unlisted = entry.get("unlisted")
        if unlisted is not None:
            if state != DIRECTORY:
                problems.append(f"{name}.unlisted: only used with state=directory")
            elif not (_is_text(unlisted) and unlisted and "/" not in unlisted):
                problems.append(f"{name}.unlisted: {unlisted!r} is not a glob of names (expected e.g. '*.yml', no /)")

        names: Dict[str, Optional[str]] = {}
        for field in ("owner", "group"):
            value = entry.get(field)
            if value is not None and not (_is_text(value) and value.strip() and value == value.strip()):
                problems.append(f"{name}.{field}: {value!r} is not a {'user' if field == 'owner' else 'group'} name")
            names[field] = value

        mode = entry.get("mode")
        mode_bits: Optional[int] = None
        if mode is not None:
            if _is_text(mode) and _MODE.fullmatch(mode):
                mode_bits = int(mode, 8)
            elif isinstance(mode, int) and not isinstance(mode, bool) and 0 <= mode <= 0o7777:
                # YAML reads an unquoted 0644 as 420: the bits themselves, as the file and template modules take it.
                mode_bits = mode
            else:
                problems.append(
                    f'{name}.mode: {mode!r} is not an octal mode (expected a quoted string such as "0644" or "644")'
                )

        if not problems:
            wanted.append(
                Wanted(
                    path=path,
                    state=state,
                    checksum=checksum if state == FILE else None,
                    owner=names["owner"],
                    group=names["group"],
                    mode=mode_bits,
                    unlisted=unlisted,
                )
            )
    if problems:
        raise FilePlanError(problems)
    return wanted


def sha1_of(path: str, chunk: int = CHUNK) -> str:
    """The sha1 of a regular file's content, read in chunks; never follows a symlink (ELOOP) and
    never blocks on a FIFO put there since the lstat."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    digest = hashlib.sha1()  # a content fingerprint, as Ansible's own checksums (not for security)
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _error_text(exc: OSError) -> str:
    return exc.strerror or str(exc)


class _Ids:
    """User and group names to ids and back, each looked up once per call.

    A wanted name that is all digits and names no account is taken as the id, as the file module does.
    """

    def __init__(self) -> None:
        self._uids: Dict[str, Optional[int]] = {}
        self._gids: Dict[str, Optional[int]] = {}
        self._users: Dict[int, str] = {}
        self._groups: Dict[int, str] = {}

    @staticmethod
    def _lookup(name: str, get: Callable[[str], Any]) -> Optional[int]:
        try:
            return int(get(name)[2])
        except KeyError:
            return int(name) if name.isdigit() else None

    def uid(self, name: str) -> Optional[int]:
        if name not in self._uids:
            self._uids[name] = self._lookup(name, pwd.getpwnam)
        return self._uids[name]

    def gid(self, name: str) -> Optional[int]:
        if name not in self._gids:
            self._gids[name] = self._lookup(name, grp.getgrnam)
        return self._gids[name]

    def user(self, uid: int) -> str:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = str(uid)
        return self._users[uid]

    def group(self, gid: int) -> str:
        if gid not in self._groups:
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self._groups[gid] = str(gid)
        return self._groups[gid]


def _fs_path(path: str) -> str:
    # A trailing slash would make lstat follow a symlink (and fail on a file); the path itself is meant.
    return path.rstrip("/") or "/"


# A symlink or the wrong kind of entry: the attributes of what is there say nothing of what is wanted.
_STOPPING = ("symlink", "not a regular file", "not a directory")


def _kind_reasons(wanted: Wanted, path: str, st: os.stat_result) -> List[str]:
    """``symlink``, the wrong kind, or a file's ``content`` (``unreadable: <error>``); empty when right."""
    if stat.S_ISLNK(st.st_mode):
        return ["symlink"]
    if wanted.state == DIRECTORY:
        return [] if stat.S_ISDIR(st.st_mode) else ["not a directory"]
    if not stat.S_ISREG(st.st_mode):
        return ["not a regular file"]
    return [] if wanted.checksum is None else _content_reasons(path, wanted.checksum)


def _content_reasons(path: str, checksum: str) -> List[str]:
    try:
        return [] if sha1_of(path) == checksum else ["content"]
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a symlink since the lstat
            return ["symlink"]
        return [f"unreadable: {_error_text(exc)}"]


def reasons_for(wanted: Wanted, ids: Optional[_Ids] = None) -> Dict[str, Any]:
    """``{"path", "exists", "differs", "reasons"}`` for one entry. Reasons, in this order: ``missing`` (for
    ``absent``: ``present``);
    ``symlink``; ``not a regular file`` / ``not a directory``; ``content`` or ``unreadable: <error>``;
    ``owner <actual> -> <wanted>`` (or ``owner <name> unknown``), the same for ``group``; ``mode <actual>
    -> <wanted>`` (4-digit octal). A missing path, a symlink or the wrong kind stops the checks there."""
    ids = ids or _Ids()
    path = _fs_path(wanted.path)
    reasons: List[str] = []
    result: Dict[str, Any] = {"path": wanted.path, "exists": False, "differs": True, "reasons": reasons}
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        if wanted.state in (ABSENT, ANY):
            result["differs"] = False
        else:
            reasons.append("missing")
        return result
    except OSError as exc:  # a parent that cannot be searched, a name too long, a loop
        reasons.append(f"unreadable: {_error_text(exc)}")
        return result
    result["exists"] = True
    if wanted.state == ANY:
        result["differs"] = False
        return result
    if wanted.state == ABSENT:
        reasons.append("present")
        return result
    kind = _kind_reasons(wanted, path, st)
    reasons.extend(kind)
    if kind and kind[0] in _STOPPING:
        return result

    if wanted.owner is not None:
        uid = ids.uid(wanted.owner)
        if uid is None:
            reasons.append(f"owner {wanted.owner} unknown")
        elif uid != st.st_uid:
            reasons.append(f"owner {ids.user(st.st_uid)} -> {wanted.owner}")
    if wanted.group is not None:
        gid = ids.gid(wanted.group)
        if gid is None:
            reasons.append(f"group {wanted.group} unknown")
        elif gid != st.st_gid:
            reasons.append(f"group {ids.group(st.st_gid)} -> {wanted.group}")
    if wanted.mode is not None:
        actual = stat.S_IMODE(st.st_mode)
        if actual != wanted.mode:
            reasons.append(f"mode {actual:04o} -> {wanted.mode:04o}")

    result["differs"] = bool(reasons)
    return result


def unlisted_in(wanted: Wanted, listed: Sequence[str]) -> List[str]:
    """The entries of a wanted directory whose names match its ``unlisted`` glob and whose paths are not in
    ``listed`` (normalised paths), sorted: files a role would remove. Empty when the directory is missing."""
    if wanted.unlisted is None:
        return []
    directory = _fs_path(wanted.path)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    known = set(listed)
    return sorted(
        os.path.join(directory, name)
        for name in names
        if fnmatch.fnmatchcase(name, wanted.unlisted) and os.path.normpath(os.path.join(directory, name)) not in known
    )


def file_plan(wanted: Sequence[Wanted]) -> Dict[str, Any]:
    """The module's result (less ``changed``): ``differ`` (the paths that differ, in input order),
    ``files`` (one ``reasons_for`` dict per entry, in input order, with ``unlisted`` for an entry that asks),
    ``unlisted`` (all of those, in input order) and ``checked`` (how many)."""
    ids = _Ids()
    listed = [os.path.normpath(entry.path) for entry in wanted]
    files = []
    unlisted: List[str] = []
    for entry in wanted:
        found = reasons_for(entry, ids)
        if entry.unlisted is not None:
            found["unlisted"] = unlisted_in(entry, listed) if found["exists"] and entry.state == DIRECTORY else []
            unlisted.extend(found["unlisted"])
        files.append(found)
    return {
        "differ": [entry["path"] for entry in files if entry["differs"]],
        "files": files,
        "unlisted": unlisted,
        "checked": len(files),
    }
