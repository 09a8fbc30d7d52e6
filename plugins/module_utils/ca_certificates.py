# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""The extra CA certificates of a node: one directory of ``*.crt`` files that the system store
(``update-ca-certificates``) reads, planned and applied in one pass.

``plan`` only reads; ``apply`` carries a plan out. Owner and modes are parameters so that unit tests
run the same code as an ordinary user over a temporary tree; the module passes root's.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

CERT_SUFFIX = ".crt"
DIR_MODE = 0o755
FILE_MODE = 0o644
ROOT = (0, 0)
# Staged files start with a dot and do not end in .crt: neither update-ca-certificates nor the
# removal of unlisted certificates ever takes a leftover one (a run killed mid-write) for a certificate.
TEMP_PREFIX = ".raibid-ca-"
TEMP_SUFFIX = ".tmp"
PEM_MARKER = "-----BEGIN CERTIFICATE-----"

_NAME = re.compile(r"^[^./\x00][^/\x00]*\.crt$")


class CaCertificatesError(Exception):
    """A request or a directory the module refuses; the message names the option."""


@dataclass
class Entry:
    """What lstat says of one name in the directory."""

    kind: str  # file, link, dir, other
    mode: int
    uid: int
    gid: int
    mtime_ns: int


@dataclass
class Plan:
    directory: str
    create_directory: bool = False
    fix_directory: bool = False
    write: List[str] = field(default_factory=list)
    remove: List[str] = field(default_factory=list)
    store_stale: bool = False
    before: List[str] = field(default_factory=list)
    after: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.create_directory or self.fix_directory or self.write or self.remove)

    @property
    def update_needed(self) -> bool:
        # Creating the directory or fixing its mode changes nothing update-ca-certificates reads.
        return bool(self.write or self.remove or self.store_stale)


def bad_names(names: List[str]) -> List[str]:
    """The names that are not plain ``*.crt`` file names (no slash, no leading dot), sorted."""
    return sorted(name for name in names if not _NAME.match(name))


def validate(certificates: Mapping[str, object]) -> None:
    """Refuse names other than plain ``*.crt`` file names and values that hold no PEM certificate."""
    bad = bad_names([str(name) for name in certificates])
    if bad:
        raise CaCertificatesError(
            "certificates: names must be plain file names ending in .crt (no slash, not starting with a dot); "
            f"not usable: {', '.join(bad)}"
        )
    no_pem = sorted(name for name, text in certificates.items() if not isinstance(text, str) or PEM_MARKER not in text)
    if no_pem:
        raise CaCertificatesError(
            f"certificates: the value of {', '.join(no_pem)} holds no PEM certificate ({PEM_MARKER})"
        )


def _entry(path: str) -> Optional[Entry]:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(st.st_mode):
        kind = "file"
    elif stat.S_ISLNK(st.st_mode):
        kind = "link"
    elif stat.S_ISDIR(st.st_mode):
        kind = "dir"
    else:
        kind = "other"
    return Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _line(name: str, digest: str, mode: int, owner: Tuple[int, int]) -> str:
    return f"{name} {digest} {mode:04o} {owner[0]}:{owner[1]}"


def plan(
    directory: str,
    certificates: Mapping[str, str],
    bundle: str,
    *,
    owner: Tuple[int, int] = ROOT,
    dir_mode: int = DIR_MODE,
    file_mode: int = FILE_MODE,
) -> Plan:
    """What it takes for ``directory`` to hold exactly ``certificates`` (name -> PEM text) among its
    ``*.crt`` files, each a regular file with ``owner`` and ``file_mode``; reads, never writes.

    ``store_stale``: certificates are listed and the system store (``bundle``) lags the directory as it
    is after the plan - the bundle is missing, or the plan writes or removes a certificate, or a listed
    certificate or the directory's list of entries changed after the bundle was made (a run killed before
    ``update-ca-certificates``).
    """
    validate(certificates)
    directory = os.path.normpath(directory)
    result = Plan(directory=directory)
    wanted = {name: text.encode("utf-8") for name, text in certificates.items()}

    try:
        st = os.stat(directory)
    except FileNotFoundError:
        st = None
    except NotADirectoryError as exc:
        raise CaCertificatesError(f"directory: {directory} is not a directory ({exc})") from exc
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise CaCertificatesError(f"directory: {directory} exists and is not a directory")

    names: List[str] = []
    if st is None:
        result.create_directory = True
        result.before = [f"{directory}/ (absent)"]
    else:
        result.fix_directory = stat.S_IMODE(st.st_mode) != dir_mode or (st.st_uid, st.st_gid) != owner
        result.before = [f"{directory}/ {stat.S_IMODE(st.st_mode):04o} {st.st_uid}:{st.st_gid}"]
        names = sorted(os.listdir(directory))

    newest_listed = 0
    for name in names:
        if not name.endswith(CERT_SUFFIX):
            continue
        entry = _entry(os.path.join(directory, name))
        if entry is None:
            continue
        if entry.kind == "file":
            data = _read(os.path.join(directory, name))
            result.before.append(_line(name, _digest(data), entry.mode, (entry.uid, entry.gid)))
        else:
            data = None
            result.before.append(f"{name} ({entry.kind})")
        if name in wanted:
            if entry.kind == "dir":
                raise CaCertificatesError(f"certificates: {directory}/{name} is a directory; remove it first")
            if data != wanted[name] or entry.mode != file_mode or (entry.uid, entry.gid) != owner:
                result.write.append(name)
            else:
                newest_listed = max(newest_listed, entry.mtime_ns)
        elif entry.kind in ("file", "link"):
            result.remove.append(name)
    result.write.extend(sorted(set(wanted) - set(names)))
    result.write.sort()

    result.after = [f"{directory}/ {dir_mode:04o} {owner[0]}:{owner[1]}"] + [
        _line(name, _digest(data), file_mode, owner) for name, data in sorted(wanted.items())
    ]

    bundle_mtime = _mtime_ns(bundle)
    if not wanted:
        # Nothing listed, nothing the store could lack (and maybe no ca-certificates at all).
        result.store_stale = False
    elif bundle_mtime is None or result.write or result.remove:
        # What is written or removed now is newer than any bundle.
        result.store_stale = True
    else:
        # The directory's mtime moves when an entry is added or removed: it also catches a run killed after
        # it removed a certificate, which the certificates left behind do not show.
        result.store_stale = newest_listed > bundle_mtime or (st is not None and st.st_mtime_ns > bundle_mtime)
    return result


def _mtime_ns(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except (FileNotFoundError, NotADirectoryError):
        return None


def write_file(path: str, data: bytes, owner: Tuple[int, int], mode: int) -> None:
    """Replace ``path`` with ``data`` atomically: staged next to it with its final mode and owner,
    flushed, then renamed over it."""
    fd, staged = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), mode)
            os.fchown(fh.fileno(), *owner)
            os.fsync(fh.fileno())
        os.replace(staged, path)
    finally:
        if os.path.lexists(staged):
            os.unlink(staged)


def apply(
    result: Plan,
    certificates: Mapping[str, str],
    *,
    owner: Tuple[int, int] = ROOT,
    dir_mode: int = DIR_MODE,
    file_mode: int = FILE_MODE,
) -> None:
    """Carry ``result`` (from ``plan``) out: the directory, the writes, the removals, then sync the
    directory so that ``update-ca-certificates`` right after sees them on disk."""
    directory = result.directory
    if result.create_directory:
        os.makedirs(directory, mode=dir_mode, exist_ok=True)
    if result.create_directory or result.fix_directory:
        # makedirs' mode passes through the umask.
        os.chmod(directory, dir_mode)
        os.chown(directory, *owner)
    for name in result.write:
        write_file(os.path.join(directory, name), certificates[name].encode("utf-8"), owner, file_mode)
    for name in result.remove:
        os.unlink(os.path.join(directory, name))
    if result.changed:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def summary(result: Plan, check_mode: bool) -> str:
    """A line a person reads."""
    if not result.changed:
        return "extra CA certificates already in place" + ("; the system store is stale" if result.store_stale else "")
    verb = "would " if check_mode else ""
    parts: List[str] = []
    if result.create_directory:
        parts.append(f"{verb}create {result.directory}")
    elif result.fix_directory:
        parts.append(f"{verb}fix mode/owner of {result.directory}")
    if result.write:
        parts.append(f"{verb}write {', '.join(result.write)}")
    if result.remove:
        parts.append(f"{verb}remove {', '.join(result.remove)}")
    return "; ".join(parts)
