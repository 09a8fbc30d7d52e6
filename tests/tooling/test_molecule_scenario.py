"""The Molecule runner's one-line reason for a failed scenario (CI shows only the end of the log)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from molecule_scenario import failure_reason  # tests/molecule_scenario.py

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
