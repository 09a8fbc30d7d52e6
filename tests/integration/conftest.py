"""Fixtures and helpers of the integration tests: real ansible-playbook runs against this machine,
and the real services the tests start (k8s_testbed.py holds what starts and stops them).

`run_role` runs a role of the collection on localhost in check mode (so a validation gap can
never change the build machine) and returns the recap and output, for bad-input tests.
`role_refusals(role, CASES)` makes a module's `refusals` fixture: every case of the module in one
ansible-playbook run, one inventory host per case (run_role_batch), so ~150 cases cost a dozen
ansible-playbook start-ups instead of ~150.

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


def role_play(directory: Path, role: str, hosts: str = "localhost") -> Path:
    """A playbook in `directory` that runs raibid.dgx_spark.<role> on `hosts` (localhost)."""
    play = directory / f"{role}.yml"
    play.write_text(
        f"- hosts: {hosts}\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: raibid.dgx_spark.{role}\n"
    )
    return play


# --- Many bad-input cases in one run --------------------------------------------------------------
# One ansible-playbook start-up (Python, the collection loader, the role's argument specs) costs about a
# CPU-second; the role's validation of one case costs a few hundredths. So each bad-input module runs all
# its cases in one playbook: one inventory host per case (local connection, this machine), the case's
# settings as that host's variables, as an inventory or group_vars gives them to the role. Hosts fail
# independently, so each case still gets its own failed task, message, recap and "nothing changed".
BATCH_MODULE_SUFFIX = "_bad_input.py"


def _result_lines(host: str, task: str, result: dict) -> list[str]:
    """A task's result for one host, in the default callback's shape (what PlaybookRun parses), with the
    message also as plain text (the default callback's error line prints it unescaped)."""
    if result.get("failed"):
        status = f"fatal: [{host}]: FAILED! => "
    elif result.get("skipped"):
        status = f"skipping: [{host}] => "
    else:
        status = f"{'changed' if result.get('changed') else 'ok'}: [{host}] => "
    lines = [f"TASK [{task}]", status + json.dumps(result, sort_keys=True, default=str)]
    for key in ("msg", "stdout", "stderr"):
        if isinstance(result.get(key), str) and result[key]:
            lines.append(result[key])
    return lines


def split_batch_output(data: dict, hosts: list[str]) -> dict[str, PlaybookRun]:
    """ansible.posix.json's document -> {host: PlaybookRun of that host alone}: its tasks' results in
    order, its recap counts, rc 2 when the host failed or was unreachable (ansible-playbook's rc)."""
    lines: dict[str, list[str]] = {host: [] for host in hosts}
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            name = task.get("task", {}).get("name", "")
            for host, result in task.get("hosts", {}).items():
                if host in lines:
                    lines[host] += _result_lines(host, name, result)
    runs = {}
    for host in hosts:
        stats = data.get("stats", {}).get(host)
        if stats is None:
            raise AssertionError(f"ansible-playbook gave no recap for host {host}:\n{json.dumps(data)[-4000:]}")
        failed = stats.get("failures", 0) + stats.get("unreachable", 0)
        runs[host] = PlaybookRun(
            2 if failed else 0, "\n".join(lines[host]), stats.get("ok", 0), stats.get("changed", 0), failed
        )
    return runs


@dataclass
class RoleBatch:
    """The cases of one run_role_batch: `runs[case id]` and the whole run's stdout and stderr."""

    runs: dict[str, PlaybookRun]
    output: str

    def __getitem__(self, case: str) -> PlaybookRun:
        return self.runs[case]


def run_role_batch(
    directory: Path, role: str, cases: dict[str, dict], timeout: float = PLAYBOOK_TIMEOUT_S
) -> RoleBatch:
    """raibid.dgx_spark.<role> in check mode, once, for every case: {case id: settings}. A case id is
    its host's inventory name (pytest ids: letters, digits, dots, dashes)."""
    hosts = {}
    for case, settings in cases.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", case):
            raise ValueError(f"case id {case!r}: an inventory host name needs [a-z0-9.-]")
        hosts[case] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": str(VENV_BIN / "python"),
            **settings,
        }
    inventory = directory / "cases.yml"
    inventory.write_text(json.dumps({"all": {"hosts": hosts}}, indent=1))  # JSON is YAML; types kept
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(role_play(directory, role, "all")), "--check"]
    env = {
        **ansible_env(),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.json",  # not profile_tasks: it prints into stdout
        "ANSIBLE_FORKS": str(min(len(hosts), 10)),
    }
    try:
        proc = run_bounded(cmd, timeout, f"ansible-playbook {role} with {len(hosts)} cases", cwd=ROOT, env=env)
    except CommandTimeout as exc:
        pytest.fail(str(exc), pytrace=False)
    start = proc.stdout.find("{")
    try:
        data = json.loads(proc.stdout[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        pytest.fail(
            f"ansible-playbook {role} (rc {proc.returncode}) printed no JSON document:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    return RoleBatch(split_batch_output(data, list(hosts)), proc.stdout + proc.stderr)


def role_refusals(role: str, cases: list, common: dict | None = None):
    """A module-scoped fixture `refusals` for a bad-input module: run_role_batch over `cases` (pytest.param
    with the role's settings first and an id), each merged over `common`. A test reads its case as
    `refusals[request.node.callspec.id]`."""

    @pytest.fixture(scope="module", name="refusals")
    def refusals(tmp_path_factory) -> RoleBatch:
        settings = {case.id: {**(common or {}), **case.values[0]} for case in cases}
        return run_role_batch(tmp_path_factory.mktemp(f"{role}-cases"), role, settings)

    return refusals


# --- Running side by side (pytest-xdist; `make integration` runs INTEGRATION_JOBS workers) -----------
# The modules whose tests use the node bed go to one worker, so that the machine's one node bed (kubelet,
# containerd, CNI bridge) starts once and never twice; each control-plane module goes to a worker of its
# own, with its own control-plane bed (bed_scope); every other test (mostly ansible-playbook runs that
# use the CPU) goes to whichever worker is free, beside the beds' tests, which wait on the API server
# and Pods for long stretches. By module, not by xdist's `xdist_group` mark: with
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


# The scopes handed out first, in this order: the node bed's (one group: one node bed per machine),
# then each control-plane module's. A control-plane bed starts in ~20 s with little CPU, so each such
# module gets a worker and a bed of its own: together on one worker they were the run's longest chain
# (test_k8s_apply.py ~520 s, then test_rollout.py ~150 s, one after the other).
def bed_scope(nodeid: str) -> str | None:
    """The xdist scope of a bed test: the node bed's group, or the control-plane module's path; None for
    a test that uses no bed."""
    group = bed_group(nodeid)
    if group is None or group == BED_FIXTURES["k8s_node_testbed"]:
        return group
    return nodeid.split("::", 1)[0]


def bed_priority(scope: str) -> int | None:
    """0 for the node bed's scope, 1 + its place in BED_MODULES for a control-plane module's; None for
    every other scope (handed out after them, largest first)."""
    if scope == BED_FIXTURES["k8s_node_testbed"]:
        return 0
    module = scope.rsplit("/", 1)[-1]
    return 1 + list(BED_MODULES).index(module) if module in BED_MODULES and "::" not in scope else None


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


def batch_problems(items: list[tuple[str, list[str]]]) -> list[str]:
    """Tests that read a `refusals` batch outside a *_bad_input.py module: the scheduler keeps only those
    modules on one worker, so each other worker would run the whole batch again."""
    return [
        f"{nodeid} uses a refusals batch (role_refusals) but its module's name does not end in "
        f"{BATCH_MODULE_SUFFIX}, which keeps a module's cases on one pytest-xdist worker"
        for nodeid, fixtures in items
        if "refusals" in fixtures and not nodeid.split("::", 1)[0].endswith(BATCH_MODULE_SUFFIX)
    ]


def pytest_collection_modifyitems(config, items):
    pairs = [(item.nodeid, list(getattr(item, "fixturenames", ()))) for item in items]
    problems = bed_problems(pairs) + batch_problems(pairs)
    if problems:
        raise pytest.UsageError("\n".join(problems))


class BedScheduling(LoadScopeScheduling):
    """xdist's load-by-scope scheduler with a scope for the node bed's modules, one per control-plane bed
    module (bed_scope), one per bad-input module (its cases run as one batch, role_refusals) and one per
    other test; the beds' scopes are handed out first (bed_priority), then the largest. The worker that
    runs the node bed's tests gets nothing else and stops when they are done, so that its session ends
    and the machine's one node bed stops then, not when the last integration test ends (the Molecule
    scenario that needs the node bed, agent_jobs, can then run beside the integration tests)."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return bed_scope(nodeid) or (module if module.endswith(BATCH_MODULE_SUFFIX) else nodeid)

    def _assign_work_unit(self, node) -> None:
        # The beds' scopes first (bed_priority: the run's end waits for their chains), whatever their
        # size: a bad-input module has more tests than a bed's module.
        beds = sorted((p, scope) for scope in self.workqueue if (p := bed_priority(scope)) is not None)
        for _, scope in reversed(beds):
            self.workqueue.move_to_end(scope, last=False)
        super()._assign_work_unit(node)

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
