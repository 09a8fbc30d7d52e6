"""Helpers for integration tests: run real ansible-playbook against this machine.

`run_role` runs a role of the collection on localhost in check mode (so a validation gap can
never change the build machine) and returns the recap and output, for bad-input tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
# Task names of a role's validation phase: the argument-spec check and tasks/validate.yml.
VALIDATION_TASKS = ("Validating arguments against arg spec", "Validate ")
RECAP = re.compile(r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


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


def ansible_env() -> dict:
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
        ANSIBLE_FORCE_COLOR="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.default",
    )
    return env


def run_playbook(playbook: Path, extra_vars: dict | None = None, check: bool = True, *args: str) -> PlaybookRun:
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)]
    cmd += ["-e", f"ansible_python_interpreter={VENV_BIN / 'python'}"]
    if check:
        cmd.append("--check")
    if extra_vars is not None:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(args)
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, check=False)
    out = proc.stdout + proc.stderr
    match = RECAP.search(out)
    ok, changed, _unreach, failed = (int(x) for x in match.groups()) if match else (0, 0, 0, 0)
    return PlaybookRun(proc.returncode, out, ok, changed, failed)


def role_play(directory: Path, role: str) -> Path:
    """A playbook in `directory` that runs raibid.dgx_spark.<role> on localhost."""
    play = directory / f"{role}.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        f"    - ansible.builtin.include_role:\n        name: raibid.dgx_spark.{role}\n"
    )
    return play


@pytest.fixture
def run_role(tmp_path):
    """run_role(role, vars) -> PlaybookRun; the role runs on localhost in check mode."""

    def _run(role: str, role_vars: dict, check: bool = True) -> PlaybookRun:
        return run_playbook(role_play(tmp_path, role), role_vars, check)

    return _run
