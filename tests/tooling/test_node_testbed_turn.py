"""One node test bed per machine, waited for rather than refused: start_testbed(node=True) takes the
machine's turn (k8s_testbed.node_testbed_turn) before start.sh, so that `make test` can run the
integration tests and the agent_jobs scenario side by side. Runs the turn against a stand-in
'kubelet' process and owner file; no test bed is started."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import k8s_testbed  # tests/integration/k8s_testbed.py


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """The owner file and lock under tmp_path; returns a function that 'starts' a bed: a process whose
    command line names kubelet, recorded in STATE/pids as node.sh records it."""
    owner = tmp_path / "owner"
    monkeypatch.setattr(k8s_testbed, "NODE_OWNER", owner)
    monkeypatch.setattr(k8s_testbed, "NODE_LOCK", tmp_path / "lock" / "node.lock")
    procs: list[subprocess.Popen] = []

    def start_bed(name: str) -> subprocess.Popen:
        state = tmp_path / name
        state.mkdir()
        proc = subprocess.Popen(["bash", "-c", "exec -a kubelet sleep 60"])
        procs.append(proc)
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{proc.pid}/cmdline").read_bytes().startswith(b"kubelet\0"):
            assert time.monotonic() < deadline, "the stand-in kubelet did not start"
            time.sleep(0.01)
        (state / "pids").write_text(f"containerd 1\nkubelet {proc.pid}\n")
        owner.write_text(f"{state}\n")
        return proc

    yield start_bed
    for proc in procs:
        proc.kill()
        proc.wait()


def test_no_owner_means_free(machine):
    assert k8s_testbed.running_node_testbed() is None
    with k8s_testbed.node_testbed_turn(timeout=1, poll=0.05):
        pass


def test_a_bed_whose_daemons_died_is_not_waited_for_but_stopped(machine, monkeypatch):
    proc = machine("stale")
    proc.kill()
    proc.wait()
    assert k8s_testbed.running_node_testbed() is None
    stopped: list[tuple[str, bool]] = []
    monkeypatch.setattr(k8s_testbed, "stop_testbed", lambda state, remove, locked: stopped.append((state.name, locked)))
    said: list[str] = []
    with k8s_testbed.node_testbed_turn(said.append, timeout=1, poll=0.05):
        assert stopped == [("stale", True)], "stop.sh did not clean up the killed bed before the start"
    assert "was not stopped" in said[0]


def test_the_turn_comes_when_the_running_bed_stops(machine):
    proc = machine("first")
    assert k8s_testbed.running_node_testbed().endswith("/first")
    said: list[str] = []

    def stop() -> None:  # what stop.sh does, as far as the turn can see: the daemons and the owner file go
        proc.kill()
        k8s_testbed.NODE_OWNER.unlink()

    threading.Timer(0.3, stop).start()
    t0 = time.monotonic()
    with k8s_testbed.node_testbed_turn(said.append, timeout=10, poll=0.05):
        waited = time.monotonic() - t0
    assert 0.3 <= waited < 5
    assert len(said) == 1 and "/first" in said[0] and "to stop" in said[0]


def test_the_wait_is_bounded_and_names_the_running_bed(machine):
    machine("busy")
    with pytest.raises(k8s_testbed.TestBedError, match=r"more than 0 s .*/busy.*K8S_TESTBED_NODE_WAIT"):
        with k8s_testbed.node_testbed_turn(timeout=0.2, poll=0.05):
            pytest.fail("the turn was given while a bed runs")


def test_two_starts_never_hold_the_turn_at_once(machine):
    inside: list[int] = []
    peak: list[int] = []

    def start() -> None:
        with k8s_testbed.node_testbed_turn(timeout=10, poll=0.02):
            inside.append(1)
            peak.append(len(inside))
            time.sleep(0.2)
            inside.pop()

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == [1, 1]
