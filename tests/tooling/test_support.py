"""The shared test helpers in tests/support.py that need no service: the PLAY RECAP parser, the
bounded command runner, and the busybox node image (mkimage.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import support  # tests/support.py

RECAP_OUTPUT = """\
TASK [Assert the outcome] ******************************************************
ok: [node-1]

PLAY RECAP *********************************************************************
node-1                     : ok=80   changed=3    unreachable=0    failed=1    skipped=2    rescued=1    ignored=0   
localhost                  : ok=2    changed=0    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
"""  # noqa: W291 (ansible-playbook pads the recap with trailing spaces)


def test_recap_gives_every_count_of_every_host():
    assert support.play_recap(RECAP_OUTPUT) == {
        "node-1": {"ok": 80, "changed": 3, "unreachable": 0, "failed": 1, "skipped": 2, "rescued": 1, "ignored": 0},
        "localhost": {"ok": 2, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 0, "rescued": 0, "ignored": 0},
    }


def test_recap_of_a_run_that_stopped_early_is_empty_and_later_recaps_win():
    assert support.play_recap("ERROR! the playbook could not be found\n") == {}
    twice = RECAP_OUTPUT + "\nPLAY RECAP ***\nnode-1 : ok=5 changed=0 unreachable=0 failed=0\n"
    assert support.play_recap(twice)["node-1"] == {"ok": 5, "changed": 0, "unreachable": 0, "failed": 0}


def test_bounded_command_returns_its_output():
    proc = support.run_bounded([sys.executable, "-c", "print('out'); import sys; sys.exit(3)"], 30, "python")
    assert (proc.returncode, proc.stdout) == (3, "out\n")


def killed(pid: int) -> bool:
    """The process is gone, or a zombie waiting for init to reap it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_a_hung_command_is_killed_with_its_children_and_named(tmp_path):
    # One child in the background keeps the output pipe open; another left the process group with
    # setsid, as ansible-playbook's workers do.
    script = f"echo started; sleep 60 & echo $! > {tmp_path}/a; setsid sleep 61 & echo $! > {tmp_path}/b; wait"
    t0 = time.monotonic()
    with pytest.raises(support.CommandTimeout) as err:
        support.run_bounded(["sh", "-c", script], 1, "the hanging step")
    assert time.monotonic() - t0 < 15
    message = str(err.value)
    assert message.startswith("the hanging step did not finish within 1 s")
    assert "started" in message
    for name in ("a", "b"):
        pid = int((tmp_path / name).read_text())
        assert killed(pid), f"child {name} ({pid}) outlived the timeout"


def fake_busybox(path: Path) -> Path:
    """A stand-in for a static busybox: a script that answers --list."""
    path.write_text("#!/bin/sh\n[ \"$1\" = --list ] && printf 'busybox\\nsh\\nls\\ncat\\n'\n")
    path.chmod(0o755)
    return path


def image_members(tar_path: Path) -> tuple[dict, dict[str, tarfile.TarInfo]]:
    """(manifest entry, the layer's members by name) of a docker-archive written by mkimage."""
    with tarfile.open(tar_path) as tar:
        (manifest,) = json.loads(tar.extractfile("manifest.json").read())
        layer = tar.extractfile(manifest["Layers"][0]).read()
    with tarfile.open(fileobj=__import__("io").BytesIO(layer)) as tar:
        return manifest, {m.name: m for m in tar.getmembers()}


def test_busybox_rootfs_links_every_listed_applet(tmp_path):
    rootfs = tmp_path / "rootfs"
    support.mkimage().busybox_rootfs(str(fake_busybox(tmp_path / "busybox")), str(rootfs))
    assert sorted(os.listdir(rootfs / "bin")) == ["busybox", "cat", "ls", "sh"]
    assert os.readlink(rootfs / "bin" / "sh") == "busybox"
    assert (rootfs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (rootfs / "etc" / "passwd").read_text().startswith("root:x:0:0:")


def test_busybox_image_is_a_docker_archive_with_the_files_given(tmp_path, monkeypatch):
    monkeypatch.setattr(support, "static_busybox", lambda: fake_busybox(tmp_path / "busybox"))
    out = support.busybox_image(
        tmp_path / "image.tar", "raibid-testbed.local/t:1", tmp_path / "work", files={"message": "hi\n"}, cmd=["cat"]
    )
    manifest, members = image_members(out)
    assert manifest["RepoTags"] == ["raibid-testbed.local/t:1"]
    assert {"bin/busybox", "bin/sh", "bin/cat", "message", "etc/passwd", "tmp"} <= set(members)
    assert "bin/ls" not in members, "only the applets asked for"
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())


def test_busybox_image_without_a_busybox_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setattr(support, "static_busybox", lambda: None)
    with pytest.raises(FileNotFoundError, match="busybox-static"):
        support.busybox_image(tmp_path / "i.tar", "t:1", tmp_path)


def test_mkimage_cli_lays_out_the_busybox_root_first(tmp_path):
    """What build.sh can call for the test bed's busybox image (`mkimage.py --busybox`)."""
    out = tmp_path / "busybox.tar"
    subprocess.run(
        [sys.executable, str(support.MKIMAGE), "--tag", "raibid-testbed.local/busybox:1", "--cmd", '["sh"]',
         "--busybox", str(fake_busybox(tmp_path / "busybox")), "--out", str(out), str(tmp_path / "rootfs")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    _manifest, members = image_members(out)
    assert {"bin/busybox", "bin/sh", "bin/ls", "bin/cat", "etc/group"} <= set(members)


def test_a_held_lock_names_its_holder_and_the_wait_is_bounded(tmp_path):
    """held_flock: another process's lock is waited for at most the bound, then LockTimeout names the
    file and what the holder wrote; the lock is taken once free, says who holds it, and is emptied."""
    lock = tmp_path / "locks" / "agent.lock"
    lock.parent.mkdir()
    other = subprocess.Popen(["flock", str(lock), "sh", "-c", f"echo 'pid 1: building agent' > {lock}; sleep 1"])
    deadline = time.monotonic() + 10
    while "building agent" not in (lock.read_text() if lock.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    waits: list[str] = []
    try:
        with support.held_flock(lock, 0.1, "me", waiting=waits.append, poll=0.02):
            raise AssertionError("taken while held")
    except support.LockTimeout as exc:
        assert str(exc) == f"{lock} still held after 0 s (by pid 1: building agent)"
    assert waits == ["pid 1: building agent"]
    with support.held_flock(lock, 10, "the second build", poll=0.02):
        assert lock.read_text().endswith(": the second build\n")
    other.wait()
    assert lock.read_text() == ""
