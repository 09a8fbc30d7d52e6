"""roles/registry_cache/files/registry_retention.py: tag retention and untagged-manifest deletion.

The storage trees are laid out as distribution's filesystem driver writes them (blobs/sha256/xx/<hex>/data,
repositories/<name>/_manifests/{tags/<tag>/current/link, revisions/sha256/<hex>/link}); the molecule
agent_image scenario runs the script against a real registry before garbage-collect.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[4] / "roles" / "registry_cache" / "files" / "registry_retention.py"
_spec = importlib.util.spec_from_file_location("registry_cache_retention", SCRIPT)
retention = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = retention  # dataclasses look their module up while the class is made
_spec.loader.exec_module(retention)

V2 = Path("docker/registry/v2")
INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NOW = time.time()  # main() reads the clock itself
DAY = 86400.0


class Store:
    """A registry storage root to build trees in."""

    def __init__(self, root: Path):
        self.root = root

    def blob(self, content: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(content).hexdigest()
        hexdigest = digest[7:]
        path = self.root / V2 / "blobs" / "sha256" / hexdigest[:2] / hexdigest / "data"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return digest

    def manifest(self, repo: str, doc: dict, age_days: float = 10) -> str:
        digest = self.blob(json.dumps(doc, sort_keys=True).encode())
        link = self.root / V2 / "repositories" / repo / "_manifests" / "revisions" / "sha256" / digest[7:] / "link"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(digest)
        os.utime(link, (NOW - age_days * DAY, NOW - age_days * DAY))
        return digest

    def image(self, repo: str, name: str, age_days: float = 10) -> str:
        layer = self.blob(name.encode())
        return self.manifest(
            repo, {"mediaType": MANIFEST, "layers": [{"mediaType": LAYER, "digest": layer}]}, age_days=age_days
        )

    def index(self, repo: str, children: list, age_days: float = 10, media_type: str = MANIFEST) -> str:
        entries = [{"mediaType": media_type, "digest": d} for d in children]
        return self.manifest(repo, {"mediaType": INDEX, "manifests": entries}, age_days=age_days)

    def tag(self, repo: str, tag: str, digest: str, pushed_days_ago: float) -> None:
        link = self.root / V2 / "repositories" / repo / "_manifests" / "tags" / tag / "current" / "link"
        link.parent.mkdir(parents=True, exist_ok=True)
        link.write_text(digest)
        os.utime(link, (NOW - pushed_days_ago * DAY, NOW - pushed_days_ago * DAY))

    def tags(self, repo: str) -> set:
        return {p.name for p in (self.root / V2 / "repositories" / repo / "_manifests" / "tags").iterdir()}

    def revisions(self, repo: str) -> set:
        base = self.root / V2 / "repositories" / repo / "_manifests" / "revisions" / "sha256"
        return {"sha256:" + p.name for p in base.iterdir()}


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path)


def run_plan(store: Store, keep=0, protect=(), min_age_hours=24.0):
    repos = retention.scan(store.root)
    return retention.plan(store.root, repos, keep=keep, protect=protect, min_age_hours=min_age_hours, now=NOW)


def test_keeps_the_newest_tags_and_the_protected_ones(store):
    repo = "raibid-ci-agent"
    digests = {f"h{i}": store.image(repo, f"build {i}") for i in range(5)}
    for i in range(5):
        store.tag(repo, f"h{i}", digests[f"h{i}"], pushed_days_ago=5 - i)  # h4 is the newest
    store.tag(repo, "latest", digests["h0"], pushed_days_ago=9)  # oldest push, protected
    todo = run_plan(store, keep=2, protect=["latest"])
    assert todo.untag == {repo: ["h0", "h1", "h2"]}
    # h0's manifest is still reached by the protected tag; h1 and h2's are not.
    assert todo.unlink == {repo: sorted([digests["h1"], digests["h2"]])}


def test_keep_zero_keeps_every_tag(store):
    digest = store.image("r", "a")
    for i in range(3):
        store.tag("r", f"t{i}", digest, pushed_days_ago=i)
    todo = run_plan(store, keep=0)
    assert todo.untag == {"r": []} and todo.unlink == {"r": []}


def test_a_cache_tag_exported_again_frees_the_old_cache_manifests(store):
    """BuildKit exports its cache as an index of layer blobs; each export to one tag leaves the old one untagged."""
    repo = "cache/raibid-ci-agent"
    exports = []
    for i in range(3):
        layers = [store.blob(f"cache {i} layer {n}".encode()) for n in range(2)]
        exports.append(store.index(repo, layers, media_type=LAYER))
    store.tag(repo, "buildcache", exports[-1], pushed_days_ago=2)
    todo = run_plan(store, keep=10, protect=["buildcache"])
    assert todo.untag == {repo: []}
    assert todo.unlink == {repo: sorted(exports[:2])}


def test_children_of_a_tagged_index_stay(store):
    """Multi-platform and attested images: the index is tagged, its child manifests are not (distribution#3178)."""
    repo = "multi"
    amd64, arm64, attestation = store.image(repo, "amd64"), store.image(repo, "arm64"), store.image(repo, "att")
    top = store.index(repo, [amd64, arm64, attestation])
    store.tag(repo, "v1", top, pushed_days_ago=1)
    orphan = store.image(repo, "orphan")
    todo = run_plan(store)
    assert todo.unlink == {repo: [orphan]}


def test_nested_indexes_and_cycles_are_followed_safely(store):
    repo = "nested"
    leaf = store.image(repo, "leaf")
    inner = store.index(repo, [leaf])
    outer = store.index(repo, [inner, outer_placeholder := "sha256:" + "0" * 64])
    store.tag(repo, "t", outer, pushed_days_ago=1)
    todo = run_plan(store)
    assert todo.unlink == {repo: []}
    assert outer_placeholder not in retention.reachable(store.root, [outer], set(store.revisions(repo)))


def test_young_untagged_manifests_wait(store):
    young = store.image("r", "pushed by digest an hour ago", age_days=1 / 24)
    old = store.image("r", "pushed by digest last month", age_days=30)
    store.tag("r", "t", store.image("r", "tagged"), pushed_days_ago=1)
    todo = run_plan(store, min_age_hours=24)
    assert todo.unlink == {"r": [old]}
    assert young not in todo.unlink["r"]


def test_keep_untagged_only_removes_tags(store):
    digests = [store.image("r", str(i)) for i in range(3)]
    for i, digest in enumerate(digests):
        store.tag("r", f"t{i}", digest, pushed_days_ago=3 - i)
    todo = run_plan(store, keep=1, min_age_hours=None)
    assert todo.untag == {"r": ["t0", "t1"]} and todo.unlink == {"r": []}


def test_main_applies_the_plan_and_garbage_collect_is_left_the_blobs(store, capsys):
    old = store.image("app", "old")
    new = store.image("app", "new")
    store.tag("app", "1", old, pushed_days_ago=3)
    store.tag("app", "2", new, pushed_days_ago=1)
    assert retention.main([str(store.root), "--keep", "1", "--min-age-hours", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["tags_removed"], out["manifests_removed"]) == (1, 1)
    assert store.tags("app") == {"2"} and store.revisions("app") == {new}
    # Blobs stay for garbage-collect to sweep (it knows which other repositories share them).
    assert (store.root / V2 / "blobs" / "sha256" / old[7:9] / old[7:] / "data").exists()


def test_dry_run_changes_nothing(store, capsys):
    digests = [store.image("r", str(i)) for i in range(2)]
    store.tag("r", "a", digests[0], pushed_days_ago=2)
    store.tag("r", "b", digests[1], pushed_days_ago=1)
    assert retention.main([str(store.root), "--keep", "1", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["untag"] == {"r": ["a"]}
    assert store.tags("r") == {"a", "b"}


def test_unreadable_links_and_an_empty_root(store, tmp_path):
    assert retention.scan(tmp_path / "nothing-here") == []
    bad = store.root / V2 / "repositories" / "r" / "_manifests" / "tags" / "x" / "current" / "link"
    bad.parent.mkdir(parents=True)
    bad.write_text("not a digest")
    (repo,) = retention.scan(store.root)
    assert repo.tags == {}


@pytest.mark.parametrize("argv", [["--keep", "-1"], ["--min-age-hours", "-2"]])
def test_main_refuses_negative_numbers(store, argv):
    store.root.joinpath(V2).mkdir(parents=True)
    with pytest.raises(SystemExit) as exc:
        retention.main([str(store.root), *argv])
    assert exc.value.code == 2


def test_main_names_a_missing_root(tmp_path, capsys):
    with pytest.raises(SystemExit):
        retention.main([str(tmp_path / "absent")])
    assert "no such directory" in capsys.readouterr().err
