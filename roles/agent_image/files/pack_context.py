"""Pack the agent image's build context into one reproducible tarball, on the controller.

Run by roles/agent_image/tasks/context.yml with the controller's Python (standard library only), the
settings as JSON on stdin (so no certificate is on a command line):

  dest       the tarball to write; its directory is created (mode 0700) when missing
  image_dir  the collection's image/ (Dockerfile, tools, home, the bundled agent crate)
  agent_dir  another agent source, packed as ./agent in place of image/agent; "" keeps the bundled one
  ca_files   file name -> PEM text, packed as ./ca-certificates/<name> (mode 0644)
  exclude    names (not patterns) left out at any depth (build output, VCS data, READMEs)

The bytes depend only on the names, contents, modes and link targets of what is packed: members in
name order (parents first), GNU format without pax headers, mtime 0, owner and group 0 without names,
group and other write bits cleared. The tarball is replaced (atomically) only when those bytes differ,
so a run with nothing new leaves it untouched and the copy to the node finds the same checksum.
Prints {"changed": ..., "dest": ..., "members": ..., "sha1": ..., "dockerfile_sha1": ...} as JSON (the
sha1 of the tarball and of its ./Dockerfile, which the role compares with the node's copies in one
file_plan call); exits 1 with one line on stderr naming
the setting or file that is not usable.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, Iterable, List, Mapping, Optional, Sequence, TextIO, Tuple

CA_DIR = "ca-certificates"
AGENT_DIR = "agent"
# The context's root as the tar runs this replaces left it (their CA run added a "./" of the controller's
# 0700 cache directory): the unpacked tree on the node, and tests/testbed/images/e2e_images.py's copy of
# it, stay as they were.
ROOT_MODE = 0o700
CA_MODE = 0o644
DIR_MODE = 0o755
SETTINGS = ("dest", "image_dir", "agent_dir", "ca_files", "exclude")


@dataclass(frozen=True)
class Member:
    """One member of the tarball: a directory, a file (on disk, or generated data) or a symbolic link."""

    parts: Tuple[str, ...]  # path below the context's root; () is the root itself
    kind: str  # "dir", "file" or "link"
    mode: int
    source: str = ""  # the file on disk to read
    data: Optional[bytes] = None  # generated content, in place of source
    target: str = ""  # where a link points

    @property
    def name(self) -> str:
        return "/".join((".", *self.parts))


def sort_key(member: Member) -> Tuple[bytes, ...]:
    """Parents before their contents, siblings by the bytes of their names (as tar --sort=name)."""
    return tuple(os.fsencode(part) for part in member.parts)


def write_mode(st_mode: int) -> int:
    """The permission bits without group and other write (as tar --mode=go-w)."""
    return stat.S_IMODE(st_mode) & ~0o022


def from_disk(path: str, parts: Tuple[str, ...]) -> Member:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode):
        return Member(parts, "dir", write_mode(st.st_mode), source=path)
    if stat.S_ISREG(st.st_mode):
        return Member(parts, "file", write_mode(st.st_mode), source=path)
    if stat.S_ISLNK(st.st_mode):
        return Member(parts, "link", write_mode(st.st_mode), source=path, target=os.readlink(path))
    raise ValueError(f"{path} is neither a file, a directory nor a symbolic link; a build context holds only those")


def scan(
    directory: str, parts: Tuple[str, ...], exclude: Iterable[str], skip: Iterable[str] = ()
) -> Dict[Tuple[str, ...], Member]:
    """The directory and everything below it (symbolic links not followed), minus excluded names.

    ``skip`` holds names left out of this directory only (not below it).
    """
    excluded = frozenset(exclude)
    found = {parts: from_disk(directory, parts)}
    with os.scandir(directory) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        if name in excluded or name in skip:
            continue
        path = os.path.join(directory, name)
        if stat.S_ISDIR(os.lstat(path).st_mode):
            found.update(scan(path, (*parts, name), excluded))
        else:
            found[(*parts, name)] = from_disk(path, (*parts, name))
    return found


def check_ca_name(name: str) -> None:
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"ca_files: {name!r} is not a file name (no '/', not '.' or '..')")


def context_members(
    image_dir: str,
    agent_dir: str = "",
    ca_files: Optional[Mapping[str, str]] = None,
    exclude: Sequence[str] = (),
) -> List[Member]:
    """Everything the tarball holds, in its order."""
    if not image_dir:
        raise ValueError("image_dir: empty; it must name the collection's image/ directory")
    for setting, path in (("image_dir", image_dir), ("agent_dir", agent_dir)):
        if path and not os.path.isdir(path):
            raise ValueError(f"{setting}: {path} is not a directory")
    found = scan(image_dir, (), exclude, skip=[AGENT_DIR] if agent_dir else [])
    found[()] = Member((), "dir", ROOT_MODE, source=image_dir)
    if agent_dir:
        found.update(scan(agent_dir, (AGENT_DIR,), exclude))
    cas = dict(ca_files or {})
    if cas:
        ca_dir = found.get((CA_DIR,))
        if ca_dir is None:
            found[(CA_DIR,)] = Member((CA_DIR,), "dir", DIR_MODE)
        elif ca_dir.kind != "dir":
            raise ValueError(f"image_dir: {ca_dir.source} must be a directory (the extra CA certificates go there)")
    for name, pem in cas.items():
        check_ca_name(name)
        if not isinstance(pem, str):
            raise ValueError(f"ca_files: the value of {name} must be PEM text, not {type(pem).__name__}")
        found[(CA_DIR, name)] = Member((CA_DIR, name), "file", CA_MODE, data=pem.encode("utf-8"))
    return sorted(found.values(), key=sort_key)


def write_tar(members: Iterable[Member], fileobj: BinaryIO) -> int:
    """Write the members as a tar stream; returns how many."""
    count = 0
    with tarfile.open(fileobj=fileobj, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.mode = member.mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if member.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif member.kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = member.target
                tar.addfile(info)
            elif member.data is not None:
                info.size = len(member.data)
                tar.addfile(info, io.BytesIO(member.data))
            else:
                with open(member.source, "rb") as fh:
                    info.size = os.fstat(fh.fileno()).st_size
                    tar.addfile(info, fh)
            count += 1
    return count


def sha1_of(path: str) -> str:
    """The sha1 (hex) of a file's bytes, as Ansible's checksum computes it."""
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def member_sha1(member: Member) -> str:
    """The sha1 (hex) of a file member's bytes."""
    if member.data is not None:
        return hashlib.sha1(member.data).hexdigest()
    return sha1_of(member.source)


def same_bytes(path_a: str, path_b: str) -> bool:
    if os.path.getsize(path_a) != os.path.getsize(path_b):
        return False
    with open(path_a, "rb") as fa, open(path_b, "rb") as fb:
        while True:
            chunk = fa.read(1 << 20)
            if chunk != fb.read(1 << 20):
                return False
            if not chunk:
                return True


def pack(
    dest: str,
    image_dir: str,
    agent_dir: str = "",
    ca_files: Optional[Mapping[str, str]] = None,
    exclude: Sequence[str] = (),
) -> Dict[str, Any]:
    """Write the tarball at dest unless a file with the same bytes is there already."""
    if not dest:
        raise ValueError("dest: empty; it must name the tarball to write")
    members = context_members(image_dir, agent_dir, ca_files, exclude)
    directory = os.path.dirname(os.path.abspath(dest))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".context-", suffix=".tar.part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            count = write_tar(members, fh)
        changed = not (os.path.isfile(dest) and same_bytes(tmp, dest))
        checksum = sha1_of(tmp)
        if changed:
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dockerfile = [m for m in members if m.parts == ("Dockerfile",) and m.kind == "file"]
    return {
        "changed": changed,
        "dest": dest,
        "members": count,
        "sha1": checksum,
        "dockerfile_sha1": member_sha1(dockerfile[0]) if dockerfile else "",
    }


def parse_settings(settings: Any) -> Dict[str, Any]:
    """The keyword arguments of pack() from the JSON read on stdin."""
    if not isinstance(settings, dict):
        raise ValueError(f"the settings on stdin must be a JSON object, not {type(settings).__name__}")
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown settings {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    for key in ("dest", "image_dir", "agent_dir"):
        if not isinstance(settings.get(key, ""), str):
            raise ValueError(f"{key}: must be a string, not {type(settings[key]).__name__}")
    ca_files = settings.get("ca_files") or {}
    if not isinstance(ca_files, dict):
        raise ValueError(f"ca_files: must be an object (file name -> PEM text), not {type(ca_files).__name__}")
    exclude = settings.get("exclude") or []
    if not isinstance(exclude, list) or not all(isinstance(name, str) for name in exclude):
        raise ValueError(f"exclude: must be a list of names, not {exclude!r}")
    return {
        "dest": settings.get("dest", ""),
        "image_dir": settings.get("image_dir", ""),
        "agent_dir": settings.get("agent_dir", ""),
        "ca_files": ca_files,
        "exclude": exclude,
    }


def main(stdin: Optional[TextIO] = None) -> int:
    try:
        result = pack(**parse_settings(json.load(stdin or sys.stdin)))
    except (OSError, ValueError) as exc:
        print(f"pack_context: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
