#!/usr/bin/env python3
"""What `make test` says about itself: the test counts of each part, skips checked against
tests/allowed-skips.yml, and the CI time budget (each part's time against its share).

Used by tests/run-suite.sh (the table), tests/conftest.py (pytest's skips) and
tests/molecule_scenario.py (hardware-only scenarios).

Usage: suite_report.py counts LOG                  one line: "252 passed, 0 failed, 1 skipped"
       suite_report.py beside                      the parts run beside integration (BESIDE_CHAINS), as
                                                   tests/run-suite.sh's SUITE_BESIDE default
       suite_report.py budget PART=SECONDS ...     the budget lines (cold when node images were built:
                                                   SUITE_COLD=1, or .cache/suite/*.log say so)
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_SKIPS = Path(__file__).resolve().parent / "allowed-skips.yml"

# CI stops a run at 90 minutes. Bars from the developers' guide: a fresh clone's `.ci/run` (setup
# included) within 35 minutes on a warm machine and 75 on a cold one (no node images, no test bed
# build, no BuildKit cache). Shares in seconds per part; `setup` is .ci/run's `make setup`.
WARM_BAR_S = 35 * 60
COLD_BAR_S = 75 * 60
# The parts `make test` runs beside integration (tests/run-suite.sh), in chains: the parts of a chain one
# after another, the chains and integration side by side; the other parts run in turn after it. The
# budget's bar holds setup plus the longest lane (integration and the parts after it, or a chain), so
# the shares of the parts in one lane add up within it. Molecule beside integration as a second chain
# ("images molecule") works (the node test bed and the agent image's build lock are taken in turn) but
# was slower on our 2 cores: both are CPU-bound there once the integration tests run in pytest-xdist
# workers (docs/testbed.md). `images` is a chain of its own: on a cold machine its arm64 debootstrap runs
# under qemu on about one core for 8-10 min, which after integration left the other core idle; beside
# it, that core has integration's work (the integration tests build the images they need themselves,
# one lock per image, so neither builds an image twice). Warm, it finds every image and takes seconds.
BESIDE_CHAINS: tuple[tuple[str, ...], ...] = (("lint", "unit", "agent", "sanity", "release-check"), ("images",))
# Part: (warm share, cold share) in seconds. Warm: the fresh-clone CI run of 849990d on 2026-12-06 (setup 1,
# lint 93, unit 79, agent 21, sanity 227, release-check 67 beside integration 861, images 0, molecule 948;
# 1810 s in all), rounded up (unit raised to 110 after 100 s in the final check of d741b85); cold: the
# fresh-clone `--cold ci` run of d4f488b on 2026-12-06 (setup 58, lint 93, unit 92, agent 44, sanity 272,
# release-check 44 and images 1267 beside integration 2017, molecule 909; 2984 s in all), rounded up.
# The parts beside integration only need to fit in its share together.
SHARES: dict[str, tuple[int, int]] = {
    "setup": (75, 90),
    "lint": (100, 110),
    "unit": (110, 110),
    "agent": (30, 50),
    "sanity": (240, 300),
    "release-check": (75, 80),
    "integration": (900, 2200),
    "images": (15, 1300),
    "molecule": (1000, 1000),
}


def load_allowed_skips(path: Path = ALLOWED_SKIPS) -> list[dict]:
    """The allow-list: entries with `id` and a non-empty `reason` (an entry without one is an error)."""
    entries = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("id") or not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path}: every entry needs an id and a reason, got {entry!r}")
    return entries


def allowed_skip(test_id: str, entries: Optional[Iterable[dict]] = None) -> Optional[str]:
    """The reason `test_id` may be skipped, or None when it may not."""
    for entry in load_allowed_skips() if entries is None else entries:
        if fnmatch.fnmatchcase(test_id, entry["id"]):
            return " ".join(str(entry["reason"]).split())
    return None


# pytest's last line ("== 3 failed, 249 passed, 1 skipped in 637.12s ==", also without the `=` in
# -q mode), cargo test's "test result:" lines, the Molecule runner's "molecule: ..." line.
_PYTEST = re.compile(r"^=*\s*((?:\d+ [a-z]+(?:, )?)+) in [\d.]+s\b", re.M)
_CARGO = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", re.M)
_MOLECULE = re.compile(r"^molecule: (\d+) passed, (\d+) failed, (\d+) skipped", re.M)
_WORDS = {"passed": "passed", "failed": "failed", "skipped": "skipped", "error": "errors", "errors": "errors"}


def counts(log: str) -> dict[str, int]:
    """Tests passed/failed/skipped/errors in a part's log, summed over every pytest session, cargo
    test binary and Molecule run in it (Molecule counts scenarios)."""
    total = {"passed": 0, "failed": 0, "skipped": 0, "errors": 0}
    for match in _PYTEST.finditer(log):
        for item in match.group(1).split(", "):
            number, word = item.split(" ", 1)
            if word in _WORDS:
                total[_WORDS[word]] += int(number)
    for passed, failed, ignored in _CARGO.findall(log):
        total["passed"] += int(passed)
        total["failed"] += int(failed)
        total["skipped"] += int(ignored)
    for passed, failed, skipped in _MOLECULE.findall(log):
        total["passed"] += int(passed)
        total["failed"] += int(failed)
        total["skipped"] += int(skipped)
    return total


def counts_line(log: str) -> str:
    """Counts for the suite table; empty for a part that runs no tests (lint)."""
    found = counts(log)
    if not any(found.values()):
        return ""
    line = f"{found['passed']} passed, {found['failed']} failed, {found['skipped']} skipped"
    return line + (f", {found['errors']} errors" if found["errors"] else "")


def budget_lines(times: Mapping[str, int], cold: bool, total_s: Optional[int] = None) -> list[str]:
    """Each part's time against its share of the bar, and the total against the bar itself."""
    which = 1 if cold else 0
    bar = COLD_BAR_S if cold else WARM_BAR_S
    parts = []
    for part, seconds in times.items():
        share = SHARES.get(part, (0, 0))[which]
        parts.append(f"{part} {seconds}/{share}s" + (" OVER" if seconds > share else ""))
    total = sum(times.values()) if total_s is None else total_s
    kind = "cold (node images were built)" if cold else "warm"
    verdict = "within" if total <= bar else "OVER"
    return [
        f"Budget, {kind}: part time/share: " + ", ".join(parts),
        f"Budget total: {total}s of {bar}s ({bar // 60} min bar for a {'cold' if cold else 'warm'} CI run): {verdict}",
    ]


def _was_cold(log_dir: Path) -> bool:
    """Node images built during the run ("<image>: built in Ns" from molecule/images/build.py)."""
    return any(": built in " in p.read_text(errors="replace") for p in log_dir.glob("*.log"))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "counts":
        print(counts_line(Path(argv[1]).read_text(errors="replace")))
        return 0
    if argv == ["beside"]:
        print(" | ".join(" ".join(chain) for chain in BESIDE_CHAINS))
        return 0
    if argv and argv[0] == "budget":
        times = {}
        for item in argv[1:]:
            part, _, seconds = item.partition("=")
            times[part] = int(seconds)
        # suite=N: the suite's own wall time. Parts that ran side by side (tests/run-suite.sh) add up
        # to more than it, so the total is the wall time, never the sum.
        wall = times.pop("suite", None)
        cold = os.environ.get("SUITE_COLD") == "1" or _was_cold(ROOT / ".cache" / "suite")
        started = os.environ.get("SUITE_CI_START_EPOCH")
        total = int(time.time()) - int(started) if started else wall
        if started and "setup" not in times:
            ran = wall if wall is not None else sum(times.values())
            times = {"setup": max(0, total - ran), **times}
        print("\n".join(budget_lines(times, cold, total)))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
