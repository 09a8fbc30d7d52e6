"""Unit tests for plugins/module_utils/ca_certificates.py over a temporary tree, as the user running them
(the owner is a parameter; the module passes root's)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Tuple

import pytest

from ansible_collections.raibid.dgx_spark.plugins.module_utils import ca_certificates as ca

PEM_A = "-----BEGIN CERTIFICATE-----\nMIIBAAA\n-----END CERTIFICATE-----\n"
PEM_B = "-----BEGIN CERTIFICATE-----\nMIIBBBB\n-----END CERTIFICATE-----\n"
ME: Tuple[int, int] = (os.getuid(), os.getgid())


@pytest.fixture
def tree(tmp_path: Path) -> Tuple[Path, Path]:
    """(the extra CA directory, not created yet; the system bundle, not written yet)."""
    certs = tmp_path / "etc" / "ssl" / "certs"
    certs.mkdir(parents=True)
    return tmp_path / "usr" / "local" / "share" / "ca-certificates" / "raibid", certs / "ca-certificates.crt"


def converge(directory: Path, certificates: Dict[str, str], bundle: Path, check: bool = False) -> ca.Plan:
    result = ca.plan(str(directory), certificates, str(bundle), owner=ME)
    if not check:
        ca.apply(result, certificates, owner=ME)
    return result


def update_store(bundle: Path, after: Path) -> None:
    """What update-ca-certificates does to the bundle: rewrite it, newer than anything in ``after``."""
    bundle.write_text("bundle\n")
    newest = max([after.stat().st_mtime_ns] + [p.lstat().st_mtime_ns for p in after.iterdir()])
    os.utime(bundle, ns=(newest + 10**9, newest + 10**9))


def set_mtime(path: Path, ns: int) -> None:
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_fresh_directory_is_created_and_filled(tree):
    directory, bundle = tree
    update_store(bundle, bundle.parent)
    result = converge(directory, {"a.crt": PEM_A, "b.crt": PEM_B}, bundle)
    assert result.create_directory and result.changed and result.update_needed
    assert result.write == ["a.crt", "b.crt"] and result.remove == []
    assert result.store_stale
    assert mode(directory) == 0o755
    assert sorted(p.name for p in directory.iterdir()) == ["a.crt", "b.crt"]
    assert (directory / "a.crt").read_text() == PEM_A
    assert mode(directory / "b.crt") == 0o644
    assert (directory / "b.crt").stat().st_uid == ME[0]


def test_second_run_is_a_no_op(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A}, bundle)
    update_store(bundle, directory)
    before = {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}
    result = converge(directory, {"a.crt": PEM_A}, bundle)
    assert not result.changed and not result.store_stale and not result.update_needed
    assert result.write == [] and result.remove == []
    assert {p.name: p.stat().st_mtime_ns for p in directory.iterdir()} == before
    assert ca.summary(result, False) == "extra CA certificates already in place"


def test_changed_content_is_rewritten_atomically(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A}, bundle)
    update_store(bundle, directory)
    inode = (directory / "a.crt").stat().st_ino
    result = converge(directory, {"a.crt": PEM_B}, bundle)
    assert result.write == ["a.crt"] and result.changed and result.store_stale
    assert (directory / "a.crt").read_text() == PEM_B
    # Replaced by rename, not rewritten in place; no staged file left behind.
    assert (directory / "a.crt").stat().st_ino != inode
    assert [p.name for p in directory.iterdir()] == ["a.crt"]


def test_wrong_mode_is_rewritten_and_directory_mode_fixed(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A}, bundle)
    (directory / "a.crt").chmod(0o600)
    directory.chmod(0o700)
    update_store(bundle, directory)
    result = converge(directory, {"a.crt": PEM_A}, bundle)
    assert result.fix_directory and result.write == ["a.crt"]
    assert mode(directory) == 0o755 and mode(directory / "a.crt") == 0o644


def test_wrong_owner_is_rewritten(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A}, bundle)
    update_store(bundle, directory)
    other = (ME[0], ME[1] + 1)
    result = ca.plan(str(directory), {"a.crt": PEM_A}, str(bundle), owner=other)
    assert result.fix_directory and result.write == ["a.crt"]


def test_a_link_in_place_of_a_certificate_becomes_a_file(tree):
    directory, bundle = tree
    converge(directory, {}, bundle)
    target = directory.parent / "elsewhere.pem"
    target.write_text(PEM_A)
    (directory / "a.crt").symlink_to(target)
    result = converge(directory, {"a.crt": PEM_A}, bundle)
    assert result.write == ["a.crt"]
    assert not (directory / "a.crt").is_symlink() and (directory / "a.crt").read_text() == PEM_A
    assert target.read_text() == PEM_A


def test_unlisted_certificates_are_removed_other_files_kept(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A, "old.crt": PEM_B}, bundle)
    (directory / "README").write_text("not a certificate\n")
    (directory / "old.pem").write_text(PEM_B)
    (directory / "sub.crt").mkdir()
    update_store(bundle, directory)
    result = converge(directory, {"a.crt": PEM_A}, bundle)
    assert result.remove == ["old.crt"] and result.write == []
    assert result.changed and result.store_stale and result.update_needed
    assert sorted(p.name for p in directory.iterdir()) == ["README", "a.crt", "old.pem", "sub.crt"]
    assert ca.summary(result, False) == "remove old.crt"


def test_empty_list_removes_every_certificate(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A}, bundle)
    update_store(bundle, directory)
    result = converge(directory, {}, bundle)
    assert result.remove == ["a.crt"] and result.update_needed and not result.store_stale
    assert list(directory.iterdir()) == []


def test_an_empty_directory_needs_no_store_update(tree):
    """The default (no extra CA): the directory is made, update-ca-certificates is not run, now or next time."""
    directory, bundle = tree
    update_store(bundle, bundle.parent)
    result = converge(directory, {}, bundle)
    assert result.create_directory and result.changed and not result.update_needed
    directory.chmod(0o700)
    result = converge(directory, {}, bundle)
    assert result.fix_directory and result.changed and not result.update_needed
    result = converge(directory, {}, bundle)
    assert not result.changed and not result.update_needed


def test_store_stale_when_a_certificate_is_newer_than_the_bundle(tree):
    """A run killed after it wrote a certificate and before update-ca-certificates."""
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A}, bundle)
    update_store(bundle, directory)
    set_mtime(directory / "a.crt", bundle.stat().st_mtime_ns + 1)
    result = converge(directory, {"a.crt": PEM_A}, bundle)
    assert not result.changed and result.store_stale and result.update_needed


def test_store_stale_when_the_bundle_is_missing(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A}, bundle)
    result = converge(directory, {"a.crt": PEM_A}, bundle)
    assert not result.changed and result.store_stale and result.update_needed


def test_store_stale_when_an_entry_was_removed_after_the_bundle(tree):
    """A run killed after it removed a certificate: nothing left in the directory is newer, its mtime is."""
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A, "old.crt": PEM_B}, bundle)
    update_store(bundle, directory)
    (directory / "old.crt").unlink()
    set_mtime(directory, bundle.stat().st_mtime_ns + 1)
    result = converge(directory, {"a.crt": PEM_A}, bundle)
    assert not result.changed and result.store_stale


def test_not_stale_when_the_bundle_is_as_new_as_the_certificate(tree):
    """update-ca-certificates within the same timestamp tick as the write: equal is up to date."""
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A}, bundle)
    update_store(bundle, directory)
    set_mtime(directory / "a.crt", bundle.stat().st_mtime_ns)
    set_mtime(directory, bundle.stat().st_mtime_ns)
    assert not converge(directory, {"a.crt": PEM_A}, bundle).store_stale


def test_no_certificates_and_no_bundle_is_not_stale(tree):
    directory, bundle = tree
    converge(directory, {}, bundle)
    result = converge(directory, {}, bundle)
    assert not result.changed and not result.store_stale


def test_check_mode_changes_nothing(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A, "old.crt": PEM_B}, bundle)
    update_store(bundle, directory)
    snapshot = {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in directory.iterdir()}
    result = converge(directory, {"a.crt": PEM_B, "new.crt": PEM_A}, bundle, check=True)
    assert result.write == ["a.crt", "new.crt"] and result.remove == ["old.crt"]
    assert result.changed and result.store_stale and result.update_needed
    assert {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in directory.iterdir()} == snapshot
    assert ca.summary(result, True) == "would write a.crt, new.crt; would remove old.crt"


def test_check_mode_on_a_fresh_node_creates_nothing(tree):
    directory, bundle = tree
    result = converge(directory, {"a.crt": PEM_A}, bundle, check=True)
    assert result.create_directory and result.write == ["a.crt"] and result.store_stale
    assert not directory.exists()


def test_diff_lists_names_digests_modes_never_pem(tree):
    directory, bundle = tree
    converge(directory, {"a.crt": PEM_A, "old.crt": PEM_B}, bundle)
    (directory / "README").write_text("x\n")
    result = converge(directory, {"a.crt": PEM_B}, bundle, check=True)
    assert [line.split()[0] for line in result.before] == [f"{directory}/", "a.crt", "old.crt"]
    assert [line.split()[0] for line in result.after] == [f"{directory}/", "a.crt"]
    assert result.before[1] != result.after[1] and result.after[1].endswith(f" 0644 {ME[0]}:{ME[1]}")
    assert "BEGIN" not in "".join(result.before + result.after)


@pytest.mark.parametrize("name", ["a.pem", "sub/a.crt", "../a.crt", ".crt", ".hidden.crt", "/etc/a.crt", "a.crt/"])
def test_bad_names_fail_before_anything_changes(tree, name):
    directory, bundle = tree
    message = r"^certificates: names must be .*not usable: " + re.escape(name)
    with pytest.raises(ca.CaCertificatesError, match=message):
        ca.plan(str(directory), {"ok.crt": PEM_A, name: PEM_A}, str(bundle), owner=ME)
    assert not directory.exists()


def test_a_value_without_a_certificate_fails(tree):
    directory, bundle = tree
    with pytest.raises(ca.CaCertificatesError, match=r"^certificates: the value of a.crt holds no PEM certificate"):
        ca.plan(str(directory), {"a.crt": "hello"}, str(bundle), owner=ME)


def test_a_directory_that_is_a_file_fails(tree):
    directory, bundle = tree
    directory.parent.mkdir(parents=True)
    directory.write_text("")
    with pytest.raises(ca.CaCertificatesError, match=r"^directory: .* is not a directory"):
        ca.plan(str(directory), {"a.crt": PEM_A}, str(bundle), owner=ME)


def test_a_listed_name_that_is_a_directory_fails(tree):
    directory, bundle = tree
    (directory / "a.crt").mkdir(parents=True)
    with pytest.raises(ca.CaCertificatesError, match=r"^certificates: .*a.crt is a directory"):
        ca.plan(str(directory), {"a.crt": PEM_A}, str(bundle), owner=ME)


def test_bad_names_lists_only_the_bad_ones():
    assert ca.bad_names(["b.crt", "x/y.crt", "a.txt", "0123456789abcdef.crt"]) == ["a.txt", "x/y.crt"]
