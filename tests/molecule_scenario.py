#!/usr/bin/env python3
"""Run Molecule scenarios the way CI does, and record how long each part took.

For each scenario: `molecule test --destroy never` (destroy, syntax, create, prepare, converge,
idempotence, verify), then a `--check --diff` converge on the converged nodes that must report
0 changed, then destroy (always, even after a failure). Timings are appended as JSON lines to
.cache/molecule-timings.jsonl for benchmarks/bench.py.

Usage: molecule_scenario.py [SCENARIO ...]   (no SCENARIO: every one under molecule/)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def molecule(*args: str) -> subprocess.CompletedProcess:
    """Run molecule with its output streamed as it comes and kept (stdout and stderr together)."""
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", ANSIBLE_FORCE_COLOR="false")
    cmd = [str(VENV_BIN / "molecule"), *args]
    print(f"\n$ {' '.join(cmd)}", flush=True)
    kept = []
    with subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            kept.append(line)
    sys.stdout.flush()
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(kept), "")


_TASK = re.compile(r"^TASK \[(?P<name>.*?)\] \*")
_FATAL = re.compile(r"^(?:fatal|failed): \[(?P<host>[^\]]+)\]:? (?:FAILED! => )?(?P<rest>.*)$")
_MSG = re.compile(r'"msg": "((?:[^"\\]|\\.)*)"')


def failure_reason(output: str, limit: int = 400) -> str:
    """What stopped a failed `molecule test`, in one line for the summary (CI shows only the end of
    the log): the task of the last fatal error and its message, or Molecule's own error line.
    Errors that a block rescued come earlier in the output; the last one is the one that stopped."""
    task, reason = "", ""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        match = _TASK.match(line)
        if match:
            task = match.group("name")
            continue
        match = _FATAL.match(line)
        if match:
            msg = _MSG.search(match.group("rest"))
            if not msg and match.group("rest").rstrip().endswith("{"):  # the result printed over several lines
                block = "\n".join(lines[i + 1 : i + 400]).split("\n}", 1)[0]
                msg = _MSG.search(block)
            detail = msg.group(1) if msg else match.group("rest")
            reason = f"{task or 'a task'} on {match.group('host')}: {detail}"
        elif "Idempotence test failed" in line:
            # Molecule lists the changed tasks on the lines that follow, "* [host] => task".
            changed = [t.strip().lstrip("* ") for t in lines[i + 1 : i + 11] if t.strip().startswith("* [")]
            reason = "idempotence: changed on the second run: " + "; ".join(changed or ["(tasks not listed)"])
        elif line.startswith(("CRITICAL", "ERROR")) and "glob failed" not in line:
            reason = line.strip()  # "glob failed" is molecule's notice that there is no default scenario
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def scenarios(include_hardware: bool = False) -> list[str]:
    """Scenario names; those whose molecule.yml starts with `# hardware-only` need real hardware
    (a DGX Spark) and run only when named explicitly."""
    found = []
    for path in (ROOT / "molecule").glob("*/molecule.yml"):
        first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        if include_hardware or not first.startswith("# hardware-only"):
            found.append(path.parent.name)
    return sorted(found)


def run_scenario(name: str) -> dict:
    record: dict = {"scenario": name, "ok": False}
    started = time.monotonic()
    try:
        # `--destroy never` also skips test's first destroy: remove leftovers of earlier runs here,
        # or a stale node would make converge look like a no-op.
        molecule("destroy", "-s", name)
        proc = molecule("test", "-s", name, "--destroy", "never")
        record["test_s"] = round(time.monotonic() - started, 1)
        if proc.returncode != 0:
            record["failed_step"] = "molecule test"
            record["reason"] = failure_reason(proc.stdout)
            return record
        check_started = time.monotonic()
        proc = molecule("converge", "-s", name, "--", "--check", "--diff")
        record["check_s"] = round(time.monotonic() - check_started, 1)
        recaps = RECAP.findall(proc.stdout)
        changed = {host: int(ch) for host, _ok, ch, _u, _f in recaps}
        record["check_changed"] = changed
        if proc.returncode != 0 or not recaps:
            record["failed_step"] = "check mode converge"
            record["reason"] = failure_reason(proc.stdout)
            return record
        if any(changed.values()):
            record["failed_step"] = f"check mode on converged nodes reported changes: {changed}"
            return record
        record["ok"] = True
        return record
    except KeyboardInterrupt:
        # SIGINT: Ctrl-C, or the suite's deadline (tests/run-suite.sh). The nodes are destroyed below,
        # then main() stops and prints the summary.
        record["failed_step"] = "interrupted (SIGINT)"
        record["interrupted"] = True
        return record
    finally:
        molecule("destroy", "-s", name)
        record["total_s"] = round(time.monotonic() - started, 1)
        timings = ROOT / ".cache" / "molecule-timings.jsonl"
        timings.parent.mkdir(parents=True, exist_ok=True)
        with timings.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({**record, "at": time.time()}) + "\n")


def main() -> int:
    names = sys.argv[1:] or scenarios()
    unknown = sorted(set(names) - set(scenarios(include_hardware=True)))
    if unknown:
        print(f"unknown scenario(s): {unknown}; known: {scenarios()}", file=sys.stderr)
        return 2
    results = []
    for name in names:
        results.append(run_scenario(name))
        if results[-1].get("interrupted"):
            results += [
                {"scenario": n, "ok": False, "failed_step": "not run (interrupted)"} for n in names[len(results) :]
            ]
            break
    print("\nMolecule summary")
    for r in results:
        state = "PASS" if r["ok"] else f"FAIL ({r.get('failed_step')})"
        print(
            f"  {r['scenario']:<36} {state:<10} test {r.get('test_s', '-')}s, check {r.get('check_s', '-')}s, "
            f"total {r.get('total_s', '-')}s"
        )
        if r.get("reason"):
            print(f"    why: {r['reason']}")
    failed = [r for r in results if not r["ok"]]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
