"""The Molecule runner: its one-line reason for a failed scenario (CI shows only the end of the log),
and how it runs scenarios side by side (lanes, things only one scenario may use at a time, order,
interruption)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import molecule_scenario  # tests/molecule_scenario.py
from molecule_scenario import failure_reason, longest_first, run_all, shares

RESCUED_THEN_FATAL = """\
INFO     [agent_image > verify] Executing
TASK [Build an image that needs a newer Rust] ***********************************
fatal: [agent-image-node]: FAILED! => {"changed": false, "msg": "docker buildx build failed (rc=1) for x:too-new-1"}

TASK [Assert the build was refused] *******************************************
ok: [agent-image-node]

TASK [Assert the outcome (tests fail)] *****************************************
fatal: [agent-image-node]: FAILED! => {
    "assertion": "after.group.lag == 0",
    "changed": false,
    "evaluated_to": false,
    "msg": "agent rc 1 (expected 1), status {\\"status\\": \\"Failed\\"}, group {'lag': 1}"
}

PLAY RECAP *********************************************************************
agent-image-node           : ok=80   changed=3    unreachable=0    failed=1    skipped=2    rescued=1    ignored=0
CRITICAL 'molecule/default/molecule.yml' glob failed.  Exiting.
"""


def test_the_last_fatal_is_the_reason_and_rescued_ones_are_not():
    # The multi-line form: the message is on a later line than "fatal:".
    assert failure_reason(RESCUED_THEN_FATAL) == (
        "Assert the outcome (tests fail) on agent-image-node: "
        'agent rc 1 (expected 1), status {\\"status\\": \\"Failed\\"}, group {\'lag\': 1}'
    )


def test_a_one_line_fatal_gives_task_and_message():
    out = (
        "TASK [raibid.dgx_spark.agent_image : Build the agent image when an input changed] ****\n"
        'fatal: [node]: FAILED! => {"changed": false, "msg": "docker buildx build failed (rc=1) for r:1"}\n'
    )
    assert failure_reason(out) == (
        "raibid.dgx_spark.agent_image : Build the agent image when an input changed on node: "
        "docker buildx build failed (rc=1) for r:1"
    )


def test_idempotence_failure_names_the_changed_tasks():
    out = (
        "CRITICAL Idempotence test failed because of the following tasks:\n"
        "* [node] => raibid.dgx_spark.buildkit : Write buildkitd.toml\n"
        "* [node] => raibid.dgx_spark.buildkit : Restart buildkitd\n"
    )
    reason = failure_reason(out)
    assert reason.startswith("idempotence: changed on the second run: ")
    assert reason.endswith(
        "[node] => raibid.dgx_spark.buildkit : Write buildkitd.toml; "
        "[node] => raibid.dgx_spark.buildkit : Restart buildkitd"
    )


def test_a_molecule_error_without_a_task():
    assert failure_reason("ERROR    Failed to pre-validate.\n") == "ERROR    Failed to pre-validate."


def test_long_reasons_are_cut():
    out = 'TASK [t] ***\nfatal: [h]: FAILED! => {"msg": "' + "x" * 1000 + '"}\n'
    reason = failure_reason(out, limit=100)
    assert len(reason) == 100 and reason.endswith("...")


def test_nothing_recognisable_gives_empty():
    assert failure_reason("PLAY RECAP\nok\n") == ""


def test_molecule_closing_error_does_not_hide_the_task_failure():
    out = (
        "TASK [Check the CRDs] ***\n"
        'fatal: [keda-k8s-control]: FAILED! => {"changed": false, "msg": "scaledjobs.keda.sh is not Established"}\n'
        "PLAY RECAP ***\n"
        "ERROR    Ansible return code was 2, command was: ['ansible-playbook', 'verify.yml']\n"
    )
    assert failure_reason(out) == "Check the CRDs on keda-k8s-control: scaledjobs.keda.sh is not Established"


class Lanes:
    """A fake scenario run that records which scenarios ran at the same time."""

    def __init__(
        self, seconds: dict[str, float], outcome: dict[str, dict] | None = None, after: dict[str, str] | None = None
    ) -> None:
        # after: {name: other}: `name` ends only once `other` has started (no race with thread start-up
        # on a loaded machine).
        self.seconds, self.outcome, self.after = seconds, outcome or {}, after or {}
        self.running: set[str] = set()
        self.overlaps: list[set[str]] = []
        self.started: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, name: str) -> dict:
        with self.lock:
            self.started.append(name)
            self.running.add(name)
            self.overlaps.append(set(self.running))
        time.sleep(self.seconds[name])
        deadline = time.monotonic() + 10
        while name in self.after and self.after[name] not in self.started and time.monotonic() < deadline:
            time.sleep(0.01)
        with self.lock:
            self.running.discard(name)
        if isinstance(self.outcome.get(name), Exception):
            raise self.outcome[name]
        return {"scenario": name, "ok": True, **self.outcome.get(name, {})}


@pytest.fixture(autouse=True)
def _not_interrupted():
    molecule_scenario.INTERRUPTED.clear()
    yield
    molecule_scenario.INTERRUPTED.clear()


def test_two_lanes_and_the_shared_test_bed_never_at_once():
    seconds = {"k1": 0.2, "k2": 0.2, "a": 0.3, "b": 0.1, "c": 0.1}
    uses = {"k1": {"k8s-testbed"}, "k2": {"k8s-testbed"}}
    fake = Lanes(seconds)
    results = run_all(list(seconds), 2, fake, lambda n: uses.get(n, set()))
    assert [r["scenario"] for r in results] == list(seconds)
    assert all(r["ok"] for r in results)
    assert max(len(now) for now in fake.overlaps) == 2, "two lanes were never used together"
    assert not any({"k1", "k2"} <= now for now in fake.overlaps), fake.overlaps
    # k2 waits for k1: the next scenario that shares nothing goes first.
    assert fake.started[:2] == ["k1", "a"]


def test_one_lane_runs_in_the_given_order():
    seconds = {"b": 0.01, "a": 0.01, "c": 0.01}
    fake = Lanes(seconds)
    run_all(["b", "a", "c"], 1, fake, lambda n: set())
    assert fake.started == ["b", "a", "c"]
    assert max(len(now) for now in fake.overlaps) == 1


def test_an_interrupted_scenario_starts_no_other():
    seconds = {"a": 0.05, "b": 0.2, "c": 0.01, "d": 0.01}
    fake = Lanes(seconds, {"a": {"ok": False, "interrupted": True}}, after={"a": "b"})
    results = {r["scenario"]: r for r in run_all(list(seconds), 2, fake, lambda n: set())}
    assert results["a"]["interrupted"] and results["b"]["ok"], "the scenario already running finishes"
    assert results["c"] == {"scenario": "c", "ok": False, "failed_step": "not run (interrupted)"}
    assert set(fake.started) == {"a", "b"}


def test_a_runner_error_fails_its_scenario_only():
    seconds = {"a": 0.01, "b": 0.05, "c": 0.01}
    fake = Lanes(seconds, {"a": RuntimeError("boom")})
    results = {r["scenario"]: r for r in run_all(list(seconds), 2, fake, lambda n: set())}
    assert results["a"]["failed_step"] == "runner error: RuntimeError('boom')" and not results["a"]["ok"]
    assert results["b"]["ok"] and results["c"]["ok"]


def test_longest_first_by_the_last_successful_run(tmp_path):
    timings = tmp_path / "molecule-timings.jsonl"
    rows = [
        {"scenario": "short", "ok": True, "total_s": 50},
        {"scenario": "long", "ok": True, "total_s": 300},
        {"scenario": "long", "ok": False, "total_s": 5},  # a failed run says nothing about its length
        {"scenario": "mid", "ok": True, "total_s": 400},
        {"scenario": "mid", "ok": True, "total_s": 120},  # the last success counts
    ]
    timings.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    none = tmp_path / "none.jsonl"
    assert longest_first(["mid", "new", "short", "long"], timings, none) == ["new", "long", "mid", "short"]
    assert longest_first(["b", "a"], none, none) == ["b", "a"]


def test_a_fresh_clone_orders_by_the_machines_records_and_puts_last_ones_last(tmp_path):
    machine = tmp_path / "machine.jsonl"
    machine.write_text(
        "\n".join(json.dumps({"scenario": n, "ok": True, "total_s": t}) for n, t in (("a", 10), ("b", 30), ("c", 20)))
    )
    checkout = tmp_path / "checkout.jsonl"
    assert longest_first(["a", "b", "c"], checkout, machine) == ["b", "c", "a"]
    checkout.write_text(json.dumps({"scenario": "a", "ok": True, "total_s": 99}))  # this checkout's own record wins
    assert longest_first(["a", "b", "c"], checkout, machine) == ["a", "b", "c"]
    assert longest_first(["a", "b", "c"], checkout, machine, last=frozenset({"a"})) == ["b", "c", "a"]


def test_a_scenario_whose_thing_is_busy_elsewhere_waits_while_another_can_run():
    seconds = {"node": 0.05, "a": 0.1, "b": 0.1, "c": 0.1}
    uses = {"node": {"k8s-node-testbed"}}
    fake = Lanes(seconds)
    # The integration tests' node bed runs until both lanes are busy, then stops.
    results = run_all(
        list(seconds),
        2,
        fake,
        lambda n: uses.get(n, set()),
        busy_elsewhere=lambda things: bool(things) and len(fake.started) < 2,
    )
    assert all(r["ok"] for r in results)
    assert fake.started[:2] == ["a", "b"], "the node scenario went first although the bed was busy"
    assert fake.started[2] == "node", "once the bed was free it went before the rest"


def test_a_scenario_busy_elsewhere_starts_when_nothing_else_can():
    fake = Lanes({"node": 0.01})
    results = run_all(["node"], 2, fake, lambda n: {"k8s-node-testbed"}, busy_elsewhere=lambda things: True)
    assert results[0]["ok"] and fake.started == ["node"]  # its create step waits for the bed itself


def test_the_test_bed_scenarios_share_it_and_others_share_nothing():
    assert shares("keda") == shares("fleet") == {"k8s-testbed"}
    assert shares("agent_jobs") == {"k8s-testbed", "k8s-node-testbed"}
    assert shares("agent_image") == {"agent-image-buildcache"}


def test_a_machine_lock_held_elsewhere_is_busy_and_waited_for(tmp_path, monkeypatch):
    lock = tmp_path / "e2e" / ".agent.lock"
    monkeypatch.setitem(molecule_scenario.MACHINE_LOCKS, "agent-image-buildcache", lock)
    monkeypatch.setattr(molecule_scenario, "MACHINE_LOCK_POLL_S", 0.02)
    assert not molecule_scenario.busy_on_this_machine({"agent-image-buildcache"})
    lock.parent.mkdir()
    holder = subprocess.Popen(
        ["flock", str(lock), "sh", "-c", f"echo 'pid 1: building agent' > {lock}; sleep 1"],
    )
    deadline = time.monotonic() + 10
    while "building agent" not in (lock.read_text() if lock.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert molecule_scenario.busy_on_this_machine({"agent-image-buildcache"})
    assert not molecule_scenario.busy_on_this_machine({"k8s-testbed"})
    with pytest.raises(molecule_scenario.StepTimeout, match=r"still held after 0 s \(by pid 1: building agent\)"):
        with molecule_scenario.machine_locks("agent_image", {"agent-image-buildcache"}, timeout=0.1):
            pass
    t0 = time.monotonic()
    with molecule_scenario.machine_locks("agent_image", {"agent-image-buildcache"}, timeout=10):
        assert time.monotonic() - t0 > 0.1, "the lock was taken while the other holder had it"
        assert "molecule scenario agent_image" in lock.read_text()
    holder.wait()
    assert lock.read_text() == ""
    assert shares("site_fresh_node") == set()
