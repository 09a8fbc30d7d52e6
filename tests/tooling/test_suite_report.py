"""The suite's own report: skips against the allow-list, test counts per part, the budget line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
import molecule_scenario  # tests/molecule_scenario.py
import suite_report  # tests/suite_report.py

ENTRIES = [{"id": "molecule/gpu_*", "reason": "needs a\n  GPU"}, {"id": "tests/x.py::test_a", "reason": "r"}]


def test_allowed_skip_matches_ids_and_patterns():
    assert suite_report.allowed_skip("molecule/gpu_hardware", ENTRIES) == "needs a GPU"
    assert suite_report.allowed_skip("tests/x.py::test_a", ENTRIES) == "r"
    assert suite_report.allowed_skip("tests/x.py::test_ab", ENTRIES) is None
    assert suite_report.allowed_skip("molecule/keda", ENTRIES) is None


def test_the_allow_list_is_short_and_every_entry_has_a_reason():
    entries = suite_report.load_allowed_skips()
    assert 0 < len(entries) <= 5
    assert all(len(str(e["reason"]).split()) >= 5 for e in entries)


def test_an_entry_without_a_reason_is_refused(tmp_path):
    path = tmp_path / "skips.yml"
    path.write_text("- id: tests/x.py::test_a\n")
    with pytest.raises(ValueError, match="needs an id and a reason"):
        suite_report.load_allowed_skips(path)


def _pytest_with_the_suite_plugin(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """A pytest session on one file outside tests/, with tests/conftest.py loaded as a plugin."""
    (tmp_path / "test_probe.py").write_text(body)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_skip_not_on_the_list_fails_the_session(tmp_path):
    proc = _pytest_with_the_suite_plugin(
        tmp_path, "import pytest\n\ndef test_a():\n    pytest.skip('no tool')\n\ndef test_b():\n    pass\n"
    )
    assert proc.returncode == 1, proc.stdout
    assert "UNEXPECTED SKIP: test_probe.py::test_a: Skipped: no tool" in proc.stdout


def test_a_session_without_skips_passes(tmp_path):
    proc = _pytest_with_the_suite_plugin(tmp_path, "def test_b():\n    pass\n")
    assert proc.returncode == 0, proc.stdout
    assert "UNEXPECTED" not in proc.stdout


def test_counts_sum_pytest_cargo_and_molecule_lines():
    log = "\n".join(
        [
            "==== 3 failed, 249 passed, 1 skipped, 2 warnings in 637.12s (0:10:37) ====",
            "12 passed in 0.41s",
            "test result: ok. 48 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 1.2s",
            "molecule: 7 passed, 1 failed, 1 skipped (scenarios)",
            "= 1 error in 0.2s =",
        ]
    )
    assert suite_report.counts(log) == {"passed": 316, "failed": 4, "skipped": 4, "errors": 1}
    assert suite_report.counts_line(log) == "316 passed, 4 failed, 4 skipped, 1 errors"
    assert suite_report.counts_line("All checks passed!\n") == ""


def test_budget_marks_parts_over_their_share_and_the_total_against_the_bar():
    shares = {part: warm for part, (warm, _) in suite_report.SHARES.items()}
    warm = suite_report.budget_lines({"lint": 20, "molecule": 1500}, cold=False)
    assert f"lint 20/{shares['lint']}s," in warm[0] and f"molecule 1500/{shares['molecule']}s OVER" in warm[0]
    assert warm[1].endswith("1520s of 2100s (35 min bar for a warm CI run): within")
    cold_images = suite_report.SHARES["images"][1]
    cold = suite_report.budget_lines({"images": cold_images + 1}, cold=True, total_s=4600)
    assert f"images {cold_images + 1}/{cold_images}s OVER" in cold[0]
    assert cold[1].endswith("4600s of 4500s (75 min bar for a cold CI run): OVER")


def test_budget_total_is_the_wall_time_when_parts_ran_side_by_side(monkeypatch, capsys, tmp_path):
    """lint ran beside integration: the parts add up to more than the suite took; setup is what CI's
    clock counted before the suite started."""
    monkeypatch.setattr(suite_report, "ROOT", tmp_path)  # no suite logs: a warm run
    monkeypatch.delenv("SUITE_COLD", raising=False)
    monkeypatch.setenv("SUITE_CI_START_EPOCH", str(int(time.time()) - 800))
    assert suite_report.main(["budget", "lint=200", "integration=700", "suite=710"]) == 0
    parts, total = capsys.readouterr().out.splitlines()
    shares = {part: warm for part, (warm, _) in suite_report.SHARES.items()}
    assert parts.startswith(
        f"Budget, warm: part time/share: setup 90/{shares['setup']}s OVER, lint 200/{shares['lint']}s OVER, "
        f"integration 700/{shares['integration']}s"
    )
    assert total.startswith("Budget total: 800s of 2100s")
    monkeypatch.delenv("SUITE_CI_START_EPOCH")
    assert suite_report.main(["budget", "lint=100", "integration=700", "suite=710"]) == 0
    assert "Budget total: 710s of 2100s" in capsys.readouterr().out


def test_the_shares_fit_their_bars():
    """setup, then integration and the parts after it beside each chain of BESIDE_CHAINS: the longest
    lane is the run."""
    beside = {p for chain in suite_report.BESIDE_CHAINS for p in chain}
    lanes = [tuple(p for p in suite_report.SHARES if p not in beside | {"setup"}), *suite_report.BESIDE_CHAINS]
    assert "integration" in lanes[0]
    assert sorted(p for lane in lanes for p in lane) == sorted(set(suite_report.SHARES) - {"setup"})
    for which, bar in ((0, suite_report.WARM_BAR_S), (1, suite_report.COLD_BAR_S)):
        longest = max(sum(suite_report.SHARES[p][which] for p in lane) for lane in lanes)
        assert suite_report.SHARES["setup"][which] + longest <= bar


def test_run_suite_takes_its_chains_from_here():
    text = (Path(suite_report.__file__).parent / "run-suite.sh").read_text(encoding="utf-8")
    assert "beside=${SUITE_BESIDE-$(.venv/bin/python tests/suite_report.py beside)}" in text
    assert suite_report.main(["beside"]) == 0


def test_a_hardware_scenario_is_reported_skipped_with_the_lists_reason(monkeypatch):
    monkeypatch.setattr(molecule_scenario, "scenarios", lambda include_hardware=False: ["a", "gpu_hw"])
    monkeypatch.setattr(molecule_scenario, "verified_in", lambda name: "")
    monkeypatch.setattr(molecule_scenario, "allowed_skip", lambda i: "needs a GPU" if i == "molecule/gpu_hw" else None)
    assert molecule_scenario.hardware_skips(["a"]) == [
        {"scenario": "gpu_hw", "ok": True, "skipped": True, "reason": "needs a GPU"}
    ]
    monkeypatch.setattr(molecule_scenario, "allowed_skip", lambda i: None)
    (row,) = molecule_scenario.hardware_skips(["a"])
    assert row["ok"] is False and "not on tests/allowed-skips.yml" in row["failed_step"]


def test_a_molecule_step_past_its_limit_is_stopped_and_named(monkeypatch, tmp_path):
    fake = tmp_path / "molecule"
    fake.write_text("#!/bin/sh\necho 'TASK [Wait for the engine] ****'\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr(molecule_scenario, "VENV_BIN", tmp_path)
    with pytest.raises(molecule_scenario.StepTimeout, match=r"`molecule converge -s x` did not finish in 1 s"):
        molecule_scenario.molecule("converge", "-s", "x", timeout=1)


def test_a_scenario_verified_in_another_takes_its_result_and_is_not_run_twice():
    assert "buildkit" not in molecule_scenario.scenarios()
    assert molecule_scenario.verified_in("buildkit") == "agent_image"
    assert molecule_scenario.covered_rows([{"scenario": "agent_image", "ok": False}]) == [
        {"scenario": "buildkit", "ok": False, "covered_by": "agent_image", "failed_step": "in agent_image"}
    ]
    assert molecule_scenario.hardware_skips(molecule_scenario.scenarios()) == [
        {"scenario": "container_runtime_gpu_hardware", "ok": True, "skipped": True, "reason": ANY_TEXT}
    ]


class _AnyText(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) > 20

    __hash__ = str.__hash__


ANY_TEXT = _AnyText()
