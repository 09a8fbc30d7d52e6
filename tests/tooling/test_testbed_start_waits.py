"""start.sh's wait for each component (wait_for, also used by node.sh) is bounded, each probe too,
and on expiry names the component, the URL it did not answer and the end of its log, never the
admin token that is on the probe's command line. Runs the function itself, cut out of start.sh, with
a stand-in component and stop.sh; no test bed is started."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
START = ROOT / "tests" / "testbed" / "k8s" / "start.sh"


def function(name: str) -> str:
    """The bash function `name` as start.sh defines it (from `name() {` to the closing brace)."""
    match = re.search(rf"^{name}\(\) \{{.*?^\}}$", START.read_text(encoding="utf-8"), re.M | re.S)
    assert match, f"start.sh defines no {name}()"
    return match.group(0)


def wait(tmp_path: Path, limit: int, *probe: str) -> subprocess.CompletedProcess:
    """wait_for kube-apiserver against a stand-in component (a sleep, killed at the end)."""
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "kube-apiserver.log").write_text("E0101 apiserver: etcd unreachable\n")
    stop = tmp_path / "stop.sh"
    stop.write_text("#!/bin/sh\necho '[k8s-testbed stop] stopped' >&2\n")
    stop.chmod(0o755)
    script = "\n".join(
        [
            "set -euo pipefail",
            f"STATE={tmp_path}; here={tmp_path}",
            'log() { echo "[k8s-testbed start] $*" >&2; }',
            function("alive_or_die"),
            function("wait_for"),
            "sleep 60 & pid=$!; trap 'kill \"$pid\"' EXIT",
            f'wait_for kube-apiserver "$pid" {limit} "$@"',
        ]
    )
    return subprocess.run(
        ["bash", "-c", script, "wait", *probe], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_component_that_answers_is_waited_for_quietly(tmp_path):
    proc = wait(tmp_path, 5, "true", "https://127.0.0.1:1/readyz")
    assert proc.returncode == 0, proc.stderr
    assert "did not answer" not in proc.stderr


def test_a_component_that_never_answers_is_named_with_its_log(tmp_path):
    probe = ["sh", "-c", "exit 7", "-H", "Authorization: Bearer SECRET-TOKEN", "https://127.0.0.1:6443/readyz"]
    proc = wait(tmp_path, 1, *probe)
    assert proc.returncode == 1
    assert (
        f"[k8s-testbed start] kube-apiserver did not answer https://127.0.0.1:6443/readyz within 1 s; "
        f"its log ({tmp_path}/logs/kube-apiserver.log) ends:"
    ) in proc.stderr
    assert "E0101 apiserver: etcd unreachable" in proc.stderr
    assert "[k8s-testbed stop] stopped" in proc.stderr, "what was started is stopped"
    assert "SECRET-TOKEN" not in proc.stderr


def test_a_probe_that_hangs_is_cut(tmp_path):
    """A listener that accepts and never answers: each probe ends after 5 s, so the wait still ends."""
    t0 = time.monotonic()
    proc = wait(tmp_path, 1, "sh", "-c", "sleep 300", "http://127.0.0.1:2379/health")
    assert proc.returncode == 1
    assert "kube-apiserver did not answer http://127.0.0.1:2379/health within 1 s" in proc.stderr
    assert 4 < time.monotonic() - t0 < 15
