"""Fixtures and helpers of the integration tests: real ansible-playbook runs against this machine,
and the real services the tests start (k8s_testbed.py holds what starts and stops them).

`run_role` runs a role of the collection on localhost in check mode (so a validation gap can
never change the build machine) and returns the recap and output, for bad-input tests.

Fixtures of services, one instance per pytest process however many modules use it, stopped at the
end of the session:
- `k8s_testbed`: kube-apiserver 1.20.2 + controller-manager + etcd (control plane only);
- `k8s_node_testbed`: the same plus one node (scheduler, containerd, CNI bridge, kubelet);
- `redis_server`: a real redis-server with a password on a free loopback port;
- `keda_crds`: the pinned KEDA v2.20.2 CRD files (tests/support.py: keda_crd). A module that needs
  them and a test bed asks for them with `pytestmark = pytest.mark.usefixtures("keda_crds")`, so that
  a missing file fails the module before a test bed is started for it.

Every command is bounded: ansible-playbook by PLAYBOOK_TIMEOUT_S (or the caller's timeout), the test
bed's build and start by k8s_testbed.py's bounds; on expiry the test fails naming what hung.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from k8s_testbed import (
    STOP_TIMEOUT_S,
    K8sTestBed,
    TestBedError,
    record_timing,
    start_redis,
    start_registry,
    start_testbed,
    stop_testbed,
)
from support import CommandTimeout, KedaCrdError, ansible_env, keda_crd, play_recap, run_bounded
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import NodeManager

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
# Task names of a role's validation phase: the argument-spec check and tasks/validate.yml.
VALIDATION_TASKS = ("Validating arguments against arg spec", "Validate ")
# One playbook run of these tests takes seconds to a few minutes (an agent_jobs apply on the node bed);
# past this it hangs.
PLAYBOOK_TIMEOUT_S = 600
# The KEDA CRDs the tests read (keda.sh_<name>.yaml).
KEDA_CRD_NAMES = ("scaledjobs", "triggerauthentications")


@dataclass
class PlaybookRun:
    rc: int
    output: str
    ok: int
    changed: int
    failed: int

    def failed_task(self) -> str:
        """Name of the last task that failed (from 'TASK [...]' headers before 'fatal:')."""
        name = ""
        for line in self.output.splitlines():
            match = re.match(r"^TASK \[(.*)\]", line)
            if match:
                # "raibid.dgx_spark.role : Task name" -> "Task name"
                name = match.group(1).split(" : ", 1)[-1]
            if line.startswith(("fatal:", "failed:")):
                return name
        return ""

    def assert_refused(self, expected: list[str], phase: str = "validation") -> None:
        """The run failed, changed nothing, printed every expected text, and failed in `phase`:
        "validation" (argument specs or tasks/validate.yml) or a task name prefix such as "Check "."""
        assert self.rc != 0, self.output
        assert self.changed == 0, self.output
        for text in expected:
            assert text in self.output, f"{text!r} not in output:\n{self.output}"
        task = self.failed_task()
        prefixes = VALIDATION_TASKS if phase == "validation" else (phase,)
        assert task.startswith(prefixes), f"failed in {task!r}, expected {prefixes}:\n{self.output}"


def run_playbook(
    playbook: Path,
    extra_vars: dict | None = None,
    check: bool = True,
    *args: str,
    timeout: float = PLAYBOOK_TIMEOUT_S,
) -> PlaybookRun:
    """ansible-playbook `playbook` on localhost (local connection), the recap of host localhost parsed.
    Fails the test, naming the playbook and showing the end of its output, past `timeout` seconds."""
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
    cmd += ["-e", f"ansible_python_interpreter={VENV_BIN / 'python'}"]
    if check:
        cmd.append("--check")
    if extra_vars is not None:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(args)
    try:
        proc = run_bounded(cmd, timeout, f"ansible-playbook {playbook}", cwd=ROOT, env=ansible_env())
    except CommandTimeout as exc:
        pytest.fail(str(exc), pytrace=False)
    out = proc.stdout + proc.stderr
    counts = play_recap(out).get("localhost", {})
    return PlaybookRun(proc.returncode, out, counts.get("ok", 0), counts.get("changed", 0), counts.get("failed", 0))


def role_play(directory: Path, role: str) -> Path:
    """A playbook in `directory` that runs raibid.dgx_spark.<role> on localhost."""
    play = directory / f"{role}.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: raibid.dgx_spark.{role}\n"
    )
    return play


# --- Running side by side (pytest-xdist; `make integration` runs INTEGRATION_JOBS workers) -----------
# The modules whose tests use a test bed go to one worker per bed, so that each bed starts once per run
# and the machine's one node bed (kubelet, containerd, CNI bridge) never twice; every other test (mostly
# ansible-playbook runs that use the CPU) goes to whichever worker is free, beside the beds' tests,
# which mostly wait on the API server and Pods. By module, not by xdist's `xdist_group` mark: with
# pytest 9.2 xdist 3.8's loadgroup cannot rename node ids (it sets `_nodeid`, which pytest 9.2 no longer
# reads), so the groups are silently ignored (pytest-dev/pytest-xdist#1386, fix open in #1388). A
# module that starts using a bed without being listed here fails collection, naming it.
BED_FIXTURES = {
    "k8s_node_testbed": "k8s-node-testbed",
    "k8s_testbed": "k8s-control-plane-testbed",
    "k8s_control_plane_testbed": "k8s-control-plane-testbed",
}
BED_MODULES = {
    "test_e2e_ci_job.py": "k8s-node-testbed",
    "test_k8s_pods.py": "k8s-node-testbed",
    "test_healthcheck_report.py": "k8s-node-testbed",
    "test_k8s_apply.py": "k8s-control-plane-testbed",
    "test_rollout.py": "k8s-control-plane-testbed",
}


def bed_group(nodeid: str) -> str | None:
    """The worker group of a test: its module's bed (BED_MODULES), or None (any worker). With
    K8S_TESTBED_NODE=1 the control-plane fixture is the node bed, so every bed module is one group."""
    group = BED_MODULES.get(nodeid.split("::", 1)[0].rsplit("/", 1)[-1])
    if group is not None and os.environ.get("K8S_TESTBED_NODE") == "1":
        return BED_FIXTURES["k8s_node_testbed"]
    return group


def bed_problems(items: list[tuple[str, list[str]]]) -> list[str]:
    """What BED_MODULES gets wrong for these (nodeid, fixture names) pairs: a test that uses the node
    bed outside the node bed's group, or a control-plane bed in a module of no group."""
    problems = []
    node = BED_FIXTURES["k8s_node_testbed"]
    for nodeid, fixtures in items:
        beds = {BED_FIXTURES[name] for name in fixtures if name in BED_FIXTURES}
        group = bed_group(nodeid)
        if (node in beds and group != node) or (beds and group is None):
            problems.append(
                f"{nodeid} uses the {' and the '.join(sorted(beds))} but its module is not listed with "
                f"{'it' if len(beds) == 1 else 'them'} in BED_MODULES (tests/integration/conftest.py), "
                "so two pytest-xdist workers could each start one"
            )
    return problems


def pytest_collection_modifyitems(config, items):
    problems = bed_problems([(item.nodeid, list(getattr(item, "fixturenames", ()))) for item in items])
    if problems:
        raise pytest.UsageError("\n".join(problems))


class BedScheduling(LoadScopeScheduling):
    """xdist's load-by-scope scheduler with a scope per bed (BED_MODULES) and one per other test; the
    largest scopes (the beds') are handed out first. The worker that runs the node bed's tests gets
    nothing else and stops when they are done, so that its session ends and the machine's one node bed
    stops then, not when the last integration test ends: the Molecule scenario that needs the node bed
    (agent_jobs) runs beside the integration tests (make test)."""

    def _split_scope(self, nodeid: str) -> str:
        return bed_group(nodeid) or nodeid

    def _reschedule(self, node) -> None:
        work = self.assigned_work.get(node, {})
        if len(self.nodes) > 1 and BED_FIXTURES["k8s_node_testbed"] in work:
            if not node.shutting_down and not self._pending_of(work):
                node.shutdown()
            return
        super()._reschedule(node)


def pytest_xdist_make_scheduler(config, log):
    return BedScheduling(config, log)


# On Ctrl-C (or the suite deadline's SIGINT) each worker stops its test beds in its session teardown;
# xdist gives a worker 10 s to exit before it kills it, which cut stop.sh short and left the node bed's
# bridge and cgroups behind (seen). Give them what stop.sh may take, inside run-suite.sh's 180 s grace.
NodeManager.EXIT_TIMEOUT = STOP_TIMEOUT_S - 10


@pytest.fixture
def run_role(tmp_path):
    """run_role(role, vars) -> PlaybookRun; the role runs on localhost in check mode."""

    def _run(role: str, role_vars: dict, check: bool = True) -> PlaybookRun:
        return run_playbook(role_play(tmp_path, role), role_vars, check)

    return _run


# --- KEDA CRDs -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def keda_crds() -> dict[str, Path]:
    """{"scaledjobs": Path, "triggerauthentications": Path}: the pinned KEDA v2.20.2 CRDs, from a local
    mirror or downloaded and checked (tests/support.py keda_crd). Fails, never skips, saying how to
    provide them when neither works or a file is not the pinned one."""
    try:
        return {name: keda_crd(name) for name in KEDA_CRD_NAMES}
    except KedaCrdError as exc:
        pytest.fail(str(exc), pytrace=False)


# --- the Kubernetes test beds ----------------------------------------------------------------------


def say(request: pytest.FixtureRequest, line: str) -> None:
    """A line to the terminal (and CI's log) although fixture output is captured."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    worker = os.environ.get("PYTEST_XDIST_WORKER")

    def write() -> None:
        if worker:  # an xdist worker's terminal output is not shown; its stderr is the run's
            print(f"[{worker}] {line}", file=sys.stderr, flush=True)
        elif reporter is not None:
            reporter.write_line(line)

    if capture is not None:
        with capture.global_and_fixture_disabled():
            write()
    else:
        write()


def _testbed(request: pytest.FixtureRequest, node: bool):
    """Start the session's test bed of this kind; yield it; stop it at the end of the session."""
    try:
        bed = start_testbed(node, report=lambda line: say(request, line))
    except TestBedError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield bed
    finally:
        seconds = stop_testbed(bed.state_dir)
        if bed.has_node:
            record_timing(kind="k8s-node-testbed-stop", stop_s=round(seconds, 1))


@pytest.fixture(scope="session")
def k8s_node_testbed(request):
    """The test bed with one node (scheduler, containerd, CNI bridge, kubelet): real Pods run.
    Yields K8sTestBed with node_name, node_ip, node_labels, containerd_address, ctr, pause_image,
    busybox_image and import_image(tar)."""
    yield from _testbed(request, node=True)


@pytest.fixture(scope="session")
def k8s_testbed(request) -> K8sTestBed:
    """A running kube-apiserver 1.20.2 (+ controller-manager, etcd); a K8sTestBed. Control plane only,
    beside the node bed when the session also uses k8s_node_testbed: what the control-plane tests
    assert (no Pod ever runs, PVCs stay Pending) must not depend on which module ran first. With
    K8S_TESTBED_NODE=1 it is the node bed itself (one test bed for the session)."""
    if os.environ.get("K8S_TESTBED_NODE") == "1":
        return request.getfixturevalue("k8s_node_testbed")
    return request.getfixturevalue("k8s_control_plane_testbed")


@pytest.fixture(scope="session")
def k8s_control_plane_testbed(request):
    """The control-plane-only test bed (what k8s_testbed is unless K8S_TESTBED_NODE=1)."""
    yield from _testbed(request, node=False)


# --- Services: Redis, a registry ----------------------------------------------------------------------


def _service(request: pytest.FixtureRequest, start):
    """Start a service with `start(report=...)` (a TestBedError fails the test with its message), yield
    it, then stop it and remove its work directory."""
    try:
        server = start(report=lambda line: say(request, line))
    except TestBedError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(request):
    """A real redis-server (RedisServer) on a free loopback port, with a password; stopped by PID at the end."""
    yield from _service(request, start_redis)


@pytest.fixture(scope="session")
def registry_server(request):
    """A real docker-registry (RegistryServer; Debian's distribution 2.8) on a free loopback port; stopped at
    the end."""
    yield from _service(request, start_registry)
