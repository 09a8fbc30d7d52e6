#!/usr/bin/env python3
"""The fleet scenario's verify (molecule/fleet/verify.yml runs it on the controller after converge).

Against the three converged nodes (Molecule's inventory), the test bed's API server (its Node objects
spark-1..3 stand for them) and the real playbooks, each step as an operator would run it:

1. health: playbooks/healthcheck.yml, all three healthy, timed;
2. fault: the second node's engine stopped; the health report names it and renders in headless Chromium
   with every node and the failing check visible;
3. rollout stops at the fault: the first node updated and uncordoned, the second recorded as failed
   with its failing check, the third untouched (no record, not cordoned, its engine not restarted);
4. the rollout run again, updating unhealthy nodes, limited to container_runtime: the role starts the
   engine, the gate passes, the rollout completes from where it stopped;
5. a CI pod running on spark-1 stops a rollout whose rollout_ci_pod_timeout passes, without eviction;
   then it holds the next rollout until it ends, and the rollout completes;
6. site.yml (container_runtime) killed right after it changed daemon.json, before dockerd reloaded:
   run again, every engine runs the new configuration; then back to the converged configuration.

Prints one line per step with its time; exits 1 with the reason at the first failed step.
Usage: fleet_checks.py --inventory DIR --kubeconfig FILE --work DIR
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]
from browser import BrowserError, check_report  # tests/browser.py
from k8s_testbed import running_ci_pod, set_pod_phase  # tests/integration/k8s_testbed.py
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from support import tail  # tests/support.py

VENV_BIN = ROOT / ".venv" / "bin"
NODES = ["fleet-1", "fleet-2", "fleet-3"]
K8S_NODES = {"fleet-1": "spark-1", "fleet-2": "spark-2", "fleet-3": "spark-3"}
PLAYBOOK_TIMEOUT_S = 900
# The task of container_runtime that merges daemon.json; step 6 kills site.yml when the next task starts.
MERGE_TASK = "container_runtime : Merge the requested settings into daemon.json"


class StepFailed(Exception):
    """A step's expectation did not hold."""


def check(condition: bool, what: str, output: str = "") -> None:
    if not condition:
        raise StepFailed(what + (f"\n--- output (tail) ---\n{tail(output, 60)}" if output else ""))


class Fleet:
    def __init__(self, inventory: Path, kubeconfig: Path, work: Path) -> None:
        self.inventory, self.work = inventory, work
        self.core = k8s_client.CoreV1Api(k8s_config.new_client_from_config(config_file=str(kubeconfig)))

    # --- running playbooks -------------------------------------------------------------------------

    def playbook(self, playbook: str, *args: str, extra: dict | None = None) -> tuple[int, str]:
        cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(self.inventory), str(ROOT / playbook), *args]
        if extra:
            cmd += ["-e", json.dumps(extra)]
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise StepFailed(f"{playbook} {' '.join(args)} did not finish in {PLAYBOOK_TIMEOUT_S} s") from exc
        return proc.returncode, proc.stdout + proc.stderr

    def rollout(self, *args: str, extra: dict | None = None) -> tuple[int, str]:
        settings = {"rollout_state_dir": str(self.work / "rollout"), "rollout_ci_pod_poll": 2, **(extra or {})}
        return self.playbook("playbooks/rollout.yml", *args, extra=settings)

    def record(self, host: str) -> dict | None:
        path = self.work / "rollout" / "nodes" / f"{host}.json"
        return json.loads(path.read_text()) if path.exists() else None

    # --- the nodes and the cluster -----------------------------------------------------------------

    def node_sh(self, host: str, *argv: str) -> str:
        proc = subprocess.run(["docker", "exec", host, *argv], capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise StepFailed(f"docker exec {host} {' '.join(argv)} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def engine_started(self, host: str) -> str:
        return self.node_sh(host, "systemctl", "show", "docker.service", "--property=ExecMainStartTimestamp")

    def engine_info(self, host: str) -> dict:
        return json.loads(self.node_sh(host, "docker", "info", "--format", "{{json .}}"))

    def cordoned(self, host: str) -> bool:
        return bool(self.core.read_node(K8S_NODES[host]).spec.unschedulable)


def step_health(fleet: Fleet) -> str:
    started = time.monotonic()
    rc, out = fleet.playbook("playbooks/healthcheck.yml", extra={"health_report_dir": str(fleet.work / "health-ok")})
    seconds = time.monotonic() - started
    check(rc == 0, f"healthcheck.yml failed on the converged fleet (rc {rc})", out)
    report = json.loads((fleet.work / "health-ok" / "health-report.json").read_text())
    check(sorted(report["nodes"]) == NODES and report["unhealthy"] == [], f"unexpected report: {report}")
    per_node = [report["nodes"][h]["elapsed_ms"] for h in NODES]
    return f"3 nodes healthy; playbook {seconds:.1f} s wall, node_health {per_node} ms"


def step_fault_report(fleet: Fleet) -> str:
    fleet.node_sh("fleet-2", "systemctl", "stop", "docker.socket", "docker.service")
    rc, out = fleet.playbook("playbooks/healthcheck.yml", extra={"health_report_dir": str(fleet.work / "health-fault")})
    check(rc != 0, "healthcheck.yml passed with fleet-2's engine stopped", out)
    report = json.loads((fleet.work / "health-fault" / "health-report.json").read_text())
    check(report["unhealthy"] == ["fleet-2"], f"unhealthy should be [fleet-2]: {report['unhealthy']}", out)
    failing = [c["name"] for c in report["nodes"]["fleet-2"]["checks"] if c["status"] == "fail"]
    check("engine" in failing, f"the report does not fail fleet-2's engine: {failing}")
    try:
        seen = check_report(
            fleet.work / "health-fault" / "health-report.html", NODES, ["engine"], fleet.work / "health-fault.png"
        )
    except BrowserError as exc:
        raise StepFailed(f"the browser check of the report did not run: {exc}") from exc
    check(seen.ok, f"not visible in the rendered report: {seen.missing}")
    return (
        f"fleet-2 failing {failing}; report rendered in {seen.browser} ({seen.screenshot_size[0]}x"
        f"{seen.screenshot_size[1]} px, {seen.seconds:.1f} s), every node and the failing check visible"
    )


def step_rollout_stops(fleet: Fleet) -> str:
    before = fleet.engine_started("fleet-3")
    started = time.monotonic()
    rc, out = fleet.rollout("--tags", "preflight")
    seconds = time.monotonic() - started
    check(rc != 0, "the rollout went on past fleet-2's stopped engine", out)
    check("fleet-2 is unhealthy before its update" in out, "the stop does not name fleet-2", out)
    check("Rollout stopped: 1 updated, 0 skipped, 1 failed, 1 not reached." in out, "no summary of the stop", out)
    check((fleet.record("fleet-1") or {}).get("status") == "updated", "fleet-1 not recorded as updated", out)
    failed = fleet.record("fleet-2") or {}
    check(failed.get("status") == "failed" and "engine" in failed.get("failing_checks", []), f"fleet-2: {failed}")
    check(fleet.record("fleet-3") is None, "fleet-3 has a record: it was reached")
    check(not any(fleet.cordoned(h) for h in NODES), "a Node is left cordoned after a stop before its cordon")
    check(fleet.engine_started("fleet-3") == before, "fleet-3's engine was restarted")
    return f"stopped at fleet-2 (engine) in {seconds:.1f} s; fleet-1 updated, fleet-3 untouched"


def step_rollout_repairs(fleet: Fleet) -> str:
    started = time.monotonic()
    rc, out = fleet.rollout("--tags", "container_runtime", extra={"rollout_unhealthy_before": "update"})
    seconds = time.monotonic() - started
    check(rc == 0, f"the rollout after the fault failed (rc {rc})", out)
    check("fleet-1: updated earlier in this rollout (at" in out, "fleet-1 was updated again", out)
    check("Rollout complete: 3 updated, 0 skipped, 0 failed, 0 not reached." in out, "no complete summary", out)
    check(fleet.node_sh("fleet-2", "systemctl", "is-active", "docker.service") == "active", "fleet-2's engine is down")
    check(not any(fleet.cordoned(h) for h in NODES), "a Node is left cordoned")
    check(not (fleet.work / "rollout" / "nodes").exists(), "the completed rollout kept its node records")
    return f"continued at fleet-2, container_runtime started its engine; complete in {seconds:.1f} s"


def step_ci_pod(fleet: Fleet) -> str:
    try:
        fleet.core.create_namespace(k8s_client.V1Namespace(metadata=k8s_client.V1ObjectMeta(name="raibid-ci")))
    except k8s_client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise
    running_ci_pod(fleet.core, "raibid-ci", "spark-1")
    rc, out = fleet.rollout("--tags", "preflight", extra={"rollout_ci_pod_timeout": 6})
    check(rc != 0, "the rollout went on while a CI pod ran on spark-1", out)
    check(
        "1 CI pod(s) still running on the Kubernetes node spark-1 after rollout_ci_pod_timeout=6s: raibid-ci/ci-job."
        " None was evicted" in out,
        "no timeout message naming the pod",
        out,
    )
    pod = fleet.core.read_namespaced_pod("ci-job", "raibid-ci")
    check(pod.metadata.deletion_timestamp is None and pod.status.phase == "Running", "the CI pod was evicted")
    check(fleet.cordoned("fleet-1") and not fleet.cordoned("fleet-2"), "spark-1 should stay cordoned, alone")

    # The job ends while the next rollout waits for it.
    timer = threading.Timer(25, set_pod_phase, (fleet.core, "raibid-ci", "ci-job", "Succeeded"))
    timer.start()
    started = time.monotonic()
    try:
        rc, out = fleet.rollout("--tags", "preflight", extra={"rollout_ci_pod_timeout": 300})
    finally:
        timer.cancel()
    seconds = time.monotonic() - started
    check(rc == 0, f"the rollout did not complete once the CI pod ended (rc {rc})", out)
    check("RETRYING: [fleet-1 -> fleet-k8s-control]: Wait for the CI pods on the node to finish" in out, "no wait", out)
    check("Rollout complete: 3 updated" in out, "no complete summary", out)
    check(not any(fleet.cordoned(h) for h in NODES), "a Node is left cordoned")
    return (
        f"a running CI pod stopped a 6 s-timeout rollout unevicted; the next waited for it, complete in {seconds:.1f} s"
    )


def _killed_after(cmd: list[str], after_task: str) -> tuple[bool, str]:
    """Run `cmd`; SIGKILL its process group when the task after `after_task` starts. (killed?, output)"""
    lines: list[str] = []
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    seen, killed = False, False
    deadline = time.monotonic() + PLAYBOOK_TIMEOUT_S
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if after_task in line:
            seen = True
        elif seen and line.startswith("TASK ["):
            os.killpg(proc.pid, signal.SIGKILL)
            killed = True
            break
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    return killed, "".join(lines)


def step_interrupted_converge(fleet: Fleet) -> str:
    extra = json.dumps({"container_runtime_daemon_extra": {"debug": True}, "dgx_spark_serial": 3})
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(fleet.inventory), str(ROOT / "molecule/fleet/converge.yml")]
    cmd += ["--tags", "container_runtime", "-e", extra]
    killed, out = _killed_after(cmd, MERGE_TASK)
    check(killed, f"site.yml was not killed after {MERGE_TASK!r}", out)
    written = [json.loads(fleet.node_sh(h, "cat", "/etc/docker/daemon.json")).get("debug") for h in NODES]
    running = [fleet.engine_info(h)["Debug"] for h in NODES]
    check(
        written == [True] * 3 and running == [False] * 3, f"not the window aimed at: file {written}, engine {running}"
    )

    rc, out = fleet.playbook("molecule/fleet/converge.yml", "--tags", "container_runtime", "-e", extra)
    check(rc == 0, f"site.yml run again after the kill failed (rc {rc})", out)
    running = [fleet.engine_info(h)["Debug"] for h in NODES]
    check(running == [True] * 3, f"after the rerun the engines do not run daemon.json's debug: {running}", out)

    rc, out = fleet.playbook("molecule/fleet/converge.yml", "--tags", "container_runtime", "-e", "dgx_spark_serial=3")
    check(rc == 0, f"the converge back to the scenario's settings failed (rc {rc})", out)
    running = [fleet.engine_info(h)["Debug"] for h in NODES]
    check(running == [False] * 3, f"debug still on after converging back: {running}", out)
    return "killed after daemon.json changed (engines not reloaded); the rerun reloaded all three"


STEPS: list[tuple[str, Callable[[Fleet], str]]] = [
    ("health of the converged fleet", step_health),
    ("a stopped engine in the report and the browser", step_fault_report),
    ("the rollout stops at the fault", step_rollout_stops),
    ("the rollout run again continues and repairs", step_rollout_repairs),
    ("a running CI pod holds the rollout", step_ci_pod),
    ("an interrupted converge converges", step_interrupted_converge),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    fleet = Fleet(args.inventory, args.kubeconfig, args.work)
    for number, (name, step) in enumerate(STEPS, 1):
        started = time.monotonic()
        try:
            said = step(fleet)
        except StepFailed as exc:
            print(f"FAILED step {number} ({name}) after {time.monotonic() - started:.0f} s: {exc}", flush=True)
            return 1
        print(f"ok step {number} ({name}), {time.monotonic() - started:.0f} s: {said}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
