"""molecule/images/build.py: what its image hash covers, and that every external command it waits on is bounded."""

from __future__ import annotations

import fcntl
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "molecule" / "images"))
import build  # molecule/images/build.py

sys.path.pop(0)

RECIPE = {"suite": "trixie", "arch": "arm64", "packages": ["systemd", "python3"]}
MIRROR = "http://deb.debian.org/debian"
SCRIPT = b"#!/usr/bin/env python3\nprint('build')\n"


def digest(recipe: dict = RECIPE, arch: str = "arm64", mirror: str = MIRROR, script: bytes = SCRIPT) -> str:
    return build.image_hash(recipe, arch=arch, mirror=mirror, script=script)


def test_the_same_inputs_give_the_same_hash():
    reordered = {"packages": ["systemd", "python3"], "arch": "arm64", "suite": "trixie"}
    assert digest() == digest(dict(RECIPE)) == digest(reordered)
    assert len(digest()) == 12


@pytest.mark.parametrize(
    "changed",
    [
        {"script": SCRIPT + b"# a changed build step\n"},
        {"recipe": {**RECIPE, "suite": "bookworm"}},
        {"recipe": {**RECIPE, "packages": ["systemd", "python3", "sudo"]}},
        {"recipe": {**RECIPE, "kind": "base"}},
        {"recipe": {**RECIPE, "env": {"LANG": "C.UTF-8"}}},
        {"arch": "amd64"},
        {"mirror": "http://mirror.example.org/debian"},
    ],
    ids=["script bytes", "suite", "packages", "kind", "env", "arch", "mirror"],
)
def test_each_input_changes_the_hash(changed):
    assert digest(**changed) != digest()


def test_a_trailing_slash_on_the_mirror_is_the_same_mirror():
    assert digest(mirror=MIRROR + "/") == digest()


def test_recipe_hash_covers_this_machines_mirror_and_the_script_itself(monkeypatch):
    recipe = build.load_recipes()["trixie"]
    monkeypatch.setenv("RAIBID_DEBIAN_MIRROR", MIRROR)
    build.debian_mirror.cache_clear()
    try:
        expected = build.image_hash(
            recipe, arch=recipe["arch"], mirror=MIRROR, script=Path(build.__file__).read_bytes()
        )
        assert build.recipe_hash(recipe) == expected
        monkeypatch.setenv("RAIBID_DEBIAN_MIRROR", "http://other.example.org/debian")
        build.debian_mirror.cache_clear()
        assert build.recipe_hash(recipe) != expected
    finally:
        build.debian_mirror.cache_clear()


def test_no_build_format_constant_is_left():
    # The script's own bytes are hashed: a hand-bumped format number would be a second, forgettable key.
    assert not hasattr(build, "BUILD_FORMAT")


def test_the_docstring_documents_every_limit_with_its_value():
    for step, seconds in build.TIMEOUTS.items():
        assert f"{step} {seconds}" in build.__doc__, step
    assert "RAIBID_NODE_<STEP>_TIMEOUT" in build.__doc__


def test_a_command_past_its_limit_is_stopped_with_its_children_and_named(monkeypatch, tmp_path):
    monkeypatch.setenv("RAIBID_NODE_DEBOOTSTRAP_TIMEOUT", "1")
    pidfile = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(build.NodeImageError) as err:
        build.run(
            ["sh", "-c", f"sleep 60 & echo $! > {pidfile}; wait"],
            "debootstrap of trixie-arm64",
            "DEBOOTSTRAP",
            stdout=None,
        )
    assert str(err.value).startswith("debootstrap of trixie-arm64 did not finish in 1 s")
    assert "RAIBID_NODE_DEBOOTSTRAP_TIMEOUT" in str(err.value)
    assert time.monotonic() - started < 30
    child = int(pidfile.read_text())
    for _ in range(50):  # the group got SIGTERM; give the kernel a moment to reap
        if not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the command's child {child} survived the timeout")


def test_a_failing_command_is_named_with_its_exit_code_and_error():
    with pytest.raises(build.NodeImageError, match=r"docker save of trixie failed \(rc=3.*disk full"):
        build.run(["sh", "-c", "echo disk full >&2; exit 3"], "docker save of trixie", "SAVE", capture=True)


def test_unchecked_commands_return_their_exit_code():
    proc = build.run(["sh", "-c", "exit 1"], "docker image inspect x", "DOCKER", check=False, capture=True)
    assert proc.returncode == 1


@pytest.mark.parametrize("value", ["0", "ten", "-5"])
def test_a_bad_limit_in_the_environment_is_refused(monkeypatch, value):
    monkeypatch.setenv("RAIBID_NODE_IMPORT_TIMEOUT", value)
    with pytest.raises(build.NodeImageError, match="RAIBID_NODE_IMPORT_TIMEOUT: a number of seconds"):
        build.step_timeout("IMPORT")


def test_waiting_for_another_build_of_the_same_image_is_bounded(monkeypatch, tmp_path):
    monkeypatch.setenv("RAIBID_NODE_LOCK_TIMEOUT", "1")
    path = tmp_path / "trixie.lock"
    with open(path, "w", encoding="utf-8") as holder, open(path, "w", encoding="utf-8") as waiter:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(build.NodeImageError, match=r"another build of trixie held .* for more than 1 s"):
            build.wait_for_lock(waiter, "trixie")
        fcntl.flock(holder, fcntl.LOCK_UN)
        build.wait_for_lock(waiter, "trixie")  # free now: taken at once


def test_a_build_tree_without_mounts_is_removed(tmp_path):
    rootfs = tmp_path / "trixie-x"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "hostname").write_text("node\n")
    assert build.mounts_below(rootfs) == []
    build.remove_rootfs(rootfs)
    assert not rootfs.exists()


def test_mounts_below_a_directory_come_deepest_first(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "proc /proc proc rw 0 0\n"
        "proc /var/tmp/b/r/proc proc rw 0 0\n"
        "sysfs /var/tmp/b/r/sys sysfs rw 0 0\n"
        "devpts /var/tmp/b/r/dev/pts devpts rw 0 0\n"
        "tmpfs /var/tmp/b/rx tmpfs rw 0 0\n"
    )
    assert build.mounts_below(Path("/var/tmp/b/r"), mounts) == [
        "/var/tmp/b/r/dev/pts",
        "/var/tmp/b/r/proc",
        "/var/tmp/b/r/sys",
    ]


def test_every_subprocess_call_goes_through_the_bounded_runner():
    # Popen is used only by run() and for tar (bounded by docker_import); subprocess.run only with a timeout.
    source = Path(build.__file__).read_text(encoding="utf-8")
    assert source.count("subprocess.Popen(") == 2
    for line in (line for line in source.splitlines() if "subprocess.run(" in line):
        assert "timeout=" in line, line
    assert "check_call" not in source and "check_output" not in source and "os.system" not in source


def test_running_as_a_script_reports_a_limit_error_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["build.py", "--list", "trixie"])
    monkeypatch.setenv("RAIBID_NODE_DOCKER_TIMEOUT", "nope")
    monkeypatch.setenv("RAIBID_DEBIAN_MIRROR", MIRROR)
    build.debian_mirror.cache_clear()
    try:
        assert build.main() == 1
    finally:
        build.debian_mirror.cache_clear()
    assert capsys.readouterr().err.strip() == (
        "node-images: RAIBID_NODE_DOCKER_TIMEOUT: a number of seconds > 0, not 'nope'"
    )
