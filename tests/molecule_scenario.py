#!/usr/bin/env python3
"""Run Molecule scenarios the way CI does, and record how long each part took.

For each scenario: `molecule test --destroy never` (destroy, syntax, create, prepare, converge,
idempotence, verify), then a `--check --diff` converge on the converged nodes that must report
0 changed, then destroy (always, even after a failure). Timings are appended as JSON lines to
.cache/molecule-timings.jsonl for benchmarks/bench.py.

A scenario whose molecule.yml starts with `# hardware-only` runs only when named; in a full run it
is reported as skipped, which fails the run unless tests/allowed-skips.yml lists it with a reason.

Scenarios run MOLECULE_JOBS at a time (default 2): each has its own nodes and networks and they
wait on containers rather than the CPU for long stretches. Molecule's prerun is off
(.config/molecule/config.yml): it installed this checkout into ~/.ansible/collections with --force
before every command, which raced between lanes (seen: exit 250) and left a copy that shadowed the
checkout. 1 runs them in turn.
Scenarios whose molecule.yml has a line
`# shares: <thing>` (e.g. the one Kubernetes test bed a machine can run) never run at the same time
as another naming the same thing, nor while another program on the machine holds it (the node test
bed, the agent image's build lock: busy_on_this_machine, machine_locks). The longest scenarios (by the
last recorded timings, this checkout's or the machine's) start first; with MOLECULE_BESIDE_INTEGRATION=1
those that need the node test bed go last. With MOLECULE_JOBS>1 each output line is prefixed with
`[scenario]`.
Every molecule command is bounded: MOLECULE_STEP_TIMEOUT seconds (default 2700: a cold agent_image
test takes ~22 min here, CI machines have been 2.5x slower); on expiry the command is interrupted,
the scenario fails naming the step that hung, and its nodes are destroyed.

Usage: molecule_scenario.py [SCENARIO ...]   (no SCENARIO: every one under molecule/)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, ContextManager

sys.path.insert(0, str(Path(__file__).resolve().parent))
from suite_report import allowed_skip  # tests/suite_report.py

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))
from k8s_testbed import running_node_testbed  # tests/integration/k8s_testbed.py

sys.path.insert(0, str(Path(__file__).resolve().parent / "testbed" / "images"))
from e2e_images import CACHE_DIR as E2E_IMAGES_CACHE  # tests/testbed/images/e2e_images.py
from support import LockTimeout, held_flock, play_recap  # tests/support.py

ROOT = Path(__file__).resolve().parent.parent
STEP_TIMEOUT_S = int(os.environ.get("MOLECULE_STEP_TIMEOUT", "2700"))
VENV_BIN = ROOT / ".venv" / "bin"
TIMINGS = ROOT / ".cache" / "molecule-timings.jsonl"
# The same records for the machine, so that a fresh clone (CI's) orders its scenarios by what this
# machine measured before rather than by name; --cold fresh-clone checks remove it with the rest.
MACHINE_TIMINGS = Path(os.environ.get("MOLECULE_MACHINE_TIMINGS", "/var/cache/raibid-molecule/timings.jsonl"))
# Set when the run is interrupted (SIGINT): scenarios still running record it, none starts after it.
INTERRUPTED = threading.Event()
_LOCAL = threading.local()  # .prefix: "[scenario] " on each output line when scenarios run side by side
_OUT_LOCK = threading.Lock()
_RUNNING: set[subprocess.Popen] = set()


class StepTimeout(Exception):
    """A molecule command ran past its limit; the message names the command and the limit."""


def molecule(*args: str, timeout: int | None = None) -> subprocess.CompletedProcess:
    """Run molecule with its output streamed as it comes and kept (stdout and stderr together).
    Past `timeout` seconds (default STEP_TIMEOUT_S) molecule gets SIGINT (Ansible stops between
    tasks), SIGKILL 60 s later, and StepTimeout is raised."""
    limit = STEP_TIMEOUT_S if timeout is None else timeout
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}", ANSIBLE_FORCE_COLOR="false")
    cmd = [str(VENV_BIN / "molecule"), *args]
    kept: list[str] = []
    prefix = getattr(_LOCAL, "prefix", "")
    _say(f"\n{prefix}$ {' '.join(cmd)}\n")
    with subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as proc:
        assert proc.stdout is not None
        _RUNNING.add(proc)
        timer = threading.Timer(limit, _interrupt, (proc,))
        timer.daemon = True
        timer.start()
        try:
            for line in proc.stdout:
                _say(prefix + line)
                kept.append(line)
            proc.wait()
        finally:
            timer.cancel()
            _RUNNING.discard(proc)
    if getattr(proc, "raibid_timed_out", False):
        last = next((line.strip() for line in reversed(kept) if line.startswith("TASK [")), "no task started")
        raise StepTimeout(f"`molecule {' '.join(args)}` did not finish in {limit} s; last task: {last}")
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(kept), "")


def _say(text: str) -> None:
    with _OUT_LOCK:
        sys.stdout.write(text)
        sys.stdout.flush()


def _interrupt(proc: subprocess.Popen) -> None:
    """The step's time is up: SIGINT, then SIGKILL if it is still running a minute later."""
    proc.raibid_timed_out = True  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


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
        elif line.startswith(("CRITICAL", "ERROR")) and "glob failed" not in line and not reason:
            # Molecule's own error, when no task failure explains the stop. Its closing "Ansible return
            # code was N" line must not hide the task's message; "glob failed" is its notice that there
            # is no default scenario.
            reason = line.strip()
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def _first_line(name: str) -> str:
    return (ROOT / "molecule" / name / "molecule.yml").read_text(encoding="utf-8").split("\n", 1)[0]


def scenarios(include_hardware: bool = False, include_verified_in: bool = False) -> list[str]:
    """Scenario names. A molecule.yml that starts with `# hardware-only` needs real hardware (a DGX
    Spark); one that starts with `# verified-in: <scenario>` has its prepare and verify run inside that
    scenario, on the same converge. Both run only when named (or asked for here)."""
    found = []
    for path in (ROOT / "molecule").glob("*/molecule.yml"):
        first = _first_line(path.parent.name)
        if first.startswith("# hardware-only") and not include_hardware:
            continue
        if first.startswith("# verified-in:") and not include_verified_in:
            continue
        found.append(path.parent.name)
    return sorted(found)


def verified_in(name: str) -> str:
    """The scenario that runs `name`'s checks (`# verified-in: <scenario>`), or ''."""
    first = _first_line(name)
    return first.split(":", 1)[1].split()[0] if first.startswith("# verified-in:") else ""


def _stop_if_interrupted() -> None:
    """In a worker thread SIGINT is not raised (Python raises it in the main thread, which sets
    INTERRUPTED; molecule itself got the signal through the process group and stopped)."""
    if INTERRUPTED.is_set():
        raise KeyboardInterrupt


def run_scenario(name: str) -> dict:
    record: dict = {"scenario": name, "ok": False}
    started = time.monotonic()
    try:
        # `--destroy never` also skips test's first destroy: remove leftovers of earlier runs here,
        # or a stale node would make converge look like a no-op.
        molecule("destroy", "-s", name)
        _stop_if_interrupted()
        proc = molecule("test", "-s", name, "--destroy", "never")
        _stop_if_interrupted()
        record["test_s"] = round(time.monotonic() - started, 1)
        if proc.returncode != 0:
            record["failed_step"] = "molecule test"
            record["reason"] = failure_reason(proc.stdout)
            return record
        check_started = time.monotonic()
        proc = molecule("converge", "-s", name, "--", "--check", "--diff")
        _stop_if_interrupted()
        record["check_s"] = round(time.monotonic() - check_started, 1)
        recaps = play_recap(proc.stdout)
        changed = {host: counts.get("changed", 0) for host, counts in recaps.items()}
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
    except StepTimeout as exc:
        record["failed_step"] = "timed out"
        record["reason"] = str(exc)
        return record
    except KeyboardInterrupt:
        # SIGINT: Ctrl-C, or the suite's deadline (tests/run-suite.sh). The nodes are destroyed below,
        # then main() stops and prints the summary.
        record["failed_step"] = "interrupted (SIGINT)"
        record["interrupted"] = True
        return record
    finally:
        try:
            molecule("destroy", "-s", name, timeout=600)
        except StepTimeout as exc:
            record["ok"] = False
            record.setdefault("failed_step", "destroy timed out")
            record["reason"] = f"{record.get('reason', '')} {exc}".strip()
        record["total_s"] = round(time.monotonic() - started, 1)
        line = json.dumps({**record, "at": time.time(), "jobs": getattr(_LOCAL, "jobs", 1)}) + "\n"
        with _OUT_LOCK:
            for path in (TIMINGS, MACHINE_TIMINGS):
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with path.open("a", encoding="utf-8") as fh:
                        fh.write(line)
                except OSError as exc:  # the machine's copy only orders later runs
                    _say(f"could not record the timing in {path}: {exc}\n")


def hardware_skips(names: list[str]) -> list[dict]:
    """Rows for the hardware-only scenarios a full run leaves out: skipped with the allow-list's
    reason, or failed when tests/allowed-skips.yml does not list them."""
    rows = []
    for name in sorted(set(scenarios(include_hardware=True)) - set(names)):
        if verified_in(name):
            continue
        reason = allowed_skip(f"molecule/{name}")
        if reason is None:
            rows.append(
                {
                    "scenario": name,
                    "ok": False,
                    "failed_step": "skipped (hardware-only) but not on tests/allowed-skips.yml",
                }
            )
        else:
            rows.append({"scenario": name, "ok": True, "skipped": True, "reason": reason})
    return rows


def covered_rows(results: list[dict]) -> list[dict]:
    """Rows for the scenarios whose checks ran inside another one: its result is theirs."""
    by_name = {r["scenario"]: r for r in results}
    rows = []
    for name in sorted(set(scenarios(include_verified_in=True)) - set(scenarios())):
        host = verified_in(name)
        ran = by_name.get(host, {})
        rows.append({"scenario": name, "ok": bool(ran.get("ok")), "covered_by": host, "failed_step": f"in {host}"})
    return rows


def shares(name: str) -> set[str]:
    """What the scenario uses that only one scenario at a time may (`# shares: <thing>` lines)."""
    text = (ROOT / "molecule" / name / "molecule.yml").read_text(encoding="utf-8")
    return set(re.findall(r"^# shares: *(\S+)", text, re.MULTILINE))


def longest_first(
    names: list[str], timings: Path | None = None, machine: Path | None = None, last: frozenset[str] = frozenset()
) -> list[str]:
    """`names` ordered by each scenario's last successful total time, longest first, so that the
    lanes end close together: this checkout's records, else the machine's (a fresh clone). A scenario
    without a record (a new machine) comes first, in name order; those in `last` come after all others."""
    recorded: dict[str, float] = {}
    for path in (MACHINE_TIMINGS if machine is None else machine, TIMINGS if timings is None else timings):
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("ok") and "total_s" in rec:
                recorded[rec["scenario"]] = float(rec["total_s"])
    return sorted(names, key=lambda n: (n in last, -recorded.get(n, float("inf"))))


# Shared things that other programs on the machine take by a lock file: the agent image's cargo tools
# compile once per machine, into the BuildKit cache directory the agent_image scenario shares with the
# end-to-end images (tests/testbed/images/e2e_images.py builds under this lock); two cold builds at once
# would each compile them. The runner holds the lock for the whole scenario.
MACHINE_LOCKS = {"agent-image-buildcache": E2E_IMAGES_CACHE / ".agent.lock"}
MACHINE_LOCK_TIMEOUT_S = int(os.environ.get("MOLECULE_MACHINE_LOCK_TIMEOUT", "5400"))
MACHINE_LOCK_POLL_S = 2


def busy_on_this_machine(things: set[str]) -> bool:
    """Whether something outside this runner uses one of `things` now: the machine's one node test
    bed (`k8s-node-testbed`), which the integration tests may be running beside Molecule (make test),
    or a thing of MACHINE_LOCKS whose lock another program holds."""
    if "k8s-node-testbed" in things and running_node_testbed() is not None:
        return True
    for thing in things & MACHINE_LOCKS.keys():
        path = MACHINE_LOCKS[thing]
        if not path.exists():
            continue
        with open(path, "a", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fh, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def machine_locks(name: str, things: set[str], timeout: float | None = None):
    """Hold the lock files of `things` (MACHINE_LOCKS) while scenario `name` runs; waits at most
    `timeout` seconds (MACHINE_LOCK_TIMEOUT_S) for each, saying who holds it, then raises StepTimeout."""
    limit = MACHINE_LOCK_TIMEOUT_S if timeout is None else timeout
    with contextlib.ExitStack() as stack:
        for thing in sorted(things & MACHINE_LOCKS.keys()):
            path = MACHINE_LOCKS[thing]

            def waiting(holder: str, thing: str = thing, path: Path = path) -> None:
                _say(f"{getattr(_LOCAL, 'prefix', '')}waiting for {thing} ({path}, held by {holder})\n")

            try:
                stack.enter_context(
                    held_flock(path, limit, f"molecule scenario {name}", waiting=waiting, poll=MACHINE_LOCK_POLL_S)
                )
            except LockTimeout as exc:
                raise StepTimeout(f"{thing}: {exc}") from None
        yield


def run_all(
    names: list[str],
    jobs: int,
    run: Callable[[str], dict],
    shares_of: Callable[[str], set[str]] = shares,
    *,
    busy_elsewhere: Callable[[set[str]], bool] = busy_on_this_machine,
    hold: Callable[[str, set[str]], ContextManager] = machine_locks,
) -> list[dict]:
    """Run `names` with `run`, at most `jobs` at a time, never two that share a thing at once, in the
    given order as far as that allows. A scenario whose shared thing another program on the machine
    uses now (`busy_elsewhere`) waits while another can start; when none can, it starts and its own
    create step waits for the thing (bounded there). Once INTERRUPTED is set no scenario starts: the
    ones left are reported "not run (interrupted)". Results come back in the order of `names`."""
    pending = list(names)
    busy: set[str] = set()
    results: dict[str, dict] = {}
    cond = threading.Condition()
    uses = {name: shares_of(name) for name in names}

    def worker() -> None:
        _LOCAL.jobs = jobs
        while True:
            with cond:
                while True:
                    if INTERRUPTED.is_set() or not pending:
                        return
                    free = [n for n in pending if not uses[n] & busy]
                    name = next((n for n in free if not busy_elsewhere(uses[n])), free[0] if free else None)
                    if name is not None:
                        break
                    cond.wait()
                pending.remove(name)
                busy.update(uses[name])
            _LOCAL.prefix = f"[{name}] " if jobs > 1 else ""
            try:
                with hold(name, uses[name]):
                    results[name] = run(name)
            except Exception as exc:  # a bug in the runner must not leave the other lane waiting forever
                results[name] = {"scenario": name, "ok": False, "failed_step": f"runner error: {exc!r}"}
            with cond:
                busy.difference_update(uses[name])
                if results[name].get("interrupted"):
                    INTERRUPTED.set()
                cond.notify_all()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(jobs, len(names))))]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        try:
            for thread in threads:
                thread.join(0.5)
        except KeyboardInterrupt:
            # The molecule commands got the same SIGINT (one process group) and stop; each lane
            # then destroys its nodes. No scenario starts after this.
            INTERRUPTED.set()
            with cond:
                cond.notify_all()
    return [
        results.get(name, {"scenario": name, "ok": False, "failed_step": "not run (interrupted)"}) for name in names
    ]


def main() -> int:
    names = sys.argv[1:] or scenarios()
    unknown = sorted(set(names) - set(scenarios(include_hardware=True, include_verified_in=True)))
    if unknown:
        print(f"unknown scenario(s): {unknown}; known: {scenarios()}", file=sys.stderr)
        return 2
    try:
        jobs = int(os.environ.get("MOLECULE_JOBS", "2"))
        if jobs < 1:
            raise ValueError
    except ValueError:
        print(f"MOLECULE_JOBS must be a whole number >= 1, got {os.environ['MOLECULE_JOBS']!r}", file=sys.stderr)
        return 2
    print(f"molecule: {len(names)} scenario(s), {jobs} at a time", flush=True)
    # Beside the integration tests (make test), the scenarios that need the machine's one node test bed go
    # last: the integration tests hold it for their first minutes.
    beside = os.environ.get("MOLECULE_BESIDE_INTEGRATION") == "1"
    last = frozenset(n for n in names if beside and "k8s-node-testbed" in shares(n))
    by_name = {r["scenario"]: r for r in run_all(longest_first(names, last=last), jobs, run_scenario)}
    results = [by_name[name] for name in names]
    if not sys.argv[1:]:
        results += hardware_skips(names)
        results += covered_rows(results)
    print("\nMolecule summary")
    for r in results:
        if r.get("skipped"):
            print(f"  {r['scenario']:<36} SKIP       allowed: {r['reason']}")
            continue
        if r.get("covered_by"):
            state = "PASS" if r["ok"] else "FAIL"
            print(f"  {r['scenario']:<36} {state:<10} its prepare and verify ran in {r['covered_by']} (same converge)")
            continue
        state = "PASS" if r["ok"] else f"FAIL ({r.get('failed_step')})"
        print(
            f"  {r['scenario']:<36} {state:<10} test {r.get('test_s', '-')}s, check {r.get('check_s', '-')}s, "
            f"total {r.get('total_s', '-')}s"
        )
        if r.get("reason"):
            print(f"    why: {r['reason']}")
    failed = [r for r in results if not r["ok"] and not r.get("covered_by")]
    skipped = [r for r in results if r.get("skipped")]
    covered = [r for r in results if r.get("covered_by")]
    passed = len(results) - len(failed) - len(skipped) - len(covered)
    # The line tests/suite_report.py counts for the suite table.
    print(
        f"molecule: {passed} passed, {len(failed)} failed, {len(skipped)} skipped (scenarios);"
        f" {len(covered)} verified within another"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
