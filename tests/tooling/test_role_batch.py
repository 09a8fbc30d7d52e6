"""The bad-input batch of the integration tests (tests/integration/conftest.py): one ansible-playbook
run, one inventory host per case, split back into one PlaybookRun per case; and the xdist scheduler
that keeps a batch module on one worker. The real run is tested by the bad-input modules themselves
(test_preflight_bad_input.py mixes an accepted case with the refused ones); these check the
splitting decisions on a hand-made ansible.posix.json document."""

from __future__ import annotations

import importlib.util
import sys
from collections import OrderedDict
from pathlib import Path

import pytest

INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
sys.path.insert(0, str(INTEGRATION))
_spec = importlib.util.spec_from_file_location("integration_conftest", INTEGRATION / "conftest.py")
conftest = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = conftest  # dataclasses look their module up
_spec.loader.exec_module(conftest)

VALIDATE = "raibid.dgx_spark.buildkit : Validate the buildkit settings"


def document(**hosts: dict) -> dict:
    """A json callback document: an include task all hosts pass, then VALIDATE with `hosts`' results."""
    included = {host: {"changed": False} for host in hosts}
    stats = {
        host: {
            "ok": 1 + (not r.get("failed")),
            "changed": int(bool(r.get("changed"))),
            "failures": int(bool(r.get("failed"))),
        }
        for host, r in hosts.items()
    }
    tasks = [
        {"task": {"name": "ansible.builtin.include_role : raibid.dgx_spark.buildkit"}, "hosts": included},
        {"task": {"name": VALIDATE}, "hosts": hosts},
    ]
    return {"plays": [{"tasks": tasks}], "stats": stats}


def test_each_case_gets_its_own_result_and_message():
    data = document(
        **{
            "bad-port": {"failed": True, "msg": 'buildkit_port must be 1-65535 (got "x")'},
            "accepted": {"changed": False, "msg": "All assertions passed"},
        }
    )
    runs = conftest.split_batch_output(data, ["bad-port", "accepted"])
    bad, good = runs["bad-port"], runs["accepted"]
    assert (bad.rc, bad.failed, good.rc, good.failed) == (2, 1, 0, 0)
    assert bad.failed_task() == "Validate the buildkit settings"
    # The message unescaped, as the default callback's error line prints it; never in the other case.
    assert 'buildkit_port must be 1-65535 (got "x")' in bad.output
    assert "buildkit_port" not in good.output and "[bad-port]" not in good.output
    assert good.failed_task() == ""


def test_a_case_without_a_recap_fails_naming_it():
    data = document(only={"failed": True, "msg": "x"})
    with pytest.raises(AssertionError, match="no recap for host missing"):
        conftest.split_batch_output(data, ["only", "missing"])


def test_batch_modules_stay_on_one_worker_and_other_tests_spread():
    scope = conftest.BedScheduling._split_scope
    bad = "tests/integration/test_buildkit_bad_input.py::test_buildkit_refuses_bad_input[bad-port]"
    assert scope(None, bad) == "tests/integration/test_buildkit_bad_input.py"
    other = "tests/integration/test_k8s_manifests.py::test_x[a]"
    assert scope(None, other) == other
    assert scope(None, "tests/integration/test_k8s_pods.py::test_y") == "k8s-node-testbed"


def test_a_batch_outside_a_bad_input_module_is_refused_at_collection():
    problems = conftest.batch_problems(
        [
            ("tests/integration/test_rendering.py::test_x[a]", ["refusals", "request"]),
            ("tests/integration/test_buildkit_bad_input.py::test_y[b]", ["refusals"]),
            ("tests/integration/test_rendering.py::test_z", ["run_role"]),
        ]
    )
    assert len(problems) == 1 and problems[0].startswith("tests/integration/test_rendering.py::test_x[a]")
    assert "_bad_input.py" in problems[0]


@pytest.mark.parametrize("case", ["Bad_Case", "two words", "-leading-dash"])
def test_a_case_id_that_is_no_host_name_is_refused_before_any_run(tmp_path, case):
    with pytest.raises(ValueError, match="inventory host name"):
        conftest.run_role_batch(tmp_path, "buildkit", {case: {}})
    assert not (tmp_path / "cases.yml").exists()


class _Worker:
    def __init__(self, collection: list[str]):
        self.sent: list[list[int]] = []
        self.collection = collection

    def send_runtest_some(self, indexes: list[int]) -> None:
        self.sent.append(indexes)


def test_the_beds_are_handed_out_first_whatever_their_size():
    """A bad-input module (one scope) has more tests than a bed's module; the beds still go first: the
    node bed's group, then each control-plane module in BED_MODULES order, each to a worker of its own."""
    apply, rollout = "tests/integration/test_k8s_apply.py", "tests/integration/test_rollout.py"
    scopes = OrderedDict(
        [
            ("tests/integration/test_agent_jobs_bad_input.py", {f"a{i}": False for i in range(40)}),
            (rollout, {"r0": False}),
            ("tests/integration/test_k8s_manifests.py::test_x", {"m0": False}),
            (apply, {"c0": False, "c1": False}),
            ("k8s-node-testbed", {"n0": False}),
        ]
    )
    collection = [nodeid for unit in scopes.values() for nodeid in unit]
    sched = object.__new__(conftest.BedScheduling)
    sched.workqueue, sched.assigned_work = scopes, {}
    workers = [_Worker(collection) for _ in range(4)]
    sched.registered_collections = {w: w.collection for w in workers}
    for worker in workers:
        sched._assign_work_unit(worker)
    assert [list(sched.assigned_work[w]) for w in workers] == [
        ["k8s-node-testbed"],
        [apply],
        [rollout],
        ["tests/integration/test_agent_jobs_bad_input.py"],
    ]


def test_each_control_plane_module_is_a_scope_and_the_node_bed_one(monkeypatch):
    monkeypatch.delenv("K8S_TESTBED_NODE", raising=False)
    scope = conftest.BedScheduling._split_scope
    pods = scope(None, "tests/integration/test_k8s_pods.py::test_y")
    e2e = scope(None, "tests/integration/test_e2e_ci_job.py::test_z")
    assert pods == e2e == "k8s-node-testbed"
    assert scope(None, "tests/integration/test_k8s_apply.py::test_a") == "tests/integration/test_k8s_apply.py"
    assert scope(None, "tests/integration/test_rollout.py::test_b") == "tests/integration/test_rollout.py"
    # One test bed for the whole session: every bed module in the node bed's group.
    monkeypatch.setenv("K8S_TESTBED_NODE", "1")
    assert scope(None, "tests/integration/test_k8s_apply.py::test_a") == "k8s-node-testbed"
