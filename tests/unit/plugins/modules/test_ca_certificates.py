"""Unit tests for the ca_certificates module glue (arguments, check and diff mode, result shape) over a
temporary tree; the owner is the user running the tests instead of root."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from ansible_collections.raibid.dgx_spark.plugins.modules import ca_certificates

PEM_A = "-----BEGIN CERTIFICATE-----\nMIIBAAA\n-----END CERTIFICATE-----\n"
PEM_B = "-----BEGIN CERTIFICATE-----\nMIIBBBB\n-----END CERTIFICATE-----\n"


@pytest.fixture
def run(run_module, monkeypatch):
    monkeypatch.setattr(ca_certificates, "OWNER", (os.getuid(), os.getgid()))
    return functools.partial(run_module, ca_certificates)


@pytest.fixture
def paths(tmp_path: Path):
    (tmp_path / "certs").mkdir()
    return {"directory": str(tmp_path / "ca" / "raibid"), "bundle": str(tmp_path / "certs" / "ca-certificates.crt")}


def update_store(bundle: str) -> None:
    """update-ca-certificates' effect on the bundle: newer than every certificate."""
    Path(bundle).write_text("bundle\n")
    later = Path(bundle).stat().st_mtime_ns + 10**9
    os.utime(bundle, ns=(later, later))


def test_fresh_node_then_no_op(run, paths):
    code, result = run({**paths, "certificates": {"a.crt": PEM_A}})
    assert code == 0, result
    assert result["changed"] is True and result["update_needed"] is True and result["store_stale"] is True
    assert result["written"] == ["a.crt"] and result["removed"] == []
    assert Path(paths["directory"], "a.crt").read_text() == PEM_A

    update_store(paths["bundle"])
    code, result = run({**paths, "certificates": {"a.crt": PEM_A}})
    assert code == 0
    assert result["changed"] is False and result["update_needed"] is False and result["store_stale"] is False
    assert result["written"] == [] and result["removed"] == []
    assert "diff" not in result


def test_changed_and_unlisted_certificates(run, paths):
    run({**paths, "certificates": {"a.crt": PEM_A, "old.crt": PEM_B}})
    Path(paths["directory"], "notes.txt").write_text("kept\n")
    update_store(paths["bundle"])
    code, result = run({**paths, "certificates": {"a.crt": PEM_B}})
    assert code == 0
    assert result["written"] == ["a.crt"] and result["removed"] == ["old.crt"] and result["update_needed"] is True
    assert result["msg"] == "write a.crt; remove old.crt"
    assert sorted(os.listdir(paths["directory"])) == ["a.crt", "notes.txt"]


def test_store_stale_without_change_after_a_killed_run(run, paths):
    run({**paths, "certificates": {"a.crt": PEM_A}})
    code, result = run({**paths, "certificates": {"a.crt": PEM_A}})
    assert code == 0
    assert result["changed"] is False and result["store_stale"] is True and result["update_needed"] is True


def test_check_and_diff_mode_change_nothing(run, paths):
    run({**paths, "certificates": {"a.crt": PEM_A}})
    update_store(paths["bundle"])
    mtime = Path(paths["directory"], "a.crt").stat().st_mtime_ns
    code, result = run(
        {**paths, "certificates": {"a.crt": PEM_B, "b.crt": PEM_A}, "_ansible_check_mode": True, "_ansible_diff": True}
    )
    assert code == 0
    assert result["changed"] is True and result["written"] == ["a.crt", "b.crt"] and result["update_needed"] is True
    assert result["msg"] == "would write a.crt, b.crt"
    assert os.listdir(paths["directory"]) == ["a.crt"]
    assert Path(paths["directory"], "a.crt").stat().st_mtime_ns == mtime
    diff = result["diff"]
    assert [line.split()[0] for line in diff["after"].splitlines()[1:]] == ["a.crt", "b.crt"]
    assert [line.split()[0] for line in diff["before"].splitlines()[1:]] == ["a.crt"]
    assert "BEGIN CERTIFICATE" not in diff["before"] + diff["after"]


def test_check_mode_on_a_fresh_node(run, paths):
    code, result = run({**paths, "certificates": {"a.crt": PEM_A}, "_ansible_check_mode": True})
    assert code == 0 and result["changed"] is True and result["store_stale"] is True
    assert not os.path.exists(paths["directory"])


@pytest.mark.parametrize("name", ["a.pem", "sub/a.crt", "../escape.crt", ".hidden.crt"])
def test_bad_names_fail_naming_the_option(run, paths, name):
    code, result = run({**paths, "certificates": {"ok.crt": PEM_A, name: PEM_A}})
    assert code == 1 and result["failed"] is True
    assert result["msg"].startswith("certificates: ") and name in result["msg"]
    assert result["msg"].endswith("Nothing was changed.")
    assert not os.path.exists(paths["directory"])


def test_a_value_that_is_no_certificate_fails(run, paths):
    code, result = run({**paths, "certificates": {"a.crt": "hello"}})
    assert code == 1 and result["msg"].startswith("certificates: the value of a.crt holds no PEM certificate")


def test_required_options(run, paths):
    code, result = run({"directory": paths["directory"], "certificates": {}})
    assert code == 1 and "bundle" in result["msg"]
