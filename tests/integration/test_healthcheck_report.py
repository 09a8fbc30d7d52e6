"""playbooks/healthcheck.yml end to end against real parts: this machine's Docker engine (over the
local connection) stands for one node, a container that does not exist for a node that does not answer.
Registries are pointed at free loopback ports (nothing answers there), the agent image at one that is
not in the store, and a certificate at a missing file whose check name needs HTML escaping: the run
must name both nodes and each fault, write the JSON and HTML reports, and fail. The Kubernetes Node check
reads the node test bed's Node (its kubelet keeps it Ready) with the machine's kubectl.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from browser import BrowserError, check_report, png_size
from conftest import ROOT, VENV_BIN
from k8s_testbed import free_port
from support import CommandTimeout, ansible_env, play_recap, run_bounded

PLAYBOOK = ROOT / "playbooks" / "healthcheck.yml"
CERT_NAME = "<b>dind-ca</b>"


def healthcheck(tmp_path: Path, extra: dict, *args: str) -> tuple[subprocess.CompletedProcess, str]:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        json.dumps(
            {
                "dgx_spark": {
                    "hosts": {
                        "this-host": {
                            "ansible_connection": "local",
                            "ansible_python_interpreter": str(VENV_BIN / "python"),
                        },
                        "ghost": {
                            "ansible_connection": "community.docker.docker",
                            "ansible_host": "raibid-test-no-such-node",
                        },
                    }
                }
            }
        )
    )
    local, mirror = free_port(), free_port()
    settings = {
        "ansible_become": False,  # root already; the play's become would need sudo here
        "health_report_dir": str(tmp_path / "report"),
        "health_registry_endpoints": {
            "local": f"127.0.0.1:{local}",
            "local_url": f"http://127.0.0.1:{local}",
            "mirror_urls": {"docker.io": f"http://127.0.0.1:{mirror}"},
        },
        "health_agent_image": "raibid-test/no-such-agent:latest",
        "health_certificates": [{"name": CERT_NAME, "path": str(tmp_path / "missing.pem")}],
        **extra,
    }
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK), "-e", json.dumps(settings)]
    try:
        what = "ansible-playbook playbooks/healthcheck.yml"
        proc = run_bounded([*cmd, *args], 300, what, cwd=ROOT, env=ansible_env())
    except CommandTimeout as exc:
        pytest.fail(str(exc), pytrace=False)
    return proc, proc.stdout + proc.stderr


def engine_driver() -> str:
    return subprocess.run(
        ["docker", "info", "--format", "{{.Driver}}"], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def test_the_report_names_every_node_and_fault_and_the_run_fails(tmp_path):
    proc, out = healthcheck(tmp_path, {})
    assert proc.returncode != 0, out
    assert "Unhealthy: this-host, ghost;" in out, out
    assert '"msg": "ghost: no result: Check the node' in out and "No such container" in out, out
    assert '"msg": "this-host: unhealthy: registry:local, registry:docker.io' in out, out
    recap = play_recap(out)
    # The nodes: nothing changed, nothing failed (ghost's error is its result); the verdict fails.
    assert [recap[h]["changed"] + recap[h]["failed"] for h in ("this-host", "ghost")] == [0, 0], recap
    assert recap["localhost"]["failed"] == 1, recap

    report = json.loads((tmp_path / "report" / "health-report.json").read_text())
    assert set(report["nodes"]) == {"this-host", "ghost"} and report["unhealthy"] == ["this-host", "ghost"]
    assert report["nodes"]["ghost"]["error"] is True and not report["nodes"]["ghost"]["healthy"]
    node = report["nodes"]["this-host"]
    checks = {c["name"]: c for c in node["checks"]}
    failing = {name for name, c in checks.items() if c["status"] == "fail"}
    assert {"registry:local", "registry:docker.io", "agent_image", f"cert:{CERT_NAME}"} <= failing, checks
    # The engine answered, and what it said is the engine's own view.
    assert checks["engine"]["status"] in ("ok", "warn"), checks["engine"]
    assert checks["engine"]["value"]["storage_driver"] == engine_driver()
    assert "http://127.0.0.1:" in checks["registry:local"]["message"]
    assert node["agent"] is None  # no image: its own health check did not run
    assert report["collection_version"] == "0.1.0" or report["collection_version"].count(".") == 2

    html = (tmp_path / "report" / "health-report.html").read_text()
    assert '<tr data-node="this-host">' in html and '<tr data-node="ghost">' in html
    assert 'id="unhealthy">this-host, ghost<' in html
    assert "registry:docker.io <i>fail</i>" in html
    # Self-contained and escaped: no scripts or outside resources; the check name is text, not markup.
    assert "<script" not in html and "src=" not in html and "href=" not in html
    assert "cert:&lt;b&gt;dind-ca&lt;/b&gt;" in html and CERT_NAME not in html

    # Rendered in headless Chromium (tests/browser.py): both rows and the failing registry:local, red
    # against an ok cell's green, are visible; the full-page screenshot is a real PNG.
    shot = tmp_path / "health-report.png"
    try:
        seen = check_report(
            tmp_path / "report" / "health-report.html", ["this-host", "ghost"], ["registry:local"], shot
        )
    except BrowserError as exc:
        pytest.fail(str(exc), pytrace=False)
    assert seen.ok, "\n".join(seen.missing)
    assert any(line.startswith("failing check registry:local: fail cell visible for this-host") for line in seen.found)
    width, height = png_size(shot.read_bytes())
    assert (width, height) == seen.screenshot_size and width >= 800 and height >= 400, seen.screenshot_size
    assert shot.stat().st_size > 10_000, f"{shot}: {shot.stat().st_size} bytes is too small for the rendered report"


def test_check_mode_reports_the_same_and_never_fails(tmp_path):
    proc, out = healthcheck(tmp_path, {"health_fail_on": "never"}, "--check")
    assert proc.returncode == 0, out
    report = json.loads((tmp_path / "report" / "health-report.json").read_text())
    assert report["unhealthy"] == ["this-host", "ghost"]
    assert play_recap(out)["this-host"]["changed"] == 0


def test_bad_settings_are_named_before_any_probe(tmp_path):
    proc, out = healthcheck(tmp_path, {"health_disk_fail_free_percent": 20, "health_fail_on": "sometimes"})
    assert proc.returncode != 0, out
    assert "health_disk_fail_free_percent (20) must be at most health_disk_warn_free_percent (15)" in out, out
    assert "health_fail_on" in out and "sometimes" in out, out
    assert "TASK [raibid.dgx_spark.health : Check the node" not in out
    assert not (tmp_path / "report").exists()


def test_kubernetes_node_check_reads_the_test_beds_node(tmp_path, k8s_node_testbed):
    """The Node check against a real Node: the node test bed's, which its kubelet keeps Ready. Schedulable
    is ok, cordoned warns, a Node that does not exist fails; kubectl is the machine's own."""
    bed = k8s_node_testbed
    kubectl = ["kubectl", "--kubeconfig", str(bed.kubeconfig)]

    def node_check(name: str) -> dict:
        settings = {"health_kubernetes_node": name, "health_kubeconfig": str(bed.kubeconfig), "health_fail_on": "never"}
        proc, out = healthcheck(tmp_path, settings)
        assert proc.returncode == 0, out
        report = json.loads((tmp_path / "report" / "health-report.json").read_text())
        return {c["name"]: c for c in report["nodes"]["this-host"]["checks"]}["kubernetes_node"]

    ready = node_check(bed.node_name)
    assert ready["status"] == "ok", ready
    assert ready["value"]["name"] == bed.node_name and ready["value"]["ready"] == "True", ready
    assert ready["value"]["unschedulable"] is False, ready
    subprocess.run([*kubectl, "cordon", bed.node_name], check=True, capture_output=True, timeout=60)
    try:
        cordoned = node_check(bed.node_name)
    finally:
        subprocess.run([*kubectl, "uncordon", bed.node_name], check=True, capture_output=True, timeout=60)
    assert cordoned["status"] == "warn" and "cordon" in cordoned["message"].lower(), cordoned
    missing = node_check("raibid-no-such-node")
    assert missing["status"] == "fail" and "raibid-no-such-node" in missing["message"], missing
