"""Make the checkout importable as ansible_collections.raibid.dgx_spark (see tests/testbed/setup.sh),
and fail a run whose skips tests/allowed-skips.yml does not list."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".cache" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "raibid" / "dgx_spark"

if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(ROOT, LINK)
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
sys.path.insert(0, str(ROOT / "tests"))
from suite_report import allowed_skip  # tests/suite_report.py

# Skips are failures unless tests/allowed-skips.yml lists them with a reason: a skipped check did not
# run, and the suite table must not say `ok` over it (tests/suite_report.py).
_UNEXPECTED_SKIPS: list[str] = []


def pytest_runtest_logreport(report):
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    if allowed_skip(report.nodeid) is None:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        _UNEXPECTED_SKIPS.append(f"{report.nodeid}: {reason}")


def pytest_terminal_summary(terminalreporter):
    if _UNEXPECTED_SKIPS:
        terminalreporter.section("skips not on tests/allowed-skips.yml (they fail the run)", red=True)
        for line in _UNEXPECTED_SKIPS:
            terminalreporter.line(f"UNEXPECTED SKIP: {line}")


def pytest_sessionfinish(session, exitstatus):
    if _UNEXPECTED_SKIPS and exitstatus == 0:
        session.exitstatus = 1
