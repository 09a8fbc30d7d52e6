# Copyright (c) 2026 raibid.dgx_spark contributors
# MIT License (see LICENSE)
"""Tag retention and untagged-manifest deletion for a stopped distribution registry (filesystem storage).

Run by raibid-registry-gc.service before ``garbage-collect``, while the writable instance is stopped:

1. Tag retention: in each repository, the ``--keep`` most recently pushed tags stay (plus every tag in
   ``--protect``); older tags are removed (their ``_manifests/tags/<tag>`` directory, as distribution's own
   tag deletion does).
2. Untagged manifests: a manifest revision that no remaining tag reaches, directly or through an image
   index or manifest list (multi-platform images, attestations, BuildKit cache indexes), and that is older
   than ``--min-age-hours``, loses its revision link. ``garbage-collect`` (run without
   ``--delete-untagged``) then sweeps every blob no remaining manifest references.

distribution 2.8's own ``--delete-untagged`` is not used: it deletes the untagged child manifests of image
indexes too (distribution#3178), which breaks every multi-platform or attested image.

Prints one JSON summary on stdout. ``--dry-run`` changes nothing. Standard library only (runs on the node).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set

V2 = ("docker", "registry", "v2")
INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


@dataclass
class Repository:
    name: str
    path: Path
    # tag -> (digest, pushed at: mtime of its current link)
    tags: Dict[str, tuple] = field(default_factory=dict)
    # digest -> mtime of its revision link
    revisions: Dict[str, float] = field(default_factory=dict)


@dataclass
class Plan:
    untag: Dict[str, List[str]] = field(default_factory=dict)  # repository -> tags to remove
    unlink: Dict[str, List[str]] = field(default_factory=dict)  # repository -> manifest digests to unlink

    def summary(self) -> dict:
        return {
            "tags_removed": sum(len(v) for v in self.untag.values()),
            "manifests_removed": sum(len(v) for v in self.unlink.values()),
            "untag": {k: v for k, v in sorted(self.untag.items()) if v},
            "unlink": {k: v for k, v in sorted(self.unlink.items()) if v},
        }


def _read_link(path: Path) -> Optional[str]:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text if text.startswith("sha256:") and len(text) == 71 else None


def scan(root: Path) -> List[Repository]:
    """Every repository under the storage root (``rootdirectory`` of the registry config)."""
    repos_dir = root.joinpath(*V2, "repositories")
    found: List[Repository] = []
    if not repos_dir.is_dir():
        return found
    for manifests in sorted(repos_dir.rglob("_manifests")):
        repo_path = manifests.parent
        repo = Repository(name=repo_path.relative_to(repos_dir).as_posix(), path=repo_path)
        tags_dir = manifests / "tags"
        if tags_dir.is_dir():
            for tag_dir in sorted(tags_dir.iterdir()):
                link = tag_dir / "current" / "link"
                digest = _read_link(link)
                if digest:
                    repo.tags[tag_dir.name] = (digest, link.stat().st_mtime)
        revisions_dir = manifests / "revisions" / "sha256"
        if revisions_dir.is_dir():
            for rev in sorted(revisions_dir.iterdir()):
                link = rev / "link"
                if _read_link(link):
                    repo.revisions[f"sha256:{rev.name}"] = link.stat().st_mtime
        found.append(repo)
    return found


def blob_path(root: Path, digest: str) -> Path:
    hexdigest = digest.split(":", 1)[1]
    return root.joinpath(*V2, "blobs", "sha256", hexdigest[:2], hexdigest, "data")


def children(root: Path, digest: str) -> List[str]:
    """Digests an image index or manifest list refers to; none for an image manifest or unreadable blob."""
    try:
        doc = json.loads(blob_path(root, digest).read_bytes())
    except (OSError, ValueError):
        return []
    if not isinstance(doc, dict):
        return []
    media_type = doc.get("mediaType")
    entries = doc.get("manifests")
    if media_type not in INDEX_TYPES and not (media_type is None and isinstance(entries, list)):
        return []
    return [e["digest"] for e in entries or [] if isinstance(e, dict) and isinstance(e.get("digest"), str)]


def reachable(root: Path, start: Iterable[str], revisions: Set[str]) -> Set[str]:
    """The manifests of ``revisions`` that ``start`` reaches, following index entries (cycles are safe)."""
    seen: Set[str] = set()
    todo = [d for d in start if d in revisions]
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        todo.extend(c for c in children(root, digest) if c in revisions and c not in seen)
    return seen


def plan(
    root: Path,
    repositories: List[Repository],
    *,
    keep: int,
    protect: Iterable[str],
    min_age_hours: Optional[float],
    now: float,
) -> Plan:
    """What to remove: tags beyond the ``keep`` newest (0 keeps all), then manifests no kept tag reaches
    (none when ``min_age_hours`` is None)."""
    protected = set(protect)
    result = Plan()
    cutoff = now - (min_age_hours or 0) * 3600
    for repo in repositories:
        newest_first = sorted(repo.tags.items(), key=lambda item: (item[1][1], item[0]), reverse=True)
        ordinary = [tag for tag, _pushed in newest_first if tag not in protected]
        drop = ordinary[keep:] if keep > 0 else []
        result.untag[repo.name] = sorted(drop)
        kept_digests = [digest for tag, (digest, _pushed) in repo.tags.items() if tag not in drop]
        live = reachable(root, kept_digests, set(repo.revisions))
        result.unlink[repo.name] = sorted(
            digest
            for digest, mtime in repo.revisions.items()
            if min_age_hours is not None and digest not in live and mtime <= cutoff
        )
    return result


def apply(repositories: List[Repository], todo: Plan) -> None:
    by_name = {repo.name: repo for repo in repositories}
    for name, tags in todo.untag.items():
        for tag in tags:
            shutil.rmtree(by_name[name].path / "_manifests" / "tags" / tag)
    for name, digests in todo.unlink.items():
        for digest in digests:
            shutil.rmtree(by_name[name].path / "_manifests" / "revisions" / "sha256" / digest.split(":", 1)[1])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the registry's storage root directory")
    parser.add_argument("--keep", type=int, default=0, help="tags kept per repository, newest first (0: all)")
    parser.add_argument("--protect", action="append", default=[], help="a tag never removed (repeatable)")
    parser.add_argument("--min-age-hours", type=float, default=24.0, help="untagged manifests younger are kept")
    parser.add_argument("--keep-untagged", action="store_true", help="unlink no manifest, only remove tags")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = parser.parse_args(argv)
    if args.keep < 0 or args.min_age_hours < 0:
        parser.error("--keep and --min-age-hours must be 0 or more")
    if not args.root.is_dir():
        parser.error(f"{args.root}: no such directory (the registry's storage root)")
    repositories = scan(args.root)
    min_age = None if args.keep_untagged else args.min_age_hours
    todo = plan(args.root, repositories, keep=args.keep, protect=args.protect, min_age_hours=min_age, now=time.time())
    if not args.dry_run:
        apply(repositories, todo)
    print(json.dumps({"root": str(args.root), "dry_run": args.dry_run, **todo.summary()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
