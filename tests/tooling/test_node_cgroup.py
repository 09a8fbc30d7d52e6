"""tests/testbed/node_cgroup.py: a node container's cgroup flags follow the host's cgroup version.

Only the v1 flags have started real nodes (our machines are cgroup v1); the v2 wrapper script is run
here under /bin/sh against a fake cgroup directory and a stub ``mount``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "testbed"))
import node_cgroup  # tests/testbed/node_cgroup.py

sys.path.pop(0)

V1_HYBRID = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs ro,nosuid,nodev,noexec,mode=755 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,nosuid,nodev,noexec,relatime,xattr,name=systemd 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0
"""
V2 = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
"""


def test_v1_shares_the_host_cgroup_namespace_and_binds_its_tree():
    flags = node_cgroup.node_cgroup_flags(1)
    assert flags.cgroupns_mode == "host"
    assert flags.volumes == ("/sys/fs/cgroup:/sys/fs/cgroup:rw",)
    assert flags.command == ("/lib/systemd/systemd",)
    # What e2e_images.py passed to docker run before the decision moved here.
    assert flags.docker_run_flags() == ["--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]


def test_v2_gets_a_private_namespace_and_no_bind_mount():
    flags = node_cgroup.node_cgroup_flags(2)
    assert flags.cgroupns_mode == "private"
    assert flags.volumes == ()
    assert flags.docker_run_flags() == ["--cgroupns", "private"]
    assert flags.command[:2] == ("/bin/sh", "-c")
    assert flags.command[3:] == ("sh", "/lib/systemd/systemd")
    assert "mount -o remount,rw /sys/fs/cgroup" in flags.command[2]
    # systemd moves itself into init.scope; the nesting step is for a payload that is not systemd.
    assert "cgroup.subtree_control" not in flags.command[2]


def test_a_payload_other_than_systemd_is_kept_as_is_on_v1_and_wrapped_on_v2():
    payload = ["/bin/sh", "-c", "exec sleep infinity"]
    assert node_cgroup.node_cgroup_flags(1, payload, systemd=False).command == tuple(payload)
    v2 = node_cgroup.node_cgroup_flags(2, payload, systemd=False).command
    assert v2[3:] == ("sh", *payload)
    assert "cgroup.subtree_control" in v2[2]


def test_an_unknown_version_is_refused():
    with pytest.raises(ValueError, match="cgroup version: 1 or 2, not 3"):
        node_cgroup.node_cgroup_flags(3)


@pytest.mark.parametrize(
    ("fstype", "version"), [("cgroup2fs", 2), ("cgroup2", 2), ("tmpfs", 1), ("cgroup", 1), ("", 1)]
)
def test_version_from_the_filesystem_type(fstype, version):
    # `stat -fc %T /sys/fs/cgroup` names it cgroup2fs, /proc/mounts cgroup2.
    assert node_cgroup.cgroup_version_from_fstype(fstype) == version


@pytest.mark.parametrize(
    ("mounts", "version"),
    [
        (V1_HYBRID, 1),  # a cgroup2 under /sys/fs/cgroup/unified does not make the host v2
        (V2, 2),
        ("tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n", 2),  # the last mount wins
        ("proc /proc proc rw 0 0\n", 1),
    ],
    ids=["v1 hybrid", "v2", "over-mounted", "no cgroup mount"],
)
def test_version_from_mounts(mounts, version):
    assert node_cgroup.cgroup_version_from_mounts(mounts) == version


def test_detection_reads_the_mounts_file_unless_the_environment_says(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(V2)
    assert node_cgroup.detect_cgroup_version(mounts, env={}) == 2
    assert node_cgroup.detect_cgroup_version(mounts, env={"RAIBID_NODE_CGROUP_VERSION": "1"}) == 1
    mounts.write_text(V1_HYBRID)
    assert node_cgroup.detect_cgroup_version(mounts, env={}) == 1
    with pytest.raises(ValueError, match="RAIBID_NODE_CGROUP_VERSION: 1 or 2, not 'v2'"):
        node_cgroup.detect_cgroup_version(mounts, env={"RAIBID_NODE_CGROUP_VERSION": "v2"})


def test_this_host_is_detected_as_stat_sees_it():
    fstype = subprocess.run(
        ["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()
    expected = 2 if fstype == "cgroup2fs" else 1
    assert node_cgroup.detect_cgroup_version(env={}) == expected


def _run_wrapper(command: tuple[str, ...], cgroup: Path, bin_dir: Path) -> subprocess.CompletedProcess:
    argv = [part.replace("/sys/fs/cgroup", str(cgroup)) for part in command]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30, check=False)


@pytest.fixture
def fake_cgroup(tmp_path):
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "mount"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/mount.log\n')
    stub.chmod(0o755)
    return cgroup, bin_dir, tmp_path / "mount.log"


def test_the_v2_wrapper_remounts_then_execs_the_payload_with_its_arguments(fake_cgroup):
    cgroup, bin_dir, mount_log = fake_cgroup
    command = node_cgroup.node_cgroup_flags(2, ["printf", "%s|", "a", "b c"]).command
    proc = _run_wrapper(command, cgroup, bin_dir)
    assert (proc.returncode, proc.stdout) == (0, "a|b c|")
    assert mount_log.read_text() == f"-o remount,rw {cgroup}\n"
    assert not (cgroup / "init").exists()


def test_the_v2_wrapper_for_a_nested_engine_moves_pid_1_and_enables_the_controllers(fake_cgroup):
    cgroup, bin_dir, _ = fake_cgroup
    command = node_cgroup.node_cgroup_flags(2, ["sh", "-c", "echo $$"], systemd=False).command
    proc = _run_wrapper(command, cgroup, bin_dir)
    assert proc.returncode == 0, proc.stderr
    # exec keeps the PID: the payload runs as the process that was moved to /init.
    assert (cgroup / "init" / "cgroup.procs").read_text().strip() == proc.stdout.strip()
    assert (cgroup / "cgroup.subtree_control").read_text() == "+cpuset +cpu +io +memory +pids\n"


def test_the_v2_wrapper_stops_with_a_message_when_the_remount_fails(fake_cgroup):
    cgroup, bin_dir, _ = fake_cgroup
    (bin_dir / "mount").write_text("#!/bin/sh\nexit 32\n")
    proc = _run_wrapper(node_cgroup.node_cgroup_flags(2, ["echo", "payload ran"]).command, cgroup, bin_dir)
    assert proc.returncode == 1
    assert "payload ran" not in proc.stdout
    assert "cannot remount" in proc.stderr and "cgroup v2, private cgroupns" in proc.stderr


def test_the_script_prints_the_flags_as_json(capsys):
    assert node_cgroup.main(["--version", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cgroup_version"] == 2 and out["cgroupns_mode"] == "private" and out["volumes"] == []
    assert out["command"][-1] == "/lib/systemd/systemd"


def test_the_script_runs_standalone_as_the_playbook_runs_it():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "testbed" / "node_cgroup.py"), "--version", "1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(proc.stdout) == {
        "cgroup_version": 1,
        "cgroupns_mode": "host",
        "volumes": ["/sys/fs/cgroup:/sys/fs/cgroup:rw"],
        "command": ["/lib/systemd/systemd"],
    }


@pytest.mark.parametrize(
    "path",
    [
        "molecule/_shared/tasks/start-node.yml",
        "molecule/_shared/node.yml",
        "tests/testbed/lab.yml",
        "tests/testbed/images/e2e_images.py",
    ],
)
def test_no_other_place_spells_the_cgroup_flags(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    assert "/sys/fs/cgroup:" not in text
    assert "cgroupns_mode: host" not in text and '"--cgroupns", "host"' not in text
